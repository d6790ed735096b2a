import Foundation

/// What a user asks of a training run: the engine, the data set, the run's options (for a fresh
/// run) or the checkpoint to continue, and where to save.
public struct TrainingRequest: Sendable {
    public var engine: EngineKind = .sequential
    public var engineOptions = EngineOptions()
    public var dataset: DatasetKind = .mnist
    /// The network (`--net`); nil: the paper's for a fresh run, the checkpoint's on resume.
    public var network: NetworkDescription?
    /// Epochs to complete (with `resume`: in total).
    public var epochs = 1
    // The options of a fresh run. With `resume`, any that is set must match the checkpoint.
    public var recipe: Recipe?
    public var optimizer: Optimizer?
    public var batchSize: Int?
    public var learningRate: Float?
    public var momentum: Float?
    public var learningRateDecay: Float?
    /// Train on the first `limit` training samples only.
    public var limit: Int?
    public var initialization: Initialization = .original
    /// Seed of `.seeded` initialisation and of the modern recipe's shuffles.
    public var seed: UInt64 = 1
    /// Continue the run saved in this checkpoint file.
    public var resume: String?
    /// Checkpoint file, written atomically after every epoch, every `checkpointInterval` seconds
    /// within an epoch, and when the run is stopped; `nil` writes none.
    public var checkpoint: String?
    public var checkpointInterval: Double = 60

    /// The batch sizes every command accepts (the largest training set's size): the one place
    /// this limit is written.
    public static let batchSizes = 1...60_000

    /// The error for a batch size outside `batchSizes`.
    public static func batchSizeMessage(_ batch: Int, option: String = "--batch") -> String {
        "\(option) must be between \(batchSizes.lowerBound) and \(batchSizes.upperBound), got \(batch)"
    }

    /// Checks every value before anything is loaded or allocated.
    public func validate() throws(TrainingRequestError) {
        func check(_ ok: Bool, _ message: @autoclosure () -> String) throws(TrainingRequestError) {
            if !ok { throw TrainingRequestError(message: message()) }
        }
        try check((1...100_000).contains(epochs), "--epochs must be between 1 and 100000, got \(epochs)")
        if let batchSize { try check(Self.batchSizes.contains(batchSize), Self.batchSizeMessage(batchSize)) }
        if let learningRate { try check(learningRate.isFinite && learningRate > 0, "--lr must be a positive number, got \(learningRate)") }
        if let learningRateDecay {
            try check(learningRateDecay > 0 && learningRateDecay <= 1, "--lr-decay must be in (0, 1], got \(learningRateDecay)")
        }
        if let momentum { try check(momentum >= 0 && momentum < 1, "--momentum must be in [0, 1), got \(momentum)") }
        if let limit { try check(limit >= 1, "--limit must be at least 1, got \(limit)") }
        try check(
            checkpointInterval > 0 && checkpointInterval.isFinite,
            "--checkpoint-interval must be a positive number of seconds, got \(checkpointInterval)")
    }

    public init(
        engine: EngineKind = .sequential, engineOptions: EngineOptions = EngineOptions(), epochs: Int = 1,
        recipe: Recipe? = nil, checkpoint: String? = nil, resume: String? = nil
    ) {
        self.engine = engine
        self.engineOptions = engineOptions
        self.epochs = epochs
        self.recipe = recipe
        self.checkpoint = checkpoint
        self.resume = resume
    }
}

/// A request that does not fit the checkpoint it resumes, or the data it is given.
public struct TrainingRequestError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}

/// Set-up failed on another rank of the job, which reports it; this rank just stops.
public struct OtherRankFailed: Error, CustomStringConvertible, Sendable {
    public var description: String { "another rank failed during set-up" }
}

/// An error on one rank of a job of several, named by rank.
public struct RankError: Error, CustomStringConvertible {
    public let rank: Int
    public let ranks: Int
    public let underlying: any Error
    public var description: String { "rank \(rank) of \(ranks): \(underlying)" }
}

/// What a finished (or stopped) run did.
public struct TrainingResult {
    public var outcome: TrainingStop
    /// The epochs completed in this process.
    public var epochs: [EpochReport]
    public var record: TrainingRecord
    public var engine: String
    public var ranks: Int
    public var finalHash: String
    /// Misclassified test images after the run; `nil` for a run stopped before completing an
    /// epoch (a stop does not wait for an evaluation).
    public var testErrors: Int?
    public var testCount: Int
    /// The checkpoint file last written, if any.
    public var checkpoint: String?

