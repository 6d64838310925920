/* Attention over a paged KV cache for a ragged batch (batched execution,
 * src/engine): every row has its own sequence and position, and reads the
 * keys and values of positions [lo, pos] through its sequence's block
 * table. The pools of one layer are [blocks][hkv][block_tokens][d] bf16.
 *
 * One block of PA_WARPS warps per (row, KV head, split) serves the G query
 * heads that share the KV head, so each key and value row is read once for
 * all of them. Warps take interleaved runs of PA_UNROLL positions (their
 * loads issued together, one coalesced row read per warp each, the next
 * run's loads in flight while the current one is used), keep an online
 * softmax per head, and are merged through shared memory at the end.
 * When rows x KV heads alone leave the multiprocessors idle (small
 * batches), the positions of a row are split over `splits` blocks whose
 * unnormalized partials (max, sum, accumulator) a second kernel merges.
 * Scores, weights and sums are f32; the output is rounded to bf16 once.
 * softcap > 0 caps the scaled scores at softcap * tanh(score / softcap)
 * (attention logit softcapping; a kernel of its own, SC, so the others
 * carry none of it). */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend/cuda/cuda_bf16.cuh"
#include "backend/cuda/cuda_kernels.h"

#define PA_WARPS 4
#define PA_UNROLL 4
#define PA_MAXG 8

template <int D>
struct pa_vec; /* D / 32 bf16 values per lane */
struct pa_u16x3 {
    uint16_t x, y, z;
};
template <>
struct pa_vec<96> { /* Phi-3-mini's heads: three 2-byte loads a lane */
    typedef pa_u16x3 t;
    static __device__ __forceinline__ void get(t v, float *o) {
        o[0] = bf2f(v.x);
        o[1] = bf2f(v.y);
        o[2] = bf2f(v.z);
    }
};
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

template <>
struct pa_vec<256> { /* Gemma 3's heads */
    typedef uint4 t;
    static __device__ __forceinline__ void get(t v, float *o) {
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            o[2 * i] = bf2f((uint16_t)w[i]);
            o[2 * i + 1] = bf2f((uint16_t)(w[i] >> 16));
        }
    }
};

/* The largest group of query heads per KV head a head size runs with: at
 * 256 the per-lane queries and accumulators of more heads would spill. */
static __host__ __device__ constexpr int pa_maxg(int d) { return d > 128 ? 4 : PA_MAXG; }

