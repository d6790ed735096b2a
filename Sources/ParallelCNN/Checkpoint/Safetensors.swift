import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Errors

/// Why a safetensors file or a checkpoint could not be read or written.
///
/// Every case carries the path of the file concerned (for in-memory encoding, the placeholder
/// `SafetensorsFile.inMemoryPath`), and `description` names the file and the fault, e.g.
/// `run/epoch3.safetensors: tensor "c1.w" has shape [6, 25], expected [6, 5, 5]`.
public enum CheckpointError: Error, Equatable, CustomStringConvertible {
    /// No file exists at the path.
    case fileNotFound(path: String)
    /// A system call failed; `operation` says what was attempted, `message` is the system's reason.
    case ioFailure(path: String, operation: String, message: String)
    /// The file ends before the structure it declares does.
    case truncated(path: String, detail: String)
    /// The 8-byte header length is impossible: below 2 (the shortest JSON object, `{}`) or above
    /// `SafetensorsFile.maximumHeaderLength`.
    case invalidHeaderLength(path: String, length: UInt64)
    /// The JSON header is not valid UTF-8 JSON, or does not have the safetensors structure.
    case invalidHeader(path: String, reason: String)
    /// A tensor has a dtype other than `F32`, the only one supported.
    case unsupportedDtype(path: String, tensor: String, dtype: String)
    /// A tensor is malformed: a negative dimension, a byte range that does not match its shape,
    /// a value count that does not match its shape, or a duplicate or reserved name.
    case invalidTensor(path: String, tensor: String, reason: String)
    /// The tensors' data offsets are inconsistent: a range ends before it begins, ranges overlap,
    /// leave gaps, or do not cover the byte buffer exactly.
    case invalidOffsets(path: String, reason: String)
    /// A tensor a checkpoint requires is absent.
    case missingTensor(path: String, tensor: String)
    /// The file holds a tensor that is not part of a checkpoint.
    case unexpectedTensor(path: String, tensor: String)
    /// A checkpoint tensor has the wrong shape.
    case wrongShape(path: String, tensor: String, expected: [Int], found: [Int])
    /// A checkpoint tensor holds NaN or an infinity (a diverged run, or a corrupt file): `index` is
    /// the row-major position of the first such value, `value` its text ("nan", "inf", "-inf"),
    /// `count` how many of the tensor's values are not finite.
    case nonFiniteValue(path: String, tensor: String, index: Int, value: String, count: Int)
    /// The file is valid safetensors but lacks the ParallelCNN checkpoint format metadata.
    case notACheckpoint(path: String, reason: String)
    /// The file is a ParallelCNN checkpoint of a format version this build cannot read.
    case unsupportedVersion(path: String, version: String)
    /// The metadata to be written is invalid (it uses a key reserved for the format).
    case invalidMetadata(path: String, reason: String)
    /// A tensor group's values do not give the hash the metadata records for them (`key`): the
    /// file changed after it was written.
    case hashMismatch(path: String, key: String, recorded: String, computed: String)

    /// The file the error is about.
    public var path: String {
        switch self {
        case .fileNotFound(let path), .ioFailure(let path, _, _), .truncated(let path, _),
            .invalidHeaderLength(let path, _), .invalidHeader(let path, _),
            .unsupportedDtype(let path, _, _), .invalidTensor(let path, _, _),
            .invalidOffsets(let path, _), .missingTensor(let path, _), .unexpectedTensor(let path, _),
            .wrongShape(let path, _, _, _), .nonFiniteValue(let path, _, _, _, _), .notACheckpoint(let path, _),
            .unsupportedVersion(let path, _), .invalidMetadata(let path, _), .hashMismatch(let path, _, _, _):
            path
        }
    }

