#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Shape letters used throughout this file (SPEC.md):
private let C = Network.channels  // 6 feature maps
private let N = Network.imageSide  // 28x28 input
private let K1 = Network.convKernel  // 5x5 c1 kernel
private let H1 = Network.convSide  // 24x24 c1 output
private let K2 = Network.poolKernel  // 4x4 s1 kernel, stride 4
private let H2 = Network.poolSide  // 6x6 s1 output
private let O = Network.classes  // 10 outputs

/// The oracle engine: the SPEC's mathematics in plain loops, in the SPEC's canonical summation
/// order, with the C library's `expf` and no fused multiply-add. With the original recipe,
/// original initialisation and batch 1 it reproduces the SPEC's parameter hashes bit for bit.
///
/// Any other network runs through the plain layers of `ReferenceLayers` (`ReferenceNetwork`),
/// which on the paper's description agree with this SPEC code to float rounding.
///
/// It is deliberately slow and obvious; every other engine is tested against it.
public final class ReferenceEngine: SteppedEngine {
    public var description: String { "reference" }
    public let stepper = EpochStepper()
    public let architecture: Architecture
    /// The generic layers, for every network but the paper's (nil for the paper's).
    private let network: ReferenceNetwork?
    /// The generic step's per-parameter factors and the recipe and batch size they are for.
    private var scale: (recipe: Recipe, batchSize: Int, factors: [Float])?

    private var p: [Float]
    private var velocity: [Float]?
    private var secondMoment: [Float]?

    // One sample's activations and errors, laid out as in SPEC ([c][y][x], row-major).
    private var input = [Float](repeating: 0, count: N * N)
    private var c1Pre = [Float](repeating: 0, count: C * H1 * H1)
    private var c1Out = [Float](repeating: 0, count: C * H1 * H1)
    private var s1Pre = [Float](repeating: 0, count: C * H2 * H2)
    private var s1Out = [Float](repeating: 0, count: C * H2 * H2)
    private var fPre = [Float](repeating: 0, count: O)
    private var fOut = [Float](repeating: 0, count: O)
    private var fError = [Float](repeating: 0, count: O)
    private var s1Error = [Float](repeating: 0, count: C * H2 * H2)
    private var c1Error = [Float](repeating: 0, count: C * H1 * H1)

    /// Called as each phase of a training step ends (the bench's per-layer timer); nil otherwise.
    package var lap: ((LayerPhase) -> Void)?

    /// An engine for `architecture`; `generic` runs even the paper's network through the plain
    /// layers (for the test that they agree with SPEC's code).
    public init(parameters: Parameters, architecture: Architecture = .paper, generic: Bool = false) {
        precondition(parameters.values.count == architecture.parameterCount)
        self.architecture = architecture
        network = architecture.isPaper && !generic ? nil : ReferenceNetwork(architecture)
        p = parameters.values
    }

    public func load(parameters: Parameters, optimizerState: OptimizerState) {
        p = parameters.values
        velocity = optimizerState.velocity?.values
        secondMoment = optimizerState.secondMoment?.values
    }

    /// Replaces the parameters and zeroes the optimizer's buffers (without `try`: nothing here fails).
    public func load(parameters: Parameters) { load(parameters: parameters, optimizerState: OptimizerState()) }

    public func currentParameters() -> Parameters { Parameters(values: p) }
    public func currentOptimizerState() -> OptimizerState {
        OptimizerState(velocity: velocity.map { Parameters(values: $0) }, secondMoment: secondMoment.map { Parameters(values: $0) })
    }

    // MARK: Indexing into the flat parameter vector

    private func c1w(_ c: Int, _ kr: Int, _ kc: Int) -> Int { Parameters.Offset.c1Weight + (c * K1 + kr) * K1 + kc }
    private func c1b(_ c: Int) -> Int { Parameters.Offset.c1Bias + c }
    private func s1w(_ kr: Int, _ kc: Int) -> Int { Parameters.Offset.s1Weight + kr * K2 + kc }
    private var s1b: Int { Parameters.Offset.s1Bias }
    private func fw(_ o: Int, _ i: Int) -> Int { Parameters.Offset.fWeight + o * C * H2 * H2 + i }
    private func fb(_ o: Int) -> Int { Parameters.Offset.fBias + o }

    /// Index of s1 output `[c][y][x]`, also the f layer's input index.
    private func s1i(_ c: Int, _ y: Int, _ x: Int) -> Int { (c * H2 + y) * H2 + x }
    /// Index of c1 output `[c][y][x]`.
    private func c1i(_ c: Int, _ y: Int, _ x: Int) -> Int { (c * H1 + y) * H1 + x }

    private func sigmoid(_ v: Float) -> Float { 1 / (1 + expf(-v)) }

    // MARK: Forward

