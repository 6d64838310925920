/* Element-wise and row-wise kernels of the llama-family forward pass. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "cuda_kernels.h"
#include "cuda_pdl.cuh"

typedef __nv_bfloat16 bf16;

static __device__ __forceinline__ float bf2f(uint16_t v) {
    return __uint_as_float(((uint32_t)v) << 16);
}
static __device__ __forceinline__ uint16_t f2bf(float f) {
    bf16 h = __float2bfloat16_rn(f);
    return *(uint16_t *)&h;
}
/* Rounds through bf16, as a bf16 tensor op in the reference would; models
 * from f32 checkpoints keep those intermediates unrounded (rnd == 0). */
static __device__ __forceinline__ float rbf(float f) { return bf2f(f2bf(f)); }
static __device__ __forceinline__ float rbfc(float f, int rnd) { return rnd ? rbf(f) : f; }

static __device__ __forceinline__ float block_sum(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    int nw = (blockDim.x + 31) >> 5;
    float t = 0.f;
    for (int i = 0; i < nw; i++) t += red[i];
    return t;
}

static int launch_status(void) { return (int)cudaGetLastError(); }

extern "C" int lmc_cu_pdl_enabled = 1;
extern "C" void lmc_cu_set_pdl(int on) { lmc_cu_pdl_enabled = on; }

/* ---------------------------------------------------------------- embed */
__global__ void k_embed(const uint16_t *emb, const int32_t *ids, int hidden, int vocab,
                        float *out) {
    int row = blockIdx.x;
    pdl_trigger();
    pdl_wait();
    int id = ids[row];
    id = id < 0 ? 0 : (id >= vocab ? vocab - 1 : id);
    const uint16_t *e = emb + (size_t)id * hidden;
    float *o = out + (size_t)row * hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = bf2f(e[i]);
}

extern "C" int lmc_cu_embed(const uint16_t *emb, const int32_t *ids, int n, int hidden,
                            int vocab, float *out, lmc_cu_stream s) {
    return (int)lmc_pdl_launch(k_embed, dim3(n), dim3(256), 0, (cudaStream_t)s, emb, ids, hidden,
                               vocab, out);
}

/* -------------------------------------------------------------- rmsnorm */
__global__ void k_rmsnorm(const float *x, const uint16_t *w, int cols, float eps,
                          uint16_t *out, int rnd) {
    __shared__ float red[32];
    const float *xr = x + (size_t)blockIdx.x * cols;
    uint16_t *o = out + (size_t)blockIdx.x * cols;
    float ss = 0.f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, red);
    float r = rsqrtf(ss / (float)cols + eps);
    for (int i = threadIdx.x; i < cols; i += blockDim.x)
        o[i] = f2bf(rbfc(xr[i] * r, rnd) * bf2f(w[i]));
}

extern "C" int lmc_cu_rmsnorm(const float *x, const uint16_t *w, int rows, int cols, float eps,
                              uint16_t *out, int rnd, lmc_cu_stream s) {
    k_rmsnorm<<<rows, 256, 0, (cudaStream_t)s>>>(x, w, cols, eps, out, rnd);
    return launch_status();
}

/* ------------------------------------------------------------- qkv post */
/* One block per token: the RoPE angles of its position are computed once
 * into shared memory, then each warp takes whole heads (q..., k..., v...),
 * one head's values held in registers across the lanes. */
#define QKV_THREADS 256
#define QKV_MAXD 256

