import Foundation
import ParallelCNN
import Testing

/// Namespace of the checkpoint tests, so that their helpers cannot collide with other test files'.
enum CheckpointTesting {
    // MARK: - Fixtures

    /// SplitMix64, for reproducible test data.
    private struct TestGenerator {
        private var state: UInt64

        init(seed: UInt64) { state = seed }

        mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }

        /// A float with a uniformly random bit pattern, NaN and infinities excluded (checkpoints
        /// refuse them): covers both zeros, subnormals, huge and tiny magnitudes.
        mutating func nextFloat() -> Float {
            while true {
                let value = Float(bitPattern: UInt32(truncatingIfNeeded: next()))
                if value.isFinite { return value }
            }
        }
    }

    /// Random finite parameters whose first values are the awkward ones: -0, +0, the largest finite
    /// magnitudes, the smallest subnormal.
    private static func randomParameters(seed: UInt64) -> Parameters {
        var generator = TestGenerator(seed: seed)
        var values = (0..<Parameters.count).map { _ in generator.nextFloat() }
        let awkward: [Float] = [
            -0.0, 0.0, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
            .leastNonzeroMagnitude, -.greatestFiniteMagnitude
        ]
        values.replaceSubrange(0..<awkward.count, with: awkward)
        return Parameters(values: values)
    }

    private static func bitPatterns(_ values: some Sequence<Float>) -> [UInt32] { values.map(\.bitPattern) }

    private static let sampleMetadata = [
        "recipe": "modern", "epoch": "3", "position": "12345", "seed": "42",
        "note": "quotes \" backslash \\ slash / newline \n tab \t unicode ✓ é", "empty": ""
    ]

    private static func sampleCheckpoint(seed: UInt64 = 1, withVelocity: Bool = true, withSecondMoment: Bool = false) -> Checkpoint {
        Checkpoint(
            parameters: randomParameters(seed: seed),
            velocity: withVelocity ? randomParameters(seed: seed &+ 1000) : nil,
            secondMoment: withSecondMoment ? randomParameters(seed: seed &+ 2000) : nil,
            metadata: sampleMetadata)
    }

    /// Runs `body` with a fresh empty directory, removed afterwards.
    private static func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("pcnn-checkpoint-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try body(directory)
    }

    private static func directoryListing(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    }

    private static func writeBytes(_ data: Data, to path: String) throws {
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// The `CheckpointError` thrown by `body`; records an issue and returns nil when `body` throws
    /// something else or nothing.
    private static func checkpointError(
        sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
    ) -> CheckpointError? {
        do {
            try body()
            Issue.record("expected a CheckpointError, but nothing was thrown", sourceLocation: sourceLocation)
        } catch let error as CheckpointError {
            return error
        } catch {
            Issue.record("expected a CheckpointError, got \(error)", sourceLocation: sourceLocation)
        }
        return nil
    }

    // MARK: Byte surgery on encoded files

    /// The header length field of an encoded safetensors file.
    private static func headerLength(of file: Data) -> Int {
        Int(file.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    }

    /// `file` with its header length field set to `length`; everything else unchanged.
    private static func settingHeaderLength(of file: Data, to length: UInt64) -> Data {
        withUnsafeBytes(of: length.littleEndian) { Data($0) } + file.dropFirst(8)
    }

    /// `file` with its JSON header replaced by `header` (length field updated), byte buffer unchanged.
    private static func replacingHeader(of file: Data, with header: Data) -> Data {
        let buffer = file.dropFirst(8 + headerLength(of: file))
        return settingHeaderLength(of: Data(count: 8) + header + buffer, to: UInt64(header.count))
    }

    /// `file` with its JSON header parsed, edited by `edit`, and re-serialized.
    private static func editingHeader(of file: Data, _ edit: (inout [String: Any]) -> Void) throws -> Data {
        let json = file.dropFirst(8).prefix(headerLength(of: file))
        var header = try #require(JSONSerialization.jsonObject(with: json) as? [String: Any])
        edit(&header)
        return replacingHeader(of: file, with: try JSONSerialization.data(withJSONObject: header, options: .sortedKeys))
    }

    // MARK: - Non-finite values

    @Suite("Checkpoints with non-finite values")
    struct NonFiniteTests {
        static let badValues: [(Float, String)] = [
            (.nan, "nan"), (.infinity, "inf"), (-.infinity, "-inf"),
            (Float(nan: 0x2a, signaling: true), "nan")
        ]

        @Test(
            "NaN or an infinity in any parameter or velocity tensor is refused, naming tensor and index",
            arguments: TensorName.allCases)
        func refusedInEveryTensor(name: TensorName) throws {
            for inVelocity in [false, true] {
                for (bad, text) in Self.badValues {
                    var checkpoint = sampleCheckpoint(seed: 3)
                    // The last value of the tensor, so that a check stopping early would miss it.
                    let index = name.shape.reduce(1, *) - 1
                    let flat = Parameters.range(of: name).lowerBound + index
                    if inVelocity { checkpoint.velocity!.values[flat] = bad } else { checkpoint.parameters.values[flat] = bad }
                    let tensor = (inVelocity ? Checkpoint.velocityPrefix : "") + name.rawValue
                    let error = checkpointError { _ = try Checkpoint.decode(checkpoint.encoded(), path: "bad.safetensors") }
                    #expect(error == .nonFiniteValue(path: "bad.safetensors", tensor: tensor, index: index, value: text, count: 1))
                }
            }
        }

        @Test("the first bad value and the number of bad values are reported; the message names the tensor")
        func firstOfSeveral() throws {
            var checkpoint = sampleCheckpoint(seed: 4, withVelocity: false)
            let start = Parameters.range(of: .fWeight).lowerBound
            for (offset, value) in [(1234, Float.infinity), (17, -Float.infinity), (2000, Float.nan)] {
                checkpoint.parameters.values[start + offset] = value
            }
            try withTemporaryDirectory { directory in
                let path = directory + "/diverged.safetensors"
                try checkpoint.write(to: path)
                let error = try #require(checkpointError { _ = try Checkpoint.read(from: path) })
                #expect(error == .nonFiniteValue(path: path, tensor: "f.w", index: 17, value: "-inf", count: 3))
                #expect(
                    error.description == path + ": tensor \"f.w\" holds a non-finite value, -inf at index 17 "
                        + "(3 values are not finite); a checkpoint must hold finite numbers")
            }
        }

        @Test("the largest finite magnitudes and subnormals are still accepted")
        func extremeFiniteValuesAccepted() throws {
            var values = [Float](repeating: 0, count: Parameters.count)
            for i in values.indices {
                values[i] =
                    [
                        Float.greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude,
                        -.leastNormalMagnitude, -0.0
                    ][i % 5]
            }
            let checkpoint = Checkpoint(parameters: Parameters(values: values), velocity: Parameters(values: values))
            let restored = try Checkpoint.decode(checkpoint.encoded())
            #expect(bitPatterns(restored.parameters.values) == bitPatterns(values))
        }
    }

    // MARK: - Interoperability with Python's safetensors

    /// Runs `python3` for the interoperability tests.
    private enum Python {
        /// Whether `python3 -c "import safetensors, numpy"` succeeds.
        static let hasSafetensors: Bool = (try? run("import safetensors, numpy").status) == 0
        /// `PCNN_REQUIRE_PYTHON=1` (e.g. in CI) makes a missing Python setup fail instead of skip.
        static let isRequired = ProcessInfo.processInfo.environment["PCNN_REQUIRE_PYTHON"] == "1"

        /// Runs `python3 -c script arguments...`, returning its exit status, standard output and
        /// standard error (read after the output: the scripts here write little to it).
        static func run(
            _ script: String, _ arguments: [String] = []
        ) throws -> (status: Int32, output: String, errors: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", script] + arguments
            let output = Pipe(), errors = Pipe()
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            let outputBytes = output.fileHandleForReading.readDataToEndOfFile()
            let errorBytes = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (
                process.terminationStatus,
                String(decoding: outputBytes, as: UTF8.self),
                String(decoding: errorBytes, as: UTF8.self)
            )
        }

        /// Prints one line per tensor, sorted by name: `name dims-joined-by-x hex-bits,...`, then the
        /// metadata as JSON.
        static let dumpFunction = """
            import json, sys, numpy
            from safetensors import safe_open
            from safetensors.numpy import load_file
            def dump(path):
                tensors = load_file(path)
                for name in sorted(tensors):
                    array = tensors[name]
                    assert array.dtype == numpy.dtype("<f4"), array.dtype
                    bits = array.reshape(-1).view(numpy.uint32)
                    print(name, "x".join(map(str, array.shape)), ",".join("%08x" % b for b in bits))
                with safe_open(path, "numpy") as f:
                    print(json.dumps(f.metadata(), sort_keys=True))
            """
    }

    /// The lines Python's `dump` prints for the tensors of `checkpoint`, without the metadata line.
    private static func expectedDump(of checkpoint: Checkpoint) -> [String] {
        let sets = [("", checkpoint.parameters)] + (checkpoint.velocity.map { [("momentum.", $0)] } ?? [])
        return sets.flatMap { prefix, parameters in
            TensorName.allCases.map { name in
                let bits = parameters[name].map { String(format: "%08x", $0.bitPattern) }
                return "\(prefix + name.rawValue) \(name.shape.map(String.init).joined(separator: "x")) "
                    + bits.joined(separator: ",")
            }
        }.sorted()
    }

    /// Splits Python's `dump` output into tensor lines and the metadata.
    private static func parseDump(_ output: String) throws -> (tensors: [String], metadata: [String: String]) {
        let lines = output.split(separator: "\n").map(String.init)
        let metadataLine = try #require(lines.last, "python printed nothing")
        let metadata = try JSONDecoder().decode([String: String].self, from: Data(metadataLine.utf8))
        return (Array(lines.dropLast()), metadata)
    }
}

