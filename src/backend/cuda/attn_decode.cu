/* Attention of one decode step for one layer, as a single kernel: the new
 * token's q and k get their per-head RMSNorm (qwen3) and RoPE, k and v go
 * into the cache, and split-K flash decoding runs over the live keys. The
 * splits of a KV head are merged by whichever of its blocks finishes last
 * (an arrival counter per KV head), so no second kernel is needed.
 *
 * Grid (Hkv, nsplit): the live span is cut into at most nsplit chunks of a
 * whole number of 64-key tiles (at least DEC_MINCHUNK keys), computed on
 * the device from d_state, so the launch is graph-safe and only blocks
 * with keys do any work. Each block streams its chunk through shared
 * memory two tiles ahead (cp.async; the first tiles before the wait on the
 * previous kernel) and walks it with an online softmax. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "cuda_kernels.h"
#include "cuda_pdl.cuh"

#define DEC_TILE 64
#define DEC_THREADS 256
#define DEC_WARPS (DEC_THREADS / 32)
#define DEC_MAXG 16
#define DEC_MAXSPLIT 64  /* <= DEC_TILE: the merge stages one row per split */
#define DEC_STAGES 2     /* key tiles in flight per block */
#define DEC_MINCHUNK 64  /* keys per split at least */

static __device__ __forceinline__ float bf2f(uint16_t v) {
    return __uint_as_float(((uint32_t)v) << 16);
}
static __device__ __forceinline__ uint16_t f2bf(float f) {
    __nv_bfloat16 h = __float2bfloat16_rn(f);
    return *(uint16_t *)&h;
}
static __device__ __forceinline__ float rbfc(float f, int rnd) {
    return rnd ? bf2f(f2bf(f)) : f;
}

typedef struct {
    const uint16_t *qkv; /* [q heads | k heads | v heads] of the new token, bias included */
    const uint16_t *q_norm, *k_norm;
    const float *inv_freq;
    const int32_t *d_state;
    uint16_t *kc, *vc; /* this layer's caches [Hkv][cap][D] */
    float *ws;         /* partials: m [hq][ns], l [hq][ns], o [hq][ns][d] */
    int *counters;     /* [Hkv], zero between launches */
    uint16_t *out;     /* [hq][d] */
    float eps, scale;
    int hq, hkv, d, cap, window, nsplit, rnd;
} dec_args;

/* One warp: the head's d values from src, optional RMSNorm with weight nw,
 * rotate-half RoPE at `pos`; the bf16 result goes to out_bf and/or (as
 * float) out_f. tmp: d floats of scratch. Same rounding as k_qkv_post. */
static __device__ void rope_head(const uint16_t *src, const uint16_t *nw, float eps, int rnd,
                                 const float *inv_freq, int pos, int d, float *tmp,
                                 float *out_f, uint16_t *out_bf) {
    const int lane = threadIdx.x & 31;
    for (int i = lane; i < d; i += 32) tmp[i] = bf2f(src[i]);
    __syncwarp();
    if (nw) {
        float ss = 0.f;
        for (int i = lane; i < d; i += 32) ss += tmp[i] * tmp[i];
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        const float r = rsqrtf(ss / (float)d + eps);
        for (int i = lane; i < d; i += 32) tmp[i] = rbfc(rbfc(tmp[i] * r, rnd) * bf2f(nw[i]), rnd);
        __syncwarp();
    }
    const int half = d / 2;
    for (int i = lane; i < half; i += 32) {
        float sn, cs;
        sincosf((float)pos * inv_freq[i], &sn, &cs);
        const float x1 = tmp[i], x2 = tmp[i + half];
        const uint16_t a = f2bf(x1 * cs - x2 * sn), b = f2bf(x2 * cs + x1 * sn);
        if (out_f) {
            out_f[i] = bf2f(a);
            out_f[i + half] = bf2f(b);
        }
        if (out_bf) {
            out_bf[i] = a;
            out_bf[i + half] = b;
        }
    }
    __syncwarp();
}

static __device__ __forceinline__ void cp_async16(void *dst, const void *src, bool live) {
    const unsigned sa = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(sa), "l"(src),
                 "r"(live ? 16 : 0));
}

