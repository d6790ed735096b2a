import Foundation
import Testing
import ParallelCNN

// MARK: - Real MNIST

@Suite("MNIST files load", TestData.mnistTrait)
struct MNISTLoadTests {
    static let trainHistogram = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    static let testHistogram = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

    static func histogram(_ labels: [UInt8]) -> [Int] {
        labels.reduce(into: [Int](repeating: 0, count: 10)) { $0[Int($1)] += 1 }
    }

    @Test("counts, names and label histograms")
    func countsAndHistograms() throws {
        let mnist = try TestData.mnist()
        #expect(mnist.train.count == 60_000)
        #expect(mnist.test.count == 10_000)
        #expect(mnist.train.images.count == 60_000 * 784)
        #expect(mnist.test.images.count == 10_000 * 784)
        #expect(mnist.train.name == "mnist-train")
        #expect(mnist.test.name == "mnist-test")
        #expect(Self.histogram(mnist.train.labels) == Self.trainHistogram)
        #expect(Self.histogram(mnist.test.labels) == Self.testHistogram)
        #expect(mnist.train.labels.prefix(8) == [5, 0, 4, 1, 9, 2, 1, 3])
        #expect(mnist.test.labels.prefix(8) == [7, 2, 1, 0, 4, 1, 4, 9])
    }

    @Test("first pixels are exactly Float(Double(byte) / 255)")
    func firstPixels() throws {
        let mnist = try TestData.mnist()
        // Training image 0, row 5 from column 12; test image 0, row 7 from column 6.
        let train: [UInt8] = [3, 18, 18, 18, 126, 136, 175, 26, 166, 255, 247, 127]
        let test: [UInt8] = [84, 185, 159, 151, 60, 36]
        let exact = { (bytes: [UInt8]) in bytes.map { Float(Double($0) / 255.0) } }
        #expect(Array(mnist.train.image(0).prefix(152)) == [Float](repeating: 0, count: 152))
        #expect(Array(mnist.train.images[152..<164]) == exact(train))
        #expect(Array(mnist.test.images[202..<208]) == exact(test))
        #expect(mnist.train.images[161] == 1)
        #expect(mnist.train.image(0).reduce(0, +) > 0)
    }

    @Test("uncompressed files load identically to the .gz files")
    func rawEqualsGzip() throws {
        let directory = try TestData.requireMNISTDirectory()
        let mnist = try TestData.mnist()
        try TestData.withTemporaryDirectory { temp in
            // Test files uncompressed, training files as links to the .gz originals.
            for name in DatasetKind.mnist.fileNames {
                let source = try #require(DatasetLoader.path(of: name, in: directory))
                let target = temp.appendingPathComponent(name)
                if name.hasPrefix("t10k") {
                    try Fixture.gunzip(source, to: target.deletingPathExtension())
                } else {
                    try FileManager.default.createSymbolicLink(atPath: target.path, withDestinationPath: source)
                }
            }
            #expect(DatasetLoader.path(of: DatasetKind.testImagesFile, in: temp.path)?.hasSuffix("-ubyte") == true)
            let raw = try DatasetLoader.load(.mnist, from: temp.path)
            #expect(raw.test.images == mnist.test.images)
            #expect(raw.test.labels == mnist.test.labels)
            #expect(raw.train.labels == mnist.train.labels)
        }
    }

    @Test("SHA-256 of the files matches SHA256SUMS and DatasetKind.mnist.sha256")
    func digests() throws {
        let directory = try TestData.requireMNISTDirectory()
        let sums = try String(contentsOfFile: "\(directory)/SHA256SUMS", encoding: .utf8)
        let listed = Dictionary(
            uniqueKeysWithValues: sums.split(separator: "\n").map { line in
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                return (String(fields[1]), String(fields[0]))
            })
        #expect(listed == DatasetKind.mnist.sha256)
        for (name, digest) in DatasetKind.mnist.sha256 {
            #expect(try SHA256.hexDigest(ofFileAt: "\(directory)/\(name)") == digest, "\(name)")
        }
    }

    @Test("prefix keeps the first samples")
    func prefix() throws {
        let test = try TestData.mnist().test
        let first = test.prefix(3)
        #expect(first.count == 3)
        #expect(first.name == test.name)
        #expect(first.labels == Array(test.labels.prefix(3)))
        #expect(first.images == Array(test.images.prefix(3 * 784)))
        #expect(test.prefix(20_000).count == 10_000)
        #expect(test.prefix(0).count == 0)
    }
}

// MARK: - Bad and synthetic inputs

