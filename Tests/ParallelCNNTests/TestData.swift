import Foundation
import Synchronization
import Testing
import ParallelCNN

/// Where tests find the MNIST files, and how they behave when there are none.
///
/// Tests that need MNIST carry `TestData.mnistTrait` and start with
/// `let directory = try TestData.requireMNISTDirectory()`. Without data they are skipped, unless
/// `PCNN_REQUIRE_DATA=1` is set: then they run and fail, so CI cannot pass by skipping them.
enum TestData {
    /// Root of the package: this file is `<root>/Tests/ParallelCNNTests/TestData.swift`.
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Whether a missing data directory must fail the tests rather than skip them.
    static let dataRequired = ProcessInfo.processInfo.environment["PCNN_REQUIRE_DATA"] == "1"

    /// The first of `$MNIST_DIR`, `<root>/data/mnist`, `<root>/../shared/datasets/mnist` that holds
    /// the four MNIST files (compressed or not); nil if none does.
    static let mnistDirectory: String? = {
        let candidates: [String?] = [
            ProcessInfo.processInfo.environment["MNIST_DIR"],
            packageRoot.appendingPathComponent("data/mnist").path,
            packageRoot.appendingPathComponent("../shared/datasets/mnist").standardized.path
        ]
        return candidates.compactMap { $0 }.first { DatasetLoader.missingFiles(.mnist, in: $0).isEmpty }
    }()

    /// Enables a test when MNIST is available, or when `PCNN_REQUIRE_DATA=1` demands it.
    static let mnistTrait: ConditionTrait = .enabled(
        if: mnistDirectory != nil || dataRequired,
        "MNIST not found ($MNIST_DIR, data/mnist, ../shared/datasets/mnist); PCNN_REQUIRE_DATA=1 fails instead")

    /// The MNIST directory, or a test failure saying why there is none.
    static func requireMNISTDirectory(sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try #require(
            mnistDirectory, "PCNN_REQUIRE_DATA=1 but no MNIST directory was found",
            sourceLocation: sourceLocation)
    }

    /// The full MNIST training and test sets, loaded once for all tests.
    static func mnist(sourceLocation: SourceLocation = #_sourceLocation) throws -> DatasetPair {
        let directory = try requireMNISTDirectory(sourceLocation: sourceLocation)
        loadingMNIST.lock()
        defer { loadingMNIST.unlock() }
        if let pair = loadedMNIST { return pair }
        let pair = try DatasetLoader.load(.mnist, from: directory)
        loadedMNIST = pair
        return pair
    }

    // NSLock (a pthread mutex) rather than Synchronization's Mutex: a contended Mutex waits and
    // wakes inside libswiftSynchronization.so, which ThreadSanitizer cannot see, so under
    // `scripts/sanitize` a test reading the arrays another test's thread had just loaded was
    // reported as a data race. ThreadSanitizer does see pthread mutexes.
    private static let loadingMNIST = NSLock()
    nonisolated(unsafe) private static var loadedMNIST: DatasetPair?

    /// A fresh, empty temporary directory; the caller removes it (see `withTemporaryDirectory`).
    static func makeTemporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("pcnn-test-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Runs `body` with a fresh temporary directory and removes the directory afterwards.
    @discardableResult
    static func withTemporaryDirectory<T>(_ body: (URL) throws -> T) throws -> T {
        let url = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: url) }
        return try body(url)
    }
}
