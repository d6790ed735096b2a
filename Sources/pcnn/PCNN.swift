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
        subcommands: [Train.self, Test.self, Predict.self, Download.self, Bench.self, Devices.self],
        defaultSubcommand: nil
    )
}

extension EngineKind: ExpressibleByArgument {}
extension Recipe: ExpressibleByArgument {}
extension DatasetKind: ExpressibleByArgument {}

/// `--init original|seeded`.
enum InitChoice: String, ExpressibleByArgument, CaseIterable {
    case original, seeded
}
extension ThreadStrategy: ExpressibleByArgument {}

/// `--threads` and `--strategy` of the threads engine.
struct EngineOptions: ParsableArguments {
    @Option(help: "Threads of the threads engine (default: the number of cores), or per rank of the mpi engine's data strategy (default: 1).")
    var threads: Int?

    @Option(help: "threads and mpi engines: layer (split each layer, the paper's OpenMP and MPI strategy) or data (split the batch).")
    var strategy: ThreadStrategy = .data

    func validate(engine: EngineKind) throws {
        if let threads {
            guard (1...256).contains(threads) else {
                throw ValidationError("--threads must be between 1 and 256, got \(threads)")
            }
            guard engine == .threads || (engine == .mpi && strategy == .data) else {
                throw ValidationError("--threads applies to --engine threads, and to --engine mpi --strategy data")
            }
            if threads > EngineConfiguration.availableCores {
                note("note: \(threads) threads on \(EngineConfiguration.availableCores) cores: oversubscribed, expect it to be slower")
            }
        }
    }

    func configuration(_ kind: EngineKind) -> EngineConfiguration {
        EngineConfiguration(kind: kind, threads: threads ?? (kind == .mpi ? 1 : EngineConfiguration.availableCores),
                            strategy: strategy)
    }
}
