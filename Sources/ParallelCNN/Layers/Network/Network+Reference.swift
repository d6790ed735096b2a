/// One sample through any `Architecture` with the plain layers of `ReferenceLayers`: the oracle
/// for every network other than the paper's (whose oracle is SPEC's own code in `ReferenceEngine`).
final class ReferenceNetwork {
    let architecture: Architecture
    private(set) var input: [Float]
    /// Per layer: its output, and the error (ascent direction) at its output.
    private(set) var outputs: [[Float]]
    private var errors: [[Float]]
    private(set) var probabilities: [Float]

    init(_ architecture: Architecture) {
        self.architecture = architecture
        input = [Float](repeating: 0, count: architecture.input.count)
        outputs = architecture.layers.map { [Float](repeating: 0, count: $0.output.count) }
        errors = outputs
        probabilities = [Float](repeating: 0, count: architecture.classes)
    }

    func forward(_ p: [Float], image: ArraySlice<Float>, recipe: Recipe) {
        input = Array(image)
        for (l, layer) in architecture.layers.enumerated() {
            let x = l == 0 ? input : outputs[l - 1]
            var y = outputs[l]
            switch layer.spec {
            case .conv: ReferenceLayers.convForward(layer, p, x, &y)
            case .subsample: ReferenceLayers.subsampleForward(layer, p, x, &y)
            case .avgPool, .maxPool: ReferenceLayers.poolForward(layer, x, &y)
            case .dense: ReferenceLayers.denseForward(layer, p, x, &y)
            case .activation(let a): ReferenceLayers.activationForward(a, x, &y)
            }
            outputs[l] = y
        }
        ReferenceLayers.outputForward(recipe, outputs[outputs.count - 1], &probabilities)
    }

    /// Back-propagates the output error of `label`, adding the sample's ascent direction to
    /// `grad`; returns the loss.
    func backward(_ p: [Float], label: Int, recipe: Recipe, grad: inout [Float]) -> Double {
        let last = architecture.layers.count - 1
        let loss = ReferenceLayers.outputBackward(recipe, probabilities, label: label, &errors[last])
        for l in stride(from: last, through: 0, by: -1) {
            let layer = architecture.layers[l]
            let x = l == 0 ? input : outputs[l - 1]
            // Taken out of `errors` so that it is mutated in place, not copied.
            var dx: [Float]? = nil
            if l > 0 { dx = errors[l - 1]; errors[l - 1] = [] }
            switch layer.spec {
            case .conv: ReferenceLayers.convBackward(layer, p, x, errors[l], &grad, &dx)
            case .subsample: ReferenceLayers.subsampleBackward(layer, p, x, errors[l], &grad, &dx)
            case .dense: ReferenceLayers.denseBackward(layer, p, x, errors[l], &grad, &dx)
            case .avgPool, .maxPool: if dx != nil { ReferenceLayers.poolBackward(layer, x, errors[l], &dx!) }
            case .activation(let a): ReferenceLayers.activationBackward(a, outputs[l], errors[l], &dx!)
            }
            if l > 0 { errors[l - 1] = dx! }
        }
        return loss
    }

    /// Argmax of the output with strict `<` (ties go to the lower class).
    var predictedClass: Int {
        var best = 0
        for o in 1..<architecture.classes where probabilities[best] < probabilities[o] { best = o }
        return best
    }

    /// The sample's loss under `recipe` from the last forward pass.
    func loss(label: Int, recipe: Recipe) -> Double {
        var delta = probabilities
        return ReferenceLayers.outputBackward(recipe, probabilities, label: label, &delta)
    }
}