    private func forward(_ data: Dataset, sample: Int, recipe: Recipe) {
        for (i, pixel) in data.image(sample).enumerated() { input[i] = pixel }

        // c1: kernel column outer, kernel row inner; bias after the sum.
        for c in 0..<C {
            for y in 0..<H1 {
                for x in 0..<H1 {
                    var sum: Float = 0
                    for kc in 0..<K1 {
                        for kr in 0..<K1 {
                            sum += p[c1w(c, kr, kc)] * input[(y + kr) * N + x + kc]
                        }
                    }
                    c1Pre[c1i(c, y, x)] = sum + p[c1b(c)]
                    c1Out[c1i(c, y, x)] = sigmoid(c1Pre[c1i(c, y, x)])
                }
            }
        }
        lap?(.c1Forward)

        // s1: one 4x4 kernel shared by all maps, stride 4; same term order as c1.
        for c in 0..<C {
            for y in 0..<H2 {
                for x in 0..<H2 {
                    var sum: Float = 0
                    for kc in 0..<K2 {
                        for kr in 0..<K2 {
                            sum += p[s1w(kr, kc)] * c1Out[c1i(c, K2 * y + kr, K2 * x + kc)]
                        }
                    }
                    s1Pre[s1i(c, y, x)] = sum + p[s1b]
                    s1Out[s1i(c, y, x)] = sigmoid(s1Pre[s1i(c, y, x)])
                }
            }
        }
        lap?(.s1Forward)

        // f: input column slowest, then row, then channel fastest.
        for o in 0..<O {
            var sum: Float = 0
            for x in 0..<H2 {
                for y in 0..<H2 {
                    for c in 0..<C {
                        sum += p[fw(o, s1i(c, y, x))] * s1Out[s1i(c, y, x)]
                    }
                }
            }
            fPre[o] = sum + p[fb(o)]
        }

        switch recipe {
        case .original:
            for o in 0..<O { fOut[o] = sigmoid(fPre[o]) }
        case .modern:
            var largest = fPre[0]
            for o in 1..<O where fPre[o] > largest { largest = fPre[o] }
            var total: Float = 0
            for o in 0..<O {
                fOut[o] = expf(fPre[o] - largest)
                total += fOut[o]
            }
            for o in 0..<O { fOut[o] /= total }
        }
        lap?(.fForward)
    }

    /// Argmax of the output with strict `<` (ties go to the lower class).
    private func predictedClass() -> Int {
        var best = 0
        for o in 1..<O where fOut[best] < fOut[o] { best = o }
        return best
    }

    // MARK: Backward

    /// How bias terms are consumed: added to the parameters at once, term by term, as the
    /// original program does with batch 1; or accumulated into a gradient for a batch.
    private enum BiasUpdate {
        case applyNow(dt: Float)
        case accumulate
    }

    /// Computes the output error and back-propagates it, adding this sample's ascent direction
    /// to `grad` (weights always; biases per `bias`). Per-term divisors follow the recipe
    /// (576 for c1 and 216 for the s1 bias in `.original`, 1 otherwise).
    /// Returns the sample's loss.
    private func backward(label: Int, recipe: Recipe, grad: inout [Float], bias: BiasUpdate) -> Double {
        for o in 0..<O { fError[o] = (o == label ? 1 : 0) - fOut[o] }
        let c1Divisor: Float = recipe == .original ? Float(H1 * H1) : 1
        let s1BiasDivisor: Float = recipe == .original ? Float(C * H2 * H2) : 1

        let loss: Double
        switch recipe {
        case .original:
            var squares: Float = 0
            for o in 0..<O { squares += fError[o] * fError[o] }
            loss = Double(squares.squareRoot())
        case .modern:
            loss = -log(Double(fOut[label]))
        }

        // Step 3: f weight gradient and bias.
        for o in 0..<O {
            for i in 0..<(C * H2 * H2) { grad[fw(o, i)] += fError[o] * s1Out[i] }
        }
        for o in 0..<O { addBiasTerm(fError[o], divisor: 1, at: fb(o), grad: &grad, bias: bias) }
        lap?(.fBackward)

        // Steps 4-5: error at s1 through the f weights as they were before this step.
        for i in 0..<(C * H2 * H2) {
            var sum: Float = 0
            for o in 0..<O { sum += p[fw(o, i)] * fError[o] }
            let out = sigmoid(s1Pre[i])
            s1Error[i] = sum * out * (1 - out)
        }

        // Step 6: s1 weight gradient and bias: input column slowest, row, channel fastest.
        for kr in 0..<K2 {
            for kc in 0..<K2 {
                var sum: Float = 0
                for x in 0..<H2 {
                    for y in 0..<H2 {
                        for c in 0..<C {
                            sum += s1Error[s1i(c, y, x)] * c1Out[c1i(c, K2 * y + kr, K2 * x + kc)]
                        }
                    }
                }
                grad[s1w(kr, kc)] += sum
            }
        }
        for x in 0..<H2 {
            for y in 0..<H2 {
                for c in 0..<C {
                    addBiasTerm(s1Error[s1i(c, y, x)], divisor: s1BiasDivisor, at: s1b, grad: &grad, bias: bias)
                }
            }
        }
        lap?(.s1Backward)

        // Steps 7-8: error at c1 through the s1 weights as they were before this step.
        for c in 0..<C {
            for y in 0..<H1 {
                for x in 0..<H1 {
                    let upstream = p[s1w(y % K2, x % K2)] * s1Error[s1i(c, y / K2, x / K2)]
                    let out = sigmoid(c1Pre[c1i(c, y, x)])
                    c1Error[c1i(c, y, x)] = upstream * out * (1 - out)
                }
            }
        }

        // Step 9: c1 weight gradient, map column-major (x slowest, y fastest), each term divided.
        for c in 0..<C {
            for kr in 0..<K1 {
                for kc in 0..<K1 {
                    var sum: Float = 0
                    for x in 0..<H1 {
                        for y in 0..<H1 {
                            sum += c1Error[c1i(c, y, x)] * input[(y + kr) * N + x + kc] / c1Divisor
                        }
                    }
                    grad[c1w(c, kr, kc)] += sum
                }
            }
        }
        for x in 0..<H1 {
            for y in 0..<H1 {
                for c in 0..<C {
                    addBiasTerm(c1Error[c1i(c, y, x)], divisor: c1Divisor, at: c1b(c), grad: &grad, bias: bias)
                }
            }
        }
        lap?(.c1Backward)
        return loss
    }

