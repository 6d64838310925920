/* Prefill attention over the KV cache: a tensor-core flash-attention
 * kernel for several new tokens (attn_decode.cu has the single-token one).
 * Causal, GQA-aware (query head h reads KV head h / (Hq / Hkv)), honours a
 * sliding window. Caches are [Hkv, cap, D]
 * bf16; the number of cached tokens before this step is d_state[0]. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "cuda_kernels.h"
#include "cuda_pdl.cuh"

#define LOG2E 1.4426950408889634f

static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
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

template <int D>
__global__ void __launch_bounds__(128)
    k_flash_prefill(const uint16_t *__restrict__ q, const uint16_t *__restrict__ kc,
                    const uint16_t *__restrict__ vc, uint16_t *__restrict__ out, int n, int hq,
                    int hkv, int cap, const int32_t *d_state, int window, float scale_log2) {
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

template <int D>
static cudaError_t launch_prefill(dim3 grid, cudaStream_t st, const uint16_t *q,
                                  const uint16_t *k, const uint16_t *v, uint16_t *out, int n,
                                  int hq, int hkv, int cap, const int32_t *d_state, int window,
                                  float sl2) {
    static bool raised = false; /* the attribute is per function, once */
    size_t smem = sizeof(fa_smem<D>);
    if (!raised && smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(k_flash_prefill<D>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        raised = true;
    }
    k_flash_prefill<D><<<grid, 128, smem, st>>>(q, k, v, out, n, hq, hkv, cap, d_state, window,
                                               sl2);
    return cudaGetLastError();
}

extern "C" int lmc_cu_attn_prefill_supported(int d) {
    return d == 16 || d == 32 || d == 64 || d == 128;
}

extern "C" int lmc_cu_attn_prefill(const uint16_t *q, const uint16_t *k_cache,
                                   const uint16_t *v_cache, uint16_t *out, int n, int hq,
                                   int hkv, int d, int cap, const int32_t *d_state, int window,
                                   lmc_cu_stream s) {
    dim3 grid(hq, (n + FA_BQ - 1) / FA_BQ);
    float sl2 = LOG2E / sqrtf((float)d);
    cudaStream_t st = (cudaStream_t)s;
    switch (d) {
    case 16:
        return launch_prefill<16>(grid, st, q, k_cache, v_cache, out, n, hq, hkv, cap, d_state,
                                  window, sl2);
    case 32:
        return launch_prefill<32>(grid, st, q, k_cache, v_cache, out, n, hq, hkv, cap, d_state,
                                  window, sl2);
    case 64:
        return launch_prefill<64>(grid, st, q, k_cache, v_cache, out, n, hq, hkv, cap, d_state,
                                  window, sl2);
    case 128:
        return launch_prefill<128>(grid, st, q, k_cache, v_cache, out, n, hq, hkv, cap,
                                   d_state, window, sl2);
    default:
        return cudaErrorInvalidValue;
    }
}
