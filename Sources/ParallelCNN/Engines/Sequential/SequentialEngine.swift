/// The fast single-core engine and the baseline every speed-up is measured against.
///
/// Same mathematics as `ReferenceEngine` in its own summation order, with 8-lane vector kernels
/// (`SampleWorkspace`), a vector `exp`, and no allocation per sample. A batch's per-sample
/// gradients are summed in `BatchGradient`'s order, which the data-parallel engines reproduce
/// exactly.
public final class SequentialEngine: ParameterStateEngine {
    public var description: String { "sequential" }

    public let state: ParameterState
    public let stepper = EpochStepper()
    let workspace = SampleWorkspace()
    private let batchGradient = BatchGradient()

    public init(parameters: Parameters) {
        state = ParameterState(parameters)
    }

    public func trainStep(_ indices: UnsafeBufferPointer<Int32>, of data: Dataset, rule: UpdateRule) -> StepStatistics {
        let batch = indices.count
        guard batch > 0 else { return StepStatistics() }
        let p = UnsafePointer(state.values)
        let (sum, stats) = data.images.withUnsafeBufferPointer { images in
            batchGradient.sum(batch: batch, gradient: workspace.grad) { k in
                let sample = Int(indices[k])
                return workspace.trainSample(images.baseAddress!, sample: sample, label: Int(data.labels[sample]), p,
                                             recipe: rule.recipe)
            }
        }
        state.apply(gradientSum: sum, batchSize: batch, rule: rule)
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