    /// What is wrong, without the path.
    public var fault: String {
        switch self {
        case .fileNotFound:
            "no such file"
        case .ioFailure(_, let operation, let message):
            "\(operation) failed: \(message)"
        case .truncated(_, let detail):
            "file is truncated: \(detail)"
        case .invalidHeaderLength(_, let length):
            "impossible header length \(length) (must be 2...\(SafetensorsFile.maximumHeaderLength) bytes)"
        case .invalidHeader(_, let reason):
            "invalid safetensors header: \(reason)"
        case .unsupportedDtype(_, let tensor, let dtype):
            "tensor \"\(tensor)\" has dtype \"\(dtype)\"; only F32 is supported"
        case .invalidTensor(_, let tensor, let reason):
            "invalid tensor \"\(tensor)\": \(reason)"
        case .invalidOffsets(_, let reason):
            "invalid data offsets: \(reason)"
        case .missingTensor(_, let tensor):
            "missing tensor \"\(tensor)\""
        case .unexpectedTensor(_, let tensor):
            "unexpected tensor \"\(tensor)\" (not part of a ParallelCNN checkpoint)"
        case .wrongShape(_, let tensor, let expected, let found):
            "tensor \"\(tensor)\" has shape \(found), expected \(expected)"
        case .nonFiniteValue(_, let tensor, let index, let value, let count):
            "tensor \"\(tensor)\" holds a non-finite value, \(value) at index \(index)"
                + (count > 1 ? " (\(count) values are not finite)" : "")
                + "; a checkpoint must hold finite numbers"
        case .notACheckpoint(_, let reason):
            "not a ParallelCNN checkpoint: \(reason)"
        case .unsupportedVersion(_, let version):
            "checkpoint format version \"\(version)\" is not supported "
                + "(this build reads version \(Checkpoint.formatVersion))"
        case .invalidMetadata(_, let reason):
            "invalid metadata: \(reason)"
        case .hashMismatch(_, let key, let recorded, let computed):
            "the file is damaged: its tensors hash to \(computed), but its metadata records \(key) \(recorded) "
                + "(changed after it was written; use an intact copy, or an earlier checkpoint)"
        }
    }

    public var description: String { "\(path): \(fault)" }
}

// MARK: - Safetensors

/// An in-memory safetensors file holding float32 tensors and string metadata.
///
/// Layout (https://github.com/huggingface/safetensors): an unsigned 64-bit little-endian header
/// length `N`, then `N` bytes of UTF-8 JSON mapping each tensor name to
/// `{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}` (offsets relative to the byte
/// buffer) plus an optional `"__metadata__"` string-to-string map, then the byte buffer of
/// little-endian values.
///
/// Guarantees:
/// - Encoding is deterministic: equal content (tensors in the same order, equal metadata, equal
///   value bit patterns) gives identical bytes. JSON keys are sorted, the header is padded with
///   spaces to a multiple of 8 bytes, tensor data is laid out contiguously in `tensors` order, and
///   `__metadata__` is omitted when `metadata` is empty (as the reference writer does).
/// - Values round-trip bit for bit (signed zeros, infinities, subnormals and NaN payloads).
/// - Decoding validates the whole structure and throws `CheckpointError` rather than trapping or
///   returning partial data; decoded `tensors` are ordered by their position in the byte buffer,
///   so a decode of an `encoded()` file preserves the original order.
public struct SafetensorsFile: Equatable, Sendable {
    /// One named float32 tensor, values in row-major order. Equality compares the values as floats
    /// (NaN differs from itself, -0 equals +0); compare `bitPattern`s for bitwise identity.
    public struct Tensor: Equatable, Sendable {
        public var name: String
        /// Dimensions, outermost first; `[]` is a scalar (one value).
        public var shape: [Int]
        public var values: [Float]

        public init(name: String, shape: [Int], values: [Float]) {
            self.name = name
            self.shape = shape
            self.values = values
        }
    }

    /// The tensors, in data-buffer order.
    public var tensors: [Tensor]
    /// Free-form string metadata (the header's `__metadata__`).
    public var metadata: [String: String]

    /// The header key reserved for metadata; no tensor may have this name.
    public static let metadataKey = "__metadata__"
    /// The largest header accepted when reading (the reference implementation's limit).
    public static let maximumHeaderLength: UInt64 = 100_000_000
    /// The path reported by errors of `encoded()` and of `decode` callers without a file.
    public static let inMemoryPath = "<in-memory safetensors>"

    private static let f32 = "F32"
    private static let f32Size = MemoryLayout<UInt32>.size

    public init(tensors: [Tensor] = [], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }

    /// The first tensor called `name`, if any.
    public func tensor(named name: String) -> Tensor? {
        tensors.first { $0.name == name }
    }

    // MARK: Encoding

    /// The file's bytes.
    ///
    /// - Throws: `CheckpointError.invalidTensor` (naming `inMemoryPath`) when a tensor has a
    ///   negative dimension, a value count different from the product of its shape, a duplicate
    ///   name, or the reserved name `__metadata__`.
    public func encoded() throws -> Data {
        try encoded(reportingAs: Self.inMemoryPath)
    }

