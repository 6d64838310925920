/* The CPU op layer: the kernels the CPU model, LoRA training (forward and
 * backward) and the vision towers share. Weights are read in their stored
 * dtype (F32/F16/BF16, straight from the mmap) and widened to fp32 on the
 * fly; activations and accumulation are fp32. Parallelism is OpenMP for the
 * element-wise and decode kernels and OpenBLAS sgemm for prefill. */
#ifndef LMC_BACKEND_CPU_OPS_H
#define LMC_BACKEND_CPU_OPS_H
#include "formats/safetensors.h"
#include "lmc.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* MLX affine quantization of a matrix: value c of row r is
 * scales[r][c / group_size] * q + biases[r][c / group_size] (fp32: the
 * product, then one rounding for the sum), q the bits-wide unsigned field
 * of the row's packed 32-bit words, the first value in a word's lowest
 * bits. */
typedef struct {
    int bits;       /* 2, 4 or 8 */
    int group_size; /* 32, 64 or 128; divides cols */
    lmc_dtype scales_dt, biases_dt; /* F32, F16 or BF16 */
    const void *scales, *biases;    /* [rows, cols / group_size] */
} lmc_cpu_quant;

/* A row-major [rows, cols] matrix (an HF Linear weight is [out, in]):
 * F32, F16 or BF16 elements, or (dt == LMC_DT_U32, quant set) MLX
 * affine-quantized words, rows * cols * bits / 32 of them, dequantized on
 * the fly by every kernel below. */
typedef struct {
    lmc_dtype dt;
    const void *data;
    int64_t rows, cols;
    const lmc_cpu_quant *quant; /* dt == LMC_DT_U32 only */
} lmc_cpu_mat;

/* y[n, rows] = x[n, cols] @ W^T (+ bias[rows] when bias != NULL; bias is a
 * 1-D matrix of `rows` elements). n == small uses a GEMV that reads W once;
 * larger n widens W in row blocks and calls sgemm. A quantized W computes
 * with exactly the values of its dequantized F32 copy (the GEMV gives its
 * results bit for bit; sgemm's may differ in rounding, as its blocking
 * does). Fails only on OOM. */
lmc_status lmc_cpu_matmul(const lmc_cpu_mat *w, const lmc_cpu_mat *bias, const float *x,
                          size_t n, float *y);

/* The same for `count` (<= 8 on the fused path) matrices sharing one input
 * x (all with x's column count): y[i] = x @ w[i]^T + bias[i]. bias may be
 * NULL, as may each bias[i]. Decode-sized n runs them in one parallel loop. */
lmc_status lmc_cpu_matmul_multi(const lmc_cpu_mat *const *w, const lmc_cpu_mat *const *bias,
                                size_t count, const float *x, size_t n, float *const *y);

/* Widen n elements of row `row` of w (starting at column col0) into dst
 * (a quantized w: dequantized as lmc_cpu_quant describes). */
void lmc_cpu_widen(const lmc_cpu_mat *w, int64_t row, int64_t col0, size_t n, float *dst);

/* out[i, :] = x[i, :] * rsqrt(mean(x[i]^2) + eps) * weight, for n rows of
 * width d (out may alias x). The statistics are fp32; with round_dt BF16/F16
 * the normalized row and the product are rounded as a model computed in
 * that dtype does (F32: no rounding). */
void lmc_cpu_rmsnorm(const float *x, const lmc_cpu_mat *weight, float eps, size_t n, size_t d,
                     float *out, lmc_dtype round_dt);

/* Gemma's RMSNorm: out = x * rsqrt(mean(x^2) + eps) * (1 + weight), all in
 * fp32 and rounded once to round_dt at the end (out may alias x). */
void lmc_cpu_rmsnorm_offset(const float *x, const lmc_cpu_mat *weight, float eps, size_t n,
                            size_t d, float *out, lmc_dtype round_dt);

/* Rotary embedding in the rotate-half layout, applied in place to n rows of
 * `heads` heads of `head_dim` each (row stride heads*head_dim), row i at
 * position pos0 + i. inv_freq holds head_dim/2 frequencies; cos and sin are
 * multiplied by attn_factor (yarn's attention scaling, else 1) before
 * they are rounded to round_dt, as transformers does. */
void lmc_cpu_rope(float *x, size_t n, size_t heads, size_t head_dim, size_t pos0,
                  const float *inv_freq, float attn_factor, lmc_dtype round_dt);
/* The same on the first rot_dim (even, <= head_dim) values of each head
 * only, with rot_dim / 2 frequencies; the rest pass through (partial
 * rotary embedding). */
void lmc_cpu_rope_partial(float *x, size_t n, size_t heads, size_t head_dim, size_t rot_dim,
                          size_t pos0, const float *inv_freq, float attn_factor,
                          lmc_dtype round_dt);

/* Row-wise LayerNorm: (x - mean) * rsqrt(var + eps) * w + b (biased
 * variance, statistics in double; out may alias x), rounded to round_dt. */
void lmc_cpu_layernorm(const float *x, const lmc_cpu_mat *w, const lmc_cpu_mat *b, float eps,
                       size_t n, size_t d, float *out, lmc_dtype round_dt);

