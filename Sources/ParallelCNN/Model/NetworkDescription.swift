import Foundation

/// The shape of one image or activation: `C` channels of `H` rows by `W` columns, stored
/// `[c][y][x]` row-major.
public struct ImageShape: Hashable, Sendable, CustomStringConvertible {
    public var channels: Int
    public var height: Int
    public var width: Int

    public init(channels: Int, height: Int, width: Int) {
        self.channels = channels
        self.height = height
        self.width = width
    }

    /// MNIST and Fashion-MNIST: 1×28×28.
    public static let mnist = ImageShape(channels: 1, height: 28, width: 28)
    /// CIFAR-10: 3×32×32.
    public static let cifar10 = ImageShape(channels: 3, height: 32, width: 32)

    /// Values per image.
    public var count: Int { channels * height * width }
    /// Values per channel.
    public var planeSize: Int { height * width }

    public var description: String { "\(channels)x\(height)x\(width)" }
}

/// A hidden layer's non-linearity.
public enum Activation: String, CaseIterable, Sendable {
    case sigmoid, tanh, relu
}

/// One layer of a network description, before shapes are known.
public enum LayerSpec: Equatable, Sendable {
    /// `filters` kernels of `kernel`×`kernel`×(input channels), cross-correlation, one bias per
    /// filter; the input is padded with `padding` zeros on every side.
    case conv(filters: Int, kernel: Int, stride: Int, padding: Int)
    /// The paper's learnable subsampling (its `s1`): ONE `kernel`×`kernel` weight kernel and one
    /// bias shared by every channel, stride `kernel`.
    case subsample(kernel: Int)
    /// Mean of each `size`×`size` window, taken every `stride`.
    case avgPool(size: Int, stride: Int)
    /// Maximum of each window; the gradient goes to the first maximum in row-major order.
    case maxPool(size: Int, stride: Int)
    /// Fully connected: `outputs` units, each over every input value (`[c][y][x]` order).
    case dense(outputs: Int)
    /// An element-wise non-linearity.
    case activation(Activation)

    /// The layer's keyword in a description.
    public var keyword: String {
        switch self {
        case .conv: "conv"
        case .subsample: "subsample"
        case .avgPool: "avgpool"
        case .maxPool: "maxpool"
        case .dense: "dense"
        case .activation(let a): a.rawValue
        }
    }

    /// The layer in description syntax (without an attached activation).
    public var text: String {
        switch self {
        case .conv(let f, let k, let s, let p):
            "conv \(f) \(k)x\(k)" + (s != 1 ? " stride=\(s)" : "") + (p != 0 ? " pad=\(p)" : "")
        case .subsample(let k): "subsample \(k)x\(k)"
        case .avgPool(let size, let stride): "avgpool \(size)x\(size)" + (stride != size ? " stride=\(stride)" : "")
        case .maxPool(let size, let stride): "maxpool \(size)x\(size)" + (stride != size ? " stride=\(stride)" : "")
        case .dense(let n): "dense \(n)"
        case .activation(let a): a.rawValue
        }
    }
}

/// Why a network description cannot be used. `column` counts characters of the description
/// from 1; `token` is the offending word.
public struct NetworkDescriptionError: Error, CustomStringConvertible, Equatable, Sendable {
    public var message: String
    /// The layer (1-based) the error is in, if it is in one.
    public var layer: Int?
    public var token: String?
    public var column: Int?

    public var description: String {
        var where_ = ""
        if let layer { where_ += "layer \(layer)" }
        if let token { where_ += (where_.isEmpty ? "" : ", ") + "at \"\(token)\"" }
        if let column { where_ += " (column \(column))" }
        return "network description: " + (where_.isEmpty ? "" : where_ + ": ") + message
    }
}

