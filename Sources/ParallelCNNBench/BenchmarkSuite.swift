import ParallelCNN
import Foundation

/// One MPI configuration for the suite to time: the caller runs it under `mpirun` (the library
/// cannot start itself under a launcher) and returns the timed passes' seconds.
public struct MPIRequest: Sendable, Equatable {
    public var strategy: EngineStrategy
    public var ranks: Int
    public var batch: Int
    public var samples: Int
    public var repeats: Int
    public var warmupPasses: Int
    public var warmupSamples: Int
    /// Threads per rank (the data strategy; more than one makes it hybrid MPI × threads).
    public var threads: Int

    public init(
        strategy: EngineStrategy, ranks: Int, batch: Int, samples: Int, repeats: Int, warmupPasses: Int, warmupSamples: Int,
        threads: Int = 1
    ) {
        self.threads = threads
        self.strategy = strategy
        self.ranks = ranks
        self.batch = batch
        self.samples = samples
        self.repeats = repeats
        self.warmupPasses = warmupPasses
        self.warmupSamples = warmupSamples
    }

    /// `mpirun` options for this request: Open MPI's root permission when running as root, and
    /// oversubscription when there are more ranks than cores (Open MPI refuses both otherwise).
    public func launcherOptions(cores: Int, root: Bool) -> [String] {
        (root ? ["--allow-run-as-root"] : []) + (ranks * threads > cores ? ["--oversubscribe"] : [])
            + (threads > 1 ? ["--bind-to", "none"] : []) + ["-np", "\(ranks)"]
    }
}

/// Why a bench run stopped.
public enum BenchmarkError: Error, CustomStringConvertible, Equatable {
    /// A profiled training loop did not reach the engine's parameters: the per-layer timing would
    /// not be of the real computation.
    case profileDiverged(engine: String)

    public var description: String {
        switch self {
        case .profileDiverged(let engine):
            "the per-layer profile of \(engine) did not reach the same parameters as the \(engine) engine; its layer times would not be of the real computation"
        }
    }
}

/// The whole of the paper's results section on this machine: T1 (seconds per epoch), T2 (MPI),
/// T3 (threads), T4 (per layer), T5–8 (GPU engines when present), achieved GFLOP/s against a
/// measured peak. Every speed-up divides a baseline measured in the same run on the same samples.
public struct BenchmarkSuite {
    public var settings: BenchmarkSettings
    public var machine: MachineInfo
    /// Times one MPI configuration; nil when MPI cannot run, `mpiSkipReason` says why.
    public var mpi: ((MPIRequest) throws -> [Double])?
    public var mpiSkipReason = "no MPI launcher was given"
    /// More engines (GPUs): each returns rows for `.gpu` (network and per-kernel) or `.layers`
    /// (phases). Network rows are compared with sequential's T1 row, phase rows with its T4 row.
    public var additionalEngines: [(name: String, measure: (Dataset, BenchmarkSettings) throws -> [BenchmarkMeasurement])] = []
    public var noGPUReason = "no GPU engine in this build"
    public var peakSeconds = 0.3
    public var progress: (String) -> Void = { _ in }

    public init(settings: BenchmarkSettings, machine: MachineInfo) {
        self.settings = settings
        self.machine = machine
    }

    /// Quick mode: a stated prefix of the epoch, about a minute on 2 cores. Full: whole epochs.
    public static func settings(
        full: Bool, epochSamples: Int, samples: Int? = nil, referenceSamples: Int? = nil,
        repeats: Int? = nil, dataBatch: Int = 64, cores: Int = EngineRegistry.availableCores
    )
        -> BenchmarkSettings
    {
        let fast = min(epochSamples, samples ?? (full ? epochSamples : 10_000))
        let reference = min(epochSamples, referenceSamples ?? (full ? epochSamples : 1_000))
        return BenchmarkSettings(
            mode: full ? "full" : "quick", samples: fast, referenceSamples: reference, epochSamples: epochSamples,
            repeats: repeats ?? (full ? 3 : 5), warmupPasses: 1, warmupSamples: min(fast, 2_000), dataBatch: dataBatch,
            threadCounts: Array(Set([1, 2, 4, 2 * cores])).sorted(), rankCounts: [1, 2, 4])
    }

