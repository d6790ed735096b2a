import _CPUVector

// Shape letters: C input channels, F filters, K kernel side, S stride, P padding,
// H/W input height/width, M = OH·OW output positions, D = C·K·K taps per filter, n samples in
// the block (input `[C][n][H·W]`, output `[F][n][M]`, `col` `[D][n][M]`).

extension CPULayers {
    /// im2col: `col[(c·K+ky)·K+kx][s][oy·OW+ox] = x[c][s][oy·S+ky-P][ox·S+kx-P]` (0 outside),
    /// for the tap rows `taps`. The convolution of the whole block is then one matrix product.
    static func convUnfold(_ b: LayerBuffers, taps: Range<Int>) {
        guard case .conv(_, let K, let S, var P) = b.layer.spec else { preconditionFailure() }
        var (H, W) = (b.layer.input.height, b.layer.input.width)
        let (OH, OW) = (b.layer.output.height, b.layer.output.width)
        let col = b.col!, n = b.block.samples, M = OH * OW
        var x = UnsafePointer(b.x)
        if let padded = b.padded {
            // The zero-bordered copy (`convPad`, made for every padded stride-1 convolution): the
            // same taps with no padding left to handle.
            (x, H, W, P) = (UnsafePointer(padded), H + 2 * P, W + 2 * P, 0)
        }
        for tap in taps {
            let c = tap / (K * K), ky = tap / K % K, kx = tap % K
            if S == 1 {
                // Every window inside the (zero-bordered) input: a tap's rows, all samples after
                // each other, copied with whole vectors that may spill into the rows after them,
                // which are written next; only the tap's last row stays exactly inside.
                var out = col + tap * n * M
                let first = x + c * n * H * W + ky * W + kx
                for s in 0..<n {
                    copyRows(OH, of: OW, from: first + s * H * W, stride: W, to: out, stride: OW, exactEnd: s == n - 1)
                    out += M
                }
            } else {
                for s in 0..<n {
                    let row = col + (tap * n + s) * M, plane = x + (c * n + s) * H * W
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
    }

    /// Copies the block's input planes into the inside of their zero-bordered copies.
    static func convPad(_ b: LayerBuffers) {
        guard case .conv(_, _, _, let P) = b.layer.spec, let padded = b.padded else { return }
        let (H, W) = (b.layer.input.height, b.layer.input.width), PW = W + 2 * P
        let planes = b.layer.input.channels * b.block.samples
        copyRows(planes * H, of: W, from: b.x, stride: W, to: padded + P * PW + P, stride: PW, planeRows: H, planeGap: 2 * P * PW)
    }

    /// For stride 1, the output rows and columns at which tap `(ky, kx)` reads inside the input.
    @inline(__always) static func validWindow(
        ky: Int, kx: Int, P: Int, H: Int, W: Int, OH: Int, OW: Int
    ) -> (rows: Range<Int>, columns: Range<Int>) {
        let top = max(0, P - ky), left = max(0, P - kx)
        return (top..<max(top, min(OH, H + P - ky)), left..<max(left, min(OW, W + P - kx)))
    }

    /// `rows` rows of `count` floats, the rows `sourceStride` and `targetStride` apart, with whole
    /// vectors, the width chosen once. Into consecutive rows (`targetStride == count`, 8-32 floats)
    /// each row is copied whole, its lanes past the row landing in the next one, which is written
    /// after it; the last row stays exactly inside unless `exactEnd` is false (the rows after the
    /// target are written next too). The source must then be readable 32 floats past a row
    /// (arena buffers). Otherwise two overlapping vectors per row stay inside it. After every
    /// `planeRows` rows the target skips `planeGap` more floats (the borders of padded planes).
    @inline(__always) static func copyRows(
        _ rows: Int, of count: Int, from source: UnsafePointer<Float>, stride sourceStride: Int,
        to target: UnsafeMutablePointer<Float>, stride targetStride: Int, planeRows: Int = .max, planeGap: Int = 0,
        exactEnd: Bool = true
    ) {
        var source = source, target = target, left = planeRows
        @inline(__always) func advance() {
            source += sourceStride
            target += targetStride
            left -= 1
            if left == 0 {
                target += planeGap
                left = planeRows
            }
        }
        if targetStride == count, planeGap == 0, count >= 8, count <= 32 {
            for _ in 0..<max(0, exactEnd ? rows - 1 : rows) {
                target.store(source.vec16(0), at: 0)
                if count > 16 { target.store(source.vec16(16), at: 16) }
                advance()
            }
            if exactEnd, rows > 0 { copyShort(from: source, to: target, count: count) }
        } else if count >= 8, count <= 16 {
            for _ in 0..<rows {
                target.store(source.vec(0), at: 0)
                target.store(source.vec(count - 8), at: count - 8)
                advance()
            }
        } else if count >= 16, count <= 32 {
            for _ in 0..<rows {
                target.store(source.vec16(0), at: 0)
                target.store(source.vec16(count - 16), at: count - 16)
                advance()
            }
        } else {
            for _ in 0..<rows {
                copyShort(from: source, to: target, count: count)
                advance()
            }
        }
    }

    /// `target[i] += source[i]` for `count` floats, 8 at a time, then the tail.
    @inline(__always) static func addShort(from source: UnsafePointer<Float>, to target: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        while i + 8 <= count {
            target.store(UnsafePointer(target).vec(i) + source.vec(i), at: i)
            i += 8
        }
        while i < count {
            target[i] += source[i]
            i += 1
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

    /// Whether the convolution reads its input in place (`convForwardInPlace`,
    /// `convBackwardInPlace`) instead of unfolding it: stride 1, at most 8 filters, and output
    /// rows that fill whole 16-lane vectors to at least 7/8 (LeNet-5's conv1: 6 filters, rows
    /// of 28). Its `col` (627 KB for LeNet-5's conv1 at 8 samples, larger than the L2) is then
    /// neither written nor read. The in-place weight gradient runs at a lower fraction of the
    /// peak than the product over `col` (AMD EPYC: LeNet-5's conv1 5.2 against 3.7 µs per
    /// sample), so it pays only where the unfold costs as much as a few filters' products: with
    /// 64 filters and rows of 24 (paper-c64, 75% of the lanes) it took 60 against 40 µs.
    package static func readsInputInPlace(_ layer: ArchitectureLayer) -> Bool {
        guard case .conv(let F, _, let S, _) = layer.spec else { return false }
        let width = layer.output.width
        return S == 1 && F <= 8 && width >= 16 && 8 * width >= 7 * paddedWidth(width)
    }

    /// The input the in-place passes read, `[C][n][H][W]`: the zero-bordered copy where the
    /// layer pads, the input itself otherwise.
    @inline(__always) private static func borderedInput(_ b: LayerBuffers) -> (x: UnsafePointer<Float>, height: Int, width: Int) {
        guard case .conv(_, _, _, let P) = b.layer.spec else { preconditionFailure() }
        let (H, W) = (b.layer.input.height, b.layer.input.width)
        return b.padded.map { (UnsafePointer($0), H + 2 * P, W + 2 * P) } ?? (UnsafePointer(b.x), H, W)
    }

    /// Where tap `d` of an output position reads, relative to the position's top-left input
    /// value, in the bordered input of a block of `n` samples.
    @inline(__always) private static func tapOffsets(
        _ offsets: UnsafeMutableBufferPointer<Int>, K: Int, n: Int, height: Int, width: Int
    ) {
        for d in offsets.indices { offsets[d] = d / (K * K) * n * height * width + d / K % K * width + d % K }
    }

    /// `y[f][s][oy][ox] = b[f] + Σ_d w[f][d] · x[c][s][oy+ky][ox+kx]` for the filters `filters`,
    /// for a convolution that `readsInputInPlace`: the product over `col` with each tap's row of
    /// 16 columns read straight from the input (`TapRows`), an output row 16 columns at a time,
    /// the last 16 overlapping the ones before. Every value gets the fused operations of the
    /// product over `col`, in the same order, so the same bits.
    static func convForwardInPlace(_ b: LayerBuffers, _ p: UnsafePointer<Float>, filters: Range<Int>) {
        let (x, height, width) = borderedInput(b)
        guard case .conv(_, let K, _, _) = b.layer.spec else { preconditionFailure() }
        let n = b.block.samples, D = b.layer.fanIn
        let (OH, OW) = (b.layer.output.height, b.layer.output.width), M = OH * OW
        withUnsafeTemporaryAllocation(of: Int.self, capacity: D) { offsets in
            tapOffsets(offsets, K: K, n: n, height: height, width: width)
            let taps = UnsafePointer(offsets.baseAddress!)
            for s in 0..<n {
                for oy in 0..<OH {
                    let source = x + s * height * width + oy * width, target = b.y + s * M + oy * OW
                    var ox = 0
                    while ox < OW {
                        let start = min(ox, OW - 16)
                        rowBlocksx16(
                            filters, 0, D, p + b.layer.weightOffset, D, 1, TapRows(base: source + start, offsets: taps),
                            target + start, n * M, p + b.layer.biasOffset)
                        ox += 16
                    }
                }
            }
        }
    }

    /// The weight and bias gradients of the filters `filters` for a convolution that
    /// `readsInputInPlace`: `dw[f][d] = Σ_s Σ_(oy,ox) dy[f][s][oy][ox] · x[c][s][oy+ky][ox+kx]`,
    /// each sample's sum in 16 lanes (lane `l` of a row's `v`-th vector takes `ox = 16v + l`) over
    /// its rows in order, the lanes added, then the samples' sums added in order; the bias as in
    /// `convBackward`. Each sample's error rows are first copied into the layer's `col`, rows of
    /// `paddedWidth` whose columns past `OW` stay 0, so that a row's last vector needs no mask
    /// and every load of the errors is aligned; the copy stays in L1 for all the taps.
    static func convBackwardInPlace(_ b: LayerBuffers, filters: Range<Int>) {
        let (x, height, width) = borderedInput(b)
        let n = b.block.samples, M = b.layer.output.planeSize, OW = b.layer.output.width, OH = b.layer.output.height
        let rows = b.col!, stride = paddedWidth(OW)
        for s in 0..<n {
            for f in filters {
                for oy in 0..<OH {
                    copyShort(from: b.dy + (f * n + s) * M + oy * OW, to: rows + (f * OH + oy) * stride, count: OW)
                }
            }
            let plane = x + s * height * width
            var f = filters.lowerBound
            while f + 6 <= filters.upperBound {
                weightGradientRows(6, f, s, plane, height, width, b)
                f += 6
            }
            if f + 4 <= filters.upperBound {
                weightGradientRows(4, f, s, plane, height, width, b)
                f += 4
            }
            if f + 2 <= filters.upperBound {
                weightGradientRows(2, f, s, plane, height, width, b)
                f += 2
            }
            if f < filters.upperBound { weightGradientRows(1, f, s, plane, height, width, b) }
        }
        for f in filters { b.grad[b.layer.biasOffset + f] = sum(b.dy + f * n * M, length: n * M) }
    }

    /// `width` rounded up to whole 16-float vectors: the rows of `convBackwardInPlace`'s copy of
    /// a sample's errors, `[F][OH][paddedWidth]`, kept in the layer's `col`.
    static func paddedWidth(_ width: Int) -> Int { (width + 15) / 16 * 16 }

    /// Sample `s`'s share of `convBackwardInPlace` for the filters `f..<f+rows` (6, 4, 2 or 1,
    /// a constant where it is inlined) and every tap.
    @inline(__always) private static func weightGradientRows(
        _ rows: Int, _ f: Int, _ s: Int, _ plane: UnsafePointer<Float>, _ height: Int, _ width: Int, _ b: LayerBuffers
    ) {
        guard case .conv(_, let K, _, _) = b.layer.spec else { preconditionFailure() }
        let n = b.block.samples, D = b.layer.fanIn, OH = b.layer.output.height, stride = paddedWidth(b.layer.output.width)
        let rowStride = OH * stride, errors = UnsafePointer(b.col!) + f * rowStride
        let dw = b.grad + b.layer.weightOffset + f * D
        for d in 0..<D {
            var s0 = Vec16(), s1 = Vec16(), s2 = Vec16(), s3 = Vec16(), s4 = Vec16(), s5 = Vec16()
            // Lanes past the row's end read the next values of the input (inside the arena),
            // multiplied by the copy's zeros.
            var input = plane + d / (K * K) * n * height * width + d / K % K * width + d % K, error = errors
            for _ in 0..<OH {
                var ox = 0
                repeat {
                    let v = input.vec16(ox)
                    s0 = fma(error.vec16(ox), v, s0)
                    if rows > 1 { s1 = fma(error.vec16(rowStride + ox), v, s1) }
                    if rows > 2 {
                        s2 = fma(error.vec16(2 * rowStride + ox), v, s2)
                        s3 = fma(error.vec16(3 * rowStride + ox), v, s3)
                    }
                    if rows > 4 {
                        s4 = fma(error.vec16(4 * rowStride + ox), v, s4)
                        s5 = fma(error.vec16(5 * rowStride + ox), v, s5)
                    }
                    ox += 16
                } while ox < stride
                input += width
                error += stride
            }
            // The lane sums four at a time (`pcnn_totals4` adds in the order of `total`).
            let low = pcnn_totals4(s0, s1, s2, s3), high = pcnn_totals4(s4, s5, s4, s5), first = s == 0
            for r in 0..<rows {
                let total = r < 4 ? low[r] : high[r - 4]
                dw[r * D + d] = first ? total : dw[r * D + d] + total
            }
        }
    }

    /// `y[f] = b[f] + w[f] · col` for the filters `filters`, over every position of every sample.
    static func convForward(_ b: LayerBuffers, _ p: UnsafePointer<Float>, filters: Range<Int>) {
        let nM = b.block.samples * b.layer.output.planeSize, D = b.layer.fanIn
        matrixMultiply(
            rows: filters, columns: 0..<nM, depth: D, a: p + b.layer.weightOffset, aRow: D, aColumn: 1,
            b: b.col!, bRow: nM, c: b.y, cRow: nM, bias: p + b.layer.biasOffset)
    }

    /// The weight gradient `dw[f][d] = Σ_(s,m) dy[f][s][m] · col[d][s][m]` and bias gradient
    /// `Σ_(s,m) dy[f][s][m]` of the filters `filters`, summed over the block's samples.
    ///
    /// Long rows (a block of large maps) are taken in stretches of `gradientStretch` positions
    /// (the last one up to twice that), each stretch's dot products added to the sums in order:
    /// the stretch of all the rows stays in L1 while every pair of rows is multiplied, where whole
    /// rows would be read from L2 for every group of filters.
    static func convBackward(_ b: LayerBuffers, filters: Range<Int>) {
        let nM = b.block.samples * b.layer.output.planeSize, D = b.layer.fanIn
        var start = 0
        repeat {
            let length = nM - start <= 2 * gradientStretch ? nM - start : gradientStretch
            rowDots(
                rows: filters, columns: 0..<D, length: length, a: b.dy + start, aRow: nM, b: b.col! + start, bRow: nM,
                c: b.grad + b.layer.weightOffset, cRow: D, accumulate: start > 0)
            start += length
        } while start < nM
        for f in filters { b.grad[b.layer.biasOffset + f] = sum(b.dy + f * nM, length: nM) }
    }

    /// Positions per stretch of `convBackward` (a multiple of 16: 2 KB of each row).
    static let gradientStretch = 512

    /// The input error of the channels `channels`: `dcol[d][s][m] = Σ_f w[f][d] · dy[f][s][m]` for
    /// their tap rows, then folded back (col2im) into `dx[c][s]`.
    static func convBackwardInput(_ b: LayerBuffers, _ p: UnsafePointer<Float>, channels: Range<Int>) {
        guard case .conv(let F, let K, let S, let P) = b.layer.spec else { preconditionFailure() }
        let (H, W) = (b.layer.input.height, b.layer.input.width)
        let (OH, OW) = (b.layer.output.height, b.layer.output.width)
        let n = b.block.samples, M = OH * OW, nM = n * M, D = b.layer.fanIn, dcol = b.dCol!, dx = b.dx!
        matrixMultiply(
            rows: (channels.lowerBound * K * K)..<(channels.upperBound * K * K), columns: 0..<nM, depth: F,
            a: p + b.layer.weightOffset, aRow: 1, aColumn: D, b: b.dy, bRow: nM, c: dcol, cRow: nM, bias: nil)
        if S == 1, W <= 16 {
            withUnsafeTemporaryAllocation(of: Float.self, capacity: H * 16) { scratch in
                for c in channels {
                    for s in 0..<n {
                        foldNarrowRows(
                            UnsafePointer(dcol), into: dx + (c * n + s) * H * W, channel: c, sample: s, n: n,
                            K, P, H, W, OH, OW, scratch: scratch.baseAddress!)
                    }
                }
            }
            return
        }
        for c in channels {
            for s in 0..<n {
                let plane = dx + (c * n + s) * H * W
                plane.update(repeating: 0, count: H * W)
                for ky in 0..<K {
                    for kx in 0..<K {
                        let row = UnsafePointer(dcol) + (((c * K + ky) * K + kx) * n + s) * M
                        if S == 1 {
                            let (rows, columns) = validWindow(ky: ky, kx: kx, P: P, H: H, W: W, OH: OH, OW: OW)
                            for oy in rows {
                                let line = plane + (oy + ky - P) * W + kx - P
                                addShort(from: row + oy * OW + columns.lowerBound, to: line + columns.lowerBound, count: columns.count)
                            }
                            continue
                        }
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
    }

    /// col2im of one plane for stride 1 and rows of at most 16 (LeNet's 14): the plane's rows
    /// are summed in `scratch`, one 16-float vector per row, lane `ix` taking tap `(ky, kx)` from
    /// output column `ix - kx + P` (a load shifted by `P - kx`, the other lanes masked), in the
    /// tap order of the scalar fold, so the sums are the same; a tap's rows are independent
    /// additions. `dcol` is an arena buffer: the shifted loads read at most 16 floats outside a
    /// row, inside the arena.
    @inline(__always) private static func foldNarrowRows(
        _ dcol: UnsafePointer<Float>, into plane: UnsafeMutablePointer<Float>, channel c: Int, sample s: Int, n: Int,
        _ K: Int, _ P: Int, _ H: Int, _ W: Int, _ OH: Int, _ OW: Int, scratch: UnsafeMutablePointer<Float>
    ) {
        let M = OH * OW
        scratch.update(repeating: 0, count: H * 16)
        for ky in 0..<K {
            let rows = validWindow(ky: ky, kx: 0, P: P, H: H, W: W, OH: OH, OW: OW).rows
            for kx in 0..<K {
                var source = dcol + (((c * K + ky) * K + kx) * n + s) * M + rows.lowerBound * OW + P - kx
                var target = scratch + (rows.lowerBound + ky - P) * 16
                let low = Int32(kx - P), high = Int32(kx - P + OW)
                for _ in rows {
                    target.store(UnsafePointer(target).vec16(0) + pcnn_lanes_between16(source.vec16(0), low, high))
                    source += OW
                    target += 16
                }
            }
        }
        copyRows(H, of: W, from: scratch, stride: 16, to: plane, stride: W)
    }

    static func convPasses(_ b: LayerBuffers) -> (forward: [LayerPass], backward: [LayerPass]) {
        guard case .conv(let F, _, _, _) = b.layer.spec else { preconditionFailure() }
        let C = b.layer.input.channels, M = b.layer.output.planeSize, D = b.layer.fanIn, block = b.block
        var forward: [LayerPass] = []
        if b.padded != nil {
            let count = b.layer.input.count
            forward.append(LayerPass(name: "\(b.layer.name) pad", items: 1, replicated: true, writes: count) { _, _ in convPad(b) })
        }
        let inPlace = readsInputInPlace(b.layer)
        if !inPlace {
            forward.append(
                LayerPass(name: "\(b.layer.name) unfold", items: D, replicated: true, writes: D * M) { _, taps in convUnfold(b, taps: taps)
                })
        }
        forward.append(
            LayerPass(
                name: "\(b.layer.name) forward", items: F,
                produced: { [BufferSegment(b.y, $0.lowerBound * block.samples * M, $0.count * block.samples * M)] }
            ) { p, filters in
                if inPlace { convForwardInPlace(b, p, filters: filters) } else { convForward(b, p, filters: filters) }
            })
        var backward = [
            LayerPass(
                name: "\(b.layer.name) backward", items: F,
                produced: { f in
                    [
                        BufferSegment(b.grad, b.layer.weightOffset + f.lowerBound * D, f.count * D),
                        BufferSegment(b.grad, b.layer.biasOffset + f.lowerBound, f.count)
                    ]
                }
            ) { _, filters in
                if inPlace { convBackwardInPlace(b, filters: filters) } else { convBackward(b, filters: filters) }
            }
        ]
        if let dx = b.dx {
            let plane = b.layer.input.planeSize
            backward.append(
                LayerPass(
                    name: "\(b.layer.name) backward input", items: C,
                    produced: { [BufferSegment(dx, $0.lowerBound * block.samples * plane, $0.count * block.samples * plane)] }
                ) { p, channels in convBackwardInput(b, p, channels: channels) })
        }
        return (forward, backward)
    }
}
