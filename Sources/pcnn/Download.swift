import ArgumentParser
import ParallelCNN

struct Download: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download MNIST into ./data/mnist (or --dir), verifying every file's SHA-256.",
        discussion: """
            Tries several public mirrors per file ($PCNN_MNIST_MIRRORS, comma-separated base URLs, \
            replaces them). A file is written under its final name only after its digest matched. \
            Offline? Point --data (or $MNIST_DIR) at a directory that already holds the files.
            """)

    @Option(help: "Data set to fetch (only mnist has known digests).")
    var dataset: DatasetKind = .mnist

    @Option(help: "Target directory (default: ./data/<dataset>).")
    var dir: String?

    func run() throws {
        let target = dir ?? "data/\(dataset.rawValue)"
        do {
            try Downloader.download(dataset, into: target, log: note)
            note("\(dataset.rawValue): all files present and verified in \(target)")
        } catch {
            throw fail("\(error)")
        }
    }
}
