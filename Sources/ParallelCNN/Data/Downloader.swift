import Foundation
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a download failed. `description` says what to do about it.
public enum DownloadError: Error, CustomStringConvertible, Equatable, Sendable {
    /// One mirror's failure for one file.
    public struct MirrorFailure: Sendable, Equatable {
        public let url: URL
        public let reason: String
    }

    /// No SHA-256 digests are known for this data set, so nothing downloaded could be verified.
    case noKnownDigests(kind: DatasetKind)
    /// The mirror list is empty.
    case noMirrors(kind: DatasetKind)
    /// Every mirror failed for `file`; `failures` holds one entry per mirror, in order.
    case allMirrorsFailed(kind: DatasetKind, file: String, failures: [MirrorFailure])
    /// A local file operation failed (creating the directory, writing or renaming a file).
    case fileSystem(path: String, reason: String)

    public var description: String {
        switch self {
        case .noKnownDigests(let kind):
            "refusing to download \(kind.rawValue): no SHA-256 digests are known to verify it. "
                + "Install Debian's `dataset-\(kind.rawValue)` package (files in /usr/share/datasets/\(kind.rawValue)) "
                + "or pass --data DIR (or set $\(kind.directoryEnvironmentVariable)) to a directory holding "
                + kind.fileNames.joined(separator: ", ")
        case .noMirrors(let kind):
            "no mirrors to download \(kind.rawValue) from (check \(Downloader.mirrorsEnvironmentVariable)). "
                + Self.localFilesHint(kind)
        case .allMirrorsFailed(let kind, let file, let failures):
            "could not download \(file) from any mirror:\n"
                + failures.map { "  - \($0.url.absoluteString): \($0.reason)\n" }.joined()
                + Self.localFilesHint(kind)
        case .fileSystem(let path, let reason):
            "\(path): \(reason)"
        }
    }

    private static func localFilesHint(_ kind: DatasetKind) -> String {
        "If you already have the files, pass --data DIR (or set $\(kind.directoryEnvironmentVariable)) "
            + "to the directory holding them. "
            + "Other mirrors can be given as comma-separated base URLs (http, https or file) in "
            + "\(Downloader.mirrorsEnvironmentVariable)."
    }
}

/// Downloads and verifies the IDX files of a data set.
///
/// Guarantees: a file appears under its final name only after its SHA-256 matched
/// `DatasetKind.sha256`. Each file is fetched into `name.part-<pid>` in the target directory,
/// verified on disk, then renamed (atomically) over the final name; a failed attempt removes its
/// temporary file. Files already present with the right digest are not fetched again; one present
/// with a wrong digest is replaced only by a verified download (and left alone if all mirrors fail).
public enum Downloader {
    /// Comma-separated base URLs that replace `DatasetKind.mnist.defaultMirrors` (tests,
    /// air-gapped machines). Applies to MNIST only.
    public static let mirrorsEnvironmentVariable = "PCNN_MNIST_MIRRORS"

