import _CPUVector

/// The vector type of the CPU kernels: 8 floats (256 bits). On AVX-512 machines that double-pump
/// 512-bit operations (AMD Zen 4) it has the same throughput as 16 lanes, and 24-wide c1 rows
/// split into exactly three of them.
package typealias Vec = SIMD8<Float>

/// The wide vector of the c1 kernels: 16 floats (512 bits). A 24x24 map is 36 of them, read flat
/// across rows; on cores with full-width AVX-512 units (Zen 5, Xeon) they do twice the work of
/// `Vec` per instruction, on double-pumping ones (Zen 4) the same.
package typealias Vec16 = SIMD16<Float>

/// Whether the target has 32 vector registers (AVX-512). With 16 (AVX2, where a `Vec16` takes
/// two) the register-blocked kernels, the paper's c1 and the generic matrix products alike, keep
/// half as many accumulators instead of spilling them to the stack on every step; every output
/// is summed in the same order either way.
let wideRegisterFile = PCNN_VECTOR_REGISTERS >= 32

/// The float vectors the kernels use, for kernels written once for both widths.
protocol FloatVector: SIMD where Scalar == Float {
    /// `a · b + c`, fused where the target has FMA.
    static func fused(_ a: Self, _ b: Self, _ c: Self) -> Self
    /// `x` with lanes under `tiny` in magnitude set to 0.
    static func flushed(_ x: Self, below tiny: Float) -> Self
    /// The lanes' square roots, correctly rounded (one vector instruction).
    static func squareRoots(_ x: Self) -> Self
}

extension SIMD8: FloatVector where Scalar == Float {
    @inline(__always) static func fused(_ a: Self, _ b: Self, _ c: Self) -> Self { pcnn_fma8(a, b, c) }
    @inline(__always) static func flushed(_ x: Self, below tiny: Float) -> Self { pcnn_flush8(x, tiny) }
    @inline(__always) static func squareRoots(_ x: Self) -> Self { pcnn_sqrt8(x) }
}

extension SIMD16: FloatVector where Scalar == Float {
    @inline(__always) static func fused(_ a: Self, _ b: Self, _ c: Self) -> Self { pcnn_fma16(a, b, c) }
    @inline(__always) static func flushed(_ x: Self, below tiny: Float) -> Self { pcnn_flush16(x, tiny) }
    @inline(__always) static func squareRoots(_ x: Self) -> Self { pcnn_sqrt16(x) }
}

/// `a · b + c` in one fused instruction where the target has FMA.
@inline(__always) package func fma(_ a: Vec, _ b: Vec, _ c: Vec) -> Vec { pcnn_fma8(a, b, c) }
@inline(__always) package func fma(_ a: Vec16, _ b: Vec16, _ c: Vec16) -> Vec16 { pcnn_fma16(a, b, c) }

extension UnsafePointer where Pointee == Float {
    @inline(__always) func load<V: FloatVector>(_ offset: Int, as _: V.Type = V.self) -> V {
        UnsafeRawPointer(self + offset).loadUnaligned(as: V.self)
    }

    @inline(__always) func vec(_ offset: Int = 0) -> Vec {
        UnsafeRawPointer(self + offset).loadUnaligned(as: Vec.self)
    }

    @inline(__always) func vec16(_ offset: Int = 0) -> Vec16 {
        UnsafeRawPointer(self + offset).loadUnaligned(as: Vec16.self)
    }
}

extension UnsafeMutablePointer where Pointee == Float {
    @inline(__always) func vec(_ offset: Int = 0) -> Vec {
        UnsafeRawPointer(self + offset).loadUnaligned(as: Vec.self)
    }

    @inline(__always) func vec16(_ offset: Int = 0) -> Vec16 {
        UnsafeRawPointer(self + offset).loadUnaligned(as: Vec16.self)
    }

    @inline(__always) func store<V: FloatVector>(_ v: V, at offset: Int = 0) {
        UnsafeMutableRawPointer(self + offset).storeBytes(of: v, as: V.self)
    }
}