    public var testErrorPercent: Double? { testErrors.map { 100 * Double($0) / Double(max(1, testCount)) } }
    public var meanEpochSeconds: Double {
        epochs.isEmpty ? 0 : epochs.map(\.seconds).reduce(0, +) / Double(epochs.count)
    }

    /// The run record (`pcnn train --json`): a JSON-serialisable dictionary. `outcome` is
    /// "finished" or "interrupted", with `stopped_at` (1-based epoch, sample) for the latter.
    public var jsonObject: [String: Any] {
        let options = record.options
        var stoppedAt: Any = NSNull()
        if case .interrupted(let position) = outcome { stoppedAt = ["epoch": position.epoch + 1, "sample": position.position] }
        return [
            "outcome": outcome == .finished ? "finished" : "interrupted",
            "stopped_at": stoppedAt,
            "engine": engine,
            "ranks": ranks,
            "recipe": options.recipe.rawValue,
            "optimizer": options.rule.optimizer.rawValue,
            "epochs": options.epochs,
            "epochs_run": epochs.count,
            "batch": options.batchSize,
            "learning_rate": Double("\(options.rule.learningRate)") ?? 0,
            "momentum": Double("\(options.rule.momentum)") ?? 0,
            "train_samples": record.trainSamples,
            "seconds_per_epoch": epochs.map(\.seconds),
            "train_loss": epochs.map(\.meanLoss),
            "test_error_percent_per_epoch": epochs.map(\.testErrorPercent),
            "test_error_percent": testErrorPercent ?? NSNull(),
            "test_errors": testErrors ?? NSNull(),
            "param_hash": finalHash,
            "checkpoint": checkpoint ?? NSNull()
        ]
    }
}

/// One training run, with everything around the engine that a real run needs: a fresh start or
/// a resumed checkpoint, the training data (each rank's shard for a data-parallel MPI job),
/// checkpoints after every epoch, every minute and when stopped, agreement between ranks on
/// set-up, on stopping and on their parameters, and the run record.
///
/// ```swift
/// var request = TrainingRequest(engine: .threads, epochs: 3, recipe: .modern, checkpoint: "model.safetensors")
/// let session = try TrainingSession(request) { try DatasetLoader.load(.mnist, from: "data/mnist") }
/// session.onEpoch = { print("epoch \($0.epoch): \($0.testErrorPercent)% test error") }
/// let result = try session.run()
/// ```
/// Run it again with `request.resume = "model.safetensors"` to continue after a stop.
public final class TrainingSession {
    public let request: TrainingRequest
    /// The processes of the job; only rank 0 reports and writes.
    public let group: any ProcessGroup
    public let engine: any Engine
    /// The run as it stands at the start (options, position, data set, samples per epoch).
    public let record: TrainingRecord
    /// Training samples per epoch (after `limit`) and the test split.
    public let data: DatasetPair
    /// The parameters the run starts from.
    public let initialParameters: Parameters
    /// The network trained, on the data's input shape.
    public let architecture: Architecture

    /// Progress a few times per second (rank 0 only).
    public var onProgress: ((TrainingProgress) -> Void)?
    /// After each epoch's evaluation and checkpoint (rank 0 only).
    public var onEpoch: ((EpochReport) -> Void)?
    /// Polled between chunks of steps; true stops the run at the next chunk boundary on every
    /// rank, and a checkpoint is written (a signal handler sets what this reads).
    public var stopRequested: () -> Bool = { false }
    /// How often progress is reported; chunks of steps are sized to half of it.
    public var progressInterval = 0.1

    /// Whether this process reports (rank 0).
    public var isReporter: Bool { group.rank == 0 }

