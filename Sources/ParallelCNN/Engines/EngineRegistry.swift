import Foundation

/// An `--engine` name. The engines themselves are listed in `EngineRegistry.engines`.
public struct EngineKind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// Every registered engine, in the order `--help` lists them.
    public static var allCases: [EngineKind] { EngineRegistry.engines.map(\.kind) }
}

/// How an engine splits the work (`--strategy`); each engine accepts some of them.
/// The one strategy type: every engine takes it, and its descriptor lists the cases it accepts.
public enum EngineStrategy: String, CaseIterable, Sendable {
    /// Split each layer of one sample across workers (the paper's OpenMP, MPI and CUDA designs).
    /// Each element is still summed by one worker in the sequential engine's order, so the CPU
    /// engines are bit-identical to `sequential` for any worker count; on a device, one kernel
    /// per layer and pass, per sample (launch-bound by design).
    case layer
    /// Split each batch's samples across workers; every CPU engine sums a batch in
    /// `BatchGradient`'s block order, so results equal `sequential` at the same batch.
    case data
    /// A device engine's persistent kernel: one work-group per sample runs all layers on chip;
    /// per-sample SGD loops over many samples in one launch.
    case fused
}

/// The engine options that `train`, `test`, `predict` and `bench` share. `nil` means the
/// engine's default; an option the chosen engine does not take is an error.
public struct EngineOptions: Sendable, Equatable {
    public var threads: Int?
    public var strategy: EngineStrategy?
    public var device: Int?
    /// The network the engine trains (`--net`, on the data set's input shape).
    public var architecture: Architecture

    public init(threads: Int? = nil, strategy: EngineStrategy? = nil, device: Int? = nil, architecture: Architecture = .paper) {
        self.threads = threads
        self.strategy = strategy
        self.device = device
        self.architecture = architecture
    }

    /// Upper bounds checked before anything is allocated.
    public static let maximumThreads = 256
    public static let maximumDevice = 63
}

/// Options resolved against an engine's defaults.
public struct EngineSettings: Sendable, Equatable {
    public var strategy: EngineStrategy?
    public var threads: Int
    public var device: Int
    public var architecture: Architecture = .paper
}

/// Whether an engine can run here, and if not, exactly what to do about it.
public enum EngineAvailability: Sendable, Equatable {
    case available(detail: String)
    case unavailable(remedy: String)

    public var isAvailable: Bool { if case .available = self { true } else { false } }
    /// What to do to make it available; nil when it is.
    public var remedy: String? { if case .unavailable(let remedy) = self { remedy } else { nil } }
}

/// Everything the program knows about one engine: how to tell whether it can run here, the
/// options it takes, and how to make it. An engine is added by writing its folder under
/// `Engines/` with one of these and listing it in `EngineRegistry.engines`.
public struct EngineDescriptor: Sendable {
    public let kind: EngineKind
    /// One line for `--help` and `pcnn devices`.
    public let summary: String
    /// Accepted `--strategy` values; the first is the default. Empty: the option is refused.
    public let strategies: [EngineStrategy]
    /// Default `--threads` per strategy; `nil` for a strategy without threads (the option is refused).
    public let defaultThreads: @Sendable (EngineStrategy?) -> Int?
    /// Whether `--device N` applies.
    public let takesDevice: Bool
    /// The launcher its processes are started with (`mpirun`), or `nil` for a plain process.
    public let launcher: String?
    public let availability: @Sendable () -> EngineAvailability
    /// The processes the engine will run on; for MPI this starts MPI, so every rank calls it first.
    public let processGroup: @Sendable () throws -> any ProcessGroup
    let make: @Sendable (EngineSettings, Parameters) throws -> any Engine

    public init(
        kind: EngineKind, summary: String, strategies: [EngineStrategy] = [],
        defaultThreads: @escaping @Sendable (EngineStrategy?) -> Int? = { _ in nil },
        takesDevice: Bool = false, launcher: String? = nil,
        availability: @escaping @Sendable () -> EngineAvailability = { .available(detail: "built in") },
        processGroup: @escaping @Sendable () throws -> any ProcessGroup = { SingleProcess.shared },
        make: @escaping @Sendable (EngineSettings, Parameters) throws -> any Engine
    ) {
        self.kind = kind
        self.summary = summary
        self.strategies = strategies
        self.defaultThreads = defaultThreads
        self.takesDevice = takesDevice
        self.launcher = launcher
        self.availability = availability
        self.processGroup = processGroup
        self.make = make
    }

