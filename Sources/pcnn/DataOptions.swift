import ArgumentParser
import Foundation
import ParallelCNN

/// Where the data comes from; shared by every command that reads MNIST.
struct DataOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Directory holding the data set's files: MNIST's or Fashion-MNIST's four IDX files (raw or .gz), or CIFAR-10's binary batches. Default: $MNIST_DIR, then ./data/mnist ($FASHION_MNIST_DIR, then ./data/fashion-mnist and /usr/share/datasets/fashion-mnist; $CIFAR10_DIR, then ./data/cifar-10-batches-bin and ./data/cifar10).",
            valueName: "dir"))
    var data: String?

    @Option(
        name: .long,
        help:
            "Data set: mnist, fashion-mnist (the same format; Debian's dataset-fashion-mnist installs it in /usr/share/datasets/fashion-mnist) or cifar10 (3x32x32 colour images, the binary version's data_batch_1.bin to data_batch_5.bin and test_batch.bin)."
    )
    var dataset: DatasetKind = .mnist

    /// The directory `load` reads from, once it has found or downloaded the files.
    var resolvedDirectory: String? {
        (try? DatasetLoader.locate(dataset, explicit: data)) ?? nil
    }

    /// Loads the data, downloading MNIST into ./data/<name> first if it is nowhere to be found
    /// and `download` is allowed.
    func load(download: Bool, log: (String) -> Void) throws -> DatasetPair {
        if let directory = try DatasetLoader.locate(dataset, explicit: data) {
            return try DatasetLoader.load(dataset, from: directory)
        }
        let target = "data/\(dataset.rawValue)"
        guard download else {
            throw ValidationError(
                "no \(dataset.rawValue) files found (looked in --data, $\(dataset.directoryEnvironmentVariable), \(dataset.defaultDirectories.joined(separator: ", "))); run `pcnn download` or pass --data DIR"
            )
        }
        log(
            "No \(dataset.rawValue) files found in --data, $\(dataset.directoryEnvironmentVariable) or \(dataset.defaultDirectories.joined(separator: ", ")); downloading to ./\(target) first."
        )
        try Downloader.download(dataset, into: target, log: log)
        return try DatasetLoader.load(dataset, from: target)
    }
}

/// Lines for the user go to standard error, so `--json` keeps standard output clean.
/// Set on MPI ranks other than 0: only rank 0 reports.
nonisolated(unsafe) var silent = false

func note(_ line: String) {
    if silent { return }
    FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
}

/// Prints `error` as the tool's error and exits non-zero.
func fail(_ message: String) -> ExitCode {
    note("error: \(message)")
    return ExitCode.failure
}