    /// `encoded()`, with errors naming `path`.
    func encoded(reportingAs path: String) throws -> Data {
        var entries: [String: TensorEntry] = [:]
        var offset = 0
        for tensor in tensors {
            guard tensor.name != Self.metadataKey else {
                throw CheckpointError.invalidTensor(
                    path: path, tensor: tensor.name, reason: "the name is reserved for metadata")
            }
            guard entries[tensor.name] == nil else {
                throw CheckpointError.invalidTensor(path: path, tensor: tensor.name, reason: "duplicate name")
            }
            let count = try Self.elementCount(of: tensor.shape, tensor: tensor.name, path: path)
            guard count == tensor.values.count else {
                throw CheckpointError.invalidTensor(
                    path: path, tensor: tensor.name,
                    reason: "shape \(tensor.shape) needs \(count) values, got \(tensor.values.count)")
            }
            let end = offset + count * Self.f32Size
            entries[tensor.name] = TensorEntry(dtype: Self.f32, shape: tensor.shape, dataOffsets: [offset, end])
            offset = end
        }

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var header = [UInt8](try encoder.encode(Header(metadata: metadata.isEmpty ? nil : metadata, entries: entries)))
        header += repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8)

        var bytes: [UInt8] = []
        bytes.reserveCapacity(8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { bytes += $0 }
        bytes += header
        for tensor in tensors {
            for value in tensor.values {
                withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
            }
        }
        return Data(bytes)
    }

    /// Writes the file to `path` atomically: the bytes go to a temporary file in the same directory
    /// (`.<name>.tmp-<pid>-<random>`), which is fsynced and renamed over `path`; then the directory
    /// is fsynced. Readers see either the previous file or the complete new one, never a mix.
    /// An existing file at `path` is replaced (the new file gets default permissions).
    ///
    /// - Throws: the errors of `encoded()` (naming `path`), or `CheckpointError.ioFailure`. When
    ///   the throw happens before the rename, the temporary file has been removed and `path` is
    ///   untouched; a failure of the final directory fsync is reported although the new file is
    ///   already in place, because it may not survive a crash.
    public func write(to path: String) throws {
        try SafetensorsFileAccess.replace(path, with: encoded(reportingAs: path))
    }

    // MARK: Decoding

    /// Reads and decodes the file at `path`.
    ///
    /// - Throws: `CheckpointError.fileNotFound`, `.ioFailure`, or any error of `decode(_:path:)`.
    public static func read(path: String) throws -> SafetensorsFile {
        try decode(SafetensorsFileAccess.contents(of: path), path: path)
    }

    /// Decodes a safetensors file, validating its whole structure. `path` is only used in errors.
    ///
    /// Checks, in this order: the file holds the 8-byte header length (`.truncated`), the length is
    /// plausible (`.invalidHeaderLength`), the file holds the header it announces (`.truncated`),
    /// the header is UTF-8 JSON starting with `{` and of the safetensors structure
    /// (`.invalidHeader`), every dtype is F32 (`.unsupportedDtype`), every shape is non-negative
    /// and matches its byte range (`.invalidTensor`), the byte ranges tile the buffer from 0
    /// without gaps or overlaps (`.invalidOffsets`), and the buffer holds all of them
    /// (`.truncated`) and nothing more (`.invalidOffsets`). Tensors are checked in name order, so
    /// a file with several faults always reports the same one.
    public static func decode(_ data: Data, path: String) throws -> SafetensorsFile {
        try data.withUnsafeBytes { try decode(raw: $0, path: path) }
    }

