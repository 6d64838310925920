/* Launchers for the CUDA kernels (kernels.cu, gemv.cu, attention.cu).
 * Plain C interface: tensors are raw device pointers, bf16 values travel as
 * uint16_t. Every launcher enqueues on `stream` and returns the launch's
 * cudaError_t as an int (0 = success). Shapes are validated by the caller
 * (cuda_llama.c); kernels trust them.
 *
 * d_state points at two device ints: [0] = tokens already in the KV cache
 * before this step (the position of the first new token), [1] = the token
 * fed by a decode step. Kernels read them on the device so one captured
 * CUDA graph serves every decode step. */
#ifndef LMC_BACKEND_CUDA_KERNELS_H
#define LMC_BACKEND_CUDA_KERNELS_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *lmc_cu_stream;

/* Programmatic dependent launch for the decode chain: on by default. */
void lmc_cu_set_pdl(int on);

/* `rnd` (here and below): round intermediates to bf16 where a bf16 model
 * in transformers does (models from bf16/f16 checkpoints); 0 keeps them in
 * f32 (models from f32 checkpoints, whose reference does not round).
 *
 * `offset` / `norm_offset` (here and below): RMSNorm weights in the (1 + w)
 * form (Gemma), x * rsqrt(mean(x^2) + eps) * (1 + w) in f32 and rounded
 * once; 0 is the stored-weight form. */

/* out[i, :] = float(emb[ids[i], :]) for i < n (ids clamped into [0, vocab));
 * scale != 0 multiplies them (rounded to bf16 with rnd): Gemma's embedding
 * scale, already in the model's dtype. */
int lmc_cu_embed(const uint16_t *emb, const int32_t *ids, int n, int hidden, int vocab,
                 float scale, int rnd, float *out, lmc_cu_stream s);

/* out (bf16) = rmsnorm(x) * w per row; with rnd the normalized value is
 * rounded to bf16 before the weight multiply (stored-weight form). */
int lmc_cu_rmsnorm(const float *x, const uint16_t *w, int rows, int cols, float eps,
                   uint16_t *out, int offset, int rnd, lmc_cu_stream s);

/* Sandwich norms: x[r, :] += rmsnorm(y[r, :]) * w for `rows` rows of the
 * f32 residual x, y a sublayer's f32 output (rounded to bf16 first with
 * rnd, as the reference's bf16 output is; the normed value likewise). */
int lmc_cu_norm_add(const float *y, const uint16_t *w, int rows, int cols, float eps, float *x,
                    int offset, int rnd, lmc_cu_stream s);

/* The attention prologue for n new tokens. qkv rows hold [q | k | v]
 * (Hq*D + 2*Hkv*D values, bias not yet added). Adds the optional bias
 * (same layout), applies the optional per-head q/k RMSNorm, rotates the
 * first rot (even, <= D) values of q and k, the rest passing through
 * (rotate-half convention over those rot values, angle = position *
 * inv_freq[i] for i < rot / 2, cos and sin multiplied by rope_attn: yarn's
 * attention factor, else 1), writes q to q_out [n, Hq, D] and k/v into the
 * layer's cache [Hkv, cap, D] at positions d_state[0] + t. */
int lmc_cu_qkv_post(const uint16_t *qkv, int n, int hq, int hkv, int d, const uint16_t *bias,
                    const uint16_t *q_norm, const uint16_t *k_norm, float norm_eps,
                    int norm_offset, const float *inv_freq, int rot, float rope_attn,
                    const int32_t *d_state, uint16_t *q_out, uint16_t *k_cache,
                    uint16_t *v_cache, int cap, int rnd, lmc_cu_stream s);

/* out[r, i] = act(gu[r, 2i]) * gu[r, 2i + 1] (gate and up interleaved):
 * silu (gelu 0) or the tanh GELU (gelu 1). */
int lmc_cu_glu(const uint16_t *gu, int rows, int inter, int gelu, uint16_t *out, int rnd,
               lmc_cu_stream s);

/* Final-logit softcapping of n f32 logits: x = cap * tanh(x / cap) (cap > 0),
 * each step rounded to bf16 with rnd. */
int lmc_cu_softcap(float *x, size_t n, float cap, int rnd, lmc_cu_stream s);

/* y[r, c] += bias[c] for a bf16 (is_f32 = 0) or f32 matrix. */
int lmc_cu_add_bias(void *y, int is_f32, const uint16_t *bias, int rows, int cols,
                    lmc_cu_stream s);

/* out[0] = the first index of the largest value of x[0..n), and out[1]
 * (as a float) = its log-softmax, -log(sum exp(x - max)); ws is a device
 * buffer of lmc_cu_argmax_ws_bytes(). */
size_t lmc_cu_argmax_ws_bytes(void);
/* Once per process: the embedding and argmax kernels' launch attributes
 * (the decode chain's shared memory carveout). */
