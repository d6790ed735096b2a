/// The parts of a training step that `T4` splits an epoch into. A GPU engine uses the same names
/// for its kernels, so its rows sit beside the CPU engines' in the per-layer table and chart.
public enum LayerPhase: String, Codable, Sendable, CaseIterable {
    case c1Forward = "c1.forward", s1Forward = "s1.forward", fForward = "f.forward"
    case fBackward = "f.backward", s1Backward = "s1.backward", c1Backward = "c1.backward"
    case update
    /// The whole training step (a network row).
    case network

    /// The paper's layer name for the layer of this phase (`nil` for the update and the network).
    public var layer: String? {
        switch self {
        case .c1Forward, .c1Backward: "c1"
        case .s1Forward, .s1Backward: "s1"
        case .fForward, .fBackward: "f"
        case .update, .network: nil
        }
    }

    /// The phases that add up to one training step, in the order they run.
    public static let parts: [LayerPhase] = [.c1Forward, .s1Forward, .fForward, .fBackward, .s1Backward, .c1Backward, .update]
}
