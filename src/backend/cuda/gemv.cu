/* Batch-1 decode GEMV: y = W x for a row-major bf16 W. Decode is bound by
 * reading W once, so every lane streams 16-byte chunks of R rows with
 * U chunks per row in flight (R*U*16 bytes per lane outstanding), bypassing
 * L1. The input vector is prepared once per block in shared memory (bf16),
 * which is where RMSNorm or SwiGLU of the previous stage is fused in. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda_kernels.h"

#define GEMV_THREADS 256
#define GEMV_UNROLL 4

static __device__ __forceinline__ float bf2f(uint16_t v) {
    return __uint_as_float(((uint32_t)v) << 16);
}
static __device__ __forceinline__ uint16_t f2bf(float f) {
    __nv_bfloat16 h = __float2bfloat16_rn(f);
    return *(uint16_t *)&h;
}
static __device__ __forceinline__ float rbf(float f) { return bf2f(f2bf(f)); }

static __device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

static __device__ __forceinline__ float dot2(uint32_t w, uint32_t x) {
    float w0 = __uint_as_float(w << 16), w1 = __uint_as_float(w & 0xffff0000u);
    float x0 = __uint_as_float(x << 16), x1 = __uint_as_float(x & 0xffff0000u);
    return w0 * x0 + w1 * x1;
}
static __device__ __forceinline__ float dot8(uint4 w, uint4 x) {
    return dot2(w.x, x.x) + dot2(w.y, x.y) + dot2(w.z, x.z) + dot2(w.w, x.w);
}

template <int R>
__global__ void __launch_bounds__(GEMV_THREADS)
    k_gemv(const uint16_t *__restrict__ w, int rows, int cols, int in_mode,
           const void *__restrict__ x, const uint16_t *__restrict__ norm_w, float eps,
           const uint16_t *__restrict__ bias, int out_mode, void *y) {
    extern __shared__ uint4 xs4[];
    __shared__ float red[GEMV_THREADS / 32];
    uint16_t *xs = (uint16_t *)xs4;
    const int rnd = !(in_mode & LMC_GEMV_IN_NO_ROUND);
    in_mode &= ~LMC_GEMV_IN_NO_ROUND;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    /* Stage the input vector. */
    if (in_mode == LMC_GEMV_IN_BF16) {
        const uint4 *x4 = (const uint4 *)x;
        for (int i = tid; i < cols / 8; i += GEMV_THREADS) xs4[i] = x4[i];
    } else if (in_mode == LMC_GEMV_IN_RMSNORM) {
        const float *xf = (const float *)x;
        float ss = 0.f;
        for (int i = tid; i < cols; i += GEMV_THREADS) ss += xf[i] * xf[i];
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        if (lane == 0) red[warp] = ss;
        __syncthreads();
        ss = 0.f;
        for (int i = 0; i < GEMV_THREADS / 32; i++) ss += red[i];
        float r = rsqrtf(ss / (float)cols + eps);
        for (int i = tid; i < cols; i += GEMV_THREADS)
            xs[i] = f2bf((rnd ? rbf(xf[i] * r) : xf[i] * r) * bf2f(norm_w[i]));
    } else {
        const uint16_t *gu = (const uint16_t *)x;
        for (int i = tid; i < cols; i += GEMV_THREADS) {
            float g = bf2f(gu[i]), u = bf2f(gu[cols + i]);
            float a = g / (1.f + __expf(-g));
            xs[i] = f2bf((rnd ? rbf(a) : a) * u);
        }
    }
    __syncthreads();

    const int nch = cols / 8;
    const int warps_total = gridDim.x * (GEMV_THREADS / 32);
    for (int r0 = (blockIdx.x * (GEMV_THREADS / 32) + warp) * R; r0 < rows;
         r0 += warps_total * R) {
        const uint4 *wr[R];
        float acc[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            int row = r0 + r < rows ? r0 + r : rows - 1;
            wr[r] = (const uint4 *)(w + (size_t)row * cols);
            acc[r] = 0.f;
        }
        for (int c0 = lane; c0 < nch; c0 += 32 * GEMV_UNROLL) {
            uint4 wv[R][GEMV_UNROLL];
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; u++) {
                int c = c0 + 32 * u;
#pragma unroll
                for (int r = 0; r < R; r++)
                    if (c < nch) wv[r][u] = ld_stream(wr[r] + c);
            }
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; u++) {
                int c = c0 + 32 * u;
                if (c < nch) {
                    uint4 xv = xs4[c];
#pragma unroll
                    for (int r = 0; r < R; r++) acc[r] += dot8(wv[r][u], xv);
                }
            }
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
            float v = acc[r];
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            int row = r0 + r;
            if (lane == 0 && row < rows) {
                if (bias) v += bf2f(bias[row]);
                if (out_mode == LMC_GEMV_OUT_BF16)
                    ((uint16_t *)y)[row] = f2bf(v);
                else if (out_mode == LMC_GEMV_OUT_F32)
                    ((float *)y)[row] = v;
                else
                    ((float *)y)[row] += v;
            }
        }
    }
}

extern "C" int lmc_cu_gemv_setup(int max_cols) {
    int smem = max_cols * 2;
    if (smem < 48 * 1024) return 0;
    cudaError_t e = cudaFuncSetAttribute(k_gemv<1>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         smem);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(k_gemv<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    return (int)e;
}

extern "C" int lmc_cu_gemv(const uint16_t *w, int rows, int cols, int in_mode, const void *x,
                           const uint16_t *norm_w, float eps, const uint16_t *bias,
                           int out_mode, void *y, int num_sms, lmc_cu_stream s) {
    const int wpb = GEMV_THREADS / 32;
    size_t smem = (size_t)cols * 2;
    /* Two rows per warp when that still leaves at least two blocks per SM. */
    if (rows >= 2 * wpb * 2 * num_sms) {
        int blocks = (rows + 2 * wpb - 1) / (2 * wpb);
        k_gemv<2><<<blocks, GEMV_THREADS, smem, (cudaStream_t)s>>>(w, rows, cols, in_mode, x,
                                                                  norm_w, eps, bias, out_mode, y);
    } else {
        int blocks = (rows + wpb - 1) / wpb;
        k_gemv<1><<<blocks, GEMV_THREADS, smem, (cudaStream_t)s>>>(w, rows, cols, in_mode, x,
                                                                  norm_w, eps, bias, out_mode, y);
    }
    return (int)cudaGetLastError();
}