/// Builders for small IDX files in a temporary directory.
enum Fixture {
    static func bigEndian(_ value: UInt32) -> [UInt8] {
        (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) }
    }

    /// An images file: header fields as given, then `pixels`.
    static func images(
        magic: UInt32 = IDX.imagesMagic, count: UInt32, rows: UInt32 = 28, columns: UInt32 = 28,
        pixels: [UInt8]
    ) -> [UInt8] {
        [magic, count, rows, columns].flatMap(bigEndian) + pixels
    }

    /// A labels file: header fields as given, then `labels`.
    static func labels(magic: UInt32 = IDX.labelsMagic, count: UInt32, _ labels: [UInt8]) -> [UInt8] {
        [magic, count].flatMap(bigEndian) + labels
    }

    /// Deterministic pixels that do not compress to almost nothing.
    static func pixels(images: Int) -> [UInt8] {
        (0..<images * 784).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
    }

    static func write(_ bytes: [UInt8], to url: URL) throws {
        try Data(bytes).write(to: url)
    }

    /// Writes `bytes` gzip-compressed (by the `gzip` tool) to `url`, which should end in `.gz`.
    static func writeGzip(_ bytes: [UInt8], to url: URL) throws {
        let plain = url.deletingPathExtension()
        try write(bytes, to: plain)
        let gzip = try runProcess("gzip", ["-n", "-f", plain.path])
        try #require(gzip.status == 0, "gzip failed: \(gzip.output)")
        #expect(FileManager.default.fileExists(atPath: url.path))
    }

    /// Decompresses the gzip file at `path` into `url` (by the `gzip` tool).
    static func gunzip(_ path: String, to url: URL) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["gzip", "-dc", path]
        try #require(FileManager.default.createFile(atPath: url.path, contents: nil))
        let output = try FileHandle(forWritingTo: url)
        defer { try? output.close() }
        process.standardOutput = output
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "gzip -dc \(path) failed")
    }

    /// Runs `body` and checks that it throws exactly `expected`, whose message names `expected.path`.
    static func expect(
        _ expected: DataError, sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () throws -> Void
    ) {
        let error = #expect(throws: DataError.self, sourceLocation: sourceLocation) { try body() }
        #expect(error == expected, sourceLocation: sourceLocation)
        #expect(
            error?.description.contains(expected.path) == true, "\(String(describing: error))",
            sourceLocation: sourceLocation)
    }
}

@Suite("IDX rejects bad files with a DataError naming the file")
struct IDXErrorTests {
    let directory: URL

    init() throws { directory = try TestData.makeTemporaryDirectory() }

    func file(_ name: String) -> URL { directory.appendingPathComponent(name) }

    /// A well-formed 3-image file and its 3 labels, for cutting and corrupting.
    var goodImages: [UInt8] { Fixture.images(count: 3, pixels: Fixture.pixels(images: 3)) }
    var goodLabels: [UInt8] { Fixture.labels(count: 3, [7, 0, 9]) }

    @Test("good raw and gzip files load and agree")
    func goodFiles() throws {
        defer { cleanUp() }
        try Fixture.write(goodImages, to: file("images"))
        try Fixture.writeGzip(goodImages, to: file("images2.gz"))
        try Fixture.write(goodLabels, to: file("labels"))
        let raw = try DatasetLoader.loadSplit(
            name: "tiny", imagesPath: file("images").path,
            labelsPath: file("labels").path)
        let gz = try DatasetLoader.loadSplit(
            name: "tiny", imagesPath: file("images2.gz").path,
            labelsPath: file("labels").path)
        #expect(raw.count == 3)
        #expect(raw.labels == [7, 0, 9])
        #expect(raw.images == Fixture.pixels(images: 3).map { Float(Double($0) / 255.0) })
        #expect(gz.images == raw.images)
    }

    @Test("pixel table is exact for every byte")
    func pixelTable() {
        for byte in 0...255 {
            #expect(Dataset.pixelTable[byte] == Float(Double(byte) / 255.0))
        }
        #expect(Dataset.pixelTable[255] == 1)
        #expect(Dataset.pixelTable[0] == 0)
    }

    @Test("missing file, directory")
    func missing() {
        defer { cleanUp() }
        Fixture.expect(.fileNotFound(path: file("nope.gz").path)) { _ = try IDX.readImages(at: file("nope.gz").path) }
        Fixture.expect(.unreadable(path: directory.path, reason: "not a regular file")) {
            _ = try IDX.readLabels(at: directory.path)
        }
    }

