/* Prefill attention over the KV cache: a tensor-core flash-attention
 * kernel for several new tokens (attn_decode.cu has the single-token one).
 * Causal, GQA-aware (query head h reads KV head h / (Hq / Hkv)), honours a
 * sliding window. Caches are [Hkv, cap, D]
 * bf16; the number of cached tokens before this step is d_state[0].
 * Attention logit softcapping (Gemma 2 style) is a template flag SC: its
 * kernels map each raw score s to cap_out * tanh(s * cap_in), already in
 * log2 units (scale_log2 is then 1); the kernels without it are as ever. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_kernels.h"
#include "cuda_pdl.cuh"

#define LOG2E 1.4426950408889634f

static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

/* 2^x on the special-function unit; 2^-inf = +0, which masking relies on */
static __device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

static __device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
                                                uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
        "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* ---------------------------------------------------------------- prefill
 * Block: 4 warps, 64 query rows of one head; each warp owns 16 rows.
 * Key tiles of 64 rows of K and V are copied to shared memory with
 * cp.async, two stages deep so the next tile loads while this one is used.
 * S = Q K^T and O += P V use mma.m16n8k16 with operands fetched by
 * ldmatrix (V through its transposing form); the softmax is online
 * (running max m and sum l per row). */
#define FA_BQ 64
#define FA_BK 64

static __device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}
static __device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool live) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src),
                 "r"(live ? 16 : 0));
}
static __device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t &r0, uint32_t &r1,
                                               uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
static __device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t &r0, uint32_t &r1,
                                                 uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

template <int D> struct fa_smem {
    uint16_t k[2][FA_BK][D + 8];
    uint16_t v[2][FA_BK][D + 8];
};