private extension CheckpointError {
    /// The case name, e.g. "truncated", for checking the kind of fault without its wording.
    var caseName: String { Mirror(reflecting: self).children.first?.label ?? "\(self)" }
}

extension CheckpointTesting {
    // MARK: - Checkpoint round trips

    @Suite("Checkpoint files")
    struct CheckpointTests {
        @Test("parameters and velocity round-trip bit for bit")
        func roundTripIsBitwiseExact() throws {
            let checkpoint = sampleCheckpoint()
            try withTemporaryDirectory { directory in
                let path = directory + "/model.safetensors"
                try checkpoint.write(to: path)
                let restored = try Checkpoint.read(from: path)
                #expect(bitPatterns(restored.parameters.values) == bitPatterns(checkpoint.parameters.values))
                let velocity = try #require(restored.velocity)
                #expect(bitPatterns(velocity.values) == bitPatterns(checkpoint.velocity!.values))
                #expect(restored.parameters.values[0].sign == .minus)
                #expect(restored.parameters.hash == checkpoint.parameters.hash)
            }
        }

        @Test("metadata round-trips and the format keys are added")
        func metadataRoundTrip() throws {
            let checkpoint = sampleCheckpoint()
            let data = try checkpoint.encoded()
            #expect(try Checkpoint.decode(data).metadata == sampleMetadata)

            let raw = try SafetensorsFile.decode(data, path: "checkpoint")
            #expect(raw.metadata[Checkpoint.formatKey] == "parallelcnn-checkpoint")
            #expect(raw.metadata[Checkpoint.versionKey] == "1")
            #expect(raw.metadata.count == sampleMetadata.count + 2)
        }

