/* Attention of one decode step for one layer, as a single kernel: the new
 * token's q and k get their per-head RMSNorm (qwen3) and RoPE, k and v go
 * into the cache, and split-K flash decoding runs over the live keys. The
 * splits of a KV head are merged by whichever of its blocks finishes last
 * (an arrival counter per KV head), so no second kernel is needed.
 *
 * Grid (Hkv, nsplit): the live span is cut into at most nsplit chunks,
 * computed on the device from d_state, so the launch is graph-safe and
 * only blocks with keys do any work. Two kernels share this frame:
 * k_attn_decode_wk (d = 32/64/128: one key per lane, below) and
 * k_attn_decode for every other shape, which streams 64-key tiles through
 * shared memory two ahead (cp.async; the first tiles before the wait on
 * the previous kernel) and walks them with an online softmax. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "cuda_bf16.cuh"
#include "cuda_kernels.h"
#include "cuda_pdl.cuh"

#define DEC_TILE 64
#define DEC_THREADS 256
#define DEC_WARPS (DEC_THREADS / 32)
#define DEC_MAXG 16
#define DEC_MAXSPLIT 64  /* <= DEC_TILE: the merge stages one row per split */
#define DEC_STAGES 2     /* key tiles in flight per block */
#define DEC_MINCHUNK 64  /* keys per split at least */

typedef struct {
    const uint16_t *qkv; /* [q heads | k heads | v heads] of the new token, bias included */
    const uint16_t *q_norm, *k_norm;
    const float *inv_freq;
    float rope_attn; /* multiplies cos and sin (yarn), else 1 */
    const int32_t *d_state;
    uint16_t *kc, *vc; /* this layer's caches [Hkv][cap][D], or its paged pools */
    const int32_t *table; /* NULL, or the sequence's block table: pools [blocks][Hkv][bt][D] */
    int bt;
    float *ws;         /* partials: m [hq][ns], l [hq][ns], o [hq][ns][d] */
    int *counters;     /* [Hkv], zero between launches */
    uint16_t *out;     /* [hq][d] */
    float eps, scale;
    float softcap; /* > 0: scores capped at softcap * tanh(score / softcap) (SC kernels) */
    int hq, hkv, d, cap, window, nsplit, rnd;
    int norm_offset; /* q/k norms in the (1 + w) form */
    int rot;         /* rotated leading values of a head (d: all) */
    int append; /* 0: the token's k and v are already in the caches */
} dec_args;

/* Where key (or value) `key` of KV head hk starts in the layer's cache:
 * contiguous [Hkv][cap][d], or (PG) paged through the block table. A
 * compile-time choice, from values copied out of the arguments once: with
 * a run-time choice reading the (address-taken, so local-memory) argument
 * block in the key loops, the contiguous kernel's loads stopped issuing
 * together (H100, Llama-3.1-8B decode: 19 -> 43 us a layer). */
struct kv_map {
    const int32_t *table;
    int bt, hkv, cap;
};
static __device__ __forceinline__ kv_map kv_map_of(const dec_args &a) {
    return kv_map{a.table, a.bt, a.hkv, a.cap};
}
template <bool PG>
static __device__ __forceinline__ size_t kv_at(const kv_map m, int hk, int key, int d) {
    if constexpr (PG)
        return ((size_t)m.table[key / m.bt] * m.hkv + hk) * m.bt * d + (size_t)(key % m.bt) * d;
    else
        return ((size_t)hk * m.cap + key) * d;
}

/* One warp: the head's d values from src, optional RMSNorm with weight nw
 * ((1 + w) with offset), rotate-half RoPE at `pos` of the first rot values
 * (the rest pass through); the bf16 result goes to out_bf and/or (as
 * float) out_f. tmp: d floats of scratch. Same rounding as k_qkv_post. */
