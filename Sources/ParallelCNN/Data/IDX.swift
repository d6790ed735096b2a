import CZlib
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything that can be wrong with a data file or data directory. Every case names the file
/// (or directory) at fault and what is wrong with it; `description` is a complete sentence that can
/// be shown to a user as it is.
public enum DataError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file does not exist.
    case fileNotFound(path: String)
    /// The file exists but cannot be opened or read (permissions, a directory, an I/O error).
    case unreadable(path: String, reason: String)
    /// The file is named `*.gz` but does not start with the gzip magic bytes 1f 8b.
    case notGzip(path: String, firstBytes: [UInt8])
    /// The gzip stream is damaged; `reason` is zlib's own message.
    case corruptGzip(path: String, reason: String)
    /// The IDX magic number is not the one this kind of file must have.
    case badMagic(path: String, expected: UInt32, found: UInt32)
    /// The (decompressed) file ends early: its header announces `expectedBytes` in all (header
    /// included), only `gotBytes` are there.
    case truncated(path: String, expectedBytes: Int, gotBytes: Int)
    /// A file of fixed-size records without a header (CIFAR-10's batches) is empty or ends
    /// inside a record.
    case partialRecord(path: String, recordBytes: Int, gotBytes: Int)
    /// The header announces more samples than any sane data set holds (a lying or corrupt header).
    case countTooLarge(path: String, count: UInt32, limit: Int)
    /// The file holds more bytes than its header announces (a lying header).
    case trailingData(path: String, expectedBytes: Int)
    /// The images are not 28x28.
    case badDimensions(path: String, rows: Int, columns: Int)
    /// A label outside 0...9; `index` is the sample's position in the file.
    case badLabel(path: String, index: Int, value: UInt8)
    /// An images file and its labels file disagree on the number of samples.
    case countMismatch(imagesPath: String, images: Int, labelsPath: String, labels: Int)
    /// A data directory lacks some of the data set's files (as `name.gz` or as uncompressed `name`).
    /// `origin` says where the directory came from (e.g. "explicit directory", "$MNIST_DIR").
    case missingFiles(directory: String, origin: String, missing: [String])

    /// The file or directory at fault (for `countMismatch`, the images file).
    public var path: String {
        switch self {
        case .fileNotFound(let path), .unreadable(let path, _), .notGzip(let path, _),
            .corruptGzip(let path, _), .badMagic(let path, _, _), .truncated(let path, _, _),
            .partialRecord(let path, _, _), .countTooLarge(let path, _, _), .trailingData(let path, _), .badDimensions(let path, _, _),
            .badLabel(let path, _, _), .countMismatch(let path, _, _, _), .missingFiles(let path, _, _):
            path
        }
    }

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            "\(path): no such file"
        case .unreadable(let path, let reason):
            "\(path): cannot read the file: \(reason)"
        case .notGzip(let path, let firstBytes):
            "\(path): named .gz but is not gzip data (starts with \(Self.hex(firstBytes)), "
                + "gzip starts with 1f 8b)"
        case .corruptGzip(let path, let reason):
            "\(path): corrupt gzip data: \(reason)"
        case .badMagic(let path, let expected, let found):
            "\(path): wrong IDX magic number: expected \(expected) (\(Self.magicName(expected))), "
                + "found \(found) (\(Self.magicName(found)))"
        case .truncated(let path, let expected, let got):
            "\(path): truncated: expected \(expected) bytes (as its header announces, header included), got \(got)"
        case .partialRecord(let path, let recordBytes, let got):
            got == 0
                ? "\(path): empty file (expected records of \(recordBytes) bytes)"
                : "\(path): truncated: \(got) bytes is not a whole number of \(recordBytes)-byte records (it ends \(got % recordBytes) bytes into record \(got / recordBytes + 1))"
        case .countTooLarge(let path, let count, let limit):
            "\(path): the header announces \(count) samples, more than the limit of \(limit) "
                + "(corrupt or lying header)"
        case .trailingData(let path, let expected):
            "\(path): more data than the header announces (\(expected) bytes expected; corrupt or lying header)"
        case .badDimensions(let path, let rows, let columns):
            "\(path): images are \(rows)x\(columns), expected "
                + "\(Network.imageSide)x\(Network.imageSide)"
        case .badLabel(let path, let index, let value):
            "\(path): label \(value) of sample \(index) is outside 0...\(Network.classes - 1)"
        case .countMismatch(let imagesPath, let images, let labelsPath, let labels):
            "\(imagesPath) holds \(images) images but \(labelsPath) holds \(labels) labels"
        case .missingFiles(let directory, let origin, let missing):
            "data directory \(directory) (\(origin)) lacks \(missing.joined(separator: ", "))"
                + (missing.allSatisfy { $0.hasSuffix(".gz") } ? " (each may also be stored uncompressed, without .gz)" : "")
        }
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        bytes.isEmpty ? "nothing (empty file)" : bytes.hexEncoded(separator: " ")
    }

    private static func magicName(_ magic: UInt32) -> String {
        switch magic {
        case IDX.imagesMagic: "IDX images"
        case IDX.labelsMagic: "IDX labels"
        default: String(format: "0x%08x", magic)
        }
    }
}

