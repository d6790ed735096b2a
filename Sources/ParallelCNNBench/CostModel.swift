import ParallelCNN

/// A message cost `α + β·bytes`: latency and inverse bandwidth.
public struct MessageCost: Sendable, Codable, Equatable {
    /// Seconds per message.
    public var alpha: Double
    /// Seconds per byte.
    public var beta: Double

    public init(alpha: Double, beta: Double) {
        (self.alpha, self.beta) = (alpha, beta)
    }

    public func seconds(bytes: Double) -> Double { alpha + beta * bytes }

    /// The line through two timings (bytes, seconds), small message first; β is never negative
    /// (a noisy large message may time faster than the small one) and α never below zero.
    public static func fit(_ small: (bytes: Double, seconds: Double), _ large: (bytes: Double, seconds: Double)) -> MessageCost {
        precondition(large.bytes > small.bytes, "the large message must be larger")
        let beta = max(0, (large.seconds - small.seconds) / (large.bytes - small.bytes))
        return MessageCost(alpha: max(0, small.seconds - beta * small.bytes), beta: beta)
    }
}

/// A collective's cost in two regimes, each `α + β·bytes`: Open MPI sends a message up to its
/// transport's eager limit at once, a larger one after a handshake (rendezvous), and one line
/// through both misses the middle by a factor of two or more (measured: an allgather of 14.7 KB
/// on shared memory takes 3.2 µs, the line from 32 B to 256 KB says 1.3 µs).
public struct ProtocolCost: Sendable, Codable, Equatable {
    public var eager: MessageCost
    public var rendezvous: MessageCost
    /// Bytes up to which `eager` applies.
    public var eagerLimit: Double

    public init(eager: MessageCost, rendezvous: MessageCost, eagerLimit: Double) {
        (self.eager, self.rendezvous, self.eagerLimit) = (eager, rendezvous, eagerLimit)
    }

    public static let free = ProtocolCost(eager: .init(alpha: 0, beta: 0), rendezvous: .init(alpha: 0, beta: 0), eagerLimit: 0)

    public func seconds(bytes: Double) -> Double {
        bytes <= eagerLimit ? eager.seconds(bytes: bytes) : rendezvous.seconds(bytes: bytes)
    }

    /// Fits both regimes to timings (bytes, seconds) of increasing sizes: the eager line through
    /// the smallest and the largest size within the limit, the rendezvous line through the two
    /// smallest sizes above it (the last two, when fewer lie above).
    public static func fit(_ timings: [(bytes: Double, seconds: Double)], eagerLimit: Double) -> ProtocolCost {
        precondition(timings.count >= 3, "three sizes at least")
        let sorted = timings.sorted { $0.bytes < $1.bytes }
        let within = sorted.filter { $0.bytes <= eagerLimit }
        let above = sorted.filter { $0.bytes > eagerLimit }
        let eager = within.count >= 2 ? MessageCost.fit(within[0], within[within.count - 1]) : MessageCost.fit(sorted[0], sorted[1])
        let pair = above.count >= 2 ? [above[0], above[above.count - 1]] : Array(sorted.suffix(2))
        return ProtocolCost(eager: eager, rendezvous: MessageCost.fit(pair[0], pair[1]), eagerLimit: eagerLimit)
    }
}

/// A network fabric beyond this machine, for the model's predictions at 8 to 1,024 ranks.
public struct Fabric: Sendable, Codable, Equatable {
    public var name: String
    /// Point-to-point latency α and inverse bandwidth β of one link.
    public var link: MessageCost
    /// Where the figures come from.
    public var source: String

