/* The CUDA llama-family model's state, shared by its files: the
 * weights, scratch and single-sequence caches (cuda_llama.c) and execution
 * over the paged KV cache (cuda_batch.c), which the API's KV caches run on
 * wherever the paged attention kernel can. Private to src/backend/cuda. */
#ifndef LMC_BACKEND_CUDA_MODEL_H
#define LMC_BACKEND_CUDA_MODEL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "backend/cuda/cuda_gemm.h"
#include "backend/cuda/cuda_kernels.h"
#include "base/error.h"
#include "models/model.h"

#define PF_CHUNK 2048     /* rows per prefill launch sequence */
#define LOGIT_ROWS 128    /* rows per all-logits GEMM (bounds that buffer) */
#define KV_INITIAL 4096   /* first capacity of a single-sequence cache, tokens */
#define KV_HARD_MAX (1u << 21)

/* The rows a prefill carries past the last layer's attention: every row
 * (all logits), the last one (its logits), or none (an earlier chunk, whose
 * only product is the cache). */
typedef enum { PF_ROWS_ALL, PF_ROWS_LAST, PF_ROWS_NONE, PF_KINDS } pf_rows;

typedef struct {
    uint16_t *in_norm, *post_norm;
    uint16_t *pre_ff_norm, *post_ff_norm; /* sandwich norms (post_norm then follows attention) */
    uint16_t *qkv, *qkv_b; /* [(hq + 2 hkv) D, H], bias or NULL */
    uint16_t *o, *o_b;
    uint16_t *q_norm, *k_norm;
    uint16_t *gate_up, *gate_up_b; /* [2 I, H], rows gate_0, up_0, gate_1, ... */
    uint16_t *down, *down_b;
} cu_layer;

typedef struct {
    lmc_model base;
    int H, I, V, L, hq, hkv, D, qkv_dim, window;
    float eps;
    int rnd; /* round intermediates to bf16 (bf16 checkpoints) */
    int num_sms;
    int dec_splits; /* decode attention splits per KV head */
    cudaStream_t stream;
    lmc_cu_gemm_ctx gemm;
    bool gemm_ok;
    bool no_graphs; /* LMC_CUDA_GRAPHS=0: plain launches (comparisons, tests) */
    bool engine_caches; /* the API's caches on the paged engine (cuda.h) */
    cu_layer *layers;
    uint16_t *embed, *final_norm, *lm_head;
    float *inv_freq;
    float rope_attn; /* multiplies RoPE's cos and sin (yarn, longrope), else 1 */
    /* longrope's second table, for a forward whose sequence reaches more
     * than rope_long_after positions (models/rope.h), or NULL; the same
     * rope_attn scales both tables. Engine caches only (cuda.h). */
    float *inv_freq_long;
    int64_t rope_long_after;
    /* The plan's features beyond the plain llama layer (models/arch.h);
     * each is off (0 / false / the plain value) for a plan without it. */
    int norm_offset;   /* RMSNorm weights in the (1 + w) form */
    bool sandwich;     /* sublayer outputs normed before their residual adds */
    int gelu;          /* GeGLU (tanh GELU) instead of SwiGLU */
    float embed_scale; /* embeddings times this (in the model's dtype); 0: none */
    float attn_scale;  /* the attention scale; 0: head_dim^-1/2 */
    float attn_softcap, final_softcap; /* logit softcapping; 0: none */
    int rot;           /* rotated leading values of a head (D: all of them) */
    int *layer_window; /* per layer: its window, 0 for full attention */
    float *inv_freq_local; /* the sliding layers' RoPE table, or NULL */
    float rope_attn_local;
    float *y; /* sandwich norms: a sublayer's f32 output rows [PF_CHUNK][H] */
    /* decode scratch (fixed addresses: captured in graphs) */
    float *d_x, *d_logits;
    uint16_t *d_qkv, *d_attn, *d_act;
    int32_t *d_next;
    void *d_argmax_ws;
    /* prefill scratch (grown on demand) */
    size_t pf_rows;
    float *p_x, *p_logits;
    uint16_t *p_norm, *p_qkv, *p_q, *p_attn, *p_gu, *p_act;
    int32_t *p_ids;
    int32_t *h_state; /* pinned [2] */
    /* batched execution: the batch's ids, rows and block tables, then two
     * words per item for greedy ids (grown on demand) */
    int32_t *b_scratch;
    size_t b_words;
    int32_t *h_meta; /* pinned host copy of the batch tables (grown with b_scratch) */
    /* the paged attention's split partials (grown on demand) */
    float *b_attn_ws;
    size_t b_attn_ws_floats;
    /* one-row steps run the decode kernels (LMC_CUDA_BATCH_DECODE=0: the
     * batched ones); their attention workspace, zeroed once */
    bool b_no_decode;
    void *b_dec_ws;
    int b_slide; /* the window when every layer slides, else 0 (set by pool_new) */
    /* the graph of a batched step whose items want only greedy ids, kept
     * while the step's shape (b_sig) repeats; captured on a shape's second
     * step, once the GEMM plans exist */
    cudaGraphExec_t b_graph;
    bool b_have_graph, b_graph_failed;
    unsigned long long b_sig, b_seen_sig;
    void **allocs;
    size_t n_allocs, cap_allocs;
    size_t weight_bytes;
} cu_model;

