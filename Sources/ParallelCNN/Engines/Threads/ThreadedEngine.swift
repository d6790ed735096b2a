/// How the threaded engine divides the work.
public enum ThreadStrategy: String, CaseIterable, Sendable {
    /// The paper's OpenMP strategy: per sample, each layer's output elements are split across
    /// the threads. Each element is still summed by one thread in the sequential engine's order,
    /// so results are bit-identical to `sequential` for any thread count.
    case layer
    /// Data parallelism: the batch's samples are split across threads, each with its own
    /// buffers; per-sample gradients are summed in sample order, independent of the thread count,
    /// so results equal `sequential` with the same batch.
    case data
}

/// The multi-core engine: the sequential engine's kernels (`SampleWorkspace`) on a persistent
/// `WorkerPool`, split by layer elements or by samples.
public final class ThreadedEngine: Engine {
    public let threads: Int
    public let strategy: ThreadStrategy
    public var description: String { "threads(T=\(threads), \(strategy.rawValue))" }

    private let state: ParameterState
    private let pool: WorkerPool
    /// One workspace per thread (data strategy); the layer strategy shares the first.
    private let workspaces: [SampleWorkspace]
    /// Per-sample gradients of a batch (data strategy), `ParameterState.count` floats each.
    private var slots: UnsafeMutablePointer<Float>
    private var slotCapacity = 0
    private let batchGradient = UnsafeMutablePointer<Float>.allocate(capacity: ParameterState.count)
    /// Each thread's statistics of the current step.
    private let workerStatistics: UnsafeMutablePointer<StepStatistics>

    public init(parameters: Parameters, threads: Int, strategy: ThreadStrategy) {
        precondition(threads >= 1)
        self.threads = threads
        self.strategy = strategy
        state = ParameterState(parameters)
        pool = WorkerPool(size: threads)
        workspaces = (0..<(strategy == .data ? threads : 1)).map { _ in SampleWorkspace() }
        slots = .allocate(capacity: 1)
        batchGradient.initialize(repeating: 0, count: ParameterState.count)
        workerStatistics = .allocate(capacity: threads)
        workerStatistics.initialize(repeating: StepStatistics(), count: threads)
    }

    deinit {
        slots.deallocate()
        batchGradient.deallocate()
        workerStatistics.deallocate()
    }

    public func load(parameters: Parameters, velocity: Parameters?) { state.load(parameters: parameters, velocity: velocity) }
    public func currentParameters() -> Parameters { state.parameters }
    public func currentVelocity() -> Parameters? { state.currentVelocity }

    public func train(on data: Dataset, indices: UnsafeBufferPointer<Int32>, rule: UpdateRule) -> StepStatistics {
        data.images.withUnsafeBufferPointer { images in
            data.labels.withUnsafeBufferPointer { labels in
                switch strategy {
                case .data: trainDataParallel(images.baseAddress!, labels, indices, rule)
                case .layer: trainLayerParallel(images.baseAddress!, labels, indices, rule)
                }
            }
        }
    }

    // MARK: Data strategy

    private func trainDataParallel(_ images: UnsafePointer<Float>, _ labels: UnsafeBufferPointer<UInt8>,
                                   _ indices: UnsafeBufferPointer<Int32>, _ rule: UpdateRule) -> StepStatistics {
        let batch = indices.count
        let stride = ParameterState.count
        if slotCapacity < batch {
            slots.deallocate()
            slots = .allocate(capacity: batch * stride)
            slots.initialize(repeating: 0, count: batch * stride)
            slotCapacity = batch
        }
        let p = UnsafePointer(state.values), slots = self.slots, gradient = batchGradient
        let workspaces = self.workspaces, pool = self.pool
        let stats = workerStatistics
        do {
            pool.run { member in
                let w = workspaces[member]
                let ownGradient = w.grad
                defer { w.grad = ownGradient }
                var mine = StepStatistics()
                for k in pool.share(of: batch, member: member) {
                    w.grad = slots + k * stride
                    let sample = Int(indices[k]), label = Int(labels[sample])
                    w.loadImage(images, sample: sample)
                    w.forward(p, recipe: rule.recipe)
                    if w.predictedClass != label { mine.misclassified += 1 }
                    mine.lossSum += w.outputError(label: label, recipe: rule.recipe)
                    mine.samples += 1
                    w.backward(p)
                }
                stats[member] = mine
            }
            // Sum the slots in sample order; each thread takes a range of parameters and streams
            // through the slots one after another.
            pool.run { member in
                let floats = pool.share(of: stride / 8, member: member)
                let lower = floats.lowerBound * 8, upper = floats.upperBound * 8
                (gradient + lower).update(from: slots + lower, count: upper - lower)
                for k in 1..<max(1, batch) {
                    let slot = UnsafePointer(slots + k * stride)
                    for i in Swift.stride(from: lower, to: upper, by: 8) { gradient.store(gradient.vec(i) + slot.vec(i), at: i) }
                }
            }
        }
        state.apply(gradientSum: gradient, batchSize: batch, rule: rule)
        var total = StepStatistics()
        for member in 0..<threads { total += stats[member] }
        return total
    }

