import Dispatch

/// One pass of a training sample as the layer strategies see it: how many independent items it
/// has, how long it takes on one core, whether `threads --strategy layer` forks for it, and
/// whether `mpi --strategy layer` splits it across ranks and gathers its result (how many floats).
public struct PassCost: Sendable, Codable, Equatable {
    public var name: String
    public var items: Int
    /// Seconds per sample on one core.
    public var seconds: Double
    /// `threads --strategy layer` runs this pass as one parallel region (fork-join).
    public var splitByThreads: Bool
    /// The split is the engine's choice (`PassSplitChoice`, the generic layers): it runs the
    /// pass split only where it timed that faster. Nil (older results) reads as false.
    public var splitWhenFaster: Bool?
    /// `mpi --strategy layer` splits this pass and then runs one `MPI_Allgatherv`.
    public var splitByRanks: Bool
    /// Floats that allgather delivers to every rank (the whole pass's output); 0 when not split.
    public var exchangedFloats: Int
    /// Floats the pass writes, which the next passes read: after a split, the others' shares
    /// come from other cores.
    public var writtenFloats: Int
    /// Seconds per sample of the first worker's share when the pass is split among `workers`
    /// (`ShardPlan`'s first share, the largest): measured, since a smaller share of a matrix
    /// product is not proportionally faster.
    public var shares: [Share] = []

    public struct Share: Sendable, Codable, Equatable {
        public var workers: Int
        public var seconds: Double
        public init(workers: Int, seconds: Double) { (self.workers, self.seconds) = (workers, seconds) }
    }

    /// Seconds of the busiest worker's share among `workers`: measured where profiled, else in
    /// proportion to its items.
    public func shareSeconds(workers: Int) -> Double {
        guard workers > 1 else { return seconds }
        if let share = shares.first(where: { $0.workers == workers }) { return share.seconds }
        return seconds * Double((items + workers - 1) / workers) / Double(items)
    }

    public init(
        name: String, items: Int, seconds: Double, splitByThreads: Bool, splitByRanks: Bool, exchangedFloats: Int, writtenFloats: Int? = nil
    ) {
        (self.name, self.items, self.seconds) = (name, items, seconds)
        (self.splitByThreads, self.splitByRanks, self.exchangedFloats) = (splitByThreads, splitByRanks, exchangedFloats)
        self.writtenFloats = writtenFloats ?? exchangedFloats
    }
}

/// What one training sample costs on one core, split the way the engines split it.
public struct SampleCost: Sendable, Codable, Equatable {
    /// The passes in the order they run (the paper's network: the specialised kernels' stages).
    public var passes: [PassCost]
    /// Seconds per sample outside the passes: loading the image, the output rule, statistics.
    public var otherSeconds: Double
    /// Seconds to add one sample's gradient into a running sum (the batch strategies' cost).
    public var accumulateSeconds: Double
    /// Seconds of one parameter update (the rule's optimizer over every parameter).
    public var updateSeconds: Double
    /// Floats in the gradient (the parameters, padded as the engines pad them).
    public var gradientFloats: Int
    /// Samples the network's workspace trains at once in the batch strategies (`CPUNetwork`'s
    /// block); nil for one at a time (the paper's kernels).
    public var blockSize: Int?
    /// Seconds per sample trained in full blocks of `blockSize`, the block's gradient sum stored
    /// included; nil where samples are trained one at a time.
    public var blockSampleSeconds: Double?

    public init(
        passes: [PassCost], otherSeconds: Double, accumulateSeconds: Double, updateSeconds: Double, gradientFloats: Int,
        blockSize: Int? = nil, blockSampleSeconds: Double? = nil
    ) {
        (self.passes, self.otherSeconds, self.accumulateSeconds) = (passes, otherSeconds, accumulateSeconds)
        (self.updateSeconds, self.gradientFloats) = (updateSeconds, gradientFloats)
        (self.blockSize, self.blockSampleSeconds) = (blockSize, blockSampleSeconds)
    }

