import ArgumentParser
import Foundation
import ParallelCNN

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reproduce the paper's speed-up tables on this machine.",
        subcommands: [BenchThreads.self, BenchMPI.self, BenchMPIWorker.self, BenchMPIAllreduceWorker.self])
}

struct BenchThreads: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "threads",
        abstract: "Table 3 analogue: threads engine, layer and data strategies, against sequential in the same run.",
        discussion: """
        Times the original recipe on the first --samples training samples (best of 2 passes), \
        layer strategy at batch 1 and data strategy at --batch, each against the sequential engine \
        at the same batch, measured in the same run. Speed-up = sequential / threads; efficiency = \
        speed-up / threads.
        """)

    @OptionGroup var source: DataOptions

    @Option(help: "Training samples timed per configuration.")
    var samples: Int = 20_000

    @Option(parsing: .upToNextOption, help: "Thread counts to measure.")
    var threads: [Int] = [1, 2, 4]

    @Option(help: "Batch of the data strategy (and of its sequential baseline).")
    var batch: Int = 64

    @Flag(help: "Print the rows as JSON on standard output.")
    var json = false

    func validate() throws {
        guard samples >= 1 else { throw ValidationError("--samples must be at least 1") }
        guard threads.allSatisfy({ (1...256).contains($0) }) else { throw ValidationError("--threads values must be between 1 and 256") }
        guard (1...60_000).contains(batch) else { throw ValidationError("--batch must be between 1 and 60000") }
    }

    func run() throws {
        let data: DatasetPair
        do { data = try source.load(download: true, log: note) } catch { throw fail("\(error)") }
        let count = min(samples, data.train.count)
        note("Timing \(count) samples per configuration on \(EngineConfiguration.availableCores) cores...")
        let rows = Benchmark.threads(data: data.train, samples: count, threadCounts: threads, dataBatch: batch, progress: note)
        let overheads = threads.filter { $0 > 1 }.map { ($0, Benchmark.regionOverhead(threads: $0)) }
        let sequentialPerSample = (rows.first { $0.engine == "sequential" && $0.batch == 1 }?.seconds ?? 0) / Double(count)
        if json {
            let objects: [[String: Any]] = rows.map {
                ["engine": $0.engine, "strategy": $0.strategy, "threads": $0.workers, "batch": $0.batch,
                 "seconds": $0.seconds, "speedup": $0.speedup, "efficiency": $0.efficiency]
            }
            let report: [String: Any] = [
                "samples": count, "rows": objects, "sequential_seconds_per_sample": sequentialPerSample,
                "region_overhead_seconds": Dictionary(uniqueKeysWithValues: overheads.map { (String($0.0), $0.1) }),
                "layer_regions_per_sample": ThreadedEngine.layerRegionsPerSample,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        print("Threads engine vs sequential, original recipe, \(count) samples, \(EngineConfiguration.availableCores) cores (paper's Table 3: 2.72x at 2 threads, 2.62x at 4)")
        printTable(rows)
        print(String(format: "sequential: %.2f µs per sample; the layer strategy runs %d parallel regions per sample",
                     sequentialPerSample * 1e6, ThreadedEngine.layerRegionsPerSample))
        for (t, seconds) in overheads {
            print(String(format: "empty parallel region (fork + join), T=%d: %.2f µs", t, seconds * 1e6))
        }
    }
}

/// Prints benchmark rows as the paper's speed-up tables.
func printTable(_ rows: [BenchmarkRow], workerTitle: String = "threads") {
    func pad(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(0, width - text.count)) }
    print("engine      strategy  batch  \(workerTitle)  seconds  speed-up  efficiency")
    for r in rows {
        let numbers = String(format: "%5d  %*d  %7.3f  %7.2fx  %9.0f%%", r.batch, workerTitle.count, r.workers,
                             r.seconds, r.speedup, 100 * r.efficiency)
        print(pad(r.engine, 11) + " " + pad(r.strategy, 9) + " " + numbers)
    }
}

