// Shape letters: C input channels, F filters, K kernel side, S stride, P padding,
// H/W input height/width, M = OH·OW output positions, D = C·K·K taps per filter.

extension CPULayers {
    /// im2col: `col[(c·K+ky)·K+kx][oy·OW+ox] = x[c][oy·S+ky-P][ox·S+kx-P]` (0 outside), for the
    /// tap rows `taps`. The convolution is then one matrix product per pass.
    static func convUnfold(_ b: LayerBuffers, taps: Range<Int>) {
        guard case .conv(_, let K, let S, let P) = b.layer.spec else { preconditionFailure() }
        let (H, W) = (b.layer.input.height, b.layer.input.width)
        let (OH, OW) = (b.layer.output.height, b.layer.output.width)
        let col = b.col!
        let x = UnsafePointer(b.x)
        for tap in taps {
            let c = tap / (K * K), ky = tap / K % K, kx = tap % K
            let row = col + tap * OH * OW
            let plane = x + c * H * W
            if S == 1 {
                // The output rows whose input row exists, and in them the columns whose input
                // column exists, depend on the tap alone: zeros around one block copy per row.
                let rows = max(0, P - ky)..<max(max(0, P - ky), min(OH, H + P - ky))
                let first = max(0, P - kx), last = max(first, min(OW, W + P - kx))
                row.update(repeating: 0, count: rows.lowerBound * OW)
                (row + rows.upperBound * OW).update(repeating: 0, count: (OH - rows.upperBound) * OW)
                for oy in rows {
                    let out = row + oy * OW, source = plane + (oy + ky - P) * W + kx - P
                    for ox in 0..<first { out[ox] = 0 }
                    copyShort(from: source + first, to: out + first, count: last - first)
                    for ox in last..<OW { out[ox] = 0 }
                }
            } else {
                for oy in 0..<OH {
                    let iy = oy * S + ky - P
                    let out = row + oy * OW
                    guard iy >= 0, iy < H else {
                        out.update(repeating: 0, count: OW)
                        continue
                    }
                    let line = plane + iy * W
                    for ox in 0..<OW {
                        let ix = ox * S + kx - P
                        out[ox] = ix >= 0 && ix < W ? line[ix] : 0
                    }
                }
            }
        }
    }

    /// Copies `count` floats (rows of a few dozen) with whole vectors where it can: the last
    /// vector overlaps the one before rather than running past the end.
    @inline(__always) static func copyShort(from source: UnsafePointer<Float>, to target: UnsafeMutablePointer<Float>, count: Int) {
        if count >= 16 {
            var i = 0
            while i + 16 <= count {
                target.store(source.vec16(i), at: i)
                i += 16
            }
            if i < count { target.store(source.vec16(count - 16), at: count - 16) }
        } else if count >= 8 {
            target.store(source.vec(0), at: 0)
            target.store(source.vec(count - 8), at: count - 8)
        } else {
            for i in 0..<count { target[i] = source[i] }
        }
    }

    /// `y[f] = b[f] + w[f] · col` for the filters `filters`.
    static func convForward(_ b: LayerBuffers, _ p: UnsafePointer<Float>, filters: Range<Int>) {
        let M = b.layer.output.planeSize, D = b.layer.fanIn
        matrixMultiply(
            rows: filters, columns: 0..<M, depth: D, a: p + b.layer.weightOffset, aRow: D, aColumn: 1,
            b: b.col!, bRow: M, c: b.y, cRow: M, bias: p + b.layer.biasOffset)
    }

    /// The weight gradient `dw[f][d] = Σ_m dy[f][m] · col[d][m]` and bias gradient `Σ_m dy[f][m]`
    /// of the filters `filters`, written to the sample's gradient.
    static func convBackward(_ b: LayerBuffers, filters: Range<Int>) {
        let M = b.layer.output.planeSize, D = b.layer.fanIn
        rowDots(
            rows: filters, columns: 0..<D, length: M, a: b.dy, aRow: M, b: b.col!, bRow: M,
            c: b.grad + b.layer.weightOffset, cRow: D)
        for f in filters { b.grad[b.layer.biasOffset + f] = sum(b.dy + f * M, length: M) }
    }

    /// The input error of the channels `channels`: `dcol[d][m] = Σ_f w[f][d] · dy[f][m]` for their
    /// tap rows, then folded back (col2im) into `dx[c]`.
    static func convBackwardInput(_ b: LayerBuffers, _ p: UnsafePointer<Float>, channels: Range<Int>) {
        guard case .conv(let F, let K, let S, let P) = b.layer.spec else { preconditionFailure() }
        let (H, W) = (b.layer.input.height, b.layer.input.width)
        let (OH, OW) = (b.layer.output.height, b.layer.output.width)
        let M = OH * OW, D = b.layer.fanIn, dcol = b.dCol!, dx = b.dx!
        matrixMultiply(
            rows: (channels.lowerBound * K * K)..<(channels.upperBound * K * K), columns: 0..<M, depth: F,
            a: p + b.layer.weightOffset, aRow: 1, aColumn: D, b: b.dy, bRow: M, c: dcol, cRow: M, bias: nil)
        for c in channels {
            let plane = dx + c * H * W
            plane.update(repeating: 0, count: H * W)
            for ky in 0..<K {
                for kx in 0..<K {
                    let row = UnsafePointer(dcol) + ((c * K + ky) * K + kx) * M
                    for oy in 0..<OH {
                        let iy = oy * S + ky - P
                        guard iy >= 0, iy < H else { continue }
                        let line = plane + iy * W, source = row + oy * OW
                        for ox in 0..<OW {
                            let ix = ox * S + kx - P
                            if ix >= 0, ix < W { line[ix] += source[ox] }
                        }
                    }
                }
            }
        }
    }

    static func convPasses(_ b: LayerBuffers) -> (forward: [LayerPass], backward: [LayerPass]) {
        guard case .conv(let F, let K, _, _) = b.layer.spec else { preconditionFailure() }
        let C = b.layer.input.channels, M = b.layer.output.planeSize, D = b.layer.fanIn
        let forward = [
            LayerPass(name: "\(b.layer.name) unfold", items: D, replicated: true, writes: D * M) { _, taps in convUnfold(b, taps: taps) },
            LayerPass(name: "\(b.layer.name) forward", items: F, produced: { [BufferSegment(b.y, $0.lowerBound * M, $0.count * M)] }) {
                p, filters in convForward(b, p, filters: filters)
            }
        ]
        var backward = [
            LayerPass(
                name: "\(b.layer.name) backward", items: F,
                produced: { f in
                    [
                        BufferSegment(b.grad, b.layer.weightOffset + f.lowerBound * D, f.count * D),
                        BufferSegment(b.grad, b.layer.biasOffset + f.lowerBound, f.count)
                    ]
                }
            ) { _, filters in convBackward(b, filters: filters) }
        ]
        if let dx = b.dx {
            let plane = b.layer.input.planeSize
            backward.append(
                LayerPass(
                    name: "\(b.layer.name) backward input", items: C,
                    produced: { [BufferSegment(dx, $0.lowerBound * plane, $0.count * plane)] }
                ) { p, channels in convBackwardInput(b, p, channels: channels) })
        }
        _ = K
        return (forward, backward)
    }
}
