import _CPUVector

/// The fast CPU version of every layer's passes (one file per layer type, beside its reference
/// twin in `ReferenceLayers`), and the two matrix kernels they share.
///
/// Determinism: every output element is computed by one call, in one fixed order of fused
/// multiply-adds, whatever range of rows or columns a call is given. Splitting a pass's items
/// across threads or ranks therefore gives bit-identical results.
enum CPULayers {
    /// `a · b + c` rounded as the vector kernels round it (one fused operation where the target
    /// has FMA, a multiply and an add otherwise), for the scalar tails.
    @inline(__always) static func fused(_ a: Float, _ b: Float, _ c: Float) -> Float {
        pcnn_fma16(Vec16(repeating: a), Vec16(repeating: b), Vec16(repeating: c))[0]
    }

    /// `c[i][j] = bias[i] + Σ_k A(i, k) · b[k][j]` for `i` in `rows`, `j` in `columns`, the sum
    /// over `k = 0..<depth` in order, where `A(i, k) = a[i·aRow + k·aColumn]` (so `a` may be read
    /// transposed); `bias` nil starts from 0. Register-blocked: 4 rows × 32 columns of
    /// accumulators, each `b` row loaded once for the 4 rows.
    static func matrixMultiply(
        rows: Range<Int>, columns: Range<Int>, depth: Int,
        a: UnsafePointer<Float>, aRow: Int, aColumn: Int,
        b: UnsafePointer<Float>, bRow: Int,
        c: UnsafeMutablePointer<Float>, cRow: Int, bias: UnsafePointer<Float>?
    ) {
        var i = rows.lowerBound
        while i < rows.upperBound {
            let blockRows = min(4, rows.upperBound - i)
            var j = columns.lowerBound
            if blockRows == 4 {
                while j + 32 <= columns.upperBound {
                    block4x32(i, j, depth, a, aRow, aColumn, b, bRow, c, cRow, bias)
                    j += 32
                }
            }
            while j + 16 <= columns.upperBound {
                for r in i..<(i + blockRows) { block1x16(r, j, depth, a, aRow, aColumn, b, bRow, c, cRow, bias) }
                j += 16
            }
            // The last columns as one more block of 16 that overlaps the previous one: an element
            // computed twice gets the same value both times (same fused operations in the same order).
            if j < columns.upperBound, columns.count >= 16 {
                for r in i..<(i + blockRows) { block1x16(r, columns.upperBound - 16, depth, a, aRow, aColumn, b, bRow, c, cRow, bias) }
                j = columns.upperBound
            }
            for r in i..<(i + blockRows) {
                for jj in j..<columns.upperBound {
                    var sum = bias?[r] ?? 0
                    for k in 0..<depth { sum = fused(a[r * aRow + k * aColumn], b[k * bRow + jj], sum) }
                    c[r * cRow + jj] = sum
                }
            }
            i += blockRows
        }
    }

    @inline(__always) private static func block4x32(
        _ i: Int, _ j: Int, _ depth: Int,
        _ a: UnsafePointer<Float>, _ aRow: Int, _ aColumn: Int,
        _ b: UnsafePointer<Float>, _ bRow: Int,
        _ c: UnsafeMutablePointer<Float>, _ cRow: Int, _ bias: UnsafePointer<Float>?
    ) {
        var s00 = Vec16(repeating: bias?[i] ?? 0), s01 = s00
        var s10 = Vec16(repeating: bias?[i + 1] ?? 0), s11 = s10
        var s20 = Vec16(repeating: bias?[i + 2] ?? 0), s21 = s20
        var s30 = Vec16(repeating: bias?[i + 3] ?? 0), s31 = s30
        var ak = a + i * aRow, bk = b + j
        for _ in 0..<depth {
            let b0 = bk.vec16(0), b1 = bk.vec16(16)
            let a0 = Vec16(repeating: ak[0]), a1 = Vec16(repeating: ak[aRow])
            let a2 = Vec16(repeating: ak[2 * aRow]), a3 = Vec16(repeating: ak[3 * aRow])
            s00 = fma(a0, b0, s00); s01 = fma(a0, b1, s01)
            s10 = fma(a1, b0, s10); s11 = fma(a1, b1, s11)
            s20 = fma(a2, b0, s20); s21 = fma(a2, b1, s21)
            s30 = fma(a3, b0, s30); s31 = fma(a3, b1, s31)
            ak += aColumn
            bk += bRow
        }
        let out = c + i * cRow + j
        out.store(s00, at: 0); out.store(s01, at: 16)
        out.store(s10, at: cRow); out.store(s11, at: cRow + 16)
        out.store(s20, at: 2 * cRow); out.store(s21, at: 2 * cRow + 16)
        out.store(s30, at: 3 * cRow); out.store(s31, at: 3 * cRow + 16)
    }