#define CU(call)                                                                          \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess)                                                            \
            return lmc_err(LMC_ERR_DEVICE, "cuda: %s: %s (%s:%d)", #call,                 \
                           cudaGetErrorString(e_), __FILE__, __LINE__);                   \
    } while (0)
#define KL(call)                                                                          \
    do {                                                                                  \
        int e_ = (call);                                                                  \
        if (e_)                                                                           \
            return lmc_err(LMC_ERR_DEVICE, "cuda kernel %s: %s", #call,                   \
                           cudaGetErrorString((cudaError_t)e_));                          \
    } while (0)

/* Layer l's attention window (0: full) and RoPE table and factor. */
static inline int lmc_cu_layer_window(const cu_model *m, int l) { return m->layer_window[l]; }
/* rope_long: the forward picked longrope's long table. Only the global
 * table has one; a sliding layer's local table is a plain one and stays,
 * as on the CPU (models/arch.c builds it without scaling). */
static inline const float *lmc_cu_layer_freq_sel(const cu_model *m, int l, bool rope_long) {
    if (m->inv_freq_local && m->layer_window[l]) return m->inv_freq_local;
    return rope_long && m->inv_freq_long ? m->inv_freq_long : m->inv_freq;
}
static inline const float *lmc_cu_layer_freq(const cu_model *m, int l) {
    return lmc_cu_layer_freq_sel(m, l, false);
}
/* Whether a forward whose sequence reaches `len` positions uses the long
 * table (lmc_rope_table's choice). */
static inline bool lmc_cu_rope_long(const cu_model *m, size_t len) {
    return m->inv_freq_long && len > (size_t)m->rope_long_after;
}
static inline float lmc_cu_layer_rope_attn(const cu_model *m, int l) {
    return m->inv_freq_local && m->layer_window[l] ? m->rope_attn_local : m->rope_attn;
}

/* Device memory owned by the model (freed with it). */
lmc_status lmc_cu_model_alloc(cu_model *m, size_t bytes, void **out, const char *what);
void lmc_cu_model_release(cu_model *m, void *p);
/* Rows [0, n) of the prefill scratch after their attention (p_attn):
 * o_proj added to the residual p_x, the post-attention norm, gate/up,
 * SwiGLU (or GeGLU), down added to p_x (GEMMs for every row at once); with
 * sandwich norms each output is normed (in y) before its add. */
lmc_status lmc_cu_rows_out(cu_model *m, const cu_layer *w, int n);
/* Logits of rows [0, n) (n <= LOGIT_ROWS) of the normed p_norm into
 * p_logits: lm_head, then the final softcapping when the plan has it. */
lmc_status lmc_cu_lm_head_rows(cu_model *m, int n);
/* rope_long: the step uses longrope's long table (lmc_cu_rope_long). */
lmc_status lmc_cu_decode_layer_paged(cu_model *m, int l, float *x, const int32_t *d_pos,
                                     uint16_t *k_pool, uint16_t *v_pool, const int32_t *table,
                                     int block_tokens, void *ws, bool rope_long);
/* The prefill scratch (p_*) for at least `rows` rows. */
lmc_status lmc_cu_model_rows(cu_model *m, size_t rows);

/* Batched execution (cuda_batch.c). */
lmc_status lmc_cu_pool_new(lmc_model *m, size_t n_blocks, size_t block_tokens,
                           struct lmc_kv_pool **out);
lmc_status lmc_cu_forward_batch(lmc_model *m, struct lmc_kv_pool *pool, lmc_batch_item *items,
                                size_t n_items);
lmc_status lmc_cu_pool_read(lmc_model *m, struct lmc_kv_pool *pool, uint32_t block,
                            size_t layer, int kv, float *dst);
lmc_status lmc_cu_pool_write(lmc_model *m, struct lmc_kv_pool *pool, uint32_t block,
                             size_t layer, int kv, const float *src);

#endif
