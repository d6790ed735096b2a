import Synchronization
/// Parameters, optimizer buffers and update rule of a CPU engine, in padded flat buffers.
///
/// `apply` turns a batch's summed ascent direction into the update documented on `UpdateRule`:
/// `ḡ = scale ⊙ Σg / B`, then momentum SGD (`v ← μ v + ḡ`, `θ ← θ + lr · v`; no velocity when
/// μ = 0) or Adam (velocity `m` and second moment `s`).
public final class ParameterState {
    /// The parameters, rounded up to whole 8-float vectors (2344 for the paper's network).
    let count: Int
    /// The part of `count` taken 16 lanes at a time (the rest, 8 floats at most, 8 at a time).
    let wideCount: Int
    /// The unpadded parameter count.
    let parameterCount: Int
    /// The network whose parameters these are (it decides the recipe's per-tensor factors).
    let architecture: Architecture

    package let values: UnsafeMutablePointer<Float>
    let velocity: UnsafeMutablePointer<Float>
    private(set) var hasVelocity = false
    let secondMoment: UnsafeMutablePointer<Float>
    private(set) var hasSecondMoment = false
    private let scale: UnsafeMutablePointer<Float>
    /// `scale`'s one value where every parameter has the same (the modern recipe's): the update
    /// then multiplies by a constant instead of streaming `scale`, one array fewer of the seven
    /// or eight it passes over per step.
    private var uniformScale: Float?
    /// The recipe and configured batch size `scale` was built for.
    private var scaleRecipe: Recipe?
    private var scaleBatchSize = 0

    package init(_ parameters: Parameters, architecture: Architecture = .paper) {
        precondition(
            parameters.values.count == architecture.parameterCount,
            "\(architecture.parameterCount) parameters expected, got \(parameters.values.count)")
        self.architecture = architecture
        parameterCount = architecture.parameterCount
        count = Self.paddedCount(parameterCount)
        wideCount = count / 16 * 16
        // Allocated to whole 16-float vectors: gradients of a `CPUNetwork` are padded so.
        let capacity = (count + 15) / 16 * 16 + CPULayers.readSlack
        values = .allocate(capacity: capacity)
        velocity = .allocate(capacity: capacity)
        secondMoment = .allocate(capacity: capacity)
        scale = .allocate(capacity: capacity)
        for buffer in [values, velocity, secondMoment, scale] { buffer.initialize(repeating: 0, count: capacity) }
        load(parameters: parameters, optimizerState: OptimizerState())
    }

    deinit {
        for buffer in [values, velocity, secondMoment, scale] { buffer.deallocate() }
    }

    /// `n` rounded up to whole 8-float vectors.
    package static func paddedCount(_ n: Int) -> Int { (n + 7) / 8 * 8 }

