import Foundation
import ParallelCNN

/// One measured point of the sweep, with the model's prediction for it.
public struct SweepPoint: Sendable, Codable, Equatable {
    public var network: String
    public var flopsPerSample: Double
    public var configuration: SweepConfiguration
    public var samples: Int
    /// Seconds per epoch (`epochSamples` samples), measured and predicted.
    public var measuredSeconds: Double
    /// nil for a GPU point: the model covers the CPU strategies.
    public var predictedSeconds: Double?
    /// Sequential at the same batch over this point, measured in the same run.
    public var speedup: Double
    /// More workers than cores: a labelled extra, outside the model's accuracy target.
    public var oversubscribed: Bool
    public var synchronisations: SynchronisationCount

    public var relativeError: Double? { predictedSeconds.map { ($0 - measuredSeconds) / measuredSeconds } }
    /// A GPU engine's point (no worker count, no prediction).
    public var onDevice: Bool { !["sequential", "threads", "mpi"].contains(configuration.engine) }
}

/// The latency check: the mpi layer strategy with every message delayed by a set time.
public struct DelayPoint: Sendable, Codable, Equatable {
    public var network: String
    public var ranks: Int
    public var delayMicroseconds: Double
    public var messagesPerSample: Int
    public var samples: Int
    public var measuredSeconds: Double
    public var predictedSeconds: Double
    public var relativeError: Double { (predictedSeconds - measuredSeconds) / measuredSeconds }
}

/// Everything `pcnn bench sweep` measured and predicted.
public struct SweepResults: Sendable, Codable {
    public var machine: String
    public var cores: Int
    public var mode: String
    public var epochSamples: Int
    public var machineCosts: MachineCosts
    public var networks: [SweepNetwork]
    public var points: [SweepPoint]
    public var delays: [DelayPoint]
    public var predictions: [ScalingPrediction]
    /// Why some configurations were not measured (MPI missing, ...).
    public var skipped: [String]

    public struct SweepNetwork: Sendable, Codable {
        public var name: String
        public var description: String
        public var parameters: Int
        public var flopsPerSample: Double
        public var cost: SampleCost
    }

    /// Points within ±`tolerance` of the measurement, among the ones on at most the machine's cores.
    public var accuracy: (within: Int, of: Int) {
        let inRange = points.compactMap { $0.oversubscribed ? nil : $0.relativeError }
        return (inRange.filter { abs($0) <= 0.25 }.count, inRange.count)
    }

    /// The fastest measured CPU configuration per network and worker count (the winner map's cells).
    public var winners: [(network: String, workers: Int, point: SweepPoint)] {
        var result: [(String, Int, SweepPoint)] = []
        for network in networks.map(\.name) {
            let mine = points.filter { $0.network == network && !$0.onDevice }
            for workers in Set(mine.map(\.configuration.workers)).sorted() {
                if let best = mine.filter({ $0.configuration.workers == workers }).min(by: { $0.measuredSeconds < $1.measuredSeconds }) {
                    result.append((network, workers, best))
                }
            }
        }
        return result
    }

    public static let csvHeader =
        "network,flops_per_sample,engine,strategy,workers,ranks,threads,batch,samples,measured_s,predicted_s,relative_error,speedup,oversubscribed,forkjoins_per_sample,forkjoins_per_step,messages_per_sample,messages_per_step"