int lmc_cu_decode_kernels_setup(void);
int lmc_cu_argmax(const float *x, int n, void *ws, int32_t *out, lmc_cu_stream s);
/* The same for `rows` rows of x (row r at x + r * ld): out[2 r], out[2 r + 1]. */
int lmc_cu_argmax_rows(const float *x, int rows, int n, size_t ld, int32_t *out,
                       lmc_cu_stream s);

/* Element conversions used while uploading weights. */
int lmc_cu_f32_to_bf16(const float *x, size_t n, uint16_t *out, lmc_cu_stream s);
int lmc_cu_f16_to_bf16(const uint16_t *x, size_t n, uint16_t *out, lmc_cu_stream s);

/* Batch-1 matrix-vector product y = W x (+ bias) for a row-major bf16
 * W [rows, cols] (cols % 8 == 0). The input is staged in shared memory as
 * bf16 from one of three sources; the output goes to one of three sinks. */
enum {
    LMC_GEMV_IN_BF16 = 0,   /* x: bf16 [cols] */
    LMC_GEMV_IN_RMSNORM = 1,/* x: f32 residual [cols], normalized with norm_w */
    LMC_GEMV_IN_NO_ROUND = 16, /* or-ed in: keep the prologue unrounded */
    LMC_GEMV_IN_NORM_OFFSET = 32, /* or-ed in: the RMSNorm's (1 + w) form */
};
enum {
    LMC_GEMV_OUT_BF16 = 0,   /* y: bf16 [rows] */
    LMC_GEMV_OUT_F32 = 1,    /* y: f32 [rows] */
    LMC_GEMV_OUT_F32_ADD = 2,/* y: f32 [rows], y += W x (residual) */
    LMC_GEMV_OUT_SWIGLU = 3, /* y: bf16 [rows / 2]; W's rows interleave gate and
                                up: y[i] = silu(gate_i) * up_i, each rounded to
                                bf16 first (as a bf16 gate/up output would be) */
    LMC_GEMV_OUT_GEGLU = 4,  /* the same with the tanh GELU for silu */
};
/* Raise the shared-memory limits once per process (cols up to max_cols). */
int lmc_cu_gemv_setup(int max_cols);
int lmc_cu_gemv(const uint16_t *w, int rows, int cols, int in_mode, const void *x,
                const uint16_t *norm_w, float eps, const uint16_t *bias, int out_mode,
                void *y, int num_sms, lmc_cu_stream s);

/* Flash attention for n >= 1 new tokens (tensor cores; head_dim 16, 32, 64
 * or 128). q [n, Hq, D]; caches [Hkv, cap, D] already hold the new keys;
 * out [n, Hq, D]. Causal; window > 0 keeps keys j with i - j < window.
 * Scores are scaled by `scale`, or by D^-1/2 when it is 0, and with
 * softcap > 0 capped at softcap * tanh(score / softcap) (attention logit
 * softcapping; 0: none). */
int lmc_cu_attn_prefill(const uint16_t *q, const uint16_t *k_cache, const uint16_t *v_cache,
                        uint16_t *out, int n, int hq, int hkv, int d, int cap,
                        const int32_t *d_state, int window, float scale, float softcap,
                        lmc_cu_stream s);
int lmc_cu_attn_prefill_supported(int d);
/* The same over the paged engine's pool of one layer ([blocks][hkv]
 * [block_tokens][D], lmc_cu_paged_attn's layout) for the n new rows of one
 * sequence, at positions d_pos0[0] + i, whose keys and values (new ones
 * included) are found through `table` (the sequence's block ids, a
 * position p in block table[p / block_tokens]). Blocks below a sliding
 * window are not read (they may have been given back). head_dim 64 or
 * 128. */
int lmc_cu_attn_prefill_paged(const uint16_t *q, const uint16_t *k_pool, const uint16_t *v_pool,
                              uint16_t *out, int n, int hq, int hkv, int d,
                              const int32_t *d_pos0, const int32_t *table, int block_tokens,
                              int window, float scale, float softcap, lmc_cu_stream s);
int lmc_cu_attn_prefill_paged_supported(int d);

/* The attention of one decode step (attn_decode.cu): qkv is the new token's
 * row from the qkv GEMV (bias included); q and k get the optional per-head
 * RMSNorm and RoPE of their first rot values at position d_state[0] (cos
 * and sin times rope_attn, as in lmc_cu_qkv_post), k and v are written into
 * the layer's caches there, and out [Hq, D] receives the attention over
 * every live key (window > 0 keeps the last `window`), scores scaled by
 * `scale` (0: D^-1/2) and capped as in lmc_cu_attn_prefill (softcap > 0).
 * Grid-stable for graphs.
 * ws: lmc_cu_attn_decode_ws_bytes(), zeroed once when allocated (its
 * arrival counters return to zero after every launch). nsplit: from
 * lmc_cu_attn_decode_splits(); ws must be sized for the same value. */