    func load(parameters: Parameters, optimizerState: OptimizerState) {
        func copy(_ source: Parameters?, into buffer: UnsafeMutablePointer<Float>) {
            if let source {
                precondition(source.values.count == parameterCount, "\(parameterCount) values expected, got \(source.values.count)")
                source.values.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: parameterCount) }
            } else {
                buffer.update(repeating: 0, count: count)
            }
        }
        copy(parameters, into: values)
        copy(optimizerState.velocity, into: velocity)
        copy(optimizerState.secondMoment, into: secondMoment)
        hasVelocity = optimizerState.velocity != nil
        hasSecondMoment = optimizerState.secondMoment != nil
    }

    package var parameters: Parameters { parameters(in: values) }

    var optimizerState: OptimizerState {
        OptimizerState(
            velocity: hasVelocity ? parameters(in: velocity) : nil,
            secondMoment: hasSecondMoment ? parameters(in: secondMoment) : nil)
    }

    private func parameters(in buffer: UnsafeMutablePointer<Float>) -> Parameters {
        Parameters(values: Array(UnsafeBufferPointer(start: buffer, count: parameterCount)))
    }

    /// `sum = grad` for a block's first sample, `sum += grad` after it, over `count` floats
    /// (a multiple of 8).
    static func accumulate(_ grad: UnsafePointer<Float>, into sum: UnsafeMutablePointer<Float>, count: Int, first: Bool) {
        let wideCount = count / 16 * 16
        if first {
            sum.update(from: grad, count: count)
        } else {
            for i in stride(from: 0, to: wideCount, by: 16) { sum.store(sum.vec16(i) + grad.vec16(i), at: i) }
            for i in stride(from: wideCount, to: count, by: 8) { sum.store(sum.vec(i) + grad.vec(i), at: i) }
        }
    }

    /// Applies the update for a batch of `batchSize` samples whose summed ascent is `gradientSum`.
    ///
    /// With a `pool` and at least `slicedUpdateFloats` parameters, its threads update a slice of
    /// whole vectors each: every parameter goes through the same vector code, so the result is
    /// the same bit for bit.
    package func apply(gradientSum: UnsafePointer<Float>, batchSize: Int, rule: UpdateRule, on pool: WorkerPool? = nil) {
        apply(VectorBuffer(values: gradientSum), batchSize: batchSize, rule: rule, on: pool)
    }

    /// `apply` for a batch whose ascent is still `blocks` block sums, `stride` floats apart
    /// (`BatchGradient`): each slice adds its part of the sums in block order, the additions of
    /// `BatchGradient.sum(batch:)`, and updates it at once, so the batch's sum is never written
    /// and read back, and one fork-join does both.
    func apply(blockSums: UnsafePointer<Float>, blocks: Int, stride: Int, batchSize: Int, rule: UpdateRule, on pool: WorkerPool?) {
        apply(BlockGradients(first: blockSums, blocks: blocks, stride: stride), batchSize: batchSize, rule: rule, on: pool)
    }

    private func apply<G: VectorSource>(_ gradient: G, batchSize: Int, rule: UpdateRule, on pool: WorkerPool?) {
        if scaleRecipe != rule.recipe || scaleBatchSize != rule.batchSize {
            let vector = architecture.scaleVector(recipe: rule.recipe, batchSize: rule.batchSize)
            vector.withUnsafeBufferPointer { scale.update(from: $0.baseAddress!, count: parameterCount) }
            uniformScale = vector.allSatisfy { $0 == vector[0] } ? vector[0] : nil
            scaleRecipe = rule.recipe
            scaleBatchSize = rule.batchSize
        }
        // Adam's bias corrections once per step (two `pow`s), for both lane widths.
        let adamFactors = rule.optimizer == .adam ? rule.adamFactors : (stepSize: 0, secondMomentFactor: 0)
        if let pool, pool.size > 1, count >= Self.slicedUpdateFloats {
            let vectors = wideCount / 16
            pool.run { member in
                let share = pool.share(of: vectors, member: member)
                self.update(
                    gradient, batchSize: batchSize, rule: rule, adamFactors: adamFactors, from: share.lowerBound * 16,
                    to: share.upperBound * 16, Vec16.self)
            }
        } else {
            update(gradient, batchSize: batchSize, rule: rule, adamFactors: adamFactors, from: 0, to: wideCount, Vec16.self)
        }
        update(gradient, batchSize: batchSize, rule: rule, adamFactors: adamFactors, from: wideCount, to: count, Vec.self)
        if rule.usesVelocity { hasVelocity = true }
        if rule.usesSecondMoment { hasSecondMoment = true }
    }

    /// Parameters from which `apply` splits its update across a pool's threads (LeNet-5's Adam
    /// step is about 30 µs on one core; the paper's 2,343 parameters take well under a fork-join).
    package static let slicedUpdateFloats = 16_384

    /// The update of parameters `start..<end`, `V.scalarCount` at a time: with a uniform scale,
    /// the whole vectors of parameters by the constant, the padded rest by `scale` (whose padding
    /// is 0).
    @inline(__always) private func update<V: FloatVector, G: VectorSource>(
        _ gradientSum: G, batchSize: Int, rule: UpdateRule,
        adamFactors: (stepSize: Float, secondMomentFactor: Float),
        from start: Int, to end: Int, _: V.Type
    ) {
        var split = start
        if let uniformScale {
            split = min(end, max(start, parameterCount / V.scalarCount * V.scalarCount))
            update(
                gradientSum, scale: UniformValue(value: uniformScale), batchSize: batchSize, rule: rule, adamFactors: adamFactors,
                from: start, to: split, V.self)
        }
        update(
            gradientSum, scale: VectorBuffer(values: UnsafePointer(scale)), batchSize: batchSize, rule: rule,
            adamFactors: adamFactors, from: split, to: end, V.self)
    }

    @inline(__always) private func update<V: FloatVector, G: VectorSource, S: VectorSource>(
        _ gradientSum: G, scale: S, batchSize: Int, rule: UpdateRule,
        adamFactors: (stepSize: Float, secondMomentFactor: Float),
        from start: Int, to end: Int, _: V.Type
    ) {
        guard start < end else { return }
        let lr = V(repeating: rule.learningRate)
        let inverseBatch = V(repeating: 1 / Float(batchSize))
        let tiny = UpdateRule.bufferFlushThreshold
        if rule.optimizer == .adam {
            let beta1 = V(repeating: rule.momentum), oneMinusBeta1 = V(repeating: 1 - rule.momentum)
            let beta2 = V(repeating: UpdateRule.adamBeta2), oneMinusBeta2 = V(repeating: 1 - UpdateRule.adamBeta2)
            let epsilon = V(repeating: UpdateRule.adamEpsilon)
            let a = V(repeating: adamFactors.stepSize), c = V(repeating: adamFactors.secondMomentFactor)
            for i in stride(from: start, to: end, by: V.scalarCount) {
                let g = scale.load(i, V.self) * gradientSum.load(i, V.self) * inverseBatch
                let m = V.flushed(beta1 * UnsafePointer(velocity).load(i, as: V.self) + oneMinusBeta1 * g, below: tiny)
                let s = V.flushed(beta2 * UnsafePointer(secondMoment).load(i, as: V.self) + oneMinusBeta2 * g * g, below: tiny)
                velocity.store(m, at: i)
                secondMoment.store(s, at: i)
                values.store(UnsafePointer(values).load(i, as: V.self) + a * m / (V.squareRoots(s) * c + epsilon), at: i)
            }
        } else if rule.usesVelocity {
            let mu = V(repeating: rule.momentum)
            for i in stride(from: start, to: end, by: V.scalarCount) {
                let g = scale.load(i, V.self) * gradientSum.load(i, V.self) * inverseBatch
                let v = V.flushed(mu * UnsafePointer(velocity).load(i, as: V.self) + g, below: tiny)
                velocity.store(v, at: i)
                values.store(UnsafePointer(values).load(i, as: V.self) + lr * v, at: i)
            }
        } else {
            for i in stride(from: start, to: end, by: V.scalarCount) {
                let g = scale.load(i, V.self) * gradientSum.load(i, V.self) * inverseBatch
                values.store(UnsafePointer(values).load(i, as: V.self) + lr * g, at: i)
            }
        }
    }
}

