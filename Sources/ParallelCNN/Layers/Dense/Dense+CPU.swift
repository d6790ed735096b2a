// Shape letters: I inputs, O outputs.

extension CPULayers {
    /// `y[o] = Σ_i w[o][i] · x[i] + b[o]` for the outputs `outputs`.
    static func denseForward(_ b: LayerBuffers, _ p: UnsafePointer<Float>, outputs: Range<Int>) {
        let I = b.layer.input.count
        rowDots(
            rows: outputs, columns: 0..<1, length: I, a: p + b.layer.weightOffset, aRow: I,
            b: b.x, bRow: I, c: b.y, cRow: 1, bias: p + b.layer.biasOffset)
    }

    /// The weight gradient `dw[o][i] = dy[o] · x[i]` and bias gradient `dy[o]` of the outputs `outputs`.
    static func denseBackward(_ b: LayerBuffers, outputs: Range<Int>) {
        let I = b.layer.input.count, wide = I / 16 * 16
        for o in outputs {
            let e = b.dy[o], row = b.grad + b.layer.weightOffset + o * I
            let ev = Vec16(repeating: e)
            var i = 0
            while i < wide {
                row.store(ev * UnsafePointer(b.x).vec16(i), at: i)
                i += 16
            }
            while i < I {
                row[i] = e * b.x[i]
                i += 1
            }
            b.grad[b.layer.biasOffset + o] = e
        }
    }

    /// The input error `dx[i] = Σ_o w[o][i] · dy[o]` for the inputs `inputs`.
    static func denseBackwardInput(_ b: LayerBuffers, _ p: UnsafePointer<Float>, inputs: Range<Int>) {
        let I = b.layer.input.count, O = b.layer.output.count
        matrixMultiply(
            rows: 0..<1, columns: inputs, depth: O, a: b.dy, aRow: 0, aColumn: 1,
            b: p + b.layer.weightOffset, bRow: I, c: b.dx!, cRow: 0, bias: nil)
    }

    static func densePasses(_ b: LayerBuffers) -> (forward: [LayerPass], backward: [LayerPass]) {
        let I = b.layer.input.count, O = b.layer.output.count
        let forward = [
            LayerPass(name: "\(b.layer.name) forward", items: O, produced: { [BufferSegment(b.y, $0.lowerBound, $0.count)] }) {
                p, outputs in denseForward(b, p, outputs: outputs)
            }
        ]
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
            backward.append(
                LayerPass(
                    name: "\(b.layer.name) backward input", items: blocks,
                    produced: { r in
                        let range = (r.lowerBound * 16)..<min(I, r.upperBound * 16)
                        return [BufferSegment(dx, range.lowerBound, range.count)]
                    }
                ) { p, r in denseBackwardInput(b, p, inputs: (r.lowerBound * 16)..<min(I, r.upperBound * 16)) })
        }
        return (forward, backward)
    }
}
