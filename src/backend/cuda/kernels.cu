/* Element-wise and row-wise kernels of the llama-family forward pass. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "cuda_bf16.cuh"
#include "cuda_kernels.h"
#include "cuda_pdl.cuh"

typedef __nv_bfloat16 bf16;

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
                        float scale, int rnd, float *out) {
    int row = blockIdx.x;
    pdl_trigger();
    pdl_wait();
    int id = ids[row];
    id = id < 0 ? 0 : (id >= vocab ? vocab - 1 : id);
    const uint16_t *e = emb + (size_t)id * hidden;
    float *o = out + (size_t)row * hidden;
    if (scale == 0.f)
        for (int i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = bf2f(e[i]);
    else
        for (int i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = rbfc(bf2f(e[i]) * scale, rnd);
}

extern "C" int lmc_cu_embed(const uint16_t *emb, const int32_t *ids, int n, int hidden,
                            int vocab, float scale, int rnd, float *out, lmc_cu_stream s) {
    return (int)lmc_pdl_launch(k_embed, dim3(n), dim3(256), 0, (cudaStream_t)s, emb, ids, hidden,
                               vocab, scale, rnd, out);
}

/* -------------------------------------------------------------- rmsnorm */
/* Generic path: one block of 256 threads per row, any cols and alignment. */
__global__ void k_rmsnorm(const float *x, const uint16_t *w, int cols, float eps,
                          uint16_t *out, int offset, int rnd) {
    __shared__ float red[32];
    const float *xr = x + (size_t)blockIdx.x * cols;
    uint16_t *o = out + (size_t)blockIdx.x * cols;
    float ss = 0.f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, red);
    float r = rsqrtf(ss / (float)cols + eps);
    for (int i = threadIdx.x; i < cols; i += blockDim.x)
        o[i] = f2bf(rms_w(xr[i] * r, bf2f(w[i]), offset, rnd));
}

/* Vector path (cols % 4 == 0, x 16-byte and w/out 8-byte aligned): the row
 * is read once, as float4 with the matching weights as 8-byte vectors, into
 * registers, and leaves as 8-byte stores. Its sum of squares is formed
 * exactly as k_rmsnorm forms it, so both paths agree bit for bit: there
 * thread t of 256 chains the squares of elements t + 256 k (k = 0, 1, ...),
 * each warp adds its 32 chains in a butterfly, then the 8 warp sums are
 * added in order. Element e is step k = e / 256 of chain e % 256, so the
 * float4 at index q + 64 k holds step k of chains 4q..4q+3 ("quad" q). A
 * row takes G = 64 M / QS threads: with QS = 2 (G = 32) lane L holds quads
 * L and L + 32 whole; with QS = 1 quad q has the M lanes M q + h, lane h
 * holding steps [h KP, (h + 1) KP) and continuing the chain that lane
 * h - 1 hands it. RMS_THREADS / G rows per block. */
#define RMS_THREADS 256