        @Test(
            "velocity and second moment are optional and round-trip bit for bit when present",
            arguments: [(false, false), (true, false), (true, true), (false, true)])
        func optimizerBuffersRoundTrip(withVelocity: Bool, withSecondMoment: Bool) throws {
            let checkpoint = sampleCheckpoint(seed: 7, withVelocity: withVelocity, withSecondMoment: withSecondMoment)
            let restored = try Checkpoint.decode(checkpoint.encoded())
            #expect(restored == checkpoint)
            #expect((restored.velocity == nil) == !withVelocity)
            #expect((restored.secondMoment == nil) == !withSecondMoment)
            if let s = restored.secondMoment {
                #expect(bitPatterns(s.values) == bitPatterns(checkpoint.secondMoment!.values))
            }

            let names = try SafetensorsFile.decode(checkpoint.encoded(), path: "checkpoint").tensors.map(\.name)
            let canonical = TensorName.allCases.map(\.rawValue)
            #expect(
                names == canonical + (withVelocity ? canonical.map { "momentum." + $0 } : [])
                    + (withSecondMoment ? canonical.map { "second_moment." + $0 } : []))
        }

        @Test("tensors have the documented names, shapes and order")
        func layout() throws {
            let file = try SafetensorsFile.decode(sampleCheckpoint(withVelocity: false).encoded(), path: "checkpoint")
            let expected: [(String, [Int])] = [
                ("c1.w", [6, 5, 5]), ("c1.b", [6]), ("s1.w", [4, 4]), ("s1.b", [1]),
                ("f.w", [10, 6, 6, 6]), ("f.b", [10])
            ]
            #expect(file.tensors.map(\.name) == expected.map(\.0))
            #expect(file.tensors.map(\.shape) == expected.map(\.1))
        }

