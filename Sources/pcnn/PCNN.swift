import ArgumentParser
import ParallelCNN

@main
struct PCNN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pcnn",
        abstract: "Train the seed CNN of 'Parallelizing Convolutional Neural Networks' on MNIST, fast, on any parallel hardware.",
        discussion: """
            Start with `pcnn train`: it finds MNIST (--data DIR, then $MNIST_DIR, then ./data/mnist), \
            downloads it if it is nowhere to be found, trains, reports the test error and writes a checkpoint.
            """,
        version: "0.1.0",
        subcommands: [Train.self, Test.self, Predict.self, Download.self, Bench.self, Devices.self, Nets.self],
        defaultSubcommand: nil
    )
}

extension EngineKind: ExpressibleByArgument {
    public init?(argument: String) {
        guard EngineRegistry.engines.contains(where: { $0.kind.rawValue == argument }) else { return nil }
        self.init(rawValue: argument)
    }
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}
extension EngineStrategy: ExpressibleByArgument {}
extension Recipe: ExpressibleByArgument {}
extension Optimizer: ExpressibleByArgument {}
extension DatasetKind: ExpressibleByArgument {}

/// `--init original|seeded`.
enum InitChoice: String, ExpressibleByArgument, CaseIterable {
    case original, seeded
}

/// `--engine` and its options, shared by train, test, predict and bench. What each engine
/// takes comes from the engine registry.
struct EngineOptionGroup: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Where to run: \(EngineRegistry.engines.map { "\($0.kind.rawValue) (\($0.summary))" }.joined(separator: "; ")). `pcnn devices` says which are available here.",
            valueName: "engine"))
    var engine: EngineKind = .sequential

    @Option(
        help: "Threads of the threads engine (default: the number of cores), or per rank of the mpi engine's data strategy (default: 1).")
    var threads: Int?

    @Option(
        help:
            "How the engine splits the work: data (each batch's samples), layer (each layer of a sample: the paper's OpenMP, MPI and CUDA designs) or fused (GPU engines: one persistent kernel). Default: data for threads and mpi (layer at batch 1, where a batch has nothing to split), fused for opencl and cuda."
    )
    var strategy: EngineStrategy?

    @Option(help: "Device number of a GPU engine (default 0).")
    var device: Int?

    var options: EngineOptions { EngineOptions(threads: threads, strategy: strategy, device: device) }

    /// Checks the options against the chosen engine before anything is loaded or allocated.
    func validate() throws {
        do {
            let settings = try EngineRegistry.descriptor(engine).resolve(options)
            if threads != nil, settings.threads > EngineRegistry.availableCores {
                note("note: \(settings.threads) threads on \(EngineRegistry.availableCores) cores: oversubscribed, expect it to be slower")
            }
        } catch {
            throw ValidationError("\(error)")
        }
    }

    /// The processes of the chosen engine (starting MPI for mpi); ranks other than 0 go silent.
    func processGroup() throws -> any ProcessGroup {
        let group = try EngineRegistry.descriptor(engine).processGroup()
        silent = group.rank != 0
        return group
    }

    func makeEngine(parameters: Parameters, architecture: Architecture = .paper) throws -> any Engine {
        var options = self.options
        options.architecture = architecture
        return try EngineRegistry.makeEngine(engine, options, parameters: parameters)
    }
}

/// `--net`, shared by `train` and `bench`.
struct NetworkOption: ParsableArguments {
    @Option(
        name: .customLong("net"),
        help: ArgumentHelp(
            "The network: a preset (\(NetworkDescription.presets.compactMap(\.presetName).joined(separator: ", ")); `pcnn nets` lists them) or a description such as \"conv 6 5x5 pad=2 relu; maxpool 2x2; dense 10\" (layers conv F KxK [stride=S] [pad=P], subsample KxK, avgpool KxK [stride=S], maxpool KxK [stride=S], dense N, each optionally followed by sigmoid, tanh or relu; the last layer is dense 10). Default: paper (for `pcnn train --resume`, the checkpoint's).",
            valueName: "name|description"))
    var net: String?

    /// The parsed description, nil when `--net` is not given.
    func description() throws -> NetworkDescription? {
        guard let net else { return nil }
        do {
            return try NetworkDescription.named(net)
        } catch {
            throw ValidationError("--net: \(error)")
        }
    }

    func validate() throws { _ = try description() }
}
