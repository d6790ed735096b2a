import Foundation

/// A training checkpoint: the network's parameters, optional optimizer state, and string metadata
/// describing the training state.
///
/// On disk a checkpoint is a safetensors file (see `SafetensorsFile`) that Python's
/// `safetensors.numpy.load_file` reads directly. It holds:
/// - the parameters as float32 little-endian tensors `c1.w` [6, 5, 5], `c1.b` [6], `s1.w` [4, 4],
///   `s1.b` [1], `f.w` [10, 6, 6, 6], `f.b` [10], laid out in that (canonical) order;
/// - when `velocity` is present, the same six tensors prefixed with `momentum.`
///   (`momentum.c1.w`, ...), after the parameters;
/// - when `secondMoment` is present (Adam), the six tensors prefixed with `second_moment.`, last;
/// - as safetensors metadata, `metadata` plus `"format": "parallelcnn-checkpoint"` and
///   `"version": "1"`.
///
/// Any network other than the paper's (`architecture`) names its tensors after its layers, as
/// PyTorch would (`conv1.weight` [F, C, K, K], `conv1.bias`, `dense1.weight` [O, I], ...), and
/// records its description and input shape in the metadata (`"network"`, `"input_shape"`). A file
/// without them holds the paper's network under SPEC's names, as every file written before
/// networks could be described does, and the paper's network is still written so.
///
/// Guarantees: `read(from:)` of a file written by `write(to:)` returns a checkpoint with the same
/// metadata and bit-identical parameters and optimizer buffers, provided they are finite (a NaN or infinity
/// is written as it is, for inspection, but refused when read); writing is atomic and
/// deterministic (equal checkpoints give identical files). A file whose metadata records the
/// hashes of its tensors (`parameterHashKey`, as every trainer's checkpoint does) is refused when
/// its tensors no longer give them.
public struct Checkpoint: Equatable, Sendable {
    /// The network's parameters.
    public var parameters: Parameters
    /// The momentum buffer, or Adam's first moment, if the run has one.
    public var velocity: Parameters?
    /// Adam's second moment, if the run has one.
    public var secondMoment: Parameters?
    /// Training state (recipe, epoch, position, seed, ...), written by the trainer. The keys
    /// `formatKey` and `versionKey` are reserved.
    public var metadata: [String: String]
    /// The network the parameters belong to.
    public var architecture: Architecture

    /// Metadata key identifying the file as a ParallelCNN checkpoint.
    public static let formatKey = "format"
    /// The value of `formatKey`.
    public static let formatName = "parallelcnn-checkpoint"
    /// Metadata key holding the format version.
    public static let versionKey = "version"
    /// The format version written, and the only one read.
    public static let formatVersion = "1"
    /// Metadata keys of the hashes (`Parameters.hashString`) of the parameters and of the
    /// optimizer's buffers, checked when a file that records them is read.
    public static let parameterHashKey = "param_hash"
    public static let velocityHashKey = "momentum_hash"
    public static let secondMomentHashKey = "second_moment_hash"
    /// Prefix of the tensor names holding `velocity`.
    public static let velocityPrefix = "momentum."
    /// Prefix of the tensor names holding `secondMoment`.
    public static let secondMomentPrefix = "second_moment."

    public init(
        parameters: Parameters, velocity: Parameters? = nil, secondMoment: Parameters? = nil,
        metadata: [String: String] = [:], architecture: Architecture = .paper
    ) {
        precondition(
            parameters.values.count == architecture.parameterCount,
            "\(architecture.parameterCount) parameters expected, got \(parameters.values.count)")
        self.architecture = architecture
        self.parameters = parameters
        self.velocity = velocity
        self.secondMoment = secondMoment
        self.metadata = metadata
    }

    /// The optimizer's buffers, as an engine loads them.
    public var optimizerState: OptimizerState { OptimizerState(velocity: velocity, secondMoment: secondMoment) }

    // MARK: Writing