    @inline(__always) private static func block1x16(
        _ i: Int, _ j: Int, _ depth: Int,
        _ a: UnsafePointer<Float>, _ aRow: Int, _ aColumn: Int,
        _ b: UnsafePointer<Float>, _ bRow: Int,
        _ c: UnsafeMutablePointer<Float>, _ cRow: Int, _ bias: UnsafePointer<Float>?
    ) {
        var s = Vec16(repeating: bias?[i] ?? 0)
        var ak = a + i * aRow, bk = b + j
        for _ in 0..<depth {
            s = fma(Vec16(repeating: ak[0]), bk.vec16(0), s)
            ak += aColumn
            bk += bRow
        }
        (c + i * cRow + j).store(s, at: 0)
    }

    /// `c[i][j] = Σ_n a[i][n] · b[j][n]` (+ `bias[i]` after the sum if given), for `i` in `rows`,
    /// `j` in `columns`: dot products of rows of length `length`, summed 16 lanes at a time, the
    /// lanes added, then the tail in order.
    static func rowDots(
        rows: Range<Int>, columns: Range<Int>, length: Int,
        a: UnsafePointer<Float>, aRow: Int, b: UnsafePointer<Float>, bRow: Int,
        c: UnsafeMutablePointer<Float>, cRow: Int, bias: UnsafePointer<Float>? = nil
    ) {
        let wide = length / 16 * 16
        for i in rows {
            let ai = a + i * aRow
            var j = columns.lowerBound
            while j + 4 <= columns.upperBound {
                let b0 = b + j * bRow, b1 = b0 + bRow, b2 = b1 + bRow, b3 = b2 + bRow
                var s0 = Vec16(), s1 = Vec16(), s2 = Vec16(), s3 = Vec16()
                var n = 0
                while n < wide {
                    let x = ai.vec16(n)
                    s0 = fma(x, b0.vec16(n), s0); s1 = fma(x, b1.vec16(n), s1)
                    s2 = fma(x, b2.vec16(n), s2); s3 = fma(x, b3.vec16(n), s3)
                    n += 16
                }
                c[i * cRow + j] = finish(s0, ai, b0, wide, length) + (bias?[i] ?? 0)
                c[i * cRow + j + 1] = finish(s1, ai, b1, wide, length) + (bias?[i] ?? 0)
                c[i * cRow + j + 2] = finish(s2, ai, b2, wide, length) + (bias?[i] ?? 0)
                c[i * cRow + j + 3] = finish(s3, ai, b3, wide, length) + (bias?[i] ?? 0)
                j += 4
            }
            while j < columns.upperBound {
                let bj = b + j * bRow
                var s = Vec16()
                var n = 0
                while n < wide {
                    s = fma(ai.vec16(n), bj.vec16(n), s)
                    n += 16
                }
                c[i * cRow + j] = finish(s, ai, bj, wide, length) + (bias?[i] ?? 0)
                j += 1
            }
        }
    }

    /// The lanes with the tail `wide..<length` (under 16 values) added as one more partial
    /// vector, then summed. The tail is loaded as whole vectors whose lanes past `length` are
    /// zeroed, so `a` and `b` must be readable 16 floats past `wide` (`CPUNetwork` and
    /// `ParameterState` allocate that slack, `readSlack`).
    @inline(__always) private static func finish(
        _ lanes: Vec16, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
        _ wide: Int, _ length: Int
    ) -> Float {
        guard wide < length else { return lanes.sum() }
        let n = Int32(length - wide)
        return fma(pcnn_first_lanes16(a.vec16(wide), n), pcnn_first_lanes16(b.vec16(wide), n), lanes).sum()
    }

    /// Floats a buffer read by `rowDots` must have after its last value.
    static let readSlack = 16

    /// `Σ_n x[n]` over `length` values, 16 lanes at a time, then the tail.
    @inline(__always) static func sum(_ x: UnsafePointer<Float>, length: Int) -> Float {
        let wide = length / 16 * 16
        var lanes = Vec16()
        var n = 0
        while n < wide {
            lanes += x.vec16(n)
            n += 16
        }
        var total = lanes.sum()
        for n in wide..<length { total += x[n] }
        return total
    }
}
