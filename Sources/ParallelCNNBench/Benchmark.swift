import ParallelCNN
/// One measured configuration of a benchmark table.
public struct BenchmarkRow: Sendable {
    public var engine: String
    public var strategy: String
    public var workers: Int
    public var batch: Int
    public var seconds: Double
    /// Baseline seconds (sequential, same batch, same samples, same run) over `seconds`.
    public var speedup: Double
    public var efficiency: Double { speedup / Double(max(1, workers)) }

    public init(engine: String, strategy: String, workers: Int, batch: Int, seconds: Double, speedup: Double) {
        self.engine = engine
        self.strategy = strategy
        self.workers = workers
        self.batch = batch
        self.seconds = seconds
        self.speedup = speedup
    }
}

/// Times engines on the same training samples, one after another in one process, so that the
/// ratios compare like with like on the machine as it is at that moment.
public enum Benchmark {
    /// Seconds to train `engine` on the first `samples` samples of `data` (original recipe,
    /// `batch` samples per step, one pass); the best of `repeats` passes from the same start.
    /// `start` and `rule` default to the paper's network and the original recipe.
    public static func time(
        _ engine: any Engine, data: Dataset, samples: Int, batch: Int, repeats: Int = 2,
        start: Parameters = Initialization.original.makeParameters(), rule: UpdateRule? = nil
    ) throws -> Double {
        let plan = EpochPlan(
            order: (0..<Int32(min(samples, data.count))).map { $0 }, batchSize: batch,
            rule: rule ?? UpdateRule(recipe: .original, batchSize: batch))
        try engine.prepare(training: data)
        var best = Double.infinity
        for _ in 0..<max(1, repeats) {
            try engine.load(parameters: start)
            let began = Trainer.now()
            try engine.trainEpoch(plan)
            try engine.synchronize()
            best = min(best, Trainer.now() - began)
        }
        return best
    }

    /// Timed passes of `engine` over the first `samples` samples of `data` (original recipe,
    /// `batch` samples per step), each from `start`: first `warmupPasses` untimed passes over the
    /// first `warmupSamples`, then `repeats` timed passes. Returns each timed pass's seconds, and
    /// the parameters the last pass reached.
    public static func passes(
        _ engine: any Engine, data: Dataset, samples: Int, batch: Int, repeats: Int,
        warmupPasses: Int = 1, warmupSamples: Int? = nil,
        start: Parameters = Initialization.original.makeParameters()
    ) throws -> (seconds: [Double], parameters: Parameters) {
        let rule = UpdateRule(recipe: .original)
        let order = (0..<Int32(min(samples, data.count))).map { $0 }
        try engine.prepare(training: data)
        func pass(_ count: Int) throws -> Double {
            let plan = EpochPlan(order: Array(order[0..<count]), batchSize: batch, rule: rule)
            try engine.load(parameters: start)
            let began = Trainer.now()
            try engine.trainEpoch(plan)
            try engine.synchronize()
            return Trainer.now() - began
        }
        for _ in 0..<max(0, warmupPasses) { _ = try pass(min(order.count, warmupSamples ?? order.count)) }
        let seconds = try (0..<max(1, repeats)).map { _ in try pass(order.count) }
        return (seconds, try engine.currentParameters())
    }

    /// The paper's Table 3 analogue: for each strategy (`layer` at batch 1, `data` at
    /// `dataBatch`) and thread count, time and speed-up over `sequential` at the same batch.
    public static func threads(
        data: Dataset, samples: Int, threadCounts: [Int], dataBatch: Int,
        progress: (String) -> Void = { _ in }
    ) throws -> [BenchmarkRow] {
        var rows: [BenchmarkRow] = []
        let start = Initialization.original.makeParameters()
        for (strategy, batch) in [(EngineStrategy.layer, 1), (.data, dataBatch)] {
            let baseline = try time(SequentialEngine(parameters: start), data: data, samples: samples, batch: batch)
            rows.append(BenchmarkRow(engine: "sequential", strategy: "-", workers: 1, batch: batch, seconds: baseline, speedup: 1))
            progress(String(format: "sequential, batch %d: %.3f s", batch, baseline))
            for t in threadCounts {
                let engine = ThreadedEngine(parameters: start, threads: t, strategy: strategy)
                let seconds = try time(engine, data: data, samples: samples, batch: batch)
                rows.append(
                    BenchmarkRow(
                        engine: "threads", strategy: strategy.rawValue, workers: t, batch: batch,
                        seconds: seconds, speedup: baseline / seconds))
                progress(String(format: "threads %@ T=%d, batch %d: %.3f s", strategy.rawValue, t, batch, seconds))
            }
        }
        return rows
    }