    /// Sets the run up on every rank: starts the engine's processes, loads the data with
    /// `loadData`, reads the checkpoint to resume, makes the engine. If any rank fails, every
    /// rank throws: the lowest failing rank its error, the others `OtherRankFailed`.
    public init(_ request: TrainingRequest, loadData: () throws -> DatasetPair) throws {
        self.request = request
        try request.validate()
        let descriptor = try EngineRegistry.descriptor(request.engine)
        _ = try descriptor.resolve(request.engineOptions)
        if case .unavailable(let remedy) = descriptor.availability() {
            throw EngineError.unavailable(engine: request.engine.rawValue, remedy: remedy)
        }
        group = try descriptor.processGroup()
        let setup = Result { try Self.setUp(request, descriptor: descriptor, loadData: loadData) }
        let (failed, error) = group.agree(setup.map { _ in () }, context: "agreeing on set-up")
        if failed {
            guard let error else { throw OtherRankFailed() }
            throw group.size > 1 ? RankError(rank: group.rank, ranks: group.size, underlying: error) : error
        }
        (record, data, initialParameters, engine, architecture) = try setup.get()
    }

    private static func setUp(_ request: TrainingRequest, descriptor: EngineDescriptor, loadData: () throws -> DatasetPair)
        throws -> (TrainingRecord, DatasetPair, Parameters, any Engine, Architecture)
    {
        let all = try loadData()
        var record: TrainingRecord
        var parameters: Parameters
        var optimizerState = OptimizerState()
        let architecture: Architecture
        if let path = request.resume {
            let checkpoint = try Checkpoint.read(from: path)
            record = try checkpoint.trainingRecord(path: path)
            try checkConflicts(request, record, path: path)
            architecture = checkpoint.architecture
            if let network = request.network, network != architecture.network {
                throw TrainingRequestError(
                    message:
                        "\(path) holds the network \"\(architecture.network.text)\"; drop --net or give that network, not \"\(network.text)\""
                )
            }
            guard all.train.shape == architecture.input else {
                throw TrainingRequestError(
                    message: "\(path) was trained on \(architecture.input) images, but the data has \(all.train.shape)")
            }
            record.options.epochs = request.epochs
            guard record.trainSamples <= all.train.count else {
                throw TrainingRequestError(
                    message: "\(path) was trained on \(record.trainSamples) samples, but the data has only \(all.train.count)")
            }
            parameters = checkpoint.parameters
            optimizerState = checkpoint.optimizerState
        } else {
            do {
                architecture = try Architecture(request.network ?? .paper, input: all.train.shape)
            } catch {
                throw TrainingRequestError(message: "\(error) (data set \(request.dataset.rawValue), images \(all.train.shape))")
            }
            // Adam's default rate was tuned on the paper's network; a described network, with
            // fan-in scaled weights, wants a tenth of it (`Recipe.describedNetworkAdamLearningRate`).
            let recipe = request.recipe ?? .original
            let adam = (request.optimizer ?? recipe.defaultOptimizer) == .adam
            let defaultRate: Float? = architecture.isPaper || !adam ? nil : Recipe.describedNetworkAdamLearningRate
            let options = TrainingOptions(
                recipe: recipe, optimizer: request.optimizer, epochs: request.epochs,
                batchSize: request.batchSize,
                learningRate: request.learningRate ?? defaultRate, momentum: request.momentum, seed: request.seed,
                initialization: request.initialization, learningRateDecay: request.learningRateDecay)
            record = TrainingRecord(
                options: options, position: TrainingPosition(), dataset: request.dataset,
                trainSamples: min(request.limit ?? all.train.count, all.train.count))
            parameters = request.initialization.makeParameters(for: architecture)
        }
        let data = DatasetPair(train: all.train.prefix(record.trainSamples), test: all.test)
        var engineOptions = request.engineOptions
        engineOptions.architecture = architecture
        if engineOptions.strategy == nil { engineOptions.strategy = descriptor.defaultStrategy(batchSize: record.options.batchSize) }
        let settings = try descriptor.resolve(engineOptions)
        try MemoryBudget.require(
            MemoryBudget.trainingBytes(
                threads: settings.threads, batch: record.options.batchSize,
                shardImages: descriptor.launcher == nil ? 0 : data.train.count),
            for: "training with \(settings.threads) thread(s) and batches of \(record.options.batchSize)")
        // Options and availability were checked before the data was loaded.
        let engine = try descriptor.make(settings, parameters)
        try engine.load(parameters: parameters, optimizerState: optimizerState)
        return (record, data, parameters, engine, architecture)
    }