    @Test("wrong magic: images file holding labels, and garbage")
    func wrongMagic() throws {
        defer { cleanUp() }
        let path = file("images").path
        try Fixture.write(goodLabels, to: file("images"))
        Fixture.expect(.badMagic(path: path, expected: 2051, found: 2049)) { _ = try IDX.readImages(at: path) }
        try Fixture.write(Fixture.labels(magic: 0xdead_beef, count: 3, [1, 2, 3]), to: file("labels"))
        Fixture.expect(.badMagic(path: file("labels").path, expected: 2049, found: 0xdead_beef)) {
            _ = try IDX.readLabels(at: file("labels").path)
        }
    }

    @Test("truncated raw images, empty file, header only")
    func truncatedRaw() throws {
        defer { cleanUp() }
        let path = file("images").path
        try Fixture.write(Array(goodImages.dropLast(784)), to: file("images"))
        Fixture.expect(.truncated(path: path, expectedBytes: 16 + 3 * 784, gotBytes: 16 + 2 * 784)) {
            _ = try IDX.readImages(at: path)
        }
        try Fixture.write([], to: file("images"))
        Fixture.expect(.truncated(path: path, expectedBytes: 16, gotBytes: 0)) { _ = try IDX.readImages(at: path) }
        try Fixture.write(Array(goodImages.prefix(10)), to: file("images"))
        Fixture.expect(.truncated(path: path, expectedBytes: 16, gotBytes: 10)) { _ = try IDX.readImages(at: path) }
    }

    @Test("truncated gzip stream")
    func truncatedGzip() throws {
        defer { cleanUp() }
        let url = file("images.gz")
        try Fixture.writeGzip(goodImages, to: url)
        let compressed = try [UInt8](Data(contentsOf: url))
        try Fixture.write(Array(compressed.prefix(compressed.count / 2)), to: url)
        let error = #expect(throws: DataError.self) { _ = try IDX.readImages(at: url.path) }
        guard case .truncated(let path, let expected, let got) = error else {
            Issue.record("expected .truncated, got \(String(describing: error))")
            return
        }
        #expect(path == url.path)
        #expect(expected == goodImages.count)
        #expect(got < expected)
        #expect(error?.description.contains(url.path) == true)
    }

    @Test("gzip stream cut inside its trailer, and with a wrong CRC")
    func damagedGzipTrailer() throws {
        defer { cleanUp() }
        let url = file("images.gz")
        try Fixture.writeGzip(goodImages, to: url)
        let compressed = try [UInt8](Data(contentsOf: url))
        try Fixture.write(Array(compressed.dropLast(4)), to: url)
        Fixture.expect(.corruptGzip(path: url.path, reason: "unexpected end of file in the gzip trailer")) {
            _ = try IDX.readImages(at: url.path)
        }
        var badCRC = compressed
        badCRC[badCRC.count - 8] ^= 0xff
        try Fixture.write(badCRC, to: url)
        Fixture.expect(.corruptGzip(path: url.path, reason: "incorrect data check")) {
            _ = try IDX.readImages(at: url.path)
        }
    }

    @Test("corrupt deflate data")
    func corruptGzip() throws {
        defer { cleanUp() }
        let url = file("labels.gz")
        try Fixture.writeGzip(goodLabels, to: url)
        var bytes = try [UInt8](Data(contentsOf: url))
        // Header of `gzip -n` is 10 bytes; 0xff as the first deflate byte selects the reserved block type.
        bytes[10] = 0xff
        try Fixture.write(bytes, to: url)
        let error = #expect(throws: DataError.self) { _ = try IDX.readLabels(at: url.path) }
        guard case .corruptGzip(let path, let reason) = error else {
            Issue.record("expected .corruptGzip, got \(String(describing: error))")
            return
        }
        #expect(path == url.path)
        #expect(!reason.isEmpty)
    }

    @Test("named .gz but not gzip")
    func notGzip() throws {
        defer { cleanUp() }
        let url = file("images.gz")
        try Fixture.write(goodImages, to: url)
        Fixture.expect(.notGzip(path: url.path, firstBytes: [0, 0])) { _ = try IDX.readImages(at: url.path) }
        try Fixture.write([], to: url)
        Fixture.expect(.notGzip(path: url.path, firstBytes: [])) { _ = try IDX.readImages(at: url.path) }
    }

    @Test("images and labels disagree on the count")
    func countMismatch() throws {
        defer { cleanUp() }
        try Fixture.write(goodImages, to: file("images"))
        try Fixture.write(Fixture.labels(count: 2, [1, 2]), to: file("labels"))
        Fixture.expect(
            .countMismatch(
                imagesPath: file("images").path, images: 3,
                labelsPath: file("labels").path, labels: 2)
        ) {
            _ = try DatasetLoader.loadSplit(name: "x", imagesPath: file("images").path, labelsPath: file("labels").path)
        }
    }

