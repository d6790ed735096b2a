#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Shape letters (SPEC.md).
private let C = Network.channels      // 6 feature maps
private let N = Network.imageSide     // 28x28 input
private let K1 = Network.convKernel   // 5x5 c1 kernel
private let H1 = Network.convSide     // 24x24 c1 output
private let M1 = H1 * H1              // 576 c1 outputs per map
private let K2 = Network.poolKernel   // 4x4 s1 kernel, stride 4
private let H2 = Network.poolSide     // 6x6 s1 output
private let S = Network.poolOutputs   // 216 s1 outputs
private let O = Network.classes       // 10 outputs

/// One sample's buffers and the fast CPU kernels that fill them.
///
/// Every kernel computes a sub-range of its layer's output elements, each element summed by one
/// call in a fixed order. The sequential engine calls each with the full range; the threaded
/// engine's layer strategy splits the same ranges across workers and gets bit-identical results.
///
/// Layouts follow SPEC (`[c][y][x]`, row-major); c1 rows are 24 floats, three `Vec`s.
/// The per-sample gradient `grad` is the raw ascent direction in canonical parameter order
/// (no recipe divisors: the update applies them).
final class SampleWorkspace {
    /// Input image, 28x28.
    let input: UnsafeMutablePointer<Float>
    /// The input shifted left by each kernel column: `shifted[kc][r][x] = in[r][x + kc]`,
    /// [5][28][24]. Kernels read whole aligned rows from it; reading `in` at five overlapping
    /// offsets instead makes LLVM merge the loads into slow shuffles.
    let shifted: UnsafeMutablePointer<Float>
    /// Whether input row r is all zeros (MNIST digits leave about a quarter of the rows blank);
    /// c1 skips their terms, which are exactly zero.
    let blankRow: UnsafeMutablePointer<Bool>
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
    var grad: UnsafeMutablePointer<Float>
    /// Per-lane partial sums of the c1 weight gradient [30 items][5 taps][8] and bias [6][8].
    let c1Partials: UnsafeMutablePointer<Float>
    let c1BiasPartials: UnsafeMutablePointer<Float>

    /// Floats in a parameter-shaped buffer, rounded up to whole vectors.
    static let paddedParameterCount = (Parameters.count + 7) / 8 * 8

    private let storage: UnsafeMutablePointer<Float>

    init() {
        let sizes = [N * N, K1 * N * H1, C * M1, C * M1, S, S, 16, 16, 16, Self.paddedParameterCount, C * K1 * K1 * 8, C * 8]
        let total = sizes.reduce(0, +)
        storage = .allocate(capacity: total)
        storage.initialize(repeating: 0, count: total)
        var cursor = storage
        func take(_ n: Int) -> UnsafeMutablePointer<Float> {
            defer { cursor += n }
            return cursor
        }
        input = take(sizes[0]); shifted = take(sizes[1]); c1Out = take(sizes[2]); c1Error = take(sizes[3])
        s1Out = take(sizes[4]); s1Error = take(sizes[5])
        fPre = take(sizes[6]); fOut = take(sizes[7]); fError = take(sizes[8]); grad = take(sizes[9])
        c1Partials = take(sizes[10]); c1BiasPartials = take(sizes[11])
        blankRow = .allocate(capacity: N)
        blankRow.initialize(repeating: true, count: N)
    }

    deinit {
        storage.deallocate()
        blankRow.deallocate()
    }

    /// Copies image `sample` of `images` (784 floats each) into `input` and `shifted`.
    func loadImage(_ images: UnsafePointer<Float>, sample: Int) {
        let image = images + sample * N * N
        input.update(from: image, count: N * N)
        for kc in 0..<K1 {
            for r in 0..<N {
                let src = image + r * N + kc, dst = shiftedRow(kc: kc, row: r)
                dst.store(src.vec(0), at: 0); dst.store(src.vec(8), at: 8); dst.store(src.vec(16), at: 16)
            }
        }
        for r in 0..<N {
            let row = image + r * N
            let nonzero = (row.vec(0) .!= 0) .| (row.vec(8) .!= 0) .| (row.vec(16) .!= 0) .| (row.vec(20) .!= 0)
            blankRow[r] = !any(nonzero)
        }
    }

    /// Row `row` of the input shifted by `kc` columns: 24 floats.
    @inline(__always) func shiftedRow(kc: Int, row: Int) -> UnsafeMutablePointer<Float> {
        shifted + (kc * N + row) * H1
    }

    // MARK: Forward

    /// c1 for output rows `rows` (of 0..<24), all six maps: convolution, bias, sigmoid.
    func c1Forward(_ p: UnsafePointer<Float>, rows: Range<Int>) {
        for y in rows {
            c1ForwardRow(p, y: y, firstChannel: 0)
            c1ForwardRow(p, y: y, firstChannel: 3)
        }
    }