    /// 25 Gb/s Ethernet with MPI over TCP: α 20 µs (MPI ping-pong latency over kernel TCP on
    /// 25GbE is typically 15-30 µs), β from the line rate at 94% efficiency (2.94 GB/s).
    public static let ethernet25G = Fabric(
        name: "25GbE (TCP)", link: MessageCost(alpha: 20e-6, beta: 1 / 2.94e9),
        source: "line rate 25 Gb/s (IEEE 802.3by) at 94% payload efficiency; α: typical MPI-over-TCP ping-pong latency on 25GbE")
    /// InfiniBand HDR (200 Gb/s): α 1 µs, β from 24 GB/s.
    public static let infinibandHDR = Fabric(
        name: "InfiniBand HDR", link: MessageCost(alpha: 1e-6, beta: 1 / 24e9),
        source: "NVIDIA ConnectX-6 HDR: 200 Gb/s per port (about 24 GB/s achieved), MPI latency about 1 µs")

    public static let all = [ethernet25G, infinibandHDR]
}

/// The collective algorithms the predictions compare.
public enum CollectiveAlgorithm: String, Sendable, Codable, CaseIterable {
    case ring, tree

    /// Seconds of an allreduce of `bytes` over `ranks` ranks on `link`: a ring is a
    /// reduce-scatter then an allgather, 2(R-1) steps of bytes/R each; a tree is a binomial
    /// reduce then a broadcast, 2·⌈log2 R⌉ steps of the whole message.
    public func allreduce(bytes: Double, ranks: Int, link: MessageCost) -> Double {
        guard ranks > 1 else { return 0 }
        let r = Double(ranks)
        switch self {
        case .ring: return 2 * (r - 1) * link.alpha + 2 * (r - 1) / r * bytes * link.beta
        case .tree: return 2 * log2Ceiling(ranks) * (link.alpha + bytes * link.beta)
        }
    }

    /// Seconds of an allgather that leaves `bytes` on every rank: a ring passes R-1 pieces; a
    /// tree (recursive doubling) takes ⌈log2 R⌉ steps; both move (R-1)/R of the bytes in.
    public func allgather(bytes: Double, ranks: Int, link: MessageCost) -> Double {
        guard ranks > 1 else { return 0 }
        let r = Double(ranks)
        let steps = self == .ring ? r - 1 : log2Ceiling(ranks)
        return steps * link.alpha + (r - 1) / r * bytes * link.beta
    }
}

package func log2Ceiling(_ n: Int) -> Double { n <= 1 ? 0 : Double(Int.bitWidth - (n - 1).leadingZeroBitCount) }

/// The terms the model measures on this machine (`SweepMeasurement.machineCosts`).
public struct MachineCosts: Sendable, Codable, Equatable {
    public var cores: Int
    /// Seconds of one parallel region (fork + join) per thread count.
    public var forkJoin: [ThreadsCost]
    /// 2-rank collectives on shared memory (the transport of ranks on one node) and on TCP.
    public var allreduceSharedMemory: ProtocolCost
    public var allgatherSharedMemory: ProtocolCost
    public var allreduceTCP: ProtocolCost
    public var allgatherTCP: ProtocolCost
    /// Seconds per byte for a core to read what another core just wrote
    /// (`Benchmark.coreTransferPerByte`).
    public var coreTransferPerByte: Double

    public struct ThreadsCost: Sendable, Codable, Equatable {
        public var threads: Int
        /// A region with about 5 µs of work on every member, beyond that work
        /// (`Benchmark.loadedRegionOverhead`): what the model charges per region.
        public var seconds: Double
        /// An empty region, back to back (`Benchmark.regionOverhead`), for comparison.
        public var emptySeconds: Double
        public init(threads: Int, seconds: Double, emptySeconds: Double? = nil) {
            (self.threads, self.seconds, self.emptySeconds) = (threads, seconds, emptySeconds ?? seconds)
        }
    }

    public init(
        cores: Int, forkJoin: [ThreadsCost], allreduceSharedMemory: ProtocolCost, allgatherSharedMemory: ProtocolCost,
        allreduceTCP: ProtocolCost, allgatherTCP: ProtocolCost, coreTransferPerByte: Double
    ) {
        self.coreTransferPerByte = coreTransferPerByte
        self.cores = cores
        self.forkJoin = forkJoin
        self.allreduceSharedMemory = allreduceSharedMemory
        self.allgatherSharedMemory = allgatherSharedMemory
        self.allreduceTCP = allreduceTCP
        self.allgatherTCP = allgatherTCP
    }