/// Where `ParameterState.update` reads a value per parameter, a vector at a time: the batch's
/// summed ascent, and the recipe's per-parameter factor.
private protocol VectorSource {
    func load<V: FloatVector>(_ i: Int, _: V.Type) -> V
}

/// One buffer of values.
private struct VectorBuffer: VectorSource {
    let values: UnsafePointer<Float>
    @inline(__always) func load<V: FloatVector>(_ i: Int, _: V.Type) -> V { values.load(i, as: V.self) }
}

/// The same value for every parameter.
private struct UniformValue: VectorSource {
    let value: Float
    @inline(__always) func load<V: FloatVector>(_ i: Int, _: V.Type) -> V { V(repeating: value) }
}

/// The block sums, added here in block order.
private struct BlockGradients: VectorSource {
    let first: UnsafePointer<Float>
    let blocks: Int
    let stride: Int
    @inline(__always) func load<V: FloatVector>(_ i: Int, _: V.Type) -> V {
        var sum = first.load(i, as: V.self)
        for block in 1..<blocks { sum = sum + (first + block * stride).load(i, as: V.self) }
        return sum
    }
}

/// The order in which every CPU engine sums a batch's per-sample gradients (and statistics), so
/// that they agree bit for bit: the batch in blocks of `blockSize` samples, each block's sum
/// taken by its trainer, then the block sums in block order.
///
/// A generic `CPUNetwork` trains a whole block at once and sums its gradients itself; the
/// paper's `SampleWorkspace` trains one sample at a time, summed here in order within blocks of
/// 4. Blocks let a data-parallel engine hand out whole blocks to whichever worker is free, and
/// only one sum per block is combined at the end.
final class BatchGradient {
    /// Samples per block for a trainer: its own block, or 4 single samples.
    static func blockSize(for trainer: any SampleTrainer) -> Int {
        trainer.blockCapacity > 1 ? trainer.blockCapacity : 4
    }

