import ParallelCNN
/// One configuration of `NetworkBenchmark.run`: seconds per training sample and the rate of work.
public struct NetworkBenchmarkRow: Sendable {
    public var engine: String
    public var strategy: String
    public var workers: Int
    public var batch: Int
    public var secondsPerSample: Double
    /// `sequential` at the same batch over this row, measured in the same run.
    public var speedup: Double
    /// FLOPs per training sample (`Architecture.flopsPerTrainingSample`) over seconds per sample.
    public var gflops: Double
    /// `gflops` as a fraction of the measured peak of the cores the row uses.
    public var peakFraction: Double
    /// Kernel launches per epoch of 60,000 samples (device rows only).
    public var launchesPerEpoch: Double? = nil
}

/// The bench for any network: sequential per sample and at a batch, the threads engine's layer
/// strategy per sample and its data strategy at the batch, all on the same samples in one run,
/// with the rate of work against the measured peak of the cores used. The modern recipe trains,
/// with `optimizer` at its default learning rate.
///
/// The configurations are timed in `repeats` rounds, each round one pass of every configuration
/// in turn, and each keeps its fastest pass: a shared machine's speed drifts over seconds, and
/// rounds let the drift hit a configuration and its baseline alike.
public enum NetworkBenchmark {
    public static func run(
        _ architecture: Architecture, data: Dataset, samples: Int, batch: Int, threads: [Int],
        peak: PeakFLOPS, optimizer: Optimizer = .adam, repeats: Int = 3, progress: (String) -> Void = { _ in }
    ) throws -> [NetworkBenchmarkRow] {
        let start = Initialization.seeded(1).makeParameters(for: architecture)
        let count = min(samples, data.count)
        struct Configuration {
            let engine: any Engine
            let name: String, strategy: String, workers: Int, batch: Int
            /// The configuration this one's speed-up is measured against.
            let baseline: Int?
            var best = Double.infinity
        }
        var configurations: [Configuration] = [
            Configuration(
                engine: SequentialEngine(parameters: start, architecture: architecture), name: "sequential", strategy: "-",
                workers: 1, batch: 1, baseline: nil)
        ]
        for t in threads where t > 1 {
            configurations.append(
                Configuration(
                    engine: ThreadedEngine(parameters: start, threads: t, strategy: .layer, architecture: architecture),
                    name: "threads", strategy: "layer", workers: t, batch: 1, baseline: 0))
        }
        let batched = configurations.count
        configurations.append(
            Configuration(
                engine: SequentialEngine(parameters: start, architecture: architecture), name: "sequential", strategy: "-",
                workers: 1, batch: batch, baseline: nil))
        for t in threads where t > 1 {
            configurations.append(
                Configuration(
                    engine: ThreadedEngine(parameters: start, threads: t, strategy: .data, architecture: architecture),
                    name: "threads", strategy: "data", workers: t, batch: batch, baseline: batched))
        }
        for round in 0..<max(1, repeats) {
            for k in configurations.indices {
                let c = configurations[k]
                let rule = UpdateRule(recipe: .modern, optimizer: optimizer, batchSize: c.batch)
                let s =
                    try Benchmark.time(c.engine, data: data, samples: count, batch: c.batch, repeats: 1, start: start, rule: rule)
                    / Double(count)
                configurations[k].best = min(c.best, s)
                progress(
                    String(
                        format: "round %d: %@ %@ T=%d batch %d: %.1f µs per sample", round + 1, c.name, c.strategy, c.workers, c.batch,
                        s * 1e6))
            }
        }
        return configurations.map { c in
            let s = c.best
            let gflops = architecture.flopsPerTrainingSample / s / 1e9
            return NetworkBenchmarkRow(
                engine: c.name, strategy: c.strategy, workers: c.workers, batch: c.batch, secondsPerSample: s,
                speedup: c.baseline.map { configurations[$0].best / s } ?? 1, gflops: gflops,
                peakFraction: gflops / peak.gflops(cores: min(c.workers, peak.cores)))
        }
    }
}

extension NetworkBenchmark {
    /// The device rows for `backend`: the generated kernels' strategies (fused and layer per
    /// sample, data per sample and at the batch), and for the paper's network its own kernels
    /// (fused and layer per sample), each with its kernel launches per epoch.
    public static func deviceRows(
        _ architecture: Architecture, backend: DeviceBackend, data: Dataset, samples: Int, batch: Int, repeats: Int = 2,
        progress: (String) -> Void = { _ in }
    ) throws -> [NetworkBenchmarkRow] {
        let start = Initialization.seeded(1).makeParameters(for: architecture)
        let count = min(samples, data.count)
        var configurations: [(strategy: EngineStrategy, batch: Int, paperKernels: Bool)] = [
            (.fused, 1, false), (.layer, 1, false), (.data, 1, false), (.data, batch, false)
        ]
        if architecture.isPaper { configurations = [(.fused, 1, true), (.layer, 1, true)] + configurations }
        var rows: [NetworkBenchmarkRow] = []
        for (strategy, b, paperKernels) in configurations {
            let device: any ComputeDevice
            let engine: any Engine
            if paperKernels {
                let paper = try DeviceEngine(backend: backend, strategy: strategy, parameters: start)
                (engine, device) = (paper, paper.device)
            } else {
                let generated = try DeviceNetworkEngine(backend: backend, strategy: strategy, architecture: architecture, parameters: start)
                (engine, device) = (generated, generated.device)
            }
            let rule = UpdateRule(recipe: .modern, optimizer: .adam, learningRate: 0.001, batchSize: b)
            // An untimed pass builds the kernels (PoCL compiles at the first launch) and counts launches.
            let before = device.launches
            _ = try Benchmark.time(engine, data: data, samples: count, batch: b, repeats: 1, start: start, rule: rule)
            let launches = Double(device.launches - before) / Double(count) * 60_000
            let s =
                try Benchmark.time(engine, data: data, samples: count, batch: b, repeats: repeats, start: start, rule: rule) / Double(count)
            let gflops = architecture.flopsPerTrainingSample / s / 1e9
            let name = backend.rawValue + (paperKernels ? " (paper kernels)" : "")
            rows.append(
                NetworkBenchmarkRow(
                    engine: name, strategy: strategy.rawValue, workers: 1, batch: b, secondsPerSample: s, speedup: 1, gflops: gflops,
                    peakFraction: 0, launchesPerEpoch: launches))
            progress(
                String(format: "%@ %@ batch %d: %.1f µs per sample, %.0f launches per epoch", name, strategy.rawValue, b, s * 1e6, launches)
            )
        }
        return rows
    }
}
