import Dispatch

/// One pass of a training sample as the layer strategies see it: how many independent items it
/// has, how long it takes on one core, whether `threads --strategy layer` forks for it, and
/// whether `mpi --strategy layer` splits it across ranks and gathers its result (how many floats).
public struct PassCost: Sendable, Codable, Equatable {
    public var name: String
    public var items: Int
    /// Seconds per sample on one core.
    public var seconds: Double
    /// `threads --strategy layer` runs this pass as one parallel region (fork-join).
    public var splitByThreads: Bool
    /// `mpi --strategy layer` splits this pass and then runs one `MPI_Allgatherv`.
    public var splitByRanks: Bool
    /// Floats that allgather delivers to every rank (the whole pass's output); 0 when not split.
    public var exchangedFloats: Int

    public init(name: String, items: Int, seconds: Double, splitByThreads: Bool, splitByRanks: Bool, exchangedFloats: Int) {
        (self.name, self.items, self.seconds) = (name, items, seconds)
        (self.splitByThreads, self.splitByRanks, self.exchangedFloats) = (splitByThreads, splitByRanks, exchangedFloats)
    }
}

/// What one training sample costs on one core, split the way the engines split it.
public struct SampleCost: Sendable, Codable, Equatable {
    /// The passes in the order they run (the paper's network: the specialised kernels' stages).
    public var passes: [PassCost]
    /// Seconds per sample outside the passes: loading the image, the output rule, statistics.
    public var otherSeconds: Double
    /// Seconds to add one sample's gradient into a running sum (the batch strategies' cost).
    public var accumulateSeconds: Double
    /// Seconds of one parameter update (the rule's optimizer over every parameter).
    public var updateSeconds: Double
    /// Floats in the gradient (the parameters, padded as the engines pad them).
    public var gradientFloats: Int

    public init(passes: [PassCost], otherSeconds: Double, accumulateSeconds: Double, updateSeconds: Double, gradientFloats: Int) {
        (self.passes, self.otherSeconds, self.accumulateSeconds) = (passes, otherSeconds, accumulateSeconds)
        (self.updateSeconds, self.gradientFloats) = (updateSeconds, gradientFloats)
    }

    /// Seconds of one training sample's passes and the rest, without gradient sum or update.
    public var sampleSeconds: Double { passes.reduce(otherSeconds) { $0 + $1.seconds } }
}

/// Measures `SampleCost` by running the engines' own passes over real samples with a clock read
/// between passes (about 20 ns a read), then timing the gradient sum and the update alone.
public enum PassProfile {
    /// Profiles `samples` samples of `data` (file order) under `parameters`, with the update of
    /// `rule`. The paper's network is profiled as its specialised kernels run in the layer
    /// strategies: three split stages and one serial stage.
    public static func measure(
        _ architecture: Architecture, data: Dataset, samples: Int, parameters: Parameters, rule: UpdateRule
    ) -> SampleCost {
        let count = max(1, min(samples, data.count))
        let state = ParameterState(parameters, architecture: architecture)
        let (passes, other) =
            architecture.isPaper
            ? paperPasses(data: data, samples: count, state: state, recipe: rule.recipe)
            : genericPasses(architecture, data: data, samples: count, state: state, recipe: rule.recipe)
        // The gradient sum and the update alone, on a zero gradient (the cost does not depend on
        // the values; a zero step leaves the parameters as they are).
        let zero = UnsafeMutablePointer<Float>.allocate(capacity: state.count)
        let sum = UnsafeMutablePointer<Float>.allocate(capacity: state.count)
        defer {
            zero.deallocate()
            sum.deallocate()
        }
        zero.initialize(repeating: 0, count: state.count)
        sum.initialize(repeating: 0, count: state.count)
        let repetitions = max(200, min(20_000, 4_000_000 / state.count))
        var began = now()
        for _ in 0..<repetitions { ParameterState.accumulate(zero, into: sum, count: state.count, first: false) }
        let accumulate = (now() - began) / Double(repetitions)
        began = now()
        for _ in 0..<repetitions { state.apply(gradientSum: zero, batchSize: 1, rule: rule) }
        let update = (now() - began) / Double(repetitions)
        return SampleCost(
            passes: passes.map { var p = $0; p.seconds /= Double(count); return p }, otherSeconds: other / Double(count),
            accumulateSeconds: accumulate, updateSeconds: update, gradientFloats: state.count)
    }

