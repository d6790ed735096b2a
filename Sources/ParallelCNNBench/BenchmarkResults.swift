import ParallelCNN
/// The paper's results tables, as `pcnn bench` reproduces them.
///
/// Each measurement carries the table it belongs to; writers group rows by table and render
/// whatever engines are present, so a new engine (a GPU) adds rows without touching them.
public enum BenchmarkTable: String, Codable, Sendable, CaseIterable {
    /// Seconds per epoch, one worker (the paper's Table 1).
    case sequential = "T1"
    /// MPI ranks: speed-up and efficiency (Table 2).
    case mpi = "T2"
    /// Threads: speed-up and efficiency (Table 3).
    case threads = "T3"
    /// Time per layer and phase within a training epoch (Table 4).
    case layers = "T4"
    /// GPU engines: per-layer and whole-network times (Tables 5–8).
    case gpu = "T5-8"
}

/// One measured configuration: what ran, on how much data, how long it took over several
/// repeats, and what that means per epoch, against a baseline and against the machine's peak.
///
/// Times are per timed pass over `samples` training samples (the first `samples` of the
/// epoch, from the same starting parameters each repeat); `secondsPerEpoch` scales the median to
/// `epochSamples`.
public struct BenchmarkMeasurement: Codable, Sendable, Equatable {
    /// Unique within one results object; charts tag every plotted value with it.
    public var id: String
    public var table: BenchmarkTable
    /// `reference`, `sequential`, `threads`, `mpi`, or a GPU engine's name.
    public var engine: String
    /// `layer`, `data`, or `-` for engines with one way of working.
    public var strategy: String
    /// Threads, ranks or GPU threads.
    public var workers: Int
    public var batch: Int
    public var phase: LayerPhase
    /// Samples per timed pass.
    public var samples: Int
    /// Samples in a whole epoch (the training set).
    public var epochSamples: Int
    public var warmupPasses: Int
    /// Seconds of each timed pass, in the order they ran.
    public var seconds: [Double]
    public var secondsMin: Double
    public var secondsMedian: Double
    public var secondsMax: Double
    /// `(max - min) / median` of the repeats.
    public var spread: Double
    public var secondsPerEpoch: Double
    /// The `id` of the measurement `speedup` divides, or nil.
    public var baseline: String?
    /// Baseline median over this median (same samples, same batch, same run).
    public var speedup: Double?
    /// `speedup / workers` for CPU workers.
    public var efficiency: Double?
    /// Training FLOPs of this phase per sample (`FLOPCount`).
    public var flopsPerSample: Double
    /// Achieved GFLOP/s at the median.
    public var gflops: Double
    /// Achieved over the measured peak of one core, and of the cores this run used (min(workers, cores)).
    public var percentOfCorePeak: Double?
    public var percentOfUsedCoresPeak: Double?
    /// Free text: how it was measured (for example "profiled training loop, parameters checked").
    public var note: String

    public init(
        table: BenchmarkTable, engine: String, strategy: String = "-", workers: Int = 1, batch: Int = 1,
        phase: LayerPhase = .network, samples: Int, epochSamples: Int, warmupPasses: Int, seconds: [Double],
        flopsPerSample: Double? = nil, note: String = ""
    ) {
        precondition(!seconds.isEmpty && samples > 0)
        self.table = table
        self.engine = engine
        self.strategy = strategy
        self.workers = workers
        self.batch = batch
        self.phase = phase
        self.samples = samples
        self.epochSamples = epochSamples
        self.warmupPasses = warmupPasses
        self.seconds = seconds
        let sorted = seconds.sorted()
        secondsMin = sorted[0]
        secondsMax = sorted[sorted.count - 1]
        secondsMedian =
            sorted.count % 2 == 1
            ? sorted[sorted.count / 2]
            : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        spread = secondsMedian > 0 ? (secondsMax - secondsMin) / secondsMedian : 0
        secondsPerEpoch = secondsMedian * Double(epochSamples) / Double(samples)
        self.flopsPerSample = flopsPerSample ?? FLOPCount.perSample(phase)
        gflops = secondsMedian > 0 ? self.flopsPerSample * Double(samples) / secondsMedian / 1e9 : 0
        self.note = note
        id = "\(table.rawValue)/\(engine)/\(strategy)/w\(workers)/b\(batch)/\(phase.rawValue)"
    }