    /// Seconds of one training sample's passes and the rest, without gradient sum or update.
    public var sampleSeconds: Double { passes.reduce(otherSeconds) { $0 + $1.seconds } }

    /// Samples per block of `BatchGradient` in the batch strategies.
    public var sumBlockSize: Int { (blockSize ?? 1) > 1 ? blockSize! : 4 }

    /// Seconds per sample of a batch strategy's blocks, the sum into the block included: whole
    /// blocks where the workspace trains them, else one sample and its addition.
    public var batchedSampleSeconds: Double { blockSampleSeconds ?? sampleSeconds + accumulateSeconds }

    /// Each figure the faster of this profile's and `other`'s (of the same network): on a shared
    /// machine a profile only ever measures too slow.
    public func fastest(_ other: SampleCost) -> SampleCost {
        precondition(passes.map(\.name) == other.passes.map(\.name), "profiles of different networks")
        var result = self
        for i in passes.indices {
            result.passes[i].seconds = min(passes[i].seconds, other.passes[i].seconds)
            for k in passes[i].shares.indices where k < other.passes[i].shares.count {
                result.passes[i].shares[k].seconds = min(passes[i].shares[k].seconds, other.passes[i].shares[k].seconds)
            }
        }
        result.otherSeconds = min(otherSeconds, other.otherSeconds)
        result.accumulateSeconds = min(accumulateSeconds, other.accumulateSeconds)
        result.updateSeconds = min(updateSeconds, other.updateSeconds)
        if let a = blockSampleSeconds, let b = other.blockSampleSeconds { result.blockSampleSeconds = min(a, b) }
        return result
    }
}

/// Measures `SampleCost` by running the engines' own passes over real samples with a clock read
/// between passes (about 20 ns a read), then timing the gradient sum and the update alone.
public enum PassProfile {
    /// Profiles `samples` samples of `data` (file order) under `parameters`, with the update of
    /// `rule`. The paper's network is profiled as its specialised kernels run in the layer
    /// strategies: three split stages and one serial stage.
    /// `workers`: the split counts whose first share is timed too. A first, untimed pass over a
    /// few samples warms the caches and the branch predictors.
    public static func measure(
        _ architecture: Architecture, data: Dataset, samples: Int, parameters: Parameters, rule: UpdateRule, workers: [Int] = []
    ) -> SampleCost {
        let count = max(1, min(samples, data.count))
        let state = ParameterState(parameters, architecture: architecture)
        let splits = workers.filter { $0 > 1 }
        func profile(_ n: Int, _ splits: [Int]) -> ([PassCost], Double) {
            architecture.isPaper
                ? paperPasses(data: data, samples: n, state: state, recipe: rule.recipe, workers: splits)
                : genericPasses(architecture, data: data, samples: n, state: state, recipe: rule.recipe, workers: splits)
        }
        _ = profile(min(count, 20), [])
        // Whole passes in one profile, the shares in another: a share run just before its whole
        // pass would warm that pass's caches and make it look faster than in training.
        var (passes, other) = profile(count, [])
        if !splits.isEmpty {
            let shared = profile(count, splits).0
            for i in passes.indices { passes[i].shares = shared[i].shares }
        }
        // Each timed interval includes about one clock read; the generic profile's rest of the
        // sample holds two per pass (the paper's, only the image load's own).
        let read = clockReadSeconds()
        other = max(0, other - read * Double(architecture.isPaper ? 1 : 2 * passes.count) * Double(count))
        // The gradient sum and the update alone, on a small constant gradient (this profile's own
        // copy of the parameters moves; nothing else sees it). Best of three rounds: a shared
        // machine only ever adds time.
        let gradient = UnsafeMutablePointer<Float>.allocate(capacity: state.count)
        let sum = UnsafeMutablePointer<Float>.allocate(capacity: state.count)
        defer {
            gradient.deallocate()
            sum.deallocate()
        }
        gradient.initialize(repeating: 1e-4, count: state.count)
        sum.initialize(repeating: 0, count: state.count)
        let repetitions = max(100, min(10_000, 2_000_000 / state.count))
        func best(_ body: () -> Void) -> Double {
            (0..<3).map { _ in
                let began = now()
                for _ in 0..<repetitions { body() }
                return (now() - began) / Double(repetitions)
            }.min()!
        }
        let accumulate = best { ParameterState.accumulate(gradient, into: sum, count: state.count, first: false) }
        let update = best { state.apply(gradientSum: gradient, batchSize: 1, rule: rule) }
        let blocks = architecture.isPaper ? nil : genericBlocks(architecture, data: data, samples: count, state: state, recipe: rule.recipe)
        return SampleCost(
            passes: passes.map { pass in
                var p = pass
                p.seconds = max(0, p.seconds / Double(count) - read)
                p.shares = pass.shares.map { .init(workers: $0.workers, seconds: max(0, $0.seconds / Double(count) - read)) }
                return p
            }, otherSeconds: other / Double(count),
            accumulateSeconds: accumulate, updateSeconds: update, gradientFloats: state.count,
            blockSize: blocks?.size, blockSampleSeconds: blocks?.seconds)
    }