template <int KP, int QS, int M>
__global__ void __launch_bounds__(RMS_THREADS)
    k_rmsnorm_vec(const float4 *__restrict__ x, const uint2 *__restrict__ w, int rows, int cols,
                  float eps, uint2 *__restrict__ out, int offset, int rnd) {
    constexpr int G = 64 * M / QS, RPB = RMS_THREADS / G;
    __shared__ float red[RPB * 8]; /* QS = 1: the rows' 8 warp sums each */
    const int n4 = cols >> 2, sub = threadIdx.x % G, grp = threadIdx.x / G;
    const int h = sub % M, q0 = sub / M; /* lane within the quad, first quad */
    const int row = blockIdx.x * RPB + grp;
    const bool live = row < rows;
    const size_t base = (size_t)row * n4;
    float4 v[QS][KP];
    uint2 wv[QS][KP];
#pragma unroll
    for (int qi = 0; qi < QS; qi++)
#pragma unroll
        for (int j = 0; j < KP; j++) {
            const int i = q0 + 32 * qi + 64 * (h * KP + j);
            if (live && i < n4) {
                v[qi][j] = x[base + i];
                wv[qi][j] = w[i];
            } else { /* zero squares leave the chains unchanged */
                v[qi][j] = make_float4(0.f, 0.f, 0.f, 0.f);
                wv[qi][j] = make_uint2(0u, 0u);
            }
        }
    float p[QS][4]; /* the chains of this lane's quads */
#pragma unroll
    for (int qi = 0; qi < QS; qi++)
#pragma unroll
        for (int c = 0; c < 4; c++) p[qi][c] = 0.f;
#pragma unroll
    for (int s = 0; s < M; s++) {
        if (s > 0) /* lane h = s takes over the chains of lane s - 1 */
#pragma unroll
            for (int qi = 0; qi < QS; qi++)
#pragma unroll
                for (int c = 0; c < 4; c++)
                    p[qi][c] = __shfl_up_sync(0xffffffffu, p[qi][c], 1);
        if (h == s)
#pragma unroll
            for (int qi = 0; qi < QS; qi++)
#pragma unroll
                for (int j = 0; j < KP; j++) {
                    const float4 a = v[qi][j];
                    p[qi][0] = __fmaf_rn(a.x, a.x, p[qi][0]);
                    p[qi][1] = __fmaf_rn(a.y, a.y, p[qi][1]);
                    p[qi][2] = __fmaf_rn(a.z, a.z, p[qi][2]);
                    p[qi][3] = __fmaf_rn(a.w, a.w, p[qi][3]);
                }
    }
    /* the butterfly of a warp of 32 chains 4q + c: its offsets 16, 8, 4
     * pair quads q ^ 4, q ^ 2, q ^ 1 (lanes M apart per quad), and 2, 1
     * pair the chains of one quad */
#pragma unroll
    for (int o = 4; o > 0; o >>= 1)
#pragma unroll
        for (int qi = 0; qi < QS; qi++)
#pragma unroll
            for (int c = 0; c < 4; c++)
                p[qi][c] += __shfl_xor_sync(0xffffffffu, p[qi][c], o * M);
    float ss = 0.f;
    if (QS == 2) { /* warp sum vw: quads 8 vw.., in lane 8 (vw % 4) */
#pragma unroll
        for (int vw = 0; vw < 8; vw++) {
            const float *pv = p[(vw >> 2) & (QS - 1)];
            ss += __shfl_sync(0xffffffffu, (pv[0] + pv[2]) + (pv[1] + pv[3]), (vw & 3) * 8);
        }
    } else {
        if (h == M - 1 && q0 % 8 == 0)
            red[grp * 8 + q0 / 8] = (p[0][0] + p[0][2]) + (p[0][1] + p[0][3]);
        __syncthreads();
#pragma unroll
        for (int vw = 0; vw < 8; vw++) ss += red[grp * 8 + vw];
    }
    const float r = rsqrtf(ss / (float)cols + eps);
#pragma unroll
    for (int qi = 0; qi < QS; qi++)
#pragma unroll
        for (int j = 0; j < KP; j++) {
            const int i = q0 + 32 * qi + 64 * (h * KP + j);
            if (live && i < n4) {
                const float4 a = v[qi][j];
                const uint2 g = wv[qi][j];
                const float o0 = rms_w(a.x * r, bf2f((uint16_t)g.x), offset, rnd);
                const float o1 = rms_w(a.y * r, bf2f((uint16_t)(g.x >> 16)), offset, rnd);
                const float o2 = rms_w(a.z * r, bf2f((uint16_t)g.y), offset, rnd);
                const float o3 = rms_w(a.w * r, bf2f((uint16_t)(g.y >> 16)), offset, rnd);
                out[base + i] = make_uint2(pack_bf2(o0, o1), pack_bf2(o2, o3));
            }
        }
}

template <int KP, int QS, int M>
static int rmsnorm_vec(const float *x, const uint16_t *w, int rows, int cols, float eps,
                       uint16_t *out, int offset, int rnd, cudaStream_t s) {
    constexpr int RPB = RMS_THREADS / (64 * M / QS);
    const unsigned blocks = (unsigned)((rows + RPB - 1) / RPB);
    k_rmsnorm_vec<KP, QS, M><<<blocks, RMS_THREADS, 0, s>>>(
        (const float4 *)x, (const uint2 *)w, rows, cols, eps, (uint2 *)out, offset, rnd);
    return launch_status();
}

