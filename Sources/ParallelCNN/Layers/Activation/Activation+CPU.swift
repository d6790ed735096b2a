import _CPUVector

// Activations work on whole 16-float chunks of buffers padded to a multiple of 16, so every
// element goes through the same vector code whatever split a pass is given. A pass has as many
// items as a full block has chunks; a range of them stands for the same share of the chunks
// the current block uses, so a split shares out the work of a block of any size.

extension CPULayers {
    /// `y = act(x)` over the share `items` of `itemCount` of the used chunks (16 values each).
    static func activationForward(_ b: LayerBuffers, _ activation: Activation, items: Range<Int>, of itemCount: Int) {
        for k in usedChunks(b, items: items, of: itemCount) {
            let x = UnsafePointer(b.x).vec16(16 * k)
            let y: Vec16 =
                switch activation {
                case .sigmoid: vectorSigmoid(x)
                case .tanh: 2 * vectorSigmoid(2 * x) - 1
                case .relu: pcnn_relu16(x)
                }
            b.y.store(y, at: 16 * k)
        }
    }

    /// `dx = dy · act'(y)` over the share `items` of `itemCount` of the used chunks.
    static func activationBackward(_ b: LayerBuffers, _ activation: Activation, items: Range<Int>, of itemCount: Int) {
        let dx = b.dx!
        for k in usedChunks(b, items: items, of: itemCount) {
            let y = UnsafePointer(b.y).vec16(16 * k), dy = UnsafePointer(b.dy).vec16(16 * k)
            let d: Vec16 =
                switch activation {
                case .sigmoid: dy * y * (1 - y)
                case .tanh: dy * (1 - y * y)
                case .relu: pcnn_where_positive16(dy, y)
                }
            dx.store(d, at: 16 * k)
        }
    }

    /// The chunks holding the current block's values that the items `items` of `itemCount` stand for.
    @inline(__always) static func usedChunks(_ b: LayerBuffers, items: Range<Int>, of itemCount: Int) -> Range<Int> {
        let used = (b.block.samples * b.layer.output.count + 15) / 16
        return (items.lowerBound * used / itemCount)..<(items.upperBound * used / itemCount)
    }

    static func activationPasses(_ b: LayerBuffers, _ activation: Activation) -> (forward: [LayerPass], backward: [LayerPass]) {
        let chunks = (b.block.capacity * b.layer.output.count + 15) / 16
        let forward = [
            LayerPass(name: "\(b.layer.name) forward", items: chunks, replicated: true, writes: b.layer.output.count) { _, r in
                activationForward(b, activation, items: r, of: chunks)
            }
        ]
        let backward = [
            LayerPass(name: "\(b.layer.name) backward", items: chunks, replicated: true, writes: b.layer.output.count) { _, r in
                activationBackward(b, activation, items: r, of: chunks)
            }
        ]
        return (forward, backward)
    }
}