    /// Fork-join seconds at `threads`: the measured figure, or the nearest measured count's.
    public func forkJoin(threads: Int) -> Double {
        guard threads > 1 else { return 0 }
        return forkJoin.min { abs($0.threads - threads) < abs($1.threads - threads) }?.seconds ?? 0
    }
}

/// One point of the sweep: how the work is split.
public struct SweepConfiguration: Sendable, Codable, Hashable {
    /// "sequential", "threads" or "mpi".
    public var engine: String
    /// "-", "layer", "data" or "hybrid" (mpi data with more than one thread per rank).
    public var strategy: String
    public var ranks: Int
    public var threads: Int
    public var batch: Int

    public init(engine: String, strategy: String, ranks: Int = 1, threads: Int = 1, batch: Int) {
        (self.engine, self.strategy, self.ranks, self.threads, self.batch) = (engine, strategy, ranks, threads, batch)
    }

    public var workers: Int { ranks * threads }
    public var label: String {
        engine == "sequential" ? "sequential" : "\(engine) \(strategy)"
    }
}

/// Synchronisations of one configuration, counted from the network's passes and the strategy.
public struct SynchronisationCount: Sendable, Codable, Equatable {
    /// Fork-joins of a thread pool per sample (layer) or per step (data).
    public var forkJoinsPerSample: Int
    public var forkJoinsPerStep: Int
    /// MPI messages (collectives) per sample (layer: allgathers) and per step (data: allreduces).
    public var messagesPerSample: Int
    public var messagesPerStep: Int
    /// Bytes every rank receives per sample and per step.
    public var bytesPerSample: Double
    public var bytesPerStep: Double

    /// No synchronisation (one worker, or a device point).
    public static let none = SynchronisationCount(
        forkJoinsPerSample: 0, forkJoinsPerStep: 0, messagesPerSample: 0, messagesPerStep: 0, bytesPerSample: 0, bytesPerStep: 0)
}

/// Predicts the seconds per training sample of every sweep configuration from the network's
/// measured `SampleCost` and the machine's `MachineCosts`:
///
/// - compute: each pass's one-core seconds, divided among the workers in whole items (a pass of
///   `n` items on `W` workers takes `⌈n/W⌉/n` of its time; the data strategies split a batch into
///   blocks of 4 samples the same way);
/// - a fork-join per parallel region (threads), a collective per exchange (mpi) at
///   α + β·bytes, times ⌈log2 R⌉ beyond 2 ranks on this machine;
/// - the gradient sums and the update at their measured cost;
/// - more workers than cores share the cores (compute × workers / cores).
public struct CostModel: Sendable {
    public var machine: MachineCosts
    /// Added to every message (`PCNN_MPI_DELAY_US`).
    public var messageDelay: Double = 0

    public init(machine: MachineCosts, messageDelay: Double = 0) {
        self.machine = machine
        self.messageDelay = messageDelay
    }

    /// Counted from the network's passes and the strategy; the passes that `threads --strategy
    /// layer` splits only where that is faster (`PassCost.splitWhenFaster`) count where `model`
    /// predicts them faster split (all of them without a model).
    public static func synchronisations(_ c: SweepConfiguration, _ cost: SampleCost, model: CostModel? = nil) -> SynchronisationCount {
        var count = SynchronisationCount.none
        switch (c.engine, c.strategy) {
        case ("threads", "layer") where c.threads > 1:
            count.forkJoinsPerSample =
                cost.passes.filter { pass in
                    guard let model else { return pass.splitByThreads }
                    return model.threadsLayerPass(pass, threads: c.threads).split
                }.count
        case ("mpi", "layer"):
            let split = cost.passes.filter(\.splitByRanks)
            count.messagesPerSample = split.count
            count.bytesPerSample = Double(split.reduce(0) { $0 + $1.exchangedFloats }) * 4
        case ("threads", "data") where c.threads > 1:
            count.forkJoinsPerStep = 1
        case ("mpi", "data"), ("mpi", "hybrid"):
            count.forkJoinsPerStep = c.threads > 1 ? 1 : 0
            count.messagesPerStep = 2
            count.bytesPerStep = Double(cost.gradientFloats * 4 + 3 * 8)
        default: break
        }
        return count
    }