/* GM: the smallest supported bound on the query heads per KV head, so the
 * per-head register arrays and unrolled loops are no larger than needed. */
template <int GM>
__global__ void __launch_bounds__(DEC_THREADS) k_attn_decode(dec_args a) {
    extern __shared__ __align__(16) float sm[];
    __shared__ int s_last;
    const int G = a.hq / a.hkv, d = a.d, ns = a.nsplit;
    const int hk = blockIdx.x, split = blockIdx.y, tid = threadIdx.x;
    const int warp = tid >> 5, lane = tid & 31;
    /* [stage][K|V][DEC_TILE][d] bf16 tiles; after the key loop the same
     * bytes hold the per-warp partial outputs [warps][G][d] (floats) */
    uint16_t *tiles = (uint16_t *)sm;
    float *acc = sm;
    float *qs = sm + DEC_STAGES * DEC_TILE * d; /* [G][d] roped queries */
    float *sc = qs + G * d;                     /* [G][DEC_TILE] scores, then weights */
    float *tmp = sc + G * DEC_TILE;             /* [warps][d] rope scratch */
    float *run_m = tmp + DEC_WARPS * d, *run_l = run_m + G, *run_a = run_l + G;
    pdl_trigger();
    /* The position comes from the host before the graph runs, and every
     * key before it was written by earlier steps: both may be read before
     * waiting on the previous kernel, so the first tiles stream in while
     * the q/k/v projection is still finishing. */
    const int pos = a.d_state[0], L = pos + 1;
    const int lo0 = a.window > 0 ? max(0, pos - a.window + 1) : 0;
    const int span = L - lo0;
    int chunk = (span + ns - 1) / ns;
    chunk = max(DEC_MINCHUNK, (chunk + DEC_TILE - 1) / DEC_TILE * DEC_TILE);
    const int used = (span + chunk - 1) / chunk;
    if (split >= used) return;
    const int lo = lo0 + split * chunk, hi = min(lo + chunk, L);
    const int ntiles = (hi - lo + DEC_TILE - 1) / DEC_TILE;
    const uint16_t *kb = a.kc + (size_t)hk * a.cap * d;
    const uint16_t *vb = a.vc + (size_t)hk * a.cap * d;
    const int cpr = d / 8; /* 16-byte chunks per key */
    auto load_tile = [&](int t) {
        const int k0 = lo + t * DEC_TILE;
        uint16_t *kt = tiles + (size_t)(t % DEC_STAGES) * 2 * DEC_TILE * d, *vt = kt + DEC_TILE * d;
        for (int c = tid; c < DEC_TILE * cpr; c += DEC_THREADS) {
            const int j = c / cpr, off = (c - j * cpr) * 8, key = k0 + j;
            const bool live = key < hi;
            const size_t g = (size_t)(live ? key : lo) * d + off;
            cp_async16(kt + j * d + off, kb + g, live);
            cp_async16(vt + j * d + off, vb + g, live);
        }
        asm volatile("cp.async.commit_group;");
    };
    /* the tile holding the new token (the last of the last split) is read
     * only after this block has appended it */
    const int safe_tiles = split == used - 1 ? ntiles - 1 : ntiles;
    int issued = 0;
    while (issued < DEC_STAGES && issued < safe_tiles) load_tile(issued++);
    pdl_wait();

    for (int gg = warp; gg < G; gg += DEC_WARPS)
        rope_head(a.qkv + (size_t)(hk * G + gg) * d, a.q_norm, a.eps, a.rnd, a.inv_freq, pos, d,
                  tmp + warp * d, qs + gg * d, NULL);
    if (split == used - 1) { /* this chunk ends at the new token: append it */
        const size_t at = ((size_t)hk * a.cap + pos) * d;
        if (warp == DEC_WARPS - 1)
            rope_head(a.qkv + (size_t)(a.hq + hk) * d, a.k_norm, a.eps, a.rnd, a.inv_freq, pos,
                      d, tmp + warp * d, NULL, a.kc + at);
        const uint16_t *vsrc = a.qkv + (size_t)(a.hq + a.hkv + hk) * d;
        for (int i = tid; i < d; i += DEC_THREADS) a.vc[at + i] = vsrc[i];
    }
    if (tid < G) {
        run_m[tid] = -INFINITY;
        run_l[tid] = 0.f;
    }
    __threadfence_block();
    __syncthreads(); /* queries staged; the appended k/v visible to the block */

    /* Scores: d/8 lanes per key, 16 bytes each; PV: the same lanes own an
     * 8-wide slice of d for every kpi-th key. */
    const int lpk = d / 8, kpi = DEC_THREADS / lpk;
    const int grp = tid / lpk, sub = tid % lpk;
    float o[GM][8];
#pragma unroll
    for (int gg = 0; gg < GM; gg++)
#pragma unroll
        for (int e = 0; e < 8; e++) o[gg][e] = 0.f;

    for (int t = 0; t < ntiles; t++) {
        /* keep the next tile in flight; its stage was freed at the end of
         * the previous iteration */
        if (issued < ntiles && issued <= t + 1) load_tile(issued++);
        if (issued > t + 1)
            asm volatile("cp.async.wait_group 1;");
        else
            asm volatile("cp.async.wait_group 0;");
        __syncthreads();
        const uint16_t *kt = tiles + (size_t)(t % DEC_STAGES) * 2 * DEC_TILE * d;
        const uint16_t *vt = kt + DEC_TILE * d;
        const int cnt = min(DEC_TILE, hi - (lo + t * DEC_TILE));
        for (int jb = 0; jb < cnt; jb += kpi) {
            const int j = jb + grp;
            const bool live = j < cnt;
            float kf[8];
            const uint4 kv = *(const uint4 *)(kt + (live ? j : 0) * d + sub * 8);
            const uint16_t *ke = (const uint16_t *)&kv;
#pragma unroll
            for (int e = 0; e < 8; e++) kf[e] = bf2f(ke[e]);
            /* every head's partial dot product first, then the reductions
             * interleaved: G independent chains instead of one long one */
            float p[GM];
#pragma unroll
            for (int gg = 0; gg < GM; gg++) {
                p[gg] = 0.f;
                if (gg < G) {
                    const float *qq = qs + gg * d + sub * 8;
#pragma unroll
                    for (int e = 0; e < 8; e++) p[gg] += qq[e] * kf[e];
                }
            }
            for (int s = lpk / 2; s > 0; s >>= 1)
#pragma unroll
                for (int gg = 0; gg < GM; gg++)
                    if (gg < G) p[gg] += __shfl_xor_sync(0xffffffffu, p[gg], s);
            if (live && sub == 0)
#pragma unroll
                for (int gg = 0; gg < GM; gg++)
                    if (gg < G) sc[gg * DEC_TILE + j] = p[gg] * a.scale;
        }
        __syncthreads();
        for (int gg = warp; gg < G; gg += DEC_WARPS) {
            float mx = -INFINITY;
            for (int j = lane; j < cnt; j += 32) mx = fmaxf(mx, sc[gg * DEC_TILE + j]);
            for (int s = 16; s > 0; s >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, s));
            const float m_new = fmaxf(run_m[gg], mx);
            float sum = 0.f;
            for (int j = lane; j < cnt; j += 32) {
                float p = __expf(sc[gg * DEC_TILE + j] - m_new);
                sc[gg * DEC_TILE + j] = p;
                sum += p;
            }
            for (int s = 16; s > 0; s >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, s);
            if (lane == 0) {
                const float al = __expf(run_m[gg] - m_new);
                run_a[gg] = al;
                run_l[gg] = run_l[gg] * al + sum;
                run_m[gg] = m_new;
            }
        }
        __syncthreads();
#pragma unroll
        for (int gg = 0; gg < GM; gg++)
            if (gg < G) {
                const float al = run_a[gg];
#pragma unroll
                for (int e = 0; e < 8; e++) o[gg][e] *= al;
            }
        for (int j = grp; j < cnt; j += kpi) {
            const uint4 vv = *(const uint4 *)(vt + j * d + sub * 8);
            const uint16_t *ve = (const uint16_t *)&vv;
            float vf[8];
#pragma unroll
            for (int e = 0; e < 8; e++) vf[e] = bf2f(ve[e]);
#pragma unroll
            for (int gg = 0; gg < GM; gg++)
                if (gg < G) {
                    const float p = sc[gg * DEC_TILE + j];
#pragma unroll
                    for (int e = 0; e < 8; e++) o[gg][e] += p * vf[e];
                }
        }
        __syncthreads(); /* sc and this stage are rewritten next */
    }

    /* Sum over key groups: within the warp by shuffles, across warps in
     * shared memory (the tile bytes, free now). */