__global__ void __launch_bounds__(QKV_THREADS)
    k_qkv_post(const uint16_t *qkv, int hq, int hkv, int d, const uint16_t *bias,
               const uint16_t *q_norm, const uint16_t *k_norm, float eps, const float *inv_freq,
               const int32_t *d_state, uint16_t *q_out, uint16_t *k_cache, uint16_t *v_cache,
               int cap, int rnd) {
    __shared__ float cs_tab[QKV_MAXD / 2], sn_tab[QKV_MAXD / 2];
    const int t = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int half = d / 2, per = d / 32; /* values per lane (d >= 32) or 1 */
    pdl_trigger();
    pdl_wait();
    const int pos = d_state[0] + t;
    for (int i = threadIdx.x; i < half; i += QKV_THREADS)
        sincosf((float)pos * inv_freq[i], &sn_tab[i], &cs_tab[i]);
    __syncthreads();
    const int heads = hq + 2 * hkv;
    const uint16_t *row = qkv + (size_t)t * heads * d;
    for (int head = warp; head < heads; head += QKV_THREADS / 32) {
        /* lane owns elements lane + 32 j (j < per), or lane itself if d < 32 */
        float v[QKV_MAXD / 32];
        const int cnt = per ? per : (lane < d ? 1 : 0);
#pragma unroll
        for (int j = 0; j < QKV_MAXD / 32; j++) {
            if (j >= cnt) break;
            const int i = lane + 32 * j;
            float x = bf2f(row[(size_t)head * d + i]);
            if (bias) x = rbfc(x + bf2f(bias[(size_t)head * d + i]), rnd);
            v[j] = x;
        }
        if (head >= hq + hkv) { /* value head: straight into the cache */
            uint16_t *dst = v_cache + ((size_t)(head - hq - hkv) * cap + pos) * d;
#pragma unroll
            for (int j = 0; j < QKV_MAXD / 32; j++) {
                if (j >= cnt) break;
                dst[lane + 32 * j] = f2bf(v[j]);
            }
            continue;
        }
        const uint16_t *nw = head < hq ? q_norm : k_norm;
        if (nw) {
            float ss = 0.f;
#pragma unroll
            for (int j = 0; j < QKV_MAXD / 32; j++)
                if (j < cnt) ss += v[j] * v[j];
            for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
            const float r = rsqrtf(ss / (float)d + eps);
#pragma unroll
            for (int j = 0; j < QKV_MAXD / 32; j++)
                if (j < cnt) v[j] = rbfc(rbfc(v[j] * r, rnd) * bf2f(nw[lane + 32 * j]), rnd);
        }
        uint16_t *dst = head < hq ? q_out + ((size_t)t * hq + head) * d
                                  : k_cache + ((size_t)(head - hq) * cap + pos) * d;
        /* rotate-half: element i pairs with i +- half, which lives in the
         * same lane (half is a multiple of 32) or, for d < 64, in lane
         * i +- half of the same register */
        if (per >= 2) {
            const int hp = per / 2; /* registers per half */
#pragma unroll
            for (int j = 0; j < QKV_MAXD / 64; j++) {
                if (j >= hp) break;
                const int i = lane + 32 * j;
                const float x1 = v[j], x2 = v[j + hp];
                dst[i] = f2bf(x1 * cs_tab[i] - x2 * sn_tab[i]);
                dst[i + half] = f2bf(x2 * cs_tab[i] + x1 * sn_tab[i]);
            }
        } else {
            const float other = __shfl_xor_sync(0xffffffffu, v[0], half);
            if (lane < d) {
                const int i = lane < half ? lane : lane - half;
                const float x1 = lane < half ? v[0] : other, x2 = lane < half ? other : v[0];
                dst[lane] = f2bf(lane < half ? x1 * cs_tab[i] - x2 * sn_tab[i]
                                             : x2 * cs_tab[i] + x1 * sn_tab[i]);
            }
        }
    }
}

extern "C" int lmc_cu_qkv_post(const uint16_t *qkv, int n, int hq, int hkv, int d,
                               const uint16_t *bias, const uint16_t *q_norm,
                               const uint16_t *k_norm, float norm_eps, const float *inv_freq,
                               const int32_t *d_state, uint16_t *q_out, uint16_t *k_cache,
                               uint16_t *v_cache, int cap, int rnd, lmc_cu_stream s) {
    if (d > QKV_MAXD || d % 2 || (d > 32 && d % 64)) return (int)cudaErrorInvalidValue;
    return (int)lmc_pdl_launch(k_qkv_post, dim3(n), dim3(QKV_THREADS), 0, (cudaStream_t)s, qkv,
                               hq, hkv, d, bias, q_norm, k_norm, norm_eps, inv_freq, d_state,
                               q_out, k_cache, v_cache, cap, rnd);
}

