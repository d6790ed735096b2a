/// Shapes of the seed network (SPEC.md). Letters follow the SPEC's tables:
/// `C` feature maps, `K1` convolution kernel, `H1` convolution output side, `K2` subsampling
/// kernel (also its stride), `H2` subsampling output side, `O` classes.
public enum Network {
    /// Input image side (28x28 pixels).
    public static let imageSide = 28
    /// Pixels per image.
    public static let imagePixels = imageSide * imageSide
    /// Feature maps in c1 (and s1).
    public static let channels = 6
    /// c1 kernel side (5x5).
    public static let convKernel = 5
    /// c1 output side (24x24).
    public static let convSide = imageSide - convKernel + 1
    /// s1 kernel side and stride (4x4, stride 4).
    public static let poolKernel = 4
    /// s1 output side (6x6).
    public static let poolSide = convSide / poolKernel
    /// s1 outputs, the inputs of the fully connected layer (6*6*6 = 216).
    public static let poolOutputs = channels * poolSide * poolSide
    /// Output classes (digits 0...9).
    public static let classes = 10
    /// c1 outputs per channel (576); the original recipe divides c1 gradients by it.
    public static let convMapSize = convSide * convSide
}

/// The tensors of the network, in the SPEC's canonical order.
public enum TensorName: String, CaseIterable, Sendable {
    case c1Weight = "c1.w", c1Bias = "c1.b", s1Weight = "s1.w", s1Bias = "s1.b", fWeight = "f.w", fBias = "f.b"

    /// Shape as in SPEC.md.
    public var shape: [Int] {
        switch self {
        case .c1Weight: [Network.channels, Network.convKernel, Network.convKernel]
        case .c1Bias: [Network.channels]
        case .s1Weight: [Network.poolKernel, Network.poolKernel]
        case .s1Bias: [1]
        case .fWeight: [Network.classes, Network.channels, Network.poolSide, Network.poolSide]
        case .fBias: [Network.classes]
        }
    }

    public var count: Int { shape.reduce(1, *) }
}

/// All learnable floats of a network, stored flat in canonical order (`Architecture`: layer after
/// layer, weights then bias; for the paper's network c1.w, c1.b, s1.w, s1.b, f.w, f.b, 2343
/// floats) so that the SPEC's hash, checkpoints and gradient reductions all walk one contiguous
/// array. The static `Offset`, `count` and tensor subscripts describe the paper's network.
public struct Parameters: Equatable, Sendable {
    /// Offsets of each tensor inside `values`.
    public enum Offset {
        public static let c1Weight = 0
        public static let c1Bias = c1Weight + TensorName.c1Weight.count
        public static let s1Weight = c1Bias + TensorName.c1Bias.count
        public static let s1Bias = s1Weight + TensorName.s1Weight.count
        public static let fWeight = s1Bias + TensorName.s1Bias.count
        public static let fBias = fWeight + TensorName.fWeight.count
        public static let end = fBias + TensorName.fBias.count
    }

    /// Floats of the paper's network (2343).
    public static let count = Offset.end

    /// The flat parameter vector in canonical order.
    public var values: [Float]

    /// All-zero parameters of the paper's network.
    public init() { values = [Float](repeating: 0, count: Self.count) }

    /// All-zero parameters of `architecture`.
    public init(zerosFor architecture: Architecture) {
        values = [Float](repeating: 0, count: architecture.parameterCount)
    }

    public init(values: [Float]) {
        self.values = values
    }

    /// Offset of a tensor inside `values`.
    public static func offset(of tensor: TensorName) -> Int {
        switch tensor {
        case .c1Weight: Offset.c1Weight
        case .c1Bias: Offset.c1Bias
        case .s1Weight: Offset.s1Weight
        case .s1Bias: Offset.s1Bias
        case .fWeight: Offset.fWeight
        case .fBias: Offset.fBias
        }
    }

    /// The range of a tensor inside `values`.
    public static func range(of tensor: TensorName) -> Range<Int> {
        let start = offset(of: tensor)
        return start..<(start + tensor.count)
    }

    /// One tensor's values.
    public subscript(tensor: TensorName) -> ArraySlice<Float> {
        get { values[Self.range(of: tensor)] }
        set {
            precondition(newValue.count == tensor.count)
            values.replaceSubrange(Self.range(of: tensor), with: newValue)
        }
    }

    /// The first value that is NaN or infinite, named by its tensor in `architecture` and its
    /// index within it.
    public func firstNonFinite(in architecture: Architecture) -> (tensor: String, index: Int, value: Float)? {
        guard let i = values.firstIndex(where: { !$0.isFinite }) else { return nil }
        if architecture.isPaper {
            let tensor = TensorName.allCases.last { Self.offset(of: $0) <= i }!
            return (tensor.rawValue, i - Self.offset(of: tensor), values[i])
        }
        let tensor = architecture.tensors.first { $0.range.contains(i) }!
        return (tensor.name, i - tensor.range.lowerBound, values[i])
    }

    /// SPEC's parameter hash: 64-bit FNV-1a over the little-endian bytes of the float32
    /// parameters in canonical order.
    public var hash: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for v in values {
            var bits = v.bitPattern.littleEndian
            for _ in 0..<4 {
                h ^= UInt64(bits & 0xff)
                h = h &* 0x0000_0100_0000_01b3
                bits >>= 8
            }
        }
        return h
    }

    /// The hash as the 16 lowercase hex digits the CLI prints.
    public var hashString: String { Self.hexString(hash) }

    public static func hexString(_ h: UInt64) -> String {
        let s = String(h, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
