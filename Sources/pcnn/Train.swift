import ArgumentParser
import Foundation
import ParallelCNN

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the network, report the test error, write a checkpoint.",
        discussion: """
            Recipes:
              original  the paper's training rule exactly, as the project's specification (SPEC.md) \
            fixes it; docs/recipes.md tells why: sigmoid outputs, error without output derivative, c1 gradients \
            /576, s1 bias /216, SGD with dt = 0.1, one sample per step in file order. With --batch B > 1 \
            the B per-sample updates (all from the same parameters) are averaged, with momentum 0.8 by \
            default and the c1 step multiplied by min(4B, 576): batch 64 reaches 8.8% after one epoch \
            (plain averaging: 20.3%). --lr and --momentum override the defaults. Its progress shows the \
            paper's error function as "SPEC error": the mean over samples of sqrt(Σ (target - output)²) \
            over the ten sigmoid outputs.
              modern    softmax cross-entropy with true gradients, minibatches (default --batch 32) \
            reshuffled every epoch from --seed, with Adam by default (--lr 0.03 on the paper's \
            network and 0.003 on any other, --momentum 0.9 --lr-decay 0.4 at every batch size): \
            batch 64 reaches 2.4% in 3 epochs. \
            --optimizer sgd takes momentum SGD instead (--lr 0.05 --momentum 0.9 --lr-decay 0.5; \
            above batch 32 lr 0.05·B/32, at most 0.1, and lr-decay 0.5^(32/B)): batch 64 reaches 4.4% \
            in 3 epochs.

            Optimizers (--optimizer): sgd, heavy-ball momentum SGD (--momentum 0 is plain SGD); adam, \
            Adam with --momentum as beta1, beta2 0.95 and epsilon 1e-8, its first and second moments \
            kept in the checkpoint.

            Engines (--engine, --strategy, --threads, --device; `pcnn devices` says which run here): \
            reference (plain, exact, slow: the oracle), sequential (fast, one core), threads \
            (--threads T, default all cores; --strategy layer splits each layer across threads as the \
            paper's OpenMP version and is bit-identical to sequential; --strategy data splits each \
            batch's samples and equals sequential with the same --batch), mpi (under mpirun -np N).

            A non-finite loss or parameter stops training with an error naming the epoch and step; \
            the checkpoint then still holds the last good model.

            A checkpoint is written after every epoch, every 60 s within an epoch (--checkpoint-interval), and on Ctrl-C, \
            SIGTERM or SIGHUP (the first stops cleanly, a second one kills). --resume FILE continues the run it \
            holds to the same final parameters as an uninterrupted run, saving back into FILE unless --save says otherwise.
            """)

    @OptionGroup var source: DataOptions

    @OptionGroup var engine: EngineOptionGroup

    @OptionGroup var network: NetworkOption

    @Option(help: "Training rule: original (the default: the paper's, see below) or modern.")
    var recipe: Recipe?

    @Option(parsing: .unconditional, help: "Epochs to complete (with --resume: in total).")
    var epochs: Int = 1

    @Option(help: "Optimizer: sgd (momentum SGD) or adam (default: sgd for original, adam for modern).")
    var optimizer: Optimizer?

    @Option(parsing: .unconditional, help: "Samples per optimizer step (default: 1 for original, 32 for modern).")
    var batch: Int?

    @Option(
        parsing: .unconditional,
        help:
            "Learning rate (default: 0.1 for original; for adam 0.03 on the paper's network, 0.003 on any other; 0.05 for sgd on modern, times B/32 above batch 32, at most 0.1)."
    )
    var lr: Float?

    @Option(
        parsing: .unconditional,
        help: "Momentum, or beta1 of adam (default: 0 for original at batch 1, 0.8 at larger batches; 0.9 for modern).")
    var momentum: Float?

    @Option(
        name: .customLong("lr-decay"), parsing: .unconditional,
        help: "Learning-rate factor per epoch (default: 1 for original; 0.4 for adam; 0.5 for sgd on modern, 0.5^(32/B) above batch 32).")
    var lrDecay: Float?

    @Option(
        name: .customLong("init"),
        help: "Initial weights: original (glibc rand(), as the paper's program) or seeded (portable, from --seed).")
    var initChoice: InitChoice = .original

    @Option(parsing: .unconditional, help: "Seed of --init seeded and of the modern recipe's shuffles.")
    var seed: UInt64 = 1

    @Option(parsing: .unconditional, help: "Train on the first N training samples only.")
    var limit: Int?

    @Option(
        help: "Checkpoint file (safetensors). Default: the --resume file when resuming, else \(Self.defaultCheckpoint).")
    var save: String?

    static let defaultCheckpoint = "pcnn-model.safetensors"

    @Flag(help: "Do not write a checkpoint.")
    var noSave = false

    @Option(name: .customLong("checkpoint-interval"), parsing: .unconditional, help: "Seconds between checkpoints within an epoch.")
    var checkpointInterval: Double = 60

    @Option(help: "Continue the run saved in this checkpoint.")
    var resume: String?

    @Flag(help: "Print one JSON object with the results on standard output.")
    var json = false

    func validate() throws {
        if noSave, save != nil { throw ValidationError("--save and --no-save contradict each other; give one") }
        do { try request.validate() } catch { throw ValidationError(error.message) }
    }

    /// Where checkpoints go: --save, else the checkpoint resumed from, else the default; a
    /// symbolic link's target, which the atomic write would otherwise replace by a file.
    private var checkpointPath: String? {
        guard !noSave else { return nil }
        return Self.followingLinks(save ?? resume ?? Self.defaultCheckpoint)
    }

    /// `path`, or where the symbolic link at `path` leads (through up to 16 links, dangling or not).
    static func followingLinks(_ path: String) -> String {
        var current = path
        for _ in 0..<16 {
            guard (try? FileManager.default.attributesOfItem(atPath: current)[.type] as? FileAttributeType) == .typeSymbolicLink,
                let target = try? FileManager.default.destinationOfSymbolicLink(atPath: current)
            else { break }
            let directory = (current as NSString).deletingLastPathComponent
            current = target.hasPrefix("/") || directory.isEmpty ? target : directory + "/" + target
        }
        return current
    }

    func run() throws {
        do {
            try train()
        } catch let exit as ExitCode {
            throw exit
        } catch let error as ValidationError {
            // Found while running, not in the arguments' syntax: an error, without the usage.
            throw fail(error.message)
        } catch is OtherRankFailed {
            throw ExitCode.failure
        } catch let error as RankError {
            silent = false  // set-up failed here: this rank is the one that reports it
            throw fail("\(error)")
        } catch {
            throw fail("\(error)")
        }
    }

    private var request: TrainingRequest {
        var request = TrainingRequest(
            engine: engine.engine, engineOptions: engine.options, epochs: epochs, recipe: recipe,
            checkpoint: checkpointPath, resume: resume)
        request.dataset = source.dataset
        request.network = try? network.description()
        request.optimizer = optimizer
        request.batchSize = batch
        request.learningRate = lr
        request.momentum = momentum
        request.learningRateDecay = lrDecay
        request.limit = limit
        request.initialization = initChoice == .original ? .original : .seeded(seed)
        request.seed = seed
        request.checkpointInterval = checkpointInterval
        return request
    }

    private func train() throws {
        // From the start: a stop asked for while the data loads must not be lost.
        installStopHandlers()
        // Ranks of a job do not download: several processes would write the same files.
        let group = try engine.processGroup()
        if group.rank == 0, let path = checkpointPath { try Self.checkWritable(checkpoint: path) }
        let session = try TrainingSession(request) { try source.load(download: group.size == 1, log: note) }
        // One process stops here; the ranks of a job stop together, at their first step.
        if stopRequested != 0, group.size == 1 {
            note("Stopped before training began; nothing was trained or written.")
            throw ExitCode(130)
        }
        let record = session.record, options = record.options
        if let resume {
            note(
                "Resuming \(resume): \(options.recipe.rawValue) recipe, epoch \(record.position.epoch + 1), sample \(record.position.position), hash \(session.initialParameters.hashString)"
            )
            if record.position.epoch >= epochs {
                note("The checkpoint already holds \(record.position.epoch) epochs; nothing to train (raise --epochs).")
            }
        }
        let architecture = session.architecture
        note(
            "Network \(architecture.network)\(architecture.network.presetName != nil ? " (\(architecture.network.text))" : ""): \(architecture.parameterCount) parameters, \(String(format: "%.2f", architecture.flopsPerTrainingSample / 1e6)) MFLOP per training sample, \(architecture.input) input"
        )
        note(
            "Training \(session.engine.description) engine, \(options.recipe.rawValue) recipe, \(options.rule.optimizer.rawValue), batch \(options.batchSize), lr \(options.rule.learningRate), momentum \(options.rule.momentum), \(record.trainSamples) samples per epoch, initial hash \(session.initialParameters.hashString)"
        )

        if options.batchSize > record.trainSamples {
            note("warning: --batch \(options.batchSize) is larger than the \(record.trainSamples) samples of an epoch: one step per epoch")
        }
        let progress = ProgressReporter(recipe: options.recipe)
        session.onProgress = { progress.update($0) }
        session.onEpoch = { report in
            progress.finishLine()
            note(
                String(
                    format: "epoch %d: %.3f s, train %@ %.6f, train error %.2f%%, test error %.2f%% (%d/%d), hash %@",
                    report.epoch, report.seconds, options.recipe == .original ? "SPEC error" : "loss", report.meanLoss,
                    report.trainErrorPercent, report.testErrorPercent, report.testErrors, report.testCount,
                    Parameters.hexString(report.parameterHash)))
        }
        session.stopRequested = { stopRequested != 0 }
        let result: TrainingResult
        do {
            result = try session.run()
        } catch {
            progress.finishLine()
            if error is DivergenceError, let save = request.checkpoint {
                note(
                    FileManager.default.fileExists(atPath: save)
                        ? "\(save) still holds the last good checkpoint; the diverged model was not saved."
                        : "No checkpoint was written; the diverged model was not saved.")
            }
            throw error
        }
        progress.finishLine()
        if json && session.isReporter {
            let data = try JSONSerialization.data(withJSONObject: result.jsonObject, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }

        if case .interrupted(let position) = result.outcome {
            note(
                "Stopped at epoch \(position.epoch + 1), sample \(position.position)"
                    + (result.checkpoint.map { "; resume with: \(resumeCommand(checkpoint: $0, epochs: options.epochs))" }
                        ?? " (no checkpoint: --no-save)"))
            throw ExitCode(130)
        }
        note(
            String(
                format: "done: %d epoch(s) in this run, %.3f s per epoch, test error %.2f%%, parameter hash %@%@",
                result.epochs.count, result.meanEpochSeconds, result.testErrorPercent ?? 0, result.finalHash,
                result.checkpoint.map { ", checkpoint \($0)" } ?? ""))
    }

    /// The command that continues an interrupted run: the checkpoint, the epochs, and where the
    /// data is (resuming writes back into the checkpoint).
    private func resumeCommand(checkpoint: String, epochs: Int) -> String {
        var words = ["pcnn", "train", "--resume", checkpoint, "--epochs", String(epochs)]
        if source.dataset != .mnist { words += ["--dataset", source.dataset.rawValue] }
        if let data = source.data { words += ["--data", data] }
        return words.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
    }

    /// Refuses, before any training, a checkpoint path that cannot be written: a directory, a
    /// device or other special file (an atomic write would replace it), or a directory without
    /// write permission.
    static func checkWritable(checkpoint path: String) throws {
        let target = URL(fileURLWithPath: path).path
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory) {
            let type = (try? FileManager.default.attributesOfItem(atPath: target)[.type] as? FileAttributeType) ?? nil
            guard !isDirectory.boolValue, type == .typeRegular else {
                throw CheckpointPathError(path: path, fault: "not a regular file; name a file to write the checkpoint to (or --no-save)")
            }
        }
        let directory = URL(fileURLWithPath: target).deletingLastPathComponent().path
        guard FileManager.default.isWritableFile(atPath: directory) else {
            throw CheckpointPathError(
                path: path,
                fault: "cannot create files in \(directory) (missing, or no write permission); choose another --save path (or --no-save)")
        }
    }

    struct CheckpointPathError: Error, CustomStringConvertible {
        let path: String, fault: String
        var description: String { "--save \(path): \(fault)" }
    }
}
