/// Parameters, momentum buffer and update rule of a CPU engine, in padded flat buffers.
///
/// `apply` turns a batch's summed ascent direction into the update documented on `UpdateRule`:
/// `ḡ = scale ⊙ Σg / B`, `v ← μ v + ḡ`, `θ ← θ + lr · v` (no velocity when μ = 0).
public final class ParameterState {
    static let count = SampleWorkspace.paddedParameterCount

    let values: UnsafeMutablePointer<Float>
    let velocity: UnsafeMutablePointer<Float>
    private(set) var hasVelocity = false
    private let scale: UnsafeMutablePointer<Float>
    private var scaleRecipe: Recipe?

    init(_ parameters: Parameters) {
        values = .allocate(capacity: Self.count)
        velocity = .allocate(capacity: Self.count)
        scale = .allocate(capacity: Self.count)
        values.initialize(repeating: 0, count: Self.count)
        velocity.initialize(repeating: 0, count: Self.count)
        scale.initialize(repeating: 0, count: Self.count)
        load(parameters: parameters, velocity: nil)
    }

    deinit {
        values.deallocate()
        velocity.deallocate()
        scale.deallocate()
    }

    func load(parameters: Parameters, velocity v: Parameters?) {
        parameters.values.withUnsafeBufferPointer { values.update(from: $0.baseAddress!, count: Parameters.count) }
        if let v {
            v.values.withUnsafeBufferPointer { velocity.update(from: $0.baseAddress!, count: Parameters.count) }
        } else {
            velocity.update(repeating: 0, count: Self.count)
        }
        hasVelocity = v != nil
    }

    var parameters: Parameters { Parameters(values: Array(UnsafeBufferPointer(start: values, count: Parameters.count))) }

    var currentVelocity: Parameters? {
        hasVelocity ? Parameters(values: Array(UnsafeBufferPointer(start: velocity, count: Parameters.count))) : nil
    }

    /// `sum = grad` for a block's first sample, `sum += grad` after it.
    static func accumulate(_ grad: UnsafePointer<Float>, into sum: UnsafeMutablePointer<Float>, first: Bool) {
        if first {
            sum.update(from: grad, count: count)
        } else {
            for i in stride(from: 0, to: count, by: 8) { sum.store(sum.vec(i) + grad.vec(i), at: i) }
        }
    }

    /// Applies the update for a batch of `batchSize` samples whose summed ascent is `gradientSum`.
    func apply(gradientSum: UnsafePointer<Float>, batchSize: Int, rule: UpdateRule) {
        if scaleRecipe != rule.recipe {
            rule.scaleVector().withUnsafeBufferPointer { scale.update(from: $0.baseAddress!, count: Parameters.count) }
            scaleRecipe = rule.recipe
        }
        let lr = Vec(repeating: rule.learningRate)
        let inverseBatch = Vec(repeating: 1 / Float(batchSize))
        if rule.usesMomentum {
            let mu = Vec(repeating: rule.momentum)
            for i in stride(from: 0, to: Self.count, by: 8) {
                let g = UnsafePointer(scale).vec(i) * gradientSum.vec(i) * inverseBatch
                let v = mu * velocity.vec(i) + g
                velocity.store(v, at: i)
                values.store(values.vec(i) + lr * v, at: i)
            }
            hasVelocity = true
        } else {
            for i in stride(from: 0, to: Self.count, by: 8) {
                let g = UnsafePointer(scale).vec(i) * gradientSum.vec(i) * inverseBatch
                values.store(values.vec(i) + lr * g, at: i)
            }
        }
    }
}

/// The order in which every CPU engine sums a batch's per-sample gradients (and statistics), so
/// that they agree bit for bit: samples in order within blocks of `blockSize`, then the block sums
/// in block order.
///
/// Blocks let a data-parallel engine hand out whole blocks to whichever worker is free: a worker
/// keeps one hot block sum instead of writing every sample's gradient to memory, and only one sum
/// per block is combined at the end.
final class BatchGradient {
    static let blockSize = 4

    /// One padded gradient per block.
    private(set) var blockSums: UnsafeMutablePointer<Float>
    private var blockStatistics: UnsafeMutablePointer<StepStatistics>
    private var blockCapacity = 0
    private let total = UnsafeMutablePointer<Float>.allocate(capacity: ParameterState.count)

    init() {
        blockSums = .allocate(capacity: 0)
        blockStatistics = .allocate(capacity: 0)
        total.initialize(repeating: 0, count: ParameterState.count)
    }

    deinit {
        blockSums.deallocate()
        blockStatistics.deallocate()
        total.deallocate()
    }

    static func blockCount(batch: Int) -> Int { (batch + blockSize - 1) / blockSize }

    static func samples(ofBlock block: Int, batch: Int) -> Range<Int> {
        (block * blockSize)..<min(batch, (block + 1) * blockSize)
    }

    /// Makes room for the blocks of a batch of `batch` samples.
    func reserve(batch: Int) {
        let blocks = Self.blockCount(batch: batch)
        guard blocks > blockCapacity else { return }
        blockSums.deallocate()
        blockSums = .allocate(capacity: blocks * ParameterState.count)
        blockSums.initialize(repeating: 0, count: blocks * ParameterState.count)
        blockStatistics.deallocate()
        blockStatistics = .allocate(capacity: blocks)
        blockStatistics.initialize(repeating: StepStatistics(), count: blocks)
        blockCapacity = blocks
    }

    func blockSum(_ block: Int) -> UnsafeMutablePointer<Float> { blockSums + block * ParameterState.count }

    /// Adds sample `k`'s gradient and statistics into its block's sums.
    func add(_ grad: UnsafePointer<Float>, _ statistics: StepStatistics, sample k: Int) {
        let block = k / Self.blockSize, first = k % Self.blockSize == 0
        ParameterState.accumulate(grad, into: blockSum(block), first: first)
        blockStatistics[block] = first ? statistics : blockStatistics[block] + statistics
    }

    /// Trains a batch one sample at a time on this thread: `train(k)` leaves sample `k`'s gradient
    /// in `grad` and returns its statistics. A batch of one is used where it lies, without a copy.
    func sum(batch: Int, gradient grad: UnsafePointer<Float>, _ train: (Int) -> StepStatistics)
        -> (gradient: UnsafePointer<Float>, statistics: StepStatistics) {
        if batch == 1 { return (grad, train(0)) }
        reserve(batch: batch)
        for k in 0..<batch { add(grad, train(k), sample: k) }
        return sum(batch: batch)
    }

    /// The batch's gradient sum and statistics: the block sums added in block order.
    func sum(batch: Int) -> (gradient: UnsafePointer<Float>, statistics: StepStatistics) {
        let blocks = Self.blockCount(batch: batch)
        var statistics = blockStatistics[0]
        for block in 1..<max(1, blocks) { statistics += blockStatistics[block] }
        if blocks == 1 { return (UnsafePointer(blockSums), statistics) }
        for block in 0..<blocks { ParameterState.accumulate(blockSum(block), into: total, first: block == 0) }
        return (UnsafePointer(total), statistics)
    }
}