    /// Options set in the request must agree with the checkpoint's run.
    private static func checkConflicts(_ request: TrainingRequest, _ record: TrainingRecord, path: String) throws {
        let o = record.options
        var conflicts: [String] = []
        if let recipe = request.recipe, recipe != o.recipe {
            conflicts.append("--recipe \(recipe.rawValue) (checkpoint: \(o.recipe.rawValue))")
        }
        if let optimizer = request.optimizer, optimizer != o.rule.optimizer {
            conflicts.append("--optimizer \(optimizer.rawValue) (checkpoint: \(o.rule.optimizer.rawValue))")
        }
        if let batch = request.batchSize, batch != o.batchSize { conflicts.append("--batch \(batch) (checkpoint: \(o.batchSize))") }
        if let lr = request.learningRate, lr != o.rule.learningRate { conflicts.append("--lr \(lr) (checkpoint: \(o.rule.learningRate))") }
        if let decay = request.learningRateDecay, decay != o.learningRateDecay {
            conflicts.append("--lr-decay \(decay) (checkpoint: \(o.learningRateDecay))")
        }
        if let momentum = request.momentum, momentum != o.rule.momentum {
            conflicts.append("--momentum \(momentum) (checkpoint: \(o.rule.momentum))")
        }
        if let limit = request.limit, limit != record.trainSamples {
            conflicts.append("--limit \(limit) (checkpoint: \(record.trainSamples))")
        }
        if request.dataset != record.dataset {
            conflicts.append("--dataset \(request.dataset.rawValue) (checkpoint: \(record.dataset.rawValue))")
        }
        if !conflicts.isEmpty {
            throw TrainingRequestError(message: "\(path) continues a different run; drop or fix: \(conflicts.joined(separator: ", "))")
        }
    }

    /// Trains to the requested number of epochs or until stopped. On a job of several ranks an
    /// error after set-up ends every rank (`ProcessGroup.fail`), since the others may be waiting
    /// in a collective.
    public func run() throws -> TrainingResult {
        do {
            return try train()
        } catch  where group.size > 1 {
            group.fail(error)
        }
    }

    private func train() throws -> TrainingResult {
        let options = record.options
        let trainer = Trainer(engine: engine, data: data, options: options, start: record.position)
        trainer.architecture = architecture
        trainer.progressInterval = progressInterval
        trainer.checkpointInterval = request.checkpointInterval
        var lastSaved: String?
        func checkpoint(_ position: TrainingPosition) throws {
            guard let path = request.checkpoint, isReporter else { return }
            let state = TrainingRecord(options: options, position: position, dataset: record.dataset, trainSamples: record.trainSamples)
            try Checkpoint(
                parameters: try engine.currentParameters(), optimizerState: try engine.currentOptimizerState(),
                record: state, engine: engine.description, architecture: architecture
            ).write(to: path)
            lastSaved = path
        }
        if isReporter { trainer.onProgress = onProgress }
        trainer.onCheckpoint = checkpoint
        let group = self.group, stopRequested = self.stopRequested
        trainer.shouldStop = {
            // Every rank runs the same chunks, so they all ask here at the same step.
            group.anyRank(stopRequested(), context: "agreeing on stopping")
        }
        var reports: [EpochReport] = []
        trainer.onEpoch = { [self] report in
            if group.size > 1 {
                let hashes = group.allgather(report.parameterHash, context: "comparing parameter hashes")
                let divergent = hashes.indices.filter { hashes[$0] != hashes[0] }
                if !divergent.isEmpty {
                    throw TrainingRequestError(
                        message:
                            "after epoch \(report.epoch) ranks \(divergent) hold parameters that differ from rank 0's: the replicas diverged"
                    )
                }
            }
            reports.append(report)
            try checkpoint(TrainingPosition(epoch: report.epoch, position: 0))
            if isReporter { onEpoch?(report) }
        }

        let outcome = try trainer.run()
        if case .interrupted(let position) = outcome { try checkpoint(position) }
        var testErrors = reports.last?.testErrors
        if testErrors == nil, outcome == .finished { testErrors = try engine.countErrors(on: data.test, recipe: options.recipe) }
        var finalRecord = record
        finalRecord.position = trainer.position
        return TrainingResult(
            outcome: outcome, epochs: reports, record: finalRecord, engine: engine.description,
            ranks: group.size, finalHash: try engine.currentParameters().hashString,
            testErrors: testErrors, testCount: data.test.count, checkpoint: lastSaved)
    }
}