        @Test("encoding is deterministic")
        func deterministic() throws {
            let first = try sampleCheckpoint(seed: 3).encoded()
            var reordered = sampleCheckpoint(seed: 3)
            reordered.metadata = Dictionary(uniqueKeysWithValues: sampleMetadata.sorted { $0.key > $1.key })
            #expect(try reordered.encoded() == first)
            #expect(headerLength(of: first) % 8 == 0)
        }

        @Test("reserved metadata keys are refused when writing")
        func reservedMetadata() throws {
            for key in [Checkpoint.formatKey, Checkpoint.versionKey] {
                let checkpoint = Checkpoint(parameters: Parameters(), metadata: [key: "mine"])
                try withTemporaryDirectory { directory in
                    let path = directory + "/model.safetensors"
                    #expect(checkpointError { try checkpoint.write(to: path) }?.caseName == "invalidMetadata")
                    let listing = try directoryListing(directory)
                    #expect(listing.isEmpty)
                }
            }
        }

        // MARK: Atomic writing

        @Test("writing leaves no temporary file and replaces an existing file")
        func atomicWrite() throws {
            try withTemporaryDirectory { directory in
                let path = directory + "/model.safetensors"
                try writeBytes(Data("old contents".utf8), to: path)
                try sampleCheckpoint(seed: 1).write(to: path)
                #expect(try directoryListing(directory) == ["model.safetensors"])

                let second = sampleCheckpoint(seed: 2)
                try second.write(to: path)
                #expect(try directoryListing(directory) == ["model.safetensors"])
                #expect(try Checkpoint.read(from: path) == second)
                #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == second.encoded())
            }
        }

        @Test("a failed write throws and leaves nothing behind")
        func failedWrite() throws {
            try withTemporaryDirectory { directory in
                let missingDirectory = directory + "/absent/model.safetensors"
                #expect(checkpointError { try sampleCheckpoint().write(to: missingDirectory) }?.caseName == "ioFailure")

                let occupied = directory + "/occupied"
                try FileManager.default.createDirectory(atPath: occupied, withIntermediateDirectories: false)
                let error = checkpointError { try sampleCheckpoint().write(to: occupied) }
                #expect(error?.caseName == "ioFailure")
                #expect(error?.path == occupied)
                #expect(try directoryListing(directory) == ["occupied"])
                #expect(try directoryListing(occupied).isEmpty)
            }
        }

        // MARK: Rejected files

        @Test("a missing file is reported as such")
        func missingFile() throws {
            try withTemporaryDirectory { directory in
                let path = directory + "/nothing.safetensors"
                let error = checkpointError { _ = try Checkpoint.read(from: path) }
                #expect(error == .fileNotFound(path: path))
                #expect(error?.description.contains(path) == true)
            }
        }

        @Test("a truncated file is rejected wherever it is cut")
        func truncated() throws {
            let data = try sampleCheckpoint().encoded()
            let bufferStart = 8 + headerLength(of: data)
            let cuts = [
                0, 1, 7, 8, 9, bufferStart / 2, bufferStart - 1, bufferStart, bufferStart + 1,
                bufferStart + 4 * 150, data.count - 4, data.count - 1
            ]
            try withTemporaryDirectory { directory in
                let path = directory + "/cut.safetensors"
                for cut in cuts {
                    try writeBytes(data.prefix(cut), to: path)
                    let error = checkpointError { _ = try Checkpoint.read(from: path) }
                    #expect(error?.caseName == "truncated", "cut at \(cut) bytes: \(String(describing: error))")
                    #expect(error?.path == path)
                }
            }
        }