    let blockSize: Int
    /// One padded gradient per block.
    private(set) var blockSums: UnsafeMutablePointer<Float>
    private var blockStatistics: UnsafeMutablePointer<StepStatistics>
    private var blockCapacity = 0
    /// Floats per gradient (`ParameterState.count`).
    let count: Int
    private let total: UnsafeMutablePointer<Float>
    /// Per block, the number of the last round (`beginRound`) whose sum it holds complete.
    private var blockReady: [BlockReady] = []
    private var round = 0

    init(count: Int, blockSize: Int) {
        precondition(blockSize >= 1)
        self.count = count
        self.blockSize = blockSize
        blockSums = .allocate(capacity: 0)
        blockStatistics = .allocate(capacity: 0)
        total = .allocate(capacity: count)
        total.initialize(repeating: 0, count: count)
    }

    deinit {
        blockSums.deallocate()
        blockStatistics.deallocate()
        total.deallocate()
    }

    func blockCount(batch: Int) -> Int { (batch + blockSize - 1) / blockSize }

    func samples(ofBlock block: Int, batch: Int) -> Range<Int> {
        (block * blockSize)..<min(batch, (block + 1) * blockSize)
    }

    /// Makes room for the blocks of a batch of `batch` samples.
    func reserve(batch: Int) {
        let blocks = blockCount(batch: batch)
        guard blocks > blockCapacity else { return }
        blockSums.deallocate()
        blockSums = .allocate(capacity: blocks * count)
        blockSums.initialize(repeating: 0, count: blocks * count)
        blockStatistics.deallocate()
        blockStatistics = .allocate(capacity: blocks)
        blockStatistics.initialize(repeating: StepStatistics(), count: blocks)
        blockReady += (blockCapacity..<blocks).map { _ in BlockReady() }
        blockCapacity = blocks
    }

    func blockSum(_ block: Int) -> UnsafeMutablePointer<Float> { blockSums + block * count }

    /// The statistics of a batch whose block sums are complete, without folding the sums (see
    /// `ParameterState.apply(blockSums:)`).
    func statistics(batch: Int) -> StepStatistics {
        var statistics = blockStatistics[0]
        for block in 1..<max(1, blockCount(batch: batch)) { statistics += blockStatistics[block] }
        return statistics
    }

    /// Trains block `block` of a batch of `batch` on `trainer` into the block's sums:
    /// `train(positions)` trains the batch positions `positions` (a whole block, or one sample for
    /// a trainer of single samples) and leaves their gradient sum in `trainer.grad`.
    func train(block: Int, batch: Int, on trainer: any SampleTrainer, _ train: (Range<Int>) -> StepStatistics) {
        let positions = samples(ofBlock: block, batch: batch), grad = UnsafePointer(trainer.grad)
        if trainer.blockCapacity == 1 {
            for k in positions {
                let statistics = train(k..<(k + 1))
                ParameterState.accumulate(grad, into: blockSum(block), count: count, first: k == positions.lowerBound)
                blockStatistics[block] = k == positions.lowerBound ? statistics : blockStatistics[block] + statistics
            }
        } else {
            precondition(positions.count <= trainer.blockCapacity)
            blockStatistics[block] = train(positions)
            blockSum(block).update(from: grad, count: count)
        }
    }

