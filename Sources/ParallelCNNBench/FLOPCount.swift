import ParallelCNN
// Shape letters (SPEC.md).
private let C = Double(Network.channels)  // 6 feature maps
private let K1 = Double(Network.convKernel)  // 5x5 c1 kernel
private let M1 = Double(Network.convMapSize)  // 576 c1 outputs per map
private let K2 = Double(Network.poolKernel)  // 4x4 s1 kernel
private let S = Double(Network.poolOutputs)  // 216 s1 outputs
private let O = Double(Network.classes)  // 10 outputs
private let P = Double(Parameters.count)  // 2343 parameters

/// Floating-point operations of one training sample of the original recipe, by phase: the one
/// place the bench counts work, so every engine's GFLOP/s divides the same numerator.
///
/// Conventions: a multiply-add is 2 FLOPs; a sigmoid `1 / (1 + exp(-v))` is 4 (exp counted as
/// one); `o · (1 - o)` is 2. The count is of the SPEC's arithmetic, whatever an engine does:
/// terms an engine skips (the sequential c1 kernels skip blank input rows) still count, and the
/// reference engine's per-term divisions (a summation-order detail) do not.
public enum FLOPCount {
    public static func perSample(_ phase: LayerPhase) -> Double {
        switch phase {
        // Convolution 6x576x25 multiply-adds, bias, sigmoid.
        case .c1Forward: 2 * C * M1 * K1 * K1 + C * M1 + 4 * C * M1
        // 216 outputs x 16 multiply-adds, bias, sigmoid.
        case .s1Forward: 2 * S * K2 * K2 + S + 4 * S
        // 10 x 216 multiply-adds, bias, sigmoid.
        case .fForward: 2 * O * S + O + 4 * O
        // Output error, loss (squares, sum, root), weight gradient δ·s1out.
        case .fBackward: O + 2 * O + 1 + O * S
        // Error through f (10 multiply-adds per output) times o(1-o), weight gradient, bias sum.
        case .s1Backward: 2 * S * O + 3 * S + 2 * K2 * K2 * S + S
        // Error w·e·o(1-o), weight gradient 150 taps x 576 multiply-adds, bias sums.
        case .c1Backward: 4 * C * M1 + 2 * C * K1 * K1 * M1 + C * M1
        // θ += dt · g.
        case .update: 2 * P
        case .network: LayerPhase.parts.map(perSample).reduce(0, +)
        }
    }

    /// FLOPs of one training sample, all phases.
    public static var trainingSample: Double { perSample(.network) }
}