/// Sums of adjacent lanes across `a` then `b`: `[a0+a1, a2+a3, …, b14+b15]`.
@inline(__always) func pairSums(_ a: Vec16, _ b: Vec16) -> Vec16 {
    let both = SIMD32<Float>(lowHalf: a, highHalf: b)
    return both.evenHalf + both.oddHalf
}

/// Sums of adjacent lanes: `[v0+v1, v2+v3, …, v14+v15]`.
@inline(__always) func pairSums(_ v: Vec16) -> Vec { v.evenHalf + v.oddHalf }

/// Sums of adjacent lanes: `[v0+v1, v2+v3, v4+v5, v6+v7]`.
@inline(__always) func pairSums(_ v: Vec) -> SIMD4<Float> { v.evenHalf + v.oddHalf }

extension SIMD16 where Scalar == Float {
    /// Sum of the lanes, by halves (see `SIMD8.total`).
    @inline(__always) package var total: Float { (lowHalf + highHalf).total }
}

extension SIMD8 where Scalar == Float {
    /// Sum of the lanes. Reduces by halves: `.sum()` is scalarised by LLVM and several times slower.
    @inline(__always) package var total: Float {
        let quarter = lowHalf + highHalf
        let pair = quarter.lowHalf + quarter.highHalf
        return pair[0] + pair[1]
    }

    /// Sums of the two groups of four lanes: `[v0+v1+v2+v3, v4+v5+v6+v7]`.
    @inline(__always) var quadSums: SIMD2<Float> {
        let pairs = evenHalf + oddHalf
        return pairs.evenHalf + pairs.oddHalf
    }
}

/// Vector `e^x` with the Cephes single-precision method: `x = n ln2 + r`, `|r| ≤ ln2/2`, a degree-6
/// polynomial for `e^r` (Horner, fused), and `2^n` built in the exponent bits. Error within 2 ulp
/// of `expf` on [-87, 88]; inputs are clamped there, so results stay finite and normal.
///
/// `@_transparent` so that it is inlined wherever it is used: as a plain `@inline(__always)`
/// function the optimiser leaves it out of line in large kernels and pays a call per vector.
@_transparent func vectorExp(_ x: Vec16) -> Vec16 {
    let x = pcnn_clamp16(x, -87, 88)
    // Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits.
    let shifter = Vec16(repeating: 12_582_912)
    let shifted = fma(x, Vec16(repeating: 1.442_695_04), shifter)
    let n = shifted - shifter
    var r = fma(n, Vec16(repeating: -0.693_359_375), x)
    r = fma(n, Vec16(repeating: 2.121_944_4e-4), r)
    var p = Vec16(repeating: 1.987_569_15e-4)
    p = fma(p, r, Vec16(repeating: 1.398_199_95e-3))
    p = fma(p, r, Vec16(repeating: 8.333_451_9e-3))
    p = fma(p, r, Vec16(repeating: 4.166_579_59e-2))
    p = fma(p, r, Vec16(repeating: 1.666_666_55e-1))
    p = fma(p, r, Vec16(repeating: 5.000_000_12e-1))
    let er = fma(p, r * r, r) + Vec16(repeating: 1)
    let bits = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- Int32(0x4B40_0000 - 127)
    return er * unsafeBitCast(bits &<< 23, to: Vec16.self)
}

/// `vectorExp` on 8 lanes (the same operations on a half-filled wide vector).
@_transparent func vectorExp(_ x: Vec) -> Vec {
    vectorExp(Vec16(lowHalf: x, highHalf: x)).lowHalf
}

/// Vector logistic function `1 / (1 + e^-v)`.
@_transparent func vectorSigmoid(_ v: Vec16) -> Vec16 {
    1 / (1 + vectorExp(-v))
}

@_transparent func vectorSigmoid(_ v: Vec) -> Vec {
    vectorSigmoid(Vec16(lowHalf: v, highHalf: v)).lowHalf
}
