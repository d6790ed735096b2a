/// The fast single-core engine and the baseline every speed-up is measured against.
///
/// Same mathematics as `ReferenceEngine` in its own summation order, with vector kernels, a
/// vector `exp`, and no allocation per sample: the paper's network on its specialised kernels
/// (`SampleWorkspace`), any other on the generic layers (`CPUNetwork`). A batch's per-sample
/// gradients are summed in `BatchGradient`'s order, which the data-parallel engines reproduce
/// exactly.
public final class SequentialEngine: ParameterStateEngine {
    public var description: String { "sequential" }

    public let state: ParameterState
    public let stepper = EpochStepper()
    public var architecture: Architecture { state.architecture }
    let workspace: any SampleTrainer
    private let batchGradient: BatchGradient

    /// An engine for `architecture`; `generic` runs even the paper's network on the generic
    /// layers (for the test that they agree with SPEC's code).
    public init(parameters: Parameters, architecture: Architecture = .paper, generic: Bool = false) {
        state = ParameterState(parameters, architecture: architecture)
        let workspace = generic ? CPUNetwork(architecture) : makeSampleTrainer(architecture)
        self.workspace = workspace
        batchGradient = BatchGradient(count: state.count, blockSize: BatchGradient.blockSize(for: workspace))
    }

    public func trainStep(_ indices: UnsafeBufferPointer<Int32>, of data: Dataset, rule: UpdateRule) -> StepStatistics {
        let batch = indices.count
        guard batch > 0 else { return StepStatistics() }
        let p = UnsafePointer(state.values), workspace = self.workspace
        let (sum, stats) = data.withImagePixels { images in
            data.labels.withUnsafeBufferPointer { labels in
                batchGradient.sum(batch: batch, on: workspace) { positions in
                    workspace.trainBlock(
                        images, samples: UnsafeBufferPointer(rebasing: indices[positions]), labels: labels, p,
                        recipe: rule.recipe)
                }
            }
        }
        state.apply(gradientSum: sum, batchSize: batch, rule: rule)
        return stats
    }

    public func predict(_ data: Dataset, range: Range<Int>, recipe: Recipe, into predictions: UnsafeMutableBufferPointer<UInt8>) {
        let p = UnsafePointer(state.values)
        data.withImagePixels { images in workspace.predict(images, range: range, p, recipe: recipe, into: predictions) }
    }
}

extension SequentialEngine {
    /// One sample's update direction `scale ⊙ g` (the recipe's divisors applied) under the current
    /// parameters, without changing them; for agreement tests against `ReferenceEngine`.
    public func gradient(of data: Dataset, sample: Int, recipe: Recipe) -> (gradient: Parameters, loss: Double) {
        let p = UnsafePointer(state.values)
        let index = [Int32(sample)]
        let stats = data.withImagePixels { images in
            data.labels.withUnsafeBufferPointer { labels in
                index.withUnsafeBufferPointer { workspace.trainBlock(images, samples: $0, labels: labels, p, recipe: recipe) }
            }
        }
        let scale = architecture.scaleVector(recipe: recipe, batchSize: 1)
        return (Parameters(values: (0..<architecture.parameterCount).map { workspace.grad[$0] * scale[$0] }), stats.lossSum)
    }

    /// The activations of one sample of the paper's network: c1 output [6][24][24], s1 output
    /// [6][6][6], output [10].
    public func activations(of data: Dataset, sample: Int, recipe: Recipe) -> (c1: [Float], s1: [Float], output: [Float]) {
        let workspace = self.workspace as! SampleWorkspace
        data.withImagePixels { workspace.loadImage($0, sample: sample) }
        workspace.forward(UnsafePointer(state.values), recipe: recipe)
        return (
            Array(UnsafeBufferPointer(start: workspace.c1Out, count: Network.channels * Network.convMapSize)),
            Array(UnsafeBufferPointer(start: workspace.s1Out, count: Network.poolOutputs)),
            Array(UnsafeBufferPointer(start: workspace.fOut, count: Network.classes))
        )
    }

    /// The output of every layer for one sample (any network but the paper's), for agreement tests.
    public func layerOutputs(of data: Dataset, sample: Int, recipe: Recipe) -> [[Float]] {
        let network = workspace as! CPUNetwork
        _ = data.withImagePixels { network.predict($0, sample: sample, UnsafePointer(state.values), recipe: recipe) }
        return architecture.layers.indices.map { network.output(ofLayer: $0) }
    }
}