    public func run(data: Dataset, date: Date = Date()) throws -> BenchmarkResults {
        let s = settings
        progress("Peak: FMA loop on 1 and \(machine.cores) cores...")
        let peak = PeakFLOPS.measure(seconds: peakSeconds, cores: machine.cores)
        progress(
            String(format: "  %.1f GFLOP/s per core, %.1f on all cores (%d lanes)", peak.perCoreGFLOPS, peak.allCoresGFLOPS, peak.lanes))
        var results = BenchmarkResults(
            machine: machine, settings: s, peak: peak,
            date: ISO8601DateFormatter().string(from: date))
        let start = Initialization.original.makeParameters()
        func row(
            _ table: BenchmarkTable, _ engine: String, strategy: String = "-", workers: Int = 1, batch: Int = 1,
            phase: LayerPhase = .network, samples: Int, seconds: [Double], note: String = ""
        ) -> BenchmarkMeasurement {
            BenchmarkMeasurement(
                table: table, engine: engine, strategy: strategy, workers: workers, batch: batch, phase: phase,
                samples: samples, epochSamples: s.epochSamples, warmupPasses: s.warmupPasses, seconds: seconds,
                note: note)
        }
        /// A registry engine timed on the first `samples` samples.
        func timed(_ kind: EngineKind, _ options: EngineOptions = EngineOptions(), samples: Int, batch: Int) throws
            -> (seconds: [Double], parameters: Parameters)
        {
            try Benchmark.passes(
                EngineRegistry.makeEngine(kind, options, parameters: start), data: data, samples: samples, batch: batch,
                repeats: s.repeats, warmupPasses: s.warmupPasses, warmupSamples: min(samples, s.warmupSamples), start: start)
        }
        func report(_ r: BenchmarkMeasurement) {
            progress(
                String(
                    format: "  %@ %@ %@ w=%d b=%d %@: median %.4f s (min %.4f, max %.4f) = %.3f s/epoch",
                    r.table.rawValue, r.engine, r.strategy, r.workers, r.batch, r.phase.rawValue,
                    r.secondsMedian, r.secondsMin, r.secondsMax, r.secondsPerEpoch))
        }

        // T1: one worker, batch 1 (the paper's per-sample SGD).
        progress("T1: reference on \(s.referenceSamples) samples, sequential on \(s.samples)...")
        let reference = try timed(.reference, samples: s.referenceSamples, batch: 1)
        let referenceRow = row(.sequential, "reference", samples: s.referenceSamples, seconds: reference.seconds)
        results.add(referenceRow)
        report(referenceRow)
        let sequential = try timed(.sequential, samples: s.samples, batch: 1)
        let sequentialRow = row(.sequential, "sequential", samples: s.samples, seconds: sequential.seconds)
        results.add(sequentialRow, baseline: referenceRow)
        report(sequentialRow)

        // T4: the same training runs with a clock between layers.
        progress("T4: per-layer profile of the training step...")
        let profiles: [(String, Int, Parameters, (Dataset, Int, Parameters) -> (LayerProfile.PhaseSeconds, Parameters))] = [
            ("reference", s.referenceSamples, reference.parameters, LayerProfile.referencePass),
            ("sequential", s.samples, sequential.parameters, LayerProfile.sequentialPass)
        ]
        var referencePhases: [LayerPhase: BenchmarkMeasurement] = [:]
        for (engine, samples, expected, pass) in profiles {
            for _ in 0..<s.warmupPasses { _ = pass(data, min(samples, s.warmupSamples), start) }
            var repeats: [LayerProfile.PhaseSeconds] = []
            for _ in 0..<s.repeats {
                let (phases, reached) = pass(data, samples, start)
                guard reached == expected else { throw BenchmarkError.profileDiverged(engine: engine) }
                repeats.append(phases)
            }
            let note = "profiled training loop; parameters equal the \(engine) engine's"
            for phase in LayerPhase.parts + [.network] {
                let seconds = repeats.map { phases in
                    phase == .network ? LayerPhase.parts.map { phases[$0]! }.reduce(0, +) : phases[phase]!
                }
                let r = row(.layers, engine, phase: phase, samples: samples, seconds: seconds, note: note)
                if engine == "reference" { referencePhases[phase] = r }
                results.add(r, baseline: engine == "reference" ? nil : referencePhases[phase])
                report(r)
            }
        }

        // T3: threads, layer strategy at batch 1 and data strategy at dataBatch.
        progress("T3: threads \(s.threadCounts) x {layer at batch 1, data at batch \(s.dataBatch)} on \(s.samples) samples...")
        let batched = try timed(.sequential, samples: s.samples, batch: s.dataBatch)
        let batchedRow = row(
            .threads, "sequential", batch: s.dataBatch, samples: s.samples, seconds: batched.seconds,
            note: "baseline of the data strategies")
        results.add(batchedRow)
        report(batchedRow)
        let baselines: [EngineStrategy: (BenchmarkMeasurement, Parameters)] = [
            .layer: (sequentialRow, sequential.parameters), .data: (batchedRow, batched.parameters)
        ]
        for strategy in [EngineStrategy.layer, .data] {
            let (baseline, parameters) = baselines[strategy]!
            for t in s.threadCounts {
                let run = try timed(
                    .threads, EngineOptions(threads: t, strategy: EngineStrategy(rawValue: strategy.rawValue)),
                    samples: s.samples, batch: baseline.batch)
                let r = row(
                    .threads, "threads", strategy: strategy.rawValue, workers: t, batch: baseline.batch, samples: s.samples,
                    seconds: run.seconds,
                    note: run.parameters == parameters ? "parameters equal sequential's" : "parameters differ from sequential's")
                results.add(r, baseline: baseline)
                report(r)
            }
        }

        // T2: MPI ranks, the same two strategies, against the same baselines.
        if let mpi {
            progress("T2: mpi \(s.rankCounts) x {layer at batch 1, data at batch \(s.dataBatch)} on \(s.samples) samples...")
            do {
                for strategy in [EngineStrategy.layer, .data] {
                    let baseline = baselines[strategy]!.0
                    for n in s.rankCounts {
                        let seconds = try mpi(
                            MPIRequest(
                                strategy: strategy, ranks: n, batch: baseline.batch, samples: s.samples,
                                repeats: s.repeats, warmupPasses: s.warmupPasses,
                                warmupSamples: min(s.samples, s.warmupSamples)))
                        let r = row(
                            .mpi, "mpi", strategy: strategy.rawValue, workers: n, batch: baseline.batch, samples: s.samples,
                            seconds: seconds, note: n > machine.cores ? "oversubscribed: more ranks than cores" : "")
                        results.add(r, baseline: baseline)
                        report(r)
                    }
                }
            } catch {
                results.skipped[BenchmarkTable.mpi.rawValue] = "mpirun failed: \(error)"
                progress("T2: \(error)")
            }
        } else {
            results.skipped[BenchmarkTable.mpi.rawValue] = mpiSkipReason
            progress("T2 skipped: \(mpiSkipReason)")
        }

        // T5-8: device engines of the registry, whole network, each strategy; and whatever
        // per-kernel rows their own measurers add.
        var devices: [String] = []
        for descriptor in EngineRegistry.engines where descriptor.takesDevice {
            guard descriptor.availability().isAvailable else {
                if case .unavailable(let remedy) = descriptor.availability() { devices.append("\(descriptor.kind.rawValue): \(remedy)") }
                continue
            }
            for strategy in descriptor.strategies.isEmpty ? [nil] : descriptor.strategies.map(Optional.some) {
                let batch = strategy == .data ? s.dataBatch : 1
                progress("T5-8: \(descriptor.kind.rawValue)\(strategy.map { " \($0.rawValue)" } ?? "") at batch \(batch)...")
                do {
                    let run = try timed(descriptor.kind, EngineOptions(strategy: strategy), samples: s.samples, batch: batch)
                    let r = row(
                        .gpu, descriptor.kind.rawValue, strategy: strategy?.rawValue ?? "-", batch: batch, samples: s.samples,
                        seconds: run.seconds, note: "one device; workers = 1 (GPU threads are the engine's own)")
                    results.add(r, baseline: batch == 1 ? sequentialRow : batchedRow, cpu: false)
                    report(r)
                } catch {
                    results.skipped["\(descriptor.kind.rawValue)\(strategy.map { "/\($0.rawValue)" } ?? "")"] = "\(error)"
                }
            }
        }
        if results.rows(.gpu).isEmpty && additionalEngines.isEmpty {
            results.skipped[BenchmarkTable.gpu.rawValue] = devices.isEmpty ? noGPUReason : devices.joined(separator: "; ")
        }
        for (name, measure) in additionalEngines {
            progress("\(name)...")
            do {
                for r in try measure(data, s) {
                    let baseline =
                        r.phase == .network ? sequentialRow : results.measurement(id: "T4/sequential/-/w1/b1/\(r.phase.rawValue)")
                    results.add(r, baseline: baseline, cpu: false)
                    report(r)
                }
            } catch {
                results.skipped[name] = "\(error)"
                progress("\(name): \(error)")
            }
        }
        return results
    }
}
