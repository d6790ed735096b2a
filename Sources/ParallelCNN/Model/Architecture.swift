import Foundation

/// One layer of an `Architecture`: its description, its shapes, and where its tensors lie in the
/// flat parameter vector.
public struct ArchitectureLayer: Equatable, Sendable {
    public let spec: LayerSpec
    /// The name of its tensors (`conv1`, `subsample1`, `dense2`); activations and pools, which
    /// hold no tensors, are named the same way (`relu3`, `maxpool1`).
    public let name: String
    public let input: ImageShape
    public let output: ImageShape
    /// Offset and count of the weights in the parameter vector (count 0 for a layer without).
    public let weightOffset: Int
    public let weightCount: Int
    /// The weight tensor's shape, PyTorch's: conv `[F, C, K, K]`, subsample `[K, K]`, dense `[O, I]`.
    public let weightShape: [Int]
    public let biasOffset: Int
    public let biasCount: Int

    public var hasParameters: Bool { weightCount > 0 }
    /// Values each weight of the layer multiplies per sample (a filter's inputs, a unit's inputs).
    public var fanIn: Int {
        switch spec {
        case .conv(_, let k, _, _): input.channels * k * k
        case .subsample(let k): k * k
        case .dense: input.count
        default: 0
        }
    }
}

/// A network description resolved against an input shape and a number of classes: every layer's
/// shapes, the parameter layout and the work per sample. Building one checks the description:
/// a kernel larger than its (padded) input, a layer whose output is empty, a last layer that is
/// not `dense` with one output per class, too many parameters or activations.
///
/// Parameters are stored flat, layer after layer, each layer's weights then its bias; for the
/// paper's network that is SPEC's canonical order (c1.w, c1.b, s1.w, s1.b, f.w, f.b).
public struct Architecture: Equatable, Sendable, CustomStringConvertible {
    public let network: NetworkDescription
    public let input: ImageShape
    public let classes: Int
    public let layers: [ArchitectureLayer]
    public let parameterCount: Int
    /// Floats of every layer's output for one sample (the input not included).
    public let activationCount: Int

    /// The paper's network on MNIST (SPEC.md).
    public static let paper = try! Architecture(.paper, input: .mnist)

    public init(_ network: NetworkDescription, input: ImageShape, classes: Int = 10) throws(NetworkDescriptionError) {
        self.network = network
        self.input = input
        self.classes = classes
        var layers: [ArchitectureLayer] = []
        var shape = input
        var offset = 0
        var activations = 0
        var counters: [String: Int] = [:]
        for (i, spec) in network.layers.enumerated() {
            func fail(_ message: String) -> NetworkDescriptionError {
                NetworkDescriptionError(message: message + " (its input is \(shape))", layer: i + 1, token: spec.text)
            }
            var weights = 0, weightShape: [Int] = [], biases = 0
            let output: ImageShape
            switch spec {
            case .conv(let filters, let k, let stride, let pad):
                let (h, w) = (shape.height + 2 * pad, shape.width + 2 * pad)
                guard k <= h, k <= w else { throw fail("the \(k)x\(k) kernel is larger than its padded \(h)x\(w) input") }
                output = ImageShape(channels: filters, height: (h - k) / stride + 1, width: (w - k) / stride + 1)
                weights = filters * shape.channels * k * k
                weightShape = [filters, shape.channels, k, k]
                biases = filters
            case .subsample(let k):
                guard k <= shape.height, k <= shape.width else { throw fail("the \(k)x\(k) kernel is larger than its input") }
                output = ImageShape(channels: shape.channels, height: shape.height / k, width: shape.width / k)
                weights = k * k
                weightShape = [k, k]
                biases = 1
            case .avgPool(let size, let stride), .maxPool(let size, let stride):
                guard size <= shape.height, size <= shape.width else { throw fail("the \(size)x\(size) window is larger than its input") }
                output = ImageShape(
                    channels: shape.channels, height: (shape.height - size) / stride + 1,
                    width: (shape.width - size) / stride + 1)
            case .dense(let outputs):
                output = ImageShape(channels: outputs, height: 1, width: 1)
                weights = outputs * shape.count
                weightShape = [outputs, shape.count]
                biases = outputs
            case .activation:
                guard i > 0 else { throw fail("an activation cannot be the first layer: it would change the input") }
                output = shape
            }
            guard output.count > 0 else { throw fail("the layer's output is empty") }
            let kind = spec.keyword
            counters[kind, default: 0] += 1
            layers.append(
                ArchitectureLayer(
                    spec: spec, name: "\(kind)\(counters[kind]!)", input: shape, output: output,
                    weightOffset: offset, weightCount: weights, weightShape: weightShape,
                    biasOffset: offset + weights, biasCount: biases))
            offset += weights + biases
            activations += output.count
            guard offset <= NetworkDescription.maximumParameters else {
                throw fail("the network has more than \(NetworkDescription.maximumParameters) parameters")
            }
            guard activations <= NetworkDescription.maximumActivations else {
                throw fail("the network has more than \(NetworkDescription.maximumActivations) activations per sample")
            }
            shape = output
        }
        guard case .dense(let outputs)? = network.layers.last else {
            throw NetworkDescriptionError(
                message:
                    "the last layer must be \"dense \(classes)\", the output layer; the recipe chooses its activation (sigmoid or softmax)",
                layer: network.layers.count, token: network.layers.last?.text)
        }
        guard outputs == classes else {
            throw NetworkDescriptionError(
                message: "the output layer needs \(classes) outputs, one per class, not \(outputs)",
                layer: network.layers.count, token: network.layers.last?.text)
        }
        self.layers = layers
        parameterCount = offset
        activationCount = activations
    }