    /// Trains a batch block by block on this thread (see `train(block:)`). A batch of one block
    /// is used where its trainer left it, without a copy; the blocks of a trainer of blocks are
    /// added to the total as they come, in block order (the same additions as `sum(batch:)`,
    /// without storing each block's sum first).
    func sum(batch: Int, on trainer: any SampleTrainer, _ train: (Range<Int>) -> StepStatistics)
        -> (gradient: UnsafePointer<Float>, statistics: StepStatistics)
    {
        if batch <= trainer.blockCapacity { return (UnsafePointer(trainer.grad), train(0..<batch)) }
        reserve(batch: batch)
        guard trainer.blockCapacity > 1 else {
            for block in 0..<blockCount(batch: batch) { self.train(block: block, batch: batch, on: trainer, train) }
            return sum(batch: batch)
        }
        for block in 0..<blockCount(batch: batch) {
            blockStatistics[block] = train(samples(ofBlock: block, batch: batch))
            ParameterState.accumulate(trainer.grad, into: total, count: count, first: block == 0)
        }
        return foldedSum(batch: batch)
    }

    // MARK: Blocks summed by several threads

    /// Starts a batch whose blocks other threads fill (`add`, then `markReady`) while one thread
    /// folds them (`foldInOrder`).
    func beginRound(batch: Int) {
        reserve(batch: batch)
        round += 1
    }

    /// Publishes block `block`'s sum and statistics, complete, to the folding thread.
    func markReady(block: Int) {
        blockReady[block].round.store(round, ordering: .releasing)
    }

    /// Adds the block sums into the batch's total in block order, as `sum(batch:)` does, taking each
    /// block as soon as it is ready. The thread that runs out of blocks to train calls it, so the
    /// additions overlap the other threads' last blocks instead of following them; `foldedSum`
    /// then returns the result.
    func foldInOrder(batch: Int) {
        let blocks = blockCount(batch: batch)
        guard blocks > 1 else { return }
        for block in 0..<blocks {
            var spins = 0
            while blockReady[block].round.load(ordering: .acquiring) != round {
                spins += 1
                spinPause(spins)
            }
            ParameterState.accumulate(blockSum(block), into: total, count: count, first: block == 0)
        }
    }

    /// Adds the block sums into the batch's total in block order over the floats `floats` only
    /// (a multiple of 16 from 0, or the end): threads folding separate slices together give
    /// the same sums as `sum(batch:)`. All blocks must be complete.
    func fold(batch: Int, floats: Range<Int>) {
        let blocks = blockCount(batch: batch)
        guard blocks > 1, !floats.isEmpty else { return }
        for block in 0..<blocks {
            ParameterState.accumulate(
                blockSum(block) + floats.lowerBound, into: total + floats.lowerBound, count: floats.count, first: block == 0)
        }
    }

    /// The batch's gradient sum and statistics: the block sums added in block order.
    func sum(batch: Int) -> (gradient: UnsafePointer<Float>, statistics: StepStatistics) {
        let blocks = blockCount(batch: batch)
        if blocks > 1 {
            for block in 0..<blocks { ParameterState.accumulate(blockSum(block), into: total, count: count, first: block == 0) }
        }
        return foldedSum(batch: batch)
    }

    /// The batch's gradient sum and statistics once its block sums are folded (`sum(batch:)` or
    /// `foldInOrder`); a batch of one block is its own sum.
    func foldedSum(batch: Int) -> (gradient: UnsafePointer<Float>, statistics: StepStatistics) {
        (blockCount(batch: batch) == 1 ? UnsafePointer(blockSums) : UnsafePointer(total), statistics(batch: batch))
    }
}

/// A block's ready flag (`BatchGradient.markReady`), one object per block so each is an atomic.
private final class BlockReady {
    let round = Atomic<Int>(0)
}
