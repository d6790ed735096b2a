// Shape letters: C input channels, F filters, K kernel side, S stride, P padding,
// H/W input height/width, OH/OW output height/width.

extension ReferenceLayers {
    /// `y[f][oy][ox] = b[f] + Σ_{c,ky,kx} w[f][c][ky][kx] · x[c][oy·S+ky-P][ox·S+kx-P]`, with
    /// zeros outside the input.
    static func convForward(_ layer: ArchitectureLayer, _ p: [Float], _ x: [Float], _ y: inout [Float]) {
        guard case .conv(let F, let K, let S, let P) = layer.spec else { preconditionFailure() }
        let (C, H, W) = (layer.input.channels, layer.input.height, layer.input.width)
        let (OH, OW) = (layer.output.height, layer.output.width)
        for f in 0..<F {
            for oy in 0..<OH {
                for ox in 0..<OW {
                    var sum: Float = 0
                    for c in 0..<C {
                        for ky in 0..<K {
                            for kx in 0..<K {
                                let iy = oy * S + ky - P, ix = ox * S + kx - P
                                guard iy >= 0, iy < H, ix >= 0, ix < W else { continue }
                                sum += p[layer.weightOffset + ((f * C + c) * K + ky) * K + kx] * x[(c * H + iy) * W + ix]
                            }
                        }
                    }
                    y[(f * OH + oy) * OW + ox] = sum + p[layer.biasOffset + f]
                }
            }
        }
    }

    /// Adds the weight and bias gradients `Σ dy · x` and `Σ dy` to `grad`, and writes the input
    /// error `dx[c][iy][ix] = Σ w · dy` when `dx` is given.
    static func convBackward(
        _ layer: ArchitectureLayer, _ p: [Float], _ x: [Float], _ dy: [Float],
        _ grad: inout [Float], _ dx: inout [Float]?
    ) {
        guard case .conv(let F, let K, let S, let P) = layer.spec else { preconditionFailure() }
        let (C, H, W) = (layer.input.channels, layer.input.height, layer.input.width)
        let (OH, OW) = (layer.output.height, layer.output.width)
        if dx != nil { for i in dx!.indices { dx![i] = 0 } }
        for f in 0..<F {
            for oy in 0..<OH {
                for ox in 0..<OW {
                    let e = dy[(f * OH + oy) * OW + ox]
                    grad[layer.biasOffset + f] += e
                    for c in 0..<C {
                        for ky in 0..<K {
                            for kx in 0..<K {
                                let iy = oy * S + ky - P, ix = ox * S + kx - P
                                guard iy >= 0, iy < H, ix >= 0, ix < W else { continue }
                                let w = layer.weightOffset + ((f * C + c) * K + ky) * K + kx
                                grad[w] += e * x[(c * H + iy) * W + ix]
                                dx?[(c * H + iy) * W + ix] += p[w] * e
                            }
                        }
                    }
                }
            }
        }
    }
}