    /// One output row of three maps at once: nine accumulators share each input load.
    @inline(__always) private func c1ForwardRow(_ p: UnsafePointer<Float>, y: Int, firstChannel c: Int) {
        let w = p + Parameters.Offset.c1Weight + c * K1 * K1
        let b = p + Parameters.Offset.c1Bias + c
        var a0 = Vec(repeating: b[0]), a1 = a0, a2 = a0
        var b0 = Vec(repeating: b[1]), b1 = b0, b2 = b0
        var d0 = Vec(repeating: b[2]), d1 = d0, d2 = d0
        for kr in 0..<K1 where !blankRow[y + kr] {
            for kc in 0..<K1 {
                let row = UnsafePointer(shiftedRow(kc: kc, row: y + kr))
                let x0 = row.vec(0), x1 = row.vec(8), x2 = row.vec(16)
                let t = kr * K1 + kc
                let wa = Vec(repeating: w[t]), wb = Vec(repeating: w[K1 * K1 + t]), wd = Vec(repeating: w[2 * K1 * K1 + t])
                a0 = fma(x0, wa, a0); a1 = fma(x1, wa, a1); a2 = fma(x2, wa, a2)
                b0 = fma(x0, wb, b0); b1 = fma(x1, wb, b1); b2 = fma(x2, wb, b2)
                d0 = fma(x0, wd, d0); d1 = fma(x1, wd, d1); d2 = fma(x2, wd, d2)
            }
        }
        storeActivatedRow(channel: c, y: y, a0, a1, a2)
        storeActivatedRow(channel: c + 1, y: y, b0, b1, b2)
        storeActivatedRow(channel: c + 2, y: y, d0, d1, d2)
    }

    @inline(__always) private func storeActivatedRow(channel c: Int, y: Int, _ v0: Vec, _ v1: Vec, _ v2: Vec) {
        let out = c1Out + c * M1 + y * H1
        out.store(vectorSigmoid(v0), at: 0)
        out.store(vectorSigmoid(v1), at: 8)
        out.store(vectorSigmoid(v2), at: 16)
    }

    /// The s1 kernel row `kr` tiled across 8 lanes: `w[kr][x % 4]`.
    @inline(__always) private func s1WeightTile(_ p: UnsafePointer<Float>, row kr: Int) -> Vec {
        let w = p + Parameters.Offset.s1Weight + kr * K2
        return Vec(w[0], w[1], w[2], w[3], w[0], w[1], w[2], w[3])
    }

    /// s1 for the (map, output row) pairs `pairs` (of 0..<36, pair = c * 6 + y): sigmoid outputs.
    func s1Forward(_ p: UnsafePointer<Float>, pairs: Range<Int>) {
        let bias = p[Parameters.Offset.s1Bias]
        for pair in pairs {
            let c = pair / H2, y = pair % H2
            // Weighted sum of the 4 input rows, then sums of each group of 4 columns.
            var t0 = Vec(), t1 = Vec(), t2 = Vec()
            for kr in 0..<K2 {
                let tile = s1WeightTile(p, row: kr)
                let row = UnsafePointer(c1Out + c * M1 + (K2 * y + kr) * H1)
                t0 = fma(tile, row.vec(0), t0)
                t1 = fma(tile, row.vec(8), t1)
                t2 = fma(tile, row.vec(16), t2)
            }
            let q0 = t0.quadSums, q1 = t1.quadSums, q2 = t2.quadSums
            let pre = Vec(q0[0], q0[1], q1[0], q1[1], q2[0], q2[1], 0, 0) + Vec(repeating: bias)
            let out = vectorSigmoid(pre)
            let dst = s1Out + pair * H2
            for x in 0..<H2 { dst[x] = out[x] }
        }
    }