extern "C" int lmc_cu_rmsnorm(const float *x, const uint16_t *w, int rows, int cols, float eps,
                              uint16_t *out, int offset, int rnd, lmc_cu_stream s) {
    cudaStream_t st = (cudaStream_t)s;
    const bool vec = rows > 0 && cols > 0 && cols % 4 == 0 && ((uintptr_t)x & 15) == 0 &&
                     ((uintptr_t)w & 7) == 0 && ((uintptr_t)out & 7) == 0;
    /* chain steps per lane x quads per lane x lanes per quad >= cols / 256 */
    if (vec && cols <= 256) return rmsnorm_vec<1, 2, 1>(x, w, rows, cols, eps, out, offset, rnd,
                                                       st);
    if (vec && cols <= 512) return rmsnorm_vec<2, 2, 1>(x, w, rows, cols, eps, out, offset, rnd,
                                                       st);
    if (vec && cols <= 1024) return rmsnorm_vec<4, 2, 1>(x, w, rows, cols, eps, out, offset, rnd,
                                                       st);
    if (vec && cols <= 2048) return rmsnorm_vec<8, 1, 1>(x, w, rows, cols, eps, out, offset, rnd,
                                                       st);
    if (vec && cols <= 4096) return rmsnorm_vec<8, 1, 2>(x, w, rows, cols, eps, out, offset, rnd,
                                                       st);
    if (vec && cols <= 8192) return rmsnorm_vec<8, 1, 4>(x, w, rows, cols, eps, out, offset, rnd,
                                                       st);
    if (vec && cols <= 16384) return rmsnorm_vec<16, 1, 4>(x, w, rows, cols, eps, out, offset, rnd,
                                                       st);
    k_rmsnorm<<<rows, RMS_THREADS, 0, st>>>(x, w, cols, eps, out, offset, rnd);
    return launch_status();
}

/* x[r, :] += norm(y[r, :]) * w: one block per row; y (a sublayer's f32
 * output) is first rounded as the reference's sublayer output is (rnd). */
__global__ void __launch_bounds__(RMS_THREADS)
    k_norm_add(const float *y, const uint16_t *w, int cols, float eps, float *x, int offset,
               int rnd) {
    __shared__ float red[32];
    const float *yr = y + (size_t)blockIdx.x * cols;
    float *xr = x + (size_t)blockIdx.x * cols;
    float ss = 0.f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        const float v = rbfc(yr[i], rnd);
        ss += v * v;
    }
    ss = block_sum(ss, red);
    const float r = rsqrtf(ss / (float)cols + eps);
    for (int i = threadIdx.x; i < cols; i += blockDim.x)
        xr[i] += rbfc(rms_w(rbfc(yr[i], rnd) * r, bf2f(w[i]), offset, rnd), rnd);
}

extern "C" int lmc_cu_norm_add(const float *y, const uint16_t *w, int rows, int cols, float eps,
                               float *x, int offset, int rnd, lmc_cu_stream s) {
    if (rows <= 0 || cols <= 0) return (int)cudaErrorInvalidValue;
    k_norm_add<<<rows, RMS_THREADS, 0, (cudaStream_t)s>>>(y, w, cols, eps, x, offset, rnd);
    return launch_status();
}

/* ------------------------------------------------------------- qkv post */
#define QKV_MAXD 256

/* Generic path (any supported d and alignment). One block per token: the
 * RoPE angles of its position are computed once into shared memory, then
 * each warp takes whole heads (q..., k..., v...), one head's values held in
 * registers across the lanes. */
#define QKV_THREADS 256

/* Token t of qkv at position pos; its key and value for KV head h go to
 * k_at + h * hstride and v_at + h * hstride (a contiguous cache: the
 * position's row of head 0 with stride cap * d; a paged one: the slot in
 * the position's block). Called by the whole block. The q/k norms take the
 * (1 + w) form with norm_offset; only the first rot values of a head
 * rotate (rot < d: a partial rotary embedding, the rest pass through). */
