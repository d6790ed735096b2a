/// The training rule.
public enum Recipe: String, CaseIterable, Sendable {
    /// SPEC.md exactly: sigmoid outputs, error `target - output` with no output derivative,
    /// c1 gradients divided by 576 and the s1 bias gradient by 216, plain SGD with dt = 0.1,
    /// one sample per step in file order. With a batch of B samples the B per-sample updates,
    /// all computed from the same parameters, are averaged.
    case original
    /// True gradients of softmax cross-entropy, minibatch momentum SGD, reshuffled every epoch.
    case modern

    public var defaultLearningRate: Float { self == .original ? 0.1 : 0.05 }
    public var defaultBatchSize: Int { self == .original ? 1 : 32 }
    public var defaultMomentum: Float { self == .original ? 0 : 0.9 }
    public var defaultLearningRateDecay: Float { self == .original ? 1 : 0.5 }
    /// Whether each epoch visits the training set in a fresh seeded order.
    public var shuffles: Bool { self == .modern }

    /// Factor applied to each tensor's raw gradient sum (see `UpdateRule`).
    /// The original program divides the c1 terms by 576 and the s1 bias terms by 216.
    public func gradientScale(_ tensor: TensorName) -> Float {
        guard self == .original else { return 1 }
        switch tensor {
        case .c1Weight, .c1Bias: return 1 / Float(Network.convMapSize)
        case .s1Bias: return 1 / Float(Network.poolOutputs)
        default: return 1
        }
    }
}

/// Everything an engine needs to turn a batch's gradients into a parameter update.
///
/// Engines compute, per sample, the raw gradient sums of the *ascent* direction
/// `g = -∂loss/∂θ` with the output error `δ = target - output` (for `.original` that error is the
/// SPEC's, with no output derivative; for `.modern` it is `onehot - softmax`, the exact negative
/// gradient of cross-entropy). The update of a batch of `B` samples is then
/// `ḡ = scale ⊙ Σ g / B`, `v ← μ v + ḡ`, `θ ← θ + lr · v` (with μ = 0, simply `θ ← θ + lr · ḡ`).
public struct UpdateRule: Equatable, Sendable {
    public var recipe: Recipe
    public var learningRate: Float
    public var momentum: Float

    public init(recipe: Recipe, learningRate: Float? = nil, momentum: Float? = nil) {
        self.recipe = recipe
        self.learningRate = learningRate ?? recipe.defaultLearningRate
        self.momentum = momentum ?? recipe.defaultMomentum
    }

    /// Whether a velocity buffer is part of the training state.
    public var usesMomentum: Bool { momentum != 0 }

    /// Per-parameter factor `scale` of the update, in canonical order (2343 values).
    public func scaleVector() -> [Float] {
        var scale = [Float](repeating: 1, count: Parameters.count)
        for tensor in TensorName.allCases {
            let s = recipe.gradientScale(tensor)
            for i in Parameters.range(of: tensor) { scale[i] = s }
        }
        return scale
    }
}