    public var description: String { "\(network) on \(input)" }

    /// Whether this is SPEC's network on MNIST-shaped input, which engines run on their exact,
    /// specialised code.
    public var isPaper: Bool { network == .paper && input == .mnist && classes == 10 }

    /// The layers that hold tensors.
    public var parameterLayers: [ArchitectureLayer] { layers.filter(\.hasParameters) }

    /// Every tensor, in canonical order: name (`conv1.weight`), shape and range in the parameter vector.
    public var tensors: [(name: String, shape: [Int], range: Range<Int>)] {
        parameterLayers.flatMap { layer in
            [
                (layer.name + ".weight", layer.weightShape, layer.weightOffset..<(layer.weightOffset + layer.weightCount)),
                (layer.name + ".bias", [layer.biasCount], layer.biasOffset..<(layer.biasOffset + layer.biasCount))
            ]
        }
    }

    /// Whether parameter `index` is a bias.
    public func isBias(_ index: Int) -> Bool {
        parameterLayers.contains { ($0.biasOffset..<($0.biasOffset + $0.biasCount)).contains(index) }
    }

    // MARK: Work

    /// Floating-point operations of one training sample (forward, backward, update), with the
    /// bench's conventions (`FLOPCount`): a multiply-add is 2, a sigmoid or tanh 4, a ReLU 1, an
    /// activation's derivative 2. The first layer computes no error for the input.
    public var flopsPerTrainingSample: Double {
        var flops = 0.0
        for (i, layer) in layers.enumerated() {
            let out = Double(layer.output.count), inCount = Double(layer.input.count)
            let multiplyAdds: Double =
                switch layer.spec {
                case .conv(_, let k, _, _): out * Double(layer.input.channels * k * k)
                case .subsample(let k): out * Double(k * k)
                case .dense: out * inCount
                default: 0
                }
            switch layer.spec {
            case .conv, .subsample, .dense:
                // Forward, weight gradient, input error (not for the first layer); bias and its gradient.
                flops += 2 * multiplyAdds * (i == 0 ? 2 : 3) + 2 * out
            case .avgPool(let size, _), .maxPool(let size, _):
                flops += 2 * out * Double(size * size)
            case .activation(let a):
                flops += out * ((a == .relu ? 1 : 4) + 2)
            }
        }
        // Output rule (sigmoid or softmax, error) and the update.
        flops += 6 * Double(classes) + 2 * Double(parameterCount)
        return flops
    }