    /// The batch strategies' cost of the generic layers: whole blocks of `CPUNetwork`'s size,
    /// each block's gradient stored as its sum, best of three rounds over `samples` samples
    /// (at least one block).
    private static func genericBlocks(
        _ architecture: Architecture, data: Dataset, samples: Int, state: ParameterState, recipe: Recipe
    ) -> (size: Int, seconds: Double) {
        let network = CPUNetwork(architecture)
        let size = network.blockCapacity, blocks = max(1, samples / size)
        let order = (0..<(blocks * size)).map { Int32($0 % data.count) }
        let sum = UnsafeMutablePointer<Float>.allocate(capacity: state.count)
        defer { sum.deallocate() }
        let p = UnsafePointer(state.values)
        let seconds = data.withImagePixels { images in
            data.labels.withUnsafeBufferPointer { labels in
                order.withUnsafeBufferPointer { order in
                    (0..<4).map { round in
                        let began = now()
                        for b in 0..<(round == 0 ? 1 : blocks) {  // round 0 warms the caches
                            _ = network.trainBlock(
                                images, samples: UnsafeBufferPointer(rebasing: order[(b * size)..<((b + 1) * size)]), labels: labels, p,
                                recipe: recipe)
                            sum.update(from: network.grad, count: state.count)
                        }
                        return round == 0 ? .infinity : (now() - began) / Double(blocks * size)
                    }.min()!
                }
            }
        }
        return (size, seconds)
    }

    /// Where a block's time goes: each pass of `CPUNetwork` timed over whole blocks of its size
    /// (the batch strategies' unit), as seconds per sample, best of three rounds over `samples`
    /// samples (at least one block). The generic layers only; `pcnn bench net --passes` prints it.
    public static func blockPasses(
        _ architecture: Architecture, data: Dataset, samples: Int, parameters: Parameters, recipe: Recipe
    ) -> [(name: String, seconds: Double)] {
        precondition(!architecture.isPaper, "the paper's network runs its specialised kernels, one sample at a time")
        let state = ParameterState(parameters, architecture: architecture)
        let network = CPUNetwork(architecture)
        let all = network.forwardPasses + network.backwardPasses
        let size = network.blockCapacity, blocks = max(1, samples / size)
        let order = (0..<(blocks * size)).map { Int32($0 % data.count) }
        let p = UnsafePointer(state.values)
        var best = [Double](repeating: .infinity, count: all.count)
        data.withImagePixels { images in
            order.withUnsafeBufferPointer { order in
                for round in 0..<4 {  // round 0 warms the caches
                    var spent = [Double](repeating: 0, count: all.count)
                    for b in 0..<(round == 0 ? 1 : blocks) {
                        let samples = UnsafeBufferPointer(rebasing: order[(b * size)..<((b + 1) * size)])
                        _ = network.trainBlock(images, samples: samples, label: { Int(data.labels[Int(samples[$0])]) }, recipe: recipe) {
                            passes, first in
                            for (i, pass) in passes.enumerated() {
                                let t = now()
                                pass.run(p, 0..<pass.items)
                                spent[first + i] += now() - t
                            }
                        }
                    }
                    if round > 0 { for i in best.indices { best[i] = min(best[i], spent[i] / Double(blocks * size)) } }
                }
            }
        }
        return zip(all, best).map { ($0.name, $1) }
    }

