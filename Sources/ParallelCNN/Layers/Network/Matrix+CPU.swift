import _CPUVector

/// The fast CPU version of every layer's passes (one file per layer type, beside its reference
/// twin in `ReferenceLayers`), and the two matrix kernels they share.
///
/// Determinism: every output element is computed by one call, in one fixed order of fused
/// multiply-adds, whatever range of rows or columns a call is given. Splitting a pass's items
/// across threads or ranks therefore gives bit-identical results.
package enum CPULayers {
    /// `a · b + c` rounded as the vector kernels round it (one fused operation where the target
    /// has FMA, a multiply and an add otherwise), for the scalar tails.
    @inline(__always) static func fused(_ a: Float, _ b: Float, _ c: Float) -> Float {
        pcnn_fma16(Vec16(repeating: a), Vec16(repeating: b), Vec16(repeating: c))[0]
    }

    /// `c[i][j] = bias[i] + Σ_k A(i, k) · b[k][j]` for `i` in `rows`, `j` in `columns`, the sum
    /// over `k = 0..<depth` in order, where `A(i, k) = a[i·aRow + k·aColumn]` (so `a` may be read
    /// transposed); `bias` nil starts from 0. Register-blocked: 4 (or 2) rows × 32 columns of
    /// accumulators with 32 registers, 6 (4, 2) rows × 16 columns with 16, each `b` row loaded
    /// once for the rows. Column blocks are the outer loop, so a block's `depth × 32` (16) slice
    /// of `b` is read from memory once and from L1 for the other rows.
    package static func matrixMultiply(
        rows: Range<Int>, columns: Range<Int>, depth: Int,
        a: UnsafePointer<Float>, aRow: Int, aColumn: Int,
        b: UnsafePointer<Float>, bRow: Int,
        c: UnsafeMutablePointer<Float>, cRow: Int, bias: UnsafePointer<Float>?
    ) {
        var j = columns.lowerBound
        if rows.count == 1 {
            // One row (a dense layer's input error for one sample): 4 vectors of columns at once,
            // so that 4 chains of fused operations are in flight instead of one.
            while j + 64 <= columns.upperBound {
                row1x64(rows.lowerBound, j, depth, a, aRow, aColumn, b, bRow, c, cRow, bias)
                j += 64
            }
        }
        while wideRegisterFile && j + 32 <= columns.upperBound {
            var i = rows.lowerBound
            while i + 4 <= rows.upperBound {
                blockRowsx32(4, i, j, depth, a, aRow, aColumn, b, bRow, c, cRow, bias)
                i += 4
            }
            if i + 2 <= rows.upperBound {
                blockRowsx32(2, i, j, depth, a, aRow, aColumn, b, bRow, c, cRow, bias)
                i += 2
            }
            if i < rows.upperBound {
                block1x16(i, j, depth, a, aRow, aColumn, StridedRows(base: b, stride: bRow), c, cRow, bias)
                block1x16(i, j + 16, depth, a, aRow, aColumn, StridedRows(base: b, stride: bRow), c, cRow, bias)
            }
            j += 32
        }
        let bRows = StridedRows(base: b, stride: bRow)
        while j + 16 <= columns.upperBound {
            rowBlocksx16(rows, j, depth, a, aRow, aColumn, bRows, c, cRow, bias)
            j += 16
        }
        // The last columns as one more block of 16 that overlaps the previous one: an element
        // computed twice gets the same value both times (same fused operations in the same order).
        if j < columns.upperBound, columns.count >= 16 {
            rowBlocksx16(rows, columns.upperBound - 16, depth, a, aRow, aColumn, bRows, c, cRow, bias)
            j = columns.upperBound
        }
        for i in rows {
            for jt in j..<columns.upperBound {
                var sum = bias?[i] ?? 0
                for k in 0..<depth { sum = fused(a[i * aRow + k * aColumn], b[k * bRow + jt], sum) }
                c[i * cRow + jt] = sum
            }
        }
    }

    /// The columns `j..<j+16` of every row of `rows`, in blocks of 6, 4, 2 and 1 rows; row `k`
    /// of `b` is `b.row(k)` (a matrix's, or a convolution's input read in place, `TapRows`).
    @inline(__always) static func rowBlocksx16<B: MatrixRows>(
        _ rows: Range<Int>, _ j: Int, _ depth: Int,
        _ a: UnsafePointer<Float>, _ aRow: Int, _ aColumn: Int, _ b: B,
        _ c: UnsafeMutablePointer<Float>, _ cRow: Int, _ bias: UnsafePointer<Float>?
    ) {
        var i = rows.lowerBound
        while i + 6 <= rows.upperBound {
            blockRowsx16(6, i, j, depth, a, aRow, aColumn, b, c, cRow, bias)
            i += 6
        }
        if i + 4 <= rows.upperBound {
            blockRowsx16(4, i, j, depth, a, aRow, aColumn, b, c, cRow, bias)
            i += 4
        }
        if i + 2 <= rows.upperBound {
            blockRowsx16(2, i, j, depth, a, aRow, aColumn, b, c, cRow, bias)
            i += 2
        }
        if i < rows.upperBound { block1x16(i, j, depth, a, aRow, aColumn, b, c, cRow, bias) }
    }

    /// Row `i` × columns `j..<j+64` of `matrixMultiply`: 4 accumulators, one `a` broadcast each step.
    @inline(__always) private static func row1x64(
        _ i: Int, _ j: Int, _ depth: Int,
        _ a: UnsafePointer<Float>, _ aRow: Int, _ aColumn: Int,
        _ b: UnsafePointer<Float>, _ bRow: Int,
        _ c: UnsafeMutablePointer<Float>, _ cRow: Int, _ bias: UnsafePointer<Float>?
    ) {
        var s0 = Vec16(repeating: bias?[i] ?? 0), s1 = s0, s2 = s0, s3 = s0
        var ak = a + i * aRow, bk = b + j
        for _ in 0..<depth {
            let x = Vec16(repeating: ak[0])
            s0 = fma(x, bk.vec16(0), s0); s1 = fma(x, bk.vec16(16), s1)
            s2 = fma(x, bk.vec16(32), s2); s3 = fma(x, bk.vec16(48), s3)
            ak += aColumn
            bk += bRow
        }
        let out = c + i * cRow + j
        out.store(s0, at: 0); out.store(s1, at: 16); out.store(s2, at: 32); out.store(s3, at: 48)
    }

    /// `rows` (4 or 2, a constant where it is inlined, so the unused accumulators fold away) ×
    /// 32 columns of `matrixMultiply`.
    @inline(__always) private static func blockRowsx32(
        _ rows: Int, _ i: Int, _ j: Int, _ depth: Int,
        _ a: UnsafePointer<Float>, _ aRow: Int, _ aColumn: Int,
        _ b: UnsafePointer<Float>, _ bRow: Int,
        _ c: UnsafeMutablePointer<Float>, _ cRow: Int, _ bias: UnsafePointer<Float>?
    ) {
        let four = rows == 4
        var s00 = Vec16(repeating: bias?[i] ?? 0), s01 = s00
        var s10 = Vec16(repeating: bias?[i + 1] ?? 0), s11 = s10
        var s20 = Vec16(repeating: four ? bias?[i + 2] ?? 0 : 0), s21 = s20
        var s30 = Vec16(repeating: four ? bias?[i + 3] ?? 0 : 0), s31 = s30
        var ak = a + i * aRow, bk = b + j
        for _ in 0..<depth {
            let b0 = bk.vec16(0), b1 = bk.vec16(16)
            let a0 = Vec16(repeating: ak[0]), a1 = Vec16(repeating: ak[aRow])
            s00 = fma(a0, b0, s00); s01 = fma(a0, b1, s01)
            s10 = fma(a1, b0, s10); s11 = fma(a1, b1, s11)
            if four {
                let a2 = Vec16(repeating: ak[2 * aRow]), a3 = Vec16(repeating: ak[3 * aRow])
                s20 = fma(a2, b0, s20); s21 = fma(a2, b1, s21)
                s30 = fma(a3, b0, s30); s31 = fma(a3, b1, s31)
            }
            ak += aColumn
            bk += bRow
        }
        let out = c + i * cRow + j
        out.store(s00, at: 0); out.store(s01, at: 16)
        out.store(s10, at: cRow); out.store(s11, at: cRow + 16)
        if four {
            out.store(s20, at: 2 * cRow); out.store(s21, at: 2 * cRow + 16)
            out.store(s30, at: 3 * cRow); out.store(s31, at: 3 * cRow + 16)
        }
    }

    /// `rows` (6, 4 or 2, a constant where it is inlined) × 16 columns of `matrixMultiply`, for
    /// 16 vector registers: 6 accumulators, the `b` vector and a broadcast take 15 of them.
    @inline(__always) private static func blockRowsx16<B: MatrixRows>(
        _ rows: Int, _ i: Int, _ j: Int, _ depth: Int,
        _ a: UnsafePointer<Float>, _ aRow: Int, _ aColumn: Int, _ b: B,
        _ c: UnsafeMutablePointer<Float>, _ cRow: Int, _ bias: UnsafePointer<Float>?
    ) {
        var s0 = Vec16(repeating: bias?[i] ?? 0), s1 = Vec16(repeating: bias?[i + 1] ?? 0)
        var s2 = Vec16(repeating: rows > 2 ? bias?[i + 2] ?? 0 : 0), s3 = Vec16(repeating: rows > 2 ? bias?[i + 3] ?? 0 : 0)
        var s4 = Vec16(repeating: rows > 4 ? bias?[i + 4] ?? 0 : 0), s5 = Vec16(repeating: rows > 4 ? bias?[i + 5] ?? 0 : 0)
        var ak = a + i * aRow
        for k in 0..<depth {
            let bv = b.row(k).vec16(j)
            s0 = fma(Vec16(repeating: ak[0]), bv, s0)
            s1 = fma(Vec16(repeating: ak[aRow]), bv, s1)
            if rows > 2 {
                s2 = fma(Vec16(repeating: ak[2 * aRow]), bv, s2)
                s3 = fma(Vec16(repeating: ak[3 * aRow]), bv, s3)
            }
            if rows > 4 {
                s4 = fma(Vec16(repeating: ak[4 * aRow]), bv, s4)
                s5 = fma(Vec16(repeating: ak[5 * aRow]), bv, s5)
            }
            ak += aColumn
        }
        let out = c + i * cRow + j
        out.store(s0, at: 0)
        out.store(s1, at: cRow)
        if rows > 2 {
            out.store(s2, at: 2 * cRow)
            out.store(s3, at: 3 * cRow)
        }
        if rows > 4 {
            out.store(s4, at: 4 * cRow)
            out.store(s5, at: 5 * cRow)
        }
    }

    @inline(__always) private static func block1x16<B: MatrixRows>(
        _ i: Int, _ j: Int, _ depth: Int,
        _ a: UnsafePointer<Float>, _ aRow: Int, _ aColumn: Int, _ b: B,
        _ c: UnsafeMutablePointer<Float>, _ cRow: Int, _ bias: UnsafePointer<Float>?
    ) {
        var s = Vec16(repeating: bias?[i] ?? 0)
        var ak = a + i * aRow
        for k in 0..<depth {
            s = fma(Vec16(repeating: ak[0]), b.row(k).vec16(j), s)
            ak += aColumn
        }
        (c + i * cRow + j).store(s, at: 0)
    }

    /// `c[i][j] = Σ_n a[i][n] · b[j][n]` (+ `bias[i]` after the sum if given), for `i` in `rows`,
    /// `j` in `columns`: dot products of rows of length `length`, summed 16 lanes at a time, the
    /// lanes added, then the tail in order. Register-blocked: 4 rows × 4 columns of lane sums,
    /// each loaded vector used 4 times (the long rows of a block's weight gradient come from L2);
    /// 4 rows × 1 column with 16 registers.
    package static func rowDots(
        rows: Range<Int>, columns: Range<Int>, length: Int,
        a: UnsafePointer<Float>, aRow: Int, b: UnsafePointer<Float>, bRow: Int,
        c: UnsafeMutablePointer<Float>, cRow: Int, bias: UnsafePointer<Float>? = nil, accumulate: Bool = false
    ) {
        let wide = length / 16 * 16
        var i = rows.lowerBound
        // With 16 registers, blocks of 6 (then 4) rows × 1 column: 6 accumulators, each `b`
        // vector used 6 times and the `a` vectors taken from memory by the fused operations (the
        // 4×4 and 2×4 blocks would spill). 6 rows read a convolution's unfolded input once for
        // 6 filters (LeNet-5's conv1 has 6), where blocks of 4 read it twice.
        while !wideRegisterFile && i + 6 <= rows.upperBound {
            for j in columns { dotsRowsx1(6, i, j, wide, length, a, aRow, b, bRow, c, cRow, bias, accumulate) }
            i += 6
        }
        if !wideRegisterFile && i + 4 <= rows.upperBound {
            for j in columns { dotsRowsx1(4, i, j, wide, length, a, aRow, b, bRow, c, cRow, bias, accumulate) }
            i += 4
        }
        while wideRegisterFile && i + 2 <= rows.upperBound {
            let block = i + 4 <= rows.upperBound ? 4 : 2
            var j = columns.lowerBound
            while j + 4 <= columns.upperBound {
                if block == 4 {
                    dotsRowsx4(4, i, j, wide, length, a, aRow, b, bRow, c, cRow, bias, accumulate)
                } else {
                    dotsRowsx4(2, i, j, wide, length, a, aRow, b, bRow, c, cRow, bias, accumulate)
                }
                j += 4
            }
            // The last columns (all of them for a dense layer's single sample) 4 rows at a time:
            // 4 chains in flight rather than one.
            if block == 4 {
                for jj in j..<columns.upperBound { dotsRowsx1(4, i, jj, wide, length, a, aRow, b, bRow, c, cRow, bias, accumulate) }
            } else {
                for r in i..<(i + block) { rowDots1(r, j..<columns.upperBound, wide, length, a, aRow, b, bRow, c, cRow, bias, accumulate) }
            }
            i += block
        }
        for r in i..<rows.upperBound { rowDots1(r, columns, wide, length, a, aRow, b, bRow, c, cRow, bias, accumulate) }
    }

    /// Row `i` of `rowDots` for the columns `columns`, 4 columns at a time.
    @inline(__always) private static func rowDots1(
        _ i: Int, _ columns: Range<Int>, _ wide: Int, _ length: Int,
        _ a: UnsafePointer<Float>, _ aRow: Int, _ b: UnsafePointer<Float>, _ bRow: Int,
        _ c: UnsafeMutablePointer<Float>, _ cRow: Int, _ bias: UnsafePointer<Float>?, _ accumulate: Bool
    ) {
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
            let sums = pcnn_totals4(
                withTail(s0, ai, b0, wide, length), withTail(s1, ai, b1, wide, length),
                withTail(s2, ai, b2, wide, length), withTail(s3, ai, b3, wide, length))
            for q in 0..<4 { put(sums[q] + (bias?[i] ?? 0), c + i * cRow + j + q, accumulate) }
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
            put(withTail(s, ai, bj, wide, length).total + (bias?[i] ?? 0), c + i * cRow + j, accumulate)
            j += 1
        }
    }

    /// Rows `i..<i+rows` (4 or 2, a constant where it is inlined) × columns `j..<j+4` of
    /// `rowDots`: a lane sum per element, each the same chain of fused operations as in `rowDots1`.
    @inline(__always) private static func dotsRowsx4(
        _ rows: Int, _ i: Int, _ j: Int, _ wide: Int, _ length: Int,
        _ a: UnsafePointer<Float>, _ aRow: Int, _ b: UnsafePointer<Float>, _ bRow: Int,
        _ c: UnsafeMutablePointer<Float>, _ cRow: Int, _ bias: UnsafePointer<Float>?, _ accumulate: Bool
    ) {
        let four = rows == 4
        let a0 = a + i * aRow, a1 = a0 + aRow, a2 = four ? a1 + aRow : a0, a3 = four ? a2 + aRow : a0
        let b0 = b + j * bRow, b1 = b0 + bRow, b2 = b1 + bRow, b3 = b2 + bRow
        var s00 = Vec16(), s01 = Vec16(), s02 = Vec16(), s03 = Vec16()
        var s10 = Vec16(), s11 = Vec16(), s12 = Vec16(), s13 = Vec16()
        var s20 = Vec16(), s21 = Vec16(), s22 = Vec16(), s23 = Vec16()
        var s30 = Vec16(), s31 = Vec16(), s32 = Vec16(), s33 = Vec16()
        var n = 0
        while n < wide {
            let y0 = b0.vec16(n), y1 = b1.vec16(n), y2 = b2.vec16(n), y3 = b3.vec16(n)
            let x0 = a0.vec16(n)
            s00 = fma(x0, y0, s00); s01 = fma(x0, y1, s01); s02 = fma(x0, y2, s02); s03 = fma(x0, y3, s03)
            let x1 = a1.vec16(n)
            s10 = fma(x1, y0, s10); s11 = fma(x1, y1, s11); s12 = fma(x1, y2, s12); s13 = fma(x1, y3, s13)
            if four {
                let x2 = a2.vec16(n)
                s20 = fma(x2, y0, s20); s21 = fma(x2, y1, s21); s22 = fma(x2, y2, s22); s23 = fma(x2, y3, s23)
                let x3 = a3.vec16(n)
                s30 = fma(x3, y0, s30); s31 = fma(x3, y1, s31); s32 = fma(x3, y2, s32); s33 = fma(x3, y3, s33)
            }
            n += 16
        }
        func store(_ r: Int, _ ar: UnsafePointer<Float>, _ s0: Vec16, _ s1: Vec16, _ s2: Vec16, _ s3: Vec16) {
            let sums = pcnn_totals4(
                withTail(s0, ar, b0, wide, length), withTail(s1, ar, b1, wide, length),
                withTail(s2, ar, b2, wide, length), withTail(s3, ar, b3, wide, length))
            for q in 0..<4 { put(sums[q] + (bias?[i + r] ?? 0), c + (i + r) * cRow + j + q, accumulate) }
        }
        store(0, a0, s00, s01, s02, s03)
        store(1, a1, s10, s11, s12, s13)
        if four {
            store(2, a2, s20, s21, s22, s23)
            store(3, a3, s30, s31, s32, s33)
        }
    }

    /// Rows `i..<i+rows` (6 or 4, a constant where it is inlined) × column `j` of `rowDots`, for
    /// 16 vector registers: the same chain of fused operations per element as in `rowDots1`.
    @inline(__always) private static func dotsRowsx1(
        _ rows: Int, _ i: Int, _ j: Int, _ wide: Int, _ length: Int,
        _ a: UnsafePointer<Float>, _ aRow: Int, _ b: UnsafePointer<Float>, _ bRow: Int,
        _ c: UnsafeMutablePointer<Float>, _ cRow: Int, _ bias: UnsafePointer<Float>?, _ accumulate: Bool
    ) {
        let six = rows == 6
        let a0 = a + i * aRow, a1 = a0 + aRow, a2 = a1 + aRow, a3 = a2 + aRow
        let a4 = six ? a3 + aRow : a0, a5 = six ? a4 + aRow : a0, bj = b + j * bRow
        var s0 = Vec16(), s1 = Vec16(), s2 = Vec16(), s3 = Vec16(), s4 = Vec16(), s5 = Vec16()
        var n = 0
        while n < wide {
            let y = bj.vec16(n)
            s0 = fma(a0.vec16(n), y, s0); s1 = fma(a1.vec16(n), y, s1)
            s2 = fma(a2.vec16(n), y, s2); s3 = fma(a3.vec16(n), y, s3)
            if six { s4 = fma(a4.vec16(n), y, s4); s5 = fma(a5.vec16(n), y, s5) }
            n += 16
        }
        let sums = pcnn_totals4(
            withTail(s0, a0, bj, wide, length), withTail(s1, a1, bj, wide, length),
            withTail(s2, a2, bj, wide, length), withTail(s3, a3, bj, wide, length))
        for r in 0..<4 { put(sums[r] + (bias?[i + r] ?? 0), c + (i + r) * cRow + j, accumulate) }
        if six {
            put(withTail(s4, a4, bj, wide, length).total + (bias?[i + 4] ?? 0), c + (i + 4) * cRow + j, accumulate)
            put(withTail(s5, a5, bj, wide, length).total + (bias?[i + 5] ?? 0), c + (i + 5) * cRow + j, accumulate)
        }
    }

    /// `target = value`, or `target += value` when accumulating.
    @inline(__always) private static func put(_ value: Float, _ target: UnsafeMutablePointer<Float>, _ accumulate: Bool) {
        target.pointee = accumulate ? target.pointee + value : value
    }

    /// The lanes with the tail `wide..<length` (under 16 values) added as one more partial
    /// vector, to be summed (`total`, `pcnn_totals4`: the same order). The tail is loaded as
    /// whole vectors whose lanes past `length` are zeroed, so `a` and `b` must be readable 16
    /// floats past `wide` (`CPUNetwork` and `ParameterState` allocate that slack, `readSlack`).
    @inline(__always) private static func withTail(
        _ lanes: Vec16, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
        _ wide: Int, _ length: Int
    ) -> Vec16 {
        guard wide < length else { return lanes }
        let n = Int32(length - wide)
        return fma(pcnn_first_lanes16(a.vec16(wide), n), pcnn_first_lanes16(b.vec16(wide), n), lanes)
    }

    /// Floats a buffer read by `rowDots` must have after its last value.
    package static let readSlack = 16

    /// `Σ_n x[n]` over `length` values, 16 lanes at a time, then the tail.
    @inline(__always) static func sum(_ x: UnsafePointer<Float>, length: Int) -> Float {
        let wide = length / 16 * 16
        var lanes = Vec16()
        var n = 0
        while n < wide {
            lanes += x.vec16(n)
            n += 16
        }
        var total = lanes.total
        for n in wide..<length { total += x[n] }
        return total
    }
}

/// Where row `k` of a matrix product's right operand starts (`CPULayers.rowBlocksx16`).
protocol MatrixRows {
    func row(_ k: Int) -> UnsafePointer<Float>
}

/// A matrix's rows, `stride` floats apart.
struct StridedRows: MatrixRows {
    let base: UnsafePointer<Float>
    let stride: Int
    @inline(__always) func row(_ k: Int) -> UnsafePointer<Float> { base + k * stride }
}

/// A stride-1 convolution's unfolded input read in place: row `k` (tap `k`) of the columns of
/// one output row starts at `base + offsets[k]` in the input.
struct TapRows: MatrixRows {
    let base: UnsafePointer<Float>
    let offsets: UnsafePointer<Int>
    @inline(__always) func row(_ k: Int) -> UnsafePointer<Float> { base + offsets[k] }
}
