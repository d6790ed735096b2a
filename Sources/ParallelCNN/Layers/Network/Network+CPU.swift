import _CPUVector

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the CPU engines need of a workspace: train a block of samples into `grad` (their
/// gradient sum), or predict one. The paper's specialised `SampleWorkspace` (one sample at a
/// time) and the generic `CPUNetwork` (blocks of up to `blockCapacity`) both provide it.
protocol SampleTrainer: AnyObject {
    /// The last trained block's summed ascent direction, canonical order, padded to 16 floats.
    var grad: UnsafeMutablePointer<Float> { get }
    /// The most samples `trainBlock` takes in one call.
    var blockCapacity: Int { get }
    /// Trains the samples `samples` (rows of `images`, at most `blockCapacity`) and leaves the
    /// sum of their gradients in `grad`.
    func trainBlock(
        _ images: ImagePixels, samples: UnsafeBufferPointer<Int32>, labels: UnsafeBufferPointer<UInt8>,
        _ p: UnsafePointer<Float>, recipe: Recipe
    ) -> StepStatistics
    func predict(_ images: ImagePixels, sample: Int, _ p: UnsafePointer<Float>, recipe: Recipe) -> Int
    /// The predicted classes of the consecutive samples `range` into `predictions` (one per
    /// sample, in order).
    func predict(
        _ images: ImagePixels, range: Range<Int>, _ p: UnsafePointer<Float>, recipe: Recipe,
        into predictions: UnsafeMutableBufferPointer<UInt8>)
}

/// The buffers of a block of samples for any `Architecture`, and its forward and backward
/// passes as `LayerPass`es of the fast CPU layers (`CPULayers`). A block runs as one: each
/// convolution is one matrix product over all its samples, each dense layer one product with a
/// column per sample, and the weight gradients come out summed over the block. Buffers are
/// allocated once; a block allocates nothing.
final class CPUNetwork: SampleTrainer {
    /// Samples per block of the engines' generic networks: the sums of `BatchGradient` are
    /// taken over blocks of this size, in every CPU engine alike. Eight samples give a dense
    /// layer's products 8 columns and a LeNet-5 convolution 800-6,272, and still leave 8 blocks
    /// of a batch of 64 for the data strategy's threads to share.
    static let defaultBlock = 8

    let architecture: Architecture
    let blockCapacity: Int
    /// The samples of the current block (`SampleBlock`), shared with every pass.
    let block: SampleBlock
    /// The block's images, planar `[C][n][H·W]`.
    let input: UnsafeMutablePointer<Float>
    /// Per layer: its output and the error at its output.
    let outputs: [UnsafeMutablePointer<Float>]
    let errors: [UnsafeMutablePointer<Float>]
    /// The output rule's result (sigmoid or softmax) per sample, `[n][classes]`.
    let probabilities: UnsafeMutablePointer<Float>
    /// One sample's logits and output error, gathered for the output rule.
    private let sampleLogits: UnsafeMutablePointer<Float>
    private let sampleError: UnsafeMutablePointer<Float>
    let grad: UnsafeMutablePointer<Float>
    /// Floats of `grad` (the parameter count rounded up to 16).
    let paddedParameterCount: Int
    /// The passes in the order they run: forward through the layers, then the output error and
    /// backward through the layers in reverse.
    private(set) var forwardPasses: [LayerPass] = []
    private(set) var backwardPasses: [LayerPass] = []

    /// The output rule's inputs for the current block (read by the output passes).
    private var recipe = Recipe.modern
    private var labels = [Int]()
    private(set) var loss = 0.0

    private let storage: UnsafeMutableRawPointer

    init(_ architecture: Architecture, blockCapacity: Int = CPUNetwork.defaultBlock) {
        precondition(blockCapacity >= 1)
        self.architecture = architecture
        self.blockCapacity = blockCapacity
        block = SampleBlock(capacity: blockCapacity)
        labels = Array(repeating: 0, count: blockCapacity)
        func padded(_ n: Int) -> Int { (n + 15) / 16 * 16 }
        paddedParameterCount = padded(architecture.parameterCount)
        let n = blockCapacity
        // One arena, every buffer on a 64-byte line and padded to whole vectors.
        var sizes = [
            padded(n * architecture.input.count), padded(n * architecture.classes), padded(architecture.classes),
            padded(architecture.classes), paddedParameterCount
        ]
        for (l, layer) in architecture.layers.enumerated() {
            sizes += [padded(n * layer.output.count), padded(n * layer.output.count)]
            if case .conv(_, _, let S, let P) = layer.spec {
                sizes.append(
                    CPULayers.readsInputInPlace(layer)
                        ? padded(layer.output.channels * layer.output.height * CPULayers.paddedWidth(layer.output.width))
                        : padded(n * layer.fanIn * layer.output.planeSize))
                if l > 0 { sizes.append(padded(n * layer.fanIn * layer.output.planeSize)) }
                if S == 1, P > 0 {
                    sizes.append(padded(n * layer.input.channels * (layer.input.height + 2 * P) * (layer.input.width + 2 * P)))
                }
            }
            if case .subsample(let K) = layer.spec {
                sizes += [padded(K * K * n * layer.output.count), padded(n * layer.output.count + layer.input.planeSize)]  // Int32s
            }
            if case .maxPool = layer.spec { sizes.append(padded(n * layer.output.count)) }  // Int32s, same size
            if case .dense = layer.spec, n > 1 {
                sizes.append(padded(n * layer.input.count))
                if l > 0 { sizes.append(padded(n * layer.input.count)) }
            }
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
        sampleLogits = next()
        sampleError = next()
        grad = next()
        var outputs: [UnsafeMutablePointer<Float>] = [], errors: [UnsafeMutablePointer<Float>] = []
        var buffers: [LayerBuffers] = []
        for (l, layer) in architecture.layers.enumerated() {
            let y = next(), dy = next()
            var col: UnsafeMutablePointer<Float>?, dCol: UnsafeMutablePointer<Float>?, argmax: UnsafeMutablePointer<Int32>?
            var xFlat: UnsafeMutablePointer<Float>?, dxFlat: UnsafeMutablePointer<Float>?
            var paddedInput: UnsafeMutablePointer<Float>?
            if case .conv(_, _, let S, let P) = layer.spec {
                col = next()
                if l > 0 { dCol = next() }
                if S == 1, P > 0 { paddedInput = next() }
            }
            var windowStarts: UnsafeMutablePointer<Int32>?
            if case .subsample = layer.spec {
                col = next()
                let indices = CPULayers.subsampleIndices(layer, capacity: n)
                windowStarts = UnsafeMutableRawPointer(next()).assumingMemoryBound(to: Int32.self)
                windowStarts!.update(from: indices, count: indices.count)
            }
            if case .maxPool = layer.spec { argmax = UnsafeMutableRawPointer(next()).assumingMemoryBound(to: Int32.self) }
            if case .dense = layer.spec, n > 1 {
                xFlat = next()
                if l > 0 { dxFlat = next() }
            }
            buffers.append(
                LayerBuffers(
                    layer: layer, block: block, x: l == 0 ? input : outputs[l - 1], y: y, dy: dy,
                    dx: l == 0 ? nil : errors[l - 1], grad: grad, col: col, dCol: dCol, padded: paddedInput,
                    windowStarts: windowStarts.map { UnsafePointer($0) }, argmax: argmax,
                    xFlat: xFlat, dxFlat: dxFlat))
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

    /// The last layer's outputs, the logits, `[classes][n]`.
    private var logits: UnsafeMutablePointer<Float> { outputs[outputs.count - 1] }

    /// Sigmoid or softmax of each sample's logits into `probabilities` (the reference's output rule).
    private func outputForward() {
        let O = architecture.classes, n = block.samples
        for s in 0..<n {
            for o in 0..<O { sampleLogits[o] = logits[o * n + s] }
            ReferenceLayers.outputForward(
                recipe, UnsafeBufferPointer(start: sampleLogits, count: O),
                UnsafeMutableBufferPointer(start: probabilities + s * O, count: O))
        }
    }

    /// The output error at the logits and the block's loss, summed over its samples in order.
    private func outputBackward() -> Double {
        let O = architecture.classes, n = block.samples, error = errors[errors.count - 1]
        var loss = 0.0
        for s in 0..<n {
            loss += ReferenceLayers.outputBackward(
                recipe, UnsafeBufferPointer(start: probabilities + s * O, count: O), label: labels[s],
                UnsafeMutableBufferPointer(start: sampleError, count: O))
            for o in 0..<O { error[o * n + s] = sampleError[o] }
        }
        return loss
    }

    /// Argmax of sample `s`'s output with strict `<` (ties go to the lower class).
    func predictedClass(ofSample s: Int = 0) -> Int {
        let O = architecture.classes, row = probabilities + s * O
        var best = 0
        for o in 1..<O where row[best] < row[o] { best = o }
        return best
    }

    /// Copies the pixels of `samples` into `input` (bytes as `Float(b) / 255`, SPEC's value),
    /// planar: channel `c` of block sample `s` at `(c·n + s)·H·W`.
    func loadImages(_ images: ImagePixels, samples: UnsafeBufferPointer<Int32>) {
        precondition(samples.count >= 1 && samples.count <= blockCapacity, "a block of \(samples.count) samples")
        let n = samples.count, count = architecture.input.count, C = architecture.input.channels, plane = count / C
        block.samples = n
        for (s, sample) in samples.enumerated() {
            for c in 0..<C {
                copyPixels(images, from: Int(sample) * count + c * plane, count: plane, to: input + (c * n + s) * plane)
            }
        }
    }

    /// `count` pixels of `images` from flat index `start`, as floats.
    private func copyPixels(_ images: ImagePixels, from start: Int, count: Int, to target: UnsafeMutablePointer<Float>) {
        if let bytes = images.bytes {
            let source = bytes + start
            var i = 0
            while i + 16 <= count {
                target.store(pcnn_pixels16(source + i), at: i)
                i += 16
            }
            while i < count {
                target[i] = Dataset.pixelTable[Int(source[i])]
                i += 1
            }
        } else {
            target.update(from: images.floats! + start, count: count)
        }
    }

    /// Copies sample `sample`'s pixels into `input`, as a block of one.
    func loadImage(_ images: ImagePixels, sample: Int) {
        var index = Int32(sample)
        withUnsafePointer(to: &index) { loadImages(images, samples: UnsafeBufferPointer(start: $0, count: 1)) }
    }

    /// Sets the output rule's recipe and the labels of the block's samples for the passes that follow.
    func begin(recipe: Recipe, labels: (Int) -> Int) {
        self.recipe = recipe
        for s in 0..<block.samples { self.labels[s] = labels(s) }
    }

    func forward(_ p: UnsafePointer<Float>, recipe: Recipe) {
        self.recipe = recipe
        for pass in forwardPasses { pass.run(p, 0..<pass.items) }
    }

    func trainBlock(
        _ images: ImagePixels, samples: UnsafeBufferPointer<Int32>, labels: UnsafeBufferPointer<UInt8>,
        _ p: UnsafePointer<Float>, recipe: Recipe
    ) -> StepStatistics {
        trainBlock(images, samples: samples, label: { Int(labels[Int(samples[$0])]) }, recipe: recipe) { passes, _ in
            for pass in passes { pass.run(p, 0..<pass.items) }
        }
    }

    /// One training block whose passes `run` executes: first the forward passes, then the
    /// backward ones, each list with the index of its first pass among all of them (the layer
    /// strategies split every pass across threads or ranks; the MPI one keys its exchanges so).
    /// `label(s)` is the label of the block's sample `s`.
    func trainBlock(
        _ images: ImagePixels, samples: UnsafeBufferPointer<Int32>, label: (Int) -> Int, recipe: Recipe,
        running run: (_ passes: [LayerPass], _ firstIndex: Int) -> Void
    ) -> StepStatistics {
        loadImages(images, samples: samples)
        begin(recipe: recipe, labels: label)
        run(forwardPasses, 0)
        var wrong = 0
        for s in 0..<samples.count where predictedClass(ofSample: s) != labels[s] { wrong += 1 }
        run(backwardPasses, forwardPasses.count)
        return StepStatistics(lossSum: loss, misclassified: wrong, samples: samples.count)
    }

    func predict(_ images: ImagePixels, sample: Int, _ p: UnsafePointer<Float>, recipe: Recipe) -> Int {
        loadImage(images, sample: sample)
        forward(p, recipe: recipe)
        return predictedClass()
    }

    /// A block at a time: the forward passes of up to `blockCapacity` samples at once.
    func predict(
        _ images: ImagePixels, range: Range<Int>, _ p: UnsafePointer<Float>, recipe: Recipe,
        into predictions: UnsafeMutableBufferPointer<UInt8>
    ) {
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: blockCapacity) { indices in
            var start = range.lowerBound
            while start < range.upperBound {
                let n = min(blockCapacity, range.upperBound - start)
                for s in 0..<n { indices[s] = Int32(start + s) }
                loadImages(images, samples: UnsafeBufferPointer(rebasing: indices[0..<n]))
                forward(p, recipe: recipe)
                for s in 0..<n { predictions[start - range.lowerBound + s] = UInt8(predictedClass(ofSample: s)) }
                start += n
            }
        }
    }

    /// The outputs of layer `l` for the last sample of a block of one.
    func output(ofLayer l: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: outputs[l], count: architecture.layers[l].output.count))
    }
}