    private static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// Seconds of one `now()`, best of three rounds of 10,000.
    private static func clockReadSeconds() -> Double {
        (0..<3).map { _ in
            let began = now()
            var last = began
            for _ in 0..<10_000 { last = now() }
            return (last - began) / 10_000
        }.min()!
    }

    /// The generic layers: every `LayerPass` of `CPUNetwork`, timed where the engines run it.
    private static func genericPasses(
        _ architecture: Architecture, data: Dataset, samples: Int, state: ParameterState, recipe: Recipe, workers: [Int]
    ) -> ([PassCost], Double) {
        let network = CPUNetwork(architecture, blockCapacity: 1)
        let all = network.forwardPasses + network.backwardPasses
        var spent = [Double](repeating: 0, count: all.count)
        var shareSpent = [[Double]](repeating: [Double](repeating: 0, count: workers.count), count: all.count)
        var total = 0.0, shareTotal = 0.0
        let p = UnsafePointer(state.values)
        let indices = (0..<samples).map(Int32.init)
        data.withImagePixels { images in
            indices.withUnsafeBufferPointer { order in
                for sample in 0..<samples {
                    let began = now()
                    var inShares = 0.0
                    let one = UnsafeBufferPointer(rebasing: order[sample..<(sample + 1)])
                    _ = network.trainBlock(images, samples: one, label: { _ in Int(data.labels[sample]) }, recipe: recipe) {
                        passes, first in
                        for (i, pass) in passes.enumerated() {
                            // The first share before the whole pass, which then overwrites its items.
                            for (k, w) in workers.enumerated() where pass.items >= 2 {
                                let t = now()
                                pass.run(p, ShardPlan.share(of: pass.items, rank: 0, ranks: w))
                                let dt = now() - t
                                shareSpent[first + i][k] += dt
                                inShares += dt
                            }
                            let t = now()
                            pass.run(p, 0..<pass.items)
                            spent[first + i] += now() - t
                        }
                    }
                    total += now() - began
                    shareTotal += inShares
                }
            }
        }
        let passes = all.enumerated().map { i, pass in
            var cost = PassCost(
                name: pass.name, items: pass.items, seconds: spent[i], splitByThreads: pass.items >= 2,
                splitByRanks: !pass.replicated,
                exchangedFloats: pass.replicated ? 0 : pass.writtenFloats, writtenFloats: pass.writtenFloats)
            if pass.items >= 2 {
                cost.shares = workers.enumerated().map { .init(workers: $1, seconds: shareSpent[i][$0]) }
                cost.splitWhenFaster = true
            }
            return cost
        }
        return (passes, max(0, total - shareTotal - spent.reduce(0, +)))
    }