    // MARK: Layer strategy

    private func trainLayerParallel(_ images: UnsafePointer<Float>, _ labels: UnsafeBufferPointer<UInt8>,
                                    _ indices: UnsafeBufferPointer<Int32>, _ rule: UpdateRule) -> StepStatistics {
        var stats = StepStatistics()
        let p = UnsafePointer(state.values), w = workspaces[0]
        for (k, index) in indices.enumerated() {
            let sample = Int(index), label = Int(labels[sample])
            w.loadImage(images, sample: sample)
            forwardLayerParallel(p, recipe: rule.recipe)
            if w.predictedClass != label { stats.misclassified += 1 }
            stats.lossSum += w.outputError(label: label, recipe: rule.recipe)
            stats.samples += 1
            backwardLayerParallel(p)
            if indices.count > 1 { ParameterState.accumulate(w.grad, into: batchGradient, first: k == 0) }
        }
        state.apply(gradientSum: indices.count > 1 ? batchGradient : w.grad, batchSize: indices.count, rule: rule)
        return stats
    }

    /// c1 and s1 split by s1 output rows (each needs 4 c1 rows, so one region covers both);
    /// the tiny f layer on the calling thread.
    private func forwardLayerParallel(_ p: UnsafePointer<Float>, recipe: Recipe) {
        let w = workspaces[0], pool = self.pool
        let poolRows = Network.poolSide, k2 = Network.poolKernel
        pool.run { member in
            let rows = pool.share(of: poolRows, member: member)
            w.c1Forward(p, rows: (rows.lowerBound * k2)..<(rows.upperBound * k2))
            for c in 0..<Network.channels {
                w.s1Forward(p, pairs: (c * poolRows + rows.lowerBound)..<(c * poolRows + rows.upperBound))
            }
        }
        w.fForward(p, outputs: 0..<Network.classes)
        w.fActivate(recipe: recipe)
    }

    /// f and the s1 error on the calling thread, then two regions: s1 weight gradient (by kernel
    /// row) with the c1 error (by s1 row), and the c1 weight gradient (by map and kernel row).
    private func backwardLayerParallel(_ p: UnsafePointer<Float>) {
        let w = workspaces[0], pool = self.pool
        w.fWeightGradient(outputs: 0..<Network.classes)
        w.s1ErrorBackward(p, chunks: 0..<(Network.poolOutputs / 8))
        let poolRows = Network.poolSide
        pool.run { member in
            w.s1WeightGradient(kernelRows: pool.share(of: Network.poolKernel, member: member), includeBias: member == 0)
            let rows = pool.share(of: poolRows, member: member)
            for c in 0..<Network.channels {
                w.c1ErrorBackward(p, pairs: (c * poolRows + rows.lowerBound)..<(c * poolRows + rows.upperBound))
            }
        }
        let items = Network.channels * Network.convKernel
        pool.run { member in w.c1WeightGradient(items: pool.share(of: items, member: member)) }
        w.finishC1WeightGradient(items: 0..<items)
    }

    public func predict(_ data: Dataset, range: Range<Int>, recipe: Recipe, into predictions: UnsafeMutableBufferPointer<UInt8>) {
        let p = UnsafePointer(state.values), workspaces = self.workspaces, pool = self.pool
        data.images.withUnsafeBufferPointer { images in
            let base = images.baseAddress!
            if strategy == .data {
                pool.run { member in
                    let w = workspaces[member]
                    for k in pool.share(of: range.count, member: member) {
                        w.loadImage(base, sample: range.lowerBound + k)
                        w.forward(p, recipe: recipe)
                        predictions[k] = UInt8(w.predictedClass)
                    }
                }
            } else {
                for (k, sample) in range.enumerated() {
                    workspaces[0].loadImage(base, sample: sample)
                    forwardLayerParallel(p, recipe: recipe)
                    predictions[k] = UInt8(workspaces[0].predictedClass)
                }
            }
        }
    }
}