    /// `decode(_:path:)` on the file's bytes.
    private static func decode(raw: UnsafeRawBufferPointer, path: String) throws -> SafetensorsFile {
        guard raw.count >= 8 else {
            throw CheckpointError.truncated(
                path: path, detail: "\(raw.count) bytes, fewer than the 8-byte header length")
        }
        let headerLength = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self))
        guard headerLength >= 2, headerLength <= maximumHeaderLength else {
            throw CheckpointError.invalidHeaderLength(path: path, length: headerLength)
        }
        guard headerLength <= UInt64(raw.count - 8) else {
            throw CheckpointError.truncated(
                path: path,
                detail: "the header length says \(headerLength) bytes but only \(raw.count - 8) follow")
        }
        let bufferStart = 8 + Int(headerLength)
        let header = try parseHeader(UnsafeRawBufferPointer(rebasing: raw[8..<bufferStart]), path: path)
        let buffer = UnsafeRawBufferPointer(rebasing: raw[bufferStart...])

        // Check each entry on its own, then the layout of all of them.
        var located: [(name: String, shape: [Int], range: Range<Int>)] = []
        for (name, entry) in header.entries.sorted(by: { $0.key < $1.key }) {
            guard entry.dtype == f32 else {
                throw CheckpointError.unsupportedDtype(path: path, tensor: name, dtype: entry.dtype)
            }
            let count = try elementCount(of: entry.shape, tensor: name, path: path)
            guard entry.dataOffsets.count == 2 else {
                throw CheckpointError.invalidOffsets(
                    path: path, reason: "\"\(name)\" has \(entry.dataOffsets.count) data offsets instead of 2")
            }
            let (begin, end) = (entry.dataOffsets[0], entry.dataOffsets[1])
            guard begin >= 0, begin <= end else {
                throw CheckpointError.invalidOffsets(
                    path: path, reason: "\"\(name)\" has the impossible byte range [\(begin), \(end)]")
            }
            guard end - begin == count * f32Size else {
                throw CheckpointError.invalidTensor(
                    path: path, tensor: name,
                    reason: "shape \(entry.shape) needs \(count * f32Size) bytes but its data offsets "
                        + "[\(begin), \(end)] span \(end - begin)")
            }
            located.append((name, entry.shape, begin..<end))
        }
        located.sort {
            ($0.range.lowerBound, $0.range.upperBound, $0.name) < ($1.range.lowerBound, $1.range.upperBound, $1.name)
        }

        var covered = 0
        for tensor in located {
            guard tensor.range.lowerBound == covered else {
                let fault = tensor.range.lowerBound < covered ? "overlaps the previous tensor" : "leaves a gap"
                throw CheckpointError.invalidOffsets(
                    path: path,
                    reason: "\"\(tensor.name)\" starts at byte \(tensor.range.lowerBound), which \(fault) "
                        + "(previous data ends at byte \(covered))")
            }
            covered = tensor.range.upperBound
        }
        guard covered <= buffer.count else {
            throw CheckpointError.truncated(
                path: path,
                detail: "the header describes \(covered) bytes of tensor data but only \(buffer.count) follow it")
        }
        guard covered == buffer.count else {
            throw CheckpointError.invalidOffsets(
                path: path,
                reason: "\(buffer.count - covered) bytes after the last tensor (byte \(covered)) belong to no tensor")
        }

        let tensors = located.map { tensor in
            Tensor(name: tensor.name, shape: tensor.shape, values: floats(in: buffer, range: tensor.range))
        }
        return SafetensorsFile(tensors: tensors, metadata: header.metadata ?? [:])
    }

    private static func parseHeader(_ bytes: UnsafeRawBufferPointer, path: String) throws -> Header {
        guard bytes.first == UInt8(ascii: "{") else {
            throw CheckpointError.invalidHeader(path: path, reason: "the header does not start with '{'")
        }
        let json = Data(bytes)
        do {
            return try JSONDecoder().decode(Header.self, from: json)
        } catch let error as DecodingError {
            throw CheckpointError.invalidHeader(path: path, reason: describe(error, in: json))
        } catch {
            throw CheckpointError.invalidHeader(path: path, reason: String(describing: error))
        }
    }

    /// The little-endian float32 values stored in `range` of `buffer` (range validated by the caller).
    private static func floats(in buffer: UnsafeRawBufferPointer, range: Range<Int>) -> [Float] {
        stride(from: range.lowerBound, to: range.upperBound, by: f32Size).map {
            Float(bitPattern: UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: $0, as: UInt32.self)))
        }
    }

    /// The number of elements of tensor `name`'s `shape`.
    ///
    /// - Throws: `.invalidTensor` when a dimension is negative or the byte count overflows `Int`.
    private static func elementCount(
        of shape: [Int], tensor name: String, path: String
    ) throws(CheckpointError) -> Int {
        var count = 1
        for dimension in shape {
            guard dimension >= 0 else {
                throw .invalidTensor(path: path, tensor: name, reason: "shape \(shape) has a negative dimension")
            }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow, !product.multipliedReportingOverflow(by: f32Size).overflow else {
                throw .invalidTensor(path: path, tensor: name, reason: "shape \(shape) is too large")
            }
            count = product
        }
        return count
    }

    /// A short description of a failure to decode `json`, locating the fault with a path such as
    /// `["c1.w"]["shape"][1]`, or for a syntax error with a character position.
    private static func describe(_ error: DecodingError, in json: Data) -> String {
        func location(_ codingPath: [any CodingKey]) -> String {
            guard !codingPath.isEmpty else { return "the header" }
            return codingPath.map { key in key.intValue.map { "[\($0)]" } ?? "[\"\(key.stringValue)\"]" }.joined()
        }
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            // JSONDecoder does not say where the syntax error is; JSONSerialization does.
            do {
                _ = try JSONSerialization.jsonObject(with: json)
                return "not valid JSON"
            } catch {
                let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey].map { " (\($0))" } ?? ""
                return "not valid JSON\(detail)"
            }
        case .dataCorrupted(let context):
            return "\(location(context.codingPath)): \(context.debugDescription)"
        case .keyNotFound(let key, let context):
            return "\(location(context.codingPath + [key])) is missing"
        case .typeMismatch(let type, let context):
            return "\(location(context.codingPath)) is not of type \(type)"
        case .valueNotFound(let type, let context):
            return "\(location(context.codingPath)) is null, expected \(type)"
        @unknown default:
            return String(describing: error)
        }
    }
}