    /// The paper's specialised kernels, in the stages `ThreadedEngine` and `MPIEngine` split
    /// them into: c1 and s1 forward by s1 row; f forward and backward with the s1 input error
    /// (serial); s1 backward with the c1 error; c1 backward by (map, kernel row).
    private static func paperPasses(
        data: Dataset, samples: Int, state: ParameterState, recipe: Recipe, workers: [Int]
    ) -> ([PassCost], Double) {
        let w = SampleWorkspace()
        let p = UnsafePointer(state.values)
        let c = Network.channels, rows = Network.poolSide, k2 = Network.poolKernel
        let items = Network.channels * Network.convKernel
        var spent = [Double](repeating: 0, count: 4)
        var shareSpent = [[Double]](repeating: [Double](repeating: 0, count: workers.count), count: 4)
        var other = 0.0
        func share(_ n: Int, _ workers: Int) -> Range<Int> { ShardPlan.share(of: n, rank: 0, ranks: workers) }
        data.withImagePixels { images in
            for sample in 0..<samples {
                let t0 = now()
                w.loadImage(images, sample: sample)
                let t1 = now()
                // Each split stage's first share, timed before the whole stage (which overwrites it).
                for (k, n) in workers.enumerated() {
                    let t = now()
                    let r = share(rows, n)
                    w.convForward(p, rows: (r.lowerBound * k2)..<(r.upperBound * k2))
                    for ch in 0..<c { w.subsampleForward(p, pairs: (ch * rows + r.lowerBound)..<(ch * rows + r.upperBound)) }
                    shareSpent[0][k] += now() - t
                }
                let t1s = now()
                w.convForward(p, rows: 0..<Network.convSide)
                w.subsampleForward(p, pairs: 0..<(c * rows))
                let t2 = now()
                w.denseForward(p, outputs: 0..<Network.classes)
                w.fActivate(recipe: recipe)
                _ = w.predictedClass
                _ = w.outputError(label: Int(data.labels[sample]), recipe: recipe)
                w.denseBackward(outputs: 0..<Network.classes)
                w.denseBackwardInput(p, chunks: 0..<(Network.poolOutputs / 8))
                for (k, n) in workers.enumerated() {
                    let t = now()
                    let r = share(rows, n)
                    w.subsampleBackward(kernelRows: share(k2, n), includeBias: true)
                    for ch in 0..<c { w.subsampleBackwardInput(p, pairs: (ch * rows + r.lowerBound)..<(ch * rows + r.upperBound)) }
                    shareSpent[2][k] += now() - t
                }
                let t3 = now()
                w.subsampleBackward(kernelRows: 0..<k2, includeBias: true)
                w.subsampleBackwardInput(p, pairs: 0..<(c * rows))
                let t4 = now()
                for (k, n) in workers.enumerated() {
                    let t = now()
                    w.convBackward(items: share(items, n))
                    w.finishConvBackward(items: share(items, n))
                    shareSpent[3][k] += now() - t
                }
                let t4s = now()
                w.convBackward(items: 0..<items)
                w.finishConvBackward(items: 0..<items)
                let t5 = now()
                other += t1 - t0
                spent[0] += t2 - t1s
                spent[1] += t3 - t2
                spent[2] += t4 - t3
                spent[3] += t5 - t4s
            }
        }
        let map = Network.convMapSize
        func shares(_ stage: Int) -> [PassCost.Share] { workers.enumerated().map { .init(workers: $1, seconds: shareSpent[stage][$0]) } }
        var stages: [PassCost] =
            [
                PassCost(
                    name: "c1+s1 forward", items: rows, seconds: spent[0], splitByThreads: true, splitByRanks: true,
                    exchangedFloats: c * map + Network.poolOutputs),
                PassCost(
                    name: "f forward+backward", items: 1, seconds: spent[1], splitByThreads: false, splitByRanks: false, exchangedFloats: 0),
                PassCost(
                    name: "s1 backward", items: rows, seconds: spent[2], splitByThreads: true, splitByRanks: true,
                    exchangedFloats: c * map + k2 * k2 + 1),
                PassCost(
                    name: "c1 backward", items: items, seconds: spent[3], splitByThreads: true, splitByRanks: true,
                    exchangedFloats: items * Network.convKernel + c)
            ]
        for stage in [0, 2, 3] { stages[stage].shares = shares(stage) }
        return (stages, other)
    }
}
