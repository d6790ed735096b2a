import _CPUVector

// Activations work on whole 16-float chunks of buffers padded to a multiple of 16, so every
// element goes through the same vector code whatever split a pass is given. A pass has the
// chunks of a full block; those past the current block's values are skipped.

extension CPULayers {
    /// `y = act(x)` over the chunks `chunks` (16 values each).
    static func activationForward(_ b: LayerBuffers, _ activation: Activation, chunks: Range<Int>) {
        for k in chunks.clamped(to: 0..<usedChunks(b)) {
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

    /// `dx = dy · act'(y)` over the chunks `chunks`.
    static func activationBackward(_ b: LayerBuffers, _ activation: Activation, chunks: Range<Int>) {
        let dx = b.dx!
        for k in chunks.clamped(to: 0..<usedChunks(b)) {
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

    /// Chunks holding the current block's values.
    @inline(__always) static func usedChunks(_ b: LayerBuffers) -> Int { (b.block.samples * b.layer.output.count + 15) / 16 }

    static func activationPasses(_ b: LayerBuffers, _ activation: Activation) -> (forward: [LayerPass], backward: [LayerPass]) {
        let chunks = (b.block.capacity * b.layer.output.count + 15) / 16
        let forward = [
            LayerPass(name: "\(b.layer.name) forward", items: chunks, replicated: true, writes: b.layer.output.count) { _, r in
                activationForward(b, activation, chunks: r)
            }
        ]
        let backward = [
            LayerPass(name: "\(b.layer.name) backward", items: chunks, replicated: true, writes: b.layer.output.count) { _, r in
                activationBackward(b, activation, chunks: r)
            }
        ]
        return (forward, backward)
    }
}