struct BenchMPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpi",
        abstract: "Table 2 analogue: mpi engine, layer and data strategies, for 1, 2, 4 ranks, against sequential in the same run.",
        discussion: """
        Times the original recipe (best of 2 passes) on the first --samples training samples for \
        the data strategy at --batch, and on the first --layer-samples for the layer strategy at \
        batch 1 (it exchanges three messages per sample), each under `mpirun -np N` started by \
        this command, against the sequential engine at the same batch measured here first. Ranks \
        beyond the cores are oversubscribed (and slow). As root, Open MPI's root permission is set \
        for the child mpirun. Needs a build with the MPI trait.
        """)

    @OptionGroup var source: DataOptions

    @Option(help: "Training samples timed per data-strategy configuration.")
    var samples: Int = 20_000

    @Option(name: .customLong("layer-samples"), help: "Training samples timed per layer-strategy configuration.")
    var layerSamples: Int = 2_000

    @Option(parsing: .upToNextOption, help: "Rank counts to measure.")
    var ranks: [Int] = [1, 2, 4]

    @Option(help: "Batch of the data strategy (and of its sequential baseline).")
    var batch: Int = 64

    @Option(help: "The mpirun to use.")
    var mpirun: String = "mpirun"

    @Flag(help: "Print the rows as JSON on standard output.")
    var json = false

    func validate() throws {
        guard samples >= 1, layerSamples >= 1 else { throw ValidationError("--samples and --layer-samples must be at least 1") }
        guard ranks.allSatisfy({ (1...64).contains($0) }) else { throw ValidationError("--ranks values must be between 1 and 64") }
        guard (1...60_000).contains(batch) else { throw ValidationError("--batch must be between 1 and 60000") }
    }

    func run() throws {
        guard EngineConfiguration.mpiBuilt else { throw fail(EngineError.unavailable(engine: "mpi", remedy: EngineConfiguration.mpiRemedy).description) }
        let data: DatasetPair
        do { data = try source.load(download: true, log: note) } catch { throw fail("\(error)") }
        guard let directory = source.resolvedDirectory else { throw fail("could not resolve the data directory") }
        let start = Initialization.original.makeParameters()
        var rows: [BenchmarkRow] = []
        for (strategy, batch, samples) in [("layer", 1, min(layerSamples, data.train.count)), ("data", batch, min(samples, data.train.count))] {
            let baseline = Benchmark.time(SequentialEngine(parameters: start), data: data.train, samples: samples, batch: batch)
            note(String(format: "sequential, batch %d, %d samples: %.3f s", batch, samples, baseline))
            rows.append(BenchmarkRow(engine: "sequential", strategy: "-", workers: 1, batch: batch, seconds: baseline, speedup: 1))
            for n in ranks {
                let seconds = try timeUnderMPI(ranks: n, strategy: strategy, batch: batch, samples: samples, directory: directory)
                note(String(format: "mpi %@ N=%d, batch %d: %.3f s", strategy, n, batch, seconds))
                rows.append(BenchmarkRow(engine: "mpi", strategy: strategy, workers: n, batch: batch, seconds: seconds,
                                         speedup: baseline / seconds))
            }
        }
        if json {
            let objects: [[String: Any]] = rows.map {
                ["engine": $0.engine, "strategy": $0.strategy, "ranks": $0.workers, "batch": $0.batch,
                 "seconds": $0.seconds, "speedup": $0.speedup, "efficiency": $0.efficiency]
            }
            print(String(decoding: try JSONSerialization.data(withJSONObject: objects, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        print("MPI engine vs sequential, original recipe, layer on \(min(layerSamples, data.train.count)) samples, data on \(min(samples, data.train.count)), \(EngineConfiguration.availableCores) cores (paper's Table 2: 1.53x at 2 ranks, 1.02x at 4)")
        printTable(rows, workerTitle: "ranks")
        try printAllreduceTimes(mpirun: mpirun)
    }

    private func timeUnderMPI(ranks: Int, strategy: String, batch: Int, samples: Int, directory: String) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        process.arguments = [mpirun, "--oversubscribe", "-np", "\(ranks)", me, "bench", "mpi-worker", "--data", directory,
                             "--dataset", source.dataset.rawValue, "--strategy", strategy, "--batch", "\(batch)", "--samples", "\(samples)"]
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
        guard process.terminationStatus == 0,
              let line = output.split(separator: "\n").last(where: { $0.hasPrefix("seconds ") }),
              let seconds = Double(line.dropFirst("seconds ".count)) else {
            throw fail("mpirun -np \(ranks) (\(strategy)) failed with status \(process.terminationStatus)\n\(output)")
        }
        return seconds
    }
}

/// One timed configuration under mpirun, for `pcnn bench mpi`; prints `seconds S` on rank 0.
struct BenchMPIWorker: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mpi-worker", abstract: "Internal: one timing run of pcnn bench mpi (under mpirun).",
                                                    shouldDisplay: false)

    @OptionGroup var source: DataOptions
    @Option var strategy: ThreadStrategy
    @Option var batch: Int
    @Option var samples: Int

    func run() throws {
        let configuration = EngineConfiguration(kind: .mpi, threads: 1, strategy: strategy)
        let group = try configuration.processGroup()
        silent = group.rank != 0
        let loaded = Result { try source.load(download: false, log: note) }
        let (failed, error) = group.agree(loaded.map { _ in () }, context: "loading the benchmark data")
        if failed { if let error { throw fail("\(error)") }; throw ExitCode.failure }
        let data = try loaded.get()
        let engine = try configuration.makeEngine(parameters: Initialization.original.makeParameters())
        let seconds = Benchmark.time(engine, data: data.train, samples: samples, batch: batch)
        if group.rank == 0 { print("seconds \(seconds)") }
    }
}