static __device__ void rope_head(const uint16_t *src, const uint16_t *nw, float eps, int offset,
                                 int rnd, const float *inv_freq, int rot, float rope_attn,
                                 int pos, int d, float *tmp, float *out_f, uint16_t *out_bf) {
    const int lane = threadIdx.x & 31;
    for (int i = lane; i < d; i += 32) tmp[i] = bf2f(src[i]);
    __syncwarp();
    if (nw) {
        float ss = 0.f;
        for (int i = lane; i < d; i += 32) ss += tmp[i] * tmp[i];
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        const float r = rsqrtf(ss / (float)d + eps);
        for (int i = lane; i < d; i += 32)
            tmp[i] = rbfc(rms_w(tmp[i] * r, bf2f(nw[i]), offset, rnd), rnd);
        __syncwarp();
    }
    const int half = rot / 2;
    for (int i = lane; i < half; i += 32) {
        float sn, cs;
        sincosf((float)pos * inv_freq[i], &sn, &cs);
        cs = __fmul_rn(cs, rope_attn);
        sn = __fmul_rn(sn, rope_attn);
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
    for (int i = rot + lane; i < d; i += 32) { /* past the rotated values */
        const uint16_t a = f2bf(tmp[i]);
        if (out_f) out_f[i] = bf2f(a);
        if (out_bf) out_bf[i] = a;
    }
    __syncwarp();
}

static __device__ __forceinline__ void cp_async16(void *dst, const void *src, bool live) {
    const unsigned sa = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(sa), "l"(src),
                 "r"(live ? 16 : 0));
}

/* After a block has written its partials: whether it is the last of its
 * KV head's `used` blocks to arrive (it then resets the counter for the
 * next launch and merges). */
static __device__ bool last_to_arrive(int *counter, int used, int *s_last) {
    __threadfence(); /* partials visible device-wide before we arrive */
    __syncthreads();
    if (threadIdx.x == 0) *s_last = atomicAdd(counter, 1) == used - 1;
    __syncthreads();
    if (!*s_last) return false;
    __threadfence();
    if (threadIdx.x == 0) *counter = 0;
    return true;
}

/* The last block of a KV head merges every split's partials: the per-split
 * weights exp(m_s - M) / l (base 2 with B2) go to mm (loaded in
 * parallel), then each output element sums its column of partial outputs.
 * mm, ll: [G][DEC_MAXSPLIT] floats of shared memory; run: [2][G]. Not
 * inlined, so it does not add to the register pressure of the key loop. */
template <bool B2>
static __device__ __noinline__ void merge_splits(const dec_args &a, int G, int hk, int used,
                                                 float *mm, float *ll, float *run) {
    const int tid = threadIdx.x, d = a.d, ns = a.nsplit;
    const float *ws_m = a.ws, *ws_l = a.ws + (size_t)a.hq * ns;
    const float *ws_o = a.ws + 2 * (size_t)a.hq * ns;
    for (int i = tid; i < G * used; i += DEC_THREADS) {
        const int g = i / used, sp = i - g * used;
        const size_t at = (size_t)(hk * G + g) * ns + sp;
        mm[g * DEC_MAXSPLIT + sp] = __ldcg(ws_m + at);
        ll[g * DEC_MAXSPLIT + sp] = __ldcg(ws_l + at);
    }
    __syncthreads();
    if (tid < G) {
        float M = -INFINITY, l = 0.f;
        for (int sp = 0; sp < used; sp++) M = fmaxf(M, mm[tid * DEC_MAXSPLIT + sp]);
        for (int sp = 0; sp < used; sp++) {
            const float x = mm[tid * DEC_MAXSPLIT + sp] - M;
            l += ll[tid * DEC_MAXSPLIT + sp] * (B2 ? exp2f(x) : __expf(x));
        }
        run[tid] = M;
        run[G + tid] = 1.f / l;
    }
    __syncthreads();
    for (int i = tid; i < G * used; i += DEC_THREADS) {
        const int g = i / used, sp = i - g * used;
        const float x = mm[g * DEC_MAXSPLIT + sp] - run[g];
        mm[g * DEC_MAXSPLIT + sp] = (B2 ? exp2f(x) : __expf(x)) * run[G + g];
    }
    __syncthreads();
    for (int i = tid; i < G * d; i += DEC_THREADS) {
        const int g = i / d, c = i - g * d;
        const float *col = ws_o + (size_t)(hk * G + g) * ns * d + c;
        const float *wt = mm + g * DEC_MAXSPLIT;
        float v0 = 0.f, v1 = 0.f, v2 = 0.f, v3 = 0.f;
        int sp = 0;
        for (; sp + 4 <= used; sp += 4) {
            v0 += __ldcg(col + (size_t)sp * d) * wt[sp];
            v1 += __ldcg(col + (size_t)(sp + 1) * d) * wt[sp + 1];
            v2 += __ldcg(col + (size_t)(sp + 2) * d) * wt[sp + 2];
            v3 += __ldcg(col + (size_t)(sp + 3) * d) * wt[sp + 3];
        }
        for (; sp < used; sp++) v0 += __ldcg(col + (size_t)sp * d) * wt[sp];
        a.out[(size_t)(hk * G + g) * d + c] = f2bf((v0 + v1) + (v2 + v3));
    }
}