template <int D, int G, bool SC>
__global__ void __launch_bounds__(PA_WARPS * 32)
    k_paged_attn(const uint16_t *__restrict__ q, const uint16_t *__restrict__ k_pool,
                 const uint16_t *__restrict__ v_pool, const int32_t *__restrict__ row_seq,
                 const int32_t *__restrict__ row_pos, const int32_t *__restrict__ tables,
                 int max_blocks, int bt, int hq, int hkv, int window, float scale,
                 float softcap, uint16_t *__restrict__ out, float *__restrict__ part) {
    constexpr int E = D / 32, RUN = PA_WARPS * PA_UNROLL;
    typedef typename pa_vec<D>::t vec;
    const int row = blockIdx.x, kh = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int last = row_pos[row];
    const int lo0 = window > 0 && last + 1 > window ? last + 1 - window : 0;
    /* this split's positions [lo, pos]: runs of RUN, the last split shortest */
    const int per = ((last + 1 - lo0 + splits - 1) / splits + RUN - 1) / RUN * RUN;
    const int lo = lo0 + split * per, pos = min(last, lo + per - 1);
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
    vec kr[PA_UNROLL], vr[PA_UNROLL], kn[PA_UNROLL], vn[PA_UNROLL];
    auto load = [&](int p0, vec (&kd)[PA_UNROLL], vec (&vd)[PA_UNROLL]) {
#pragma unroll
        for (int u = 0; u < PA_UNROLL; u++) {
            const int p = min(p0 + u, pos);
            const size_t at = (size_t)table[p / bt] * hkv * bt * D + (size_t)(p % bt) * D + hoff;
            kd[u] = *(const vec *)(k_pool + at);
            vd[u] = *(const vec *)(v_pool + at);
        }
    };
    if (lo + warp * PA_UNROLL <= pos) load(lo + warp * PA_UNROLL, kr, vr);
    for (int p0 = lo + warp * PA_UNROLL; p0 <= pos; p0 += RUN) {
        if (p0 + RUN <= pos) load(p0 + RUN, kn, vn); /* the next run's loads in flight */
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
#pragma unroll
        for (int u = 0; u < PA_UNROLL; u++) {
            kr[u] = kn[u];
            vr[u] = vn[u];
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
        const size_t h = (size_t)row * hq + kh * G + g;
        if (splits == 1) {
            out[h * D + dd] = f2bf(a / l);
            continue;
        }
        /* partial of split z of head h: [max, sum, acc[D]] */
        float *pp = part + (h * splits + split) * (D + 2);
        if (dd == 0) {
            pp[0] = m;
            pp[1] = l;
        }
        pp[2 + dd] = a;
    }
}

/* The splits of each (row, query head) merged: grid (rows, hq), D threads. */
template <int D>
__global__ void __launch_bounds__(D)
    k_paged_attn_merge(const float *__restrict__ part, int splits, int hq,
                       uint16_t *__restrict__ out) {
    const size_t h = (size_t)blockIdx.x * hq + blockIdx.y;
    const float *pp = part + h * splits * (D + 2);
    float m = -INFINITY;
    for (int z = 0; z < splits; z++) m = fmaxf(m, pp[z * (D + 2)]);
    float l = 0.f, a = 0.f;
    for (int z = 0; z < splits; z++) {
        const float mz = pp[z * (D + 2)];
        if (mz == -INFINITY) continue; /* a split past the row's last position */
        const float c = __expf(mz - m);
        l += pp[z * (D + 2) + 1] * c;
        a += pp[z * (D + 2) + 2 + threadIdx.x] * c;
    }
    out[h * D + threadIdx.x] = f2bf(a / l);
}

template <int D, int G>
static void launch_dg(dim3 grid, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                      const int32_t *rs, const int32_t *rp, const int32_t *tb, int mb, int bt,
                      int hq, int hkv, int window, float scale, float softcap, uint16_t *out,
                      float *part, cudaStream_t s) {
    const dim3 block(PA_WARPS * 32);
    if (softcap > 0.f)
        k_paged_attn<D, G, true><<<grid, block, 0, s>>>(q, k, v, rs, rp, tb, mb, bt, hq, hkv,
                                                        window, scale, softcap, out, part);
    else
        k_paged_attn<D, G, false><<<grid, block, 0, s>>>(q, k, v, rs, rp, tb, mb, bt, hq, hkv,
                                                         window, scale, softcap, out, part);
}

template <int D>
static int launch_d(int G, dim3 grid, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                    const int32_t *rs, const int32_t *rp, const int32_t *tb, int mb, int bt,
                    int hq, int hkv, int window, float scale, float softcap, uint16_t *out,
                    float *part, cudaStream_t s) {
    if (G < 1 || G > pa_maxg(D)) return (int)cudaErrorInvalidValue;
#define PA_CASE(g)                                                                           \
    case g:                                                                                  \
        if constexpr (g <= pa_maxg(D))                                                       \
            launch_dg<D, g>(grid, q, k, v, rs, rp, tb, mb, bt, hq, hkv, window, scale, softcap, \
                            out, part, s);                                                   \
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
    if (grid.z > 1)
        k_paged_attn_merge<D><<<dim3(grid.x, hq), D, 0, s>>>(part, (int)grid.z, hq, out);
    return (int)cudaGetLastError();
}

extern "C" int lmc_cu_paged_attn_supported(int hq, int hkv, int d) {
    if (hkv <= 0 || hq % hkv) return 0;
    const int g = hq / hkv;
    return (d == 64 || d == 96 || d == 128 || d == 256) && g >= 1 && g <= pa_maxg(d);
}

/* Blocks the attention should have: PA_BLOCKS_PER_SM per multiprocessor.
 * Two, measured on an H100 against four (Llama-3.1-8B shape, 512-token
 * contexts; bench/batch_decode with LMC_CUDA_PA_BLOCKS_PER_SM=4): batch 8
 * and 16 the same or better, 24 +2.5 points of the memory-bound limit, 48
 * and 64 +1 (no split and its merge where rows x KV heads already fill the
 * machine twice). A row's positions are split only in runs of at least
 * PA_MIN_SPLIT, the longest row's count taken at a power of two (so the
 * split count, which a captured graph holds, changes rarely as contexts
 * grow). */
#define PA_BLOCKS_PER_SM 2
#define PA_MIN_SPLIT 64
#define PA_MAX_SPLITS 32

extern "C" int lmc_cu_paged_attn_splits(int n, int hkv, int max_positions, int num_sms) {
    /* comparisons: LMC_CUDA_PA_SPLITS=N, at most N splits;
     * LMC_CUDA_PA_BLOCKS_PER_SM=N, another target */
    static int forced = -1, per_sm = PA_BLOCKS_PER_SM;
    if (forced < 0) {
        const char *e = getenv("LMC_CUDA_PA_SPLITS");
        forced = e && atoi(e) > 0 ? atoi(e) : 0;
        e = getenv("LMC_CUDA_PA_BLOCKS_PER_SM");
        if (e && atoi(e) > 0 && atoi(e) <= 64) per_sm = atoi(e);
    }
    int cap = 1;
    while (cap * 2 <= PA_MAX_SPLITS && (cap * 2) * PA_MIN_SPLIT <= max_positions) cap *= 2;
    const int have = n * hkv, want = per_sm * num_sms;
    int splits = have >= want ? 1 : (want + have - 1) / have;
    if (forced && splits > forced) splits = forced;
    return splits < cap ? splits : cap;
}

extern "C" size_t lmc_cu_paged_attn_ws_floats(int n, int hq, int d, int splits) {
    return splits > 1 ? (size_t)n * hq * splits * (d + 2) : 0;
}

extern "C" int lmc_cu_paged_attn(const uint16_t *q, const uint16_t *k_pool,
                                 const uint16_t *v_pool, const int32_t *row_seq,
                                 const int32_t *row_pos, const int32_t *tables, int max_blocks,
                                 int block_tokens, int n, int hq, int hkv, int d, int window,
                                 float scale, float softcap, int splits, float *ws,
                                 uint16_t *out, lmc_cu_stream s) {
    if (!lmc_cu_paged_attn_supported(hq, hkv, d) || n <= 0 || splits < 1 ||
        (splits > 1 && !ws))
        return (int)cudaErrorInvalidValue;
    const dim3 grid((unsigned)n, (unsigned)hkv, (unsigned)splits);
    const int G = hq / hkv;
    const cudaStream_t st = (cudaStream_t)s;
#define PA_D(dd)                                                                             \
    case dd:                                                                                 \
        return launch_d<dd>(G, grid, q, k_pool, v_pool, row_seq, row_pos, tables, max_blocks, \
                            block_tokens, hq, hkv, window, scale, softcap, out, ws, st);
    switch (d) {
        PA_D(64)
        PA_D(96)
        PA_D(128)
        PA_D(256)
    default:
        return (int)cudaErrorInvalidValue;
    }
#undef PA_D
}