    /// Predicted seconds per training sample of `c` for a network of cost `cost`.
    public func secondsPerSample(_ c: SweepConfiguration, _ cost: SampleCost) -> Double {
        let share = Double(c.workers) / Double(max(1, machine.cores))
        let crowding = max(1, share)  // more workers than cores: they share the cores
        switch (c.engine, c.strategy) {
        case ("sequential", _):
            return c.batch == 1
                ? cost.sampleSeconds + cost.updateSeconds
                : stepSeconds(samples: c.batch, threads: 1, cost) / Double(c.batch)
        case ("threads", "layer"):
            let passes = cost.passes.reduce(0.0) { $0 + threadsLayerPass($1, threads: c.threads).seconds }
            return passes + cost.otherSeconds + cost.updateSeconds
        case ("mpi", "layer"):
            let r = c.ranks
            let passes = cost.passes.reduce(0.0) { sum, pass in
                guard pass.splitByRanks else { return sum + pass.seconds * (r > machine.cores ? crowding : 1) }
                return sum + pass.shareSeconds(workers: min(r, machine.cores)) * crowding
                    + localCollective(machine.allgatherSharedMemory, ranks: r, bytes: Double(pass.exchangedFloats * 4))
                    + crossCore(floats: pass.exchangedFloats, workers: r) + messageDelay
            }
            return passes + cost.otherSeconds + cost.updateSeconds
        case ("threads", "data"):
            return stepSeconds(samples: c.batch, threads: c.threads, cost) * crowding / Double(c.batch)
        default:  // mpi data and hybrid
            let local = (c.batch + c.ranks - 1) / c.ranks
            var step = stepSeconds(samples: local, threads: c.threads, cost) * crowding
            step += 2 * messageDelay
            if c.ranks > 1 {
                step +=
                    localCollective(machine.allreduceSharedMemory, ranks: c.ranks, bytes: Double(cost.gradientFloats * 4))
                    + localCollective(machine.allreduceSharedMemory, ranks: c.ranks, bytes: 24)
            }
            return step / Double(c.batch)
        }
    }

    /// One pass of `threads --strategy layer` on `threads` threads: split, the busiest share
    /// (shared with other workers where there are more threads than cores), a fork-join and the
    /// others' shares read from their cores; or on one thread, where the pass is not split or
    /// the engine chooses (`splitWhenFaster`) and that is faster.
    func threadsLayerPass(_ pass: PassCost, threads t: Int) -> (seconds: Double, split: Bool) {
        guard pass.splitByThreads, t > 1 else { return (pass.seconds, false) }
        let crowding = max(1, Double(t) / Double(max(1, machine.cores)))
        let split =
            pass.shareSeconds(workers: min(t, machine.cores)) * crowding + machine.forkJoin(threads: t)
            + crossCore(floats: pass.writtenFloats, workers: t)
        return pass.splitWhenFaster == true && pass.seconds <= split ? (pass.seconds, false) : (split, true)
    }

    /// Seconds of one step of `samples` samples trained by `threads` threads in `BatchGradient`'s
    /// blocks: each thread's blocks, the block sums folded in order (by slices on every thread
    /// for large gradients, as `DataParallelTeam` does, one more fork-join), a fork-join, and the
    /// update.
    func stepSeconds(samples: Int, threads: Int, _ cost: SampleCost) -> Double {
        guard samples > 1 else { return cost.sampleSeconds + cost.updateSeconds }
        let block = cost.sumBlockSize
        let blocks = (samples + block - 1) / block
        let perThread = Double((blocks + threads - 1) / threads) * Double(min(samples, block))
        let compute = perThread * cost.batchedSampleSeconds
        let sliced = threads > 1 && cost.gradientFloats >= DataParallelTeam.sliceFoldFloats
        let fold =
            Double(blocks - 1) * cost.accumulateSeconds / Double(sliced ? threads : 1) + (sliced ? machine.forkJoin(threads: threads) : 0)
        return compute + fold + machine.forkJoin(threads: threads) + cost.updateSeconds
    }

