// Shape letters: C channels, K kernel side (and stride), H/W input, OH/OW output; the planes
// `[C][n]` of a block of n samples are independent, and the shared kernel's gradient sums them all.

extension CPULayers {
    /// The paper's shared subsampling for the channels `channels`.
    static func subsampleForward(_ b: LayerBuffers, _ p: UnsafePointer<Float>, channels: Range<Int>) {
        guard case .subsample(let K) = b.layer.spec else { preconditionFailure() }
        let (H, W) = (b.layer.input.height, b.layer.input.width)
        let (OH, OW) = (b.layer.output.height, b.layer.output.width)
        let w = p + b.layer.weightOffset, bias = p[b.layer.biasOffset]
        // Each window's K·K terms as K independent row sums (K·OW accumulators, one per input
        // column), then the row sums of each window added: a chain of K·K dependent additions
        // per output made this pass the slowest of paper-c16 (19% of a step).
        let x = UnsafePointer(b.x), y = b.y
        withUnsafeTemporaryAllocation(of: Float.self, capacity: K * OW) { columns in
            let acc = columns.baseAddress!
            for c in planes(b, channels) {
                for oy in 0..<OH {
                    acc.update(repeating: 0, count: K * OW)
                    for ky in 0..<K {
                        let line = x + (c * H + K * oy + ky) * W, kernelRow = w + ky * K
                        for ox in 0..<OW {
                            for kx in 0..<K { acc[ox * K + kx] += kernelRow[kx] * line[ox * K + kx] }
                        }
                    }
                    let out = y + (c * OH + oy) * OW
                    for ox in 0..<OW {
                        var sum: Float = 0
                        for kx in 0..<K { sum += acc[ox * K + kx] }
                        out[ox] = sum + bias
                    }
                }
            }
        }
    }

    /// The gradient of the shared kernel's taps `taps` (tap K·K is the bias), each summed over
    /// every channel and position.
    static func subsampleBackward(_ b: LayerBuffers, taps: Range<Int>) {
        guard case .subsample(let K) = b.layer.spec else { preconditionFailure() }
        let (H, W) = (b.layer.input.height, b.layer.input.width)
        let (C, OH, OW) = (b.layer.output.channels * b.block.samples, b.layer.output.height, b.layer.output.width)
        for tap in taps {
            if tap == K * K {
                b.grad[b.layer.biasOffset] = sum(b.dy, length: C * OH * OW)
                continue
            }
            let ky = tap / K, kx = tap % K
            let x = UnsafePointer(b.x), dy = UnsafePointer(b.dy)
            var total: Float = 0
            for c in 0..<C {
                for oy in 0..<OH {
                    let line = x + (c * H + K * oy + ky) * W + kx
                    let errors = dy + (c * OH + oy) * OW
                    // A row's sum first: rows are independent chains, only their sums chain.
                    var row: Float = 0
                    for ox in 0..<OW { row += errors[ox] * line[K * ox] }
                    total += row
                }
            }
            b.grad[b.layer.weightOffset + tap] = total
        }
    }

    /// The input error of the channels `channels`: `dx[c][K·oy+ky][K·ox+kx] = w[ky][kx] · dy[c][oy][ox]`
    /// (0 for rows and columns a window does not cover).
    static func subsampleBackwardInput(_ b: LayerBuffers, _ p: UnsafePointer<Float>, channels: Range<Int>) {
        guard case .subsample(let K) = b.layer.spec else { preconditionFailure() }
        let (H, W) = (b.layer.input.height, b.layer.input.width)
        let (OH, OW) = (b.layer.output.height, b.layer.output.width)
        let w = p + b.layer.weightOffset, dx = b.dx!
        for c in planes(b, channels) {
            dx.advanced(by: c * H * W).update(repeating: 0, count: H * W)
            for oy in 0..<OH {
                for ky in 0..<K {
                    let line = dx + (c * H + K * oy + ky) * W
                    for ox in 0..<OW {
                        let e = b.dy[(c * OH + oy) * OW + ox]
                        for kx in 0..<K { line[K * ox + kx] = w[ky * K + kx] * e }
                    }
                }
            }
        }
    }

    static func subsamplePasses(_ b: LayerBuffers) -> (forward: [LayerPass], backward: [LayerPass]) {
        guard case .subsample(let K) = b.layer.spec else { preconditionFailure() }
        let C = b.layer.input.channels, plane = b.layer.output.planeSize, inPlane = b.layer.input.planeSize, block = b.block
        let forward = [
            LayerPass(
                name: "\(b.layer.name) forward", items: C,
                produced: { [BufferSegment(b.y, $0.lowerBound * block.samples * plane, $0.count * block.samples * plane)] }
            ) { p, channels in subsampleForward(b, p, channels: channels) }
        ]
        var backward = [
            LayerPass(
                name: "\(b.layer.name) backward", items: K * K + 1,
                produced: { taps in
                    let weights = taps.clamped(to: 0..<(K * K))
                    return [BufferSegment(b.grad, b.layer.weightOffset + weights.lowerBound, weights.count)]
                        + (taps.contains(K * K) ? [BufferSegment(b.grad, b.layer.biasOffset, 1)] : [])
                }
            ) { _, taps in subsampleBackward(b, taps: taps) }
        ]
        if let dx = b.dx {
            backward.append(
                LayerPass(
                    name: "\(b.layer.name) backward input", items: C,
                    produced: { [BufferSegment(dx, $0.lowerBound * block.samples * inPlane, $0.count * block.samples * inPlane)] }
                ) { p, channels in subsampleBackwardInput(b, p, channels: channels) })
        }
        return (forward, backward)
    }
}
