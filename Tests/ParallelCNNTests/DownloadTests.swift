import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import Testing
import ParallelCNN

/// A local server run by `python3`, which prints its port on its first line of output.
/// It is stopped (by process id) at `stop()` or when the object goes away.
final class LocalServer {
    /// Serves a directory over HTTP, without request logging.
    static let fileServerScript = """
        import functools, http.server, sys
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args): pass
        handler = functools.partial(Quiet, directory=sys.argv[1])
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        print(server.server_address[1], flush=True)
        server.serve_forever()
        """
    /// Accepts connections and never answers (to test timeouts).
    static let silentServerScript = """
        import socket
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        print(listener.getsockname()[1], flush=True)
        held = []
        while True:
            held.append(listener.accept()[0])
        """

    static let isAvailable = (try? runProcess("python3", ["-c", "pass"]))?.status == 0

    let port: Int
    private let process = Process()

    /// Starts `script` with `arguments` and waits at most `timeout` seconds for its port.
    init(script: String, arguments: [String] = [], timeout: TimeInterval = 20) throws {
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-u", "-c", script] + arguments
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()

        let firstLine = Mutex<String?>(nil)
        let lineRead = DispatchSemaphore(value: 0)
        let reader = output.fileHandleForReading
        Thread.detachNewThread { [reader] in
            var bytes = Data()
            while !bytes.contains(UInt8(ascii: "\n")) {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                bytes.append(chunk)
            }
            firstLine.withLock { $0 = String(decoding: bytes, as: UTF8.self) }
            lineRead.signal()
        }
        let answered = lineRead.wait(timeout: .now() + timeout) == .success
        let text = firstLine.withLock { $0 }?.trimmingCharacters(in: .whitespacesAndNewlines)
        guard answered, let text, let port = Int(text) else {
            Self.forceStop(process)
            throw ServerError(reason: "python3 did not report its port within \(timeout) s: \(text ?? "nothing")")
        }
        self.port = port
    }

    struct ServerError: Error, CustomStringConvertible {
        let reason: String
        var description: String { reason }
    }

    /// `http://127.0.0.1:<port>/<path>/`.
    func url(_ path: String) -> URL {
        URL(string: "http://127.0.0.1:\(port)/\(path)/")!
    }

    /// Kills the server with SIGKILL: processes started from test threads inherit their blocked
    /// signal mask, so `Process.terminate()` (SIGTERM) may never arrive.
    func stop() { Self.forceStop(process) }

    private static func forceStop(_ process: Process) {
        guard process.isRunning else { return }
        _ = kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit { stop() }
}

@Suite(
    "Downloader", TestData.mnistTrait, .enabled(if: LocalServer.isAvailable, "python3 is needed to serve mirrors"),
    .timeLimit(.minutes(2)))
struct DownloadTests {
    /// Base URLs where nothing listens.
    static let deadMirrors = [URL(string: "http://127.0.0.1:1/mnist/")!, URL(string: "http://127.0.0.1:9/mnist/")!]