/* Activations (config names: see the callers' parsers). */
typedef enum {
    LMC_ACT_QUICK_GELU, /* x * sigmoid(1.702 x) */
    LMC_ACT_GELU,       /* exact (erf) */
    LMC_ACT_GELU_TANH,  /* tanh approximation: gelu_new, gelu_pytorch_tanh, gelu_fast */
    LMC_ACT_RELU,
    LMC_ACT_SILU,
} lmc_act;
/* In place on n floats, rounding like a model computed in round_dt. */
void lmc_cpu_act(lmc_act act, float *x, size_t n, lmc_dtype round_dt);

/* a[i] = silu(g[i]) * u[i] (a may alias g); rounding as for rmsnorm. */
void lmc_cpu_silu_mul(const float *g, const float *u, size_t n, float *a, lmc_dtype round_dt);
/* a[i] = gelu(g[i]) * u[i] with GELU's tanh approximation
 * ("gelu_pytorch_tanh"); rounding as for lmc_cpu_silu_mul. */
void lmc_cpu_gelu_tanh_mul(const float *g, const float *u, size_t n, float *a,
                           lmc_dtype round_dt);

/* ---- training (fp32, no rounding): the backward passes of the ops above,
 * and attention over a whole sequence keeping what its backward needs. */

/* dx (+)= d/dx of out = w * x * rsqrt(mean(x^2) + eps) given dy, for n rows
 * of width d (acc: add to dx, else overwrite). wbuf: d floats of scratch. */
void lmc_cpu_rmsnorm_bwd(const float *x, const lmc_cpu_mat *weight, float eps, size_t n,
                         size_t d, const float *dy, float *dx, bool acc, float *wbuf);
/* The transpose of lmc_cpu_rope_partial (fp32): rotates by minus the angle,
 * scaled by the same attention factor. */
void lmc_cpu_rope_bwd(float *x, size_t n, size_t heads, size_t head_dim, size_t rot_dim,
                      size_t pos0, const float *inv_freq, float attn_factor);
/* Given da of a = silu(g) * u: dg and du (overwritten). */
void lmc_cpu_silu_mul_bwd(const float *g, const float *u, const float *da, size_t n, float *dg,
                          float *du);

/* Causal (windowed) grouped-query attention over T tokens at positions
 * 0..T-1, probabilities recomputed per head (T x T scratch P, dP). */
typedef struct {
    size_t T, heads, kv_heads, head_dim;
    size_t window; /* 0: none */
    float scale;
    float *P, *dP; /* [T, T] scratch; dP only for the backward */
} lmc_cpu_seq_attn;
/* att[T, heads*hd] = softmax(scale q k^T) v. */
void lmc_cpu_seq_attention(const lmc_cpu_seq_attn *a, const float *q, const float *k,
                           const float *v, float *att);
/* From datt: dq, dk and dv (all overwritten). */
void lmc_cpu_seq_attention_bwd(const lmc_cpu_seq_attn *a, const float *q, const float *k,
                               const float *v, const float *datt, float *dq, float *dk, float *dv);

/* Logit softcapping in place: x = cap * tanh(x / cap), each of the three
 * steps rounded to round_dt as a model computed in that dtype rounds them
 * (cap == 0: unchanged). */
void lmc_cpu_softcap(float *x, size_t n, float cap, lmc_dtype round_dt);

/* x[i] += y[i]. */
void lmc_cpu_add(float *x, const float *y, size_t n);

/* Round every element to the nearest bf16 / fp16 value (kept as float):
 * reproduces the per-op rounding of a model computed in that dtype. */
void lmc_cpu_round(float *x, size_t n, lmc_dtype dt);

/* Causal grouped-query attention of n new queries against the keys kept in
 * a cache ("past", laid out [kv_heads][past_stride][head_dim] with a
 * position per slot) plus the n new keys ([n][kv_heads*head_dim]).
 * Query i sits at position pos0 + i and sees key position j when
 * j <= pos0 + i and, with window > 0, j > pos0 + i - window; with
 * bidirectional (no past, no window) every query sees every new key.
 * Scores are scaled, then softcapped when softcap > 0, then masked.
 * q: [n][heads*head_dim]; out: same shape. round_dt (F32 for none) rounds
 * scores/probabilities like a model computed in that dtype. */
typedef struct {
    const float *k, *v;         /* past keys/values (may be NULL when n_past == 0) */
    const int64_t *pos;         /* position of each past slot, < 0 for empty */
    size_t n_past, past_stride; /* slots used; slot stride per kv head */
    const float *k_new, *v_new; /* [n][kv_heads*head_dim] */
    size_t n, heads, kv_heads, head_dim;
    size_t pos0, window;
    float scale;
    lmc_dtype round_dt;
    bool bidirectional; /* every query sees every key (encoders; no past) */
    float softcap;      /* > 0: scores become softcap * tanh(score / softcap) */
} lmc_cpu_attn_args;
lmc_status lmc_cpu_attention(const lmc_cpu_attn_args *a, const float *q, float *out);

#endif
