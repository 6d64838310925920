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
/* One block per (token, head) with heads ordered q..., k..., v...; the
 * block holds the head's D values in shared memory. */
__global__ void k_qkv_post(const uint16_t *qkv, int hq, int hkv, int d, const uint16_t *bias,
                           const uint16_t *q_norm, const uint16_t *k_norm, float eps,
                           const float *inv_freq, const int32_t *d_state, uint16_t *q_out,
                           uint16_t *k_cache, uint16_t *v_cache, int cap, int rnd) {
    extern __shared__ float hv[];
    __shared__ float red[32];
    const int t = blockIdx.x, head = blockIdx.y;
    pdl_trigger();
    pdl_wait();
    const int width = (hq + 2 * hkv) * d;
    const uint16_t *src = qkv + (size_t)t * width + (size_t)head * d;
    const uint16_t *b = bias ? bias + (size_t)head * d : NULL;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float v = bf2f(src[i]);
        if (b) v = rbfc(v + bf2f(b[i]), rnd);
        hv[i] = v;
    }
    const int pos = d_state[0] + t;
    if (head >= hq + hkv) { /* value head: straight into the cache */
        int kv = head - hq - hkv;
        uint16_t *dst = v_cache + ((size_t)kv * cap + pos) * d;
        __syncthreads();
        for (int i = threadIdx.x; i < d; i += blockDim.x) dst[i] = f2bf(hv[i]);
        return;
    }
    const uint16_t *nw = head < hq ? q_norm : k_norm;
    __syncthreads();
    if (nw) {
        float ss = 0.f;
        for (int i = threadIdx.x; i < d; i += blockDim.x) ss += hv[i] * hv[i];
        ss = block_sum(ss, red);
        float r = rsqrtf(ss / (float)d + eps);
        __syncthreads();
        for (int i = threadIdx.x; i < d; i += blockDim.x)
            hv[i] = rbfc(rbfc(hv[i] * r, rnd) * bf2f(nw[i]), rnd);
        __syncthreads();
    }
    uint16_t *dst = head < hq ? q_out + ((size_t)t * hq + head) * d
                              : k_cache + ((size_t)(head - hq) * cap + pos) * d;
    const int half = d / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float sn, cs;
        sincosf((float)pos * inv_freq[i], &sn, &cs);
        float x1 = hv[i], x2 = hv[i + half];
        dst[i] = f2bf(x1 * cs - x2 * sn);
        dst[i + half] = f2bf(x2 * cs + x1 * sn);
    }
}

extern "C" int lmc_cu_qkv_post(const uint16_t *qkv, int n, int hq, int hkv, int d,
                               const uint16_t *bias, const uint16_t *q_norm,
                               const uint16_t *k_norm, float norm_eps, const float *inv_freq,
                               const int32_t *d_state, uint16_t *q_out, uint16_t *k_cache,
                               uint16_t *v_cache, int cap, int rnd, lmc_cu_stream s) {
    dim3 grid(n, hq + 2 * hkv);
    return (int)lmc_pdl_launch(k_qkv_post, grid, dim3(64), d * sizeof(float), (cudaStream_t)s,
                               qkv, hq, hkv, d, bias, q_norm, k_norm, norm_eps, inv_freq, d_state,
                               q_out, k_cache, v_cache, cap, rnd);
}

/* --------------------------------------------------------------- swiglu */
__global__ void k_swiglu(const uint16_t *gu, int rows, int inter, uint16_t *out, int rnd) {
    size_t total = (size_t)rows * inter;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / inter, c = i % inter;
        float g = bf2f(gu[r * 2 * inter + c]), u = bf2f(gu[r * 2 * inter + inter + c]);
        float a = rbfc(g / (1.f + expf(-g)), rnd);
        out[i] = f2bf(a * u);
    }
}

extern "C" int lmc_cu_swiglu(const uint16_t *gu, int rows, int inter, uint16_t *out, int rnd,
                             lmc_cu_stream s) {
    size_t total = (size_t)rows * inter;
    size_t blocks = (total + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    k_swiglu<<<(unsigned)blocks, 256, 0, (cudaStream_t)s>>>(gu, rows, inter, out, rnd);
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
    k_argmax_partial(const float *x, int n, float *ws_v, int *ws_i) {
    float best = -INFINITY;
    int idx = 0x7fffffff;
    pdl_trigger();
    pdl_wait();
    for (int i = blockIdx.x * ARGMAX_THREADS + threadIdx.x; i < n; i += gridDim.x * ARGMAX_THREADS)
        better(best, idx, x[i], i);
    block_argmax(best, idx, &ws_v[blockIdx.x], &ws_i[blockIdx.x]);
}

__global__ void __launch_bounds__(ARGMAX_THREADS)
    k_argmax_final(const float *ws_v, const int *ws_i, int nb, int32_t *out) {
    __shared__ float v;
    __shared__ int i;
    float best = -INFINITY;
    int idx = 0x7fffffff;
    pdl_trigger();
    pdl_wait();
    for (int b = threadIdx.x; b < nb; b += ARGMAX_THREADS) better(best, idx, ws_v[b], ws_i[b]);
    block_argmax(best, idx, &v, &i);
    if (threadIdx.x == 0) *out = i == 0x7fffffff ? 0 : i; /* all NaN: 0 */
}

extern "C" size_t lmc_cu_argmax_ws_bytes(void) { return ARGMAX_BLOCKS * 8; }

extern "C" int lmc_cu_argmax(const float *x, int n, void *ws, int32_t *out, lmc_cu_stream s) {
    int nb = (n + ARGMAX_THREADS * 4 - 1) / (ARGMAX_THREADS * 4);
    if (nb > ARGMAX_BLOCKS) nb = ARGMAX_BLOCKS;
    if (nb < 1) nb = 1;
    float *wv = (float *)ws;
    int *wi = (int *)(wv + ARGMAX_BLOCKS);
    cudaError_t e = lmc_pdl_launch(k_argmax_partial, dim3(nb), dim3(ARGMAX_THREADS), 0,
                                   (cudaStream_t)s, x, n, wv, wi);
    if (e == cudaSuccess)
        e = lmc_pdl_launch(k_argmax_final, dim3(1), dim3(ARGMAX_THREADS), 0, (cudaStream_t)s, wv,
                           wi, nb, out);
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