    private func addBiasTerm(_ term: Float, divisor: Float, at index: Int, grad: inout [Float], bias: BiasUpdate) {
        switch bias {
        case .applyNow(let dt): p[index] += dt * term / divisor
        case .accumulate: grad[index] += term / divisor
        }
    }

    // MARK: Engine

    public func trainStep(_ indices: UnsafeBufferPointer<Int32>, of data: Dataset, rule: UpdateRule) -> StepStatistics {
        if let network { return trainStep(indices, of: data, rule: rule, network: network) }
        var stats = StepStatistics()
        var grad = [Float](repeating: 0, count: Parameters.count)
        // The original program with one sample per step updates biases while back-propagating.
        let faithful = indices.count == 1 && rule.batchSize == 1 && !rule.usesVelocity
        for index in indices {
            let sample = Int(index)
            forward(data, sample: sample, recipe: rule.recipe)
            if predictedClass() != Int(data.labels[sample]) { stats.misclassified += 1 }
            stats.lossSum += backward(
                label: Int(data.labels[sample]), recipe: rule.recipe, grad: &grad,
                bias: faithful ? .applyNow(dt: rule.learningRate) : .accumulate)
            stats.samples += 1
        }

        if faithful {
            // Step 10: w += dt * dW (biases were already updated).
            for i in 0..<Parameters.count where !Self.isBias(i) { p[i] += rule.learningRate * grad[i] }
        } else {
            update(ascent: grad, batchSize: Float(indices.count), rule: rule)
        }
        lap?(.update)
        return stats
    }

    /// A step of any network through the plain layers: per sample forward and backward, the
    /// ascent summed in sample order, then the update with the recipe's per-tensor factors.
    private func trainStep(
        _ indices: UnsafeBufferPointer<Int32>, of data: Dataset, rule: UpdateRule,
        network: ReferenceNetwork
    ) -> StepStatistics {
        var stats = StepStatistics()
        var grad = [Float](repeating: 0, count: p.count)
        for index in indices {
            let sample = Int(index), label = Int(data.labels[sample])
            network.forward(p, image: data.image(sample), recipe: rule.recipe)
            if network.predictedClass != label { stats.misclassified += 1 }
            stats.lossSum += network.backward(p, label: label, recipe: rule.recipe, grad: &grad)
            stats.samples += 1
        }
        if scale?.recipe != rule.recipe || scale?.batchSize != rule.batchSize {
            scale = (rule.recipe, rule.batchSize, architecture.scaleVector(recipe: rule.recipe, batchSize: rule.batchSize))
        }
        update(ascent: grad, batchSize: Float(indices.count), rule: rule, factor: scale!.factors)
        lap?(.update)
        return stats
    }