    /// Floating-point operations of one forward pass (prediction).
    public var flopsPerForward: Double {
        var flops = 0.0
        for layer in layers {
            let out = Double(layer.output.count)
            switch layer.spec {
            case .conv(_, let k, _, _): flops += 2 * out * Double(layer.input.channels * k * k) + out
            case .subsample(let k): flops += 2 * out * Double(k * k) + out
            case .dense: flops += 2 * out * Double(layer.input.count) + out
            case .avgPool(let size, _), .maxPool(let size, _): flops += out * Double(size * size)
            case .activation(let a): flops += out * (a == .relu ? 1 : 4)
            }
        }
        return flops
    }

    // MARK: The recipe's factors

    /// The original recipe's divisor of a layer's gradient terms, generalised from SPEC: a
    /// convolution's weight and bias terms are divided by its output map size (576 for c1), the
    /// subsampling bias by its number of outputs (216 for s1); everything else by 1. The modern
    /// recipe divides nothing.
    func gradientScale(_ layer: ArchitectureLayer, bias: Bool, recipe: Recipe) -> Float {
        guard recipe == .original else { return 1 }
        switch layer.spec {
        case .conv: return 1 / Float(layer.output.planeSize)
        case .subsample: return bias ? 1 / Float(layer.output.count) : 1
        default: return 1
        }
    }

    /// The original recipe's step factor at batch B > 1 (`Recipe.stepFactor`), generalised: a
    /// convolution's tensors step `min(4B, map size)` times further, undoing at most its divisor.
    func stepFactor(_ layer: ArchitectureLayer, recipe: Recipe, batchSize: Int) -> Float {
        guard recipe == .original, batchSize > 1, case .conv = layer.spec else { return 1 }
        return Float(min(4 * batchSize, layer.output.planeSize))
    }

    /// Per parameter, the factor `scale` of `UpdateRule` (divisor times step factor).
    public func scaleVector(recipe: Recipe, batchSize: Int) -> [Float] {
        perParameter { layer, bias in
            gradientScale(layer, bias: bias, recipe: recipe) * stepFactor(layer, recipe: recipe, batchSize: batchSize)
        }
    }

    /// Per parameter, the step factor alone (for engines that apply the divisors themselves).
    public func stepFactorVector(recipe: Recipe, batchSize: Int) -> [Float] {
        perParameter { layer, _ in stepFactor(layer, recipe: recipe, batchSize: batchSize) }
    }

    private func perParameter(_ value: (ArchitectureLayer, Bool) -> Float) -> [Float] {
        var result = [Float](repeating: 1, count: parameterCount)
        for layer in parameterLayers {
            let w = value(layer, false), b = value(layer, true)
            for i in layer.weightOffset..<(layer.weightOffset + layer.weightCount) { result[i] = w }
            for i in layer.biasOffset..<(layer.biasOffset + layer.biasCount) { result[i] = b }
        }
        return result
    }

    // MARK: Metadata

    /// Checkpoint metadata keys.
    public static let networkKey = "network"
    public static let inputKey = "input_shape"

    /// The metadata that records this architecture in a checkpoint.
    public var metadata: [String: String] { [Self.networkKey: network.text, Self.inputKey: input.description] }

    /// The architecture a checkpoint's metadata records; a checkpoint without it (written before
    /// networks could be described) holds the paper's network on MNIST.
    public static func from(metadata: [String: String]) throws -> Architecture {
        guard let text = metadata[networkKey] else { return .paper }
        let network = try NetworkDescription.named(text)
        var input = ImageShape.mnist
        if let shape = metadata[inputKey] {
            let parts = shape.split(separator: "x").compactMap { Int($0) }
            guard parts.count == 3, parts.allSatisfy({ $0 >= 1 && $0 <= NetworkDescription.maximumSide }) else {
                throw NetworkDescriptionError(message: "the checkpoint's input shape \"\(shape)\" is not CxHxW")
            }
            input = ImageShape(channels: parts[0], height: parts[1], width: parts[2])
        }
        return try Architecture(network, input: input)
    }
}
