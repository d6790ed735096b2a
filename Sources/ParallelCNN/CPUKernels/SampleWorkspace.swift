import _CPUVector

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Shape letters (SPEC.md).
private let C = Network.channels  // 6 feature maps
private let N = Network.imageSide  // 28x28 input
private let K1 = Network.convKernel  // 5x5 c1 kernel
private let H1 = Network.convSide  // 24x24 c1 output
private let M1 = H1 * H1  // 576 c1 outputs per map
private let K2 = Network.poolKernel  // 4x4 s1 kernel, stride 4
private let H2 = Network.poolSide  // 6x6 s1 output
private let S = Network.poolOutputs  // 216 s1 outputs
private let O = Network.classes  // 10 outputs

/// One sample's buffers and the fast CPU kernels that fill them.
///
/// Every kernel computes a sub-range of its layer's output elements, each element summed by one
/// call in a fixed order. The sequential engine calls each with the full range; the threaded
/// engine's layer strategy splits the same ranges across workers and gets bit-identical results.
///
/// Layouts follow SPEC (`[c][y][x]`, row-major); c1 rows are 24 floats, three `Vec`s.
/// The per-sample gradient `grad` is the raw ascent direction in canonical parameter order
/// (no recipe divisors: the update applies them).
package final class SampleWorkspace {
    /// Input image, 28x28.
    let input: UnsafeMutablePointer<Float>
    /// The input shifted left by each kernel column: `shifted[kc][r][x] = in[r][x + kc]`,
    /// [5][28][24]. Kernels read whole aligned rows from it; reading `in` at five overlapping
    /// offsets instead makes LLVM merge the loads into slow shuffles.
    let shifted: UnsafeMutablePointer<Float>
    /// The first and last input rows holding a non-zero pixel (MNIST digits leave about a
    /// quarter of the rows blank). c1 skips the terms of blank rows, which are exactly zero; an
    /// all-blank image has `rowTop > rowBottom`.
    private(set) var rowTop = 0, rowBottom = N - 1
    /// c1 activations `σ(pre)`, [6][24][24].
    let c1Out: UnsafeMutablePointer<Float>
    /// c1 error at the pre-activation, [6][24][24].
    let c1Error: UnsafeMutablePointer<Float>
    /// s1 activations, [6][6][6].
    let s1Out: UnsafeMutablePointer<Float>
    /// s1 error at the pre-activation, [6][6][6].
    let s1Error: UnsafeMutablePointer<Float>
    /// f pre-activations and outputs (sigmoid or softmax), 10 each.
    let fPre: UnsafeMutablePointer<Float>
    let fOut: UnsafeMutablePointer<Float>
    /// Output error `δ = target - output`.
    let fError: UnsafeMutablePointer<Float>
    /// This sample's ascent direction, canonical order, padded to a whole number of `Vec`s.
    /// Points at the workspace's own buffer unless a caller redirects it (the data-parallel engine
    /// points it at the sample's slot, saving a copy).
    package var grad: UnsafeMutablePointer<Float>
    /// Per-lane partial sums of the c1 weight gradient [30 items][5 taps][16] and bias [6][16].
    let c1Partials: UnsafeMutablePointer<Float>
    let c1BiasPartials: UnsafeMutablePointer<Float>
    /// s1's weighted rows before the sums over groups of four columns, [36 pairs][24].
    let s1Rows: UnsafeMutablePointer<Float>

    /// Floats in a parameter-shaped buffer, rounded up to whole vectors (2344: 146 of 16 lanes
    /// and one of 8).
    static let paddedParameterCount = (Parameters.count + 7) / 8 * 8

    private let storage: UnsafeMutablePointer<Float>

    package init() {
        let sizes = [N * N, K1 * N * H1, C * M1, C * M1, S, S, 16, 16, 16, Self.paddedParameterCount, C * K1 * K1 * 16, C * 16, C * H2 * H1]
        // Every buffer starts on a 64-byte cache line, so whole-line vector loads do not straddle two.
        let rounded = sizes.map { ($0 + 15) / 16 * 16 }
        let total = rounded.reduce(0, +)
        storage = UnsafeMutableRawPointer.allocate(byteCount: total * MemoryLayout<Float>.stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: total)
        storage.initialize(repeating: 0, count: total)
        var cursor = storage
        var index = 0
        func take(_: Int) -> UnsafeMutablePointer<Float> {
            defer { cursor += rounded[index]; index += 1 }
            return cursor
        }
        input = take(sizes[0]); shifted = take(sizes[1]); c1Out = take(sizes[2]); c1Error = take(sizes[3])
        s1Out = take(sizes[4]); s1Error = take(sizes[5])
        fPre = take(sizes[6]); fOut = take(sizes[7]); fError = take(sizes[8]); grad = take(sizes[9])
        c1Partials = take(sizes[10]); c1BiasPartials = take(sizes[11]); s1Rows = take(sizes[12])
    }

    deinit {
        UnsafeMutableRawPointer(storage).deallocate()
    }

    /// Loads image `sample` of `images` (784 pixels each) into `input` and `shifted`, decoding
    /// bytes with SPEC's `Float(Double(byte) / 255.0)`.
    package func loadImage(_ images: ImagePixels, sample: Int) {
        if let bytes = images.bytes {
            let source = bytes + sample * N * N
            // Float division by 255 gives exactly Float(Double(b) / 255.0) for all 256 bytes
            // (multiplying by 1/255 would not: it differs for 126 of them).
            for i in stride(from: 0, to: N * N, by: 16) { input.store(pcnn_pixels16(source + i), at: i) }  // 784 = 49 · 16
        } else {
            input.update(from: images.floats! + sample * N * N, count: N * N)
        }
        let image = UnsafePointer(input)
        for kc in 0..<K1 {
            for r in 0..<N {
                let src = image + r * N + kc, dst = shiftedRow(kc: kc, row: r)
                dst.store(src.vec(0), at: 0); dst.store(src.vec(8), at: 8); dst.store(src.vec(16), at: 16)
            }
        }
        func blank(_ r: Int) -> Bool {
            let row = image + r * N
            return !any((row.vec(0) .!= 0) .| (row.vec(8) .!= 0) .| (row.vec(16) .!= 0) .| (row.vec(20) .!= 0))
        }
        rowTop = 0
        while rowTop < N && blank(rowTop) { rowTop += 1 }
        rowBottom = N - 1
        while rowBottom > rowTop && blank(rowBottom) { rowBottom -= 1 }
        if rowTop == N { rowBottom = -1 }
    }

    /// Row `row` of the input shifted by `kc` columns: 24 floats.
    @inline(__always) func shiftedRow(kc: Int, row: Int) -> UnsafeMutablePointer<Float> {
        shifted + (kc * N + row) * H1
    }

    // MARK: Forward

    /// c1 for output rows `rows` (of 0..<24), all six maps: convolution, bias, sigmoid.
    ///
    /// A map is read flat, 16 outputs at a time across row ends: output `i = 24y + x` needs
    /// `shifted[kc][i + 24kr]` for every tap, one contiguous load per tap. Each output is summed
    /// over the taps in the same order whatever `rows` is; only taps whose input rows are all
    /// blank are left out, and those add exactly zero.
    package func convForward(_ p: UnsafePointer<Float>, rows: Range<Int>) {
        var s = rows.lowerBound * H1
        let end = rows.upperBound * H1
        while wideRegisterFile && s + 32 <= end {
            c1ForwardPair(p, at: s)
            s += 32
        }
        while s + 16 <= end {
            c1ForwardChunk(p, at: s, Vec16.self)
            s += 16
        }
        if s < end { c1ForwardChunk(p, at: s, Vec.self) }  // an odd row count leaves 8 outputs
        c1Activate(from: rows.lowerBound * H1, to: end)
    }

    /// `c1Out = σ(c1Out)` for outputs `start..<end` of every map. A function of its own: in the
    /// (large) convolution the optimiser no longer inlines the sigmoid and calls it per vector.
    private func c1Activate(from start: Int, to end: Int) {
        for c in 0..<C {
            let out = c1Out + c * M1
            var i = start
            while i + 16 <= end {
                out.store(vectorSigmoid(out.vec16(i)), at: i)
                i += 16
            }
            if i < end { out.store(vectorSigmoid(out.vec(i)), at: i) }
        }
    }

    /// The taps kr (of 0..<5) that outputs `s..<s + count` need: those whose input rows y + kr
    /// (y over the outputs' rows) meet the non-blank band.
    @inline(__always) private func c1Taps(from s: Int, count: Int) -> ClosedRange<Int>? {
        let firstRow = s / H1, lastRow = (s + count - 1) / H1
        let low = max(0, rowTop - lastRow), high = min(K1 - 1, rowBottom - firstRow)
        return low <= high ? low...high : nil
    }

    /// Pre-activations `s..<s + V.scalarCount` of all six maps (into `c1Out`): six accumulators
    /// share each input load.
    @inline(__always) private func c1ForwardChunk<V: FloatVector>(_ p: UnsafePointer<Float>, at s: Int, _: V.Type) {
        let w = p + Parameters.Offset.c1Weight
        let b = p + Parameters.Offset.c1Bias
        var a0 = V(repeating: b[0]), a1 = V(repeating: b[1]), a2 = V(repeating: b[2])
        var a3 = V(repeating: b[3]), a4 = V(repeating: b[4]), a5 = V(repeating: b[5])
        if let taps = c1Taps(from: s, count: V.scalarCount) {
            for kr in taps {
                for kc in 0..<K1 {
                    let x = UnsafePointer(shifted).load(kc * N * H1 + kr * H1 + s, as: V.self)
                    let t = kr * K1 + kc
                    a0 = .fused(x, V(repeating: w[t]), a0)
                    a1 = .fused(x, V(repeating: w[K1 * K1 + t]), a1)
                    a2 = .fused(x, V(repeating: w[2 * K1 * K1 + t]), a2)
                    a3 = .fused(x, V(repeating: w[3 * K1 * K1 + t]), a3)
                    a4 = .fused(x, V(repeating: w[4 * K1 * K1 + t]), a4)
                    a5 = .fused(x, V(repeating: w[5 * K1 * K1 + t]), a5)
                }
            }
        }
        let out = c1Out + s
        out.store(a0, at: 0); out.store(a1, at: M1); out.store(a2, at: 2 * M1)
        out.store(a3, at: 3 * M1); out.store(a4, at: 4 * M1); out.store(a5, at: 5 * M1)
    }

    /// Pre-activations `s..<s + 32` of all six maps: twelve independent FMA chains, enough to hide the
    /// FMA latency (six are not), with each weight broadcast shared by two input loads.
    @inline(__always) private func c1ForwardPair(_ p: UnsafePointer<Float>, at s: Int) {
        let w = p + Parameters.Offset.c1Weight
        let b = p + Parameters.Offset.c1Bias
        var a0 = Vec16(repeating: b[0]), a1 = Vec16(repeating: b[1]), a2 = Vec16(repeating: b[2])
        var a3 = Vec16(repeating: b[3]), a4 = Vec16(repeating: b[4]), a5 = Vec16(repeating: b[5])
        var b0 = a0, b1 = a1, b2 = a2, b3 = a3, b4 = a4, b5 = a5
        if let taps = c1Taps(from: s, count: 32) {
            for kr in taps {
                for kc in 0..<K1 {
                    let row = UnsafePointer(shifted) + kc * N * H1 + kr * H1 + s
                    let x = row.vec16(0), y = row.vec16(16)
                    let t = kr * K1 + kc
                    var v = Vec16(repeating: w[t])
                    a0 = fma(x, v, a0); b0 = fma(y, v, b0)
                    v = Vec16(repeating: w[K1 * K1 + t])
                    a1 = fma(x, v, a1); b1 = fma(y, v, b1)
                    v = Vec16(repeating: w[2 * K1 * K1 + t])
                    a2 = fma(x, v, a2); b2 = fma(y, v, b2)
                    v = Vec16(repeating: w[3 * K1 * K1 + t])
                    a3 = fma(x, v, a3); b3 = fma(y, v, b3)
                    v = Vec16(repeating: w[4 * K1 * K1 + t])
                    a4 = fma(x, v, a4); b4 = fma(y, v, b4)
                    v = Vec16(repeating: w[5 * K1 * K1 + t])
                    a5 = fma(x, v, a5); b5 = fma(y, v, b5)
                }
            }
        }
        let out = c1Out + s
        out.store(a0, at: 0); out.store(b0, at: 16)
        out.store(a1, at: M1); out.store(b1, at: M1 + 16)
        out.store(a2, at: 2 * M1); out.store(b2, at: 2 * M1 + 16)
        out.store(a3, at: 3 * M1); out.store(b3, at: 3 * M1 + 16)
        out.store(a4, at: 4 * M1); out.store(b4, at: 4 * M1 + 16)
        out.store(a5, at: 5 * M1); out.store(b5, at: 5 * M1 + 16)
    }

    /// The s1 kernel row `kr` tiled across 8 lanes: `w[kr][x % 4]`.
    @inline(__always) private func s1WeightTile(_ p: UnsafePointer<Float>, row kr: Int) -> Vec {
        let w = p + Parameters.Offset.s1Weight + kr * K2
        return Vec(w[0], w[1], w[2], w[3], w[0], w[1], w[2], w[3])
    }

    /// s1 for the (map, output row) pairs `pairs` (of 0..<36, pair = c * 6 + y): sigmoid outputs.
    ///
    /// Each pair first sums its four c1 rows weighted by the kernel tiled along the row,
    /// `t[x] = Σ_kr w[kr][x % 4] · c1[c][4y + kr][x]` (into `s1Rows`); then each output is the sum
    /// of its group of four, `(t0 + t1) + (t2 + t3)`, taken for 16 outputs at once by two rounds
    /// of pairwise sums.
    package func subsampleForward(_ p: UnsafePointer<Float>, pairs: Range<Int>) {
        let w = p + Parameters.Offset.s1Weight
        let tile0 = s1WeightTile16(w), tile1 = s1WeightTile16(w + K2)
        let tile2 = s1WeightTile16(w + 2 * K2), tile3 = s1WeightTile16(w + 3 * K2)
        for pair in pairs {
            // Pair (c, y) starts at c1 row 4y of map c: offset 576c + 96y = 96 · pair.
            let rows = UnsafePointer(c1Out) + pair * K2 * H1
            var a = tile0 * rows.vec16(0), b = tile0.lowHalf * rows.vec(16)
            a = fma(tile1, rows.vec16(H1), a); b = fma(tile1.lowHalf, rows.vec(H1 + 16), b)
            a = fma(tile2, rows.vec16(2 * H1), a); b = fma(tile2.lowHalf, rows.vec(2 * H1 + 16), b)
            a = fma(tile3, rows.vec16(3 * H1), a); b = fma(tile3.lowHalf, rows.vec(3 * H1 + 16), b)
            s1Rows.store(a, at: pair * H1)
            s1Rows.store(b, at: pair * H1 + 16)
        }
        let bias = p[Parameters.Offset.s1Bias]
        let t = UnsafePointer(s1Rows)
        var i = pairs.lowerBound * H1, o = pairs.lowerBound * H2
        let end = pairs.upperBound * H1
        // A range of pairs holds 6n outputs: blocks of 16, then at most one each of 8, 4 and 2.
        while i + 64 <= end {
            let pre = pairSums(pairSums(t.vec16(i), t.vec16(i + 16)), pairSums(t.vec16(i + 32), t.vec16(i + 48)))
            s1Out.store(vectorSigmoid(pre + Vec16(repeating: bias)), at: o)
            i += 64; o += 16
        }
        if i + 32 <= end {
            let pre = pairSums(pairSums(t.vec16(i), t.vec16(i + 16)))
            s1Out.store(vectorSigmoid(pre + Vec(repeating: bias)), at: o)
            i += 32; o += 8
        }
        // 4 and 2 outputs (16 and 8 floats) are stored lane by lane: an output outside `pairs`
        // may belong to another thread.
        if i + 16 <= end {
            let quads = pairSums(pairSums(t.vec16(i)))
            let out = vectorSigmoid(Vec(lowHalf: quads, highHalf: .zero) + Vec(repeating: bias))
            for k in 0..<4 { s1Out[o + k] = out[k] }
            i += 16; o += 4
        }
        if i < end {
            let quads = t.vec(i).quadSums
            let out = vectorSigmoid(Vec(lowHalf: SIMD4(lowHalf: quads, highHalf: .zero), highHalf: .zero) + Vec(repeating: bias))
            for k in 0..<2 { s1Out[o + k] = out[k] }
        }
    }

    /// The s1 kernel row at `w` (4 floats) tiled across 16 lanes: lane x holds `w[x % 4]`.
    @inline(__always) private func s1WeightTile16(_ w: UnsafePointer<Float>) -> Vec16 {
        let quad = SIMD4<Float>(w[0], w[1], w[2], w[3])
        let eight = Vec(lowHalf: quad, highHalf: quad)
        return Vec16(lowHalf: eight, highHalf: eight)
    }

    /// f pre-activations for outputs `outputs` (of 0..<10).
    package func denseForward(_ p: UnsafePointer<Float>, outputs: Range<Int>) {
        for o in outputs {
            let w = p + Parameters.Offset.fWeight + o * S
            var a = Vec(), b = Vec(), c = Vec()
            for i in stride(from: 0, to: S, by: 24) {
                a = fma(w.vec(i), UnsafePointer(s1Out).vec(i), a)
                b = fma(w.vec(i + 8), UnsafePointer(s1Out).vec(i + 8), b)
                c = fma(w.vec(i + 16), UnsafePointer(s1Out).vec(i + 16), c)
            }
            fPre[o] = (a + b + c).total + p[Parameters.Offset.fBias + o]
        }
    }

    /// Output activations from `fPre`: sigmoid (`.original`) or softmax (`.modern`).
    package func fActivate(recipe: Recipe) {
        switch recipe {
        case .original:
            for o in 0..<O { fOut[o] = 1 / (1 + expf(-fPre[o])) }
        case .modern:
            var largest = fPre[0]
            for o in 1..<O { largest = max(largest, fPre[o]) }
            var total: Float = 0
            for o in 0..<O {
                fOut[o] = expf(fPre[o] - largest)
                total += fOut[o]
            }
            let inverse = 1 / total
            for o in 0..<O { fOut[o] *= inverse }
        }
    }

    /// Argmax of the outputs, ties to the lower class.
    package var predictedClass: Int {
        var best = 0
        for o in 1..<O where fOut[best] < fOut[o] { best = o }
        return best
    }

    /// Sets `δ = onehot(label) - output` and returns the sample's loss.
    package func outputError(label: Int, recipe: Recipe) -> Double {
        var squares: Float = 0
        for o in 0..<O {
            fError[o] = (o == label ? 1 : 0) - fOut[o]
            squares += fError[o] * fError[o]
        }
        switch recipe {
        case .original: return Double(squares.squareRoot())
        // A label probability that underflows to 0 is an infinite loss, as in the reference:
        // the divergence guard relies on seeing it.
        case .modern: return -log(Double(fOut[label]))
        }
    }

    // MARK: Backward

    /// f gradient rows `outputs` and their biases: `g[o][i] = δ[o] · s1Out[i]`.
    package func denseBackward(outputs: Range<Int>) {
        let s1 = UnsafePointer(s1Out)
        for o in outputs {
            let g = grad + Parameters.Offset.fWeight + o * S
            let d = Vec(repeating: fError[o])
            for i in stride(from: 0, to: S, by: 8) { g.store(d * s1.vec(i), at: i) }
            grad[Parameters.Offset.fBias + o] = fError[o]
        }
    }

    /// s1 error for the vectors `chunks` (of 0..<27, 8 outputs each), through the f weights:
    /// `(Σ_o w[o][i] δ[o]) · o(1-o)`.
    package func denseBackwardInput(_ p: UnsafePointer<Float>, chunks: Range<Int>) {
        let w = p + Parameters.Offset.fWeight
        for chunk in chunks {
            let i = chunk * 8
            var sum = Vec()
            for o in 0..<O { sum = fma(w.vec(o * S + i), Vec(repeating: fError[o]), sum) }
            let out = UnsafePointer(s1Out).vec(i)
            s1Error.store(sum * out * (1 - out), at: i)
        }
    }

    /// The s1 error of pair (c, y) spread over the 24 columns it came from, as three vectors.
    @inline(__always) private func spreadS1Error(pair: Int) -> (Vec, Vec, Vec) {
        let e = s1Error + pair * H2
        return (
            Vec(e[0], e[0], e[0], e[0], e[1], e[1], e[1], e[1]),
            Vec(e[2], e[2], e[2], e[2], e[3], e[3], e[3], e[3]),
            Vec(e[4], e[4], e[4], e[4], e[5], e[5], e[5], e[5])
        )
    }

    /// s1 weight-gradient rows `kernelRows` (of 0..<4): `g[kr][kc] = Σ_{c,y,x} e[c][y][x] · c1Out[c][4y+kr][4x+kc]`.
    /// With `includeBias`, also the s1 bias gradient `Σ e`.
    package func subsampleBackward(kernelRows: Range<Int>, includeBias: Bool) {
        for kr in kernelRows {
            var acc = Vec()
            for pair in 0..<(C * H2) {
                let c = pair / H2, y = pair % H2
                let (e0, e1, e2) = spreadS1Error(pair: pair)
                let row = UnsafePointer(c1Out + c * M1 + (K2 * y + kr) * H1)
                acc = fma(e0, row.vec(0), acc)
                acc = fma(e1, row.vec(8), acc)
                acc = fma(e2, row.vec(16), acc)
            }
            // Lanes k and k + 4 both hold column offset kc = k.
            let perColumn = acc.lowHalf + acc.highHalf
            for kc in 0..<K2 { grad[Parameters.Offset.s1Weight + kr * K2 + kc] = perColumn[kc] }
        }
        if includeBias {
            var sum = Vec()
            for i in stride(from: 0, to: S, by: 8) { sum += UnsafePointer(s1Error).vec(i) }
            grad[Parameters.Offset.s1Bias] = sum.total
        }
    }

    /// c1 error for the (map, s1 row) pairs `pairs` (of 0..<36): each covers 4 c1 rows,
    /// `w_s1[y%4][x%4] · e_s1[c][y/4][x/4] · o(1-o)`.
    package func subsampleBackwardInput(_ p: UnsafePointer<Float>, pairs: Range<Int>) {
        for pair in pairs {
            let c = pair / H2, y = pair % H2
            let (e0, e1, e2) = spreadS1Error(pair: pair)
            for kr in 0..<K2 {
                let tile = s1WeightTile(p, row: kr)
                let offset = c * M1 + (K2 * y + kr) * H1
                let out = UnsafePointer(c1Out + offset), err = c1Error + offset
                let o0 = out.vec(0), o1 = out.vec(8), o2 = out.vec(16)
                err.store(tile * e0 * o0 * (1 - o0), at: 0)
                err.store(tile * e1 * o1 * (1 - o1), at: 8)
                err.store(tile * e2 * o2 * (1 - o2), at: 16)
            }
        }
    }

    /// c1 weight-gradient items `items` (of 0..<30, item = c * 5 + kr): for the five taps
    /// `g[c][kr][kc] = Σ_{y,x} e[c][y][x] · in[y+kr][x+kc]`, as 16-lane partial sums in
    /// `c1Partials`; `finishC1WeightGradient` adds up the lanes.
    ///
    /// The map is read flat as in `c1Forward`: `e[i] · shifted[kc][i + 24kr]`, 16 outputs a
    /// load, over the rows whose input row y + kr meets the non-blank band (widened to whole
    /// vectors; the extra terms have a blank input row and are exactly zero). Items of the same
    /// kr are taken three channels at a time, so that each input load feeds three FMAs. Every
    /// item is summed in the same order however `items` is split.
    package func convBackward(items: Range<Int>) {
        for kr in 0..<K1 {
            // The channels c with item c * 5 + kr in `items`.
            var c = max(0, (items.lowerBound - kr + K1 - 1) / K1)
            let last = (items.upperBound - 1 - kr) >= 0 ? (items.upperBound - 1 - kr) / K1 : -1
            while c <= last {
                let count = wideRegisterFile ? min(3, last - c + 1) : 1
                if count == 1 {
                    c1WeightGradientItem(kr: kr, channel: c)
                } else {
                    c1WeightGradientGroup(kr: kr, firstChannel: c, count: count)
                }
                c += count
            }
        }
        for item in items where item % K1 == 0 {
            let c = item / K1
            let err = UnsafePointer(c1Error + c * M1)
            var s0 = Vec16(), s1 = Vec16()
            for i in stride(from: 0, to: M1, by: 32) {
                s0 += err.vec16(i); s1 += err.vec16(i + 16)
            }
            c1BiasPartials.store(s0 + s1, at: c * 16)
        }
    }

    /// Item (c, kr) alone: five accumulators, each summed in the same order as in a group.
    @inline(__always) private func c1WeightGradientItem(kr: Int, channel c: Int) {
        var g = FiveTaps()
        let firstRow = max(0, rowTop - kr), lastRow = min(H1 - 1, rowBottom - kr)
        if firstRow <= lastRow {
            let e = UnsafePointer(c1Error + c * M1)
            let input = UnsafePointer(shifted) + kr * H1
            var i = firstRow * H1 / 16 * 16
            let end = ((lastRow + 1) * H1 + 15) / 16 * 16
            while i < end {
                let x = e.vec16(i)
                g.t0 = fma(x, input.vec16(i), g.t0)
                g.t1 = fma(x, input.vec16(N * H1 + i), g.t1)
                g.t2 = fma(x, input.vec16(2 * N * H1 + i), g.t2)
                g.t3 = fma(x, input.vec16(3 * N * H1 + i), g.t3)
                g.t4 = fma(x, input.vec16(4 * N * H1 + i), g.t4)
                i += 16
            }
        }
        g.store(to: c1Partials + (c * K1 + kr) * K1 * 16)
    }

    /// Items (c, kr) for channels `c..<c + count` (count ≤ 3) of one kr: fifteen accumulators.
    /// With fewer than three channels the missing ones repeat the first and are not stored.
    @inline(__always) private func c1WeightGradientGroup(kr: Int, firstChannel c: Int, count: Int) {
        var g0 = FiveTaps(), g1 = FiveTaps(), g2 = FiveTaps()
        let firstRow = max(0, rowTop - kr), lastRow = min(H1 - 1, rowBottom - kr)
        if firstRow <= lastRow {
            let e0 = UnsafePointer(c1Error + c * M1)
            let e1 = count > 1 ? e0 + M1 : e0, e2 = count > 2 ? e0 + 2 * M1 : e0
            let input = UnsafePointer(shifted) + kr * H1
            var i = firstRow * H1 / 16 * 16
            let end = ((lastRow + 1) * H1 + 15) / 16 * 16
            while i < end {
                let x0 = e0.vec16(i), x1 = e1.vec16(i), x2 = e2.vec16(i)
                @inline(__always) func tap(_ kc: Int, _ t0: inout Vec16, _ t1: inout Vec16, _ t2: inout Vec16) {
                    let s = input.vec16(kc * N * H1 + i)
                    t0 = fma(x0, s, t0); t1 = fma(x1, s, t1); t2 = fma(x2, s, t2)
                }
                tap(0, &g0.t0, &g1.t0, &g2.t0); tap(1, &g0.t1, &g1.t1, &g2.t1); tap(2, &g0.t2, &g1.t2, &g2.t2)
                tap(3, &g0.t3, &g1.t3, &g2.t3); tap(4, &g0.t4, &g1.t4, &g2.t4)
                i += 16
            }
        }
        // Lane sums are left for later: reducing here lets LLVM's SLP vectoriser transpose
        // the whole loop into shuffles, several times slower.
        g0.store(to: c1Partials + (c * K1 + kr) * K1 * 16)
        if count > 1 { g1.store(to: c1Partials + ((c + 1) * K1 + kr) * K1 * 16) }
        if count > 2 { g2.store(to: c1Partials + ((c + 2) * K1 + kr) * K1 * 16) }
    }

    /// Adds up the lanes left by `c1WeightGradient` for the items `items` into `grad`.
    @inline(never)
    package func finishConvBackward(items: Range<Int>) {
        for item in items {
            let partial = UnsafePointer(c1Partials + item * K1 * 16)
            let g = grad + Parameters.Offset.c1Weight + item * K1
            for kc in 0..<K1 { g[kc] = partial.vec16(kc * 16).total }
            if item % K1 == 0 {
                let c = item / K1
                grad[Parameters.Offset.c1Bias + c] = UnsafePointer(c1BiasPartials).vec16(c * 16).total
            }
        }
    }

    // MARK: Whole passes (one thread)

    /// Forward pass of the loaded image through all layers.
    func forward(_ p: UnsafePointer<Float>, recipe: Recipe) {
        convForward(p, rows: 0..<H1)
        subsampleForward(p, pairs: 0..<(C * H2))
        denseForward(p, outputs: 0..<O)
        fActivate(recipe: recipe)
    }

    /// Backward pass after `outputError`: fills `grad`.
    func backward(_ p: UnsafePointer<Float>) {
        denseBackward(outputs: 0..<O)
        denseBackwardInput(p, chunks: 0..<(S / 8))
        subsampleBackward(kernelRows: 0..<K2, includeBias: true)
        subsampleBackwardInput(p, pairs: 0..<(C * H2))
        convBackward(items: 0..<(C * K1))
        finishConvBackward(items: 0..<(C * K1))
    }

    /// One training sample on this thread: load, forward, error, backward (fills `grad`); returns
    /// the sample's loss and correctness.
    func trainSample(
        _ images: ImagePixels, sample: Int, label: Int, _ p: UnsafePointer<Float>,
        recipe: Recipe
    ) -> StepStatistics {
        loadImage(images, sample: sample)
        forward(p, recipe: recipe)
        let wrong = predictedClass != label
        let loss = outputError(label: label, recipe: recipe)
        backward(p)
        return StepStatistics(lossSum: loss, misclassified: wrong ? 1 : 0, samples: 1)
    }
}

