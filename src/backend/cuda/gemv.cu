/* Batch-1 decode GEMV: y = W x for a row-major bf16 W. Decode is bound by
 * reading W once, so every lane streams 16-byte chunks of R rows, two
 * steps of U chunks per row in flight (2*R*U*16 bytes per lane
 * outstanding), bypassing L1.
 * The input vector is prepared once per block in shared memory (bf16),
 * which is where the RMSNorm before a projection is fused in; SwiGLU is
 * fused into the gate/up product's output (interleaved gate/up rows). */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda_bf16.cuh"
#include "cuda_kernels.h"
#include "cuda_pdl.cuh"

#define GEMV_THREADS 256

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

/* The weight stream is double-buffered: each warp walks a flat list of
 * (row group, chunk step) items and always has the next item's loads in
 * flight while it multiplies the current one; the first two items are
 * issued before the wait on the previous kernel. R == 1 is capped at 64
 * registers so four blocks fit per SM (the grid is one resident wave). */
template <int R, int U>
__global__ void __launch_bounds__(GEMV_THREADS, R == 1 ? 4 : 2)
    k_gemv(const uint16_t *__restrict__ w, int rows, int cols, int in_mode,
                const void *__restrict__ x, const uint16_t *__restrict__ norm_w, float eps,
                const uint16_t *__restrict__ bias, int out_mode, void *y) {
    extern __shared__ uint4 xs4[];
    __shared__ float red[GEMV_THREADS / 32];
    const int rnd = !(in_mode & LMC_GEMV_IN_NO_ROUND);
    const int offset = (in_mode & LMC_GEMV_IN_NORM_OFFSET) != 0;
    in_mode &= ~(LMC_GEMV_IN_NO_ROUND | LMC_GEMV_IN_NORM_OFFSET);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int nch = cols / 8;
    const int stride = gridDim.x * (GEMV_THREADS / 32) * R; /* rows between a warp's groups */
    const int rfirst = (blockIdx.x * (GEMV_THREADS / 32) + warp) * R;
    const int steps = (nch + 32 * U - 1) / (32 * U); /* chunk steps per row group */
    const int groups = rfirst < rows ? (rows - 1 - rfirst) / stride + 1 : 0;
    const int T = groups * steps;
    pdl_trigger();

    uint4 wa[R][U], wb[R][U];
    auto load = [&](int t, uint4 (&buf)[R][U]) {
        const int g = t / steps, cs = t - g * steps;
        const int r0 = rfirst + g * stride;
#pragma unroll
        for (int r = 0; r < R; r++) {
            const uint4 *wr = (const uint4 *)(w + (size_t)min(r0 + r, rows - 1) * cols);
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int c = lane + 32 * (cs * U + u);
                if (c < nch) buf[r][u] = ld_stream(wr + c);
            }
        }
    };
    if (T > 0) load(0, wa);
    if (T > 1) load(1, wb);

    pdl_wait(); /* the input is the previous kernel's output */
    if (in_mode == LMC_GEMV_IN_BF16) {
        const uint4 *x4 = (const uint4 *)x;
#pragma unroll 4
        for (int i = tid; i < nch; i += GEMV_THREADS) xs4[i] = x4[i];
    } else if (in_mode == LMC_GEMV_IN_RMSNORM) {
        const float4 *xf = (const float4 *)x;
        float ss = 0.f;
#pragma unroll 4
        for (int i = tid; i < cols / 4; i += GEMV_THREADS) {
            float4 v = xf[i];
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        if (lane == 0) red[warp] = ss;
        __syncthreads();
        ss = 0.f;
#pragma unroll
        for (int i = 0; i < GEMV_THREADS / 32; i++) ss += red[i];
        const float r = rsqrtf(ss / (float)cols + eps);
        const uint4 *nw4 = (const uint4 *)norm_w;
#pragma unroll 4
        for (int i = tid; i < nch; i += GEMV_THREADS) {
            float4 a = xf[2 * i], b = xf[2 * i + 1];
            uint4 nw = nw4[i];
            float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
            const uint16_t *n16 = (const uint16_t *)&nw;
            uint4 o;
            uint16_t *o16 = (uint16_t *)&o;
#pragma unroll
            for (int e = 0; e < 8; e++) {
                o16[e] = f2bf(rms_w(v[e] * r, bf2f(n16[e]), offset, rnd));
            }
            xs4[i] = o;
        }
    }
    __syncthreads();

    float acc[R];
    auto consume = [&](int t, const uint4 (&buf)[R][U]) {
        const int g = t / steps, cs = t - g * steps;
        if (cs == 0)
#pragma unroll
            for (int r = 0; r < R; r++) acc[r] = 0.f;
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = lane + 32 * (cs * U + u);
            if (c < nch) {
                const uint4 xv = xs4[c];
#pragma unroll
                for (int r = 0; r < R; r++) acc[r] += dot8(buf[r][u], xv);
            }
        }
        if (cs != steps - 1) return;
        const int r0 = rfirst + g * stride;
#pragma unroll
        for (int r = 0; r < R; r++)
            for (int o = 16; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
        if (lane != 0) return;
        if (out_mode == LMC_GEMV_OUT_SWIGLU || out_mode == LMC_GEMV_OUT_GEGLU) {
            /* rows r0 (gate) and r0 + 1 (up) of an interleaved gate/up */
            if (R == 2 && r0 + 1 < rows) {
                float gt = acc[0], up = acc[R - 1];
                if (bias) {
                    gt += bf2f(bias[r0]);
                    up += bf2f(bias[r0 + 1]);
                }
                gt = rbf(gt);
                up = rbf(up);
                const float act =
                    out_mode == LMC_GEMV_OUT_GEGLU ? gelu_tanh(gt) : gt / (1.f + expf(-gt));
                ((uint16_t *)y)[r0 / 2] = f2bf((rnd ? rbf(act) : act) * up);
            }
            return;
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int row = r0 + r;
            if (row >= rows) continue;
            float v = acc[r];
            if (bias) v += bf2f(bias[row]);
            if (out_mode == LMC_GEMV_OUT_BF16)
                ((uint16_t *)y)[row] = f2bf(v);
            else if (out_mode == LMC_GEMV_OUT_F32)
                ((float *)y)[row] = v;
            else
                ((float *)y)[row] += v;
        }
    };
    for (int t = 0; t < T; t += 2) {
        consume(t, wa);
        if (t + 2 < T) load(t + 2, wa);
        if (t + 1 < T) {
            consume(t + 1, wb);
            if (t + 3 < T) load(t + 3, wb);
        }
    }
}

