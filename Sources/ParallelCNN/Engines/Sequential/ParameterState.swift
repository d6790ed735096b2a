/// Parameters, momentum buffer and update rule of a CPU engine, in padded flat buffers.
///
/// `apply` turns a batch's summed ascent direction into the update documented on `UpdateRule`:
/// `ḡ = scale ⊙ Σg / B`, `v ← μ v + ḡ`, `θ ← θ + lr · v` (no velocity when μ = 0).
final class ParameterState {
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

    /// `sum = grad` for a batch's first sample, `sum += grad` after it: the sample-order
    /// summation every CPU engine shares, so they agree bit for bit.
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