static __device__ void qkv_post_token(const uint16_t *qkv, int t, int pos, int hq, int hkv,
                                      int d, const uint16_t *bias, const uint16_t *q_norm,
                                      const uint16_t *k_norm, float eps, int norm_offset,
                                      const float *inv_freq, int rot, float rope_attn,
                                      uint16_t *q_out, uint16_t *k_at, uint16_t *v_at,
                                      size_t hstride, int rnd) {
    __shared__ float cs_tab[QKV_MAXD / 2], sn_tab[QKV_MAXD / 2];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int half = d / 2, per = d / 32; /* values per lane (d >= 32) or 1 */
    for (int i = threadIdx.x; i < rot / 2; i += QKV_THREADS) {
        float sn, cs;
        sincosf((float)pos * inv_freq[i], &sn, &cs);
        cs_tab[i] = __fmul_rn(cs, rope_attn);
        sn_tab[i] = __fmul_rn(sn, rope_attn);
    }
    __syncthreads();
    const int heads = hq + 2 * hkv;
    const uint16_t *row = qkv + (size_t)t * heads * d;
    for (int head = warp; head < heads; head += QKV_THREADS / 32) {
        /* lane owns elements lane + 32 j (j < per), or lane itself if d < 32 */
        float v[QKV_MAXD / 32];
        v[0] = 0.f;
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
            uint16_t *dst = v_at + (size_t)(head - hq - hkv) * hstride;
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
                if (j < cnt)
                    v[j] = rbfc(rms_w(v[j] * r, bf2f(nw[lane + 32 * j]), norm_offset, rnd), rnd);
        }
        uint16_t *dst = head < hq ? q_out + ((size_t)t * hq + head) * d
                                  : k_at + (size_t)(head - hq) * hstride;
        if (rot < d || (per & 1)) {
            /* partial (or an odd number of values per lane, d = 96):
             * element i < rot pairs with i +- rot / 2, which may live in
             * another lane, so the head goes through this warp's row of
             * shared memory */
            __shared__ float part[QKV_THREADS / 32][QKV_MAXD];
            float *row_w = part[warp];
            const int rh = rot / 2;
#pragma unroll
            for (int j = 0; j < QKV_MAXD / 32; j++)
                if (j < cnt) row_w[lane + 32 * j] = v[j];
            __syncwarp();
#pragma unroll
            for (int j = 0; j < QKV_MAXD / 32; j++) {
                if (j >= cnt) break;
                const int i = lane + 32 * j;
                float y = row_w[i];
                if (i < rh)
                    y = rope_lo(row_w[i], row_w[i + rh], cs_tab[i], sn_tab[i]);
                else if (i < rot)
                    y = rope_hi(row_w[i - rh], row_w[i], cs_tab[i - rh], sn_tab[i - rh]);
                dst[i] = f2bf(y);
            }
            __syncwarp(); /* the row is rewritten by this warp's next head */
            continue;
        }
        /* rotate-half: element i pairs with i +- half, which lives in the
         * same lane (half is a multiple of 32) or, for d <= 32, in lane
         * i +- half of the same register (half need not be a power of two) */
        if (per >= 2) {
            const int hp = per / 2; /* registers per half */
#pragma unroll
            for (int j = 0; j < QKV_MAXD / 64; j++) {
                if (j >= hp) break;
                const int i = lane + 32 * j;
                const float x1 = v[j], x2 = v[j + hp];
                dst[i] = f2bf(rope_lo(x1, x2, cs_tab[i], sn_tab[i]));
                dst[i + half] = f2bf(rope_hi(x1, x2, cs_tab[i], sn_tab[i]));
            }
        } else {
            const int src = lane < half ? lane + half : lane < d ? lane - half : lane;
            const float other = __shfl_sync(0xffffffffu, v[0], src);
            if (lane < d) {
                const int i = lane < half ? lane : lane - half;
                const float x1 = lane < half ? v[0] : other, x2 = lane < half ? other : v[0];
                dst[lane] = f2bf(lane < half ? rope_lo(x1, x2, cs_tab[i], sn_tab[i])
                                             : rope_hi(x1, x2, cs_tab[i], sn_tab[i]));
            }
        }
    }
}

__global__ void __launch_bounds__(QKV_THREADS)
    k_qkv_post(const uint16_t *qkv, int hq, int hkv, int d, const uint16_t *bias,
               const uint16_t *q_norm, const uint16_t *k_norm, float eps, int norm_offset,
               const float *inv_freq, int rot, float rope_attn, const int32_t *d_state,
               uint16_t *q_out, uint16_t *k_cache, uint16_t *v_cache, int cap, int rnd) {
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.x, pos = d_state[0] + t;
    qkv_post_token(qkv, t, pos, hq, hkv, d, bias, q_norm, k_norm, eps, norm_offset, inv_freq, rot,
                   rope_attn, q_out, k_cache + (size_t)pos * d, v_cache + (size_t)pos * d,
                   (size_t)cap * d, rnd);
}

/* Rows of a ragged batch: row t at position pos[t] of sequence seq[t],
 * whose block table is tables[seq * max_blocks ...]; the layer's pools are
 * [blocks][hkv][bt][d]. */
__global__ void __launch_bounds__(QKV_THREADS)
    k_paged_qkv_post(const uint16_t *qkv, int hq, int hkv, int d, const uint16_t *bias,
                     const uint16_t *q_norm, const uint16_t *k_norm, float eps, int norm_offset,
                     const float *inv_freq, int rot, float rope_attn, const int32_t *row_seq,
                     const int32_t *row_pos, const int32_t *tables, int max_blocks, int bt,
                     uint16_t *q_out, uint16_t *k_pool, uint16_t *v_pool, int rnd) {
    const int t = blockIdx.x, pos = row_pos[t];
    const size_t blk = (size_t)tables[(size_t)row_seq[t] * max_blocks + pos / bt];
    const size_t at = (blk * hkv * bt + pos % bt) * d;
    qkv_post_token(qkv, t, pos, hq, hkv, d, bias, q_norm, k_norm, eps, norm_offset, inv_freq, rot,
                   rope_attn, q_out, k_pool + at, v_pool + at, (size_t)bt * d, rnd);
}

