/// How the parameters are drawn. Both fill every value with `0.5 - u`, `u` uniform in [0, 1],
/// in the SPEC's order: layer by layer (c1, s1, f), per output neuron its bias then its weights.
public enum Initialization: Equatable, Sendable {
    /// glibc `rand()` with its default seed 1, exactly as the original program.
    case original
    /// A portable 64-bit generator (SplitMix64) seeded with `seed`.
    case seeded(UInt64)

    /// Draws a fresh parameter set.
    public func makeParameters() -> Parameters {
        switch self {
        case .original:
            var rng = GlibcRandom(seed: 1)
            return Self.fill { 0.5 - Float(rng.next()) / Float(GlibcRandom.randMax) }
        case .seeded(let seed):
            var rng = SplitMix64(seed: seed)
            return Self.fill { 0.5 - rng.nextUnitFloat() }
        }
    }

    /// Draws a fresh parameter set for `architecture`. The paper's network gets SPEC's values
    /// (`makeParameters()`). Any other network draws in the same order (layer by layer, per
    /// output unit its bias then its weights; a subsampling layer is one unit) from the same
    /// generator, scaled to the layer's fan-in: weights uniform in ±√(6/fan-in) before a ReLU
    /// (He) and ±√(3/fan-in) otherwise (LeCun), biases in ±1/√fan-in. SPEC's ±0.5 would saturate
    /// a layer with a large fan-in from the first step.
    public func makeParameters(for architecture: Architecture) -> Parameters {
        if architecture.isPaper { return makeParameters() }
        var p = Parameters(zerosFor: architecture)
        let draw: () -> Float
        switch self {
        case .original:
            var rng = GlibcRandom(seed: 1)
            draw = { 0.5 - Float(rng.next()) / Float(GlibcRandom.randMax) }
        case .seeded(let seed):
            var rng = SplitMix64(seed: seed)
            draw = { 0.5 - rng.nextUnitFloat() }
        }
        for (l, layer) in architecture.layers.enumerated() where layer.hasParameters {
            let fanIn = Float(layer.fanIn)
            var beforeReLU = false
            if l + 1 < architecture.layers.count, case .activation(.relu) = architecture.layers[l + 1].spec { beforeReLU = true }
            let weightBound = ((beforeReLU ? 6 : 3) / fanIn).squareRoot(), biasBound = 1 / fanIn.squareRoot()
            let units = layer.biasCount, perUnit = layer.weightCount / units
            for n in 0..<units {
                p.values[layer.biasOffset + n] = 2 * biasBound * draw()
                for j in 0..<perUnit { p.values[layer.weightOffset + n * perUnit + j] = 2 * weightBound * draw() }
            }
        }
        return p
    }

    private static func fill(_ draw: () -> Float) -> Parameters {
        var p = Parameters()
        // (bias offset, weight offset, neurons, weights per neuron) for c1, s1, f.
        let layers = [
            (
                Parameters.Offset.c1Bias, Parameters.Offset.c1Weight, Network.channels,
                Network.convKernel * Network.convKernel
            ),
            (Parameters.Offset.s1Bias, Parameters.Offset.s1Weight, 1, Network.poolKernel * Network.poolKernel),
            (Parameters.Offset.fBias, Parameters.Offset.fWeight, Network.classes, Network.poolOutputs)
        ]
        for (biasOffset, weightOffset, neurons, fanIn) in layers {
            for n in 0..<neurons {
                p.values[biasOffset + n] = draw()
                for j in 0..<fanIn { p.values[weightOffset + n * fanIn + j] = draw() }
            }
        }
        return p
    }
}

/// glibc's default `random()` (TYPE_3 additive feedback generator, r[i] = r[i-3] + r[i-31]),
/// which `rand()` returns. Reimplemented so the original initialisation does not depend on, or
/// disturb, the process-wide C generator.
public struct GlibcRandom: Sendable {
    public static let randMax: Int32 = 2_147_483_647
    private static let lag = 34
    /// The last 34 values of the sequence r, indexed by i mod 34.
    private var ring = [UInt32](repeating: 0, count: GlibcRandom.lag)
    private var i = 0

    public init(seed: UInt32) {
        var word = Int32(bitPattern: seed == 0 ? 1 : seed)
        ring[0] = UInt32(bitPattern: word)
        for k in 1..<31 {
            // r[k] = 16807 * r[k-1] mod (2^31 - 1), computed without overflow as glibc does.
            let hi = word / 127_773
            let lo = word % 127_773
            word = 16_807 &* lo &- 2_836 &* hi
            if word < 0 { word &+= 2_147_483_647 }
            ring[k] = UInt32(bitPattern: word)
        }
        for k in 31..<34 { ring[k] = ring[k - 31] }
        i = 34
        // glibc discards r[34] ... r[343]; rand() starts at r[344].
        for _ in 0..<310 { _ = advance() }
    }

    private mutating func advance() -> UInt32 {
        let value = ring[(i - 31) % Self.lag] &+ ring[(i - 3) % Self.lag]
        ring[i % Self.lag] = value
        i += 1
        return value
    }

    /// Next value in 0...RAND_MAX, as glibc `rand()`.
    public mutating func next() -> Int32 { Int32(bitPattern: advance() >> 1) }
}

/// SplitMix64: tiny, portable and good enough for initial weights and epoch shuffles.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 random bits.
    public mutating func nextUnitFloat() -> Float { Float(next() >> 40) * 0x1p-24 }
}
