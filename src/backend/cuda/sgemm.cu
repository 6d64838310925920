/* Skinny GEMM for batched decode: Y[m, N] = X[m, K] . W[N, K]^T with
 * 2 <= m <= 128 rows, bf16 operands, f32 accumulation. At these row
 * counts the product is bound by reading W once, and a general GEMM
 * library streams W well below the copy bandwidth (its tiles are shaped
 * for many rows). Here the weight is the mma's A operand, so a warp owns
 * 16 weight rows and every batch row is an n8 tile of the B operand:
 *
 * - each lane streams W with 16-byte loads that bypass L1, one 128-column
 *   chunk ahead (8 loads per lane in flight), like the decode GEMV;
 * - a 16-byte load holds 8 consecutive k of one row, and the mma's k
 *   order is permuted so that those 8 values are exactly what the lane
 *   needs for two m16n8k16 steps (the same permutation for the X side:
 *   a dot product does not care about the order of k);
 * - X is staged in shared memory per chunk (cp.async, double-buffered)
 *   and shared by the 8 warps (128 weight rows) of a block;
 * - K is split over S blocks of a thread-block cluster when N alone gives
 *   too few blocks; their partial tiles are summed through distributed
 *   shared memory in a fixed order, so a shape always gives the same bits.
 *
 * Output: bf16, f32, or f32 accumulated into Y (the residual stream). */
#include <cooperative_groups.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda_bf16.cuh"
#include "cuda_kernels.h"

namespace cg = cooperative_groups;

#define SG_WARPS 8
#define SG_THREADS (SG_WARPS * 32)
#define SG_ROWS (SG_WARPS * 16) /* weight rows per block */
#define SG_KC 128               /* columns per chunk */
#define SG_XLD (SG_KC / 8 + 1)  /* a staged X row, in uint4 (16 bytes of padding) */

