import _CPUVector

// Shape letters: C channels, K kernel side (and stride), H/W input, OH/OW output, M = OH·OW; the
// planes `[C][n]` of a block of n samples are independent, and the shared kernel's gradient sums
// them all.

extension CPULayers {
    /// Unfolds the windows of the channels `channels`: `col[ky·K+kx][q][oy·OW+ox] =
    /// x[q][K·oy+ky][K·ox+kx]` for their planes `q` (tap rows of `n·C·M` floats), 16 positions
    /// at a time, gathered from where their windows start (`windowStarts`). Windows do not
    /// overlap, so this is a reordering of the input: each tap's values become one contiguous
    /// row, and the passes that follow run whole vectors over every plane at once.
    static func subsampleUnfold(_ b: LayerBuffers, channels: Range<Int>) {
        guard case .subsample(let K) = b.layer.spec, let starts = b.windowStarts else { preconditionFailure() }
        let W = b.layer.input.width, M = b.layer.output.planeSize, tapRow = b.block.samples * b.layer.output.count
        let span = planes(b, channels), end = span.upperBound * M
        for tap in 0..<(K * K) {
            let source = UnsafePointer(b.x) + tap / K * W + tap % K, row = b.col! + tap * tapRow
            var j = span.lowerBound * M
            while j + 16 <= end {
                row.store(pcnn_gather16(source, starts + j), at: j)
                j += 16
            }
            while j < end {
                row[j] = source[Int(starts[j])]
                j += 1
            }
        }
    }

    /// For every output position `j` of a block's planes (`q = j / M`), where its window starts
    /// in the input, `q·H·W + K·oy·W + K·ox`; then, for every input position `iy·W + ix` of a
    /// plane, its window's output position `(iy/K)·OW + ix/K` (read only where windows cover the
    /// plane; clamped to the last window elsewhere, so that every entry is a valid index).
    static func subsampleIndices(_ layer: ArchitectureLayer, capacity: Int) -> [Int32] {
        guard case .subsample(let K) = layer.spec else { preconditionFailure() }
        let (H, W) = (layer.input.height, layer.input.width), (OH, OW) = (layer.output.height, layer.output.width)
        let M = OH * OW
        let starts = (0..<(capacity * layer.output.count)).map { j in
            Int32(j / M * H * W + K * (j % M / OW) * W + K * (j % OW))
        }
        let windows = (0..<(H * W)).map { i in Int32(min(i / W / K, OH - 1) * OW + min(i % W / K, OW - 1)) }
        return starts + windows
    }

    /// The paper's shared subsampling for the channels `channels`: `y = Σ_t w[t] · col[t] + b`,
    /// the taps in order, 16 positions at a time over all their planes.
    static func subsampleForward(_ b: LayerBuffers, _ p: UnsafePointer<Float>, channels: Range<Int>) {
        guard case .subsample(let K) = b.layer.spec else { preconditionFailure() }
        let M = b.layer.output.planeSize, tapRow = b.block.samples * b.layer.output.count
        let w = p + b.layer.weightOffset, bias = p[b.layer.biasOffset], col = UnsafePointer(b.col!)
        let span = planes(b, channels), end = span.upperBound * M
        var i = span.lowerBound * M
        while i + 16 <= end {
            var sum = Vec16()
            for t in 0..<(K * K) { sum = fma(Vec16(repeating: w[t]), col.vec16(t * tapRow + i), sum) }
            b.y.store(sum + bias, at: i)
            i += 16
        }
        while i < end {
            var sum: Float = 0
            for t in 0..<(K * K) { sum = fused(w[t], col[t * tapRow + i], sum) }
            b.y[i] = sum + bias
            i += 1
        }
    }