/* A scaled score after attention logit softcapping (SC: a.softcap > 0). */
template <bool SC> static __device__ __forceinline__ float capped(float s, float softcap) {
    return SC ? softcap * tanhf(s / softcap) : s;
}

/* GM: the smallest supported bound on the query heads per KV head, so the
 * per-head register arrays and unrolled loops are no larger than needed.
 * SC: attention logit softcapping (a.softcap). */
template <int GM, bool SC, bool PG>
__global__ void __launch_bounds__(DEC_THREADS) k_attn_decode(dec_args a) {
    extern __shared__ __align__(16) float sm[];
    __shared__ int s_last;
    const int G = a.hq / a.hkv, d = a.d, ns = a.nsplit;
    const int hk = blockIdx.x, split = blockIdx.y, tid = threadIdx.x;
    const kv_map km = kv_map_of(a);
    const uint16_t *const kcache = a.kc, *const vcache = a.vc;
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
    const int cpr = d / 8; /* 16-byte chunks per key */
    auto load_tile = [&](int t) {
        const int k0 = lo + t * DEC_TILE;
        uint16_t *kt = tiles + (size_t)(t % DEC_STAGES) * 2 * DEC_TILE * d, *vt = kt + DEC_TILE * d;
        for (int c = tid; c < DEC_TILE * cpr; c += DEC_THREADS) {
            const int j = c / cpr, off = (c - j * cpr) * 8, key = k0 + j;
            const bool live = key < hi;
            const size_t g = kv_at<PG>(km, hk, live ? key : lo, d) + off;
            cp_async16(kt + j * d + off, kcache + g, live);
            cp_async16(vt + j * d + off, vcache + g, live);
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
        rope_head(a.qkv + (size_t)(hk * G + gg) * d, a.q_norm, a.eps, a.norm_offset, a.rnd,
                  a.inv_freq, a.rot, a.rope_attn, pos, d, tmp + warp * d, qs + gg * d, NULL);
    if (split == used - 1 && a.append) { /* this chunk ends at the new token: append it */
        const size_t at = kv_at<PG>(km, hk, pos, d);
        if (warp == DEC_WARPS - 1)
            rope_head(a.qkv + (size_t)(a.hq + hk) * d, a.k_norm, a.eps, a.norm_offset, a.rnd,
                      a.inv_freq, a.rot, a.rope_attn, pos, d, tmp + warp * d, NULL, a.kc + at);
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
                    if (gg < G) sc[gg * DEC_TILE + j] = capped<SC>(p[gg] * a.scale, a.softcap);
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
    if (!last_to_arrive(&a.counters[hk], used, &s_last)) return;
    merge_splits<false>(a, G, hk, used, sc, acc, run_m); /* run_l follows run_m */
}

/* ------------------------------------------------ one key per lane
 * The kernel used when d is 32, 64 or 128. Each warp takes 32 consecutive
 * keys at a time, one per lane: the lane holds its key's row in registers
 * and computes the G dot products itself, so scoring needs no shuffles and
 * no block barrier. For the weighted sum of values each lane owns d/32
 * dimensions of the output and walks the 32 keys' values (also held in
 * registers), reading the weights from a per-warp shared-memory row. The
 * first group's keys and values are loaded before waiting on the q/k/v
 * projection. The warps' partial softmax states, plus one for the new
 * token (which the loop never sees: it only reads keys already cached),
 * are merged at the end of the block; several blocks per KV head (long
 * contexts) are merged by the last one to finish, as above. Softmax runs
 * in base 2 (scores pre-scaled by log2 e). */
#define WK_GROUP 32
#define WK_SLOTS (DEC_WARPS + 1)

static __device__ __forceinline__ float bflo(uint32_t w) { return __uint_as_float(w << 16); }
static __device__ __forceinline__ float bfhi(uint32_t w) {
    return __uint_as_float(w & 0xffff0000u);
}

template <int D> struct wk_v { /* one key's values of a lane: D / 32 of them */
    uint32_t w[D >= 64 ? D / 64 : 1];
};

/* keys per block at least (a multiple of DEC_WARPS * 32): 256, 512 and
 * 1,024 measured within 2% of each other at 128-384 keys, 256 ahead */
static const int wk_minchunk = DEC_WARPS * WK_GROUP;

template <int GM, int D, bool SC, bool PG>
__global__ void __launch_bounds__(DEC_THREADS) k_attn_decode_wk(dec_args a, int minchunk) {
    constexpr int KC = D / 8;  /* 16-byte pieces of a key row */
    constexpr int DV = D / 32; /* output dimensions per lane */
    extern __shared__ __align__(16) float sm[];
    __shared__ int s_last;
    const int G = a.hq / a.hkv, ns = a.nsplit;
    const int hk = blockIdx.x, split = blockIdx.y, tid = threadIdx.x;
    const kv_map km = kv_map_of(a);
    const uint16_t *const kcache = a.kc, *const vcache = a.vc;
    const float cap = a.softcap;
    const int warp = tid >> 5, lane = tid & 31;
    float *qs = sm;                        /* [G][D] roped queries */
    float *pw = qs + G * D;                /* [warps][G][32] weights of a key group */
    float *tmp = pw + DEC_WARPS * G * 32;  /* [warps][D] rope scratch */
    float *wm = tmp + DEC_WARPS * D;       /* [slots][G] max (base 2) */
    float *wl = wm + WK_SLOTS * G;         /* [slots][G] sum of weights */
    float *wo = wl + WK_SLOTS * G;         /* [slots][G][D] weighted values */
    float *knf = wo + WK_SLOTS * G * D;    /* [D] new key, roped */
    float *vnf = knf + D;                  /* [D] new value */
    float *mm = vnf + D;                   /* [G][DEC_MAXSPLIT] merge weights */
    float *run = mm + G * DEC_MAXSPLIT;    /* [2][G] */
    pdl_trigger();
    const int pos = a.d_state[0], L = pos + 1;
    const int lo0 = a.window > 0 ? max(0, pos - a.window + 1) : 0;
    const int span = L - lo0;
    int chunk = (span + ns - 1) / ns;
    chunk = max(minchunk, (chunk + DEC_WARPS * WK_GROUP - 1) / (DEC_WARPS * WK_GROUP) *
                              (DEC_WARPS * WK_GROUP));
    const int used = (span + chunk - 1) / chunk;
    if (split >= used) return;
    const int lo = lo0 + split * chunk, hi = min(lo + chunk, L);
    const int hik = min(hi, pos); /* keys read from the cache: all but the new one */
    const bool has_new = split == used - 1;

    uint4 kr[KC];
    wk_v<D> vr[WK_GROUP];
    auto load_group = [&](int g0) {
        const int key = g0 + lane;
        const bool live = key < hik;
        /* the lane's key row; paged, lane j's offset is key g0 + j's value
         * row too (the pools share their layout), so one table look-up a
         * lane serves the group's values */
        const size_t koff = kv_at<PG>(km, hk, live ? key : 0, D);
        const uint4 *ks = (const uint4 *)(kcache + koff);
#pragma unroll
        for (int c = 0; c < KC; c++) kr[c] = live ? ks[c] : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
        for (int j = 0; j < WK_GROUP; j++) {
            const int kj = g0 + j;
            const bool lj = kj < hik;
            const uint16_t *vs;
            if constexpr (PG)
                vs = vcache + (((size_t)__shfl_sync(0xffffffffu, (unsigned)(koff >> 32), j) << 32) |
                             __shfl_sync(0xffffffffu, (unsigned)koff, j));
            else
                vs = vcache + kv_at<false>(km, hk, lj ? kj : 0, D);
            if constexpr (D == 32) {
                vr[j].w[0] = lj ? (uint32_t)vs[lane] : 0u;
            } else if constexpr (D == 64) {
                vr[j].w[0] = lj ? ((const uint32_t *)vs)[lane] : 0u;
            } else {
                const uint2 t = lj ? ((const uint2 *)vs)[lane] : make_uint2(0u, 0u);
                vr[j].w[0] = t.x;
                vr[j].w[1] = t.y;
            }
        }
    };
    const int first = lo + warp * WK_GROUP;
    if (first < hik) load_group(first);
    pdl_wait();

    for (int gg = warp; gg < G; gg += DEC_WARPS)
        rope_head(a.qkv + (size_t)(hk * G + gg) * D, a.q_norm, a.eps, a.norm_offset, a.rnd,
                  a.inv_freq, a.rot, a.rope_attn, pos, D, tmp + warp * D, qs + gg * D, NULL);
    if (has_new) { /* append the new token's key and value; keep them for the end */
        const size_t at = kv_at<PG>(km, hk, pos, D);
        if (warp == DEC_WARPS - 1)
            rope_head(a.qkv + (size_t)(a.hq + hk) * D, a.k_norm, a.eps, a.norm_offset, a.rnd,
                      a.inv_freq, a.rot, a.rope_attn, pos, D, tmp + warp * D, knf,
                      a.append ? a.kc + at : NULL);
        const uint16_t *vsrc = a.qkv + (size_t)(a.hq + a.hkv + hk) * D;
        for (int i = tid; i < D; i += DEC_THREADS) {
            const uint16_t v = vsrc[i];
            if (a.append) a.vc[at + i] = v;
            vnf[i] = bf2f(v);
        }
    }
    __syncthreads(); /* queries, new key and value staged */

    const float sl2 = a.scale * 1.4426950408889634f;
    float o[GM][DV], mrun[GM], lrun[GM];
#pragma unroll
    for (int g = 0; g < GM; g++) {
        mrun[g] = -INFINITY;
        lrun[g] = 0.f;
#pragma unroll
        for (int e = 0; e < DV; e++) o[g][e] = 0.f;
    }
    float *pwr = pw + warp * G * 32;
    for (int g0 = first; g0 < hik; g0 += DEC_WARPS * WK_GROUP) {
        if (g0 != first) load_group(g0);
        float s[GM];
#pragma unroll
        for (int g = 0; g < GM; g++) s[g] = 0.f;
#pragma unroll
        for (int c = 0; c < KC; c++) {
            const uint32_t kw[4] = {kr[c].x, kr[c].y, kr[c].z, kr[c].w};
#pragma unroll
            for (int g = 0; g < GM; g++)
                if (g < G) {
                    const float4 q0 = *(const float4 *)(qs + g * D + c * 8);
                    const float4 q1 = *(const float4 *)(qs + g * D + c * 8 + 4);
                    s[g] += q0.x * bflo(kw[0]) + q0.y * bfhi(kw[0]) + q0.z * bflo(kw[1]) +
                            q0.w * bfhi(kw[1]) + q1.x * bflo(kw[2]) + q1.y * bfhi(kw[2]) +
                            q1.z * bflo(kw[3]) + q1.w * bfhi(kw[3]);
                }
        }
        const bool live = g0 + lane < hik;
#pragma unroll
        for (int g = 0; g < GM; g++)
            s[g] = live ? (SC ? capped<SC>(s[g] * a.scale, cap) * 1.4426950408889634f : s[g] * sl2)
                        : -INFINITY;
        float mx[GM];
#pragma unroll
        for (int g = 0; g < GM; g++) mx[g] = s[g];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1)
#pragma unroll
            for (int g = 0; g < GM; g++)
                if (g < G) mx[g] = fmaxf(mx[g], __shfl_xor_sync(0xffffffffu, mx[g], off));
        /* lane 0's key is live, so every new maximum is finite */
#pragma unroll
        for (int g = 0; g < GM; g++)
            if (g < G) {
                const float mn = fmaxf(mrun[g], mx[g]);
                const float al = exp2f(mrun[g] - mn), p = exp2f(s[g] - mn);
                mrun[g] = mn;
                lrun[g] = lrun[g] * al + p;
#pragma unroll
                for (int e = 0; e < DV; e++) o[g][e] *= al;
                pwr[g * 32 + lane] = p;
            }
        __syncwarp();
#pragma unroll
        for (int j = 0; j < WK_GROUP; j += 4) {
            float vf[4][DV];
#pragma unroll
            for (int jj = 0; jj < 4; jj++) {
                if constexpr (D == 32) {
                    vf[jj][0] = bflo(vr[j + jj].w[0]);
                } else {
#pragma unroll
                    for (int w = 0; w < DV / 2; w++) {
                        vf[jj][2 * w] = bflo(vr[j + jj].w[w]);
                        vf[jj][2 * w + 1] = bfhi(vr[j + jj].w[w]);
                    }
                }
            }
#pragma unroll
            for (int g = 0; g < GM; g++)
                if (g < G) {
                    const float4 p4 = *(const float4 *)(pwr + g * 32 + j);
#pragma unroll
                    for (int e = 0; e < DV; e++)
                        o[g][e] += p4.x * vf[0][e] + p4.y * vf[1][e] + p4.z * vf[2][e] +
                                   p4.w * vf[3][e];
                }
        }
        __syncwarp(); /* pwr is rewritten by the next group */
    }
    /* this warp's partial state */
#pragma unroll
    for (int g = 0; g < GM; g++)
        if (g < G) {
            float l = lrun[g];
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) l += __shfl_xor_sync(0xffffffffu, l, off);
            if (lane == 0) {
                wm[warp * G + g] = mrun[g];
                wl[warp * G + g] = l;
            }
#pragma unroll
            for (int e = 0; e < DV; e++) wo[(warp * G + g) * D + lane * DV + e] = o[g][e];
        }
    /* the new token's slot: its score against each query head */
    if (warp == DEC_WARPS - 1) {
        for (int g = 0; g < G; g++) {
            float s = 0.f;
            if (has_new)
                for (int i = lane; i < D; i += 32) s += qs[g * D + i] * knf[i];
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
            if (lane == 0) {
                wm[DEC_WARPS * G + g] =
                    has_new ? (SC ? capped<SC>(s * a.scale, cap) * 1.4426950408889634f : s * sl2)
                            : -INFINITY;
                wl[DEC_WARPS * G + g] = has_new ? 1.f : 0.f;
            }
            for (int i = lane; i < D; i += 32) wo[(DEC_WARPS * G + g) * D + i] = has_new ? vnf[i] : 0.f;
        }
    }
    __syncthreads();
    float *ws_m = a.ws, *ws_l = a.ws + (size_t)a.hq * ns, *ws_o = a.ws + 2 * (size_t)a.hq * ns;
    for (int i = tid; i < G * D; i += DEC_THREADS) {
        const int g = i / D, c = i - g * D;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < WK_SLOTS; w++) M = fmaxf(M, wm[w * G + g]);
        float l = 0.f, v = 0.f;
#pragma unroll
        for (int w = 0; w < WK_SLOTS; w++) {
            const float f = exp2f(wm[w * G + g] - M);
            l += wl[w * G + g] * f;
            v += wo[(w * G + g) * D + c] * f;
        }
        const size_t hrow = (size_t)(hk * G + g);
        if (used == 1) {
            a.out[hrow * D + c] = f2bf(v / l);
        } else {
            ws_o[(hrow * ns + split) * D + c] = v;
            if (c == 0) {
                ws_m[hrow * ns + split] = M;
                ws_l[hrow * ns + split] = l;
            }
        }
    }
    if (used == 1) return;
    if (!last_to_arrive(&a.counters[hk], used, &s_last)) return;
    merge_splits<true>(a, G, hk, used, mm, wo, run);
}

