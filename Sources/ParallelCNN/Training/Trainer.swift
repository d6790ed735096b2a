import Foundation

/// Progress of a running epoch, reported a few times per second.
public struct TrainingProgress: Sendable {
    public var epoch: Int            // 0-based epoch being trained
    public var epochs: Int
    public var samplesDone: Int      // samples of this epoch done
    public var samplesTotal: Int
    public var seconds: Double       // training time of this epoch so far
    public var statistics: StepStatistics
    public var samplesPerSecond: Double { seconds > 0 ? Double(samplesDone) / seconds : 0 }
}

/// Figures of one completed epoch.
public struct EpochReport: Sendable {
    public var epoch: Int                 // 1-based number of the completed epoch
    public var seconds: Double            // training time, evaluation excluded
    public var meanLoss: Double           // mean per-sample loss (SPEC training error for .original)
    public var trainErrorPercent: Double  // misclassified training samples, before each update
    public var testErrors: Int
    public var testCount: Int
    public var parameterHash: UInt64
    /// Whether the epoch ran from its first sample in this process (its `seconds` is a whole epoch).
    public var complete: Bool
    public var testErrorPercent: Double { testCount > 0 ? 100 * Double(testErrors) / Double(testCount) : 0 }
}

/// Why `Trainer.run` returned before finishing.
public enum TrainingStop: Sendable, Equatable {
    case finished
    /// `shouldStop` asked to stop; the position is where to resume.
    case interrupted(TrainingPosition)
}

/// Drives an engine through epochs of batches: sample order, progress, per-epoch evaluation.
/// It knows nothing of how an engine computes; every engine is driven the same way.
public final class Trainer {
    public let engine: any Engine
    public let data: DatasetPair
    public let options: TrainingOptions
    public private(set) var position: TrainingPosition

    /// Called a few times per second during an epoch.
    public var onProgress: ((TrainingProgress) -> Void)?
    /// Called after each epoch (after evaluation).
    public var onEpoch: ((EpochReport) -> Void)?
    /// Polled between batches; returning true ends `run` with `.interrupted`.
    public var shouldStop: (() -> Bool)?
    /// Called between batches at most every `checkpointInterval` seconds, with the position to
    /// resume from, so a long epoch is never lost whole.
    public var onCheckpoint: ((TrainingPosition) -> Void)?
    public var checkpointInterval: Double = 60
    public var progressInterval: Double = 0.1
    /// The sample order of an epoch, when not `options.sampleOrder` over the whole training set
    /// (a data-parallel rank trains from a shard: `ShardPlan.order`).
    public var epochOrder: ((_ epoch: Int) -> [Int32])?

    public init(engine: any Engine, data: DatasetPair, options: TrainingOptions, start: TrainingPosition = TrainingPosition()) {
        self.engine = engine
        self.data = data
        self.options = options
        self.position = start
    }

    /// Trains until `options.epochs` epochs are complete or `shouldStop` says stop.
    @discardableResult
    public func run() -> TrainingStop {
        let batch = max(1, options.batchSize)
        while position.epoch < options.epochs {
            let order = epochOrder?(position.epoch) ?? options.sampleOrder(epoch: position.epoch, count: data.train.count)
            let count = order.count
            let rule = options.rule(forEpoch: position.epoch)
            let complete = position.position == 0
            var stats = StepStatistics()
            // The original program sums its per-sample errors in float; SPEC's figures are that sum.
            var floatLossSum: Float = 0
            var trainingSeconds = 0.0
            var lastProgress = 0.0
            var lastCheckpoint = Self.now()
            var started = Self.now()
            var stopped = false
            order.withUnsafeBufferPointer { order in
                while position.position < count {
                    let end = min(position.position + batch, count)
                    let indices = UnsafeBufferPointer(rebasing: order[position.position..<end])
                    let step = engine.train(on: data.train, indices: indices, rule: rule)
                    stats += step
                    floatLossSum += Float(step.lossSum)
                    position.position = end

                    let now = Self.now()
                    if now - lastProgress >= progressInterval || end == count {
                        lastProgress = now
                        onProgress?(TrainingProgress(
                            epoch: position.epoch, epochs: options.epochs, samplesDone: end, samplesTotal: count,
                            seconds: trainingSeconds + now - started, statistics: stats))
                    }
                    if end < count, let onCheckpoint, now - lastCheckpoint >= checkpointInterval {
                        trainingSeconds += now - started
                        onCheckpoint(position)
                        lastCheckpoint = Self.now()
                        started = lastCheckpoint
                    }
                    if end < count, shouldStop?() == true {
                        stopped = true
                        break
                    }
                }
            }
            trainingSeconds += Self.now() - started
            if stopped { return .interrupted(position) }

            position = TrainingPosition(epoch: position.epoch + 1, position: 0)
            let testErrors = engine.countErrors(on: data.test, recipe: options.recipe)
            onEpoch?(EpochReport(
                epoch: position.epoch, seconds: trainingSeconds,
                meanLoss: stats.samples == 0 ? 0 : options.recipe == .original && complete
                    ? Double(floatLossSum / Float(stats.samples)) : stats.lossSum / Double(stats.samples),
                trainErrorPercent: stats.samples > 0 ? 100 * Double(stats.misclassified) / Double(stats.samples) : 0,
                testErrors: testErrors, testCount: data.test.count,
                parameterHash: engine.currentParameters().hash, complete: complete))
            if shouldStop?() == true, position.epoch < options.epochs { return .interrupted(position) }
        }
        return .finished
    }

    /// Monotonic seconds.
    public static func now() -> Double {
        Double(DispatchTime.now().uptimeNanoseconds) / 1e9
    }
}
