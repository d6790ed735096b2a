// Shape letters: C channels, Z window side, S stride, H/W input, OH/OW output.

extension ReferenceLayers {
    /// Average or maximum of each window. Max pooling's ties go to the first maximum in row-major
    /// order of the window, which also receives the whole gradient.
    static func poolForward(_ layer: ArchitectureLayer, _ x: [Float], _ y: inout [Float]) {
        let (Z, S, isMax) = poolParameters(layer)
        let (C, H, W) = (layer.input.channels, layer.input.height, layer.input.width)
        let (OH, OW) = (layer.output.height, layer.output.width)
        for c in 0..<C {
            for oy in 0..<OH {
                for ox in 0..<OW {
                    var sum: Float = 0, best = -Float.infinity
                    for wy in 0..<Z {
                        for wx in 0..<Z {
                            let v = x[(c * H + oy * S + wy) * W + ox * S + wx]
                            sum += v
                            if v > best { best = v }
                        }
                    }
                    y[(c * OH + oy) * OW + ox] = isMax ? best : sum / Float(Z * Z)
                }
            }
        }
    }

    static func poolBackward(_ layer: ArchitectureLayer, _ x: [Float], _ dy: [Float], _ dx: inout [Float]) {
        let (Z, S, isMax) = poolParameters(layer)
        let (C, H, W) = (layer.input.channels, layer.input.height, layer.input.width)
        let (OH, OW) = (layer.output.height, layer.output.width)
        for i in dx.indices { dx[i] = 0 }
        for c in 0..<C {
            for oy in 0..<OH {
                for ox in 0..<OW {
                    let e = dy[(c * OH + oy) * OW + ox]
                    var best = -Float.infinity, bestIndex = -1
                    for wy in 0..<Z {
                        for wx in 0..<Z {
                            let i = (c * H + oy * S + wy) * W + ox * S + wx
                            if isMax {
                                if x[i] > best { best = x[i]; bestIndex = i }
                            } else {
                                dx[i] += e / Float(Z * Z)
                            }
                        }
                    }
                    if isMax { dx[bestIndex] += e }
                }
            }
        }
    }

    private static func poolParameters(_ layer: ArchitectureLayer) -> (size: Int, stride: Int, isMax: Bool) {
        switch layer.spec {
        case .avgPool(let size, let stride): (size, stride, false)
        case .maxPool(let size, let stride): (size, stride, true)
        default: preconditionFailure()
        }
    }
}
