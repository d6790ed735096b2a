#if MPI
import CMPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed MPI call: which call, where, and Open MPI's own words for the error code.
public struct MPIError: Error, CustomStringConvertible {
    public let call: String
    public let context: String
    public let code: Int32
    public let message: String
    public var description: String { "\(call) failed (\(context)): \(message) [error \(code)]" }
}

/// `MPI_COMM_WORLD` for Swift: rank, size, and the few collectives the engines use. Every call's
/// return code is checked (the communicator is set to `MPI_ERRORS_RETURN` so codes come back
/// instead of Open MPI aborting silently); a failure inside training prints the call, the
/// context and the error on this rank, then `MPI_Abort`s so no rank is left waiting.
public final class Communicator: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// Seconds each training message waits before it is sent (`MessageDelay`, a test aid).
    public var messageDelay = 0.0
    /// Internal, not private: the allreduce timing (AllreduceTiming.swift) uses it too.
    let comm: MPI_Comm

    nonisolated(unsafe) private static var shared: Communicator?

    /// The world communicator, initialising MPI on first use (it also works without mpirun,
    /// as a single rank). MPI is finalised at process exit.
    public static func world() throws(MPIError) -> Communicator {
        if let shared { return shared }
        var provided: Int32 = 0
        // Worker threads never call MPI; only the main thread does.
        let status = MPI_Init_thread(nil, nil, pcnn_mpi_thread_funneled(), &provided)
        guard status == pcnn_mpi_success() else { throw error(status, "MPI_Init_thread", "starting MPI") }
        let comm = pcnn_mpi_comm_world()!
        var code = MPI_Comm_set_errhandler(comm, pcnn_mpi_errors_return())
        guard code == pcnn_mpi_success() else { throw error(code, "MPI_Comm_set_errhandler", "starting MPI") }
        var rank: Int32 = 0, size: Int32 = 0
        code = MPI_Comm_rank(comm, &rank)
        guard code == pcnn_mpi_success() else { throw error(code, "MPI_Comm_rank", "starting MPI") }
        code = MPI_Comm_size(comm, &size)
        guard code == pcnn_mpi_success() else { throw error(code, "MPI_Comm_size", "starting MPI") }
        let world = Communicator(comm: comm, rank: Int(rank), size: Int(size))
        shared = world
        atexit { Communicator.finalize() }
        return world
    }

    private init(comm: MPI_Comm, rank: Int, size: Int) {
        self.comm = comm
        self.rank = rank
        self.size = size
    }

    private static func finalize() {
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        if shared != nil, finalized == 0 { MPI_Finalize() }
    }

    private static func error(_ code: Int32, _ call: String, _ context: String) -> MPIError {
        var buffer = [CChar](repeating: 0, count: Int(pcnn_mpi_max_error_string()) + 1)
        var length: Int32 = 0
        let text =
            MPI_Error_string(code, &buffer, &length) == pcnn_mpi_success()
            ? String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            : "unknown MPI error"
        return MPIError(call: call, context: context, code: code, message: text)
    }

    /// Checks a return code during training: on failure, report and abort every rank.
    @inline(__always) private func check(_ code: Int32, _ call: StaticString, _ context: @autoclosure () -> String) {
        if code != pcnn_mpi_success() { fail(Self.error(code, "\(call)", context())) }
    }

    /// Prints `error` for this rank and aborts the whole job (every rank exits non-zero).
    public func fail(_ error: some Error) -> Never {
        let text = "pcnn: error on rank \(rank) of \(size): \(error)\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
        MPI_Abort(comm, 1)
        exit(1)
    }

    /// In-place sum over all ranks of `count` floats.
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, context: @autoclosure () -> String) {
        MessageDelay.wait(messageDelay)
        check(
            MPI_Allreduce(pcnn_mpi_in_place(), buffer, Int32(count), pcnn_mpi_float(), pcnn_mpi_sum(), comm),
            "MPI_Allreduce", context())
    }

    /// In-place sum over all ranks of `count` doubles.
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int, context: @autoclosure () -> String) {
        MessageDelay.wait(messageDelay)
        check(
            MPI_Allreduce(pcnn_mpi_in_place(), buffer, Int32(count), pcnn_mpi_double(), pcnn_mpi_sum(), comm),
            "MPI_Allreduce", context())
    }

    /// The smallest `value` over all ranks.
    public func minimum(_ value: Int, context: @autoclosure () -> String) -> Int {
        var mine = Int32(value), result: Int32 = 0
        check(MPI_Allreduce(&mine, &result, 1, pcnn_mpi_int(), pcnn_mpi_min(), comm), "MPI_Allreduce", context())
        return Int(result)
    }

    /// Every rank's `value`, in rank order.
    public func allgather(_ value: UInt64, context: @autoclosure () -> String) -> [UInt64] {
        var mine = value
        var all = [UInt64](repeating: 0, count: size)
        check(MPI_Allgather(&mine, 1, pcnn_mpi_uint64(), &all, 1, pcnn_mpi_uint64(), comm), "MPI_Allgather", context())
        return all
    }

    /// Gathers every rank's block of floats (`counts[q]` floats at `displacements[q]` of
    /// `buffer`) into every rank's `buffer`; this rank's block must already be in place.
    public func allgatherv(
        _ buffer: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>,
        displacements: UnsafePointer<Int32>, context: @autoclosure () -> String
    ) {
        MessageDelay.wait(messageDelay)
        check(
            MPI_Allgatherv(pcnn_mpi_in_place(), 0, pcnn_mpi_float(), buffer, counts, displacements, pcnn_mpi_float(), comm),
            "MPI_Allgatherv", context())
    }

    /// Agrees on failure before any collective work: if any rank's `outcome` is an error, the
    /// lowest such rank's error is returned on that rank only (so it is printed once) and every
    /// rank learns that the job must stop.
    public func agree(_ outcome: Result<Void, any Error>, context: String) -> (failed: Bool, printHere: (any Error)?) {
        var failure: (any Error)?
        if case .failure(let error) = outcome { failure = error }
        let first = minimum(failure == nil ? size : rank, context: context)
        guard first < size else { return (false, nil) }
        return (true, first == rank ? failure : nil)
    }
}
#endif