template <int D, bool SC>
__global__ void __launch_bounds__(128)
    k_flash_prefill(const uint16_t *__restrict__ q, const uint16_t *__restrict__ kc,
                    const uint16_t *__restrict__ vc, uint16_t *__restrict__ out, int n, int hq,
                    int hkv, int cap, const int32_t *d_state, int window, float scale_log2,
                    float cap_in, float cap_out) {
    extern __shared__ __align__(16) unsigned char fa_raw[];
    fa_smem<D> &sm = *(fa_smem<D> *)fa_raw;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, t4 = lane & 3;
    /* heads vary fastest and the longest (last) query tiles come first, so
     * the heavy causal tiles do not end up in a last, partly filled wave */
    const int h = blockIdx.x, hk = h / (hq / hkv);
    const int pos0 = d_state[0];
    const int qrow0 = (gridDim.y - 1 - blockIdx.y) * FA_BQ;
    const int wrow = qrow0 + warp * 16;

    const int last_row = min(n, qrow0 + FA_BQ) - 1;
    const int kend = pos0 + last_row + 1; /* exclusive */
    int kbeg = 0;
    if (window > 0) {
        kbeg = pos0 + qrow0 - window + 1;
        if (kbeg < 0) kbeg = 0;
        kbeg -= kbeg % FA_BK;
    }
    const uint16_t *kbase = kc + (size_t)hk * cap * D;
    const uint16_t *vbase = vc + (size_t)hk * cap * D;
    auto load_tile = [&](int kt, int buf) {
        for (int c = tid; c < FA_BK * D / 8; c += 128) {
            int r = c / (D / 8), c8 = (c % (D / 8)) * 8;
            int key = kt + r;
            bool live = key < kend;
            size_t off = (size_t)(live ? key : 0) * D + c8;
            cp_async16(smem_addr(&sm.k[buf][r][c8]), kbase + off, live);
            cp_async16(smem_addr(&sm.v[buf][r][c8]), vbase + off, live);
        }
        asm volatile("cp.async.commit_group;");
    };
    if (kbeg < kend) load_tile(kbeg, 0);

    /* Q fragments for this warp's 16 rows (A operand, row-major). */
    uint32_t qf[D / 16][4];
    {
        int ra = wrow + g, rb = wrow + g + 8;
        const uint16_t *qa = q + ((size_t)(ra < n ? ra : 0) * hq + h) * D;
        const uint16_t *qb = q + ((size_t)(rb < n ? rb : 0) * hq + h) * D;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            int c = kk * 16 + 2 * t4;
            qf[kk][0] = ra < n ? *(const uint32_t *)(qa + c) : 0u;
            qf[kk][1] = rb < n ? *(const uint32_t *)(qb + c) : 0u;
            qf[kk][2] = ra < n ? *(const uint32_t *)(qa + c + 8) : 0u;
            qf[kk][3] = rb < n ? *(const uint32_t *)(qb + c + 8) : 0u;
        }
    }
    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    const int qpos_a = pos0 + wrow + g, qpos_b = qpos_a + 8;
    const int wq_lo = pos0 + wrow, wq_hi = wq_lo + 15; /* this warp's positions */
    /* ldmatrix lane roles: matrix index and row within it */
    const int lm_i = lane >> 3, lm_r = lane & 7;

    int buf = 0;
    for (int kt = kbeg; kt < kend; kt += FA_BK, buf ^= 1) {
        if (kt + FA_BK < kend) {
            load_tile(kt + FA_BK, buf ^ 1);
            asm volatile("cp.async.wait_group 1;");
        } else {
            asm volatile("cp.async.wait_group 0;");
        }
        __syncthreads();
        /* tiles wholly after this warp's rows, or wholly before its window */
        bool skip = kt > wq_hi || (window > 0 && kt + FA_BK - 1 <= wq_lo - window);
        if (!skip) {
            const bool full =
                kt + FA_BK - 1 <= wq_lo && (window <= 0 || kt > wq_hi - window);
            float s[FA_BK / 8][4];
#pragma unroll
            for (int nt = 0; nt < FA_BK / 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
            for (int nt = 0; nt < FA_BK / 8; nt += 2) {
#pragma unroll
                for (int kk = 0; kk < D / 16; kk++) {
                    uint32_t b0, b1, b2, b3;
                    ldsm_x4(smem_addr(&sm.k[buf][(nt + (lm_i >> 1)) * 8 + lm_r]
                                           [kk * 16 + (lm_i & 1) * 8]),
                            b0, b1, b2, b3);
                    mma_bf16(s[nt], qf[kk], b0, b1);
                    mma_bf16(s[nt + 1], qf[kk], b2, b3);
                }
            }
            if constexpr (SC) {
#pragma unroll
                for (int nt = 0; nt < FA_BK / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) s[nt][e] = cap_out * tanhf(s[nt][e] * cap_in);
            }
            if (full) {
#pragma unroll
                for (int nt = 0; nt < FA_BK / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) s[nt][e] *= scale_log2;
            } else {
#pragma unroll
                for (int nt = 0; nt < FA_BK / 8; nt++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        int key = kt + nt * 8 + 2 * t4 + (e & 1);
                        int qp = e < 2 ? qpos_a : qpos_b;
                        bool ok = key <= qp && (window <= 0 || key > qp - window);
                        s[nt][e] = ok ? s[nt][e] * scale_log2 : -INFINITY;
                    }
                }
            }
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                float mx = -INFINITY;
#pragma unroll
                for (int nt = 0; nt < FA_BK / 8; nt++)
                    mx = fmaxf(mx, fmaxf(s[nt][2 * hh], s[nt][2 * hh + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                float mnew = fmaxf(m[hh], mx);
                float muse = mnew == -INFINITY ? 0.f : mnew;
                float alpha = exp2f(m[hh] - muse);
                float sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < FA_BK / 8; nt++) {
                    s[nt][2 * hh] = exp2f(s[nt][2 * hh] - muse);
                    s[nt][2 * hh + 1] = exp2f(s[nt][2 * hh + 1] - muse);
                    sum += s[nt][2 * hh] + s[nt][2 * hh + 1];
                }
                l[hh] = l[hh] * alpha + sum;
                m[hh] = mnew;
#pragma unroll
                for (int dt = 0; dt < D / 8; dt++) {
                    o[dt][2 * hh] *= alpha;
                    o[dt][2 * hh + 1] *= alpha;
                }
            }
            /* O += P V: the S accumulators of two adjacent key octets form
             * the A fragment of one 16-key step. */
#pragma unroll
            for (int kk = 0; kk < FA_BK / 16; kk++) {
                uint32_t a[4];
                a[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
                a[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
                a[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                a[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
                for (int dt = 0; dt < D / 8; dt += 2) {
                    uint32_t b0, b1, b2, b3;
                    ldsm_x4_t(smem_addr(&sm.v[buf][kk * 16 + (lm_i & 1) * 8 + lm_r]
                                             [(dt + (lm_i >> 1)) * 8]),
                              b0, b1, b2, b3);
                    mma_bf16(o[dt], a, b0, b1);
                    mma_bf16(o[dt + 1], a, b2, b3);
                }
            }
        }
        __syncthreads(); /* the next iteration refills the other buffer */
    }
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        l[hh] += __shfl_xor_sync(0xffffffffu, l[hh], 1);
        l[hh] += __shfl_xor_sync(0xffffffffu, l[hh], 2);
    }
    int ra = wrow + g, rb = wrow + g + 8;
    float ia = l[0] > 0.f ? 1.f / l[0] : 0.f, ib = l[1] > 0.f ? 1.f / l[1] : 0.f;
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
        int c = dt * 8 + 2 * t4;
        if (ra < n)
            *(uint32_t *)(out + ((size_t)ra * hq + h) * D + c) =
                pack_bf16(o[dt][0] * ia, o[dt][1] * ia);
        if (rb < n)
            *(uint32_t *)(out + ((size_t)rb * hq + h) * D + c) =
                pack_bf16(o[dt][2] * ib, o[dt][3] * ib);
    }
}

/* ------------------------------------------------ prefill, GQA-packed
 * The rows of a block are "virtual rows" v = t * G + j: query token t of
 * head hk * G + j, for the G = Hq / Hkv query heads that share KV head hk.
 * Every K/V tile copied to shared memory so serves all G heads, and the
 * rows of a block span only RG * 32 / G tokens, so the causal extent of a
 * block stays short.
 * Each warp owns 32 virtual rows (two m16 tiles): every K or V fragment
 * fetched by ldmatrix feeds two mma's, halving the shared-memory reads per
 * mma. The block has RG such row groups and KSPLIT warps per group, which
 * take their own slice of 64 / KSPLIT keys of every tile (each with its
 * own running max and sum; merged through shared memory at the end): that
 * shortens the serial chain of the longest (last) rows, which otherwise
 * sets the time of a causal prefill.
 * With QS (for D = 128) Q is staged in shared memory, as its fragments of
 * 32 rows would not fit in registers beside O and S, and re-read with
 * ldmatrix for each 16-column step. */
template <int D, int RG, bool QS> struct fa_smem_gqa {
    uint16_t k[2][FA_BK][D + 8];
    uint16_t v[2][FA_BK][D + 8];
    uint16_t q[QS ? RG * 32 : 1][D + 8];
};
/* values per thread handed over for the merge: O, then m and l per row;
 * each merge round passes KSPLIT / 2 partials of every row group */
#define FA_XCH(D) (2 * ((D) / 8) * 4 + 8)
template <int D, int RG, int KSPLIT> constexpr size_t fa_xch_bytes() {
    return (size_t)(KSPLIT / 2) * FA_XCH(D) * RG * 32 * sizeof(float);
}
template <int D, int RG, int KSPLIT, bool QS> constexpr size_t fa_gqa_smem() {
    return sizeof(fa_smem_gqa<D, RG, QS>) > fa_xch_bytes<D, RG, KSPLIT>()
               ? sizeof(fa_smem_gqa<D, RG, QS>)
               : fa_xch_bytes<D, RG, KSPLIT>();
}

/* Where the keys and values are: a contiguous cache [hkv][cap][D], or (PG)
 * the paged engine's pool [blocks][hkv][bt][D] through one sequence's
 * block table. */
struct fa_paged {
    const int32_t *tab; /* the sequence's block ids */
    int bt;             /* tokens per block */
};

template <int D, int RG, int KSPLIT, bool QS, bool SC, bool PG>
__global__ void __launch_bounds__(RG * 32 * KSPLIT)
    k_flash_prefill_gqa(const uint16_t *__restrict__ q, const uint16_t *__restrict__ kc,
                        const uint16_t *__restrict__ vc, uint16_t *__restrict__ out, int n,
                        int hq, int hkv, int cap, const int32_t *d_state, int window,
                        float scale_log2, float cap_in, float cap_out, fa_paged pg) {
    constexpr int NT = RG * 32 * KSPLIT, BQ = RG * 32, KS = FA_BK / KSPLIT;
    static_assert(KS >= 16 && KS % 16 == 0, "key slice of whole mma steps");
    extern __shared__ __align__(16) unsigned char fa_raw[];
    fa_smem_gqa<D, RG, QS> &sm = *(fa_smem_gqa<D, RG, QS> *)fa_raw;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, t4 = lane & 3;
    const int rg = warp % RG, kq = warp / RG; /* row group, key slice */
    const int hk = blockIdx.x, G = hq / hkv, V = n * G;
    const int pos0 = d_state[0];
    /* the last (longest) tiles come first, as in k_flash_prefill */
    const int v0 = (gridDim.y - 1 - blockIdx.y) * BQ;
    const int wv = v0 + rg * 32;

    const int kend = pos0 + (min(V, v0 + BQ) - 1) / G + 1; /* exclusive */
    int kbeg = 0, klo = 0; /* klo: the block's first key; tiles start at FA_BK steps */
    if (window > 0) {
        kbeg = pos0 + v0 / G - window + 1;
        if (kbeg < 0) kbeg = 0;
        klo = kbeg;
        kbeg -= kbeg % FA_BK;
    }
    (void)klo;
    const uint16_t *kbase = PG ? kc : kc + (size_t)hk * cap * D;
    const uint16_t *vbase = PG ? vc : vc + (size_t)hk * cap * D;
    /* each thread copies the same 16-byte column of rows ld_r0 + i * LD_STEP,
     * so one address per operand plus compile-time steps serves the tile */
    constexpr int LD_THREADS = NT < FA_BK * D / 8 ? NT : FA_BK * D / 8;
    constexpr int LD_STEP = LD_THREADS / (D / 8);
    static_assert(LD_THREADS % (D / 8) == 0 && FA_BK % LD_STEP == 0, "tile copy shape");
    const int ld_r0 = tid / (D / 8), ld_c8 = (tid % (D / 8)) * 8;
    const uint32_t ld_dst = smem_addr(&sm.k[0][ld_r0][ld_c8]);
    constexpr uint32_t KV_BYTES = sizeof(sm.k); /* offset of v from k */
    auto load_tile = [&](int kt, int buf) {
        const uint32_t dst = ld_dst + buf * (uint32_t)sizeof(sm.k[0]);
        const size_t off = (size_t)(kt + ld_r0) * D + ld_c8;
        const uint16_t *ks = kbase + off, *vs = vbase + off;
#pragma unroll
        for (int i = 0; i < FA_BK / LD_STEP && (LD_THREADS == NT || tid < LD_THREADS); i++) {
            const int key = kt + ld_r0 + i * LD_STEP;
            /* a row past the keys reads nothing (src-size 0) and zero-fills;
             * its source address is kept inside the cache all the same */
            const uint16_t *ksrc, *vsrc;
            bool live;
            if constexpr (PG) {
                /* keys below the window may lie in blocks already given
                 * back (stale or never written: masked, but their values
                 * must not be NaN), so they are not read at all */
                live = key >= klo && key < kend;
                const size_t o =
                    live ? (((size_t)pg.tab[key / pg.bt] * hkv + hk) * pg.bt + key % pg.bt) * D +
                               ld_c8
                         : (size_t)ld_c8;
                ksrc = kbase + o;
                vsrc = vbase + o;
            } else {
                live = key < kend;
                ksrc = live ? ks + i * LD_STEP * D : kbase + ld_c8;
                vsrc = live ? vs + i * LD_STEP * D : vbase + ld_c8;
            }
            cp_async16(dst + i * LD_STEP * (D + 8) * 2, ksrc, live);
            cp_async16(dst + KV_BYTES + i * LD_STEP * (D + 8) * 2, vsrc, live);
        }
        asm volatile("cp.async.commit_group;");
    };
    if (kbeg < kend) load_tile(kbeg, 0);

    /* This thread's four rows: m tile mt, half hh -> v = wv + 16 mt + 8 hh + g.
     * Rows past the end read zeros, are fully masked and are not stored.
     * Their positions are recomputed where a tile needs a mask (the
     * diagonal and window edges), which saves registers. */
    auto row_pos = [&](int mt, int hh) {
        int v = wv + mt * 16 + hh * 8 + g;
        return v < V ? pos0 + v / G : -1;
    };
    uint32_t qf[2][QS ? 1 : D / 16][4];
    if constexpr (QS) {
        /* the group's 32 rows, split between its warps, 16 bytes per lane
         * and step */
        for (int c = kq * 32 + lane; c < 32 * D / 8; c += 32 * KSPLIT) {
            int r = c / (D / 8), c8 = (c % (D / 8)) * 8, v = wv + r;
            uint4 x = make_uint4(0u, 0u, 0u, 0u);
            if (v < V) {
                int t = v / G;
                x = *(const uint4 *)(q + ((size_t)t * hq + hk * G + (v - t * G)) * D + c8);
            }
            *(uint4 *)&sm.q[rg * 32 + r][c8] = x;
        }
        __syncthreads();
    } else {
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            const uint16_t *qr[2];
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                int v = wv + mt * 16 + hh * 8 + g;
                int t = v < V ? v / G : 0;
                qr[hh] = v < V ? q + ((size_t)t * hq + hk * G + (v - t * G)) * D : nullptr;
            }
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                int c = kk * 16 + 2 * t4;
                qf[mt][kk][0] = qr[0] ? *(const uint32_t *)(qr[0] + c) : 0u;
                qf[mt][kk][1] = qr[1] ? *(const uint32_t *)(qr[1] + c) : 0u;
                qf[mt][kk][2] = qr[0] ? *(const uint32_t *)(qr[0] + c + 8) : 0u;
                qf[mt][kk][3] = qr[1] ? *(const uint32_t *)(qr[1] + c + 8) : 0u;
            }
        }
    }
    float o[2][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int i = 0; i < D / 8; i++) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
    /* running max (already scaled by scale_log2) and sum per row */
    float m[2][2] = {{-INFINITY, -INFINITY}, {-INFINITY, -INFINITY}};
    float l[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
    /* the positions this warp's valid rows cover; none -> every tile skips */
    const int wq_lo = wv < V ? pos0 + wv / G : 0;
    const int wq_hi = wv < V ? pos0 + (min(V, wv + 32) - 1) / G : -1;
    const int lm_i = lane >> 3, lm_r = lane & 7;
    /* ldmatrix addresses: a per-lane byte offset plus compile-time steps.
     * K (and Q): matrices (key octet, 8-column half); V: (key half, d octet).
     * This warp's keys of a tile start at row kq * KS. */
    constexpr int RB = (D + 8) * 2; /* bytes per shared row */
    const uint32_t k_lane =
        (kq * KS + (lm_i >> 1) * 8 + lm_r) * RB + (lm_i & 1) * 16;
    const uint32_t v_lane = (kq * KS + (lm_i & 1) * 8 + lm_r) * RB + (lm_i >> 1) * 16;
    const uint32_t q_lane =
        smem_addr(&sm.q[0][0]) + (rg * 32 + (lm_i & 1) * 8 + lm_r) * RB + (lm_i >> 1) * 16;

    int buf = 0;
#pragma unroll 1
    for (int kt = kbeg; kt < kend; kt += FA_BK, buf ^= 1) {
        asm volatile("cp.async.wait_group 0;");
        /* tile kt is visible to all, and every warp is done with the other
         * buffer (used by the previous tile), which the next load refills */
        __syncthreads();
        if (kt + FA_BK < kend) load_tile(kt + FA_BK, buf ^ 1);
        const int k0 = kt + kq * KS; /* this warp's first key */
        bool skip = k0 > wq_hi || (window > 0 && k0 + KS - 1 <= wq_lo - window);
        if (skip) continue;
        const bool full = k0 + KS - 1 <= wq_lo && (window <= 0 || k0 > wq_hi - window);
        const uint32_t kb = smem_addr(&sm.k[buf][0][0]) + k_lane;
        const uint32_t vb = smem_addr(&sm.v[buf][0][0]) + v_lane;
        float s[2][KS / 8][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int nt = 0; nt < KS / 8; nt++)
                s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
        if constexpr (QS) {
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                /* A fragments: matrices (rows 0-7, 8-15) x (cols 0-7, 8-15) */
#pragma unroll
                for (int mt = 0; mt < 2; mt++)
                    ldsm_x4(q_lane + mt * 16 * RB + kk * 32, qf[mt][0][0], qf[mt][0][1],
                            qf[mt][0][2], qf[mt][0][3]);
#pragma unroll
                for (int nt = 0; nt < KS / 8; nt += 2) {
                    uint32_t b0, b1, b2, b3;
                    ldsm_x4(kb + nt * 8 * RB + kk * 32, b0, b1, b2, b3);
#pragma unroll
                    for (int mt = 0; mt < 2; mt++) {
                        mma_bf16(s[mt][nt], qf[mt][0], b0, b1);
                        mma_bf16(s[mt][nt + 1], qf[mt][0], b2, b3);
                    }
                }
            }
        } else {
#pragma unroll
            for (int nt = 0; nt < KS / 8; nt += 2) {
#pragma unroll
                for (int kk = 0; kk < D / 16; kk++) {
                    uint32_t b0, b1, b2, b3;
                    ldsm_x4(kb + nt * 8 * RB + kk * 32, b0, b1, b2, b3);
#pragma unroll
                    for (int mt = 0; mt < 2; mt++) {
                        mma_bf16(s[mt][nt], qf[mt][kk], b0, b1);
                        mma_bf16(s[mt][nt + 1], qf[mt][kk], b2, b3);
                    }
                }
            }
        }
        if constexpr (SC) {
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int nt = 0; nt < KS / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        s[mt][nt][e] = cap_out * tanhf(s[mt][nt][e] * cap_in);
        }
        if (!full) {
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    const int qp = row_pos(mt, hh);
#pragma unroll
                    for (int nt = 0; nt < KS / 8; nt++)
#pragma unroll
                        for (int e = 2 * hh; e < 2 * hh + 2; e++) {
                            int key = k0 + nt * 8 + 2 * t4 + (e & 1);
                            bool ok = key <= qp && (window <= 0 || key > qp - window);
                            if (!ok) s[mt][nt][e] = -INFINITY;
                        }
                }
        }
        float alpha[2][2];
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                float mx = -INFINITY;
#pragma unroll
                for (int nt = 0; nt < KS / 8; nt++)
                    mx = fmaxf(mx, fmaxf(s[mt][nt][2 * hh], s[mt][nt][2 * hh + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                /* the scale is positive: the max of scaled scores is the
                 * scaled max, and one fma per score does scale and shift */
                float mnew = fmaxf(m[mt][hh], mx * scale_log2);
                float muse = mnew == -INFINITY ? 0.f : mnew;
                alpha[mt][hh] = fast_exp2(m[mt][hh] - muse);
                float sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < KS / 8; nt++) {
                    s[mt][nt][2 * hh] = fast_exp2(fmaf(s[mt][nt][2 * hh], scale_log2, -muse));
                    s[mt][nt][2 * hh + 1] =
                        fast_exp2(fmaf(s[mt][nt][2 * hh + 1], scale_log2, -muse));
                    sum += s[mt][nt][2 * hh] + s[mt][nt][2 * hh + 1];
                }
                l[mt][hh] = l[mt][hh] * alpha[mt][hh] + sum;
                m[mt][hh] = mnew;
            }
        /* once the running maxima settle, most tiles need no rescale */
        bool grew = alpha[0][0] != 1.f || alpha[0][1] != 1.f || alpha[1][0] != 1.f ||
                    alpha[1][1] != 1.f;
        if (__any_sync(0xffffffffu, grew)) {
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int dt = 0; dt < D / 8; dt++) {
                    o[mt][dt][0] *= alpha[mt][0];
                    o[mt][dt][1] *= alpha[mt][0];
                    o[mt][dt][2] *= alpha[mt][1];
                    o[mt][dt][3] *= alpha[mt][1];
                }
        }
        /* O += P V, P as A fragments (two key octets per 16-key step) */