extern "C" int lmc_cu_paged_qkv_post(const uint16_t *qkv, int n, int hq, int hkv, int d,
                                     const uint16_t *bias, const uint16_t *q_norm,
                                     const uint16_t *k_norm, float norm_eps, int norm_offset,
                                     const float *inv_freq, int rot, float rope_attn,
                                     const int32_t *row_seq, const int32_t *row_pos,
                                     const int32_t *tables, int max_blocks, int block_tokens,
                                     uint16_t *q_out, uint16_t *k_pool, uint16_t *v_pool, int rnd,
                                     lmc_cu_stream s) {
    if (d > QKV_MAXD || d % 2 || (d > 32 && d % 32) || rot < 2 || rot > d || rot % 2)
        return (int)cudaErrorInvalidValue;
    k_paged_qkv_post<<<n, QKV_THREADS, 0, (cudaStream_t)s>>>(
        qkv, hq, hkv, d, bias, q_norm, k_norm, norm_eps, norm_offset, inv_freq, rot, rope_attn,
        row_seq, row_pos, tables, max_blocks, block_tokens, q_out, k_pool, v_pool, rnd);
    return launch_status();
}

/* Vector path (d = 16, 32, 64, 128 or 256; every pointer 16-byte aligned).
 * A thread owns a "unit": 8 consecutive values at i0 of one head and their
 * rotate-half partners at i0 + d/2, so each head is d/16 adjacent threads
 * (a power of two, never straddling a warp) and its RMSNorm sum is formed
 * by shuffles within them. A block covers `tpb` tokens of `upb` units each (all
 * of a token's units, or for very wide rows one token's slice blockIdx.y).
 * Every activation load is one 16-byte access issued before the block
 * computes its tokens' RoPE table (dynamic shared memory, 2 * tpb * d / 2
 * floats), and every store is 16 bytes. */
#define QKV_VEC_THREADS 512
#define QKV_VEC_TOKENS 8 /* tokens per block at most */

static __device__ __forceinline__ void unpack8(uint4 a, float *f) {
    const uint32_t w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        f[2 * k] = __uint_as_float(w[k] << 16);
        f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
}
static __device__ __forceinline__ uint4 pack8(const float *f) {
    return make_uint4(pack_bf2(f[0], f[1]), pack_bf2(f[2], f[3]), pack_bf2(f[4], f[5]),
                      pack_bf2(f[6], f[7]));
}

/* The sum of squares of one head, added in exactly k_qkv_post's order so
 * that both paths agree bit for bit: there lane l chains the squares of
 * elements l + 32 j (j = 0, 1, ...; for d < 32 lane l < d holds element l
 * alone), then the warp adds its lanes in a butterfly (offsets 16..1).
 * Here the head's d / 16 adjacent threads hold elements 8 uh + c (x1) and
 * d / 2 + 8 uh + c (x2), c < 8, uh = the thread's place in the head. For
 * d >= 64, lane l's chain runs through threads l / 8 + 4 r (x1 for r < R,
 * then x2 again from r = 0; R = d / 64), handed on by shuffles; offsets 16
 * and 8 then pair threads, 4, 2 and 1 the values within one. For d <= 32
 * every chain is one square: offset 16 pairs x1 and x2 of a thread (for
 * d = 16 it only adds the idle lanes' zeros and offset 8 does), and for
 * d = 32 offset 8 pairs the head's two threads. All lanes call it alike. */
static __device__ float head_sumsq(const float *x1, const float *x2, int d, int uh) {
    const int base = (threadIdx.x & 31) - uh; /* the head's first lane */
    float p[8];
    if (d <= 32) {
#pragma unroll
        for (int c = 0; c < 8; c++)
            p[c] = __fmaf_rn(x1[c], x1[c], 0.f) + __fmaf_rn(x2[c], x2[c], 0.f);
        if (d == 32)
#pragma unroll
            for (int c = 0; c < 8; c++) p[c] += __shfl_xor_sync(0xffffffffu, p[c], 1);
        return ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]));
    }
    const int R = d / 64, g = uh & 3, r = uh >> 2;
