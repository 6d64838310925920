/* Attention over a paged KV cache for a ragged batch (batched execution,
 * src/engine): every row has its own sequence and position, and reads the
 * keys and values of positions [lo, pos] through its sequence's block
 * table. The pools of one layer are [blocks][hkv][block_tokens][d] bf16.
 *
 * One block of PA_WARPS warps per (row, KV head) serves the G query heads
 * that share the KV head, so each key and value row is read once for all
 * of them. Warps take interleaved runs of PA_UNROLL positions (their loads
 * issued together, one coalesced row read per warp each), keep an online
 * softmax per head, and are merged through shared memory at the end.
 * Scores, weights and sums are f32; the output is rounded to bf16 once.
 * softcap > 0 caps the scaled scores at softcap * tanh(score / softcap)
 * (attention logit softcapping; a kernel of its own, SC, so the others
 * carry none of it). */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "backend/cuda/cuda_bf16.cuh"
#include "backend/cuda/cuda_kernels.h"

#define PA_WARPS 4
#define PA_UNROLL 4
#define PA_MAXG 8

template <int D>
struct pa_vec; /* D / 32 bf16 values per lane */
template <>
struct pa_vec<64> {
    typedef uint32_t t;
    static __device__ __forceinline__ void get(t v, float *o) {
        o[0] = bf2f((uint16_t)v);
        o[1] = bf2f((uint16_t)(v >> 16));
    }
};
template <>
struct pa_vec<128> {
    typedef uint2 t;
    static __device__ __forceinline__ void get(t v, float *o) {
        o[0] = bf2f((uint16_t)v.x);
        o[1] = bf2f((uint16_t)(v.x >> 16));
        o[2] = bf2f((uint16_t)v.y);
        o[3] = bf2f((uint16_t)(v.y >> 16));
    }
};

