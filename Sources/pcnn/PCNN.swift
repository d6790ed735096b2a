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
        subcommands: [Train.self, Test.self, Predict.self, Download.self],
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
