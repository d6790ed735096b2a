import ArgumentParser
import Foundation
import ParallelCNN
import ParallelCNNBench

/// The Open MPI transports `pcnn bench mpi` compares: the byte transfer layers (`--mca btl`) of
/// two ranks on one node, and of ranks on different nodes (TCP, here over the loopback
/// interface, which the TCP BTL skips unless told otherwise).
let allreduceTransports: [(name: String, mca: [String])] = [
    ("shared memory", ["--mca", "btl", "self,vader"]),
    ("TCP loopback", ["--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo"])
]

/// Times both allreduce messages of a data-parallel step on 2 ranks over each transport and
/// prints one line per message and transport.
func printAllreduceTimes(mpirun: String, repetitions: Int = 5_000) throws {
    print("MPI_Allreduce on 2 ranks, median (mean) of \(repetitions) calls, per transport:")
    for transport in allreduceTransports {
        for timing in try measureAllreduce(mpirun: mpirun, ranks: 2, mca: transport.mca, repetitions: repetitions) {
            let bytes = timing.count * (timing.type == "float" ? 4 : 8)
            let message = "\(timing.count) \(timing.type)s (\(bytes) B)"
            print(
                "  " + transport.name.padding(toLength: 15, withPad: " ", startingAt: 0)
                    + message.padding(toLength: 24, withPad: " ", startingAt: 0)
                    + String(format: "%7.2f µs (%.2f µs)", timing.median * 1e6, timing.mean * 1e6))
        }
    }
}

/// Runs `pcnn bench mpi-allreduce-worker` under `mpirun -np ranks` with the `mca` options.
func measureAllreduce(mpirun: String, ranks: Int, mca: [String], repetitions: Int, floats: [Int] = []) throws -> [AllreduceTiming] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    process.arguments =
        [mpirun, "--oversubscribe", "-np", "\(ranks)"] + mca
        + [me, "bench", "mpi-allreduce-worker", "--repetitions", "\(repetitions)"]
        + (floats.isEmpty ? [] : ["--floats"] + floats.map(String.init))
    var environment = ProcessInfo.processInfo.environment
    if getuid() == 0 {
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    }
    process.environment = environment
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    let timings = output.split(separator: "\n").compactMap { line -> AllreduceTiming? in
        let f = line.split(separator: " ")
        guard f.count == 6, f[0] == "allreduce", let count = Int(f[2]), let n = Int(f[3]),
            let median = Double(f[4]), let mean = Double(f[5])
        else { return nil }
        return AllreduceTiming(count: count, type: String(f[1]), repetitions: n, median: median, mean: mean)
    }
    guard process.terminationStatus == 0, timings.count == (floats.isEmpty ? 2 : 3 * floats.count) else {
        throw fail(
            "mpirun \(mca.joined(separator: " ")) -np \(ranks) (allreduce timing) failed with status "
                + "\(process.terminationStatus)\n\(output)")
    }
    return timings
}

/// One allreduce timing run under mpirun, for `pcnn bench mpi`; prints
/// `allreduce TYPE COUNT REPETITIONS MEDIAN MEAN` (seconds) per message on rank 0.
struct BenchMPIAllreduceWorker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpi-allreduce-worker", abstract: "Internal: allreduce timing of pcnn bench mpi (under mpirun).",
        shouldDisplay: false)

    @Option var repetitions: Int = 5_000
    /// Message sizes of the cost model's fit: time allreduce and allgather of each.
    @Option(parsing: .upToNextOption) var floats: [Int] = []

    func run() throws {
        let timings: [AllreduceTiming]?
        do {
            timings =
                floats.isEmpty
                ? try AllreduceTiming.measureWorld(repetitions: max(1, repetitions))
                : try AllreduceTiming.measureCollectives(floatCounts: floats, repetitions: max(1, repetitions))
        } catch { throw fail("\(error)") }
        for t in timings ?? [] {
            print("allreduce \(t.type) \(t.count) \(t.repetitions) \(t.median) \(t.mean)")
        }
    }
}
