import _CPUVector

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the CPU engines need of one sample's workspace: train a sample into `grad`, or predict
/// one. The paper's specialised `SampleWorkspace` and the generic `CPUNetwork` both provide it.
protocol SampleTrainer: AnyObject {
    /// The last trained sample's ascent direction, canonical order, padded to 16 floats.
    var grad: UnsafeMutablePointer<Float> { get }
    func trainSample(_ images: ImagePixels, sample: Int, label: Int, _ p: UnsafePointer<Float>, recipe: Recipe) -> StepStatistics
    func predict(_ images: ImagePixels, sample: Int, _ p: UnsafePointer<Float>, recipe: Recipe) -> Int
}

/// One sample's buffers for any `Architecture`, and its forward and backward passes as
/// `LayerPass`es of the fast CPU layers (`CPULayers`). Buffers are allocated once; a sample
/// allocates nothing.
final class CPUNetwork: SampleTrainer {
    let architecture: Architecture
    let input: UnsafeMutablePointer<Float>
    /// Per layer: its output and the error at its output.
    let outputs: [UnsafeMutablePointer<Float>]
    let errors: [UnsafeMutablePointer<Float>]
    /// The output rule's result (sigmoid or softmax), one per class.
    let probabilities: UnsafeMutablePointer<Float>
    let grad: UnsafeMutablePointer<Float>
    /// Floats of `grad` (the parameter count rounded up to 16).
    let paddedParameterCount: Int
    /// The passes in the order they run: forward through the layers, then the output error and
    /// backward through the layers in reverse.
    private(set) var forwardPasses: [LayerPass] = []
    private(set) var backwardPasses: [LayerPass] = []

    /// The output rule's inputs for the current sample (read by the output passes).
    private var recipe = Recipe.modern
    private var label = 0
    private(set) var loss = 0.0

    private let storage: UnsafeMutableRawPointer

    init(_ architecture: Architecture) {
        self.architecture = architecture
        func padded(_ n: Int) -> Int { (n + 15) / 16 * 16 }
        paddedParameterCount = padded(architecture.parameterCount)
        // One arena, every buffer on a 64-byte line and padded to whole vectors.
        var sizes = [padded(architecture.input.count), padded(architecture.classes), paddedParameterCount]
        for layer in architecture.layers {
            sizes += [padded(layer.output.count), padded(layer.output.count)]
            if case .conv = layer.spec {
                sizes += [padded(layer.fanIn * layer.output.planeSize), padded(layer.fanIn * layer.output.planeSize)]
            }
            if case .maxPool = layer.spec { sizes.append(padded(layer.output.count)) }  // Int32s, same size
        }
        let total = sizes.reduce(0, +) + CPULayers.readSlack
        storage = .allocate(byteCount: total * 4, alignment: 64)
        storage.initializeMemory(as: Float.self, repeating: 0, count: total)
        var cursor = storage.assumingMemoryBound(to: Float.self)
        var sizeIndex = 0
        func next() -> UnsafeMutablePointer<Float> {
            defer { cursor += sizes[sizeIndex]; sizeIndex += 1 }
            return cursor
        }
        input = next()
        probabilities = next()
        grad = next()
        var outputs: [UnsafeMutablePointer<Float>] = [], errors: [UnsafeMutablePointer<Float>] = []
        var buffers: [LayerBuffers] = []
        for (l, layer) in architecture.layers.enumerated() {
            let y = next(), dy = next()
            var col: UnsafeMutablePointer<Float>?, dCol: UnsafeMutablePointer<Float>?, argmax: UnsafeMutablePointer<Int32>?
            if case .conv = layer.spec { col = next(); dCol = next() }
            if case .maxPool = layer.spec { argmax = UnsafeMutableRawPointer(next()).assumingMemoryBound(to: Int32.self) }
            buffers.append(
                LayerBuffers(
                    layer: layer, x: l == 0 ? input : outputs[l - 1], y: y, dy: dy,
                    dx: l == 0 ? nil : errors[l - 1], grad: grad, col: col, dCol: dCol, argmax: argmax))
            outputs.append(y)
            errors.append(dy)
        }
        self.outputs = outputs
        self.errors = errors

        var backward: [[LayerPass]] = []
        for b in buffers {
            let passes =
                switch b.layer.spec {
                case .conv: CPULayers.convPasses(b)
                case .subsample: CPULayers.subsamplePasses(b)
                case .avgPool, .maxPool: CPULayers.poolPasses(b)
                case .dense: CPULayers.densePasses(b)
                case .activation(let a): CPULayers.activationPasses(b, a)
                }
            forwardPasses += passes.forward
            backward.append(passes.backward)
        }
        forwardPasses.append(
            LayerPass(name: "output forward", items: 1, replicated: true, writes: architecture.classes) { [unowned self] _, _ in
                outputForward()
            })
        backwardPasses =
            [
                LayerPass(name: "output backward", items: 1, replicated: true, writes: architecture.classes) { [unowned self] _, _ in
                    loss = outputBackward()
                }
            ] + backward.reversed().flatMap { $0 }
    }