    /// Sets `speedup` (and `efficiency`) against `baseline`.
    public mutating func compare(with baseline: BenchmarkMeasurement) {
        self.baseline = baseline.id
        speedup = baseline.secondsPerEpoch / secondsPerEpoch
        efficiency = speedup.map { $0 / Double(max(1, workers)) }
    }

    /// Sets the peak percentages from a measured peak.
    public mutating func relate(to peak: PeakFLOPS, cores: Int) {
        guard peak.perCoreGFLOPS > 0 else { return }
        percentOfCorePeak = 100 * gflops / peak.perCoreGFLOPS
        percentOfUsedCoresPeak = 100 * gflops / peak.gflops(cores: min(max(1, workers), cores))
    }
}

/// How a bench run was set up.
public struct BenchmarkSettings: Codable, Sendable, Equatable {
    /// `quick` (a prefix of the epoch) or `full` (whole epochs).
    public var mode: String
    /// Samples per timed pass of the fast engines, and of the reference engine.
    public var samples: Int
    public var referenceSamples: Int
    public var epochSamples: Int
    public var repeats: Int
    public var warmupPasses: Int
    /// Samples of each warm-up pass (the first ones of the timed prefix).
    public var warmupSamples: Int
    /// Batch of the data strategies (and of their sequential baseline).
    public var dataBatch: Int
    public var threadCounts: [Int]
    public var rankCounts: [Int]
    public var recipe: String

    public init(
        mode: String, samples: Int, referenceSamples: Int, epochSamples: Int, repeats: Int, warmupPasses: Int,
        warmupSamples: Int, dataBatch: Int, threadCounts: [Int], rankCounts: [Int], recipe: String = "original"
    ) {
        self.mode = mode
        self.samples = samples
        self.referenceSamples = referenceSamples
        self.epochSamples = epochSamples
        self.repeats = repeats
        self.warmupPasses = warmupPasses
        self.warmupSamples = warmupSamples
        self.dataBatch = dataBatch
        self.threadCounts = threadCounts
        self.rankCounts = rankCounts
        self.recipe = recipe
    }
}

/// Everything one `pcnn bench` run measured, with the machine, the peak and the paper's figures:
/// what `results.json` holds and every table, CSV row and chart is drawn from.
public struct BenchmarkResults: Codable, Sendable, Equatable {
    public var machine: MachineInfo
    public var settings: BenchmarkSettings
    public var peak: PeakFLOPS
    public var measurements: [BenchmarkMeasurement]
    /// One line per table or part that was not measured, saying why.
    public var skipped: [String: String]
    public var paper: PaperFigures
    /// When the run started (ISO 8601, UTC).
    public var date: String

    public init(
        machine: MachineInfo, settings: BenchmarkSettings, peak: PeakFLOPS, measurements: [BenchmarkMeasurement] = [],
        skipped: [String: String] = [:], paper: PaperFigures = .published, date: String
    ) {
        self.machine = machine
        self.settings = settings
        self.peak = peak
        self.measurements = measurements
        self.skipped = skipped
        self.paper = paper
        self.date = date
    }

    public func rows(_ table: BenchmarkTable) -> [BenchmarkMeasurement] { measurements.filter { $0.table == table } }

    public func measurement(id: String) -> BenchmarkMeasurement? { measurements.first { $0.id == id } }

    /// Adds a row, first setting its peak percentages (CPU rows) and its speed-up against `baseline`.
    public mutating func add(_ row: BenchmarkMeasurement, baseline: BenchmarkMeasurement? = nil, cpu: Bool = true) {
        var row = row
        if cpu { row.relate(to: peak, cores: machine.cores) }
        if let baseline { row.compare(with: baseline) }
        measurements.removeAll { $0.id == row.id }
        measurements.append(row)
    }
}