/// A network as the user writes it: layers in order, each taking the output shape of the one
/// before. The input shape comes from the data set and the last layer must be `dense` with one
/// output per class; the recipe applies the output rule (sigmoid with SPEC's error for
/// `original`, softmax cross-entropy for `modern`).
///
/// Syntax: layers separated by `;` or new lines, `#` starts a comment. A layer is a keyword,
/// positional values and `key=value` options, optionally ended by an activation:
/// ```
/// conv F KxK [stride=S] [pad=P] [act]    F filters of K×K (K alone also works)
/// subsample KxK [act]                    the paper's shared learnable subsampling
/// avgpool KxK [stride=S]                 stride defaults to K
/// maxpool KxK [stride=S]
/// dense N [act]
/// sigmoid | tanh | relu                  an activation on its own
/// ```
/// The paper's network is `conv 6 5x5 sigmoid; subsample 4x4 sigmoid; dense 10`.
public struct NetworkDescription: Equatable, Sendable, CustomStringConvertible {
    public var layers: [LayerSpec]
    /// The preset this description came from, if any.
    public var presetName: String?

    public init(layers: [LayerSpec], presetName: String? = nil) {
        self.layers = layers
        self.presetName = presetName
    }

    public static func == (a: Self, b: Self) -> Bool { a.layers == b.layers }

    /// The canonical text: activations attached to the layer they follow.
    public var text: String {
        var parts: [String] = []
        for (i, layer) in layers.enumerated() {
            if case .activation(let a) = layer, i > 0, layers[i - 1].takesAttachedActivation {
                parts[parts.count - 1] += " " + a.rawValue
            } else {
                parts.append(layer.text)
            }
        }
        return parts.joined(separator: "; ")
    }

    /// The preset's name, or the canonical text.
    public var description: String { presetName ?? text }

    /// Upper bounds checked when a description is resolved (`Architecture`).
    public static let maximumLayers = 64
    public static let maximumParameters = 16_000_000
    /// Floats of all activations of one sample.
    public static let maximumActivations = 16_000_000
    public static let maximumSide = 4096

    // MARK: Presets

    /// The paper's network (SPEC.md), the default.
    public static let paper = preset("paper", "conv 6 5x5 sigmoid; subsample 4x4 sigmoid; dense 10")

    /// Every preset, in the order `pcnn nets` lists them.
    public static let presets: [NetworkDescription] = [
        paper,
        preset("paper-c16", "conv 16 5x5 sigmoid; subsample 4x4 sigmoid; dense 10"),
        preset("paper-c32", "conv 32 5x5 sigmoid; subsample 4x4 sigmoid; dense 10"),
        preset("paper-c64", "conv 64 5x5 sigmoid; subsample 4x4 sigmoid; dense 10"),
        preset("paper-c128", "conv 128 5x5 sigmoid; subsample 4x4 sigmoid; dense 10"),
        // LeCun et al. 1998, with padding 2 so that a 28×28 image becomes C1's 28×28 maps
        // (LeNet-5 read 32×32 inputs); ReLU and max pooling as in today's usual form.
        preset("lenet5", "conv 6 5x5 pad=2 relu; maxpool 2x2; conv 16 5x5 relu; maxpool 2x2; dense 120 relu; dense 84 relu; dense 10"),
        // The 1998 form: tanh and average pooling.
        preset("lenet5-tanh", "conv 6 5x5 pad=2 tanh; avgpool 2x2; conv 16 5x5 tanh; avgpool 2x2; dense 120 tanh; dense 84 tanh; dense 10")
    ]

    private static func preset(_ name: String, _ text: String) -> NetworkDescription {
        var description = try! parse(text)
        description.presetName = name
        return description
    }

    /// A preset by name, or a description parsed from `text`.
    public static func named(_ text: String) throws(NetworkDescriptionError) -> NetworkDescription {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if let preset = presets.first(where: { $0.presetName == trimmed }) { return preset }
        if !trimmed.contains(where: { $0 == " " || $0 == ";" || $0 == "\n" }), LayerSpec.keywords.contains(trimmed) == false {
            throw NetworkDescriptionError(
                message:
                    "no preset named \"\(trimmed)\" (presets: \(presets.compactMap(\.presetName).joined(separator: ", "))); a description has layers such as \"conv 6 5x5 relu; dense 10\"",
                token: trimmed, column: 1)
        }
        var description = try parse(text)
        // A description equal to a preset is that preset (so `paper` written out is the paper's network).
        if let preset = presets.first(where: { $0 == description }) { description.presetName = preset.presetName }
        return description
    }