static size_t wk_smem(int G, int d) {
    size_t f = (size_t)G * d + DEC_WARPS * G * 32 + DEC_WARPS * d + 2 * WK_SLOTS * G +
               (size_t)WK_SLOTS * G * d + 2 * d + (size_t)G * DEC_MAXSPLIT + 2 * G;
    return f * sizeof(float);
}

typedef void (*wk_kernel)(dec_args, int);
template <int D, bool SC, bool PG> static wk_kernel wk_pick_d(int G) {
    return G <= 2   ? k_attn_decode_wk<2, D, SC, PG>
           : G <= 4 ? k_attn_decode_wk<4, D, SC, PG>
                    : k_attn_decode_wk<8, D, SC, PG>;
}
/* NULL where the one-key-per-lane kernel does not apply (16 heads per KV
 * head at d = 128 would not fit in registers) */
template <bool SC, bool PG> static wk_kernel wk_pick_sc(int G, int d) {
    if (G < 1 || G > DEC_MAXG) return NULL;
    if (G > 8)
        return d == 32 ? k_attn_decode_wk<16, 32, SC, PG>
                       : d == 64 ? k_attn_decode_wk<16, 64, SC, PG> : NULL;
    return d == 32    ? wk_pick_d<32, SC, PG>(G)
           : d == 64  ? wk_pick_d<64, SC, PG>(G)
           : d == 128 ? wk_pick_d<128, SC, PG>(G)
                      : NULL;
}
static wk_kernel wk_pick(int G, int d, bool sc, bool pg) {
    return sc ? (pg ? wk_pick_sc<true, true>(G, d) : wk_pick_sc<true, false>(G, d))
              : (pg ? wk_pick_sc<false, true>(G, d) : wk_pick_sc<false, false>(G, d));
}

