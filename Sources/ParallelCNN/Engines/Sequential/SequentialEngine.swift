/// The fast single-core engine and the baseline every speed-up is measured against.
///
/// Same mathematics as `ReferenceEngine` in its own summation order, with 8-lane vector kernels
/// (`SampleWorkspace`), a vector `exp`, and no allocation per sample. A batch's per-sample
/// gradients are summed in sample order, which the data-parallel engines reproduce exactly.
public final class SequentialEngine: Engine {
    public var description: String { "sequential" }

    let state: ParameterState
    let workspace = SampleWorkspace()
    /// Sum of the batch's per-sample gradients.
    private let batchGradient = UnsafeMutablePointer<Float>.allocate(capacity: ParameterState.count)

    public init(parameters: Parameters) {
        state = ParameterState(parameters)
        batchGradient.initialize(repeating: 0, count: ParameterState.count)
    }

    deinit { batchGradient.deallocate() }

    public func load(parameters: Parameters, velocity: Parameters?) { state.load(parameters: parameters, velocity: velocity) }
    public func currentParameters() -> Parameters { state.parameters }
    public func currentVelocity() -> Parameters? { state.currentVelocity }

    public func train(on data: Dataset, indices: UnsafeBufferPointer<Int32>, rule: UpdateRule) -> StepStatistics {
        var stats = StepStatistics()
        let p = UnsafePointer(state.values)
        data.images.withUnsafeBufferPointer { images in
            for (k, index) in indices.enumerated() {
                let sample = Int(index)
                workspace.loadImage(images.baseAddress!, sample: sample)
                workspace.forward(p, recipe: rule.recipe)
                let label = Int(data.labels[sample])
                if workspace.predictedClass != label { stats.misclassified += 1 }
                stats.lossSum += workspace.outputError(label: label, recipe: rule.recipe)
                stats.samples += 1
                workspace.backward(p)
                if indices.count > 1 { ParameterState.accumulate(workspace.grad, into: batchGradient, first: k == 0) }
            }
        }
        let sum = indices.count > 1 ? UnsafePointer(batchGradient) : UnsafePointer(workspace.grad)
        state.apply(gradientSum: sum, batchSize: indices.count, rule: rule)
        return stats
    }

    public func predict(_ data: Dataset, range: Range<Int>, recipe: Recipe, into predictions: UnsafeMutableBufferPointer<UInt8>) {
        let p = UnsafePointer(state.values)
        data.images.withUnsafeBufferPointer { images in
            for (k, sample) in range.enumerated() {
                workspace.loadImage(images.baseAddress!, sample: sample)
                workspace.forward(p, recipe: recipe)
                predictions[k] = UInt8(workspace.predictedClass)
            }
        }
    }
}

extension SequentialEngine {
    /// One sample's update direction `scale ⊙ g` (the recipe's divisors applied) under the current
    /// parameters, without changing them; for agreement tests against `ReferenceEngine`.
    public func gradient(of data: Dataset, sample: Int, recipe: Recipe) -> (gradient: Parameters, loss: Double) {
        let p = UnsafePointer(state.values)
        let loss = data.images.withUnsafeBufferPointer { images in
            workspace.loadImage(images.baseAddress!, sample: sample)
            workspace.forward(p, recipe: recipe)
            let loss = workspace.outputError(label: Int(data.labels[sample]), recipe: recipe)
            workspace.backward(p)
            return loss
        }
        let scale = UpdateRule(recipe: recipe).scaleVector()
        return (Parameters(values: (0..<Parameters.count).map { workspace.grad[$0] * scale[$0] }), loss)
    }

    /// The activations of one sample: c1 output [6][24][24], s1 output [6][6][6], output [10].
    public func activations(of data: Dataset, sample: Int, recipe: Recipe) -> (c1: [Float], s1: [Float], output: [Float]) {
        data.images.withUnsafeBufferPointer { workspace.loadImage($0.baseAddress!, sample: sample) }
        workspace.forward(UnsafePointer(state.values), recipe: recipe)
        return (Array(UnsafeBufferPointer(start: workspace.c1Out, count: Network.channels * Network.convMapSize)),
                Array(UnsafeBufferPointer(start: workspace.s1Out, count: Network.poolOutputs)),
                Array(UnsafeBufferPointer(start: workspace.fOut, count: Network.classes)))
    }
}