#pragma unroll
        for (int kk = 0; kk < KS / 16; kk++) {
            uint32_t a[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                a[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                a[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                a[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                a[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dt = 0; dt < D / 8; dt += 2) {
                uint32_t b0, b1, b2, b3;
                ldsm_x4_t(vb + kk * 16 * RB + dt * 16, b0, b1, b2, b3);
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    mma_bf16(o[mt][dt], a[mt], b0, b1);
                    mma_bf16(o[mt][dt + 1], a[mt], b2, b3);
                }
            }
        }
    }

    /* Merge the key slices of each row group, halving their number per
     * round: the upper warps hand O, m and l over through shared memory
     * (over the K/V buffers, free once every warp is past the loop), laid
     * out value-major so that the lanes of a warp hit distinct banks; the
     * lower ones fold them in. */
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            l[mt][hh] += __shfl_xor_sync(0xffffffffu, l[mt][hh], 1);
            l[mt][hh] += __shfl_xor_sync(0xffffffffu, l[mt][hh], 2);
        }
    constexpr int OV = 2 * (D / 8) * 4; /* O values per thread; m at OV, l at OV + 4 */
#pragma unroll
    for (int half = KSPLIT / 2; half >= 1; half /= 2) {
        __syncthreads(); /* shared memory free: past the loop, or the last round read */
        /* warps [half, 2 half) hand over to warps [0, half); value i of slot
         * sl at xch[(sl * FA_XCH(D) + i) * BQ] */
        float *xch = (float *)fa_raw + ((kq % half) * FA_XCH(D)) * BQ + rg * 32 + lane;
        if (kq >= half && kq < 2 * half) {
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int dt = 0; dt < D / 8; dt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        xch[((mt * (D / 8) + dt) * 4 + e) * BQ] = o[mt][dt][e];
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    xch[(OV + mt * 2 + hh) * BQ] = m[mt][hh];
                    xch[(OV + 4 + mt * 2 + hh) * BQ] = l[mt][hh];
                }
        }
        __syncthreads();
        if (kq >= half) continue; /* no return: every warp meets each barrier */
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                const float m2 = xch[(OV + mt * 2 + hh) * BQ];
                const float l2 = xch[(OV + 4 + mt * 2 + hh) * BQ];
                const float mm = fmaxf(m[mt][hh], m2);
                const float muse = mm == -INFINITY ? 0.f : mm;
                const float a1 = fast_exp2(m[mt][hh] - muse), a2 = fast_exp2(m2 - muse);
                l[mt][hh] = l[mt][hh] * a1 + l2 * a2;
                m[mt][hh] = mm;
#pragma unroll
                for (int dt = 0; dt < D / 8; dt++)
#pragma unroll
                    for (int e = 2 * hh; e < 2 * hh + 2; e++)
                        o[mt][dt][e] =
                            o[mt][dt][e] * a1 + xch[((mt * (D / 8) + dt) * 4 + e) * BQ] * a2;
            }
    }
    /* warp kq == 0 of each group holds the whole rows */
    if (kq != 0) return;
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            int v = wv + mt * 16 + hh * 8 + g;
            if (v >= V) continue;
            int t = v / G;
            const float sum = l[mt][hh], inv = sum > 0.f ? 1.f / sum : 0.f;
            uint16_t *orow = out + ((size_t)t * hq + hk * G + (v - t * G)) * D;
