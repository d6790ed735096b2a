#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension ReferenceLayers {
    static func activationForward(_ activation: Activation, _ x: [Float], _ y: inout [Float]) {
        for i in x.indices {
            switch activation {
            case .sigmoid: y[i] = 1 / (1 + expf(-x[i]))
            case .tanh: y[i] = tanhf(x[i])
            case .relu: y[i] = max(x[i], 0)
            }
        }
    }

    /// The error at the activation's input from the error at its output `dy` and its output `y`:
    /// σ' = y(1 - y), tanh' = 1 - y², ReLU' = (y > 0).
    static func activationBackward(_ activation: Activation, _ y: [Float], _ dy: [Float], _ dx: inout [Float]) {
        for i in y.indices {
            switch activation {
            case .sigmoid: dx[i] = dy[i] * y[i] * (1 - y[i])
            case .tanh: dx[i] = dy[i] * (1 - y[i] * y[i])
            case .relu: dx[i] = y[i] > 0 ? dy[i] : 0
            }
        }
    }
}
