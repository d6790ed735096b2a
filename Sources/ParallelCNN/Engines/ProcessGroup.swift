#if canImport(Glibc)
import Glibc
#endif

/// The processes of one training job: one process normally, every rank under `mpirun` for the
/// `mpi` engine. The command line uses it so that only rank 0 prints and writes, and so that
/// ranks agree on errors and on stopping instead of leaving one another waiting.
public protocol ProcessGroup: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Whether any rank's `outcome` failed; the error is handed back on the lowest failing rank
    /// only, so it is printed once.
    func agree(_ outcome: Result<Void, any Error>, context: String) -> (failed: Bool, printHere: (any Error)?)
    /// Whether `flag` is set on any rank.
    func anyRank(_ flag: Bool, context: String) -> Bool
    /// Reports `error` and ends the whole job with a non-zero status.
    func fail(_ error: some Error) -> Never
}

/// The group of a job that is just this process.
public final class SingleProcess: ProcessGroup {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func agree(_ outcome: Result<Void, any Error>, context: String) -> (failed: Bool, printHere: (any Error)?) {
        if case .failure(let error) = outcome { return (true, error) }
        return (false, nil)
    }
    public func anyRank(_ flag: Bool, context: String) -> Bool { flag }
    public func fail(_ error: some Error) -> Never {
        let text = "error: \(error)\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
        exit(1)
    }
}

extension EngineConfiguration {
    /// The processes this engine runs on: the MPI world for `mpi` (initialising MPI), else this
    /// process alone.
    public func processGroup() throws -> any ProcessGroup {
        guard kind == .mpi else { return SingleProcess() }
        #if MPI
        return try Communicator.world()
        #else
        throw EngineError.unavailable(engine: "mpi", remedy: Self.mpiRemedy)
        #endif
    }
}

#if MPI
extension Communicator: ProcessGroup {
    public func anyRank(_ flag: Bool, context: String) -> Bool {
        minimum(flag ? 0 : 1, context: context) == 0
    }
}
#endif