#pragma unroll
            for (int dt = 0; dt < D / 8; dt++)
                *(uint32_t *)(orow + dt * 8 + 2 * t4) =
                    pack_bf16(o[mt][dt][2 * hh] * inv, o[mt][dt][2 * hh + 1] * inv);
        }
}

/* The scores' scale and softcapping, as the kernels take them. */
typedef struct {
    float sl2, cap_in, cap_out;
} fa_scale;

template <int D, bool SC>
static cudaError_t launch_prefill(dim3 grid, cudaStream_t st, const uint16_t *q,
                                  const uint16_t *k, const uint16_t *v, uint16_t *out, int n,
                                  int hq, int hkv, int cap, const int32_t *d_state, int window,
                                  fa_scale sc) {
    static bool raised = false; /* the attribute is per function, once */
    size_t smem = sizeof(fa_smem<D>);
    if (!raised && smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(k_flash_prefill<D, SC>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        raised = true;
    }
    k_flash_prefill<D, SC><<<grid, 128, smem, st>>>(q, k, v, out, n, hq, hkv, cap, d_state,
                                                   window, sc.sl2, sc.cap_in, sc.cap_out);
    return cudaGetLastError();
}

/* The packed kernel: RG row groups (RG * 32 virtual rows), KSPLIT warps
 * per group. */
template <int D, int RG, int KSPLIT, bool QS, bool SC, bool PG>
static cudaError_t launch_prefill_gqa(cudaStream_t st, const uint16_t *q, const uint16_t *k,
                                      const uint16_t *v, uint16_t *out, int n, int hq, int hkv,
                                      int cap, const int32_t *d_state, int window, fa_scale sc,
                                      fa_paged pg) {
    constexpr int BQ = RG * 32;
    long long rows = (long long)n * (hq / hkv), tiles = (rows + BQ - 1) / BQ;
    if (tiles > 65535 || rows > INT32_MAX) return cudaErrorInvalidValue;
    const size_t smem = fa_gqa_smem<D, RG, KSPLIT, QS>();
    static bool raised = false; /* the attribute is per function, once */
    if (!raised && smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(k_flash_prefill_gqa<D, RG, KSPLIT, QS, SC, PG>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        raised = true;
    }
    k_flash_prefill_gqa<D, RG, KSPLIT, QS, SC, PG><<<dim3(hkv, (unsigned)tiles),
                                                      RG * 32 * KSPLIT, smem, st>>>(
        q, k, v, out, n, hq, hkv, cap, d_state, window, sc.sl2, sc.cap_in, sc.cap_out, pg);
    return cudaGetLastError();
}

/* Which kernel: the head-packed one for every D unless
 * LMC_CUDA_FA_PACKED=0 selects the one-head kernel (comparisons and
 * tests; read per call, one lookup per layer and prefill). */
static int use_packed(int d) {
    (void)d;
    const char *e = getenv("LMC_CUDA_FA_PACKED");
    return !(e && e[0] == '0');
}

/* Packed block shapes: rows x key slices (warps = rows / 32 x slices). */
enum { FA_64x2, FA_128x2 };

/* Measured on H100 at 2,048 tokens (whole prefill, ms; one-head kernel /
 * 64x2 / 64x4 / 128x2): Qwen2.5-0.5B 5.08 / 4.64 / 5.15 / 4.70,
 * Llama-3.2-1B 8.07 / 8.02 / 8.94 / 8.18, Llama-3.1-8B 52.0 / 51.6 / 53.4 /
 * 48.6 (64x4, never ahead, was dropped). 128 rows halve the K/V bytes
 * copied to shared memory per row but give half as many blocks, so they
 * pay only for d = 128 with several blocks per SM. LMC_CUDA_FA_TILE=64x2
 * or 128x2 forces a shape (comparisons and tests). */
static int packed_shape(int d, int n, int hq, int hkv) {
    const char *e = getenv("LMC_CUDA_FA_TILE");
    if (e && strcmp(e, "64x2") == 0) return FA_64x2;
    if (e && strcmp(e, "128x2") == 0) return FA_128x2;
    if (d <= 64) return FA_64x2;
    int dev = 0, sms = 132;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        sms = 132;
    long long blocks128 = (long long)hkv * (((long long)n * (hq / hkv) + 127) / 128);
    return blocks128 >= 2LL * sms ? FA_128x2 : FA_64x2;
}

template <int D, bool SC, bool PG = false>
static cudaError_t launch_packed(int shape, cudaStream_t st, const uint16_t *q,
                                 const uint16_t *k, const uint16_t *v, uint16_t *out, int n,
                                 int hq, int hkv, int cap, const int32_t *d_state, int window,
                                 fa_scale sc, fa_paged pg = fa_paged{nullptr, 0}) {
    constexpr bool QS = D > 64;
    switch (shape) {
    case FA_128x2:
        return launch_prefill_gqa<D, 4, 2, QS, SC, PG>(st, q, k, v, out, n, hq, hkv, cap,
                                                       d_state, window, sc, pg);
    default:
        return launch_prefill_gqa<D, 2, 2, QS, SC, PG>(st, q, k, v, out, n, hq, hkv, cap,
                                                       d_state, window, sc, pg);
    }
}

extern "C" int lmc_cu_attn_prefill_supported(int d) {
    return d == 16 || d == 32 || d == 64 || d == 128;
}

/* The kernel for d and the packing, with (SC) or without softcapping. */
template <bool SC>
static int attn_prefill(const uint16_t *q, const uint16_t *k_cache, const uint16_t *v_cache,
                        uint16_t *out, int n, int hq, int hkv, int d, int cap,
                        const int32_t *d_state, int window, fa_scale sc, cudaStream_t st) {
    if (use_packed(d)) {
        const int shape = packed_shape(d, n, hq, hkv);
        switch (d) {
        case 16:
            return launch_packed<16, SC>(shape, st, q, k_cache, v_cache, out, n, hq, hkv, cap,
                                         d_state, window, sc);
        case 32:
            return launch_packed<32, SC>(shape, st, q, k_cache, v_cache, out, n, hq, hkv, cap,
                                         d_state, window, sc);
        case 64:
            return launch_packed<64, SC>(shape, st, q, k_cache, v_cache, out, n, hq, hkv, cap,
                                         d_state, window, sc);
        case 128:
            return launch_packed<128, SC>(shape, st, q, k_cache, v_cache, out, n, hq, hkv, cap,
                                          d_state, window, sc);
        default:
            return cudaErrorInvalidValue;
        }
    }
    dim3 grid(hq, (n + FA_BQ - 1) / FA_BQ);
    switch (d) {
    case 16:
        return launch_prefill<16, SC>(grid, st, q, k_cache, v_cache, out, n, hq, hkv, cap,
                                      d_state, window, sc);
    case 32:
        return launch_prefill<32, SC>(grid, st, q, k_cache, v_cache, out, n, hq, hkv, cap,
                                      d_state, window, sc);
    case 64:
        return launch_prefill<64, SC>(grid, st, q, k_cache, v_cache, out, n, hq, hkv, cap,
                                      d_state, window, sc);
    case 128:
        return launch_prefill<128, SC>(grid, st, q, k_cache, v_cache, out, n, hq, hkv, cap,
                                       d_state, window, sc);
    default:
        return cudaErrorInvalidValue;
    }
}

/* The kernels' scale: scores times sl2 in log2 units, or with softcap > 0
 * cap * tanh(s * scale / cap) (cap_in, cap_out; sl2 1). */
static fa_scale fa_scale_of(int d, float scale, float softcap) {
    fa_scale sc;
    sc.sl2 = scale != 0.f ? LOG2E * scale : LOG2E / sqrtf((float)d);
    sc.cap_in = sc.cap_out = 0.f;
    if (softcap > 0.f) {
        sc.cap_in = (scale != 0.f ? scale : 1.f / sqrtf((float)d)) / softcap;
        sc.cap_out = softcap * LOG2E;
        sc.sl2 = 1.f;
    }
    return sc;
}

template <bool SC>
static int attn_prefill_paged(const uint16_t *q, const uint16_t *k_pool, const uint16_t *v_pool,
                              uint16_t *out, int n, int hq, int hkv, int d,
                              const int32_t *d_pos0, fa_paged pg, int window, fa_scale sc,
                              cudaStream_t st) {
    const int shape = packed_shape(d, n, hq, hkv);
    switch (d) {
    case 64:
        return launch_packed<64, SC, true>(shape, st, q, k_pool, v_pool, out, n, hq, hkv, 0,
                                           d_pos0, window, sc, pg);
    case 128:
        return launch_packed<128, SC, true>(shape, st, q, k_pool, v_pool, out, n, hq, hkv, 0,
                                            d_pos0, window, sc, pg);
    default:
        return cudaErrorInvalidValue;
    }
}

extern "C" int lmc_cu_attn_prefill_paged_supported(int d) { return d == 64 || d == 128; }

extern "C" int lmc_cu_attn_prefill_paged(const uint16_t *q, const uint16_t *k_pool,
                                         const uint16_t *v_pool, uint16_t *out, int n, int hq,
                                         int hkv, int d, const int32_t *d_pos0,
                                         const int32_t *table, int block_tokens, int window,
                                         float scale, float softcap, lmc_cu_stream s) {
    if (n <= 0 || hkv <= 0 || hq % hkv != 0 || block_tokens <= 0 || !table)
        return cudaErrorInvalidValue;
    const fa_scale sc = fa_scale_of(d, scale, softcap);
    const fa_paged pg = {table, block_tokens};
    return softcap > 0.f ? attn_prefill_paged<true>(q, k_pool, v_pool, out, n, hq, hkv, d,
                                                     d_pos0, pg, window, sc, (cudaStream_t)s)
                         : attn_prefill_paged<false>(q, k_pool, v_pool, out, n, hq, hkv, d,
                                                      d_pos0, pg, window, sc, (cudaStream_t)s);
}

extern "C" int lmc_cu_attn_prefill(const uint16_t *q, const uint16_t *k_cache,
                                   const uint16_t *v_cache, uint16_t *out, int n, int hq,
                                   int hkv, int d, int cap, const int32_t *d_state, int window,
                                   float scale, float softcap, lmc_cu_stream s) {
    if (n <= 0 || hkv <= 0 || hq % hkv != 0) return cudaErrorInvalidValue;
    const fa_scale sc = fa_scale_of(d, scale, softcap);
    if (softcap > 0.f) { /* cap * tanh(s * scale / cap), in log2 units */
        return attn_prefill<true>(q, k_cache, v_cache, out, n, hq, hkv, d, cap, d_state, window,
                                  sc, (cudaStream_t)s);
    }
    return attn_prefill<false>(q, k_cache, v_cache, out, n, hq, hkv, d, cap, d_state, window, sc,
                               (cudaStream_t)s);
}