static size_t dec_smem(int G, int d) {
    size_t tiles = (size_t)DEC_STAGES * 2 * DEC_TILE * d * 2;
    size_t accb = (size_t)DEC_WARPS * G * d * 4, mergeb = (size_t)G * DEC_TILE * 4;
    if (accb < mergeb) accb = mergeb;
    if (tiles < accb) tiles = accb;
    return tiles + (size_t)(G * d + G * DEC_TILE + DEC_WARPS * d + 3 * G) * sizeof(float);
}

typedef void (*dec_kernel)(dec_args);
template <bool SC, bool PG> static dec_kernel dec_pick_sc(int G) {
    return G <= 2   ? k_attn_decode<2, SC, PG>
           : G <= 4 ? k_attn_decode<4, SC, PG>
           : G <= 8 ? k_attn_decode<8, SC, PG>
                    : k_attn_decode<16, SC, PG>;
}
static dec_kernel dec_pick(int G, bool sc, bool pg) {
    return sc ? (pg ? dec_pick_sc<true, true>(G) : dec_pick_sc<true, false>(G))
              : (pg ? dec_pick_sc<false, true>(G) : dec_pick_sc<false, false>(G));
}

/* The launch attributes of the shape's kernel, with and without
 * softcapping, contiguous and paged. */