    /// One line per point; seconds are per epoch.
    public var csv: String {
        var lines = [Self.csvHeader]
        for p in points {
            let c = p.configuration, s = p.synchronisations
            lines.append(
                [
                    p.network, String(format: "%.0f", p.flopsPerSample), c.engine, c.strategy, "\(c.workers)", "\(c.ranks)", "\(c.threads)",
                    "\(c.batch)", "\(p.samples)", String(format: "%.4f", p.measuredSeconds),
                    p.predictedSeconds.map { String(format: "%.4f", $0) } ?? "", p.relativeError.map { String(format: "%.4f", $0) } ?? "",
                    String(format: "%.4f", p.speedup), p.oversubscribed ? "1" : "0",
                    "\(s.forkJoinsPerSample)", "\(s.forkJoinsPerStep)", "\(s.messagesPerSample)", "\(s.messagesPerStep)"
                ].joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self) + "\n"
    }
}

/// `pcnn bench sweep`: every CPU strategy on a family of networks at 1, 2, the machine's cores
/// and an oversubscribed count, each measured on the same samples in one run and predicted by
/// `CostModel` from terms measured first; then the delay check and the predictions past this
/// machine.
public struct Sweep {
    public var networks: [(name: String, architecture: Architecture)]
    public var workerCounts: [Int]
    public var cores: Int
    public var batch = 64
    /// Seconds of training each measured pass aims at (the samples follow from the profile).
    public var targetSeconds = 0.25
    public var repeats = 2
    public var quick = true
    public var machineCosts: MachineCosts
    /// Times an MPI configuration under mpirun: seconds for `samples` samples (best pass).
    public var mpi: ((_ request: MPIRequest, _ network: String, _ delayMicroseconds: Double) throws -> Double)?
    public var mpiSkipReason = "no MPI launcher was given"
    public var delays: [Double] = [10, 100, 1000]
    /// A GPU engine whose strategies join the sweep as measured points (no prediction).
    public var gpu: DeviceBackend?
    public var progress: (String) -> Void = { _ in }

    public init(networks: [(name: String, architecture: Architecture)], workerCounts: [Int], cores: Int, machineCosts: MachineCosts) {
        self.networks = networks
        self.workerCounts = workerCounts
        self.cores = cores
        self.machineCosts = machineCosts
    }

    /// The configurations measured for each network.
    public func configurations() -> [SweepConfiguration] {
        var list = [
            SweepConfiguration(engine: "sequential", strategy: "-", batch: 1), .init(engine: "sequential", strategy: "-", batch: batch)
        ]
        for w in workerCounts where w > 1 {
            list.append(.init(engine: "threads", strategy: "layer", threads: w, batch: 1))
            list.append(.init(engine: "threads", strategy: "data", threads: w, batch: batch))
        }
        if mpi != nil {
            for w in workerCounts where w > 1 || !quick {
                list.append(.init(engine: "mpi", strategy: "layer", ranks: w, batch: 1))
                list.append(.init(engine: "mpi", strategy: "data", ranks: w, batch: batch))
                if w >= 4, w % 2 == 0 { list.append(.init(engine: "mpi", strategy: "hybrid", ranks: 2, threads: w / 2, batch: batch)) }
            }
        }
        return list
    }