/// The figures of the paper's Tables 1–8, printed beside ours.
public struct PaperFigures: Codable, Sendable, Equatable {
    public struct SpeedupRow: Codable, Sendable, Equatable {
        public var workers: Int
        /// nil where the paper reports a crash.
        public var speedup: Double?
        /// As printed (a fraction, whatever the column's "%" says).
        public var efficiency: Double?
        public var remark: String?
    }

    public struct GPURow: Codable, Sendable, Equatable {
        public var table: Int
        public var part: String
        public var threads: Int
        public var milliseconds: Double
        public var speedup: Double
        public var efficiency: Double
    }

    /// Table 1: sequential C, seconds per epoch.
    public var sequentialSecondsPerEpoch: Double
    /// Table 2: MPI by cores.
    public var mpi: [SpeedupRow]
    /// Table 3: OpenMP by threads.
    public var openMP: [SpeedupRow]
    /// Table 4: per epoch, milliseconds, by layer (from one-layer networks): c1, s1, f.
    public var layerMilliseconds: [String: Double]
    /// Tables 5–8: CUDA on a T4.
    public var cuda: [GPURow]
    public var machine: String

    public static let published = PaperFigures(
        sequentialSecondsPerEpoch: 102.317095,
        mpi: [
            SpeedupRow(workers: 2, speedup: 1.52734, efficiency: 0.76367),
            SpeedupRow(workers: 4, speedup: 1.01832, efficiency: 0.3545)
        ],
        openMP: [
            SpeedupRow(workers: 2, speedup: 2.72047, efficiency: 1.36),
            SpeedupRow(workers: 4, speedup: 2.62118, efficiency: 0.655295),
            SpeedupRow(workers: 6, speedup: 2.158702, efficiency: 0.359783),
            SpeedupRow(workers: 8, speedup: nil, efficiency: nil, remark: "machine would crash")
        ],
        layerMilliseconds: ["c1": 97699.512123, "s1": 5127.317961, "f": 2129.152015],
        cuda: [
            GPURow(table: 5, part: "c1", threads: 3456, milliseconds: 90.173, speedup: 1083.467, efficiency: 0.3135),
            GPURow(table: 6, part: "s1", threads: 3456, milliseconds: 5.1927, speedup: 986.73, efficiency: 0.285512),
            GPURow(table: 7, part: "f", threads: 5120, milliseconds: 0.386624, speedup: 5507.03529, efficiency: 1.07559283),
            GPURow(table: 8, part: "network", threads: 27776, milliseconds: 2996.9857, speedup: 34.14, efficiency: 1.229118664e-3)
        ],
        machine: "sequential, MPI and OpenMP on a Kali Linux VM; CUDA on a Google Colab T4")

    /// The paper's seconds per epoch implied by a speed-up over its Table 1.
    public func secondsPerEpoch(speedup: Double) -> Double { sequentialSecondsPerEpoch / speedup }
}

extension PaperFigures {
    /// A figure of the paper by key, for charts and the checks of their values: `T1` (s/epoch),
    /// `T2:N` / `T3:N` (speed-up at N ranks / threads), `T2:N:epoch` / `T3:N:epoch` (the s/epoch
    /// that speed-up implies), `T4:c1|s1|f` (s/epoch), `T5-8:c1|s1|f|network` (ms, and `:speedup`).
    public func value(_ key: String) -> Double? {
        let parts = key.split(separator: ":").map(String.init)
        switch parts.first {
        case "T1": return sequentialSecondsPerEpoch
        case "T2", "T3":
            guard parts.count >= 2, let n = Int(parts[1]),
                let speedup = (parts[0] == "T2" ? mpi : openMP).first(where: { $0.workers == n })?.speedup
            else { return nil }
            return parts.count == 3 && parts[2] == "epoch" ? secondsPerEpoch(speedup: speedup) : speedup
        case "T4":
            return parts.count == 2 ? layerMilliseconds[parts[1]].map { $0 / 1000 } : nil
        case "T5-8":
            guard parts.count >= 2, let row = cuda.first(where: { $0.part == parts[1] }) else { return nil }
            if parts.count == 3 { return parts[2] == "speedup" ? row.speedup : parts[2] == "threads" ? Double(row.threads) : nil }
            return row.milliseconds
        default: return nil
        }
    }
}