extern "C" int lmc_cu_attn_decode_setup(int hq, int hkv, int d) {
    const int G = hq / hkv;
    cudaError_t e = cudaSuccess;
    for (int v = 0; v < 4 && e == cudaSuccess; v++) {
        const bool sc = v & 1, pg = v >> 1;
        wk_kernel wk = wk_pick(G, d, sc, pg);
        size_t smem;
        if (wk) {
            e = cudaFuncSetAttribute(wk, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
            smem = wk_smem(G, d);
            if (e == cudaSuccess && smem > 48 * 1024)
                e = cudaFuncSetAttribute(wk, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)smem);
            continue;
        }
        dec_kernel k = dec_pick(G, sc, pg);
        e = cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
        smem = dec_smem(G, d);
        if (e == cudaSuccess && smem > 48 * 1024)
            e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    }
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
           d <= 256 && ((d / 8) & (d / 8 - 1)) == 0 && dec_smem(hq / hkv, d) <= 160 * 1024 &&
           wk_smem(hq / hkv, d) <= 160 * 1024;
}

static int attn_decode(const uint16_t *qkv, int hq, int hkv, int d, const uint16_t *q_norm,
                       const uint16_t *k_norm, float norm_eps, int norm_offset,
                       const float *inv_freq, int rot, float rope_attn, const int32_t *d_state,
                       uint16_t *k_cache, uint16_t *v_cache, int cap, const int32_t *table,
                       int bt, int window, float scale, float softcap, int nsplit, void *ws,
                       uint16_t *out, int rnd, int append, lmc_cu_stream s) {
    if (rot < 2 || rot > d || rot % 2) return (int)cudaErrorInvalidValue;
    dec_args a;
    a.table = table;
    a.bt = bt;
    a.qkv = qkv;
    a.q_norm = q_norm;
    a.k_norm = k_norm;
    a.inv_freq = inv_freq;
    a.rope_attn = rope_attn;
    a.d_state = d_state;
    a.kc = k_cache;
    a.vc = v_cache;
    a.ws = (float *)ws;
    a.counters = (int *)((float *)ws + (size_t)hq * nsplit * (2 + (size_t)d));
    a.out = out;
    a.eps = norm_eps;
    a.scale = scale != 0.f ? scale : 1.f / sqrtf((float)d);
    a.softcap = softcap;
    a.norm_offset = norm_offset;
    a.rot = rot;
    a.hq = hq;
    a.hkv = hkv;
    a.d = d;
    a.cap = cap;
    a.window = window;
    a.nsplit = nsplit;
    a.rnd = rnd;
    a.append = append;
    const bool sc = softcap > 0.f;
    const bool pg = table != NULL;
    wk_kernel wk = wk_pick(hq / hkv, d, sc, pg);
    if (wk)
        return (int)lmc_pdl_launch(wk, dim3(hkv, nsplit), dim3(DEC_THREADS), wk_smem(hq / hkv, d),
                                   (cudaStream_t)s, a, wk_minchunk);
    const size_t smem = dec_smem(hq / hkv, d);
    return (int)lmc_pdl_launch(dec_pick(hq / hkv, sc, pg), dim3(hkv, nsplit), dim3(DEC_THREADS), smem,
                               (cudaStream_t)s, a);
}