#pragma unroll
    for (int c = 0; c < 8; c++) p[c] = 0.f;
    for (int step = 0; step < 2 * R; step++) {
        const int rr = step % R;
        if (step > 0 && R > 1) { /* from the thread that took the previous step */
            const int from = base + g + 4 * (rr > 0 ? rr - 1 : R - 1);
#pragma unroll
            for (int c = 0; c < 8; c++) p[c] = __shfl_sync(0xffffffffu, p[c], from);
        }
        if (r == rr) {
            const bool first = step < R;
#pragma unroll
            for (int c = 0; c < 8; c++) {
                const float xv = first ? x1[c] : x2[c];
                p[c] = __fmaf_rn(xv, xv, p[c]);
            }
        }
    }
#pragma unroll
    for (int c = 0; c < 8; c++) p[c] += __shfl_xor_sync(0xffffffffu, p[c], 2);
#pragma unroll
    for (int c = 0; c < 8; c++) p[c] += __shfl_xor_sync(0xffffffffu, p[c], 1);
    const float s = ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]));
    /* complete in the threads that took the last step (r = R - 1) */
    return __shfl_sync(0xffffffffu, s, base + g + 4 * (R - 1));
}

__global__ void __launch_bounds__(QKV_VEC_THREADS)
    k_qkv_post_vec(const uint16_t *__restrict__ qkv, int n, int hq, int hkv, int d, int tpb,
                   int upb, const uint16_t *__restrict__ bias, const uint16_t *__restrict__ q_norm,
                   const uint16_t *__restrict__ k_norm, float eps, int norm_offset,
                   const float *__restrict__ inv_freq, float rope_attn,
                   const int32_t *__restrict__ d_state, uint16_t *__restrict__ q_out,
                   uint16_t *__restrict__ k_cache, uint16_t *__restrict__ v_cache, int cap,
                   int rnd) {
    extern __shared__ __align__(16) float qkv_tab[]; /* cos [tpb][half], sin [tpb][half] */
    const int heads = hq + 2 * hkv, half = d / 2, seg = d / 16; /* units per head */
    float *cs_tab = qkv_tab, *sn_tab = qkv_tab + tpb * half;
    const int tid = threadIdx.x, lt = tid / upb;                  /* token within block */
    const int u = blockIdx.y * upb + (tid - lt * upb);            /* unit within token */
    const int head = u / seg, i0 = (u - head * seg) * 8;
    const int t0 = blockIdx.x * tpb, t = t0 + lt;
    const bool live = lt < tpb && t < n && head < heads;
    const bool is_v = head >= hq + hkv;
    const uint16_t *nw = !live || is_v ? NULL : head < hq ? q_norm : k_norm;
    const int ntok = min(tpb, n - t0), ntab = ntok * half;
    pdl_trigger();
    /* weights and constants: before waiting on the previous kernel */
    uint4 b1 = make_uint4(0u, 0u, 0u, 0u), b2 = b1;
    if (live && bias) {
        b1 = *(const uint4 *)(bias + (size_t)head * d + i0);
        b2 = *(const uint4 *)(bias + (size_t)head * d + i0 + half);
    }
    const float f_first = tid < ntab ? inv_freq[tid % half] : 0.f;
    pdl_wait();
    const int pos0 = d_state[0];
    uint4 a1 = make_uint4(0u, 0u, 0u, 0u), a2 = a1;
    if (live) {
        const uint16_t *src = qkv + ((size_t)t * heads + head) * d + i0;
        a1 = *(const uint4 *)src;
        a2 = *(const uint4 *)(src + half);
    }
    /* the block's RoPE table while those loads are in flight */
    for (int k = tid; k < ntab; k += blockDim.x) {
        const int tt = k / half, i = k - tt * half;
        const float f = k == tid ? f_first : inv_freq[i];
        float sn, cs;
        sincosf((float)(pos0 + t0 + tt) * f, &sn, &cs);
        cs_tab[k] = __fmul_rn(cs, rope_attn);
        sn_tab[k] = __fmul_rn(sn, rope_attn);
    }
    __syncthreads();
    float x1[8], x2[8];
    unpack8(a1, x1);
    unpack8(a2, x2);
    if (bias) {
        float c1[8], c2[8];
        unpack8(b1, c1);
        unpack8(b2, c2);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            x1[j] = rbfc(x1[j] + c1[j], rnd);
            x2[j] = rbfc(x2[j] + c2[j], rnd);
        }
    }
    if (q_norm || k_norm) { /* uniform over the block: every lane shuffles */
        const float ss = head_sumsq(x1, x2, d, i0 / 8);
        if (nw) { /* loaded only now: fewer registers held across the wait */
            const float r = rsqrtf(ss / (float)d + eps);
            float g1[8], g2[8];
            unpack8(*(const uint4 *)(nw + i0), g1);
            unpack8(*(const uint4 *)(nw + i0 + half), g2);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                x1[j] = rbfc(rms_w(x1[j] * r, g1[j], norm_offset, rnd), rnd);
                x2[j] = rbfc(rms_w(x2[j] * r, g2[j], norm_offset, rnd), rnd);
            }
        }
    }
    if (!live) return;
    const int pos = pos0 + t;
    uint16_t *dst;
    if (is_v) {
        dst = v_cache + ((size_t)(head - hq - hkv) * cap + pos) * d + i0;
    } else {
        const float4 *cp = (const float4 *)(cs_tab + lt * half + i0);
        const float4 *sp = (const float4 *)(sn_tab + lt * half + i0);
        const float4 c4[2] = {cp[0], cp[1]}, s4[2] = {sp[0], sp[1]};
        const float *c = (const float *)c4, *s = (const float *)s4;
        float y1[8], y2[8];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            y1[j] = rope_lo(x1[j], x2[j], c[j], s[j]);
            y2[j] = rope_hi(x1[j], x2[j], c[j], s[j]);
        }