    /// Writes the checkpoint to `path` atomically: readers see either the previous file or the
    /// complete new one (see `SafetensorsFile.write(to:)`). An existing file is replaced.
    ///
    /// - Throws: `CheckpointError.invalidMetadata` when `metadata` uses a reserved key (nothing is
    ///   written then), or `CheckpointError.ioFailure`.
    public func write(to path: String) throws {
        try safetensors(reportingAs: path).write(to: path)
    }

    /// The checkpoint's file bytes, exactly as `write(to:)` stores them.
    ///
    /// - Throws: `CheckpointError.invalidMetadata` when `metadata` uses a reserved key.
    public func encoded() throws -> Data {
        try safetensors(reportingAs: SafetensorsFile.inMemoryPath).encoded()
    }

    /// The safetensors form of the checkpoint; errors name `path`.
    private func safetensors(reportingAs path: String) throws -> SafetensorsFile {
        if let reserved = [Self.formatKey, Self.versionKey, Architecture.networkKey, Architecture.inputKey].first(where: {
            metadata[$0] != nil
        }) {
            throw CheckpointError.invalidMetadata(
                path: path, reason: "the key \"\(reserved)\" is reserved for the checkpoint format")
        }
        var fileMetadata = metadata
        fileMetadata[Self.formatKey] = Self.formatName
        fileMetadata[Self.versionKey] = Self.formatVersion
        if !architecture.isPaper { fileMetadata.merge(architecture.metadata) { $1 } }

        var tensors = Self.tensors(of: parameters, prefix: "", architecture)
        if let velocity {
            tensors += Self.tensors(of: velocity, prefix: Self.velocityPrefix, architecture)
        }
        if let secondMoment {
            tensors += Self.tensors(of: secondMoment, prefix: Self.secondMomentPrefix, architecture)
        }
        return SafetensorsFile(tensors: tensors, metadata: fileMetadata)
    }

    /// The tensors of `parameters` in canonical order, named `prefix` + the canonical name.
    private static func tensors(of parameters: Parameters, prefix: String, _ architecture: Architecture) -> [SafetensorsFile.Tensor] {
        tensorLayout(architecture).map { tensor in
            SafetensorsFile.Tensor(name: prefix + tensor.name, shape: tensor.shape, values: Array(parameters.values[tensor.range]))
        }
    }

    /// Name, shape and range of every tensor: SPEC's six for the paper's network, the layers' otherwise.
    static func tensorLayout(_ architecture: Architecture) -> [(name: String, shape: [Int], range: Range<Int>)] {
        architecture.isPaper
            ? TensorName.allCases.map { ($0.rawValue, $0.shape, Parameters.range(of: $0)) }
            : architecture.tensors
    }

    // MARK: Reading

    /// Reads the checkpoint at `path`.
    ///
    /// - Throws: `CheckpointError`: `.fileNotFound`; `.ioFailure`; for a truncated or corrupt file
    ///   any structural error of `SafetensorsFile.decode(_:path:)` (e.g. `.truncated`,
    ///   `.invalidHeader`, `.unsupportedDtype` for a non-F32 tensor, `.invalidOffsets`); then
    ///   `.notACheckpoint` / `.unsupportedVersion` when the format metadata is absent or different,
    ///   `.unexpectedTensor` for a tensor that is not part of a checkpoint, `.missingTensor` when a
    ///   parameter tensor is absent (or some but not all `momentum.` or `second_moment.` tensors
    ///   are present), `.wrongShape`, and `.nonFiniteValue` for a NaN or infinity in any tensor
    ///   (parameters first, then velocity, then second moment, each in canonical order), naming
    ///   the tensor and the first bad index.
    public static func read(from path: String) throws -> Checkpoint {
        try Checkpoint(SafetensorsFile.read(path: path), path: path)
    }

    /// Decodes checkpoint bytes as produced by `encoded()`, with the checks of `read(from:)`.
    /// `path` is only used in errors.
    public static func decode(_ data: Data, path: String = SafetensorsFile.inMemoryPath) throws -> Checkpoint {
        try Checkpoint(SafetensorsFile.decode(data, path: path), path: path)
    }

