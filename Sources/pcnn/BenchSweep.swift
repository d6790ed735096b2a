import ArgumentParser
import Foundation
import ParallelCNN
import ParallelCNNBench

/// `pcnn bench sweep` (also `pcnn bench --sweep`): which parallel strategy wins for which network
/// and worker count, measured, predicted by the cost model, and predicted past this machine.
struct BenchSweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Which strategy wins: every CPU strategy on a family of networks, measured and predicted by the cost model.",
        discussion: """
            Networks: paper (c1 of 6 filters), paper-c16, -c32, -c64, -c128, lenet5, and --net if \
            given. Strategies: sequential (batch 1 and --batch), threads layer (batch 1) and data \
            (--batch), mpi layer and data, hybrid mpi x threads, at 1, 2 and the machine's cores \
            workers, and (full mode) twice the cores as a labelled oversubscribed extra. Each point \
            is timed on the same samples in --repeats rounds over all points (the fastest round \
            counts, so a drifting machine affects every point alike) and scaled to an epoch.

            The cost model's terms are measured first and printed: each pass of each network on one \
            core (the network's profile), the gradient sum and the update, the fork-join of a thread \
            pool, allreduce and allgather as alpha + beta*bytes on shared memory and on TCP. It \
            predicts every point; the mpi layer strategy is then run with every message delayed by \
            10, 100 and 1000 µs (PCNN_MPI_DELAY_US) to check the latency term, and the model \
            predicts the data and layer strategies at 8, 64 and 1024 ranks on 25GbE and InfiniBand \
            HDR with ring and tree collectives.

            Writes sweep.csv, sweep.json, sweep.md and the charts sweep-speedup.svg, sweep-winners.svg \
            and sweep-predicted.svg into --out. --quick: no oversubscribed extra, shorter passes, about a \
            minute on 2 cores.
            """)

    @OptionGroup var source: DataOptions

    @Option(
        name: .customLong("net"),
        help: ArgumentHelp(
            "One more network for the sweep: a preset or a description (see `pcnn train --help`).", valueName: "name|description"))
    var net: String?

    @Flag(help: "1, 2 and the cores' workers (unless --workers says otherwise), shorter passes, 2 rounds: about a minute on 2 cores.")
    var quick = false

    @Option(help: ArgumentHelp("Write the sweep's files into this directory.", valueName: "dir"))
    var out: String = "sweep"

    @Option(help: "Batch of the data strategies (and of their sequential baseline).")
    var batch: Int = 64

    @Option(
        parsing: .upToNextOption,
        help:
            "Worker counts to measure, for example 1 2 4 8 16 (default: 1, 2 and the cores; full mode adds twice the cores). Counts above the cores are labelled oversubscribed."
    )
    var workers: [Int] = []

    @Option(help: "Rounds over every point of a network, each point the fastest of its rounds (default: 2 quick, 3 full).")
    var repeats: Int?

    @Option(help: "Seconds of one-core work each timed pass aims at (default: 0.4 quick, 1 full).")
    var seconds: Double?

    @Option(help: "The mpirun to start the MPI points with.")
    var mpirun: String = "mpirun"

    @Option(
        help:
            "A GPU engine whose fused (batch 1) and data (--batch) strategies join the sweep as measured points, without prediction. Default: cuda when a CUDA GPU is present (opencl on a CPU-only PoCL is slow: ask for it)."
    )
    var gpu: DeviceBackend?

    func validate() throws {
        guard TrainingRequest.batchSizes.contains(batch) else { throw ValidationError(TrainingRequest.batchSizeMessage(batch)) }
        guard workers.allSatisfy({ (1...EngineOptions.maximumThreads).contains($0) }) else {
            throw ValidationError("--workers values must be between 1 and \(EngineOptions.maximumThreads)")
        }
        if let repeats, !(1...20).contains(repeats) { throw ValidationError("--repeats must be between 1 and 20") }
        if let seconds { guard seconds > 0, seconds <= 600 else { throw ValidationError("--seconds must be above 0 and at most 600") } }
        if let net {
            do { _ = try NetworkDescription.named(net) } catch { throw ValidationError("--net: \(error)") }
        }
    }

    func run() throws {
        let data: DatasetPair
        do { data = try source.load(download: true, log: note) } catch { throw fail("\(error)") }
        let cores = EngineRegistry.availableCores
        var names = ["paper", "paper-c16", "paper-c32", "paper-c64", "paper-c128", "lenet5"]
        if let net, !names.contains(net) { names.append(net) }
        var networks: [(name: String, architecture: Architecture)] = []
        for name in names {
            do { networks.append((name, try Architecture(NetworkDescription.named(name), input: data.train.shape))) } catch {
                throw fail("--net \(name): \(error)")
            }
        }
        var workers = Array(Set(self.workers.isEmpty ? [1, 2, cores] : self.workers)).sorted()
        if !quick, self.workers.isEmpty { workers.append(2 * cores) }

        note("Measuring the model's machine terms: fork-join at \(workers.filter { $0 > 1 }) threads...")
        let forkJoin = workers.filter { $0 > 1 }.map {
            MachineCosts.ThreadsCost(
                threads: $0, seconds: Benchmark.loadedRegionOverhead(threads: $0, regions: quick ? 5_000 : 20_000),
                emptySeconds: Benchmark.regionOverhead(threads: $0, regions: quick ? 50_000 : 200_000))
        }
        let mpiProblem = MPILauncher.unavailableReason(mpirun: mpirun)
        var collectives: [String: ProtocolCost] = [:]
        if mpiProblem == nil {
            // Sizes on both sides of each transport's eager limit (shared memory 4 KB, TCP 64 KB).
            let sizes = [8, 1_024, 2_048, 16_384, 65_536, 131_072]
            for ((transport, mca), limit) in zip(allreduceTransports, [4_096.0, 65_536.0]) {
                note("... allreduce and allgather of \(sizes) floats on 2 ranks, \(transport)")
                let timings = try measureAllreduce(mpirun: mpirun, ranks: 2, mca: mca, repetitions: quick ? 300 : 2_000, floats: sizes)
                for type in ["float", "allgather", "allgather-loaded"] {
                    let points = timings.filter { $0.type == type }.map { (bytes: Double($0.count * 4), seconds: $0.median) }
                    collectives["\(type) \(transport)"] = ProtocolCost.fit(points, eagerLimit: limit)
                }
            }
        }
        let none = ProtocolCost.free
        let machineCosts = MachineCosts(
            cores: cores, forkJoin: forkJoin,
            allreduceSharedMemory: collectives["float shared memory"] ?? none,
            allgatherSharedMemory: collectives["allgather-loaded shared memory"] ?? none,
            allreduceTCP: collectives["float TCP loopback"] ?? none, allgatherTCP: collectives["allgather-loaded TCP loopback"] ?? none,
            coreTransferPerByte: cores > 1 ? Benchmark.coreTransferPerByte(rounds: quick ? 2_000 : 10_000) : 0)
        note(SweepReport.machineTerms(machineCosts))

        var sweep = Sweep(networks: networks, workerCounts: workers, cores: cores, machineCosts: machineCosts)
        sweep.batch = batch
        sweep.quick = quick
        sweep.repeats = repeats ?? (quick ? 2 : 3)
        sweep.targetSeconds = seconds ?? (quick ? 0.4 : 1)
        sweep.progress = note
        if let mpiProblem {
            sweep.mpiSkipReason = mpiProblem
        } else if let directory = source.resolvedDirectory {
            let launcher = MPILauncher(mpirun: mpirun, directory: directory, dataset: source.dataset)
            sweep.mpi = { request, network, delay in
                try launcher.measure(request, network: network, delayMicroseconds: delay).min()!
            }
        } else {
            sweep.mpiSkipReason = "could not resolve the data directory for the MPI ranks"
        }
        let device = gpu ?? (DeviceBackend.cuda.availability().isAvailable ? .cuda : nil)
        if let device {
            if case .unavailable(let remedy) = device.availability() { throw fail("--gpu \(device.rawValue): \(remedy)") }
            sweep.gpu = device
        }
        let began = Trainer.now()
        let machine = MachineInfo.current(pcnnVersion: PCNN.configuration.version, sourceDirectory: "")
        let results: SweepResults
        do { results = try sweep.run(data: data.train, machine: "\(machine.cpuModel), \(machine.cores) cores") } catch {
            throw fail("\(error)")
        }
        note(String(format: "sweep done in %.0f s", Trainer.now() - began))
        let command = (["pcnn"] + CommandLine.arguments.dropFirst()).joined(separator: " ")
        let directory = URL(fileURLWithPath: out)
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let files: [(String, String)] = [
                ("sweep.csv", results.csv), ("sweep.json", try results.json()),
                ("sweep.md", SweepReport.markdown(results, command: command)),
                ("sweep-speedup.svg", SweepCharts.speedup(results)), ("sweep-winners.svg", SweepCharts.winners(results)),
                ("sweep-predicted.svg", SweepCharts.predicted(results))
            ]
            for (name, text) in files {
                try Data(text.utf8).write(to: directory.appendingPathComponent(name), options: .atomic)
            }
            note("wrote \(files.map { "\(out)/\($0.0)" }.joined(separator: ", "))")
        } catch { throw fail("could not write \(out): \(error)") }
        print(SweepReport.markdown(results, command: command))
    }
}