    /// `UpdateRule`'s update of a batch of `batchSize` samples whose summed ascent is `ascent`;
    /// `factor` is the per-parameter factor not yet applied (by default the step factor: SPEC's
    /// code divides its terms as it sums them).
    private func update(ascent: [Float], batchSize: Float, rule: UpdateRule, factor: [Float]? = nil) {
        let factor = factor ?? rule.stepFactorVector()
        var v = velocity ?? [Float](repeating: 0, count: p.count)
        switch rule.optimizer {
        case .sgd:
            for i in 0..<p.count {
                v[i] = UpdateRule.flushed(rule.momentum * v[i] + factor[i] * ascent[i] / batchSize)
                p[i] += rule.learningRate * v[i]
            }
            velocity = rule.usesVelocity ? v : nil
        case .adam:
            var s = secondMoment ?? [Float](repeating: 0, count: p.count)
            let beta1 = rule.momentum, beta2 = UpdateRule.adamBeta2
            let (stepSize, secondMomentFactor) = rule.adamFactors
            for i in 0..<p.count {
                let g = factor[i] * ascent[i] / batchSize
                v[i] = UpdateRule.flushed(beta1 * v[i] + (1 - beta1) * g)
                s[i] = UpdateRule.flushed(beta2 * s[i] + (1 - beta2) * g * g)
                p[i] += stepSize * v[i] / (s[i].squareRoot() * secondMomentFactor + UpdateRule.adamEpsilon)
            }
            velocity = v
            secondMoment = s
        }
    }

    private static func isBias(_ i: Int) -> Bool {
        [TensorName.c1Bias, .s1Bias, .fBias].contains { Parameters.range(of: $0).contains(i) }
    }

    public func predict(_ data: Dataset, range: Range<Int>, recipe: Recipe, into predictions: UnsafeMutableBufferPointer<UInt8>) {
        if let network {
            for (k, sample) in range.enumerated() {
                network.forward(p, image: data.image(sample), recipe: recipe)
                predictions[k] = UInt8(network.predictedClass)
            }
            return
        }
        for (k, sample) in range.enumerated() {
            forward(data, sample: sample, recipe: recipe)
            predictions[k] = UInt8(predictedClass())
        }
    }

    /// The raw ascent direction `Σ g` of one sample (divisors of the recipe included), without
    /// touching the parameters; for gradient checks and engine agreement tests.
    public func gradient(of data: Dataset, sample: Int, recipe: Recipe) -> (gradient: Parameters, loss: Double) {
        if let network {
            var grad = [Float](repeating: 0, count: p.count)
            network.forward(p, image: data.image(sample), recipe: recipe)
            let loss = network.backward(p, label: Int(data.labels[sample]), recipe: recipe, grad: &grad)
            let scale = architecture.scaleVector(recipe: recipe, batchSize: 1)
            return (Parameters(values: zip(grad, scale).map { $0 * $1 }), loss)
        }
        var grad = [Float](repeating: 0, count: Parameters.count)
        forward(data, sample: sample, recipe: recipe)
        let loss = backward(label: Int(data.labels[sample]), recipe: recipe, grad: &grad, bias: .accumulate)
        return (Parameters(values: grad), loss)
    }

    /// Loss of one sample under the current parameters (forward only).
    public func loss(of data: Dataset, sample: Int, recipe: Recipe) -> Double {
        if let network {
            network.forward(p, image: data.image(sample), recipe: recipe)
            return network.loss(label: Int(data.labels[sample]), recipe: recipe)
        }
        forward(data, sample: sample, recipe: recipe)
        let label = Int(data.labels[sample])
        switch recipe {
        case .modern:
            return -log(Double(fOut[label]))
        case .original:
            var squares: Double = 0
            for o in 0..<O {
                let e = Double((o == label ? 1 : 0) - fOut[o])
                squares += e * e
            }
            return squares.squareRoot()
        }
    }

    /// The output rule's values (sigmoid outputs or softmax probabilities) for one sample.
    public func probabilities(of data: Dataset, sample: Int, recipe: Recipe) -> [Float] {
        if let network {
            network.forward(p, image: data.image(sample), recipe: recipe)
            return network.probabilities
        }
        return activations(of: data, sample: sample, recipe: recipe).output
    }

    /// The output of every layer for one sample, through the plain layers.
    public func layerOutputs(of data: Dataset, sample: Int, recipe: Recipe) -> [[Float]] {
        let network = self.network ?? ReferenceNetwork(architecture)
        network.forward(p, image: data.image(sample), recipe: recipe)
        return network.outputs
    }

    /// The logits (the last layer's outputs, before the output rule) of one sample, through the
    /// plain layers: the original recipe's error is an ascent direction for them with the output
    /// held fixed, which is how its gradient is checked.
    public func logits(of data: Dataset, sample: Int) -> [Float] {
        layerOutputs(of: data, sample: sample, recipe: .modern).last!
    }

    /// The activations of the last forward pass: c1 output [6][24][24], s1 output [6][6][6],
    /// output [10]; for layer-by-layer agreement tests.
    public func activations(of data: Dataset, sample: Int, recipe: Recipe) -> (c1: [Float], s1: [Float], output: [Float]) {
        forward(data, sample: sample, recipe: recipe)
        return (c1Out, s1Out, fOut)
    }
}