    public mutating func run(data: Dataset, machine: String) throws -> SweepResults {
        // The thread terms are differences of two timings, so noise moves them both ways: they
        // are measured again before every round and the median is kept. Every prediction is
        // made at the end, from the final terms.
        var terms = machineCosts
        var forkJoins = terms.forkJoin.map { [$0.seconds] }, transfers = [terms.coreTransferPerByte]
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        func refineTerms() {
            for k in terms.forkJoin.indices {
                forkJoins[k].append(Benchmark.loadedRegionOverhead(threads: terms.forkJoin[k].threads, regions: 5_000))
                terms.forkJoin[k].seconds = median(forkJoins[k])
            }
            if cores > 1 {
                transfers.append(Benchmark.coreTransferPerByte(rounds: 2_000))
                terms.coreTransferPerByte = median(transfers)
            }
        }
        var costs: [String: SampleCost] = [:]
        let epoch = data.count
        var results = SweepResults(
            machine: machine, cores: cores, mode: quick ? "quick" : "full", epochSamples: epoch, machineCosts: machineCosts,
            networks: [], points: [], delays: [], predictions: [], skipped: mpi == nil ? ["mpi: \(mpiSkipReason)"] : [])
        for (name, architecture) in networks {
            let start = Initialization.seeded(1).makeParameters(for: architecture)
            let rule = UpdateRule(recipe: .modern, optimizer: .adam, learningRate: 0.001, batchSize: 1)
            func profile() -> SampleCost {
                PassProfile.measure(
                    architecture, data: data, samples: quick ? 300 : 1500, parameters: start, rule: rule,
                    workers: workerCounts.map { min($0, cores) })
            }
            var cost = profile()
            let perSample = cost.sampleSeconds + cost.updateSeconds
            // Whole batches, at least 4 of them, about `targetSeconds` of one-core work.
            let samples = min(data.count, max(4 * batch, Int(targetSeconds / perSample) / batch * batch))
            progress(
                String(
                    format: "%@: %.2f MFLOP per sample, %.1f µs per sample on one core (profile); timing %d samples per point, %d rounds",
                    name, architecture.flopsPerTrainingSample / 1e6, perSample * 1e6, samples, repeats))
            // Rounds over all configurations (and the profile), each point the fastest of its
            // rounds: a machine whose speed drifts over minutes affects every point alike.
            var fastest: [SweepConfiguration: Double] = [:]
            // One engine per configuration for all rounds, so that only the first pass is cold.
            var engines: [SweepConfiguration: any Engine] = [:]
            for c in configurations() where c.engine != "mpi" {
                engines[c] =
                    c.engine == "sequential"
                    ? SequentialEngine(parameters: start, architecture: architecture)
                    : ThreadedEngine(
                        parameters: start, threads: c.threads, strategy: c.strategy == "layer" ? .layer : .data, architecture: architecture)
            }
            for round in 0..<repeats {
                refineTerms()
                if round > 0 { cost = cost.fastest(profile()) }
                for c in configurations() {
                    let seconds: Double
                    if c.engine == "mpi" {
                        let request = MPIRequest(
                            strategy: c.strategy == "layer" ? .layer : .data, ranks: c.ranks, batch: c.batch, samples: samples,
                            repeats: 2, warmupPasses: 0, warmupSamples: 0, threads: c.threads)
                        seconds = try mpi!(request, architecture.network.text, 0) / Double(samples)
                    } else {
                        let engine = engines[c]!
                        let batchRule = UpdateRule(recipe: .modern, optimizer: .adam, learningRate: 0.001, batchSize: c.batch)
                        seconds =
                            try Benchmark.time(
                                engine, data: data, samples: samples, batch: c.batch, repeats: round == 0 ? 2 : 1, start: start,
                                rule: batchRule)
                            / Double(samples)
                    }
                    fastest[c] = min(fastest[c] ?? .infinity, seconds)
                }
            }
            results.networks.append(
                .init(
                    name: name, description: architecture.network.text, parameters: architecture.parameterCount,
                    flopsPerSample: architecture.flopsPerTrainingSample, cost: cost))
            costs[name] = cost
            for c in configurations() {
                let seconds = fastest[c]!
                let baseline = fastest[SweepConfiguration(engine: "sequential", strategy: "-", batch: c.batch)] ?? seconds
                results.points.append(
                    SweepPoint(
                        network: name, flopsPerSample: architecture.flopsPerTrainingSample, configuration: c, samples: samples,
                        measuredSeconds: seconds * Double(epoch), predictedSeconds: nil, speedup: baseline / seconds,
                        oversubscribed: c.workers > cores, synchronisations: CostModel.synchronisations(c, cost)))
                progress(
                    String(
                        format: "  %@ R=%d T=%d b=%d: measured %.3f s/epoch", c.label, c.ranks, c.threads, c.batch, seconds * Double(epoch))
                )
            }
            if let gpu {
                results.points += try devicePoints(
                    gpu, name: name, architecture: architecture, start: start, data: data, baselines: fastest)
            }
            for strategy in ["data", "layer"] {
                for fabric in Fabric.all {
                    for algorithm in CollectiveAlgorithm.allCases {
                        for ranks in [8, 64, 1024] {
                            results.predictions.append(
                                ScalingPrediction.predict(
                                    network: name, cost: cost, strategy: strategy, ranks: ranks, batch: batch, fabric: fabric,
                                    algorithm: algorithm, epochSamples: epoch))
                        }
                    }
                }
            }
        }
        let model = CostModel(machine: terms)
        results.machineCosts = terms
        for k in results.points.indices where !results.points[k].onDevice {
            let p = results.points[k]
            results.points[k].predictedSeconds = model.secondsPerSample(p.configuration, costs[p.network]!) * Double(epoch)
            results.points[k].synchronisations = CostModel.synchronisations(p.configuration, costs[p.network]!, model: model)
            progress(
                String(
                    format: "%@ %@ R=%d T=%d b=%d: measured %.3f s/epoch, predicted %.3f (%+.0f%%)", p.network, p.configuration.label,
                    p.configuration.ranks, p.configuration.threads, p.configuration.batch, p.measuredSeconds,
                    results.points[k].predictedSeconds!, 100 * results.points[k].relativeError!))
        }
        if let mpi, let (name, architecture) = networks.first {
            machineCosts = terms
            results.delays = try delayCheck(mpi: mpi, name: name, architecture: architecture, cost: results.networks[0].cost, epoch: epoch)
        }
        return results
    }