template <int D, int G, bool SC>
__global__ void __launch_bounds__(PA_WARPS * 32)
    k_paged_attn(const uint16_t *__restrict__ q, const uint16_t *__restrict__ k_pool,
                 const uint16_t *__restrict__ v_pool, const int32_t *__restrict__ row_seq,
                 const int32_t *__restrict__ row_pos, const int32_t *__restrict__ tables,
                 int max_blocks, int bt, int hq, int hkv, int window, float scale,
                 float softcap, uint16_t *__restrict__ out) {
    constexpr int E = D / 32;
    typedef typename pa_vec<D>::t vec;
    const int row = blockIdx.x, kh = blockIdx.y;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int pos = row_pos[row];
    const int lo = window > 0 && pos + 1 > window ? pos + 1 - window : 0;
    const int32_t *table = tables + (size_t)row_seq[row] * max_blocks;

    float qv[G][E], acc[G][E], mx[G], sum[G];
#pragma unroll
    for (int g = 0; g < G; g++) {
        const uint16_t *qh = q + ((size_t)row * hq + kh * G + g) * D + lane * E;
#pragma unroll
        for (int e = 0; e < E; e++) {
            qv[g][e] = bf2f(qh[e]) * scale;
            acc[g][e] = 0.f;
        }
        mx[g] = -INFINITY;
        sum[g] = 0.f;
    }
    const size_t hoff = (size_t)kh * bt * D + lane * E;
    for (int p0 = lo + warp * PA_UNROLL; p0 <= pos; p0 += PA_WARPS * PA_UNROLL) {
        vec kr[PA_UNROLL], vr[PA_UNROLL];
#pragma unroll
        for (int u = 0; u < PA_UNROLL; u++) {
            const int p = min(p0 + u, pos);
            const size_t at = (size_t)table[p / bt] * hkv * bt * D + (size_t)(p % bt) * D + hoff;
            kr[u] = *(const vec *)(k_pool + at);
            vr[u] = *(const vec *)(v_pool + at);
        }
        float sc[PA_UNROLL][G];
#pragma unroll
        for (int u = 0; u < PA_UNROLL; u++) {
            float kf[E];
            pa_vec<D>::get(kr[u], kf);
#pragma unroll
            for (int g = 0; g < G; g++) {
                float s = 0.f;
#pragma unroll
                for (int e = 0; e < E; e++) s = fmaf(qv[g][e], kf[e], s);
                sc[u][g] = s;
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
#pragma unroll
            for (int u = 0; u < PA_UNROLL; u++)
#pragma unroll
                for (int g = 0; g < G; g++) sc[u][g] += __shfl_xor_sync(0xffffffffu, sc[u][g], o);
        if (SC)
#pragma unroll
            for (int u = 0; u < PA_UNROLL; u++)
#pragma unroll
                for (int g = 0; g < G; g++) sc[u][g] = softcap * tanhf(sc[u][g] / softcap);
#pragma unroll
        for (int g = 0; g < G; g++) {
            float m = mx[g];
#pragma unroll
            for (int u = 0; u < PA_UNROLL; u++)
                if (p0 + u <= pos) m = fmaxf(m, sc[u][g]);
            const float corr = __expf(mx[g] - m);
            sum[g] *= corr;
#pragma unroll
            for (int e = 0; e < E; e++) acc[g][e] *= corr;
            mx[g] = m;
        }
#pragma unroll
        for (int u = 0; u < PA_UNROLL; u++) {
            if (p0 + u > pos) break;
            float vf[E];
            pa_vec<D>::get(vr[u], vf);
#pragma unroll
            for (int g = 0; g < G; g++) {
                const float w = __expf(sc[u][g] - mx[g]);
                sum[g] += w;
#pragma unroll
                for (int e = 0; e < E; e++) acc[g][e] = fmaf(w, vf[e], acc[g][e]);
            }
        }
    }
    /* merge the warps: each publishes its max, sum and accumulator */
    __shared__ float s_m[PA_WARPS][G], s_l[PA_WARPS][G];
    __shared__ float s_acc[PA_WARPS][G][D];
    if (lane == 0)
#pragma unroll
        for (int g = 0; g < G; g++) {
            s_m[warp][g] = mx[g];
            s_l[warp][g] = sum[g];
        }
#pragma unroll
    for (int g = 0; g < G; g++)
#pragma unroll
        for (int e = 0; e < E; e++) s_acc[warp][g][lane * E + e] = acc[g][e];
    __syncthreads();
    for (int i = threadIdx.x; i < G * D; i += PA_WARPS * 32) {
        const int g = i / D, dd = i % D;
        float m = -INFINITY;
#pragma unroll
        for (int w = 0; w < PA_WARPS; w++) m = fmaxf(m, s_m[w][g]);
        float l = 0.f, a = 0.f;
#pragma unroll
        for (int w = 0; w < PA_WARPS; w++) {
            if (s_m[w][g] == -INFINITY) continue; /* a warp that saw no position */
            const float c = __expf(s_m[w][g] - m);
            l += s_l[w][g] * c;
            a += s_acc[w][g][dd] * c;
        }
        out[((size_t)row * hq + kh * G + g) * D + dd] = f2bf(a / l);
    }
}

template <int D>
static int launch_d(int G, dim3 grid, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                    const int32_t *rs, const int32_t *rp, const int32_t *tb, int mb, int bt,
                    int hq, int hkv, int window, float scale, float softcap, uint16_t *out,
                    cudaStream_t s) {
    const dim3 block(PA_WARPS * 32);
#define PA_CASE(g)                                                                           \
    case g:                                                                                  \
        if (softcap > 0.f)                                                                   \
            k_paged_attn<D, g, true><<<grid, block, 0, s>>>(q, k, v, rs, rp, tb, mb, bt, hq, hkv, \
                                                            window, scale, softcap, out);    \
        else                                                                                 \
            k_paged_attn<D, g, false><<<grid, block, 0, s>>>(q, k, v, rs, rp, tb, mb, bt, hq,  \
                                                             hkv, window, scale, softcap, out); \
        break;
    switch (G) {
        PA_CASE(1)
        PA_CASE(2)
        PA_CASE(3)
        PA_CASE(4)
        PA_CASE(5)
        PA_CASE(6)
        PA_CASE(7)
        PA_CASE(8)
    default:
        return (int)cudaErrorInvalidValue;
    }
#undef PA_CASE
    return (int)cudaGetLastError();
}

extern "C" int lmc_cu_paged_attn_supported(int hq, int hkv, int d) {
    if (hkv <= 0 || hq % hkv) return 0;
    const int g = hq / hkv;
    return (d == 64 || d == 128) && g >= 1 && g <= PA_MAXG;
}

extern "C" int lmc_cu_paged_attn(const uint16_t *q, const uint16_t *k_pool,
                                 const uint16_t *v_pool, const int32_t *row_seq,
                                 const int32_t *row_pos, const int32_t *tables, int max_blocks,
                                 int block_tokens, int n, int hq, int hkv, int d, int window,
                                 float scale, float softcap, uint16_t *out, lmc_cu_stream s) {
    if (!lmc_cu_paged_attn_supported(hq, hkv, d) || n <= 0) return (int)cudaErrorInvalidValue;
    const dim3 grid((unsigned)n, (unsigned)hkv);
    const int G = hq / hkv;
    if (d == 64)
        return launch_d<64>(G, grid, q, k_pool, v_pool, row_seq, row_pos, tables, max_blocks,
                            block_tokens, hq, hkv, window, scale, softcap, out, (cudaStream_t)s);
    return launch_d<128>(G, grid, q, k_pool, v_pool, row_seq, row_pos, tables, max_blocks,
                         block_tokens, hq, hkv, window, scale, softcap, out, (cudaStream_t)s);
}
