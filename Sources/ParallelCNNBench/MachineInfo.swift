import ParallelCNN
import Foundation

/// The machine and build a bench ran on, for the report's header: figures compare only within
/// one run on one machine.
public struct MachineInfo: Codable, Sendable, Equatable {
    public var cpuModel: String
    public var cores: Int
    /// Widest float vector of the CPU's instruction set, in bits (512 for AVX-512).
    public var vectorBits: Int
    public var vectorExtension: String
    public var memoryGiB: Double
    public var os: String
    public var swiftVersion: String
    public var pcnnVersion: String
    /// `git describe --always --dirty` of the source tree, or "unknown".
    public var commit: String
    /// Whether this build has the MPI engine.
    public var mpiBuilt: Bool
    /// Whether the kernels were built for this CPU (`-target-cpu native`) or portable.
    public var build: String
    /// `/proc/loadavg`'s 1-minute load when the bench started: above the core count, other
    /// processes were competing for the cores and the parallel figures suffer most.
    public var loadAverage: Double?

    public init(
        cpuModel: String, cores: Int, vectorBits: Int, vectorExtension: String, memoryGiB: Double, os: String,
        swiftVersion: String, pcnnVersion: String, commit: String, mpiBuilt: Bool, build: String
    ) {
        self.cpuModel = cpuModel
        self.cores = cores
        self.vectorBits = vectorBits
        self.vectorExtension = vectorExtension
        self.memoryGiB = memoryGiB
        self.os = os
        self.swiftVersion = swiftVersion
        self.pcnnVersion = pcnnVersion
        self.commit = commit
        self.mpiBuilt = mpiBuilt
        self.build = build
        loadAverage = Self.currentLoad()
    }

    /// The 1-minute load average, or nil where there is no `/proc/loadavg`.
    public static func currentLoad() -> Double? {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first).flatMap { Double($0) }
    }

    /// Reads this machine's description. `sourceDirectory` is where to ask git for the commit
    /// (the tree the running binary was built from); the current directory is tried next.
    public static func current(pcnnVersion: String, sourceDirectory: String? = nil) -> MachineInfo {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        func field(_ name: String) -> String? {
            cpuinfo.split(separator: "\n").first { $0.hasPrefix(name) }
                .flatMap { $0.split(separator: ":", maxSplits: 1).last }
                .map { $0.trimmingCharacters(in: .whitespaces) }
        }
        let flags = Set((field("flags") ?? field("Features") ?? "").split(separator: " ").map(String.init))
        let (bits, name): (Int, String) =
            flags.contains("avx512f")
            ? (512, "AVX-512")
            : flags.contains("avx2")
                ? (256, "AVX2")
                : flags.contains("avx")
                    ? (256, "AVX")
                    : flags.contains("sve")
                        ? (128, "SVE")
                        : flags.contains("asimd") ? (128, "NEON") : flags.contains("sse2") ? (128, "SSE2") : (0, "unknown")
        let memoryKiB =
            ((try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? "")
            .split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Double($0) } ?? 0
        let release = ((try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)) ?? "")
            .split(separator: "\n").first { $0.hasPrefix("PRETTY_NAME=") }
            .map { $0.dropFirst("PRETTY_NAME=".count).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        var uts = utsname()
        uname(&uts)
        let kernel = withUnsafeBytes(of: &uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let os = [release ?? ProcessInfo.processInfo.operatingSystemVersionString, "Linux \(kernel)"].joined(separator: ", ")
        let directories = [sourceDirectory, FileManager.default.currentDirectoryPath].compactMap { $0 }
        let commit = directories.lazy.compactMap { run("git", ["-C", $0, "describe", "--always", "--dirty", "--abbrev=12"]) }.first
        let swift = run("swift", ["--version"]).flatMap { $0.split(separator: "\n").first.map(String.init) }
        return MachineInfo(
            cpuModel: field("model name") ?? field("Model") ?? "unknown", cores: EngineRegistry.availableCores,
            vectorBits: bits, vectorExtension: name, memoryGiB: memoryKiB / 1_048_576, os: os,
            swiftVersion: swift ?? "Swift \(compilerVersion) (the compiler of this build; no swift on PATH)",
            pcnnVersion: pcnnVersion, commit: commit ?? "unknown (not run from a git checkout)",
            mpiBuilt: MPIAvailability.built, build: buildKind)
    }

    /// The Swift version this binary was compiled with, to the minor version.
    public static var compilerVersion: String {
        #if compiler(>=7.0)
        ">= 7.0"
        #elseif compiler(>=6.4)
        "6.4"
        #elseif compiler(>=6.3)
        "6.3"
        #elseif compiler(>=6.2)
        "6.2"
        #elseif compiler(>=6.1)
        "6.1"
        #else
        "6.0"
        #endif
    }

    static var buildKind: String {
        #if DEBUG
        "debug"
        #else
        "release"
        #endif
    }

    /// Standard output of a command that exits 0, trimmed; nil otherwise.
    private static func run(_ command: String, _ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [command] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : text
    }
}
