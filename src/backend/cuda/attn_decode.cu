/* Attention of one decode step for one layer, as a single kernel: the new
 * token's q and k get their per-head RMSNorm (qwen3) and RoPE, k and v go
 * into the cache, and split-K flash decoding runs over the live keys. The
 * splits of a KV head are merged by whichever of its blocks finishes last
 * (an arrival counter per KV head), so no second kernel is needed.
 *
 * Grid (Hkv, nsplit): the live span is cut into at most nsplit chunks of a
 * whole number of 64-key tiles, computed on the device from d_state, so the
 * launch is graph-safe and only blocks with keys do any work. Each block
 * walks its chunk tile by tile with an online softmax. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "cuda_kernels.h"
#include "cuda_pdl.cuh"

#define DEC_TILE 64
#define DEC_THREADS 128
#define DEC_WARPS (DEC_THREADS / 32)
#define DEC_MAXG 16
#define DEC_MAXSPLIT 64

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

__global__ void __launch_bounds__(DEC_THREADS) k_attn_decode(dec_args a) {
    extern __shared__ float sm[];
    __shared__ int s_last;
    const int G = a.hq / a.hkv, d = a.d, ns = a.nsplit;
    const int hk = blockIdx.x, split = blockIdx.y, tid = threadIdx.x;
    const int warp = tid >> 5, lane = tid & 31;
    float *qs = sm;                      /* [G][d] roped queries */
    float *sc = qs + G * d;              /* [G][DEC_TILE] scores, then weights */
    float *acc = sc + G * DEC_TILE;      /* [warps][G][d]; rope scratch first */
    float *run_m = acc + DEC_WARPS * G * d, *run_l = run_m + G, *run_a = run_l + G;
    pdl_trigger();
    pdl_wait();
    const int pos = a.d_state[0], L = pos + 1;
    const int lo0 = a.window > 0 ? max(0, pos - a.window + 1) : 0;
    const int span = L - lo0;
    int chunk = (span + ns - 1) / ns;
    chunk = max(DEC_TILE, (chunk + DEC_TILE - 1) / DEC_TILE * DEC_TILE);
    const int used = (span + chunk - 1) / chunk;
    if (split >= used) return;
    const int lo = lo0 + split * chunk, hi = min(lo + chunk, L);

    for (int gg = warp; gg < G; gg += DEC_WARPS)
        rope_head(a.qkv + (size_t)(hk * G + gg) * d, a.q_norm, a.eps, a.rnd, a.inv_freq, pos, d,
                  acc + warp * d, qs + gg * d, NULL);
    if (split == used - 1) { /* this chunk ends at the new token: append it */
        const size_t at = ((size_t)hk * a.cap + pos) * d;
        if (warp == DEC_WARPS - 1)
            rope_head(a.qkv + (size_t)(a.hq + hk) * d, a.k_norm, a.eps, a.rnd, a.inv_freq, pos,
                      d, acc + warp * d, NULL, a.kc + at);
        const uint16_t *vsrc = a.qkv + (size_t)(a.hq + a.hkv + hk) * d;
        for (int i = tid; i < d; i += DEC_THREADS) a.vc[at + i] = vsrc[i];
    }
    if (tid < G) {
        run_m[tid] = -INFINITY;
        run_l[tid] = 0.f;
    }
    __syncthreads(); /* also makes the appended k/v visible to the block */

    /* Scores: d/8 lanes per key, 16 bytes each; PV: the same lanes own an
     * 8-wide slice of d for every kpi-th key. */
    const int lpk = d / 8, kpi = DEC_THREADS / lpk;
    const int grp = tid / lpk, sub = tid % lpk;
    const uint16_t *kb = a.kc + (size_t)hk * a.cap * d;
    const uint16_t *vb = a.vc + (size_t)hk * a.cap * d;
    float o[DEC_MAXG][8];
#pragma unroll
    for (int gg = 0; gg < DEC_MAXG; gg++)
