import Foundation

/// Progress of a running epoch, reported a few times per second.
public struct TrainingProgress: Sendable {
    public var epoch: Int  // 0-based epoch being trained
    public var epochs: Int
    public var samplesDone: Int  // samples of this epoch done
    public var samplesTotal: Int
    public var seconds: Double  // training time of this epoch so far
    public var statistics: StepStatistics
    public var samplesPerSecond: Double { seconds > 0 ? Double(samplesDone) / seconds : 0 }
}

/// Figures of one completed epoch.
public struct EpochReport: Sendable {
    public var epoch: Int  // 1-based number of the completed epoch
    public var seconds: Double  // training time, evaluation excluded
    public var meanLoss: Double  // mean per-sample loss (SPEC training error for .original)
    public var trainErrorPercent: Double  // misclassified training samples, before each update
    public var testErrors: Int
    public var testCount: Int
    public var parameterHash: UInt64
    /// Whether the epoch ran from its first sample in this process (its `seconds` is a whole epoch).
    public var complete: Bool
    /// The epoch's statistics as the engine accumulated them.
    public var statistics: TrainingStatistics
    public var testErrorPercent: Double { testCount > 0 ? 100 * Double(testErrors) / Double(testCount) : 0 }
}

/// Why `Trainer.run` returned before finishing.
public enum TrainingStop: Sendable, Equatable {
    case finished
    /// `shouldStop` asked to stop; the position is where to resume.
    case interrupted(TrainingPosition)
}

/// Training produced a non-finite loss or parameter: the run stops instead of going on with a
/// broken model.
public struct DivergenceError: Error, CustomStringConvertible, Sendable {
    /// 1-based epoch and step (optimizer step within the epoch) where it was seen.
    public let epoch: Int
    public let step: Int
    public let what: String
    public var description: String {
        "training diverged in epoch \(epoch) at step \(step): \(what); lower the learning rate (--lr)"
    }
}

/// Drives an engine through epochs: sample order (and, for a sharded engine on several ranks,
/// each rank's shard), chunks of steps, progress, checkpoints and stop requests between chunks,
/// divergence checks, and per-epoch evaluation. Every engine is driven the same way.
public final class Trainer {
    public let engine: any Engine
    public let data: DatasetPair
    public let options: TrainingOptions
    public private(set) var position: TrainingPosition
    /// The network trained (it names a non-finite parameter's tensor).
    public var architecture: Architecture = .paper

    /// Called at least every `progressInterval` seconds during an epoch.
    public var onProgress: ((TrainingProgress) -> Void)?
    /// Called after each epoch (after evaluation).
    public var onEpoch: ((EpochReport) throws -> Void)?
    /// Polled between chunks; returning true ends `run` with `.interrupted`.
    public var shouldStop: (() -> Bool)?
    /// Called between chunks at most every `checkpointInterval` seconds, with the position to
    /// resume from, so a long epoch is never lost whole.
    public var onCheckpoint: ((TrainingPosition) throws -> Void)?
    public var checkpointInterval: Double = 60
    /// Progress is reported this often, and chunks are sized to take half of it, so a stop
    /// request is seen within about that time. 0 means one step per chunk.
    public var progressInterval: Double = 0.1
    /// Steps per `train(until:)` call, when not sized from the measured speed. A job on several
    /// ranks needs the same chunks on every rank (they agree on stopping between chunks), so it
    /// defaults to a fixed 4096 samples per chunk there.
    public var chunkSteps: Int?

    private var prepared = false
    private var shardPlan: ShardPlan?

    public init(engine: any Engine, data: DatasetPair, options: TrainingOptions, start: TrainingPosition = TrainingPosition()) {
        self.engine = engine
        self.data = data
        self.options = options
        self.position = start
    }

    /// Hands the engine its training data: the whole split, or this rank's shard for a sharded
    /// engine on several ranks. `run` calls it when it has not been called.
    public func prepare() throws {
        guard !prepared else { return }
        let ranks = engine.processGroup.size
        if let sharded = engine as? any ShardedEngine, sharded.trainsOnShard, ranks > 1 {
            let plan = ShardPlan(count: data.train.count, batch: max(1, options.batchSize), ranks: ranks)
            try sharded.prepare(shard: plan.shard(of: data.train, rank: engine.processGroup.rank))
            shardPlan = plan
        } else {
            try engine.prepare(training: data.train)
        }
        prepared = true
    }

    /// The sample order of epoch `epoch` (0-based).
    public func order(epoch: Int) -> [Int32] {
        shardPlan?.order(epoch: epoch, options: options) ?? options.sampleOrder(epoch: epoch, count: data.train.count)
    }

