import Foundation

/// The training rule.
public enum Recipe: String, CaseIterable, Sendable {
    /// SPEC.md exactly: sigmoid outputs, error `target - output` with no output derivative,
    /// c1 gradients divided by 576 and the s1 bias gradient by 216, plain SGD with dt = 0.1,
    /// one sample per step in file order. With a batch of B > 1 samples the B per-sample updates,
    /// all computed from the same parameters, are averaged, and the batch scaling rule applies
    /// (`defaultMomentum(batchSize:)`, `stepFactor(_:batchSize:)`).
    case original
    /// True gradients of softmax cross-entropy, minibatch momentum SGD, reshuffled every epoch.
    case modern

    /// Default learning rate at `batchSize` samples per step. The modern recipe's 0.05 is tuned
    /// at B = 32; above that the rate grows linearly with B (the usual rule for minibatch SGD,
    /// since a step then averages more samples) up to 0.1, beyond which the sigmoid layers
    /// saturate (B = 64, 3 epochs: lr 0.2 gives 6.2%, lr 0.4 90%).
    public func defaultLearningRate(batchSize: Int) -> Float {
        switch self {
        case .original: 0.1
        case .modern: 0.05 * min(max(Float(batchSize) / 32, 1), 2)
        }
    }
    public var defaultBatchSize: Int { self == .original ? 1 : 32 }

    /// Default momentum at `batchSize` samples per step. The original recipe at B > 1 uses 0.8:
    /// averaging B updates takes B times fewer steps per epoch, and heavy-ball momentum makes
    /// each step count about 1 / (1 - 0.8) = 5 times (measured at B = 64, 1 epoch: 8.76% test
    /// error with `stepFactor`, against 20.3% for plain averaging; see README, Recipes).
    public func defaultMomentum(batchSize: Int) -> Float {
        switch self {
        case .original: batchSize > 1 ? 0.8 : 0
        case .modern: 0.9
        }
    }

    /// Factor on tensor `tensor`'s step at `batchSize` samples per step: 1, except for the
    /// original recipe's c1 tensors at B > 1, whose step grows to `min(4B, 576)` times.
    ///
    /// Why c1 alone: its gradient is divided by 576, so per-sample SGD moves it only through
    /// sheer step count (60000 a epoch); a batch of B has B times fewer steps. Scaling every
    /// tensor by B (the linear rule) or √B does not work here: the single shared s1 kernel and
    /// the f layer overshoot and the sigmoids saturate (B = 64: lr·B → 90% error, lr·√B →
    /// 12.6%, best global lr 12.3%). Scaling the c1 step alone, by 4B (at most undoing the
    /// 576), is what trains: 5.25% at B = 8, 6.94% at 32, 8.76% at 64, 12.0% at 128.
    public func stepFactor(_ tensor: TensorName, batchSize: Int) -> Float {
        guard self == .original, batchSize > 1 else { return 1 }
        switch tensor {
        case .c1Weight, .c1Bias: return Float(min(4 * batchSize, Network.convMapSize))
        default: return 1
        }
    }
    /// Default factor on the learning rate after each epoch. The modern recipe halves it every
    /// 1875 steps (one epoch at its default B = 32), so a larger batch, with fewer steps per
    /// epoch, decays more slowly per epoch: `0.5^(32/B)` for B > 32. Together with
    /// `defaultLearningRate(batchSize:)`, 3 epochs reach (test error, against the B = 32 defaults
    /// of lr 0.05 and decay 0.5): B = 48 3.92% (4.58%), B = 64 4.41% (5.25%), B = 128 5.32%
    /// (7.08%), B = 256 7.06% (9.59%).
    public func defaultLearningRateDecay(batchSize: Int) -> Float {
        switch self {
        case .original: 1
        case .modern: Float(pow(0.5, 32 / Double(max(batchSize, 32))))
        }
    }
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
/// `ḡ = scale ⊙ Σ g / B`, `v ← μ v + ḡ`, `θ ← θ + lr · v` (with μ = 0, simply `θ ← θ + lr · ḡ`),
/// where `scale` holds the recipe's divisors times its step factors at the configured batch size
/// (a run's last, shorter batch keeps the factors of the configured one).
public struct UpdateRule: Equatable, Sendable {
    public var recipe: Recipe
    public var learningRate: Float
    public var momentum: Float
    /// The configured samples per step, which decides `recipe.stepFactor`.
    public var batchSize: Int

    public init(recipe: Recipe, learningRate: Float? = nil, momentum: Float? = nil, batchSize: Int = 1) {
        self.recipe = recipe
        self.learningRate = learningRate ?? recipe.defaultLearningRate(batchSize: batchSize)
        self.momentum = momentum ?? recipe.defaultMomentum(batchSize: batchSize)
        self.batchSize = batchSize
    }

    /// Whether a velocity buffer is part of the training state.
    public var usesMomentum: Bool { momentum != 0 }

    /// Per-parameter factor `scale` of the update, in canonical order (2343 values).
    public func scaleVector() -> [Float] {
        var scale = [Float](repeating: 1, count: Parameters.count)
        for tensor in TensorName.allCases {
            let s = recipe.gradientScale(tensor) * recipe.stepFactor(tensor, batchSize: batchSize)
            for i in Parameters.range(of: tensor) { scale[i] = s }
        }
        return scale
    }

    /// `recipe.stepFactor` per parameter, in canonical order (2343 values), for engines that
    /// apply the recipe's divisors themselves (the reference).
    public func stepFactorVector() -> [Float] {
        var factors = [Float](repeating: 1, count: Parameters.count)
        for tensor in TensorName.allCases {
            let f = recipe.stepFactor(tensor, batchSize: batchSize)
            for i in Parameters.range(of: tensor) { factors[i] = f }
        }
        return factors
    }
}
