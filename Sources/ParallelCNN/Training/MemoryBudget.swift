import Foundation

/// Refuses a request that cannot fit in this machine's memory with a message, before the
/// allocation that would get the process killed by the kernel.
public enum MemoryBudget {
    /// Bytes the system could give this process now (`MemAvailable`), or `nil` where unknown.
    public static var availableBytes: Int? {
        #if os(Linux)
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
            let kibibytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        return kibibytes * 1024
        #else
        return Int(ProcessInfo.processInfo.physicalMemory)
        #endif
    }

    /// Throws when `bytes` exceed what is available, naming `what` needs them.
    public static func require(_ bytes: Int, for what: @autoclosure () -> String) throws(MemoryBudgetError) {
        guard let available = availableBytes, bytes > available else { return }
        throw MemoryBudgetError(what: what(), bytes: bytes, available: available)
    }

    /// The working memory of training with `threads` threads (per process) and batches of
    /// `batch`: one workspace per thread, one gradient sum per block of the batch, and, for a
    /// rank's shard, a copy of its images.
    public static func trainingBytes(threads: Int, batch: Int, shardImages: Int = 0) -> Int {
        let gradientBytes = (Parameters.count + 8) * MemoryLayout<Float>.size
        let workspaceBytes = 64 * 1024
        return threads * workspaceBytes + (batch + 3) / 4 * gradientBytes * 2 + shardImages * Network.imagePixels * 4
    }
}

/// A request larger than this machine's free memory.
public struct MemoryBudgetError: Error, CustomStringConvertible, Sendable {
    public let what: String
    public let bytes: Int
    public let available: Int
    public var description: String {
        String(
            format: "%@ needs about %.1f GiB, but only %.1f GiB of memory is available; ask for less",
            what, Double(bytes) / 1_073_741_824, Double(available) / 1_073_741_824)
    }
}