static __device__ __forceinline__ uint4 sg_ld_stream(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

static __device__ __forceinline__ void sg_mma(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                              uint32_t a3, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ void sg_cp16(void *smem, const void *gmem, bool valid) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    const int n = valid ? 16 : 0; /* 0: the 16 bytes are zero-filled */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(n));
}
static __device__ __forceinline__ void sg_commit(void) { asm volatile("cp.async.commit_group;"); }
template <int N> static __device__ __forceinline__ void sg_wait(void) {
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

/* One output element of row m, column n. */
static __device__ __forceinline__ void sg_store(void *y, int out_mode, int m, int n, int N, float v) {
    const size_t i = (size_t)m * N + n;
    if (out_mode == LMC_GEMV_OUT_BF16)
        ((uint16_t *)y)[i] = f2bf(v);
    else if (out_mode == LMC_GEMV_OUT_F32)
        ((float *)y)[i] = v;
    else
        ((float *)y)[i] += v;
}

/* MT: n8 tiles of batch rows (m <= 8 * MT). grid: (S, ceil(N / 128)),
 * cluster (S, 1, 1); each block takes `cps` chunks of K starting at
 * blockIdx.x * cps. K is a multiple of SG_KC. */
template <int MT>
__global__ void __launch_bounds__(SG_THREADS, 1)
    k_sgemm(const uint16_t *__restrict__ w, const uint16_t *__restrict__ x, void *y, int M,
            int N, int K, int cps, int out_mode) {
    extern __shared__ uint4 sg_smem[];
    uint4 *xs0 = sg_smem, *xs1 = sg_smem + MT * 8 * SG_XLD;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int S = gridDim.x, rank = blockIdx.x;
    const int nch = K / SG_KC;
    const int c0 = rank * cps, c1 = min(nch, c0 + cps);
    const int row0 = blockIdx.y * SG_ROWS + warp * 16;
    const uint4 *wa = (const uint4 *)(w + (size_t)min(row0 + g, N - 1) * K) + t;
    const uint4 *wb = (const uint4 *)(w + (size_t)min(row0 + g + 8, N - 1) * K) + t;

    float acc[MT][4];
#pragma unroll
    for (int j = 0; j < MT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;

    /* chunk c of W (this lane's two rows, 4 steps of 32 columns) */
    auto load_w = [&](int c, uint4 (&r)[8]) {
#pragma unroll
        for (int ks = 0; ks < 4; ks++) {
            r[2 * ks] = sg_ld_stream(wa + c * (SG_KC / 8) + ks * 4);
            r[2 * ks + 1] = sg_ld_stream(wb + c * (SG_KC / 8) + ks * 4);
        }
    };
    /* chunk c of X into a staging buffer (rows >= M zero-filled) */
    auto load_x = [&](int c, uint4 *xs) {
        for (int i = tid; i < MT * 8 * (SG_KC / 8); i += SG_THREADS) {
            const int r = i / (SG_KC / 8), q = i % (SG_KC / 8);
            const bool ok = r < M;
            const uint16_t *src = x + (size_t)(ok ? r : 0) * K + (size_t)c * SG_KC + q * 8;
            sg_cp16(xs + r * SG_XLD + q, src, ok);
        }
        sg_commit();
    };
    auto compute = [&](const uint4 (&r)[8], const uint4 *xs) {
#pragma unroll
        for (int ks = 0; ks < 4; ks++) {
            const uint4 a = r[2 * ks], b = r[2 * ks + 1];
#pragma unroll
            for (int j = 0; j < MT; j++) {
                const uint4 xb = xs[(j * 8 + g) * SG_XLD + ks * 4 + t];
                sg_mma(acc[j], a.x, b.x, a.y, b.y, xb.x, xb.y);
                sg_mma(acc[j], a.z, b.z, a.w, b.w, xb.z, xb.w);
            }
        }
    };

    uint4 ra[8], rb[8];
    if (c0 < c1) {
        load_x(c0, xs0);
        load_w(c0, ra);
    }
    if (c0 + 1 < c1) {
        load_x(c0 + 1, xs1);
        load_w(c0 + 1, rb);
    }
    for (int c = c0; c < c1; c += 2) {
        if (c + 1 < c1)
            sg_wait<1>();
        else
            sg_wait<0>();
        __syncthreads();
        compute(ra, xs0);
        __syncthreads(); /* every warp is done with xs0 */
        if (c + 2 < c1) {
            load_x(c + 2, xs0);
            load_w(c + 2, ra);
        }
        if (c + 1 < c1) {
            if (c + 2 < c1)
                sg_wait<1>();
            else
                sg_wait<0>();
            __syncthreads();
            compute(rb, xs1);
            __syncthreads();
            if (c + 3 < c1) {
                load_x(c + 3, xs1);
                load_w(c + 3, rb);
            }
        }
    }

    /* acc[j]: c0/c1 at weight row g, batch rows 8j + 2t, +1; c2/c3 at row g + 8 */
    if (S == 1) {
#pragma unroll
        for (int j = 0; j < MT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int n = row0 + g + (e >> 1) * 8, m = j * 8 + 2 * t + (e & 1);
                if (n < N && m < M) sg_store(y, out_mode, m, n, N, acc[j][e]);
            }
        return;
    }
    /* Partial tiles [128 weight rows][MT * 8 + 1] in shared memory (the
     * staging buffers are free: the loop ended on a barrier), summed over
     * the cluster's ranks in rank order; rank r writes rows r*128/S.. */
    const int LD = MT * 8 + 1;
    float *part = (float *)sg_smem;
    __syncthreads();
#pragma unroll
    for (int j = 0; j < MT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            part[(warp * 16 + g + (e >> 1) * 8) * LD + j * 8 + 2 * t + (e & 1)] = acc[j][e];
    cg::cluster_group cl = cg::this_cluster();
    cl.sync();
    const int rp = SG_ROWS / S, mrows = min(M, MT * 8);
    for (int i = tid; i < rp * mrows; i += SG_THREADS) {
        const int rr = rank * rp + i % rp, m = i / rp;
        const int n = blockIdx.y * SG_ROWS + rr;
        if (n >= N) continue;
        float s = 0.f;
        for (int q = 0; q < S; q++) s += cl.map_shared_rank(part, q)[rr * LD + m];
        sg_store(y, out_mode, m, n, N, s);
    }
    cl.sync(); /* the others' partial tiles stay alive until every rank has read them */
}

template <int MT> static size_t sg_smem_bytes(void) {
    const size_t stage = 2 * (size_t)MT * 8 * SG_XLD * 16;
    const size_t part = (size_t)SG_ROWS * (MT * 8 + 1) * 4;
    return stage > part ? stage : part;
}

template <int MT>
static cudaError_t sg_launch(const uint16_t *w, const uint16_t *x, void *y, int m, int n, int k,
                             int out_mode, int num_sms, cudaStream_t s) {
    static bool ready = false; /* the attribute is per kernel and process; setting it twice is harmless */
    const size_t smem = sg_smem_bytes<MT>();
    if (!ready) {
        cudaError_t e = cudaFuncSetAttribute(k_sgemm<MT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)smem);
        if (e != cudaSuccess) return e;
        ready = true;
    }
    const int tiles = (n + SG_ROWS - 1) / SG_ROWS, nch = k / SG_KC;
    /* The fewest splits of K (1, 2, 4, 8) that fill the machine: one block
     * per multiprocessor, blocks of a wave all busy (at least 85% of the
     * last wave), and at least two chunks per block. */
    int S = 1;
    for (int cand = 1; cand <= 8; cand *= 2) {
        if (cand > 1 && nch / cand < 2) break;
        const int blocks = tiles * cand, waves = (blocks + num_sms - 1) / num_sms;
        S = cand;
        if ((double)blocks / ((double)waves * num_sms) >= 0.85) break;
    }
    const int cps = (nch + S - 1) / S;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(S, tiles);
    cfg.blockDim = dim3(SG_THREADS);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = S;
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, k_sgemm<MT>, w, x, y, m, n, k, cps, out_mode);
}

extern "C" int lmc_cu_sgemm_fits(int m, int n, int k) {
    return m >= 1 && m <= 128 && n >= 1 && k >= SG_KC && k % SG_KC == 0;
}

extern "C" int lmc_cu_sgemm(const uint16_t *w, const uint16_t *x, void *y, int m, int n, int k,
                            int out_mode, int num_sms, lmc_cu_stream s) {
    if (!lmc_cu_sgemm_fits(m, n, k)) return (int)cudaErrorInvalidValue;
    cudaStream_t st = (cudaStream_t)s;
    const int mt = (m + 7) / 8;
    cudaError_t e;
    if (mt <= 1)
        e = sg_launch<1>(w, x, y, m, n, k, out_mode, num_sms, st);
    else if (mt <= 2)
        e = sg_launch<2>(w, x, y, m, n, k, out_mode, num_sms, st);
    else if (mt <= 4)
        e = sg_launch<4>(w, x, y, m, n, k, out_mode, num_sms, st);
    else if (mt <= 6)
        e = sg_launch<6>(w, x, y, m, n, k, out_mode, num_sms, st);
    else if (mt <= 8)
        e = sg_launch<8>(w, x, y, m, n, k, out_mode, num_sms, st);
    else if (mt <= 12)
        e = sg_launch<12>(w, x, y, m, n, k, out_mode, num_sms, st);
    else
        e = sg_launch<16>(w, x, y, m, n, k, out_mode, num_sms, st);
    return (int)e;
}