/* --------------------------------------------------------------- swiglu */
/* Gate and up are interleaved, so output i reads inputs 2i and 2i + 1:
 * 8 outputs per thread from two 16-byte loads. */
__global__ void k_swiglu(const uint16_t *gu, size_t n8, uint16_t *out, int rnd) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8;
         i += (size_t)gridDim.x * blockDim.x) {
        const uint4 a = ((const uint4 *)gu)[2 * i], b = ((const uint4 *)gu)[2 * i + 1];
        const uint16_t *p = (const uint16_t *)&a, *q = (const uint16_t *)&b;
        uint4 o;
        uint16_t *o16 = (uint16_t *)&o;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const uint16_t *src = e < 4 ? p + 2 * e : q + 2 * (e - 4);
            const float g = bf2f(src[0]), u = bf2f(src[1]);
            o16[e] = f2bf(rbfc(g / (1.f + expf(-g)), rnd) * u);
        }
        ((uint4 *)out)[i] = o;
    }
}

extern "C" int lmc_cu_swiglu(const uint16_t *gu, int rows, int inter, uint16_t *out, int rnd,
                             lmc_cu_stream s) {
    if (inter % 8) return (int)cudaErrorInvalidValue;
    size_t n8 = (size_t)rows * inter / 8;
    size_t blocks = (n8 + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    k_swiglu<<<(unsigned)blocks, 256, 0, (cudaStream_t)s>>>(gu, n8, out, rnd);
    return launch_status();
}

/* ------------------------------------------------------------- add bias */
__global__ void k_add_bias(void *y, int is_f32, const uint16_t *bias, int rows, int cols) {
    size_t total = (size_t)rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float b = bf2f(bias[i % cols]);
        if (is_f32)
            ((float *)y)[i] += b;
        else
            ((uint16_t *)y)[i] = f2bf(bf2f(((uint16_t *)y)[i]) + b);
    }
}