#pragma unroll
        for (int j = 0; j < 8; j++) {
            x1[j] = y1[j];
            x2[j] = y2[j];
        }
        dst = head < hq ? q_out + ((size_t)t * hq + head) * d + i0
                        : k_cache + ((size_t)(head - hq) * cap + pos) * d + i0;
    }
    *(uint4 *)dst = pack8(x1);
    *(uint4 *)(dst + half) = pack8(x2);
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

extern "C" int lmc_cu_qkv_post(const uint16_t *qkv, int n, int hq, int hkv, int d,
                               const uint16_t *bias, const uint16_t *q_norm,
                               const uint16_t *k_norm, float norm_eps, int norm_offset,
                               const float *inv_freq, int rot, float rope_attn,
                               const int32_t *d_state, uint16_t *q_out, uint16_t *k_cache,
                               uint16_t *v_cache, int cap, int rnd, lmc_cu_stream s) {
    if (d > QKV_MAXD || d % 2 || (d > 32 && d % 32) || rot < 2 || rot > d || rot % 2)
        return (int)cudaErrorInvalidValue;
    const int heads = hq + 2 * hkv;
    /* the vector path pairs i with i + d / 2: whole-head rotation only */
    const bool vec = rot == d && (d == 16 || d == 32 || d == 64 || d == 128 || d == 256) && n > 0 &&
                     heads > 0 && aligned16(qkv) && aligned16(bias) && aligned16(q_norm) &&
                     aligned16(k_norm) && aligned16(q_out) && aligned16(k_cache) &&
                     aligned16(v_cache);
    if (vec) {
        const int upt = heads * (d / 16); /* units per token */
        int tpb = 1, upb = upt, slices = 1;
        if (upt > QKV_VEC_THREADS) { /* one token per block, its units in slices */
            upb = QKV_VEC_THREADS;
            slices = (upt + upb - 1) / upb;
        } else {
            tpb = QKV_THREADS / upt;
            tpb = tpb < 1 ? 1 : tpb > QKV_VEC_TOKENS ? QKV_VEC_TOKENS : tpb;
        }
        const int threads = (tpb * upb + 31) / 32 * 32;
        const size_t smem = (size_t)2 * tpb * (d / 2) * sizeof(float);
        return (int)lmc_pdl_launch(k_qkv_post_vec, dim3((n + tpb - 1) / tpb, slices),
                                   dim3(threads), smem, (cudaStream_t)s, qkv, n, hq, hkv, d, tpb,
                                   upb, bias, q_norm, k_norm, norm_eps, norm_offset, inv_freq,
                                   rope_attn, d_state, q_out, k_cache, v_cache, cap, rnd);
    }
    return (int)lmc_pdl_launch(k_qkv_post, dim3(n), dim3(QKV_THREADS), 0, (cudaStream_t)s, qkv,
                               hq, hkv, d, bias, q_norm, k_norm, norm_eps, norm_offset, inv_freq,
                               rot, rope_attn, d_state, q_out, k_cache, v_cache, cap, rnd);
}

/* No early trigger: the decode attention launched next reads the cache
 * before it waits, so it must not start before the prologue that wrote the
 * cache has finished, which this kernel's own wait ensures. */