// MARK: - JSON header model

extension SafetensorsFile {
    /// One tensor's header entry.
    private struct TensorEntry: Codable {
        var dtype: String
        var shape: [Int]
        var dataOffsets: [Int]

        enum CodingKeys: String, CodingKey {
            case dtype, shape
            case dataOffsets = "data_offsets"
        }
    }

    /// The whole JSON header: tensor entries keyed by name, plus the optional `__metadata__` map.
    private struct Header: Codable {
        var metadata: [String: String]?
        var entries: [String: TensorEntry]

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(metadata: [String: String]?, entries: [String: TensorEntry]) {
            self.metadata = metadata
            self.entries = entries
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Key.self)
            entries = [:]
            for key in container.allKeys {
                if key.stringValue == SafetensorsFile.metadataKey {
                    metadata = try container.decode([String: String].self, forKey: key)
                } else {
                    entries[key.stringValue] = try container.decode(TensorEntry.self, forKey: key)
                }
            }
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            if let metadata {
                try container.encode(metadata, forKey: Key(stringValue: SafetensorsFile.metadataKey))
            }
            for (name, entry) in entries {
                try container.encode(entry, forKey: Key(stringValue: name))
            }
        }
    }
}

// MARK: - File system

/// Whole-file reads and atomic replacement with POSIX calls, so that failures map onto precise
/// `CheckpointError`s. (Top level, not nested in `SafetensorsFile`, so that `read` and `write`
/// name the system calls.)
private enum SafetensorsFileAccess {
    /// The complete contents of the file at `path`.
    static func contents(of path: String) throws -> Data {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw CheckpointError.fileNotFound(path: path) }
            throw failure(path, "open")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw failure(path, "read")
            }
            if count == 0 { return Data(bytes) }
            bytes += chunk[..<count]
        }
    }

    /// Replaces the file at `path` with `data` atomically (see `SafetensorsFile.write(to:)`).
    static func replace(_ path: String, with data: Data) throws {
        let (directory, name) = split(path)
        guard !name.isEmpty else {
            throw CheckpointError.ioFailure(path: path, operation: "write", message: "the path names a directory")
        }
        let temporary =
            (directory.hasSuffix("/") ? directory : directory + "/")
            + ".\(name).tmp-\(getpid())-\(String(UInt32.random(in: .min ... .max), radix: 16))"

        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(path, "create temporary file \(temporary)") }
        do {
            try writeAll(data, to: fd, path: path)
            guard fsync(fd) == 0 else { throw failure(path, "fsync of \(temporary)") }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        guard close(fd) == 0 else {
            let error = failure(path, "close of \(temporary)")
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let error = failure(path, "rename of \(temporary)")
            unlink(temporary)
            throw error
        }
        try syncDirectory(directory, path: path)
    }

    /// Splits `path` into its directory ("." when there is none) and last component.
    private static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }

    private static func writeAll(_ data: Data, to fd: Int32, path: String) throws {
        try data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let count = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if count < 0 {
                    if errno == EINTR { continue }
                    throw failure(path, "write")
                }
                offset += count
            }
        }
    }

    /// Makes the rename durable. Filesystems that cannot sync directories (EINVAL) are tolerated.
    private static func syncDirectory(_ directory: String, path: String) throws {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(path, "open of directory \(directory)") }
        defer { close(fd) }
        guard fsync(fd) == 0 || errno == EINVAL else { throw failure(path, "fsync of directory \(directory)") }
    }

    /// An `.ioFailure` for the current `errno`; call it right after the failing system call.
    private static func failure(_ path: String, _ operation: String) -> CheckpointError {
        .ioFailure(path: path, operation: operation, message: String(cString: strerror(errno)))
    }
}
