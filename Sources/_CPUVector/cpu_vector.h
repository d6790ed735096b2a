// Vector helpers for the Swift CPU kernels.
//
// Swift's SIMD8<Float>.addingProduct is lowered lane by lane and LLVM's SLP vectoriser rebuilds
// it into shuffles; this clang builtin on an ext_vector_type (imported by Swift as SIMD8<Float>,
// SIMD16<Float>) becomes one vfmadd instruction. Without hardware FMA (a baseline x86-64 build) it
// falls back to a separate multiply and add instead of a slow software fmaf per lane.
#ifndef PCNN_CPU_VECTOR_H
#define PCNN_CPU_VECTOR_H

// Vector registers of the target: AVX-512 has 32, AVX2 16. Kernels that keep 12-15 wide
// accumulators in registers take smaller blocks where there are only 16 (they would spill).
#ifdef __AVX512F__
#define PCNN_VECTOR_REGISTERS 32
#else
#define PCNN_VECTOR_REGISTERS 16
#endif

// The x86 spin-wait hint (`pause`), a no-op elsewhere.
static inline __attribute__((always_inline)) void pcnn_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

#ifdef __AVX512F__
#include <immintrin.h>
#endif

typedef float pcnn_float8 __attribute__((ext_vector_type(8)));
typedef float pcnn_float16 __attribute__((ext_vector_type(16)));

static inline __attribute__((always_inline))
pcnn_float8 pcnn_fma8(pcnn_float8 a, pcnn_float8 b, pcnn_float8 c) {
#ifdef __FMA__
    return __builtin_elementwise_fma(a, b, c);
#else
    return a * b + c;
#endif
}

static inline __attribute__((always_inline))
pcnn_float16 pcnn_fma16(pcnn_float16 a, pcnn_float16 b, pcnn_float16 c) {
#ifdef __FMA__
    return __builtin_elementwise_fma(a, b, c);
#else
    return a * b + c;
#endif
}

// x clamped to [low, high]: one vmaxps and one vminps, where Swift's lane selects take three.
static inline __attribute__((always_inline))
pcnn_float16 pcnn_clamp16(pcnn_float16 x, float low, float high) {
    return __builtin_elementwise_min(__builtin_elementwise_max(x, (pcnn_float16)low), (pcnn_float16)high);
}

// Pixels from bytes: Float(b) / 255 for the 16 bytes at p (unaligned). Float division by 255
// equals SPEC's Float(Double(b) / 255.0) for every byte value. (Swift's own SIMD16<UInt8> to
// SIMD16<Float> conversion is a generic call per vector.)
static inline __attribute__((always_inline))
pcnn_float16 pcnn_pixels16(const unsigned char *p) {
    typedef unsigned char pcnn_bytes16 __attribute__((ext_vector_type(16)));
    pcnn_bytes16 b;
    __builtin_memcpy(&b, p, 16);
    return __builtin_convertvector(b, pcnn_float16) / 255.0f;
}

// x with every lane smaller than `tiny` in magnitude set to 0 (optimizer buffers decaying into
// subnormals, which are ~100x slower); Swift's lane selects compile to a loop over the lanes.
typedef int pcnn_int16 __attribute__((ext_vector_type(16)));
typedef int pcnn_int8 __attribute__((ext_vector_type(8)));
static inline __attribute__((always_inline))
pcnn_float16 pcnn_flush16(pcnn_float16 x, float tiny) {
    pcnn_int16 keep = __builtin_elementwise_max(x, -x) >= (pcnn_float16)tiny;
    return (pcnn_float16)((pcnn_int16)x & keep);
}
static inline __attribute__((always_inline))
pcnn_float8 pcnn_flush8(pcnn_float8 x, float tiny) {
    pcnn_int8 keep = __builtin_elementwise_max(x, -x) >= (pcnn_float8)tiny;
    return (pcnn_float8)((pcnn_int8)x & keep);
}
// Lane-wise square roots, one vsqrtps: Swift's `squareRoot()` on SIMD types is a scalar call per lane.
static inline __attribute__((always_inline))
pcnn_float16 pcnn_sqrt16(pcnn_float16 x) {
    return __builtin_elementwise_sqrt(x);
}
static inline __attribute__((always_inline))
pcnn_float8 pcnn_sqrt8(pcnn_float8 x) {
    return __builtin_elementwise_sqrt(x);
}