#pragma unroll
    for (int gg = 0; gg < GM; gg++)
        if (gg < G)
#pragma unroll
            for (int e = 0; e < 8; e++)
                for (int off = lpk; off < 32; off <<= 1)
                    o[gg][e] += __shfl_xor_sync(0xffffffffu, o[gg][e], off);
    if (lane < lpk) {
#pragma unroll
        for (int gg = 0; gg < GM; gg++)
            if (gg < G)
#pragma unroll
                for (int e = 0; e < 8; e++) acc[(warp * G + gg) * d + sub * 8 + e] = o[gg][e];
    }
    __syncthreads();
    /* one split: the normalized output directly; else the partials */
    float *ws_m = a.ws, *ws_l = a.ws + (size_t)a.hq * ns, *ws_o = a.ws + 2 * (size_t)a.hq * ns;
    for (int i = tid; i < G * d; i += DEC_THREADS) {
        const int gg = i / d, c = i - gg * d;
        float v = 0.f;
        for (int w = 0; w < DEC_WARPS; w++) v += acc[(w * G + gg) * d + c];
        if (used == 1)
            a.out[(size_t)(hk * G + gg) * d + c] = f2bf(v / run_l[gg]);
        else
            ws_o[((size_t)(hk * G + gg) * ns + split) * d + c] = v;
    }
    if (used == 1) return;
    if (tid < G) {
        ws_m[(size_t)(hk * G + tid) * ns + split] = run_m[tid];
        ws_l[(size_t)(hk * G + tid) * ns + split] = run_l[tid];
    }
    __threadfence(); /* partials visible device-wide before we arrive */
    __syncthreads();
    if (tid == 0) s_last = atomicAdd(&a.counters[hk], 1) == used - 1;
    __syncthreads();
    if (!s_last) return;

    /* The last block of this KV head merges every split's partials: the
     * per-split weights exp(m_s - M) / l go to sc (loaded in parallel),
     * then each output element sums its column of partial outputs. */
    __threadfence();
    if (tid == 0) a.counters[hk] = 0;
    float *mm = sc, *ll = acc; /* [G][used] each; used <= DEC_TILE */
    for (int i = tid; i < G * used; i += DEC_THREADS) {
        const int gg = i / used, sp = i - gg * used;
        const size_t at = (size_t)(hk * G + gg) * ns + sp;
        mm[gg * DEC_TILE + sp] = __ldcg(ws_m + at);
        ll[gg * DEC_TILE + sp] = __ldcg(ws_l + at);
    }
    __syncthreads();
    if (tid < G) {
        float M = -INFINITY, l = 0.f;
        for (int sp = 0; sp < used; sp++) M = fmaxf(M, mm[tid * DEC_TILE + sp]);
        for (int sp = 0; sp < used; sp++) l += ll[tid * DEC_TILE + sp] * __expf(mm[tid * DEC_TILE + sp] - M);
        run_m[tid] = M;
        run_l[tid] = 1.f / l;
    }
    __syncthreads();
    for (int i = tid; i < G * used; i += DEC_THREADS) {
        const int gg = i / used, sp = i - gg * used;
        mm[gg * DEC_TILE + sp] = __expf(mm[gg * DEC_TILE + sp] - run_m[gg]) * run_l[gg];
    }
    __syncthreads();
    for (int i = tid; i < G * d; i += DEC_THREADS) {
        const int gg = i / d, c = i - gg * d;
        const float *col = ws_o + (size_t)(hk * G + gg) * ns * d + c;
        const float *wt = mm + gg * DEC_TILE;
        float v0 = 0.f, v1 = 0.f, v2 = 0.f, v3 = 0.f;
        int sp = 0;
        for (; sp + 4 <= used; sp += 4) {
            v0 += __ldcg(col + (size_t)sp * d) * wt[sp];
            v1 += __ldcg(col + (size_t)(sp + 1) * d) * wt[sp + 1];
            v2 += __ldcg(col + (size_t)(sp + 2) * d) * wt[sp + 2];
            v3 += __ldcg(col + (size_t)(sp + 3) * d) * wt[sp + 3];
        }
        for (; sp < used; sp++) v0 += __ldcg(col + (size_t)sp * d) * wt[sp];
        a.out[(size_t)(hk * G + gg) * d + c] = f2bf((v0 + v1) + (v2 + v3));
    }
}