int lmc_cu_attn_decode_setup(int hq, int hkv, int d); /* once per process and shape */
int lmc_cu_attn_decode_splits(int hkv, int num_sms);
size_t lmc_cu_attn_decode_ws_bytes(int hq, int hkv, int d, int nsplit);
int lmc_cu_attn_decode(const uint16_t *qkv, int hq, int hkv, int d, const uint16_t *q_norm,
                       const uint16_t *k_norm, float norm_eps, int norm_offset,
                       const float *inv_freq, int rot, float rope_attn, const int32_t *d_state,
                       uint16_t *k_cache, uint16_t *v_cache, int cap, int window, float scale,
                       float softcap, int nsplit, void *ws, uint16_t *out, int rnd, int append,
                       lmc_cu_stream s);
/* The same for a sequence of a paged pool (batched execution, one row):
 * the position is d_pos[0], the layer's pools are [blocks][Hkv][bt][D] and
 * table is the sequence's block table; the token is always appended. */
int lmc_cu_attn_decode_paged(const uint16_t *qkv, int hq, int hkv, int d, const uint16_t *q_norm,
                             const uint16_t *k_norm, float norm_eps, int norm_offset,
                             const float *inv_freq, int rot, float rope_attn,
                             const int32_t *d_pos, uint16_t *k_pool, uint16_t *v_pool,
                             const int32_t *table, int block_tokens, int window, float scale,
                             float softcap, int nsplit, void *ws, uint16_t *out, int rnd,
                             lmc_cu_stream s);
int lmc_cu_attn_decode_supported(int hq, int hkv, int d);
/* The single-sequence cache's attention (prefill and decode) runs the
 * shape; otherwise only the paged engine can (lmc_cu_paged_attn_supported). */
static inline int lmc_cu_single_seq_attn_supported(int hq, int hkv, int d) {
    return lmc_cu_attn_prefill_supported(d) && lmc_cu_attn_decode_supported(hq, hkv, d);
}

/* A row of a prefill's qkv GEMM output as lmc_cu_attn_decode takes a
 * token (bias added, rounded as lmc_cu_qkv_post rounds it), so that the
 * last prefill row attends through the split-K decode kernel (append 0;
 * its position, which that kernel reads before waiting, set by the host).
 * It finishes only after its predecessor: the decode kernel may then read
 * the cache that predecessor wrote. */
int lmc_cu_decode_row(const uint16_t *row, const uint16_t *bias, int cols, uint16_t *out,
                      int rnd, lmc_cu_stream s);

/* Batched execution over a paged KV cache (paged_attn.cu, kernels.cu):
 * row t of a ragged batch belongs to sequence row_seq[t] at position
 * row_pos[t]; tables holds each sequence's block table (max_blocks
 * entries per sequence); a layer's pools are [blocks][hkv][block_tokens][d].
 * lmc_cu_paged_qkv_post is lmc_cu_qkv_post writing into the pools;
 * lmc_cu_paged_attn: out [n, Hq, D] over positions [pos - window + 1, pos]
 * (all up to pos without a window), scores scaled by `scale` and, with
 * softcap > 0, capped at softcap * tanh(score / softcap); each row's
 * positions split over `splits` blocks (lmc_cu_paged_attn_splits; > 1
 * needs ws of lmc_cu_paged_attn_ws_floats floats). */
int lmc_cu_paged_qkv_post(const uint16_t *qkv, int n, int hq, int hkv, int d,
                          const uint16_t *bias, const uint16_t *q_norm, const uint16_t *k_norm,
                          float norm_eps, int norm_offset, const float *inv_freq, int rot,
                          float rope_attn,
                          const int32_t *row_seq, const int32_t *row_pos, const int32_t *tables,
                          int max_blocks, int block_tokens, uint16_t *q_out, uint16_t *k_pool,
                          uint16_t *v_pool, int rnd, lmc_cu_stream s);
int lmc_cu_paged_attn_supported(int hq, int hkv, int d);
int lmc_cu_paged_attn(const uint16_t *q, const uint16_t *k_pool, const uint16_t *v_pool,
                      const int32_t *row_seq, const int32_t *row_pos, const int32_t *tables,
                      int max_blocks, int block_tokens, int n, int hq, int hkv, int d, int window,
                      float scale, float softcap, int splits, float *ws, uint16_t *out,
                      lmc_cu_stream s);
/* max_positions: the most positions a row of the batch attends to. */
int lmc_cu_paged_attn_splits(int n, int hkv, int max_positions, int num_sms);
size_t lmc_cu_paged_attn_ws_floats(int n, int hq, int d, int splits);

#ifdef __cplusplus
}
#endif
#endif