    /// The mirrors `download` uses when given none: those in `PCNN_MNIST_MIRRORS` for MNIST if the
    /// variable is set (entries that are not URLs are dropped), else `kind.defaultMirrors`.
    public static func mirrors(
        for kind: DatasetKind, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> [URL] {
        guard kind == .mnist, let list = environment[mirrorsEnvironmentVariable] else { return kind.defaultMirrors }
        return list.split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .compactMap { entry in URL(string: entry).flatMap { $0.scheme == nil ? nil : $0 } }
    }

    /// Fetches `kind`'s four files into `directory` (created if needed), trying `mirrors` (default:
    /// `mirrors(for:)`) in order for each file, and verifies each against `kind.sha256`.
    /// - Parameters:
    ///   - timeout: seconds a request may stay idle before it fails; a whole file may take
    ///     at most 20 times as long.
    ///   - log: progress lines, called on the calling thread.
    /// - Throws: `DownloadError`: `.noKnownDigests` (Fashion-MNIST) before touching the network,
    ///   `.allMirrorsFailed` listing each mirror's failure, or `.fileSystem`.
    public static func download(
        _ kind: DatasetKind, into directory: String, mirrors: [URL]? = nil, timeout: TimeInterval = 30,
        log: (String) -> Void
    ) throws(DownloadError) {
        let digests = kind.sha256
        guard !digests.isEmpty else { throw .noKnownDigests(kind: kind) }
        let mirrors = mirrors ?? Self.mirrors(for: kind)
        guard !mirrors.isEmpty else { throw .noMirrors(kind: kind) }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .fileSystem(path: directory, reason: "cannot create the directory: \(error.localizedDescription)")
        }

        let fetcher = Fetcher(timeout: timeout)
        defer { fetcher.invalidate() }
        for name in kind.fileNames {
            guard let digest = digests[name] else { throw .noKnownDigests(kind: kind) }
            let target = (directory as NSString).appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: target) {
                if (try? SHA256.hexDigest(ofFileAt: target)) == digest {
                    log("\(name): already present, SHA-256 verified")
                    continue
                }
                log("\(name): present but its SHA-256 does not match; downloading it again")
            }
            var failures: [DownloadError.MirrorFailure] = []
            for mirror in mirrors {
                let url = mirror.appendingPathComponent(name)
                log("\(name): fetching \(url.absoluteString)")
                if let reason = try fetch(url, to: target, digest: digest, with: fetcher) {
                    log("\(name): failed: \(reason)")
                    failures.append(.init(url: url, reason: reason))
                } else {
                    log("\(name): done, SHA-256 verified")
                    break
                }
            }
            if failures.count == mirrors.count {
                throw .allMirrorsFailed(kind: kind, file: name, failures: failures)
            }
        }
    }

    /// Fetches `url` into a temporary file next to `target`, checks its digest and renames it to
    /// `target`. Returns nil on success, or why this mirror failed; throws for local faults, which
    /// another mirror would not cure.
    private static func fetch(
        _ url: URL, to target: String, digest: String, with fetcher: Fetcher
    ) throws(DownloadError) -> String? {
        let data: Data
        switch fetcher.get(url) {
        case .success(let body): data = body
        case .failure(let failure): return failure.reason
        }
        let part = "\(target).part-\(getpid())"
        defer { _ = unlink(part) }  // harmless once renamed: the name is gone by then
        do {
            try data.write(to: URL(fileURLWithPath: part))
        } catch {
            throw .fileSystem(path: part, reason: "cannot write: \(error.localizedDescription)")
        }
        let actual: String
        do {
            actual = try SHA256.hexDigest(ofFileAt: part)
        } catch {
            throw .fileSystem(path: part, reason: error.description)
        }
        guard actual == digest else {
            return "SHA-256 mismatch (\(data.count) bytes received): expected \(digest), got \(actual)"
        }
        guard rename(part, target) == 0 else {
            throw .fileSystem(path: target, reason: "cannot rename \(part) to it: \(String(cString: strerror(errno)))")
        }
        return nil
    }
}

/// A synchronous HTTP(S) GET over one `URLSession`, bounded by timeouts; `file:` URLs are read
/// directly.
private final class Fetcher: Sendable {
    struct Failure: Error {
        let reason: String
    }

    private let session: URLSession
    /// Upper bound for one whole request, after which it is cancelled.
    private let resourceTimeout: TimeInterval

    init(timeout: TimeInterval) {
        resourceTimeout = 20 * timeout
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.timeoutIntervalForResource = resourceTimeout
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        session = URLSession(configuration: configuration)
    }

    func invalidate() { session.invalidateAndCancel() }

    func get(_ url: URL) -> Result<Data, Failure> {
        if url.isFileURL {
            do {
                return .success(try Data(contentsOf: url))
            } catch {
                return .failure(Failure(reason: error.localizedDescription))
            }
        }
        let outcome = Slot<Result<Data, Failure>>()
        let finished = DispatchSemaphore(value: 0)
        let task = session.dataTask(with: url) { data, response, error in
            let result: Result<Data, Failure>
            if let error {
                result = .failure(Failure(reason: Self.describe(error)))
            } else if let status = (response as? HTTPURLResponse)?.statusCode, status != 200 {
                result = .failure(Failure(reason: "HTTP status \(status)"))
            } else {
                result = .success(data ?? Data())
            }
            outcome.value.withLock { $0 = result }
            finished.signal()
        }
        task.resume()
        // The session's own timeouts end the task first; this is a backstop against a hang.
        if finished.wait(timeout: .now() + resourceTimeout + 5) == .timedOut {
            task.cancel()
            return .failure(Failure(reason: "no answer within \(Int(resourceTimeout)) s"))
        }
        return outcome.value.withLock { $0 } ?? .failure(Failure(reason: "no result"))
    }

    private static func describe(_ error: any Error) -> String {
        guard let urlError = error as? URLError else { return error.localizedDescription }
        let text: String =
            switch urlError.code {
            case .cannotConnectToHost: "cannot connect to the host (connection refused?)"
            case .cannotFindHost, .dnsLookupFailed: "cannot resolve the host name"
            case .timedOut: "timed out"
            case .notConnectedToInternet: "not connected to the internet"
            case .networkConnectionLost: "the connection was lost"
            case .secureConnectionFailed, .serverCertificateUntrusted, .serverCertificateHasBadDate:
                "TLS failure"
            default: urlError.localizedDescription
            }
        return "\(text) (URLError \(urlError.code.rawValue))"
    }
}

/// A value handed from a completion handler to the waiting thread.
private final class Slot<Value: Sendable>: Sendable {
    let value = Mutex<Value?>(nil)
}