    @Test("27x28 images")
    func badDimensions() throws {
        defer { cleanUp() }
        let path = file("images").path
        try Fixture.write(
            Fixture.images(count: 1, rows: 27, pixels: [UInt8](repeating: 1, count: 27 * 28)),
            to: file("images"))
        Fixture.expect(.badDimensions(path: path, rows: 27, columns: 28)) { _ = try IDX.readImages(at: path) }
    }

    @Test("label 10")
    func badLabel() throws {
        defer { cleanUp() }
        let url = file("labels.gz")
        try Fixture.writeGzip(Fixture.labels(count: 4, [0, 9, 10, 3]), to: url)
        Fixture.expect(.badLabel(path: url.path, index: 2, value: 10)) { _ = try IDX.readLabels(at: url.path) }
    }

    @Test("lying headers: 2^31-1 images, 2^32-1 labels, more data than announced, gzip claiming 2M images")
    func lyingHeaders() throws {
        defer { cleanUp() }
        let path = file("images").path
        try Fixture.write(Fixture.images(count: 0x7fff_ffff, pixels: Fixture.pixels(images: 1)), to: file("images"))
        Fixture.expect(.countTooLarge(path: path, count: 0x7fff_ffff, limit: IDX.maxCount)) {
            _ = try IDX.readImages(at: path)
        }
        try Fixture.write(Fixture.labels(count: 0xffff_ffff, [1]), to: file("labels"))
        Fixture.expect(.countTooLarge(path: file("labels").path, count: 0xffff_ffff, limit: IDX.maxCount)) {
            _ = try IDX.readLabels(at: file("labels").path)
        }
        try Fixture.write(Fixture.labels(count: 2, [1, 2, 3]), to: file("labels"))
        Fixture.expect(.trailingData(path: file("labels").path, expectedBytes: 10)) {
            _ = try IDX.readLabels(at: file("labels").path)
        }
        let gz = file("labels2.gz")
        try Fixture.writeGzip(Fixture.labels(count: 2, [1, 2, 3]), to: gz)
        Fixture.expect(.trailingData(path: gz.path, expectedBytes: 10)) { _ = try IDX.readLabels(at: gz.path) }
        let big = file("images3.gz")
        try Fixture.writeGzip(Fixture.images(count: 2_000_000, pixels: Fixture.pixels(images: 3)), to: big)
        Fixture.expect(.truncated(path: big.path, expectedBytes: 16 + 2_000_000 * 784, gotBytes: 16 + 3 * 784)) {
            _ = try IDX.readImages(at: big.path)
        }
    }

    /// Found by the idx-gzip fuzz target (Fuzz/Regressions/idx-gzip/): a 30-byte gzip file whose
    /// header claims a million images made a 64 MiB buffer before anything was read. Memory is
    /// not observable here; `scripts/fuzz` replays the input under libFuzzer's -malloc_limit_mb.
    @Test("tiny gzip files claiming the most samples allowed fail as truncated", arguments: [0, 1, 1000])
    func tinyGzipClaimingMaximum(pixels: Int) throws {
        defer { cleanUp() }
        let gz = file("claims.gz")
        let count = UInt32(IDX.maxCount)
        try Fixture.writeGzip(Fixture.images(count: count, pixels: [UInt8](repeating: 0, count: pixels)), to: gz)
        Fixture.expect(.truncated(path: gz.path, expectedBytes: 16 + IDX.maxCount * 784, gotBytes: 16 + pixels)) {
            _ = try IDX.readImages(at: gz.path)
        }
        let labels = file("claims-labels.gz")
        try Fixture.writeGzip(Fixture.labels(count: count, [UInt8](repeating: 1, count: pixels)), to: labels)
        Fixture.expect(.truncated(path: labels.path, expectedBytes: 8 + IDX.maxCount, gotBytes: 8 + pixels)) {
            _ = try IDX.readLabels(at: labels.path)
        }
    }