    /// f pre-activations for outputs `outputs` (of 0..<10).
    func fForward(_ p: UnsafePointer<Float>, outputs: Range<Int>) {
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
    func fActivate(recipe: Recipe) {
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
    var predictedClass: Int {
        var best = 0
        for o in 1..<O where fOut[best] < fOut[o] { best = o }
        return best
    }

    /// Sets `δ = onehot(label) - output` and returns the sample's loss.
    func outputError(label: Int, recipe: Recipe) -> Double {
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
    func fWeightGradient(outputs: Range<Int>) {
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
    func s1ErrorBackward(_ p: UnsafePointer<Float>, chunks: Range<Int>) {
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
        return (Vec(e[0], e[0], e[0], e[0], e[1], e[1], e[1], e[1]),
                Vec(e[2], e[2], e[2], e[2], e[3], e[3], e[3], e[3]),
                Vec(e[4], e[4], e[4], e[4], e[5], e[5], e[5], e[5]))
    }

    /// s1 weight-gradient rows `kernelRows` (of 0..<4): `g[kr][kc] = Σ_{c,y,x} e[c][y][x] · c1Out[c][4y+kr][4x+kc]`.
    /// With `includeBias`, also the s1 bias gradient `Σ e`.
    func s1WeightGradient(kernelRows: Range<Int>, includeBias: Bool) {
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
    func c1ErrorBackward(_ p: UnsafePointer<Float>, pairs: Range<Int>) {
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
    /// `g[c][kr][kc] = Σ_{y,x} e[c][y][x] · in[y+kr][x+kc]`, as 8-lane partial sums in
    /// `c1Partials`; `finishC1WeightGradient` adds up the lanes.
    func c1WeightGradient(items: Range<Int>) {
        for item in items {
            let c = item / K1, kr = item % K1
            let err = UnsafePointer(c1Error + c * M1)
            // Two accumulators per tap keep ten independent FMA chains in flight.
            var a0 = Vec(), a1 = Vec(), a2 = Vec(), a3 = Vec(), a4 = Vec()
            var b0 = Vec(), b1 = Vec(), b2 = Vec(), b3 = Vec(), b4 = Vec()
            for y in 0..<H1 where !blankRow[y + kr] {
                let e = err + y * H1
                let e0 = e.vec(0), e1 = e.vec(8), e2 = e.vec(16)
                @inline(__always) func tap(_ kc: Int, _ a: inout Vec, _ b: inout Vec) {
                    let row = UnsafePointer(shiftedRow(kc: kc, row: y + kr))
                    a = fma(e0, row.vec(0), a)
                    b = fma(e1, row.vec(8), b)
                    a = fma(e2, row.vec(16), a)
                }
                tap(0, &a0, &b0); tap(1, &a1, &b1); tap(2, &a2, &b2); tap(3, &a3, &b3); tap(4, &a4, &b4)
            }
            // Lane sums are left for later: reducing here lets LLVM's SLP vectoriser transpose
            // the whole loop into shuffles, several times slower.
            let partial = c1Partials + item * K1 * 8
            partial.store(a0 + b0, at: 0); partial.store(a1 + b1, at: 8); partial.store(a2 + b2, at: 16)
            partial.store(a3 + b3, at: 24); partial.store(a4 + b4, at: 32)
            if kr == 0 {
                var s0 = Vec(), s1 = Vec(), s2 = Vec()
                for i in stride(from: 0, to: M1, by: 24) {
                    s0 += err.vec(i); s1 += err.vec(i + 8); s2 += err.vec(i + 16)
                }
                c1BiasPartials.store(s0 + s1 + s2, at: c * 8)
            }
        }
    }

    /// Adds up the lanes left by `c1WeightGradient` for the items `items` into `grad`.
    @inline(never)
    func finishC1WeightGradient(items: Range<Int>) {
        for item in items {
            let partial = UnsafePointer(c1Partials + item * K1 * 8)
            let g = grad + Parameters.Offset.c1Weight + item * K1
            for kc in 0..<K1 { g[kc] = partial.vec(kc * 8).total }
            if item % K1 == 0 {
                let c = item / K1
                grad[Parameters.Offset.c1Bias + c] = UnsafePointer(c1BiasPartials).vec(c * 8).total
            }
        }
    }

    // MARK: Whole passes (one thread)

    /// Forward pass of the loaded image through all layers.
    func forward(_ p: UnsafePointer<Float>, recipe: Recipe) {
        c1Forward(p, rows: 0..<H1)
        s1Forward(p, pairs: 0..<(C * H2))
        fForward(p, outputs: 0..<O)
        fActivate(recipe: recipe)
    }

    /// Backward pass after `outputError`: fills `grad`.
    func backward(_ p: UnsafePointer<Float>) {
        fWeightGradient(outputs: 0..<O)
        s1ErrorBackward(p, chunks: 0..<(S / 8))
        s1WeightGradient(kernelRows: 0..<K2, includeBias: true)
        c1ErrorBackward(p, pairs: 0..<(C * H2))
        c1WeightGradient(items: 0..<(C * K1))
        finishC1WeightGradient(items: 0..<(C * K1))
    }

    /// One training sample on this thread: load, forward, error, backward (fills `grad`); returns
    /// the sample's loss and correctness.
    func trainSample(_ images: UnsafePointer<Float>, sample: Int, label: Int, _ p: UnsafePointer<Float>,
                     recipe: Recipe) -> StepStatistics {
        loadImage(images, sample: sample)
        forward(p, recipe: recipe)
        let wrong = predictedClass != label
        let loss = outputError(label: label, recipe: recipe)
        backward(p)
        return StepStatistics(lossSum: loss, misclassified: wrong ? 1 : 0, samples: 1)
    }
}
