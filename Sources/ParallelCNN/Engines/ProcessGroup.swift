#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The processes of one training job: one process normally, every rank under `mpirun` for the
/// `mpi` engine. The training session uses it so that only rank 0 prints and writes, and so that
/// ranks agree on errors, on stopping and on their parameters instead of leaving one another
/// waiting.
public protocol ProcessGroup: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Whether any rank's `outcome` failed; the error is handed back on the lowest failing rank
    /// only, so it is printed once.
    func agree(_ outcome: Result<Void, any Error>, context: String) -> (failed: Bool, printHere: (any Error)?)
    /// Whether `flag` is set on any rank.
    func anyRank(_ flag: Bool, context: String) -> Bool
    /// Every rank's `value`, in rank order.
    func allgather(_ value: UInt64, context: @autoclosure () -> String) -> [UInt64]
    /// Reports `error` and ends the whole job with a non-zero status.
    func fail(_ error: some Error) -> Never
}

/// The group of a job that is just this process.
public final class SingleProcess: ProcessGroup, Sendable {
    public static let shared = SingleProcess()
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func agree(_ outcome: Result<Void, any Error>, context: String) -> (failed: Bool, printHere: (any Error)?) {
        if case .failure(let error) = outcome { return (true, error) }
        return (false, nil)
    }
    public func anyRank(_ flag: Bool, context: String) -> Bool { flag }
    public func allgather(_ value: UInt64, context: @autoclosure () -> String) -> [UInt64] { [value] }
    public func fail(_ error: some Error) -> Never {
        let text = "error: \(error)\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
        exit(1)
    }
}

#if MPI
extension Communicator: ProcessGroup {
    public func anyRank(_ flag: Bool, context: String) -> Bool {
        minimum(flag ? 0 : 1, context: context) == 0
    }
}
#endif