    /// Seconds for each worker to read the others' shares of a split pass's output: the
    /// `(W-1)/W` of its bytes that another core wrote (for ranks, the copy out of the gathered
    /// block, written by the other rank's core).
    func crossCore(floats: Int, workers: Int) -> Double {
        guard workers > 1 else { return 0 }
        return Double(floats * 4) * Double(workers - 1) / Double(workers) * machine.coreTransferPerByte
    }

    /// A collective among `ranks` ranks of this machine, from its 2-rank cost: ⌈log2 R⌉ rounds.
    func localCollective(_ cost: ProtocolCost, ranks: Int, bytes: Double) -> Double {
        ranks > 1 ? log2Ceiling(ranks) * cost.seconds(bytes: bytes) : 0
    }
}

/// Predictions beyond this machine: R ranks of one core each (the measured one-core costs),
/// connected by a `Fabric`, with ring or tree collectives.
public struct ScalingPrediction: Sendable, Codable, Equatable {
    public var network: String
    public var strategy: String
    public var fabric: String
    public var algorithm: String
    public var ranks: Int
    public var batch: Int
    public var secondsPerEpoch: Double
    /// One rank's seconds at the same batch over R times these.
    public var efficiency: Double
    /// The smallest power-of-two batch (up to 65,536) with at least 80% efficiency, nil if none.
    public var batchFor80Percent: Int?

    /// The data strategy at `ranks` ranks and `batch`, and the layer strategy (per sample).
    public static func predict(
        network: String, cost: SampleCost, strategy: String, ranks: Int, batch: Int, fabric: Fabric,
        algorithm: CollectiveAlgorithm, epochSamples: Int = 60_000
    ) -> ScalingPrediction {
        func perSample(_ r: Int, _ b: Int) -> Double {
            if strategy == "layer" {
                let passes = cost.passes.reduce(0.0) { sum, pass in
                    guard pass.splitByRanks else { return sum + pass.seconds }
                    return sum + pass.shareSeconds(workers: r)
                        + algorithm.allgather(bytes: Double(pass.exchangedFloats * 4), ranks: r, link: fabric.link)
                }
                return passes + cost.otherSeconds + cost.updateSeconds
            }
            let local = (b + r - 1) / r
            let compute = Double(local) * (b > 1 ? cost.batchedSampleSeconds : cost.sampleSeconds) + cost.updateSeconds
            let messages =
                algorithm.allreduce(bytes: Double(cost.gradientFloats * 4), ranks: r, link: fabric.link)
                + algorithm.allreduce(bytes: 24, ranks: r, link: fabric.link)
            return (compute + messages) / Double(b)
        }
        func efficiency(_ b: Int) -> Double { perSample(1, b) / (Double(ranks) * perSample(ranks, b)) }
        let seconds = perSample(ranks, batch)
        var needed: Int?
        if strategy == "data" {
            var b = 1
            while b <= 65_536 {
                if b >= ranks, efficiency(b) >= 0.8 {
                    needed = b
                    break
                }
                b *= 2
            }
        } else if efficiency(1) >= 0.8 {
            needed = 1
        }
        return ScalingPrediction(
            network: network, strategy: strategy, fabric: fabric.name, algorithm: algorithm.rawValue, ranks: ranks,
            batch: strategy == "layer" ? 1 : batch, secondsPerEpoch: seconds * Double(epochSamples),
            efficiency: efficiency(strategy == "layer" ? 1 : batch), batchFor80Percent: needed)
    }
}
