#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The plain-loop version of every layer's passes: the oracle for any network. Each layer type
/// has its own file; the fast CPU versions (`CPULayers`) carry the same names.
enum ReferenceLayers {
    /// The recipe's output rule on the last dense layer's outputs `z`: sigmoid (`.original`) or
    /// softmax (`.modern`), written to `out`.
    static func outputForward(_ recipe: Recipe, _ z: [Float], _ out: inout [Float]) {
        z.withUnsafeBufferPointer { z in out.withUnsafeMutableBufferPointer { outputForward(recipe, z, $0) } }
    }

    /// The output rule on buffers; the fast CPU engines use it as it is (ten values).
    static func outputForward(_ recipe: Recipe, _ z: UnsafeBufferPointer<Float>, _ out: UnsafeMutableBufferPointer<Float>) {
        switch recipe {
        case .original:
            for o in z.indices { out[o] = 1 / (1 + expf(-z[o])) }
        case .modern:
            var largest = z[0]
            for o in z.indices where z[o] > largest { largest = z[o] }
            var total: Float = 0
            for o in z.indices {
                out[o] = expf(z[o] - largest)
                total += out[o]
            }
            for o in z.indices { out[o] /= total }
        }
    }

    /// The output error `δ = onehot(label) - out` at the output layer's pre-activation (SPEC's
    /// error without output derivative for `.original`; the exact negative gradient of
    /// cross-entropy for `.modern`), and the sample's loss: SPEC's `sqrt(Σ δ²)` or `-log p[label]`.
    static func outputBackward(_ recipe: Recipe, _ out: [Float], label: Int, _ delta: inout [Float]) -> Double {
        out.withUnsafeBufferPointer { out in delta.withUnsafeMutableBufferPointer { outputBackward(recipe, out, label: label, $0) } }
    }

    static func outputBackward(
        _ recipe: Recipe, _ out: UnsafeBufferPointer<Float>, label: Int,
        _ delta: UnsafeMutableBufferPointer<Float>
    ) -> Double {
        for o in out.indices { delta[o] = (o == label ? 1 : 0) - out[o] }
        switch recipe {
        case .original:
            var squares: Float = 0
            for o in out.indices { squares += delta[o] * delta[o] }
            return Double(squares.squareRoot())
        case .modern:
            return -log(Double(out[label]))
        }
    }
}