/// Five 16-lane sums, one per c1 kernel column.
private struct FiveTaps {
    var t0 = Vec16(), t1 = Vec16(), t2 = Vec16(), t3 = Vec16(), t4 = Vec16()

    @inline(__always) func store(to p: UnsafeMutablePointer<Float>) {
        p.store(t0, at: 0); p.store(t1, at: 16); p.store(t2, at: 32); p.store(t3, at: 48); p.store(t4, at: 64)
    }
}

extension SampleWorkspace: SampleTrainer {
    /// One sample at a time: `BatchGradient` sums them.
    var blockCapacity: Int { 1 }

    func trainBlock(
        _ images: ImagePixels, samples: UnsafeBufferPointer<Int32>, labels: UnsafeBufferPointer<UInt8>,
        _ p: UnsafePointer<Float>, recipe: Recipe
    ) -> StepStatistics {
        precondition(samples.count == 1, "the paper's workspace trains one sample at a time")
        let sample = Int(samples[0])
        return trainSample(images, sample: sample, label: Int(labels[sample]), p, recipe: recipe)
    }

    func predict(_ images: ImagePixels, sample: Int, _ p: UnsafePointer<Float>, recipe: Recipe) -> Int {
        loadImage(images, sample: sample)
        forward(p, recipe: recipe)
        return predictedClass
    }

    func predict(
        _ images: ImagePixels, range: Range<Int>, _ p: UnsafePointer<Float>, recipe: Recipe,
        into predictions: UnsafeMutableBufferPointer<UInt8>
    ) {
        for (k, sample) in range.enumerated() { predictions[k] = UInt8(predict(images, sample: sample, p, recipe: recipe)) }
    }
}
