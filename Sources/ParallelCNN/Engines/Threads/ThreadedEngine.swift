/// The multi-core engine: the sequential engine's kernels (`SampleWorkspace`) on a persistent
/// `WorkerPool`, split by layer elements or by samples.
public final class ThreadedEngine: ParameterStateEngine {
    public let threads: Int
    public let strategy: EngineStrategy
    public var description: String { "threads(T=\(threads), \(strategy.rawValue))" }

    /// Parallel regions (fork-joins) the layer strategy runs per training sample.
    public static let layerRegionsPerSample = 3

    public let state: ParameterState
    public let stepper = EpochStepper()
    public var architecture: Architecture { state.architecture }
    private let team: DataParallelTeam
    private var pool: WorkerPool { team.pool }
    private let batchGradient: BatchGradient

    public init(parameters: Parameters, threads: Int, strategy: EngineStrategy, architecture: Architecture = .paper) {
        precondition(threads >= 1)
        precondition(strategy != .fused, "the CPU engines split by layer or by data")
        self.threads = threads
        self.strategy = strategy
        state = ParameterState(parameters, architecture: architecture)
        // The layer strategy's threads share one sample's workspace.
        team = DataParallelTeam(threads: threads, workspaces: strategy == .data ? threads : 1, architecture: architecture)
        batchGradient = BatchGradient(count: state.count, blockSize: BatchGradient.blockSize(for: team.workspaces[0]))
        if let network = team.workspaces[0] as? CPUNetwork {
            passChoices = Array(repeating: PassSplitChoice(), count: network.forwardPasses.count + network.backwardPasses.count)
        }
    }

    public func trainStep(_ indices: UnsafeBufferPointer<Int32>, of data: Dataset, rule: UpdateRule) -> StepStatistics {
        data.withImagePixels { images in
            data.labels.withUnsafeBufferPointer { labels in
                strategy == .layer
                    ? trainLayerParallel(images, labels, indices, rule)
                    : trainDataParallel(images, labels, indices, rule)
            }
        }
    }

    // MARK: Data strategy

    private func trainDataParallel(
        _ images: ImagePixels, _ labels: UnsafeBufferPointer<UInt8>,
        _ indices: UnsafeBufferPointer<Int32>, _ rule: UpdateRule
    ) -> StepStatistics {
        guard indices.count > 0 else { return StepStatistics() }
        return team.train(images: images, labels: labels, indices: indices, state: state, rule: rule)
    }

    // MARK: Layer strategy

    private func trainLayerParallel(
        _ images: ImagePixels, _ labels: UnsafeBufferPointer<UInt8>,
        _ indices: UnsafeBufferPointer<Int32>, _ rule: UpdateRule
    ) -> StepStatistics {
        let batch = indices.count
        guard batch > 0 else { return StepStatistics() }
        if let network = team.workspaces[0] as? CPUNetwork {
            return trainLayerParallel(network, images, labels, indices, rule)
        }
        let p = UnsafePointer(state.values), w = team.workspaces[0] as! SampleWorkspace
        let (sum, stats) = batchGradient.sum(batch: batch, on: w) { positions in
            let sample = Int(indices[positions.lowerBound]), label = Int(labels[sample])
            w.loadImage(images, sample: sample)
            forwardLayerParallel(p, recipe: rule.recipe)
            let wrong = w.predictedClass != label
            let stats = StepStatistics(
                lossSum: w.outputError(label: label, recipe: rule.recipe),
                misclassified: wrong ? 1 : 0, samples: 1)
            backwardLayerParallel(p)
            return stats
        }
        state.apply(gradientSum: sum, batchSize: batch, rule: rule, on: pool)
        return stats
    }

    /// Any network but the paper's: the passes of the generic layers split across the threads
    /// where that pays (`PassSplitChoice`).
    private func trainLayerParallel(
        _ network: CPUNetwork, _ images: ImagePixels, _ labels: UnsafeBufferPointer<UInt8>,
        _ indices: UnsafeBufferPointer<Int32>, _ rule: UpdateRule
    ) -> StepStatistics {
        let p = UnsafePointer(state.values)
        let (sum, stats) = batchGradient.sum(batch: indices.count, on: network) { positions in
            let samples = UnsafeBufferPointer(rebasing: indices[positions])
            return network.trainBlock(images, samples: samples, label: { Int(labels[Int(samples[$0])]) }, recipe: rule.recipe) {
                passes, first in run(passes, firstIndex: first, samples: samples.count, p)
            }
        }
        state.apply(gradientSum: sum, batchSize: indices.count, rule: rule, on: pool)
        return stats
    }

    /// Runs each pass of a block of `samples` samples, `firstIndex` the first one's index among
    /// the block's passes: split across the threads (one fork-join) where its `PassSplitChoice`
    /// says so, else on the calling thread, as is a pass of one item.
    private func run(_ passes: [LayerPass], firstIndex: Int, samples: Int, _ p: UnsafePointer<Float>) {
        let pool = self.pool
        for (k, pass) in passes.enumerated() {
            guard pass.items >= 2, threads > 1 else {
                pass.run(p, 0..<pass.items)
                continue
            }
            let index = firstIndex + k
            let choice = passChoices[index], began = choice.decided ? 0 : Trainer.now()
            if choice.splits {
                pool.run { member in
                    let items = pool.share(of: pass.items, member: member)
                    if !items.isEmpty { pass.run(p, items) }
                }
            } else {
                pass.run(p, 0..<pass.items)
            }
            passChoices[index].record(seconds: choice.decided ? 0 : Trainer.now() - began, samples: samples)
        }
    }