static size_t dec_smem(int G, int d) {
    size_t tiles = (size_t)DEC_STAGES * 2 * DEC_TILE * d * 2;
    size_t accb = (size_t)DEC_WARPS * G * d * 4, mergeb = (size_t)G * DEC_TILE * 4;
    if (accb < mergeb) accb = mergeb;
    if (tiles < accb) tiles = accb;
    return tiles + (size_t)(G * d + G * DEC_TILE + DEC_WARPS * d + 3 * G) * sizeof(float);
}

typedef void (*dec_kernel)(dec_args);
static dec_kernel dec_pick(int G) {
    return G <= 2 ? k_attn_decode<2> : G <= 4 ? k_attn_decode<4> : G <= 8 ? k_attn_decode<8>
                                                                        : k_attn_decode<16>;
}

extern "C" int lmc_cu_attn_decode_setup(int hq, int hkv, int d) {
    dec_kernel k = dec_pick(hq / hkv);
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    const size_t smem = dec_smem(hq / hkv, d);
    if (e == cudaSuccess && smem > 48 * 1024)
        e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    return (int)e;
}

extern "C" int lmc_cu_attn_decode_splits(int hkv, int num_sms) {
    int ns = hkv > 0 ? 2 * num_sms / hkv : 1;
    return ns < 1 ? 1 : ns > DEC_MAXSPLIT ? DEC_MAXSPLIT : ns;
}