// ReLU and its backward pass: max(x, 0), and dy where y > 0 (else 0).
static inline __attribute__((always_inline))
pcnn_float16 pcnn_relu16(pcnn_float16 x) {
    return __builtin_elementwise_max(x, (pcnn_float16)0.0f);
}
static inline __attribute__((always_inline))
pcnn_float16 pcnn_where_positive16(pcnn_float16 dy, pcnn_float16 y) {
    pcnn_int16 keep = y > (pcnn_float16)0.0f;
    return (pcnn_float16)((pcnn_int16)dy & keep);
}

// The first n lanes of x (0 <= n <= 16), the others 0: one compare and one masked move.
static inline __attribute__((always_inline))
pcnn_float16 pcnn_first_lanes16(pcnn_float16 x, int n) {
    const pcnn_int16 lanes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    pcnn_int16 keep = lanes < (pcnn_int16)n;
    return (pcnn_float16)((pcnn_int16)x & keep);
}

// x's lanes low..<high (any ints; lanes outside 0..<16 do not exist), the others 0.
static inline __attribute__((always_inline))
pcnn_float16 pcnn_lanes_between16(pcnn_float16 x, int low, int high) {
    const pcnn_int16 lanes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    pcnn_int16 keep = (lanes >= (pcnn_int16)low) & (lanes < (pcnn_int16)high);
    return (pcnn_float16)((pcnn_int16)x & keep);
}