    private static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// The generic layers: every `LayerPass` of `CPUNetwork`, timed where the engines run it.
    private static func genericPasses(
        _ architecture: Architecture, data: Dataset, samples: Int, state: ParameterState, recipe: Recipe
    ) -> ([PassCost], Double) {
        let network = CPUNetwork(architecture)
        let all = network.forwardPasses + network.backwardPasses
        var spent = [Double](repeating: 0, count: all.count)
        var total = 0.0
        let p = UnsafePointer(state.values)
        data.withImagePixels { images in
            for sample in 0..<samples {
                let began = now()
                _ = network.trainSample(images, sample: sample, label: Int(data.labels[sample]), recipe: recipe) { passes, first in
                    for (i, pass) in passes.enumerated() {
                        let t = now()
                        pass.run(p, 0..<pass.items)
                        spent[first + i] += now() - t
                    }
                }
                total += now() - began
            }
        }
        let passes = all.enumerated().map { i, pass in
            PassCost(
                name: pass.name, items: pass.items, seconds: spent[i], splitByThreads: pass.items >= 2,
                splitByRanks: !pass.replicated,
                exchangedFloats: pass.replicated ? 0 : pass.produced!(0..<pass.items).reduce(0) { $0 + $1.count })
        }
        return (passes, max(0, total - spent.reduce(0, +)))
    }

    /// The paper's specialised kernels, in the stages `ThreadedEngine` and `MPIEngine` split
    /// them into: c1 and s1 forward by s1 row; f forward and backward with the s1 input error
    /// (serial); s1 backward with the c1 error; c1 backward by (map, kernel row).
    private static func paperPasses(data: Dataset, samples: Int, state: ParameterState, recipe: Recipe) -> ([PassCost], Double) {
        let w = SampleWorkspace()
        let p = UnsafePointer(state.values)
        let c = Network.channels, rows = Network.poolSide, k2 = Network.poolKernel
        let items = Network.channels * Network.convKernel
        var spent = [Double](repeating: 0, count: 4)
        var other = 0.0
        data.withImagePixels { images in
            for sample in 0..<samples {
                let t0 = now()
                w.loadImage(images, sample: sample)
                let t1 = now()
                w.convForward(p, rows: 0..<Network.convSide)
                w.subsampleForward(p, pairs: 0..<(c * rows))
                let t2 = now()
                w.denseForward(p, outputs: 0..<Network.classes)
                w.fActivate(recipe: recipe)
                _ = w.predictedClass
                _ = w.outputError(label: Int(data.labels[sample]), recipe: recipe)
                w.denseBackward(outputs: 0..<Network.classes)
                w.denseBackwardInput(p, chunks: 0..<(Network.poolOutputs / 8))
                let t3 = now()
                w.subsampleBackward(kernelRows: 0..<k2, includeBias: true)
                w.subsampleBackwardInput(p, pairs: 0..<(c * rows))
                let t4 = now()
                w.convBackward(items: 0..<items)
                w.finishConvBackward(items: 0..<items)
                let t5 = now()
                other += t1 - t0
                spent[0] += t2 - t1
                spent[1] += t3 - t2
                spent[2] += t4 - t3
                spent[3] += t5 - t4
            }
        }
        let map = Network.convMapSize
        return (
            [
                PassCost(
                    name: "c1+s1 forward", items: rows, seconds: spent[0], splitByThreads: true, splitByRanks: true,
                    exchangedFloats: c * map + Network.poolOutputs),
                PassCost(name: "f forward+backward", items: 1, seconds: spent[1], splitByThreads: false, splitByRanks: false, exchangedFloats: 0),
                PassCost(
                    name: "s1 backward", items: rows, seconds: spent[2], splitByThreads: true, splitByRanks: true,
                    exchangedFloats: c * map + k2 * k2 + 1),
                PassCost(
                    name: "c1 backward", items: items, seconds: spent[3], splitByThreads: true, splitByRanks: true,
                    exchangedFloats: items * Network.convKernel + c)
            ], other
        )
    }
}
