/* One kernel source for OpenCL C 1.2 and CUDA C (NVRTC). This prelude maps the few constructs
 * that differ; everything after it is written once. Floating point: no contraction into fused
 * multiply-add (the SPEC's order of roundings), correctly rounded division and square root
 * (OpenCL: -cl-fp32-correctly-rounded-divide-sqrt; CUDA: NVRTC's default -prec-div/-prec-sqrt). */
#ifdef __OPENCL_VERSION__
#pragma OPENCL FP_CONTRACT OFF
#define KERNEL __kernel void
#define KERNEL_SIZED(n) __kernel void
#define DEVICE_FN
#define GLOBAL __global
#define LOCAL __local
#define SHARED(type, name, n) __local type name[n]
#define BARRIER() barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)
#define LID ((int)get_local_id(0))
#define GID ((int)get_group_id(0))
#define NUM_GROUPS ((int)get_num_groups(0))
#define GLOBAL_ID ((int)get_global_id(0))
#define GLOBAL_SIZE ((int)get_global_size(0))
#define EXPF(v) exp(v)
#define TANHF(v) tanh(v)
#define FABSF(v) fabs(v)
#define NO_UNROLL
#define LOGF(v) log(v)
#define SQRTF(v) sqrt(v)
typedef unsigned char u8;
#else
#define KERNEL extern "C" __global__ void __launch_bounds__(GROUP_SIZE, 1)
/* A kernel launched with n threads per block rather than GROUP_SIZE. */
#define KERNEL_SIZED(n) extern "C" __global__ void __launch_bounds__(n)
#define DEVICE_FN __device__ __forceinline__
#define GLOBAL
#define LOCAL
#define SHARED(type, name, n) __shared__ type name[n]
#define BARRIER() __syncthreads()
#define LID ((int)threadIdx.x)
#define GID ((int)blockIdx.x)
#define NUM_GROUPS ((int)gridDim.x)
#define GLOBAL_ID ((int)(blockIdx.x * blockDim.x + threadIdx.x))
#define GLOBAL_SIZE ((int)(gridDim.x * blockDim.x))
#define EXPF(v) expf(v)
#define TANHF(v) tanhf(v)
#define FABSF(v) fabsf(v)
/* NVRTC has no math.h: +infinity by its bits. */
#define INFINITY __int_as_float(0x7f800000)
/* Keeps loops rolled: unrolled strided loops push the fused kernels into register spills. */
#define NO_UNROLL _Pragma("unroll 1")
#define LOGF(v) logf(v)
#define SQRTF(v) sqrtf(v)
typedef unsigned char u8;
#endif

/* Every kernel runs with GROUP_SIZE work-items (threads) per work-group (block). */
#ifndef GROUP_SIZE
#define GROUP_SIZE 256
#endif

/* Shapes (SPEC.md) and offsets into the flat parameter vector (canonical order) come from
 * Swift (KernelSource.defines), so that one definition serves both: IMG, PIXELS, CH, K1, H1,
 * MAP1, C1_SIZE, K2, H2, S1_SIZE, CLASSES, OFF_C1W, OFF_C1B, OFF_S1W, OFF_S1B, OFF_FW, OFF_FB,
 * NPARAM. */

/* The sum of every work-item's `value` in a fixed order, so that a run repeats bit for bit:
 * CUDA adds within each warp by shuffles (distance 16, 8, 4, 2, 1), then the warps' sums the same
 * way; OpenCL 1.2 has no portable shuffle and halves a tree in local memory. `scratch` holds
 * GROUP_SIZE floats; every work-item gets the total, and may reuse `scratch` at once. */
DEVICE_FN float group_sum(float value, LOCAL float* scratch) {
#ifdef __OPENCL_VERSION__
    scratch[LID] = value;
    BARRIER();
    for (int width = GROUP_SIZE / 2; width > 0; width >>= 1) {
        if (LID < width) scratch[LID] += scratch[LID + width];
        BARRIER();
    }
    float total = scratch[0];
    BARRIER();
    return total;
#else
    for (int d = 16; d > 0; d >>= 1) value += __shfl_down_sync(0xffffffffu, value, d);
    if ((LID & 31) == 0) scratch[LID >> 5] = value;
    __syncthreads();
    float total = 0.0f;
    if (LID < 32) {
        float warp_sum = LID < GROUP_SIZE / 32 ? scratch[LID] : 0.0f;
        for (int d = 16; d > 0; d >>= 1) warp_sum += __shfl_down_sync(0xffffffffu, warp_sum, d);
        if (LID == 0) scratch[GROUP_SIZE / 32] = warp_sum;
    }
    __syncthreads();
    total = scratch[GROUP_SIZE / 32];
    __syncthreads();
    return total;
#endif
}