    /// A served tree: `good/` holds copies of the MNIST files, `corrupt/` copies with one byte
    /// flipped, `truncated/` their first halves, `empty/` nothing (HTTP 404).
    static func makeMirrorTree(in root: URL) throws {
        let source = try TestData.requireMNISTDirectory()
        for mirror in ["good", "corrupt", "truncated", "empty"] {
            try FileManager.default.createDirectory(
                at: root.appendingPathComponent(mirror),
                withIntermediateDirectories: true)
        }
        for name in DatasetKind.mnist.fileNames {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: source).appendingPathComponent(name))
            var corrupt = bytes
            corrupt[corrupt.count / 2] ^= 0x01
            try bytes.write(to: root.appendingPathComponent("good/\(name)"))
            try corrupt.write(to: root.appendingPathComponent("corrupt/\(name)"))
            try bytes.prefix(bytes.count / 2).write(to: root.appendingPathComponent("truncated/\(name)"))
        }
    }

    /// Runs `body` with a served mirror tree and an empty target directory, then stops the
    /// server and removes both directories.
    static func withMirrors(_ body: (LocalServer, _ target: URL) throws -> Void) throws {
        try TestData.withTemporaryDirectory { root in
            let served = root.appendingPathComponent("served")
            try makeMirrorTree(in: served)
            let server = try LocalServer(script: LocalServer.fileServerScript, arguments: [served.path])
            defer { server.stop() }
            try body(server, root.appendingPathComponent("target"))
        }
    }

    /// Files left in `directory` (none if it does not exist).
    static func contents(of directory: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).sorted()
    }

    /// Checks that `directory` holds exactly the four files, each with its published digest.
    static func expectVerifiedFiles(in directory: URL) throws {
        #expect(contents(of: directory) == DatasetKind.mnist.fileNames.sorted())
        for (name, digest) in DatasetKind.mnist.sha256 {
            #expect(try SHA256.hexDigest(ofFileAt: directory.appendingPathComponent(name).path) == digest)
        }
    }

    /// Runs a download that must fail; returns its error.
    static func failingDownload(_ mirrors: [URL], into target: URL, timeout: TimeInterval = 10) -> DownloadError? {
        #expect(throws: DownloadError.self) {
            try Downloader.download(.mnist, into: target.path, mirrors: mirrors, timeout: timeout) { _ in }
        }
    }

    @Test("a good mirror: all four files arrive verified; a second run fetches nothing")
    func goodMirror() throws {
        try Self.withMirrors { server, target in
            var log: [String] = []
            try Downloader.download(.mnist, into: target.path, mirrors: [server.url("good")]) { log.append($0) }
            try Self.expectVerifiedFiles(in: target)
            #expect(log.filter { $0.hasSuffix("done, SHA-256 verified") }.count == 4)

            log.removeAll()
            try Downloader.download(.mnist, into: target.path, mirrors: Self.deadMirrors) { log.append($0) }
            #expect(log.count == 4)
            #expect(log.allSatisfy { $0.hasSuffix("already present, SHA-256 verified") })
            #expect(try DatasetLoader.locate(.mnist, explicit: target.path) == target.path)
        }
    }

    @Test(
        "corrupt and truncated files are rejected and never appear under their final name",
        arguments: ["corrupt", "truncated"])
    func badMirror(kind: String) throws {
        try Self.withMirrors { server, target in
            let error = Self.failingDownload([server.url(kind)], into: target)
            guard case .allMirrorsFailed(.mnist, let file, let failures) = error else {
                Issue.record("expected allMirrorsFailed, got \(String(describing: error))")
                return
            }
            #expect(file == DatasetKind.trainImagesFile)
            #expect(failures.count == 1)
            #expect(failures.first?.reason.contains("SHA-256 mismatch") == true)
            #expect(failures.first?.url == server.url(kind).appendingPathComponent(file))
            #expect(Self.contents(of: target).isEmpty, "left behind: \(Self.contents(of: target))")
        }
    }

    @Test("falls back past a dead port, a 404 and a corrupt mirror to a good one")
    func fallback() throws {
        try Self.withMirrors { server, target in
            var log: [String] = []
            let mirrors = [Self.deadMirrors[0], server.url("empty"), server.url("corrupt"), server.url("good")]
            try Downloader.download(.mnist, into: target.path, mirrors: mirrors) { log.append($0) }
            try Self.expectVerifiedFiles(in: target)
            let failures = log.filter { $0.contains("failed:") }
            #expect(failures.count == 12)
            #expect(failures.contains { $0.contains("HTTP status 404") })
            #expect(failures.contains { $0.contains("cannot connect") })
        }
    }

    @Test("a file: mirror works, and a wrong file already present is replaced")
    func fileMirrorAndReplacement() throws {
        try Self.withMirrors { _, target in
            let good = target.deletingLastPathComponent().appendingPathComponent("served/good", isDirectory: true)
            try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
            try Data("not mnist".utf8).write(to: target.appendingPathComponent(DatasetKind.trainLabelsFile))
            var log: [String] = []
            try Downloader.download(.mnist, into: target.path, mirrors: [good]) { log.append($0) }
            try Self.expectVerifiedFiles(in: target)
            #expect(log.contains { $0.contains("present but its SHA-256 does not match") })
        }
    }

    @Test("only dead mirrors: the error lists each one and says how to use local files")
    func deadMirrors() throws {
        try TestData.withTemporaryDirectory { root in
            let target = root.appendingPathComponent("target")
            let error = try #require(Self.failingDownload(Self.deadMirrors, into: target))
            let message = error.description
            for mirror in Self.deadMirrors {
                #expect(message.contains(mirror.appendingPathComponent(DatasetKind.trainImagesFile).absoluteString))
            }
            #expect(message.contains("--data DIR"))
            #expect(message.contains("$MNIST_DIR"))
            #expect(message.contains(Downloader.mirrorsEnvironmentVariable))
            #expect(Self.contents(of: target).isEmpty)
        }
    }

    @Test("a mirror that never answers times out")
    func silentMirror() throws {
        let server = try LocalServer(script: LocalServer.silentServerScript)
        defer { server.stop() }
        try TestData.withTemporaryDirectory { root in
            let target = root.appendingPathComponent("target")
            let started = Date()
            let error = Self.failingDownload([server.url("mnist")], into: target, timeout: 1)
            #expect(Date().timeIntervalSince(started) < 25)
            guard case .allMirrorsFailed(_, _, let failures) = error else {
                Issue.record("expected allMirrorsFailed, got \(String(describing: error))")
                return
            }
            #expect(failures.first?.reason.contains("timed out") == true, "\(failures)")
            #expect(Self.contents(of: target).isEmpty)
        }
    }
}

