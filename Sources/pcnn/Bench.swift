import ArgumentParser
import Foundation
import ParallelCNN
import ParallelCNNBench
import Synchronization

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reproduce the paper's results section (Tables 1-8) on this machine, with charts.",
        discussion:
            "`pcnn bench` runs every table (`pcnn bench all`); `threads`, `mpi` and `device` run one table each; `net --net NAME` times any network; `sweep` (or `pcnn bench --sweep`) finds which strategy wins for which network and worker count, with a cost model.",
        subcommands: [
            BenchAll.self, BenchNet.self, BenchSweep.self, BenchThreads.self, BenchMPI.self, BenchMPIWorker.self,
            BenchMPIAllreduceWorker.self,
            BenchDevice.self
        ],
        defaultSubcommand: BenchAll.self)
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
        guard threads.allSatisfy({ (1...EngineOptions.maximumThreads).contains($0) }) else {
            throw ValidationError("--threads values must be between 1 and \(EngineOptions.maximumThreads)")
        }
        guard TrainingRequest.batchSizes.contains(batch) else { throw ValidationError(TrainingRequest.batchSizeMessage(batch)) }
    }

    func run() throws {
        let data: DatasetPair
        do { data = try source.load(download: true, log: note) } catch { throw fail("\(error)") }
        let count = min(samples, data.train.count)
        note("Timing \(count) samples per configuration on \(EngineRegistry.availableCores) cores...")
        let rows = try Benchmark.threads(data: data.train, samples: count, threadCounts: threads, dataBatch: batch, progress: note)
        let overheads = threads.filter { $0 > 1 }.map { ($0, Benchmark.regionOverhead(threads: $0)) }
        let sequentialPerSample = (rows.first { $0.engine == "sequential" && $0.batch == 1 }?.seconds ?? 0) / Double(count)
        if json {
            let objects: [[String: Any]] = rows.map {
                [
                    "engine": $0.engine, "strategy": $0.strategy, "threads": $0.workers, "batch": $0.batch,
                    "seconds": $0.seconds, "speedup": $0.speedup, "efficiency": $0.efficiency
                ]
            }
            let report: [String: Any] = [
                "samples": count, "rows": objects, "sequential_seconds_per_sample": sequentialPerSample,
                "region_overhead_seconds": Dictionary(uniqueKeysWithValues: overheads.map { (String($0.0), $0.1) }),
                "layer_regions_per_sample": ThreadedEngine.layerRegionsPerSample
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        print(
            "Threads engine vs sequential, original recipe, \(count) samples, \(EngineRegistry.availableCores) cores (paper's Table 3: 2.72x at 2 threads, 2.62x at 4)"
        )
        printTable(rows)
        print(
            String(
                format: "sequential: %.2f µs per sample; the layer strategy runs %d parallel regions per sample",
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
        let numbers = String(
            format: "%5d  %*d  %7.3f  %7.2fx  %9.0f%%", r.batch, workerTitle.count, r.workers,
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
        guard TrainingRequest.batchSizes.contains(batch) else { throw ValidationError(TrainingRequest.batchSizeMessage(batch)) }
    }

    func run() throws {
        guard MPIAvailability.built else { throw fail(EngineError.unavailable(engine: "mpi", remedy: MPIAvailability.remedy).description) }
        let data: DatasetPair
        do { data = try source.load(download: true, log: note) } catch { throw fail("\(error)") }
        guard let directory = source.resolvedDirectory else { throw fail("could not resolve the data directory") }
        let start = Initialization.original.makeParameters()
        var rows: [BenchmarkRow] = []
        let launcher = MPILauncher(mpirun: mpirun, directory: directory, dataset: source.dataset)
        for (strategy, batch, samples) in [
            (EngineStrategy.layer, 1, min(layerSamples, data.train.count)), (.data, batch, min(samples, data.train.count))
        ] {
            let baseline = try Benchmark.time(SequentialEngine(parameters: start), data: data.train, samples: samples, batch: batch)
            note(String(format: "sequential, batch %d, %d samples: %.3f s", batch, samples, baseline))
            rows.append(BenchmarkRow(engine: "sequential", strategy: "-", workers: 1, batch: batch, seconds: baseline, speedup: 1))
            for n in ranks {
                let request = MPIRequest(
                    strategy: strategy, ranks: n, batch: batch, samples: samples, repeats: 2, warmupPasses: 0, warmupSamples: 0)
                let seconds: Double
                do { seconds = try launcher.measure(request).min()! } catch { throw fail("\(error)") }
                note(String(format: "mpi %@ N=%d, batch %d: %.3f s", strategy.rawValue, n, batch, seconds))
                rows.append(
                    BenchmarkRow(
                        engine: "mpi", strategy: strategy.rawValue, workers: n, batch: batch, seconds: seconds,
                        speedup: baseline / seconds))
            }
        }
        if json {
            let objects: [[String: Any]] = rows.map {
                [
                    "engine": $0.engine, "strategy": $0.strategy, "ranks": $0.workers, "batch": $0.batch,
                    "seconds": $0.seconds, "speedup": $0.speedup, "efficiency": $0.efficiency
                ]
            }
            print(String(decoding: try JSONSerialization.data(withJSONObject: objects, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        print(
            "MPI engine vs sequential, original recipe, layer on \(min(layerSamples, data.train.count)) samples, data on \(min(samples, data.train.count)), \(EngineRegistry.availableCores) cores (paper's Table 2: 1.53x at 2 ranks, 1.02x at 4)"
        )
        printTable(rows, workerTitle: "ranks")
        try printAllreduceTimes(mpirun: mpirun)
    }
}

/// One timed configuration under mpirun, for `pcnn bench` and `pcnn bench mpi`: rank 0 prints
/// one JSON line, `{"ranks": N, "seconds": [...]}`, the seconds of each timed pass.
struct BenchMPIWorker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpi-worker", abstract: "Internal: one timing run of pcnn bench (under mpirun).",
        shouldDisplay: false)

    @OptionGroup var source: DataOptions
    @Option var strategy: EngineStrategy
    @Option var batch: Int
    @Option var samples: Int
    @Option var repeats: Int = 2
    @Option(name: .customLong("warmup-passes")) var warmupPasses: Int = 0
    @Option(name: .customLong("warmup-samples")) var warmupSamples: Int = 0
    @Option var threads: Int?
    /// A network of the sweep: timed with the modern recipe (Adam), best of --repeats passes.
    @Option var net: String?

    func run() throws {
        let descriptor = try EngineRegistry.descriptor(.mpi)
        let group = try descriptor.processGroup()
        silent = group.rank != 0
        let loaded = Result { try source.load(download: false, log: note) }
        let (failed, error) = group.agree(loaded.map { _ in () }, context: "loading the benchmark data")
        if failed { if let error { throw fail("\(error)") }; throw ExitCode.failure }
        let data = try loaded.get()
        let seconds: [Double]
        if let net {
            let architecture = try Architecture(NetworkDescription.named(net), input: data.train.shape)
            let start = Initialization.seeded(1).makeParameters(for: architecture)
            let engine = try descriptor.makeEngine(
                EngineOptions(threads: threads, strategy: strategy, architecture: architecture), parameters: start)
            let rule = UpdateRule(recipe: .modern, optimizer: .adam, learningRate: 0.001, batchSize: batch)
            seconds = [
                try Benchmark.time(engine, data: data.train, samples: samples, batch: batch, repeats: repeats, start: start, rule: rule)
            ]
        } else {
            let engine = try descriptor.makeEngine(
                EngineOptions(threads: threads, strategy: strategy), parameters: Initialization.original.makeParameters())
            seconds = try Benchmark.passes(
                engine, data: data.train, samples: samples, batch: batch, repeats: repeats,
                warmupPasses: warmupPasses, warmupSamples: warmupSamples
            ).seconds
        }
        if group.rank == 0 {
            let line = try JSONSerialization.data(withJSONObject: ["ranks": group.size, "seconds": seconds], options: [.sortedKeys])
            print(String(decoding: line, as: UTF8.self))
        }
    }
}

/// Starts `pcnn bench mpi-worker` under `mpirun -np N` and reads back its JSON line.
struct MPILauncher {
    var mpirun: String
    var directory: String
    var dataset: DatasetKind

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Why MPI configurations cannot be timed from this binary on this machine, or nil.
    static func unavailableReason(mpirun: String) -> String? {
        guard MPIAvailability.built else {
            return
                "this pcnn was built without the MPI trait (install Open MPI: apt-get install libopenmpi-dev openmpi-bin, then swift build -c release --traits MPI)"
        }
        let found =
            mpirun.contains("/")
            ? FileManager.default.isExecutableFile(atPath: mpirun)
            : (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
                .contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(mpirun)") }
        return found ? nil : "`\(mpirun)` was not found on PATH (Open MPI's launcher: apt-get install openmpi-bin)"
    }

    /// The passes' seconds of `request`; with `network`, of that network (modern recipe), every
    /// message delayed by `delayMicroseconds` (`PCNN_MPI_DELAY_US`).
    func measure(_ request: MPIRequest, network: String? = nil, delayMicroseconds: Double = 0) throws -> [Double] {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments =
            [mpirun] + request.launcherOptions(cores: EngineRegistry.availableCores, root: getuid() == 0)
            + [
                me, "bench", "mpi-worker", "--data", directory, "--dataset", dataset.rawValue,
                "--strategy", request.strategy.rawValue, "--batch", "\(request.batch)", "--samples", "\(request.samples)",
                "--repeats", "\(request.repeats)", "--warmup-passes", "\(request.warmupPasses)", "--warmup-samples",
                "\(request.warmupSamples)"
            ] + (request.threads > 1 ? ["--threads", "\(request.threads)"] : []) + (network.map { ["--net", $0] } ?? [])
        var environment = ProcessInfo.processInfo.environment
        environment[MessageDelay.variable] = delayMicroseconds > 0 ? "\(delayMicroseconds)" : nil
        process.environment = environment
        let pipe = Pipe(), errors = Pipe()
        process.standardOutput = pipe
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read standard error on another thread: a full pipe would block the job.
        let errorText = Mutex(""), readDone = DispatchSemaphore(value: 0)
        Thread {
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            errorText.withLock { $0 = text }
            readDone.signal()
        }.start()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        readDone.wait()
        let command = ([mpirun] + (process.arguments ?? []).dropFirst()).joined(separator: " ")
        guard process.terminationStatus == 0,
            let line = output.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let seconds = object["seconds"] as? [Double], !seconds.isEmpty
        else {
            throw Failure(
                description: "`\(command)` failed with status \(process.terminationStatus): \(errorText.withLock { $0 })\(output)")
        }
        return seconds
    }
}

/// `pcnn bench`: every table of the paper's results section, with charts.
struct BenchAll: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "all",
        abstract: "Reproduce the paper's Tables 1-8 on this machine (the default of `pcnn bench`).",
        discussion: """
            T1 seconds per epoch (reference, sequential); T2 mpi at 1, 2, 4 ranks (started under mpirun \
            by this command when Open MPI and the MPI build are present); T3 threads at 1, 2, 4 and twice \
            the cores; both strategies (layer at batch 1, data at --batch), against sequential at the same \
            batch in the same run; T4 the time of each layer's forward and backward kernels and the \
            update inside a real training run; T5-8 GPU engines when present; achieved GFLOP/s against \
            this machine's peak, measured by an FMA loop. Each configuration: one warm-up pass, then \
            several timed passes (median, fastest, spread). Quick mode (default, about a minute on 2 \
            cores) times the first 10000 samples of the epoch (reference: 1000) and scales to an epoch; \
            --full times whole epochs.
            """)

    @OptionGroup var source: DataOptions

    @Flag(help: "Time whole epochs instead of a prefix of the epoch.")
    var full = false

    @Option(help: ArgumentHelp("Write report.md, results.csv, results.json and SVG charts into this directory.", valueName: "dir"))
    var out: String?

    @Flag(help: "Print the results object as JSON on standard output (instead of the tables).")
    var json = false

    @Option(help: "Samples per timed pass (default: 10000 quick, 60000 full).")
    var samples: Int?

    @Option(
        name: .customLong("reference-samples"), help: "Samples per timed pass of the reference engine (default: 1000 quick, 60000 full).")
    var referenceSamples: Int?

    @Option(help: "Timed passes per configuration (default: 5 quick, 3 full).")
    var repeats: Int?

    @Option(help: "Batch of the data strategies (and of their sequential baseline).")
    var batch: Int = 64

    @Option(help: "The mpirun to start the MPI measurements with.")
    var mpirun: String = "mpirun"

    @Flag(help: "Run the strategy sweep and cost model instead (`pcnn bench sweep`; its options there).")
    var sweep = false

    @Flag(help: "With --sweep: its quick mode.")
    var quick = false

    func validate() throws {
        if let samples { guard samples >= 1 else { throw ValidationError("--samples must be at least 1") } }
        if let referenceSamples { guard referenceSamples >= 1 else { throw ValidationError("--reference-samples must be at least 1") } }
        if let repeats { guard (1...100).contains(repeats) else { throw ValidationError("--repeats must be between 1 and 100") } }
        guard TrainingRequest.batchSizes.contains(batch) else { throw ValidationError(TrainingRequest.batchSizeMessage(batch)) }
        if quick, !sweep { throw ValidationError("--quick applies to --sweep; the tables are quick unless --full") }
    }

    func run() throws {
        if sweep {
            var command = try BenchSweep.parse(
                ["--out", out ?? "sweep", "--batch", "\(batch)", "--mpirun", mpirun] + (quick ? ["--quick"] : []))
            command.source = source
            return try command.run()
        }
        let data: DatasetPair
        do { data = try source.load(download: true, log: note) } catch { throw fail("\(error)") }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let machine = MachineInfo.current(
            pcnnVersion: PCNN.configuration.version,
            sourceDirectory: URL(fileURLWithPath: executable).deletingLastPathComponent().path)
        let settings = BenchmarkSuite.settings(
            full: full, epochSamples: data.train.count, samples: samples,
            referenceSamples: referenceSamples, repeats: repeats, dataBatch: batch)
        var suite = BenchmarkSuite(settings: settings, machine: machine)
        suite.progress = note
        suite.additionalEngines += DeviceBenchmark.suiteEntries()
        if let why = MPILauncher.unavailableReason(mpirun: mpirun) {
            suite.mpiSkipReason = why
        } else if let directory = source.resolvedDirectory {
            let launcher = MPILauncher(mpirun: mpirun, directory: directory, dataset: source.dataset)
            suite.mpi = { try launcher.measure($0) }
        } else {
            suite.mpiSkipReason = "could not resolve the data directory for the MPI ranks"
        }
        note(
            "pcnn bench (\(settings.mode)): \(machine.cpuModel), \(machine.cores) cores; T1-T4 on the first \(settings.samples) of \(settings.epochSamples) samples (reference \(settings.referenceSamples)), \(settings.repeats) timed passes each"
        )
        let began = Trainer.now()
        let results: BenchmarkResults
        do { results = try suite.run(data: data.train) } catch { throw fail("\(error)") }
        note(String(format: "bench done in %.0f s", Trainer.now() - began))
        let command = (["pcnn"] + CommandLine.arguments.dropFirst()).joined(separator: " ")
        if let out {
            do {
                let files = try BenchmarkReport.write(results, to: URL(fileURLWithPath: out), command: command)
                note("wrote \(files.map { "\(out)/\($0)" }.joined(separator: ", "))")
            } catch { throw fail("could not write \(out): \(error)") }
        }
        if json {
            print(try BenchmarkReport.json(results), terminator: "")
        } else {
            print(BenchmarkReport.markdown(results, command: command))
        }
    }
}