    // MARK: Parsing

    /// Parses the syntax above. Shapes are checked later, against an input (`Architecture`).
    public static func parse(_ text: String) throws(NetworkDescriptionError) -> NetworkDescription {
        var layers: [LayerSpec] = []
        var layerNumber = 0
        for statement in Self.statements(text) {
            layerNumber += 1
            var tokens = statement.tokens
            let head = tokens.removeFirst()
            func fail(_ message: String, _ token: Token? = nil) -> NetworkDescriptionError {
                let t = token ?? head
                return NetworkDescriptionError(message: message, layer: layerNumber, token: t.text, column: t.column)
            }
            // An activation word after the layer's values applies to the layer (written last; found
            // anywhere, so that a stray token after it is the one an error points at).
            var activation: Activation?
            if let i = tokens.firstIndex(where: { Activation(rawValue: $0.text) != nil }) {
                activation = Activation(rawValue: tokens[i].text)
                tokens.remove(at: i)
                if let again = tokens.first(where: { Activation(rawValue: $0.text) != nil }) {
                    throw fail("a layer takes one activation", again)
                }
            }
            var positional: [Token] = []
            var options: [String: Token] = [:]
            for token in tokens {
                if let eq = token.text.firstIndex(of: "=") {
                    let key = String(token.text[..<eq])
                    let value = Token(
                        text: String(token.text[token.text.index(after: eq)...]),
                        column: token.column + key.count + 1)
                    guard options[key] == nil else { throw fail("option \"\(key)\" given twice", token) }
                    options[key] = value
                } else {
                    positional.append(token)
                }
            }
            func integer(_ token: Token, _ what: String, minimum: Int) throws(NetworkDescriptionError) -> Int {
                guard let n = Int(token.text) else { throw fail("\(what) must be a whole number", token) }
                guard n >= minimum else { throw fail("\(what) must be at least \(minimum), got \(n)", token) }
                guard n <= Self.maximumSide * 16 else {
                    throw fail("\(what) \(n) is larger than the limit of \(Self.maximumSide * 16)", token)
                }
                return n
            }
            func square(_ token: Token, _ what: String) throws(NetworkDescriptionError) -> Int {
                let parts = token.text.split(separator: "x", omittingEmptySubsequences: false)
                guard parts.count <= 2 else { throw fail("\(what) must be written K or KxK", token) }
                let side = try integer(Token(text: String(parts[0]), column: token.column), what, minimum: 1)
                if parts.count == 2 {
                    let other = try integer(Token(text: String(parts[1]), column: token.column + parts[0].count + 1), what, minimum: 1)
                    guard other == side else { throw fail("\(what) must be square (KxK), got \(token.text)", token) }
                }
                return side
            }
            func expectPositional(_ count: Int, _ usage: String) throws(NetworkDescriptionError) {
                if positional.count > count {
                    let extra = positional[count]
                    let isLayer = ["conv", "subsample", "avgpool", "maxpool", "dense"].contains(extra.text)
                    throw fail(
                        isLayer ? "\"\(extra.text)\" starts another layer: end this one with \";\"" : "unexpected value; usage: \(usage)",
                        extra)
                }
                if positional.count < count { throw fail("missing value; usage: \(usage)") }
            }
            func option(_ key: String, default value: Int, minimum: Int) throws(NetworkDescriptionError) -> Int {
                guard let token = options.removeValue(forKey: key) else { return value }
                return try integer(token, key, minimum: minimum)
            }
            func rejectUnknownOptions() throws(NetworkDescriptionError) {
                if let (key, token) = options.min(by: { $0.value.column < $1.value.column }) {
                    throw fail("unknown option \"\(key)\" for \(head.text)", Token(text: key, column: token.column - key.count - 1))
                }
            }

            let layer: LayerSpec
            switch head.text {
            case "conv":
                let usage = "conv FILTERS KxK [stride=S] [pad=P] [sigmoid|tanh|relu]"
                try expectPositional(2, usage)
                let filters = try integer(positional[0], "the number of filters", minimum: 1)
                let kernel = try square(positional[1], "the kernel size")
                let stride = try option("stride", default: 1, minimum: 1)
                let padToken = options["pad"]
                let padding = try option("pad", default: 0, minimum: 0)
                guard padding < kernel else { throw fail("pad=\(padding) must be smaller than the kernel (\(kernel))", padToken) }
                layer = .conv(filters: filters, kernel: kernel, stride: stride, padding: padding)
            case "subsample":
                try expectPositional(1, "subsample KxK [sigmoid|tanh|relu]")
                layer = .subsample(kernel: try square(positional[0], "the kernel size"))
            case "avgpool", "maxpool":
                try expectPositional(1, "\(head.text) KxK [stride=S]")
                let size = try square(positional[0], "the window size")
                let stride = try option("stride", default: size, minimum: 1)
                layer = head.text == "avgpool" ? .avgPool(size: size, stride: stride) : .maxPool(size: size, stride: stride)
            case "dense":
                try expectPositional(1, "dense OUTPUTS [sigmoid|tanh|relu]")
                layer = .dense(outputs: try integer(positional[0], "the number of outputs", minimum: 1))
            default:
                if let a = Activation(rawValue: head.text) {
                    try expectPositional(0, a.rawValue)
                    layer = .activation(a)
                } else {
                    throw fail("unknown layer \"\(head.text)\"; layers are conv, subsample, avgpool, maxpool, dense, sigmoid, tanh, relu")
                }
            }
            try rejectUnknownOptions()
            if activation != nil, case .activation = layer { throw fail("an activation cannot take another activation") }
            if activation != nil, case .avgPool = layer { throw fail("a pooling layer takes no activation; write it as its own layer") }
            if activation != nil, case .maxPool = layer { throw fail("a pooling layer takes no activation; write it as its own layer") }
            layers.append(layer)
            if let activation { layers.append(.activation(activation)) }
            guard layers.count <= maximumLayers else { throw fail("more than \(maximumLayers) layers") }
        }
        guard !layers.isEmpty else {
            throw NetworkDescriptionError(message: "the description has no layers; for example \"conv 6 5x5 relu; dense 10\"")
        }
        return NetworkDescription(layers: layers)
    }