__global__ void k_decode_row(const uint16_t *row, const uint16_t *bias, int cols,
                             uint16_t *out, int rnd) {
    pdl_wait();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < cols) out[i] = bias ? f2bf(rbfc(bf2f(row[i]) + bf2f(bias[i]), rnd)) : row[i];
}

extern "C" int lmc_cu_decode_row(const uint16_t *row, const uint16_t *bias, int cols,
                                 uint16_t *out, int rnd, lmc_cu_stream s) {
    if (cols <= 0) return (int)cudaErrorInvalidValue;
    return (int)lmc_pdl_launch(k_decode_row, dim3((cols + 255) / 256), dim3(256), 0,
                               (cudaStream_t)s, row, bias, cols, out, rnd);
}

/* --------------------------------------------------------- gated MLP act */
/* Gate and up are interleaved, so output i reads inputs 2i and 2i + 1:
 * 8 outputs per thread from two 16-byte loads. SwiGLU, or GeGLU with the
 * tanh GELU (GELU). */
template <bool GELU>
__global__ void k_glu(const uint16_t *gu, size_t n8, uint16_t *out, int rnd) {
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
            const float act = GELU ? gelu_tanh(g) : g / (1.f + expf(-g));
            o16[e] = f2bf(rbfc(act, rnd) * u);
        }
        ((uint4 *)out)[i] = o;
    }
}

extern "C" int lmc_cu_glu(const uint16_t *gu, int rows, int inter, int gelu, uint16_t *out,
                          int rnd, lmc_cu_stream s) {
    if (inter % 8) return (int)cudaErrorInvalidValue;
    size_t n8 = (size_t)rows * inter / 8;
    size_t blocks = (n8 + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    if (gelu)
        k_glu<true><<<(unsigned)blocks, 256, 0, (cudaStream_t)s>>>(gu, n8, out, rnd);
    else
        k_glu<false><<<(unsigned)blocks, 256, 0, (cudaStream_t)s>>>(gu, n8, out, rnd);
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

/* -------------------------------------------------------------- softcap */
/* Final-logit softcapping, x = cap * tanh(x / cap), each step rounded to
 * bf16 with rnd as the reference's bf16 logits are. */
__global__ void k_softcap(float *x, size_t n, float cap, int rnd) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = rbfc(rbfc(tanhf(rbfc(x[i] / cap, rnd)), rnd) * cap, rnd);
}

extern "C" int lmc_cu_softcap(float *x, size_t n, float cap, int rnd, lmc_cu_stream s) {
    if (!(cap > 0.f)) return (int)cudaErrorInvalidValue;
    size_t blocks = (n + 255) / 256;
    if (blocks > 4096) blocks = 4096;
    if (blocks < 1) blocks = 1;
    k_softcap<<<(unsigned)blocks, 256, 0, (cudaStream_t)s>>>(x, n, cap, rnd);
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

/* One block per row of a batch's logits (batched decode: a launch for all
 * rows, not two per row): the row's greedy id and its log-softmax, as
 * lmc_cu_argmax gives them, in out[2 r] and out[2 r + 1]. */
__global__ void __launch_bounds__(ARGMAX_THREADS)
    k_argmax_rows(const float *x, int n, size_t ld, int32_t *out) {
    __shared__ float top, red[32];
    __shared__ int top_i;
    const float *row = x + (size_t)blockIdx.x * ld;
    float best = -INFINITY;
    int idx = 0x7fffffff;
    for (int i = threadIdx.x; i < n; i += ARGMAX_THREADS) better(best, idx, row[i], i);
    block_argmax(best, idx, &top, &top_i);
    __syncthreads();
    const float m = top;
    float sum = 0.f;
    if (m > -INFINITY)
        for (int i = threadIdx.x; i < n; i += ARGMAX_THREADS) sum += __expf(row[i] - m);
    sum = block_sum(sum, red);
    if (threadIdx.x == 0) {
        out[2 * blockIdx.x] = top_i == 0x7fffffff ? 0 : top_i; /* all NaN: 0 */
        ((float *)out)[2 * blockIdx.x + 1] = -logf(sum);
    }
}

extern "C" int lmc_cu_argmax_rows(const float *x, int rows, int n, size_t ld, int32_t *out,
                                  lmc_cu_stream s) {
    if (rows <= 0) return 0;
    k_argmax_rows<<<rows, ARGMAX_THREADS, 0, (cudaStream_t)s>>>(x, n, ld, out);
    return launch_status();
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
