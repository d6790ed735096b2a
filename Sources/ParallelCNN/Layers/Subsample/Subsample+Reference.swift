// Shape letters: C channels, K kernel side (and stride), H/W input, OH/OW output.

extension ReferenceLayers {
    /// The paper's learnable subsampling: `y[c][oy][ox] = b + Σ_{ky,kx} w[ky][kx] · x[c][K·oy+ky][K·ox+kx]`,
    /// one kernel and one bias shared by every channel.
    static func subsampleForward(_ layer: ArchitectureLayer, _ p: [Float], _ x: [Float], _ y: inout [Float]) {
        guard case .subsample(let K) = layer.spec else { preconditionFailure() }
        let (C, H, W) = (layer.input.channels, layer.input.height, layer.input.width)
        let (OH, OW) = (layer.output.height, layer.output.width)
        for c in 0..<C {
            for oy in 0..<OH {
                for ox in 0..<OW {
                    var sum: Float = 0
                    for ky in 0..<K {
                        for kx in 0..<K {
                            sum += p[layer.weightOffset + ky * K + kx] * x[(c * H + K * oy + ky) * W + K * ox + kx]
                        }
                    }
                    y[(c * OH + oy) * OW + ox] = sum + p[layer.biasOffset]
                }
            }
        }
    }

    static func subsampleBackward(
        _ layer: ArchitectureLayer, _ p: [Float], _ x: [Float], _ dy: [Float],
        _ grad: inout [Float], _ dx: inout [Float]?
    ) {
        guard case .subsample(let K) = layer.spec else { preconditionFailure() }
        let (C, H, W) = (layer.input.channels, layer.input.height, layer.input.width)
        let (OH, OW) = (layer.output.height, layer.output.width)
        if dx != nil { for i in dx!.indices { dx![i] = 0 } }
        for c in 0..<C {
            for oy in 0..<OH {
                for ox in 0..<OW {
                    let e = dy[(c * OH + oy) * OW + ox]
                    grad[layer.biasOffset] += e
                    for ky in 0..<K {
                        for kx in 0..<K {
                            let i = (c * H + K * oy + ky) * W + K * ox + kx
                            grad[layer.weightOffset + ky * K + kx] += e * x[i]
                            dx?[i] += p[layer.weightOffset + ky * K + kx] * e
                        }
                    }
                }
            }
        }
    }
}
