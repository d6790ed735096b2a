import Foundation

/// A test aid: `PCNN_MPI_DELAY_US=N` makes every message of the `mpi` engine's training (each
/// gradient and statistics allreduce of the data strategy, each allgather of the layer strategy)
/// wait N microseconds first, as a slower network would. It checks the cost model's latency
/// term on a machine without a slow network (no `netem` here). Control messages (start-up,
/// agreement on errors) are not delayed.
public enum MessageDelay {
    public static let variable = "PCNN_MPI_DELAY_US"
    /// The largest accepted delay: one second per message.
    public static let maximumMicroseconds = 1_000_000.0

    /// Seconds of delay per message that `environment` asks for (0 when the variable is unset).
    ///
    /// - Throws: `EngineError.invalidOption` for a value that is not a number of microseconds
    ///   from 0 to one second.
    public static func seconds(in environment: [String: String] = ProcessInfo.processInfo.environment) throws(EngineError) -> Double {
        guard let text = environment[variable] else { return 0 }
        guard let us = Double(text.trimmingCharacters(in: .whitespaces)), us.isFinite, (0...maximumMicroseconds).contains(us) else {
            throw EngineError.invalidOption(
                engine: "mpi", message: "\(variable) must be a delay in microseconds from 0 to \(Int(maximumMicroseconds)), got '\(text)'")
        }
        return us / 1e6
    }

    /// Waits `seconds` by spinning on the monotonic clock: a sleep would wake tens of
    /// microseconds late, which at 10 µs is the whole effect being measured.
    @inline(never) package static func wait(_ seconds: Double) {
        guard seconds > 0 else { return }
        let end = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
        while DispatchTime.now().uptimeNanoseconds < end {}
    }
}
