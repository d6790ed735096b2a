import _CPUVector

/// The vector type of the CPU kernels: 8 floats (256 bits). On AVX-512 machines that double-pump
/// 512-bit operations (AMD Zen 4) it has the same throughput as 16 lanes, and 24-wide c1 rows
/// split into exactly three of them.
typealias Vec = SIMD8<Float>

/// `a · b + c` in one fused instruction where the target has FMA.
@inline(__always) func fma(_ a: Vec, _ b: Vec, _ c: Vec) -> Vec { pcnn_fma8(a, b, c) }

extension UnsafePointer where Pointee == Float {
    @inline(__always) func vec(_ offset: Int = 0) -> Vec {
        UnsafeRawPointer(self + offset).loadUnaligned(as: Vec.self)
    }
}

extension UnsafeMutablePointer where Pointee == Float {
    @inline(__always) func vec(_ offset: Int = 0) -> Vec {
        UnsafeRawPointer(self + offset).loadUnaligned(as: Vec.self)
    }

    @inline(__always) func store(_ v: Vec, at offset: Int = 0) {
        UnsafeMutableRawPointer(self + offset).storeBytes(of: v, as: Vec.self)
    }
}

extension SIMD8 where Scalar == Float {
    /// Sum of the lanes. Reduces by halves: `.sum()` is scalarised by LLVM and several times slower.
    @inline(__always) var total: Float {
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
/// polynomial for `e^r`, and `2^n` built in the exponent bits. Error within 2 ulp of `expf`
/// on [-87, 88]; inputs are clamped there, so results stay finite and normal.
@inline(__always) func vectorExp(_ x: Vec) -> Vec {
    // Clamped with selects: the generic `clamped` is not inlined and costs a call per vector.
    let low = Vec(repeating: -87), high = Vec(repeating: 88)
    let x = x.replacing(with: low, where: x .< low).replacing(with: high, where: x .> high)
    // Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits.
    let shifter = Vec(repeating: 12_582_912)
    let shifted = x * Vec(repeating: 1.442_695_04) + shifter
    let n = shifted - shifter
    var r = x - n * Vec(repeating: 0.693_359_375)
    r = r - n * Vec(repeating: -2.121_944_4e-4)
    var p = Vec(repeating: 1.987_569_15e-4)
    p = p * r + Vec(repeating: 1.398_199_95e-3)
    p = p * r + Vec(repeating: 8.333_451_9e-3)
    p = p * r + Vec(repeating: 4.166_579_59e-2)
    p = p * r + Vec(repeating: 1.666_666_55e-1)
    p = p * r + Vec(repeating: 5.000_000_12e-1)
    let er = p * (r * r) + r + Vec(repeating: 1)
    let bits = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- Int32(0x4B40_0000) &+ 127
    return er * unsafeBitCast(bits &<< 23, to: Vec.self)
}

/// Vector logistic function `1 / (1 + e^-v)`.
@inline(__always) func vectorSigmoid(_ v: Vec) -> Vec {
    1 / (1 + vectorExp(-v))
}