// The lane sums of four vectors, each reduced by halves in the order of Swift's `SIMD16.total`
// ((i, i+8), then (j, j+4), (k, k+2), (0, 1)), so a sum does not depend on its neighbours here.
typedef float pcnn_float4 __attribute__((ext_vector_type(4)));
static inline __attribute__((always_inline))
pcnn_float4 pcnn_totals4(pcnn_float16 a, pcnn_float16 b, pcnn_float16 c, pcnn_float16 d) {
    pcnn_float16 ab = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
        + __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    pcnn_float16 cd = __builtin_shufflevector(c, d, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
        + __builtin_shufflevector(c, d, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    pcnn_float16 q = __builtin_shufflevector(ab, cd, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27)
        + __builtin_shufflevector(ab, cd, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    pcnn_float8 p = __builtin_shufflevector(q, q, 0, 1, 4, 5, 8, 9, 12, 13)
        + __builtin_shufflevector(q, q, 2, 3, 6, 7, 10, 11, 14, 15);
    return __builtin_shufflevector(p, p, 0, 2, 4, 6) + __builtin_shufflevector(p, p, 1, 3, 5, 7);
}

// One output row of 2x2 max pooling with stride 2, for input rows of at most 32 floats
// (`top`, `bottom`, each readable for 32): into `best` the maximum of each window and into
// `which` which of its four values it is, 0-3 in row-major order, the first on ties (strict `>`
// as the scalar loop); 16 of each are written.
static inline __attribute__((always_inline))
void pcnn_max_pool_row16(const float *top, const float *bottom, float *best, int *which) {
    pcnn_float16 t0, t1, b0, b1;
    __builtin_memcpy(&t0, top, 64);
    __builtin_memcpy(&t1, top + 16, 64);
    __builtin_memcpy(&b0, bottom, 64);
    __builtin_memcpy(&b1, bottom + 16, 64);
    pcnn_float16 v[4] = {
        __builtin_shufflevector(t0, t1, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
        __builtin_shufflevector(t0, t1, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
        __builtin_shufflevector(b0, b1, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
        __builtin_shufflevector(b0, b1, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
    };
    pcnn_float16 m = v[0];
    pcnn_int16 w = (pcnn_int16)0;
    for (int k = 1; k < 4; k++) {
        pcnn_int16 greater = v[k] > m;
        m = (pcnn_float16)(((pcnn_int16)v[k] & greater) | ((pcnn_int16)m & ~greater));
        w = ((pcnn_int16)k & greater) | (w & ~greater);
    }
    __builtin_memcpy(best, &m, 64);
    __builtin_memcpy(which, &w, 64);
}

// The backward pass of `pcnn_max_pool_row16`: each window's error `e[i]` sent to the value
// `which[i]` chose, 0 to the other three; 32 floats are written to each of `top` and `bottom`
// (`top` first, so a `bottom` right after it overwrites its spill).
static inline __attribute__((always_inline))
void pcnn_max_unpool_row16(const float *e, const int *which, float *top, float *bottom) {
    pcnn_float16 error;
    pcnn_int16 w;
    __builtin_memcpy(&error, e, 64);
    __builtin_memcpy(&w, which, 64);
    pcnn_float16 v00 = (pcnn_float16)((pcnn_int16)error & (w == 0));
    pcnn_float16 v01 = (pcnn_float16)((pcnn_int16)error & (w == 1));
    pcnn_float16 v10 = (pcnn_float16)((pcnn_int16)error & (w == 2));
    pcnn_float16 v11 = (pcnn_float16)((pcnn_int16)error & (w == 3));
    pcnn_float16 rows[4] = {
        __builtin_shufflevector(v00, v01, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23),
        __builtin_shufflevector(v00, v01, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31),
        __builtin_shufflevector(v10, v11, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23),
        __builtin_shufflevector(v10, v11, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31),
    };
    __builtin_memcpy(top, &rows[0], 128);
    __builtin_memcpy(bottom, &rows[2], 128);
}

// 2x2 average pooling with stride 2, as `pcnn_max_pool_row16`: each window's values added in
// row-major order from 0, then scaled (the scalar loop's order); 16 outputs are written.
static inline __attribute__((always_inline))
void pcnn_average_pool_row16(const float *top, const float *bottom, float scale, float *average) {
    pcnn_float16 t0, t1, b0, b1;
    __builtin_memcpy(&t0, top, 64);
    __builtin_memcpy(&t1, top + 16, 64);
    __builtin_memcpy(&b0, bottom, 64);
    __builtin_memcpy(&b1, bottom + 16, 64);
    pcnn_float16 sum = (pcnn_float16)0.0f;
    sum += __builtin_shufflevector(t0, t1, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    sum += __builtin_shufflevector(t0, t1, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    sum += __builtin_shufflevector(b0, b1, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    sum += __builtin_shufflevector(b0, b1, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    pcnn_float16 result = sum * scale;
    __builtin_memcpy(average, &result, 64);
}

// The backward pass of `pcnn_average_pool_row16`: each window's error times `scale` on all four
// of its values; 32 floats written to each of `top` and `bottom`, as `pcnn_max_unpool_row16`.
static inline __attribute__((always_inline))
void pcnn_average_unpool_row16(const float *e, float scale, float *top, float *bottom) {
    pcnn_float16 error;
    __builtin_memcpy(&error, e, 64);
    pcnn_float16 v = error * scale;
    pcnn_float16 rows[2] = {
        __builtin_shufflevector(v, v, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
        __builtin_shufflevector(v, v, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15),
    };
    __builtin_memcpy(top, rows, 128);
    __builtin_memcpy(bottom, rows, 128);
}

// The 16 floats base[index[0]] ... base[index[15]]: one vgatherdps with AVX-512, a loop elsewhere.
static inline __attribute__((always_inline))
pcnn_float16 pcnn_gather16(const float *base, const int *index) {
#ifdef __AVX512F__
    return (pcnn_float16)_mm512_i32gather_ps(_mm512_loadu_si512(index), base, 4);
#else
    pcnn_float16 r;
    for (int i = 0; i < 16; i++) r[i] = base[index[i]];
    return r;
#endif
}

#endif
