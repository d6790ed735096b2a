// Shape letters: I inputs, O outputs, n samples in the block (input gathered `[n][I]`, output
// `[O][n]`).

extension CPULayers {
    /// The block's inputs sample-major, `[n][I]`: the previous layer's output as it lies for one
    /// sample, gathered from its planar `[C][n][H·W]` for more.
    @inline(__always) static func denseInput(_ b: LayerBuffers) -> UnsafeMutablePointer<Float> {
        b.block.samples == 1 ? b.x : b.xFlat!
    }

    /// Gathers the planar input into `xFlat` (nothing to do for one sample).
    static func denseFlatten(_ b: LayerBuffers) {
        let n = b.block.samples
        guard n > 1 else { return }
        let C = b.layer.input.channels, plane = b.layer.input.planeSize, I = b.layer.input.count
        let x = UnsafePointer(b.x), flat = b.xFlat!
        for s in 0..<n {
            if plane == 1 {
                for c in 0..<C { flat[s * I + c] = x[c * n + s] }  // a transpose: a copy call per value costs 10x
            } else {
                for c in 0..<C { (flat + s * I + c * plane).update(from: x + (c * n + s) * plane, count: plane) }
            }
        }
    }

    /// `y[o][s] = Σ_i w[o][i] · x[s][i] + b[o]` for the outputs `outputs`.
    static func denseForward(_ b: LayerBuffers, _ p: UnsafePointer<Float>, outputs: Range<Int>) {
        let I = b.layer.input.count, n = b.block.samples
        rowDots(
            rows: outputs, columns: 0..<n, length: I, a: p + b.layer.weightOffset, aRow: I,
            b: denseInput(b), bRow: I, c: b.y, cRow: n, bias: p + b.layer.biasOffset)
    }

    /// The weight gradient `dw[o][i] = Σ_s dy[o][s] · x[s][i]` and bias gradient `Σ_s dy[o][s]` of
    /// the outputs `outputs`, summed over the block's samples in order.
    static func denseBackward(_ b: LayerBuffers, outputs: Range<Int>) {
        let I = b.layer.input.count, n = b.block.samples
        matrixMultiply(
            rows: outputs, columns: 0..<I, depth: n, a: b.dy, aRow: n, aColumn: 1,
            b: denseInput(b), bRow: I, c: b.grad + b.layer.weightOffset, cRow: I, bias: nil)
        for o in outputs {
            var sum: Float = 0
            for s in 0..<n { sum += b.dy[o * n + s] }
            b.grad[b.layer.biasOffset + o] = sum
        }
    }

    /// The input error `dx[s][i] = Σ_o w[o][i] · dy[o][s]` for the inputs `inputs`, into `dx`
    /// for one sample and into `dxFlat` (scattered by `denseUnflatten`) for more.
    static func denseBackwardInput(_ b: LayerBuffers, _ p: UnsafePointer<Float>, inputs: Range<Int>) {
        let I = b.layer.input.count, O = b.layer.output.count, n = b.block.samples
        matrixMultiply(
            rows: 0..<n, columns: inputs, depth: O, a: b.dy, aRow: 1, aColumn: n,
            b: p + b.layer.weightOffset, bRow: I, c: n == 1 ? b.dx! : b.dxFlat!, cRow: I, bias: nil)
    }

    /// Scatters `dxFlat` `[n][I]` to the planar `dx` (nothing to do for one sample).
    static func denseUnflatten(_ b: LayerBuffers) {
        let n = b.block.samples
        guard n > 1 else { return }
        let C = b.layer.input.channels, plane = b.layer.input.planeSize, I = b.layer.input.count
        let flat = UnsafePointer(b.dxFlat!), dx = b.dx!
        for s in 0..<n {
            if plane == 1 {
                for c in 0..<C { dx[c * n + s] = flat[s * I + c] }
            } else {
                for c in 0..<C { (dx + (c * n + s) * plane).update(from: flat + s * I + c * plane, count: plane) }
            }
        }
    }

    static func densePasses(_ b: LayerBuffers) -> (forward: [LayerPass], backward: [LayerPass]) {
        let I = b.layer.input.count, O = b.layer.output.count, block = b.block
        var forward: [LayerPass] = []
        if b.xFlat != nil {
            forward.append(
                LayerPass(name: "\(b.layer.name) flatten", items: 1, replicated: true, writes: I) { _, _ in denseFlatten(b) })
        }
        forward.append(
            LayerPass(
                name: "\(b.layer.name) forward", items: O,
                produced: { [BufferSegment(b.y, $0.lowerBound * block.samples, $0.count * block.samples)] }
            ) { p, outputs in denseForward(b, p, outputs: outputs) })
        var backward = [
            LayerPass(
                name: "\(b.layer.name) backward", items: O,
                produced: { o in
                    [
                        BufferSegment(b.grad, b.layer.weightOffset + o.lowerBound * I, o.count * I),
                        BufferSegment(b.grad, b.layer.biasOffset + o.lowerBound, o.count)
                    ]
                }
            ) { _, outputs in denseBackward(b, outputs: outputs) }
        ]
        if let dx = b.dx {
            // Inputs in blocks of 16, so that a split never cuts a vector.
            let blocks = (I + 15) / 16
            func inputs(_ r: Range<Int>) -> Range<Int> { (r.lowerBound * 16)..<min(I, r.upperBound * 16) }
            backward.append(
                LayerPass(
                    name: "\(b.layer.name) backward input", items: blocks,
                    produced: { r in
                        let range = inputs(r), n = block.samples
                        return n == 1
                            ? [BufferSegment(dx, range.lowerBound, range.count)]
                            : (0..<n).map { BufferSegment(b.dxFlat!, $0 * I + range.lowerBound, range.count) }
                    }
                ) { p, r in denseBackwardInput(b, p, inputs: inputs(r)) })
            if b.dxFlat != nil {
                backward.append(
                    LayerPass(name: "\(b.layer.name) unflatten", items: 1, replicated: true, writes: I) { _, _ in denseUnflatten(b) })
            }
        }
        return (forward, backward)
    }
}