extern "C" int lmc_cu_add_bias(void *y, int is_f32, const uint16_t *bias, int rows, int cols,
                               lmc_cu_stream s) {
    size_t total = (size_t)rows * cols;
    size_t blocks = (total + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    k_add_bias<<<(unsigned)blocks, 256, 0, (cudaStream_t)s>>>(y, is_f32, bias, rows, cols);
    return launch_status();
}

/* --------------------------------------------------------------- argmax */
/* Two passes: ARGMAX_BLOCKS blocks each reduce a grid-strided share of x
 * to (value, index) in ws, then one block reduces those. Ties keep the
 * lowest index. */
#define ARGMAX_BLOCKS 128
#define ARGMAX_THREADS 256

static __device__ __forceinline__ void better(float &bv, int &bi, float v, int i) {
    if (v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}

static __device__ void block_argmax(float best, int idx, float *out_v, int *out_i) {
    __shared__ float sv[ARGMAX_THREADS / 32];
    __shared__ int si[ARGMAX_THREADS / 32];
    for (int o = 16; o > 0; o >>= 1)
        better(best, idx, __shfl_xor_sync(0xffffffffu, best, o),
               __shfl_xor_sync(0xffffffffu, idx, o));
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) {
        sv[warp] = best;
        si[warp] = idx;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        best = sv[0];
        idx = si[0];
        for (int w = 1; w < ARGMAX_THREADS / 32; w++) better(best, idx, sv[w], si[w]);
        *out_v = best;
        *out_i = idx;
    }
}

__global__ void __launch_bounds__(ARGMAX_THREADS)
    k_argmax_partial(const float *x, int n, float *ws_v, int *ws_i, float *ws_s) {
    __shared__ float red[32];
    float best = -INFINITY;
    int idx = 0x7fffffff;
    pdl_trigger();
    pdl_wait();
    const int i0 = blockIdx.x * ARGMAX_THREADS + threadIdx.x, step = gridDim.x * ARGMAX_THREADS;
    for (int i = i0; i < n; i += step) better(best, idx, x[i], i);
    block_argmax(best, idx, &ws_v[blockIdx.x], &ws_i[blockIdx.x]);
    __syncthreads();
    /* this block's sum of exp(x - its max), for the chosen token's logprob */
    const float m = ws_v[blockIdx.x];
    float sum = 0.f;
    if (m > -INFINITY)
        for (int i = i0; i < n; i += step) sum += __expf(x[i] - m);
    sum = block_sum(sum, red);
    if (threadIdx.x == 0) ws_s[blockIdx.x] = sum;
}

__global__ void __launch_bounds__(ARGMAX_THREADS)
    k_argmax_final(const float *ws_v, const int *ws_i, const float *ws_s, int nb, int32_t *out) {
    __shared__ float v, red[32];
    __shared__ int i;
    float best = -INFINITY;
    int idx = 0x7fffffff;
    pdl_trigger();
    pdl_wait();
    for (int b = threadIdx.x; b < nb; b += ARGMAX_THREADS) better(best, idx, ws_v[b], ws_i[b]);
    block_argmax(best, idx, &v, &i);
    __syncthreads();
    float sum = 0.f;
    for (int b = threadIdx.x; b < nb; b += ARGMAX_THREADS)
        if (ws_v[b] > -INFINITY) sum += ws_s[b] * __expf(ws_v[b] - v);
    sum = block_sum(sum, red);
    if (threadIdx.x == 0) {
        out[0] = i == 0x7fffffff ? 0 : i; /* all NaN: 0 */
        ((float *)out)[1] = -logf(sum);   /* log-softmax of the maximum */
    }
}

extern "C" size_t lmc_cu_argmax_ws_bytes(void) { return ARGMAX_BLOCKS * 12; }

extern "C" int lmc_cu_decode_kernels_setup(void) {
    cudaError_t e = cudaFuncSetAttribute(k_embed, cudaFuncAttributePreferredSharedMemoryCarveout,
                                         100);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(k_argmax_partial,
                                 cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(k_argmax_final, cudaFuncAttributePreferredSharedMemoryCarveout,
                                 100);
    return (int)e;
}

extern "C" int lmc_cu_argmax(const float *x, int n, void *ws, int32_t *out, lmc_cu_stream s) {
    int nb = (n + ARGMAX_THREADS * 4 - 1) / (ARGMAX_THREADS * 4);
    if (nb > ARGMAX_BLOCKS) nb = ARGMAX_BLOCKS;
    if (nb < 1) nb = 1;
    float *wv = (float *)ws;
    int *wi = (int *)(wv + ARGMAX_BLOCKS);
    float *wsum = wv + 2 * ARGMAX_BLOCKS;
    cudaError_t e = lmc_pdl_launch(k_argmax_partial, dim3(nb), dim3(ARGMAX_THREADS), 0,
                                   (cudaStream_t)s, x, n, wv, wi, wsum);
    if (e == cudaSuccess)
        e = lmc_pdl_launch(k_argmax_final, dim3(1), dim3(ARGMAX_THREADS), 0, (cudaStream_t)s, wv,
                           wi, wsum, nb, out);
    return (int)e;
}

/* ---------------------------------------------------------- conversions */
__global__ void k_f32_to_bf16(const float *x, size_t n, uint16_t *out) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = f2bf(x[i]);
}
__global__ void k_f16_to_bf16(const uint16_t *x, size_t n, uint16_t *out) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        __half h = *(const __half *)&x[i];
        out[i] = f2bf(__half2float(h));
    }
}

extern "C" int lmc_cu_f32_to_bf16(const float *x, size_t n, uint16_t *out, lmc_cu_stream s) {
    k_f32_to_bf16<<<1024, 256, 0, (cudaStream_t)s>>>(x, n, out);
    return launch_status();
}
extern "C" int lmc_cu_f16_to_bf16(const uint16_t *x, size_t n, uint16_t *out,
                                  lmc_cu_stream s) {
    k_f16_to_bf16<<<1024, 256, 0, (cudaStream_t)s>>>(x, n, out);
    return launch_status();
}