@Suite("Downloader configuration")
struct DownloaderConfigurationTests {
    @Test("Fashion-MNIST is never downloaded unverified")
    func fashionRefused() throws {
        try TestData.withTemporaryDirectory { root in
            let target = root.appendingPathComponent("fashion")
            let error = #expect(throws: DownloadError.self) {
                try Downloader.download(.fashionMNIST, into: target.path) { _ in }
            }
            guard case .noKnownDigests(.fashionMNIST) = error else {
                Issue.record("expected noKnownDigests, got \(String(describing: error))")
                return
            }
            let message = error?.description ?? ""
            #expect(message.contains("dataset-fashion-mnist"))
            #expect(message.contains("/usr/share/datasets/fashion-mnist"))
            #expect(message.contains("--data DIR"))
            #expect(!FileManager.default.fileExists(atPath: target.path))
        }
    }

    @Test("PCNN_MNIST_MIRRORS overrides the MNIST mirrors only")
    func mirrorOverride() {
        let environment = ["PCNN_MNIST_MIRRORS": "http://127.0.0.1:8000/a/, file:///srv/mnist ,not a url"]
        #expect(
            Downloader.mirrors(for: .mnist, environment: environment).map(\.absoluteString)
                == ["http://127.0.0.1:8000/a/", "file:///srv/mnist"])
        #expect(Downloader.mirrors(for: .mnist, environment: [:]) == DatasetKind.mnist.defaultMirrors)
        #expect(
            Downloader.mirrors(for: .fashionMNIST, environment: environment)
                == DatasetKind.fashionMNIST.defaultMirrors)
        #expect(DatasetKind.mnist.defaultMirrors.count == 3)
    }

    @Test("an empty mirror list is an error")
    func noMirrors() throws {
        try TestData.withTemporaryDirectory { root in
            #expect(throws: DownloadError.noMirrors(kind: .mnist)) {
                try Downloader.download(.mnist, into: root.path, mirrors: []) { _ in }
            }
        }
    }
}