    @Test("locate: explicit and environment directories must be complete; defaults fall through")
    func locate() throws {
        defer { cleanUp() }
        let complete = file("complete")
        let incomplete = file("incomplete")
        for dir in [complete, incomplete, file("data/mnist")] {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }
        for name in DatasetKind.mnist.fileNames {
            try Fixture.write([], to: complete.appendingPathComponent(name))
        }
        // The uncompressed form counts too.
        try Fixture.write([], to: incomplete.appendingPathComponent("train-images-idx3-ubyte"))
        let cwd = directory.path
        #expect(
            try DatasetLoader.locate(.mnist, explicit: complete.path, environment: [:], currentDirectory: cwd)
                == complete.path)
        #expect(
            try DatasetLoader.locate(.mnist, explicit: "complete", environment: [:], currentDirectory: cwd)
                == complete.path)
        #expect(
            try DatasetLoader.locate(
                .mnist, explicit: nil, environment: ["MNIST_DIR": complete.path],
                currentDirectory: cwd) == complete.path)
        #expect(try DatasetLoader.locate(.mnist, explicit: nil, environment: [:], currentDirectory: cwd) == nil)
        let missing = Array(DatasetKind.mnist.fileNames.dropFirst())
        Fixture.expect(.missingFiles(directory: incomplete.path, origin: "explicit directory", missing: missing)) {
            _ = try DatasetLoader.locate(
                .mnist, explicit: incomplete.path, environment: ["MNIST_DIR": complete.path],
                currentDirectory: cwd)
        }
        Fixture.expect(.missingFiles(directory: incomplete.path, origin: "$MNIST_DIR", missing: missing)) {
            _ = try DatasetLoader.locate(
                .mnist, explicit: nil, environment: ["MNIST_DIR": incomplete.path],
                currentDirectory: cwd)
        }
        // The default ./data/mnist is used once it holds the files.
        for name in DatasetKind.mnist.fileNames {
            try Fixture.write([], to: file("data/mnist").appendingPathComponent(name))
        }
        #expect(
            try DatasetLoader.locate(.mnist, explicit: nil, environment: [:], currentDirectory: cwd)
                == file("data/mnist").path)
        // Fashion-MNIST has its own variable and defaults.
        #expect(
            try DatasetLoader.locate(
                .fashionMNIST, explicit: nil,
                environment: ["FASHION_MNIST_DIR": complete.path],
                currentDirectory: cwd) == complete.path)
        #expect(DatasetKind.fashionMNIST.defaultDirectories.contains("/usr/share/datasets/fashion-mnist"))
        Fixture.expect(.missingFiles(directory: incomplete.path, origin: "given directory", missing: missing)) {
            _ = try DatasetLoader.load(.mnist, from: incomplete.path)
        }
    }

    private func cleanUp() { try? FileManager.default.removeItem(at: directory) }
}

// MARK: - SHA-256

@Suite("SHA-256 (FIPS 180-4)")
struct SHA256Tests {
    @Test(
        "standard test vectors",
        arguments: [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
            ),
            (
                "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
            )
        ])
    func vectors(message: String, digest: String) {
        #expect(SHA256.hexDigest(of: Data(message.utf8)) == digest)
    }

    @Test("one million 'a', whole and in uneven pieces, and from a file")
    func millionA() throws {
        let expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        let message = Data(repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(SHA256.hexDigest(of: message) == expected)
        var hasher = SHA256()
        var offset = 0
        for size in [1, 63, 64, 65, 127, 1000, 4096].cycled(until: message.count) {
            let end = min(offset + size, message.count)
            hasher.update(message[offset..<end])
            offset = end
        }
        #expect(hasher.finalize().map { String(format: "%02x", $0) }.joined() == expected)
        try TestData.withTemporaryDirectory { directory in
            let url = directory.appendingPathComponent("a")
            try message.write(to: url)
            #expect(try SHA256.hexDigest(ofFileAt: url.path) == expected)
        }
    }

    /// Digests of that many 'x' bytes, from coreutils `sha256sum`: the lengths around the
    /// padding boundaries (55 and 56 bytes fit one or two final blocks).
    @Test(
        "padding boundaries agree with sha256sum",
        arguments: [
            (55, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072"),
            (56, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e"),
            (63, "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2"),
            (64, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c"),
            (119, "000b48d4edf0fa7bee3c6236ecd2785baa5db4eeb8bb54341b029e0d9fa5fb0c"),
            (120, "13f05a0b594787f5ecd315edc96141bd3243203d1b7d4f0836f37308b276ba98")
        ])
    func boundaries(length: Int, digest: String) {
        #expect(SHA256.hexDigest(of: Data(repeating: UInt8(ascii: "x"), count: length)) == digest)
    }

    @Test("a missing file throws fileNotFound")
    func missingFile() {
        #expect(throws: DataError.fileNotFound(path: "/nonexistent/file")) {
            _ = try SHA256.hexDigest(ofFileAt: "/nonexistent/file")
        }
    }
}

extension Array {
    /// Repeats the elements cyclically while their running sum stays below `total` (for chunk sizes).
    fileprivate func cycled(until total: Int) -> [Element] where Element == Int {
        var result: [Int] = []
        var sum = 0
        while sum < total {
            let next = self[result.count % count]
            result.append(next)
            sum += next
        }
        return result
    }
}