    /// Interprets a structurally valid safetensors file as a checkpoint.
    private init(_ file: SafetensorsFile, path: String) throws {
        guard let format = file.metadata[Self.formatKey] else {
            throw CheckpointError.notACheckpoint(path: path, reason: "the metadata has no \"\(Self.formatKey)\" entry")
        }
        guard format == Self.formatName else {
            throw CheckpointError.notACheckpoint(
                path: path, reason: "the format is \"\(format)\", expected \"\(Self.formatName)\"")
        }
        guard let version = file.metadata[Self.versionKey] else {
            throw CheckpointError.notACheckpoint(path: path, reason: "the metadata has no \"\(Self.versionKey)\" entry")
        }
        guard version == Self.formatVersion else {
            throw CheckpointError.unsupportedVersion(path: path, version: version)
        }

        let architecture: Architecture
        do {
            architecture = try Architecture.from(metadata: file.metadata)
        } catch {
            throw CheckpointError.invalidMetadata(path: path, reason: "its network cannot be used: \(error)")
        }
        let layout = Self.tensorLayout(architecture)
        let byName = Dictionary(file.tensors.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let parameterNames = layout.map(\.name)
        let optionalPrefixes = [Self.velocityPrefix, Self.secondMomentPrefix]
        let known = Set(parameterNames + optionalPrefixes.flatMap { prefix in parameterNames.map { prefix + $0 } })
        if let stranger = file.tensors.first(where: { !known.contains($0.name) }) {
            throw CheckpointError.unexpectedTensor(path: path, tensor: stranger.name)
        }

        // The tensors with `prefix`, if any of them is present.
        func optional(_ prefix: String) throws -> Parameters? {
            parameterNames.contains { byName[prefix + $0] != nil }
                ? try Self.parameters(from: byName, prefix: prefix, path: path, layout: layout, architecture)
                : nil
        }
        self.architecture = architecture
        parameters = try Self.parameters(from: byName, prefix: "", path: path, layout: layout, architecture)
        velocity = try optional(Self.velocityPrefix)
        secondMoment = try optional(Self.secondMomentPrefix)
        for (key, tensors) in [
            (Self.parameterHashKey, parameters), (Self.velocityHashKey, velocity), (Self.secondMomentHashKey, secondMoment)
        ] {
            if let recorded = file.metadata[key], let tensors, recorded != tensors.hashString {
                throw CheckpointError.hashMismatch(path: path, key: key, recorded: recorded, computed: tensors.hashString)
            }
        }
        let reserved = [Self.formatKey, Self.versionKey, Architecture.networkKey, Architecture.inputKey]
        metadata = file.metadata.filter { !reserved.contains($0.key) }
    }

    /// Assembles the tensors named `prefix` + each canonical name into parameters. The tensors come
    /// from a decoded file, so their value counts match their shapes.
    ///
    /// - Throws: `.missingTensor`, `.wrongShape` or `.nonFiniteValue`.
    private static func parameters(
        from tensors: [String: SafetensorsFile.Tensor], prefix: String, path: String,
        layout: [(name: String, shape: [Int], range: Range<Int>)], _ architecture: Architecture
    ) throws -> Parameters {
        var parameters = Parameters(zerosFor: architecture)
        for name in layout {
            let fullName = prefix + name.name
            guard let tensor = tensors[fullName] else {
                throw CheckpointError.missingTensor(path: path, tensor: fullName)
            }
            guard tensor.shape == name.shape else {
                throw CheckpointError.wrongShape(
                    path: path, tensor: fullName, expected: name.shape, found: tensor.shape)
            }
            // Training from NaN or infinity only spreads it to every weight, and a test run on it
            // reports a meaningless error rate, so refuse such a file at the door.
            if let first = tensor.values.firstIndex(where: { !$0.isFinite }) {
                let value = tensor.values[first]
                throw CheckpointError.nonFiniteValue(
                    path: path, tensor: fullName, index: first,
                    value: value.isNaN ? "nan" : (value < 0 ? "-inf" : "inf"),
                    count: tensor.values.count { !$0.isFinite })
            }
            parameters.values.replaceSubrange(name.range, with: tensor.values)
        }
        return parameters
    }
}