extern "C" size_t lmc_cu_attn_decode_ws_bytes(int hq, int hkv, int d, int nsplit) {
    size_t floats = (size_t)hq * nsplit * (2 + (size_t)d);
    return floats * sizeof(float) + (size_t)hkv * sizeof(int);
}

extern "C" int lmc_cu_attn_decode_supported(int hq, int hkv, int d) {
    return hkv > 0 && hq % hkv == 0 && hq / hkv <= DEC_MAXG && d % 8 == 0 && d >= 16 &&
           d <= 256 && ((d / 8) & (d / 8 - 1)) == 0 && dec_smem(hq / hkv, d) <= 160 * 1024;
}

extern "C" int lmc_cu_attn_decode(const uint16_t *qkv, int hq, int hkv, int d,
                                  const uint16_t *q_norm, const uint16_t *k_norm, float norm_eps,
                                  const float *inv_freq, const int32_t *d_state,
                                  uint16_t *k_cache, uint16_t *v_cache, int cap, int window,
                                  int nsplit, void *ws, uint16_t *out, int rnd, lmc_cu_stream s) {
    dec_args a;
    a.qkv = qkv;
    a.q_norm = q_norm;
    a.k_norm = k_norm;
    a.inv_freq = inv_freq;
    a.d_state = d_state;
    a.kc = k_cache;
    a.vc = v_cache;
    a.ws = (float *)ws;
    a.counters = (int *)((float *)ws + (size_t)hq * nsplit * (2 + (size_t)d));
    a.out = out;
    a.eps = norm_eps;
    a.scale = 1.f / sqrtf((float)d);
    a.hq = hq;
    a.hkv = hkv;
    a.d = d;
    a.cap = cap;
    a.window = window;
    a.nsplit = nsplit;
    a.rnd = rnd;
    const size_t smem = dec_smem(hq / hkv, d);
    return (int)lmc_pdl_launch(dec_pick(hq / hkv), dim3(hkv, nsplit), dim3(DEC_THREADS), smem,
                               (cudaStream_t)s, a);
}