    /// Per pass of the generic network (by its index among a block's passes), whether the layer
    /// strategy splits it.
    private var passChoices: [PassSplitChoice] = []

    /// c1 and s1 split by s1 output rows (each needs 4 c1 rows, so one region covers both);
    /// the tiny f layer on the calling thread.
    private func forwardLayerParallel(_ p: UnsafePointer<Float>, recipe: Recipe) {
        let w = team.workspaces[0] as! SampleWorkspace, pool = self.pool
        let poolRows = Network.poolSide, k2 = Network.poolKernel
        pool.run { member in
            let rows = pool.share(of: poolRows, member: member)
            w.convForward(p, rows: (rows.lowerBound * k2)..<(rows.upperBound * k2))
            for c in 0..<Network.channels {
                w.subsampleForward(p, pairs: (c * poolRows + rows.lowerBound)..<(c * poolRows + rows.upperBound))
            }
        }
        w.denseForward(p, outputs: 0..<Network.classes)
        w.fActivate(recipe: recipe)
    }

    /// f and the s1 error on the calling thread, then two regions: s1 weight gradient (by kernel
    /// row) with the c1 error (by s1 row), and the c1 weight gradient (by map and kernel row).
    private func backwardLayerParallel(_ p: UnsafePointer<Float>) {
        let w = team.workspaces[0] as! SampleWorkspace, pool = self.pool
        w.denseBackward(outputs: 0..<Network.classes)
        w.denseBackwardInput(p, chunks: 0..<(Network.poolOutputs / 8))
        let poolRows = Network.poolSide
        pool.run { member in
            w.subsampleBackward(kernelRows: pool.share(of: Network.poolKernel, member: member), includeBias: member == 0)
            let rows = pool.share(of: poolRows, member: member)
            for c in 0..<Network.channels {
                w.subsampleBackwardInput(p, pairs: (c * poolRows + rows.lowerBound)..<(c * poolRows + rows.upperBound))
            }
        }
        let items = Network.channels * Network.convKernel
        pool.run { member in w.convBackward(items: pool.share(of: items, member: member)) }
        w.finishConvBackward(items: 0..<items)
    }

    public func predict(_ data: Dataset, range: Range<Int>, recipe: Recipe, into predictions: UnsafeMutableBufferPointer<UInt8>) {
        let p = UnsafePointer(state.values)
        data.withImagePixels { images in
            let base = images
            if strategy == .data {
                team.predict(images: base, range: range, parameters: p, recipe: recipe, into: predictions)
            } else if let network = team.workspaces[0] as? CPUNetwork {
                for (k, sample) in range.enumerated() {
                    network.loadImage(base, sample: sample)
                    network.begin(recipe: recipe) { _ in 0 }
                    run(network.forwardPasses, firstIndex: 0, samples: 1, p)
                    predictions[k] = UInt8(network.predictedClass())
                }
            } else {
                let w = team.workspaces[0] as! SampleWorkspace
                for (k, sample) in range.enumerated() {
                    w.loadImage(base, sample: sample)
                    forwardLayerParallel(p, recipe: recipe)
                    predictions[k] = UInt8(w.predictedClass)
                }
            }
        }
    }
}

/// Whether the `threads` layer strategy splits one pass of a generic network across its
/// threads. A small pass (an activation of a few hundred values, a dense layer of 10 outputs)
/// takes less than the fork-join it would need, so the pass's first `2·trials` runs alternate
/// between the calling thread and a split, each timed per sample (alternating, so that both
/// meet the same caches and the same state of the other threads), and from then on it runs
/// the faster way, until `decisionRuns` runs later the two ways are timed again: a machine's
/// load changes, and one noisy moment must not fix a slow choice for good (`pcnn bench net`
/// measured LeNet-5's layer strategy at 78 µs per sample in one run and 168 in the next).
/// Either way computes every element with the same operations, so the choice changes the
/// speed only, never a result.
package struct PassSplitChoice {
    package static let trials = 6
    package static let decisionRuns = 30_000
    private var serialSeconds = Double.infinity, splitSeconds = Double.infinity
    private var runs = 0, decidedRuns = 0

    package init() {}

    /// Whether both ways have been timed.
    package var decided: Bool { runs >= 2 * Self.trials }

    /// Whether the next run splits.
    package var splits: Bool { decided ? splitSeconds < serialSeconds : runs % 2 == 1 }

    /// Records a timed run (the way `splits` chose) of a block of `samples` samples.
    /// After the decision only the runs are counted (`seconds` is not read).
    package mutating func record(seconds: Double, samples: Int) {
        guard !decided else {
            decidedRuns += 1
            if decidedRuns >= Self.decisionRuns { self = PassSplitChoice() }
            return
        }
        let perSample = seconds / Double(max(1, samples))
        if runs % 2 == 0 {
            serialSeconds = min(serialSeconds, perSample)
        } else {
            splitSeconds = min(splitSeconds, perSample)
        }
        runs += 1
    }
}