    /// The strategy a run at `batchSize` gets when it names none: the first, except that an engine
    /// that splits batches first runs its layer strategy at batch 1, where a batch has nothing to
    /// split (threads data at batch 1 took 0.064 s per epoch of 2,000 paper samples against
    /// 0.023 s sequential).
    public func defaultStrategy(batchSize: Int) -> EngineStrategy? {
        batchSize == 1 && strategies.first == .data && strategies.contains(.layer) ? .layer : strategies.first
    }

    /// `options` checked against what this engine takes and filled with its defaults.
    public func resolve(_ options: EngineOptions) throws(EngineError) -> EngineSettings {
        let name = kind.rawValue
        var strategy = strategies.first
        if let requested = options.strategy {
            guard strategies.contains(requested) else {
                throw .invalidOption(
                    engine: name,
                    message: strategies.isEmpty
                        ? "--strategy does not apply to this engine"
                        : "--strategy \(requested.rawValue) is not one of \(strategies.map(\.rawValue).joined(separator: ", "))")
            }
            strategy = requested
        }
        let threadsDefault = defaultThreads(strategy)
        if let threads = options.threads {
            guard (1...EngineOptions.maximumThreads).contains(threads) else {
                throw .invalidOption(
                    engine: name, message: "--threads must be between 1 and \(EngineOptions.maximumThreads), got \(threads)")
            }
            guard threadsDefault != nil else {
                throw .invalidOption(
                    engine: name, message: "--threads does not apply\(strategy.map { " to --strategy \($0.rawValue)" } ?? "")")
            }
        }
        if let device = options.device {
            guard takesDevice else { throw .invalidOption(engine: name, message: "--device does not apply to this engine") }
            guard (0...EngineOptions.maximumDevice).contains(device) else {
                throw .invalidOption(engine: name, message: "--device must be between 0 and \(EngineOptions.maximumDevice), got \(device)")
            }
        }
        return EngineSettings(
            strategy: strategy, threads: options.threads ?? threadsDefault ?? 1, device: options.device ?? 0,
            architecture: options.architecture)
    }

    /// A new engine holding `parameters`. Throws `EngineError.unavailable` with the remedy when
    /// the engine cannot run here.
    public func makeEngine(_ options: EngineOptions = EngineOptions(), parameters: Parameters) throws -> any Engine {
        let settings = try resolve(options)
        guard parameters.values.count == options.architecture.parameterCount else {
            throw EngineError.invalidOption(
                engine: kind.rawValue,
                message:
                    "the parameters hold \(parameters.values.count) values, the network \(options.architecture.network) needs \(options.architecture.parameterCount)"
            )
        }
        if case .unavailable(let remedy) = availability() { throw EngineError.unavailable(engine: kind.rawValue, remedy: remedy) }
        return try make(settings, parameters)
    }
}

/// The engines of this build. Adding an engine: one folder under `Engines/` that defines its
/// `EngineDescriptor` (and `EngineKind`), and one entry here.
public enum EngineRegistry {
    public static let engines: [EngineDescriptor] = [.reference, .sequential, .threads, .mpi, .opencl, .cuda]

    /// The descriptor of `kind`.
    public static func descriptor(_ kind: EngineKind) throws(EngineError) -> EngineDescriptor {
        guard let descriptor = engines.first(where: { $0.kind == kind }) else {
            throw .invalidOption(
                engine: kind.rawValue, message: "no such engine; choose one of \(engines.map(\.kind.rawValue).joined(separator: ", "))")
        }
        return descriptor
    }

    /// A new engine of `kind` holding `parameters`.
    public static func makeEngine(
        _ kind: EngineKind, _ options: EngineOptions = EngineOptions(),
        parameters: Parameters
    ) throws -> any Engine {
        try descriptor(kind).makeEngine(options, parameters: parameters)
    }

    /// Cores this process may run on.
    public static var availableCores: Int { ProcessInfo.processInfo.activeProcessorCount }
}