#pragma unroll
        for (int e = 0; e < 8; e++) o[gg][e] = 0.f;

    for (int t0 = lo; t0 < hi; t0 += DEC_TILE) {
        const int cnt = min(DEC_TILE, hi - t0);
        for (int jb = 0; jb < cnt; jb += kpi) {
            const int j = jb + grp;
            const bool live = j < cnt;
            float kf[8];
            if (live) {
                uint4 kv = *(const uint4 *)(kb + (size_t)(t0 + j) * d + sub * 8);
                const uint16_t *ke = (const uint16_t *)&kv;
#pragma unroll
                for (int e = 0; e < 8; e++) kf[e] = bf2f(ke[e]);
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++) kf[e] = 0.f;
            }
            for (int gg = 0; gg < G; gg++) {
                const float *qq = qs + gg * d + sub * 8;
                float p = 0.f;
#pragma unroll
                for (int e = 0; e < 8; e++) p += qq[e] * kf[e];
                for (int s = lpk / 2; s > 0; s >>= 1) p += __shfl_xor_sync(0xffffffffu, p, s);
                if (live && sub == 0) sc[gg * DEC_TILE + j] = p * a.scale;
            }
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
        for (int gg = 0; gg < DEC_MAXG; gg++)
            if (gg < G) {
                const float al = run_a[gg];
#pragma unroll
                for (int e = 0; e < 8; e++) o[gg][e] *= al;
            }
        for (int j = grp; j < cnt; j += kpi) {
            uint4 vv = *(const uint4 *)(vb + (size_t)(t0 + j) * d + sub * 8);
            const uint16_t *ve = (const uint16_t *)&vv;
            float vf[8];
#pragma unroll
            for (int e = 0; e < 8; e++) vf[e] = bf2f(ve[e]);
#pragma unroll
            for (int gg = 0; gg < DEC_MAXG; gg++)
                if (gg < G) {
                    const float p = sc[gg * DEC_TILE + j];
#pragma unroll
                    for (int e = 0; e < 8; e++) o[gg][e] += p * vf[e];
                }
        }
        __syncthreads(); /* sc is rewritten by the next tile */
    }

    /* Sum over key groups: within the warp by shuffles, across warps in
     * shared memory. */
#pragma unroll
    for (int gg = 0; gg < DEC_MAXG; gg++)
        if (gg < G)
#pragma unroll
            for (int e = 0; e < 8; e++)
                for (int off = lpk; off < 32; off <<= 1)
                    o[gg][e] += __shfl_xor_sync(0xffffffffu, o[gg][e], off);
    if (lane < lpk) {
#pragma unroll
        for (int gg = 0; gg < DEC_MAXG; gg++)
            if (gg < G)
#pragma unroll
                for (int e = 0; e < 8; e++) acc[(warp * G + gg) * d + sub * 8 + e] = o[gg][e];
    }
    __syncthreads();
    if (used == 1) {
        for (int i = tid; i < G * d; i += DEC_THREADS) {
            const int gg = i / d, c = i % d;
            float v = 0.f;
            for (int w = 0; w < DEC_WARPS; w++) v += acc[(w * G + gg) * d + c];
            a.out[(size_t)(hk * G + gg) * d + c] = f2bf(v / run_l[gg]);
        }
        return;
    }
    float *ws_m = a.ws, *ws_l = a.ws + (size_t)a.hq * ns, *ws_o = a.ws + 2 * (size_t)a.hq * ns;
    for (int i = tid; i < G * d; i += DEC_THREADS) {
        const int gg = i / d, c = i % d;
        float v = 0.f;
        for (int w = 0; w < DEC_WARPS; w++) v += acc[(w * G + gg) * d + c];
        ws_o[((size_t)(hk * G + gg) * ns + split) * d + c] = v;
    }
    if (tid < G) {
        ws_m[(size_t)(hk * G + tid) * ns + split] = run_m[tid];
        ws_l[(size_t)(hk * G + tid) * ns + split] = run_l[tid];
    }
    __threadfence(); /* partials visible device-wide before we arrive */
    __syncthreads();
    if (tid == 0) s_last = atomicAdd(&a.counters[hk], 1) == used - 1;
    __syncthreads();
    if (!s_last) return;

    /* The last block of this KV head merges every split's partials. */
    __threadfence();
    if (tid == 0) a.counters[hk] = 0;
    if (tid < G) {
        const size_t h = (size_t)(hk * G + tid) * ns;
        float M = -INFINITY, l = 0.f;
        for (int s = 0; s < used; s++) M = fmaxf(M, __ldcg(ws_m + h + s));
        for (int s = 0; s < used; s++) l += __ldcg(ws_l + h + s) * __expf(__ldcg(ws_m + h + s) - M);
        run_m[tid] = M;
        run_l[tid] = l;
    }
    __syncthreads();
    for (int i = tid; i < G * d; i += DEC_THREADS) {
        const int gg = i / d, c = i % d;
        const size_t h = (size_t)(hk * G + gg) * ns;
        float v = 0.f;
        for (int s = 0; s < used; s++)
            v += __ldcg(ws_o + (h + s) * d + c) * __expf(__ldcg(ws_m + h + s) - run_m[gg]);
        a.out[(size_t)(hk * G + gg) * d + c] = f2bf(v / run_l[gg]);
    }
}

static size_t dec_smem(int G, int d) {
    return (size_t)(G * d + G * DEC_TILE + DEC_WARPS * G * d + 3 * G) * sizeof(float);
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
           d <= 256 && ((d / 8) & (d / 8 - 1)) == 0 && dec_smem(hq / hkv, d) <= 48 * 1024;
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
    return (int)lmc_pdl_launch(k_attn_decode, dim3(hkv, nsplit), dim3(DEC_THREADS),
                               dec_smem(hq / hkv, d), (cudaStream_t)s, a);
}
