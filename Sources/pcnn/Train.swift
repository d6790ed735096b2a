import ArgumentParser
import Foundation
import ParallelCNN

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the network, report the test error, write a checkpoint.",
        discussion: """
        Recipes:
          original  SPEC.md exactly: sigmoid outputs, error without output derivative, c1 gradients \
        /576, s1 bias /216, SGD with dt = 0.1, one sample per step in file order. With --batch B \
        the B per-sample updates (all from the same parameters) are averaged.
          modern    softmax cross-entropy with true gradients, minibatch momentum SGD (default \
        --batch 32 --lr 0.05 --momentum 0.9 --lr-decay 0.5), reshuffled every epoch from --seed. Best seen: --batch 4 --lr 0.02 reaches 2.46% test error in 3 epochs.

        Engines: reference (plain, exact, slow: the oracle), sequential (fast, one core), threads \
        (--threads T, default all cores; --strategy layer splits each layer across threads as the \
        paper's OpenMP version and is bit-identical to sequential; --strategy data splits each \
        batch's samples and equals sequential with the same --batch; with --recipe original it \
        averages the per-sample updates of the batch).

        A checkpoint is written after every epoch, every 60 s within an epoch, and on Ctrl-C \
        (the first Ctrl-C stops cleanly, a second one kills). --resume FILE continues the run it \
        holds to the same final parameters as an uninterrupted run.
        """)

    @OptionGroup var source: DataOptions

    @Option(help: "Engine: \(EngineKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var engine: EngineKind = .sequential

    @OptionGroup var engineOptions: EngineOptions

    @Option(help: "Training rule: original or modern.")
    var recipe: Recipe?

    @Option(help: "Epochs to complete (with --resume: in total).")
    var epochs: Int = 1

    @Option(help: "Samples per optimizer step (default: 1 for original, 32 for modern).")
    var batch: Int?

    @Option(help: "Learning rate (default: 0.1 for original, 0.05 for modern).")
    var lr: Float?

    @Option(help: "Momentum (default: 0 for original, 0.9 for modern).")
    var momentum: Float?

    @Option(name: .customLong("lr-decay"), help: "Learning-rate factor per epoch (default: 1 for original, 0.5 for modern).")
    var lrDecay: Float?

    @Option(name: .customLong("init"), help: "Initial weights: original (glibc rand(), as the paper's program) or seeded (portable, from --seed).")
    var initChoice: InitChoice = .original

    @Option(help: "Seed of --init seeded and of the modern recipe's shuffles.")
    var seed: UInt64 = 1

    @Option(help: "Train on the first N training samples only.")
    var limit: Int?

    @Option(help: "Checkpoint file (safetensors).")
    var save: String = "pcnn-model.safetensors"

    @Flag(help: "Do not write a checkpoint.")
    var noSave = false

    @Option(help: "Continue the run saved in this checkpoint.")
    var resume: String?

    @Flag(help: "Print one JSON object with the results on standard output.")
    var json = false

    func validate() throws {
        guard epochs >= 1, epochs <= 100_000 else { throw ValidationError("--epochs must be between 1 and 100000, got \(epochs)") }
        if let batch, !(1...60_000).contains(batch) { throw ValidationError("--batch must be between 1 and 60000, got \(batch)") }
        if let lr, !(lr.isFinite && lr > 0) { throw ValidationError("--lr must be a positive number, got \(lr)") }
        if let lrDecay, !(lrDecay > 0 && lrDecay <= 1) { throw ValidationError("--lr-decay must be in (0, 1], got \(lrDecay)") }
        if let momentum, !(momentum >= 0 && momentum < 1) { throw ValidationError("--momentum must be in [0, 1), got \(momentum)") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1, got \(limit)") }
        try engineOptions.validate(engine: engine)
    }

    func run() throws {
        do {
            try train()
        } catch let exit as ExitCode {
            throw exit
        } catch let error as ValidationError {
            throw error
        } catch {
            throw fail("\(error)")
        }
    }

    private func train() throws {
        let group = try engineOptions.configuration(engine).processGroup()
        silent = group.rank != 0
        // Every rank sets up; if any fails (a bad path on one node, say), all stop together and
        // the error is printed once.
        let setup = Result { try prepare(group: group) }
        let (failed, error) = group.agree(setup.map { _ in () }, context: "agreeing on set-up")
        if failed {
            if let error {
                silent = false
                if group.size > 1 { throw fail("rank \(group.rank) of \(group.size): \(error)") }
                throw error
            }
            throw ExitCode.failure
        }
        let (record, parameters, data, train, engineInstance, trainer) = try setup.get()
        do {
            try run(group: group, record: record, parameters: parameters, data: data, train: train,
                    engineInstance: engineInstance, trainer: trainer)
        } catch let error where group.size > 1 && !(error is ExitCode) {
            group.fail(error)   // the other ranks may be waiting in a collective: end them all
        }
    }

    /// Loads the data and the starting point and builds the engine and trainer (on every rank).
    private func prepare(group: any ProcessGroup) throws
        -> (TrainingRecord, Parameters, DatasetPair, Dataset, any Engine, Trainer) {
        let data = try source.load(download: group.size == 1, log: note)
        var record: TrainingRecord
        var parameters: Parameters
        var velocity: Parameters?

        if let resume {
            let checkpoint = try Checkpoint.read(from: resume)
            record = try checkpoint.trainingRecord(path: resume)
            try checkResumeConflicts(record, path: resume)
            record.options.epochs = epochs
            parameters = checkpoint.parameters
            velocity = checkpoint.velocity
            guard record.trainSamples <= data.train.count else {
                throw ValidationError("\(resume) was trained on \(record.trainSamples) samples, but the data has only \(data.train.count)")
            }
            note("Resuming \(resume): \(record.options.recipe.rawValue) recipe, epoch \(record.position.epoch + 1), sample \(record.position.position), hash \(parameters.hashString)")
            if record.position.epoch >= epochs {
                note("The checkpoint already holds \(record.position.epoch) epochs; nothing to train (raise --epochs).")
            }
        } else {
            let r = recipe ?? .original
            let initialization: Initialization = initChoice == .original ? .original : .seeded(seed)
            let options = TrainingOptions(recipe: r, epochs: epochs, batchSize: batch, learningRate: lr,
                                          momentum: momentum, seed: seed, initialization: initialization,
                                          learningRateDecay: lrDecay)
            record = TrainingRecord(options: options, position: TrainingPosition(), dataset: source.dataset,
                                    trainSamples: min(limit ?? data.train.count, data.train.count))
            parameters = initialization.makeParameters()
        }

        let train = data.train.prefix(record.trainSamples)
        let engineInstance = try engineOptions.configuration(engine).makeEngine(parameters: parameters)
        engineInstance.load(parameters: parameters, velocity: velocity)
        var trainerData = DatasetPair(train: train, test: data.test)
        var epochOrder: ((Int) -> [Int32])?
        #if MPI
        if let mpi = engineInstance as? MPIEngine, mpi.strategy == .data, group.size > 1 {
            // Each rank keeps only the samples its part of every batch needs.
            let plan = ShardPlan(count: train.count, batch: record.options.batchSize, ranks: group.size)
            let shard = plan.shard(of: train, rank: group.rank)
            mpi.useShard(shard)
            trainerData = DatasetPair(train: shard.data, test: data.test)
            let options = record.options
            epochOrder = { plan.order(epoch: $0, options: options) }
        }
        #endif
        let trainer = Trainer(engine: engineInstance, data: trainerData, options: record.options, start: record.position)
        trainer.epochOrder = epochOrder
        return (record, parameters, data, train, engineInstance, trainer)
    }

    private func run(group: any ProcessGroup, record: TrainingRecord, parameters: Parameters, data: DatasetPair,
                     train: Dataset, engineInstance: any Engine, trainer: Trainer) throws {
        let options = record.options
        note("Training \(engineInstance.description) engine, \(options.recipe.rawValue) recipe, batch \(options.batchSize), lr \(options.rule.learningRate), momentum \(options.rule.momentum), \(train.count) samples per epoch, initial hash \(parameters.hashString)")

        let progress = ProgressReporter(recipe: options.recipe)
        var epochReports: [EpochReport] = []
        var lastSaved: String?
        func checkpoint(_ position: TrainingPosition) throws {
            guard !noSave, group.rank == 0 else { return }
            let state = TrainingRecord(options: options, position: position, dataset: record.dataset, trainSamples: train.count)
            try Checkpoint(parameters: engineInstance.currentParameters(), velocity: engineInstance.currentVelocity(),
                           record: state, engine: engineInstance.description).write(to: save)
            lastSaved = save
        }
        var saveError: Error?
        if group.rank == 0 { trainer.onProgress = { progress.update($0) } }
        trainer.onCheckpoint = { position in
            do { try checkpoint(position) } catch { saveError = error }
        }
        var stopPolls = 0
        trainer.shouldStop = {
            let local = stopRequested != 0 || saveError != nil
            guard group.size > 1 else { return local }
            // Ranks must stop at the same step: agree every 32 steps (a few µs each time).
            stopPolls += 1
            return stopPolls % 32 == 0 && group.anyRank(local, context: "agreeing on stopping")
        }
        trainer.onEpoch = { report in
            progress.finishLine()
            #if MPI
            if let mpi = engineInstance as? MPIEngine {
                let divergent = mpi.divergentRanks()
                if !divergent.isEmpty {
                    group.fail(ValidationError("after epoch \(report.epoch) ranks \(divergent) hold parameters that differ from rank 0's: the replicas diverged"))
                }
            }
            #endif
            epochReports.append(report)
            do { try checkpoint(TrainingPosition(epoch: report.epoch, position: 0)) } catch { saveError = error }
            note(String(format: "epoch %d: %.3f s, train %@ %.6f, train error %.2f%%, test error %.2f%% (%d/%d), hash %@",
                        report.epoch, report.seconds, options.recipe == .original ? "error" : "loss", report.meanLoss,
                        report.trainErrorPercent, report.testErrorPercent, report.testErrors, report.testCount,
                        Parameters.hexString(report.parameterHash)))
        }

        installStopHandlers()
        let outcome = trainer.run()
        progress.finishLine()
        if let saveError { throw saveError }

        if case .interrupted(let position) = outcome {
            try checkpoint(position)
            note("Stopped at epoch \(position.epoch + 1), sample \(position.position)" +
                 (lastSaved.map { "; resume with: pcnn train --resume \($0) --epochs \(options.epochs)" } ?? " (no checkpoint: --no-save)"))
            throw ExitCode(130)
        }

        let finalParameters = engineInstance.currentParameters()
        let testErrors = epochReports.last.map(\.testErrors) ?? engineInstance.countErrors(on: data.test, recipe: options.recipe)
        let testPercent = 100 * Double(testErrors) / Double(data.test.count)
        let times = epochReports.map(\.seconds)
        let meanTime = times.isEmpty ? 0 : times.reduce(0, +) / Double(times.count)
        note(String(format: "done: %d epoch(s) in this run, %.3f s per epoch, test error %.2f%%, parameter hash %@%@",
                    times.count, meanTime, testPercent, finalParameters.hashString,
                    lastSaved.map { ", checkpoint \($0)" } ?? ""))
        if json && group.rank == 0 {
            let object: [String: Any] = [
                "engine": engineInstance.description,
                "ranks": group.size,
                "recipe": options.recipe.rawValue,
                "epochs": options.epochs,
                "epochs_run": times.count,
                "batch": options.batchSize,
                "learning_rate": Double("\(options.rule.learningRate)") ?? 0,
                "momentum": Double("\(options.rule.momentum)") ?? 0,
                "train_samples": train.count,
                "seconds_per_epoch": times,
                "train_loss": epochReports.map(\.meanLoss),
                "test_error_percent_per_epoch": epochReports.map(\.testErrorPercent),
                "test_error_percent": testPercent,
                "test_errors": testErrors,
                "param_hash": finalParameters.hashString,
                "checkpoint": lastSaved ?? NSNull(),
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    /// Options given on the command line must agree with the checkpoint's run.
    private func checkResumeConflicts(_ record: TrainingRecord, path: String) throws {
        let o = record.options
        var conflicts: [String] = []
        if let recipe, recipe != o.recipe { conflicts.append("--recipe \(recipe.rawValue) (checkpoint: \(o.recipe.rawValue))") }
        if let batch, batch != o.batchSize { conflicts.append("--batch \(batch) (checkpoint: \(o.batchSize))") }
        if let lr, lr != o.rule.learningRate { conflicts.append("--lr \(lr) (checkpoint: \(o.rule.learningRate))") }
        if let lrDecay, lrDecay != o.learningRateDecay { conflicts.append("--lr-decay \(lrDecay) (checkpoint: \(o.learningRateDecay))") }
        if let momentum, momentum != o.rule.momentum { conflicts.append("--momentum \(momentum) (checkpoint: \(o.rule.momentum))") }
        if let limit, limit != record.trainSamples { conflicts.append("--limit \(limit) (checkpoint: \(record.trainSamples))") }
        if source.dataset != record.dataset { conflicts.append("--dataset \(source.dataset.rawValue) (checkpoint: \(record.dataset.rawValue))") }
        if !conflicts.isEmpty {
            throw ValidationError("\(path) continues a different run; drop or fix: \(conflicts.joined(separator: ", "))")
        }
    }
}