    /// Seconds per fork-join of an empty parallel region on a `threads`-member pool: the fixed
    /// cost the layer strategy pays `ThreadedEngine.layerRegionsPerSample` times per sample.
    public static func regionOverhead(threads: Int, regions: Int = 200_000) -> Double {
        let pool = WorkerPool(size: threads)
        let counter = UnsafeMutablePointer<Int>.allocate(capacity: threads * 16)
        defer { counter.deallocate() }
        counter.initialize(repeating: 0, count: threads * 16)
        for _ in 0..<1000 { pool.run { counter[$0 * 16] += 1 } }
        let began = Trainer.now()
        for _ in 0..<regions { pool.run { counter[$0 * 16] += 1 } }
        return (Trainer.now() - began) / Double(regions)
    }

    /// Seconds per byte of moving data that one core wrote to another core that reads it next:
    /// thread 0 writes `floats` floats in one region, thread 1 sums them in the next, against
    /// the same two regions with each thread reading its own writes. The layer strategy pays
    /// this after each split pass, when every thread reads the others' share.
    public static func coreTransferPerByte(floats: Int = 8_192, rounds: Int = 5_000) -> Double {
        let pool = WorkerPool(size: 2)
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: floats)
        let sink = UnsafeMutablePointer<Float>.allocate(capacity: 32)
        defer {
            buffer.deallocate()
            sink.deallocate()
        }
        buffer.initialize(repeating: 1, count: floats)
        sink.initialize(repeating: 0, count: 32)
        func round(writer: Int, reader: Int, _ k: Int) {
            pool.run { member in
                if member == writer { for i in 0..<floats { buffer[i] = Float(k &+ i) } }
            }
            pool.run { member in
                if member == reader {
                    var sum: Float = 0
                    for i in 0..<floats { sum += buffer[i] }
                    sink[member * 16] = sum
                }
            }
        }
        func time(writer: Int, reader: Int) -> Double {
            for k in 0..<100 { round(writer: writer, reader: reader, k) }
            var best = Double.infinity
            for _ in 0..<3 {
                let began = Trainer.now()
                for k in 0..<rounds { round(writer: writer, reader: reader, k) }
                best = min(best, (Trainer.now() - began) / Double(rounds))
            }
            return best
        }
        let across = time(writer: 0, reader: 1), local = time(writer: 1, reader: 1)
        return max(0, across - local) / Double(floats * 4)
    }

    /// Seconds a parallel region costs beyond its work when every member has `workSeconds` of
    /// work in it, as in training (each member's share of a pass): the fork-join plus the wait
    /// for the slowest member (a shared machine delays one of them now and then). Measured as
    /// the region's time minus the same work run alone.
    public static func loadedRegionOverhead(threads: Int, workSeconds: Double = 5e-6, regions: Int = 20_000) -> Double {
        guard threads > 1 else { return 0 }
        let pool = WorkerPool(size: threads)
        let sink = UnsafeMutablePointer<Float>.allocate(capacity: threads * 16)
        defer { sink.deallocate() }
        sink.initialize(repeating: 0, count: threads * 16)
        func work(_ iterations: Int, _ member: Int) {
            var x: Float = 1
            for i in 0..<iterations { x = x * 0.999_9 + Float(i & 7) }
            sink[member * 16] = x
        }
        // Iterations of the dependent chain that take about `workSeconds` on one core.
        var iterations = 1_000
        while true {
            let began = Trainer.now()
            for _ in 0..<100 { work(iterations, 0) }
            let each = (Trainer.now() - began) / 100
            if each >= workSeconds || iterations > 100_000_000 {
                iterations = max(1, Int(Double(iterations) * workSeconds / each))
                break
            }
            iterations *= 4
        }
        func best(_ body: () -> Void) -> Double {
            (0..<3).map { _ in
                let began = Trainer.now()
                for _ in 0..<regions { body() }
                return (Trainer.now() - began) / Double(regions)
            }.min()!
        }
        let alone = best { work(iterations, 0) }
        let together = best { pool.run { work(iterations, $0) } }
        return max(0, together - alone)
    }
}