    deinit { storage.deallocate() }

    /// The last layer's outputs, the logits.
    private var logits: UnsafeMutablePointer<Float> { outputs[outputs.count - 1] }

    /// Sigmoid or softmax of the logits into `probabilities` (the reference's output rule).
    private func outputForward() {
        let O = architecture.classes
        ReferenceLayers.outputForward(
            recipe, UnsafeBufferPointer(start: logits, count: O),
            UnsafeMutableBufferPointer(start: probabilities, count: O))
    }

    /// The output error at the logits and the sample's loss.
    private func outputBackward() -> Double {
        let O = architecture.classes
        return ReferenceLayers.outputBackward(
            recipe, UnsafeBufferPointer(start: probabilities, count: O), label: label,
            UnsafeMutableBufferPointer(start: errors[errors.count - 1], count: O))
    }

    /// Argmax of the output with strict `<` (ties go to the lower class).
    var predictedClass: Int {
        var best = 0
        for o in 1..<architecture.classes where probabilities[best] < probabilities[o] { best = o }
        return best
    }

    /// Copies sample `sample`'s pixels into `input` (bytes as `Float(b) / 255`, SPEC's value).
    func loadImage(_ images: ImagePixels, sample: Int) {
        let n = architecture.input.count
        if let bytes = images.bytes {
            let source = bytes + sample * n
            var i = 0
            while i + 16 <= n {
                input.store(pcnn_pixels16(source + i), at: i)
                i += 16
            }
            while i < n {
                input[i] = Dataset.pixelTable[Int(source[i])]
                i += 1
            }
        } else {
            input.update(from: images.floats! + sample * n, count: n)
        }
    }

    /// Sets the output rule's recipe and the label for the passes that follow.
    func begin(recipe: Recipe, label: Int) {
        self.recipe = recipe
        self.label = label
    }

    func forward(_ p: UnsafePointer<Float>, recipe: Recipe) {
        self.recipe = recipe
        for pass in forwardPasses { pass.run(p, 0..<pass.items) }
    }

    func trainSample(_ images: ImagePixels, sample: Int, label: Int, _ p: UnsafePointer<Float>, recipe: Recipe) -> StepStatistics {
        trainSample(images, sample: sample, label: label, recipe: recipe) { passes, _ in
            for pass in passes { pass.run(p, 0..<pass.items) }
        }
    }

    /// One training sample whose passes `run` executes: first the forward passes, then the
    /// backward ones, each list with the index of its first pass among all of them (the layer
    /// strategies split every pass across threads or ranks; the MPI one keys its exchanges so).
    func trainSample(
        _ images: ImagePixels, sample: Int, label: Int, recipe: Recipe,
        running run: (_ passes: [LayerPass], _ firstIndex: Int) -> Void
    ) -> StepStatistics {
        loadImage(images, sample: sample)
        begin(recipe: recipe, label: label)
        run(forwardPasses, 0)
        let wrong = predictedClass != label
        run(backwardPasses, forwardPasses.count)
        return StepStatistics(lossSum: loss, misclassified: wrong ? 1 : 0, samples: 1)
    }

    func predict(_ images: ImagePixels, sample: Int, _ p: UnsafePointer<Float>, recipe: Recipe) -> Int {
        loadImage(images, sample: sample)
        forward(p, recipe: recipe)
        return predictedClass
    }

    /// The outputs of layer `l` for the last sample.
    func output(ofLayer l: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: outputs[l], count: architecture.layers[l].output.count))
    }
}