        @Test("a lying header length is rejected")
        func lyingHeaderLength() throws {
            let data = try sampleCheckpoint().encoded()
            let length = UInt64(headerLength(of: data))
            let cases: [(UInt64, String)] = [
                (0, "invalidHeaderLength"), (1, "invalidHeaderLength"), (UInt64.max, "invalidHeaderLength"),
                (SafetensorsFile.maximumHeaderLength + 1, "invalidHeaderLength"),
                (UInt64(data.count), "truncated"),  // longer than what follows
                (length - 8, "invalidHeader"),  // cuts the JSON short
                (length + 8, "invalidHeader")  // swallows tensor bytes into the JSON
            ]
            for (lie, kind) in cases {
                let error = checkpointError { _ = try Checkpoint.decode(settingHeaderLength(of: data, to: lie)) }
                #expect(error?.caseName == kind, "header length \(lie): \(String(describing: error))")
            }
        }

        @Test("a header that is not valid safetensors JSON is rejected")
        func badJSON() throws {
            let data = try sampleCheckpoint().encoded()
            let headers = [
                "{not json}", "[1, 2, 3]", "   {}", "{\"c1.w\": 5}", "{\"c1.w\": {\"dtype\": \"F32\"}}",
                "{\"c1.w\": {\"dtype\": \"F32\", \"shape\": [6, 5.5, 5], \"data_offsets\": [0, 600]}}",
                "{\"__metadata__\": {\"format\": 1}}", "{\"c1.w\": {\"dtype\": \"F32\""
            ]
            for header in headers {
                let corrupted = replacingHeader(of: data, with: Data(header.utf8))
                let error = checkpointError { _ = try Checkpoint.decode(corrupted) }
                #expect(error?.caseName == "invalidHeader", "\(header): \(String(describing: error))")
            }
            let invalidUTF8 = Data([UInt8(ascii: "{"), 0xff, 0xfe, UInt8(ascii: "}")])
            let corrupted = replacingHeader(of: data, with: invalidUTF8)
            #expect(checkpointError { _ = try Checkpoint.decode(corrupted) }?.caseName == "invalidHeader")
        }