/// Reader for the IDX files of MNIST-like data sets (big-endian int32 header, then unsigned bytes),
/// raw or gzip-compressed.
///
/// Guarantees:
/// - Any fault in a file is reported as a `DataError` naming the file; the reader never traps.
/// - A header is never trusted for allocation: counts above `maxCount` are rejected, raw files are
///   checked against their size before reading, and gzip data is read in pieces of at most 64 MiB,
///   so a lying header fails with `.truncated` after reading what is really there.
/// - Files named `*.gz` must be gzip (magic 1f 8b); other files may be either (zlib passes plain
///   data through). gzip data is read to its end, so its CRC and length trailer are checked.
/// - A file must hold exactly the bytes its header announces, no fewer and no more.
public enum IDX {
    /// Magic number of an IDX images file (unsigned bytes, 3 dimensions).
    public static let imagesMagic: UInt32 = 0x0000_0803
    /// Magic number of an IDX labels file (unsigned bytes, 1 dimension).
    public static let labelsMagic: UInt32 = 0x0000_0801
    /// Largest sample count a header may announce.
    public static let maxCount = 10_000_000

    /// Reads an images file: magic 2051, count, rows, columns, then `count * 28 * 28` pixel bytes.
    /// - Returns: the pixel bytes, row-major, image after image (`count = pixels.count / 784`).
    /// - Throws: `DataError` if the file is missing, unreadable, not gzip though named `.gz`,
    ///   corrupt, truncated, longer than announced, or its magic, count or dimensions are wrong.
    public static func readImages(at path: String) throws(DataError) -> [UInt8] {
        let reader = try IDXFile(path: path)
        let header = try reader.readHeader(magic: imagesMagic, fields: 3)
        let (count, rows, columns) = (header[0], header[1], header[2])
        guard rows == Network.imageSide, columns == Network.imageSide else {
            throw .badDimensions(path: path, rows: rows, columns: columns)
        }
        return try reader.readPayload(count: count * Network.imagePixels)
    }

    /// Reads a labels file: magic 2049, count, then `count` label bytes, each in 0...9.
    /// - Throws: `DataError` as `readImages(at:)` does, and `.badLabel` for a label above 9.
    public static func readLabels(at path: String) throws(DataError) -> [UInt8] {
        let reader = try IDXFile(path: path)
        let count = try reader.readHeader(magic: labelsMagic, fields: 1)[0]
        let labels = try reader.readPayload(count: count)
        if let index = labels.firstIndex(where: { Int($0) >= Network.classes }) {
            throw .badLabel(path: path, index: index, value: labels[index])
        }
        return labels
    }
}

/// One open IDX file, read through zlib. The file descriptor is closed when the reader goes away.
private final class IDXFile {
    /// Bytes read per `gzread` call.
    private static let chunkSize = 4 << 20
    /// Largest buffer allocated before its bytes have been read.
    private static let pieceSize = 64 << 20
    /// Deflate's largest expansion: a 258-byte match in as little as 2 bits.
    private static let maximumDeflateRatio = 1032
    private static let gzipMagic: [UInt8] = [0x1f, 0x8b]

    let path: String
    private let file: gzFile
    /// Size of the file on disk, and whether it is gzip data (otherwise it is read as it is).
    private let fileSize: Int
    private let isGzip: Bool
    /// Most bytes the file can hold once decompressed, so that a lying header in a tiny gzip
    /// file cannot make a piece larger than the data could possibly be (found by fuzzing: a
    /// 30-byte file made a 64 MiB buffer).
    private var maximumSize: Int {
        isGzip ? (fileSize > Int.max / Self.maximumDeflateRatio ? Int.max : fileSize * Self.maximumDeflateRatio) : fileSize
    }
    /// Decompressed bytes consumed so far (header included).
    private var position = 0

