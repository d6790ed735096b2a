import Foundation

/// How to build an engine: the `--engine` choice and its options.
public struct EngineConfiguration: Equatable, Sendable {
    public var kind: EngineKind
    /// Threads of the `threads` engine.
    public var threads: Int
    /// Work split of the `threads` engine.
    public var strategy: ThreadStrategy

    public init(kind: EngineKind, threads: Int = EngineConfiguration.availableCores, strategy: ThreadStrategy = .data) {
        self.kind = kind
        self.threads = threads
        self.strategy = strategy
    }

    /// Cores this process may run on.
    public static var availableCores: Int { ProcessInfo.processInfo.activeProcessorCount }

    /// A new engine holding `parameters`. For `mpi` this initialises MPI (every rank of the job
    /// must call it) and throws `EngineError.unavailable` in a build without the `MPI` trait.
    public func makeEngine(parameters: Parameters) throws -> any Engine {
        switch kind {
        case .reference: return ReferenceEngine(parameters: parameters)
        case .sequential: return SequentialEngine(parameters: parameters)
        case .threads: return ThreadedEngine(parameters: parameters, threads: threads, strategy: strategy)
        case .mpi:
            #if MPI
            return MPIEngine(parameters: parameters, communicator: try Communicator.world(), strategy: strategy, threads: threads)
            #else
            throw EngineError.unavailable(engine: "mpi", remedy: Self.mpiRemedy)
            #endif
        }
    }

    /// Whether this build includes the `mpi` engine (the `MPI` package trait).
    public static var mpiBuilt: Bool {
        #if MPI
        true
        #else
        false
        #endif
    }

    public static let mpiRemedy = """
        this pcnn was built without MPI. Install Open MPI and rebuild with the MPI trait: \
        `apt-get install libopenmpi-dev openmpi-bin`, then `swift build -c release --traits MPI` \
        (scripts/setup and scripts/train do both when Open MPI is present), and run it under \
        `mpirun -np N pcnn train --engine mpi`
        """
}