    /// The GPU engine's per-sample strategy (fused: one launch runs thousands of steps) and its
    /// batched one (data: one launch per layer pass over the batch), on the same samples.
    func devicePoints(
        _ backend: DeviceBackend, name: String, architecture: Architecture, start: Parameters, data: Dataset,
        baselines: [SweepConfiguration: Double]
    ) throws -> [SweepPoint] {
        var points: [SweepPoint] = []
        for (strategy, b) in [(EngineStrategy.fused, 1), (.data, batch)] {
            let engine = try DeviceNetworkEngine(backend: backend, strategy: strategy, architecture: architecture, parameters: start)
            let rule = UpdateRule(recipe: .modern, optimizer: .adam, learningRate: 0.001, batchSize: b)
            let samples = min(data.count, max(4 * batch, quick ? 512 : 2048))
            // An untimed pass compiles the kernels.
            _ = try Benchmark.time(engine, data: data, samples: min(samples, 4 * batch), batch: b, repeats: 1, start: start, rule: rule)
            let seconds =
                try Benchmark.time(engine, data: data, samples: samples, batch: b, repeats: repeats, start: start, rule: rule)
                / Double(samples)
            let c = SweepConfiguration(engine: backend.rawValue, strategy: strategy.rawValue, batch: b)
            let baseline = baselines[SweepConfiguration(engine: "sequential", strategy: "-", batch: b)] ?? seconds
            points.append(
                SweepPoint(
                    network: name, flopsPerSample: architecture.flopsPerTrainingSample, configuration: c, samples: samples,
                    measuredSeconds: seconds * Double(data.count), predictedSeconds: nil, speedup: baseline / seconds,
                    oversubscribed: false,
                    synchronisations: .none))
            progress(
                String(
                    format: "  %@ %@ b=%d: measured %.3f s/epoch (no prediction)", backend.rawValue, strategy.rawValue, b,
                    seconds * Double(data.count)))
        }
        return points
    }

    /// The mpi layer strategy on 2 ranks with every message delayed by each of `delays`.
    func delayCheck(
        mpi: (MPIRequest, String, Double) throws -> Double, name: String, architecture: Architecture, cost: SampleCost, epoch: Int
    ) throws -> [DelayPoint] {
        let configuration = SweepConfiguration(engine: "mpi", strategy: "layer", ranks: 2, batch: 1)
        var model = CostModel(machine: machineCosts)
        let messages = CostModel.synchronisations(configuration, cost).messagesPerSample
        // Enough samples that the smallest delay is resolved, few enough that the largest stays short.
        let samples = quick ? 300 : 1000
        var points: [DelayPoint] = []
        for delay in delays {
            model.messageDelay = delay / 1e6
            let request = MPIRequest(
                strategy: .layer, ranks: 2, batch: 1, samples: samples, repeats: repeats, warmupPasses: 0, warmupSamples: 0)
            let seconds = try mpi(request, architecture.network.text, delay) / Double(samples)
            let point = DelayPoint(
                network: name, ranks: 2, delayMicroseconds: delay, messagesPerSample: messages, samples: samples,
                measuredSeconds: seconds * Double(epoch), predictedSeconds: model.secondsPerSample(configuration, cost) * Double(epoch))
            points.append(point)
            progress(
                String(
                    format: "delay %.0f µs per message (%d per sample): measured %.2f s/epoch, predicted %.2f (%+.0f%%)", delay, messages,
                    point.measuredSeconds, point.predictedSeconds, 100 * point.relativeError))
        }
        return points
    }
}