    struct Token {
        var text: String
        var column: Int
    }

    private struct Statement {
        var tokens: [Token]
    }

    /// The non-empty statements of `text`, with each token's column.
    private static func statements(_ text: String) -> [Statement] {
        var result: [Statement] = []
        var tokens: [Token] = []
        var current = ""
        var start = 0
        var inComment = false
        func endToken() {
            if !current.isEmpty { tokens.append(Token(text: current.lowercased(), column: start)) }
            current = ""
        }
        func endStatement() {
            endToken()
            if !tokens.isEmpty { result.append(Statement(tokens: tokens)) }
            tokens = []
        }
        for (i, ch) in text.enumerated() {
            let column = i + 1
            if ch == "\n" { inComment = false; endStatement(); continue }
            if inComment { continue }
            switch ch {
            case "#": inComment = true; endToken()
            case ";": endStatement()
            case " ", "\t", "\r", ",": endToken()
            default:
                if current.isEmpty { start = column }
                current.append(ch)
            }
        }
        endStatement()
        return result
    }
}

extension LayerSpec {
    /// Whether an activation that follows this layer is written on its line.
    var takesAttachedActivation: Bool {
        switch self {
        case .conv, .subsample, .dense: true
        case .avgPool, .maxPool, .activation: false
        }
    }

    /// Every layer keyword.
    static let keywords: Set<String> = Set(["conv", "subsample", "avgpool", "maxpool", "dense"] + Activation.allCases.map(\.rawValue))
}