    /// Trains until `options.epochs` epochs are complete or `shouldStop` says stop.
    @discardableResult
    public func run() throws -> TrainingStop {
        try prepare()
        let batch = max(1, options.batchSize)
        let fixedChunk = chunkSteps ?? (engine.processGroup.size > 1 ? max(1, 4096 / batch) : nil)
        var chunk = ChunkSizer(targetSeconds: progressInterval / 2, fixed: fixedChunk)
        while position.epoch < options.epochs {
            let epochOrder = order(epoch: position.epoch)
            let plan = EpochPlan(
                order: epochOrder, batchSize: batch,
                rule: options.rule(forEpoch: position.epoch, samples: epochOrder.count))
            let count = plan.order.count
            let complete = position.position == 0
            try engine.beginEpoch(plan, at: position.position)
            var statistics = TrainingStatistics()
            var trainingSeconds = 0.0
            var lastProgress = 0.0
            var lastCheckpoint = Self.now()
            var started = lastCheckpoint
            while position.position < count {
                let end = min(count, position.position + chunk.steps * batch)
                let chunkStart = Self.now()
                try engine.train(until: end)
                // Reading the statistics waits for a device engine's queued steps, so the chunk's
                // time is its real time.
                statistics = try engine.statistics()
                let now = Self.now()
                chunk.record(steps: (end - position.position + batch - 1) / batch, seconds: now - chunkStart)
                position.position = end

                try checkDivergence(statistics, end: end, batch: batch)
                if now - lastProgress >= progressInterval || end == count {
                    lastProgress = now
                    onProgress?(
                        TrainingProgress(
                            epoch: position.epoch, epochs: options.epochs, samplesDone: end, samplesTotal: count,
                            seconds: trainingSeconds + now - started, statistics: statistics.total))
                }
                if end < count, let onCheckpoint, now - lastCheckpoint >= checkpointInterval {
                    trainingSeconds += now - started
                    try onCheckpoint(position)
                    lastCheckpoint = Self.now()
                    started = lastCheckpoint
                }
                if end < count, shouldStop?() == true {
                    return .interrupted(position)
                }
            }
            trainingSeconds += Self.now() - started

            position = TrainingPosition(epoch: position.epoch + 1, position: 0)
            let testErrors = try engine.countErrors(on: data.test, recipe: options.recipe)
            let samples = statistics.total.samples
            // The original program sums its per-sample errors in float; SPEC's figures are that sum.
            let meanLoss =
                samples == 0
                ? 0
                : options.recipe == .original && complete
                    ? Double(statistics.floatLossSum / Float(samples)) : statistics.total.lossSum / Double(samples)
            try onEpoch?(
                EpochReport(
                    epoch: position.epoch, seconds: trainingSeconds, meanLoss: meanLoss,
                    trainErrorPercent: samples > 0 ? 100 * Double(statistics.total.misclassified) / Double(samples) : 0,
                    testErrors: testErrors, testCount: data.test.count,
                    parameterHash: try engine.currentParameters().hash, complete: complete, statistics: statistics))
            if shouldStop?() == true, position.epoch < options.epochs { return .interrupted(position) }
        }
        return .finished
    }

    /// Stops the run at the first non-finite loss (named by its step) or parameter (named by the
    /// chunk's last step), before anything can save the broken model.
    private func checkDivergence(_ statistics: TrainingStatistics, end: Int, batch: Int) throws {
        if let step = statistics.firstNonFiniteStep {
            throw DivergenceError(epoch: position.epoch + 1, step: step + 1, what: "the loss is \(statistics.total.lossSum)")
        }
        if let bad = try engine.currentParameters().firstNonFinite(in: architecture) {
            throw DivergenceError(
                epoch: position.epoch + 1, step: (end + batch - 1) / batch,
                what: "parameter \(bad.tensor)[\(bad.index)] is \(bad.value)")
        }
    }

    /// Monotonic seconds.
    public static func now() -> Double {
        Double(DispatchTime.now().uptimeNanoseconds) / 1e9
    }
}

/// How many steps the next chunk takes: grown from one step until a chunk takes about
/// `targetSeconds`, so progress and stop requests are seen often while a device engine still
/// runs thousands of steps per call.
struct ChunkSizer {
    let targetSeconds: Double
    let fixed: Int?
    private(set) var steps: Int

    init(targetSeconds: Double, fixed: Int?) {
        self.targetSeconds = targetSeconds
        self.fixed = fixed
        steps = fixed ?? 1
    }

    mutating func record(steps done: Int, seconds: Double) {
        guard fixed == nil else { return }
        guard targetSeconds > 0 else { steps = 1; return }
        let perStep = seconds / Double(max(1, done))
        let wanted = perStep > 0 ? Int(targetSeconds / perStep) : steps * 2
        steps = max(1, min(wanted, steps * 2, 1 << 20))
    }
}