extern "C" int lmc_cu_attn_decode(const uint16_t *qkv, int hq, int hkv, int d,
                                  const uint16_t *q_norm, const uint16_t *k_norm, float norm_eps,
                                  int norm_offset, const float *inv_freq, int rot,
                                  float rope_attn, const int32_t *d_state, uint16_t *k_cache,
                                  uint16_t *v_cache, int cap, int window, float scale,
                                  float softcap, int nsplit, void *ws, uint16_t *out, int rnd,
                                  int append, lmc_cu_stream s) {
    return attn_decode(qkv, hq, hkv, d, q_norm, k_norm, norm_eps, norm_offset, inv_freq, rot,
                       rope_attn, d_state, k_cache, v_cache, cap, NULL, 0, window, scale, softcap,
                       nsplit, ws, out, rnd, append, s);
}

extern "C" int lmc_cu_attn_decode_paged(const uint16_t *qkv, int hq, int hkv, int d,
                                        const uint16_t *q_norm, const uint16_t *k_norm,
                                        float norm_eps, int norm_offset, const float *inv_freq,
                                        int rot, float rope_attn, const int32_t *d_pos,
                                        uint16_t *k_pool, uint16_t *v_pool,
                                        const int32_t *table, int block_tokens, int window,
                                        float scale, float softcap, int nsplit, void *ws,
                                        uint16_t *out, int rnd, lmc_cu_stream s) {
    if (!table || block_tokens <= 0) return (int)cudaErrorInvalidValue;
    return attn_decode(qkv, hq, hkv, d, q_norm, k_norm, norm_eps, norm_offset, inv_freq, rot,
                       rope_attn, d_pos, k_pool, v_pool, 0, table, block_tokens, window, scale,
                       softcap, nsplit, ws, out, rnd, 1, s);
}