    /// The gradient of the shared kernel's taps `taps` (tap K·K is the bias), each summed over
    /// every channel and position: a dot product of the output error with the tap's row.
    static func subsampleBackward(_ b: LayerBuffers, taps: Range<Int>) {
        guard case .subsample(let K) = b.layer.spec else { preconditionFailure() }
        let tapRow = b.block.samples * b.layer.output.count
        let weights = taps.clamped(to: 0..<(K * K))
        rowDots(
            rows: 0..<1, columns: weights, length: tapRow, a: b.dy, aRow: 0, b: b.col!, bRow: tapRow,
            c: b.grad + b.layer.weightOffset, cRow: 0)
        if taps.contains(K * K) { b.grad[b.layer.biasOffset] = sum(b.dy, length: tapRow) }
    }

    /// The input error of the channels `channels`: `dx[c][K·oy+ky][K·ox+kx] = w[ky][kx] · dy[c][oy][ox]`
    /// (0 for rows and columns a window does not cover). Where windows cover the planes, each
    /// input position's error is its tap's weight times its window's error, gathered 16 at a
    /// time (`windowStarts` has each position's window); otherwise per output row, the errors
    /// each repeated K times are multiplied by every kernel row repeated along the row.
    static func subsampleBackwardInput(_ b: LayerBuffers, _ p: UnsafePointer<Float>, channels: Range<Int>) {
        guard case .subsample(let K) = b.layer.spec else { preconditionFailure() }
        let (H, W) = (b.layer.input.height, b.layer.input.width)
        let (OH, OW) = (b.layer.output.height, b.layer.output.width)
        let w = p + b.layer.weightOffset, dx = b.dx!, dy = UnsafePointer(b.dy), covered = K * OW
        if H == K * OH, W == covered, let starts = b.windowStarts {
            let windows = starts + b.block.capacity * b.layer.output.count, plane = H * W
            withUnsafeTemporaryAllocation(of: Float.self, capacity: plane) { scratch in
                let weights = scratch.baseAddress!
                for i in 0..<plane { weights[i] = w[i / W % K * K + i % W % K] }
                for q in planes(b, channels) {
                    let errors = dy + q * OH * OW, out = dx + q * plane
                    var i = 0
                    while i + 16 <= plane {
                        out.store(UnsafePointer(weights).vec16(i) * pcnn_gather16(errors, windows + i), at: i)
                        i += 16
                    }
                    while i < plane {
                        out[i] = weights[i] * errors[Int(windows[i])]
                        i += 1
                    }
                }
            }
            return
        }
        // The kernel's rows repeated along a row (K rows of `covered`), then one row of repeated errors.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: (K + 1) * covered) { scratch in
            let tiled = scratch.baseAddress!, repeated = tiled + K * covered
            for ky in 0..<K {
                for i in 0..<covered { tiled[ky * covered + i] = w[ky * K + i % K] }
            }
            for q in planes(b, channels) {
                let plane = dx + q * H * W
                if H > K * OH || W > covered { plane.update(repeating: 0, count: H * W) }
                for oy in 0..<OH {
                    let errors = dy + (q * OH + oy) * OW
                    for ox in 0..<OW {
                        for kx in 0..<K { repeated[K * ox + kx] = errors[ox] }
                    }
                    for ky in 0..<K {
                        let line = plane + (K * oy + ky) * W, kernelRow = UnsafePointer(tiled + ky * covered)
                        var i = 0
                        while i + 16 <= covered {
                            line.store(kernelRow.vec16(i) * UnsafePointer(repeated).vec16(i), at: i)
                            i += 16
                        }
                        while i < covered {
                            line[i] = kernelRow[i] * repeated[i]
                            i += 1
                        }
                    }
                }
            }
        }
    }

    static func subsamplePasses(_ b: LayerBuffers) -> (forward: [LayerPass], backward: [LayerPass]) {
        guard case .subsample(let K) = b.layer.spec else { preconditionFailure() }
        let C = b.layer.input.channels, plane = b.layer.output.planeSize, inPlane = b.layer.input.planeSize, block = b.block
        let forward = [
            LayerPass(name: "\(b.layer.name) unfold", items: C, replicated: true, writes: K * K * plane * C) { _, channels in
                subsampleUnfold(b, channels: channels)
            },
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