    init(path: String) throws(DataError) {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            let code = errno
            throw code == ENOENT ? .fileNotFound(path: path) : .unreadable(path: path, reason: Self.errorText(code))
        }
        do throws(DataError) {
            var info = stat()
            guard fstat(fd, &info) == 0 else { throw .unreadable(path: path, reason: Self.errorText(errno)) }
            guard (info.st_mode & S_IFMT) == S_IFREG else {
                throw .unreadable(path: path, reason: "not a regular file")
            }
            var first: [UInt8] = [0, 0]
            let peeked = pread(fd, &first, 2, 0)
            guard peeked >= 0 else { throw .unreadable(path: path, reason: Self.errorText(errno)) }
            first.removeLast(2 - peeked)
            isGzip = first == Self.gzipMagic
            if path.hasSuffix(".gz") && !isGzip { throw .notGzip(path: path, firstBytes: first) }
            fileSize = Int(info.st_size)
            // On success zlib owns the descriptor and closes it in gzclose.
            guard let file = gzdopen(fd, "rb") else {
                throw .unreadable(path: path, reason: "zlib cannot open the file")
            }
            self.file = file
        } catch {
            close(fd)
            throw error
        }
        _ = gzbuffer(file, UInt32(Self.chunkSize / 4))
    }

    deinit { _ = gzclose(file) }

    /// Reads the magic number and `fields` big-endian int32 fields after it. The first field is the
    /// sample count, checked against `IDX.maxCount`.
    func readHeader(magic: UInt32, fields: Int) throws(DataError) -> [Int] {
        let headerSize = 4 * (1 + fields)
        let found = try readWord(announcedTotal: headerSize)
        guard found == magic else { throw .badMagic(path: path, expected: magic, found: found) }
        var words: [UInt32] = []
        for _ in 0..<fields { words.append(try readWord(announcedTotal: headerSize)) }
        guard words[0] <= IDX.maxCount else { throw .countTooLarge(path: path, count: words[0], limit: IDX.maxCount) }
        // Dimensions are checked by the caller; clamp them so that a wild value cannot overflow.
        return words.map { Int(min($0, UInt32(Int32.max))) }
    }

    /// Reads one big-endian 32-bit header word.
    private func readWord(announcedTotal: Int) throws(DataError) -> UInt32 {
        try readExactly(4, announcedTotal: announcedTotal).reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// Reads the `count` payload bytes after the header, then checks that nothing follows them.
    func readPayload(count: Int) throws(DataError) -> [UInt8] {
        let total = position + count
        // A raw file's size is known: reject a lying header before reading or allocating anything.
        if !isGzip && fileSize != total {
            if fileSize < total { throw .truncated(path: path, expectedBytes: total, gotBytes: fileSize) }
            throw .trailingData(path: path, expectedBytes: total)
        }
        let payload = try readExactly(count, announcedTotal: total)
        try expectEnd(announcedTotal: total)
        return payload
    }

    /// Reads exactly `count` bytes in pieces of at most `pieceSize`, so that memory follows the data
    /// actually present rather than the header's claim (one piece, no copy, for MNIST-sized files).
    private func readExactly(_ count: Int, announcedTotal: Int) throws(DataError) -> [UInt8] {
        // At least one byte, so that reading past `maximumSize` reports the truncation.
        func pieceSize(_ wanted: Int) -> Int { min(wanted, Self.pieceSize, max(1, maximumSize - position)) }
        var bytes = try readPiece(pieceSize(count), announcedTotal: announcedTotal)
        while bytes.count < count {
            bytes += try readPiece(pieceSize(count - bytes.count), announcedTotal: announcedTotal)
        }
        return bytes
    }

    private func readPiece(_ size: Int, announcedTotal: Int) throws(DataError) -> [UInt8] {
        let piece = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            initialized = read(into: UnsafeMutableRawBufferPointer(buffer))
        }
        position += piece.count
        if piece.count < size {
            switch status() {
            case .ok, .endedEarly: throw .truncated(path: path, expectedBytes: announcedTotal, gotBytes: position)
            case .failed(let error): throw error
            }
        }
        return piece
    }

    /// Reads past the announced end: there must be nothing, and the gzip trailer must check out.
    private func expectEnd(announcedTotal: Int) throws(DataError) {
        var probe: UInt8 = 0
        let got = withUnsafeMutableBytes(of: &probe) { read(into: $0) }
        switch status() {
        case .failed(let error): throw error
        // After all announced data, an early end means the gzip trailer (CRC, length) is missing.
        case .endedEarly: throw .corruptGzip(path: path, reason: "unexpected end of file in the gzip trailer")
        case .ok: if got != 0 { throw .trailingData(path: path, expectedBytes: announcedTotal) }
        }
    }

    /// Fills `buffer` as far as the data goes and returns the bytes read; after a short read,
    /// `status()` tells whether the data ended or zlib failed.
    private func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        var done = 0
        while done < buffer.count, let base = buffer.baseAddress {
            let got = gzread(file, base + done, UInt32(min(buffer.count - done, Self.chunkSize)))
            if got <= 0 { break }
            done += Int(got)
        }
        return done
    }

    /// zlib's error state after a read.
    private enum Status {
        case ok
        /// The compressed stream ended before its end marker.
        case endedEarly
        /// An I/O error (`.unreadable`) or damaged gzip data (`.corruptGzip`).
        case failed(DataError)
    }

    private func status() -> Status {
        var code: Int32 = Z_OK
        var message = gzerror(file, &code).map { String(cString: $0) } ?? "unknown zlib error"
        // zlib prefixes its message with the file's name, "<fd:N>" for a descriptor; drop it.
        if message.hasPrefix("<fd:"), let colon = message.firstRange(of: ">: ") {
            message = String(message[colon.upperBound...])
        }
        switch code {
        case Z_OK: return .ok
        case Z_BUF_ERROR: return .endedEarly
        case Z_ERRNO: return .failed(.unreadable(path: path, reason: Self.errorText(errno)))
        default: return .failed(.corruptGzip(path: path, reason: message))
        }
    }

    private static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }
}