/* resident blocks per SM of k_gemv<1, 4> and k_gemv<2, 4>: the grid never
 * exceeds one wave (warps loop over rows instead) */
static int gemv_occ[2] = {4, 2};

extern "C" int lmc_cu_gemv_setup(int max_cols) {
    int smem = max_cols * 2;
    /* Every kernel of the decode chain asks for the same (largest) shared
     * memory carveout: an SM can only host blocks of kernels that agree on
     * it, so differing carveouts would serialize the overlapped launches. */
    const void *ks[2] = {(const void *)k_gemv<1, 4>, (const void *)k_gemv<2, 4>};
    for (int i = 0; i < 2; i++) {
        cudaError_t e =
            cudaFuncSetAttribute(ks[i], cudaFuncAttributePreferredSharedMemoryCarveout, 100);
        if (e == cudaSuccess && smem >= 48 * 1024)
            e = cudaFuncSetAttribute(ks[i], cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        int n = 0;
        if (e == cudaSuccess)
            e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, ks[i], GEMV_THREADS, smem);
        if (e != cudaSuccess) return (int)e;
        gemv_occ[i] = n > 0 ? n : 1;
    }
    return 0;
}

extern "C" int lmc_cu_gemv(const uint16_t *w, int rows, int cols, int in_mode, const void *x,
                           const uint16_t *norm_w, float eps, const uint16_t *bias,
                           int out_mode, void *y, int num_sms, lmc_cu_stream s) {
    const int wpb = GEMV_THREADS / 32;
    size_t smem = (size_t)cols * 2;
    /* Two rows per warp when that still leaves at least two blocks per SM;
     * never more blocks than fit at once (each would redo the prologue). */
    const int r2 = rows >= 2 * wpb * 2 * num_sms || out_mode == LMC_GEMV_OUT_SWIGLU ||
                   out_mode == LMC_GEMV_OUT_GEGLU;
    const int max_blocks = gemv_occ[r2] * num_sms;
    int blocks = (rows + (r2 + 1) * wpb - 1) / ((r2 + 1) * wpb);
    if (blocks > max_blocks) blocks = max_blocks;
    return (int)lmc_pdl_launch(r2 ? k_gemv<2, 4> : k_gemv<1, 4>, dim3(blocks),
                               dim3(GEMV_THREADS), smem, (cudaStream_t)s, w, rows, cols, in_mode,
                               x, norm_w, eps, bias, out_mode, y);
}
