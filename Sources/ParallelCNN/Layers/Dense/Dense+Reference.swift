// Shape letters: I inputs, O outputs.

extension ReferenceLayers {
    /// `y[o] = b[o] + Σ_i w[o][i] · x[i]`.
    static func denseForward(_ layer: ArchitectureLayer, _ p: [Float], _ x: [Float], _ y: inout [Float]) {
        let (I, O) = (layer.input.count, layer.output.count)
        for o in 0..<O {
            var sum: Float = 0
            for i in 0..<I { sum += p[layer.weightOffset + o * I + i] * x[i] }
            y[o] = sum + p[layer.biasOffset + o]
        }
    }

    static func denseBackward(
        _ layer: ArchitectureLayer, _ p: [Float], _ x: [Float], _ dy: [Float],
        _ grad: inout [Float], _ dx: inout [Float]?
    ) {
        let (I, O) = (layer.input.count, layer.output.count)
        for o in 0..<O {
            for i in 0..<I { grad[layer.weightOffset + o * I + i] += dy[o] * x[i] }
            grad[layer.biasOffset + o] += dy[o]
        }
        if dx != nil {
            for i in 0..<I {
                var sum: Float = 0
                for o in 0..<O { sum += p[layer.weightOffset + o * I + i] * dy[o] }
                dx![i] = sum
            }
        }
    }
}