        @Test("a tensor of the wrong shape is rejected")
        func wrongShape() throws {
            let data = try editingHeader(of: sampleCheckpoint().encoded()) { header in
                var entry = header["c1.w"] as! [String: Any]
                entry["shape"] = [6, 25]
                header["c1.w"] = entry
            }
            let error = checkpointError { _ = try Checkpoint.decode(data, path: "shape.safetensors") }
            #expect(
                error
                    == .wrongShape(
                        path: "shape.safetensors", tensor: "c1.w", expected: [6, 5, 5], found: [6, 25]))
        }

        @Test("a tensor of another dtype is rejected")
        func wrongDtype() throws {
            let data = try editingHeader(of: sampleCheckpoint().encoded()) { header in
                var entry = header["f.b"] as! [String: Any]
                entry["dtype"] = "F64"
                entry["shape"] = [5]
                header["f.b"] = entry
            }
            let error = checkpointError { _ = try Checkpoint.decode(data, path: "dtype.safetensors") }
            #expect(error == .unsupportedDtype(path: "dtype.safetensors", tensor: "f.b", dtype: "F64"))
            #expect(error?.description.contains("F32") == true)
        }

        @Test("missing and unexpected tensors are rejected")
        func missingOrUnexpectedTensor() throws {
            let file = try SafetensorsFile.decode(sampleCheckpoint(withSecondMoment: true).encoded(), path: "checkpoint")
            func decode(_ tensors: [SafetensorsFile.Tensor]) throws {
                let edited = SafetensorsFile(tensors: tensors, metadata: file.metadata)
                _ = try Checkpoint.decode(edited.encoded(), path: "p")
            }
            #expect(
                checkpointError { try decode(file.tensors.filter { $0.name != "f.b" }) }
                    == .missingTensor(path: "p", tensor: "f.b"))
            #expect(
                checkpointError { try decode(file.tensors.filter { $0.name != "momentum.s1.w" }) }
                    == .missingTensor(path: "p", tensor: "momentum.s1.w"))
            #expect(
                checkpointError { try decode(file.tensors.filter { $0.name != "second_moment.c1.b" }) }
                    == .missingTensor(path: "p", tensor: "second_moment.c1.b"))
            let stranger = SafetensorsFile.Tensor(name: "extra", shape: [1], values: [1])
            #expect(
                checkpointError { try decode(file.tensors + [stranger]) }
                    == .unexpectedTensor(path: "p", tensor: "extra"))
        }

        @Test("a safetensors file without the checkpoint format metadata is rejected")
        func notACheckpoint() throws {
            let file = try SafetensorsFile.decode(sampleCheckpoint().encoded(), path: "checkpoint")
            func decode(metadata: [String: String]) throws {
                let edited = SafetensorsFile(tensors: file.tensors, metadata: metadata)
                _ = try Checkpoint.decode(edited.encoded(), path: "p")
            }
            let foreign: [[String: String]] = [
                [:], ["format": "other", "version": "1"], ["format": "parallelcnn-checkpoint"]
            ]
            for metadata in foreign {
                #expect(checkpointError { try decode(metadata: metadata) }?.caseName == "notACheckpoint", "\(metadata)")
            }
            #expect(
                checkpointError { try decode(metadata: ["format": "parallelcnn-checkpoint", "version": "2"]) }
                    == .unsupportedVersion(path: "p", version: "2"))
        }

        @Test("data offsets out of range, overlapping or leaving gaps are rejected")
        func badOffsets() throws {
            let data = try sampleCheckpoint(withVelocity: false).encoded()
            // c1.b occupies bytes [600, 624); s1.w follows at 624.
            let cases: [([Int], String)] = [
                ([1_000_000, 1_000_024], "invalidOffsets"),  // beyond the buffer
                ([624, 600], "invalidOffsets"),  // ends before it begins
                ([-24, 0], "invalidOffsets"),  // negative
                ([596, 620], "invalidOffsets"),  // overlaps c1.w
                ([604, 628], "invalidOffsets"),  // leaves a gap, overlaps s1.w
                ([600, 628], "invalidTensor"),  // 7 floats for a shape of 6
                ([600], "invalidOffsets")  // not a pair
            ]
            for (offsets, kind) in cases {
                let corrupted = try editingHeader(of: data) { header in
                    var entry = header["c1.b"] as! [String: Any]
                    entry["data_offsets"] = offsets
                    header["c1.b"] = entry
                }
                let error = checkpointError { _ = try Checkpoint.decode(corrupted) }
                #expect(error?.caseName == kind, "offsets \(offsets): \(String(describing: error))")
            }
            let trailing = data + Data([0, 0, 0, 0])
            #expect(checkpointError { _ = try Checkpoint.decode(trailing) }?.caseName == "invalidOffsets")
        }
    }

    // MARK: - General safetensors

    @Suite("Safetensors files")
    struct SafetensorsTests {
        @Test("scalars, empty tensors, NaN payloads and empty files round-trip")
        func edgeCases() throws {
            let nans = [Float(nan: 0x1234, signaling: false), -Float(nan: 0x1, signaling: true), .nan]
            let file = SafetensorsFile(
                tensors: [
                    .init(name: "scalar", shape: [], values: [-0.0]),
                    .init(name: "empty", shape: [3, 0], values: []),
                    .init(name: "nans", shape: [3], values: nans),
                    .init(name: "z/with \"odd\" name ✓", shape: [1, 1, 1], values: [1])
                ],
                metadata: [:])
            let decoded = try SafetensorsFile.decode(file.encoded(), path: "edge")
            #expect(decoded.tensors.map(\.name) == file.tensors.map(\.name))
            #expect(decoded.tensors.map(\.shape) == file.tensors.map(\.shape))
            #expect(decoded.tensors.map { bitPatterns($0.values) } == file.tensors.map { bitPatterns($0.values) })
            #expect(decoded.metadata.isEmpty)

            let nothing = try SafetensorsFile().encoded()
            #expect(nothing.count == 16)
            #expect(try SafetensorsFile.decode(nothing, path: "nothing") == SafetensorsFile())
        }

        @Test("tensors that cannot be encoded are refused")
        func invalidTensors() {
            let cases: [[SafetensorsFile.Tensor]] = [
                [.init(name: "a", shape: [2, 2], values: [1, 2, 3])],
                [.init(name: "a", shape: [-1], values: [])],
                [.init(name: "a", shape: [Int.max, 2], values: [])],
                [.init(name: "a", shape: [1], values: [1]), .init(name: "a", shape: [1], values: [2])],
                [.init(name: "__metadata__", shape: [1], values: [1])]
            ]
            for tensors in cases {
                let error = checkpointError { _ = try SafetensorsFile(tensors: tensors).encoded() }
                #expect(error?.caseName == "invalidTensor", "\(tensors.map(\.name)): \(String(describing: error))")
                #expect(error?.path == SafetensorsFile.inMemoryPath)
            }
        }

        @Test("other dtypes are rejected when reading")
        func otherDtypes() throws {
            let base = try SafetensorsFile(tensors: [.init(name: "x", shape: [2], values: [1, 2])]).encoded()
            for dtype in ["F16", "BF16", "I32", "U8", "F64", "f32"] {
                let data = try editingHeader(of: base) { header in
                    header["x"] = ["dtype": dtype, "shape": [2], "data_offsets": [0, 8]]
                }
                #expect(
                    checkpointError { _ = try SafetensorsFile.decode(data, path: "d") }
                        == .unsupportedDtype(path: "d", tensor: "x", dtype: dtype))
            }
        }

        @Test("errors name the file and the fault")
        func descriptions() {
            let error = CheckpointError.wrongShape(
                path: "/tmp/a.safetensors", tensor: "c1.w", expected: [6, 5, 5], found: [6, 25])
            #expect(error.description == "/tmp/a.safetensors: tensor \"c1.w\" has shape [6, 25], expected [6, 5, 5]")
        }
    }

    @Suite(
        "Python interoperability",
        .enabled(
            if: Python.hasSafetensors || Python.isRequired,
            "needs python3 with safetensors and numpy (with PCNN_REQUIRE_PYTHON=1 their absence fails)"))
    struct PythonInteroperabilityTests {
        init() throws {
            try #require(
                Python.hasSafetensors, "PCNN_REQUIRE_PYTHON=1 but python3 -c \"import safetensors, numpy\" fails")
        }

        @Test("Python's safetensors reads a Swift checkpoint exactly")
        func pythonReadsSwift() throws {
            let checkpoint = sampleCheckpoint(seed: 11)
            try withTemporaryDirectory { directory in
                let path = directory + "/swift.safetensors"
                try checkpoint.write(to: path)
                let result = try Python.run(Python.dumpFunction + "\ndump(sys.argv[1])\n", [path])
                try #require(result.status == 0, "python3 failed reading \(path): \(result.errors)")
                let dump = try parseDump(result.output)
                #expect(dump.tensors == expectedDump(of: checkpoint))
                var expectedMetadata = sampleMetadata
                expectedMetadata["format"] = "parallelcnn-checkpoint"
                expectedMetadata["version"] = "1"
                #expect(dump.metadata == expectedMetadata)
            }
        }

        @Test("Swift reads a checkpoint written by Python's safetensors exactly")
        func swiftReadsPython() throws {
            // Python's writer orders tensors by dtype and name, unlike ours, so this exercises the
            // reader on a layout it did not produce.
            let shapes = TensorName.allCases.flatMap { name in
                ["", "momentum."].map { "\"\($0 + name.rawValue)\": \(name.shape)" }
            }.joined(separator: ", ")
            let writer =
                Python.dumpFunction + """

                    from safetensors.numpy import save_file
                    generator = numpy.random.default_rng(5)
                    tensors = {}
                    for name, shape in json.loads(sys.argv[2]).items():
                        bits = generator.integers(0, 2**32, size=shape, dtype=numpy.uint32)
                        values = bits.view(numpy.float32)
                        values[~numpy.isfinite(values)] = -0.0
                        tensors[name] = values
                    metadata = {"format": "parallelcnn-checkpoint", "version": "1", "recipe": "modern"}
                    save_file(tensors, sys.argv[1], metadata=metadata)
                    dump(sys.argv[1])
                    """
            try withTemporaryDirectory { directory in
                let path = directory + "/python.safetensors"
                let result = try Python.run(writer, [path, "{\(shapes)}"])
                try #require(result.status == 0, "python3 failed writing \(path): \(result.errors)")
                let dump = try parseDump(result.output)
                let checkpoint = try Checkpoint.read(from: path)
                #expect(expectedDump(of: checkpoint) == dump.tensors)
                #expect(checkpoint.metadata == ["recipe": "modern"])
                #expect(checkpoint.velocity != nil)
            }
        }
    }
}
