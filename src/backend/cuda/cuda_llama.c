/* The CUDA model: executes an architecture plan (models/arch.h) that passed
 * lmc_cuda_supports (cuda_supports.c says which) on one CUDA device.
 *
 * Weights are uploaded once as bf16 (bf16 checkpoints as they are; f32 and
 * f16 ones converted on the device while uploading). q/k/v are stored
 * concatenated and gate/up with their rows interleaved (gate_i, up_i) —
 * a checkpoint storing them fused is bound as views of its parts — so
 * each is one GEMM or GEMV and SwiGLU can be fused into the gate/up
 * GEMV's output. The residual stream is
 * f32; inputs of matrix products are bf16, rounded where a bf16 model in
 * transformers rounds them.
 *
 * The API's KV caches are this file's single-sequence caches or the paged
 * engine's (cuda_batch.c, through models/kv_cache.c): the engine's for
 * what only it runs, these for the shapes only they run (head_dim 16 or
 * 32, or 9 to 16 query heads per kv head), otherwise as own_cache (below)
 * says. The engine's one-token steps share the decode kernels. In the
 * single-sequence cache a new token (decode) runs a
 * captured CUDA graph of GEMV, attention and fused prologue kernels that
 * reads its position and token from device memory; several tokens
 * (prefill) run cuBLASLt GEMMs and flash attention in chunks of at most
 * PF_CHUNK rows. That cache is [layer][kv head][position][head dim] bf16
 * on the device, growing by doubling. It has one RoPE table per layer, so
 * a longrope model (two, picked per forward) runs on the engine only. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/cuda_gemm.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_model.h"
#include "base/error.h"
#include "models/llama_weights.h"
#include "models/model.h"
#include "models/rope.h"

typedef struct {
    lmc_kv_cache base;
    cu_model *m;
    size_t len;   /* tokens seen */
    size_t floor; /* positions below this are not held (restored wrapped cache) */
    size_t cap;
    uint16_t *k, *v;
    int32_t *d_state;
    void *ws; /* decode attention partials + arrival counters */
    cudaGraphExec_t graph;
    bool have_graph, graph_failed;
    /* full PF_CHUNK-row prefills replay a graph from their second use on
     * (the first builds the GEMM plans), one per pf_rows kind; like the
     * decode graph they hold the cache's addresses, so they go when the
     * cache moves */
    cudaGraphExec_t pf_graph[PF_KINDS];
    bool have_pf_graph[PF_KINDS], pf_graph_failed[PF_KINDS];
    unsigned pf_full_runs[PF_KINDS];
} cu_cache;

static const lmc_kv_cache_vtable cu_kv_vt;
static const lmc_model_vtable cu_model_vt;

/* ------------------------------------------------------------ memory */

static lmc_status dev_alloc(cu_model *m, size_t bytes, void **out, const char *what) {
    *out = NULL;
    if (m->n_allocs == m->cap_allocs) {
        size_t nc = m->cap_allocs ? m->cap_allocs * 2 : 64;
        void **g = realloc(m->allocs, nc * sizeof *g);
        if (!g) return lmc_err(LMC_ERR_NOMEM, "cuda: no host memory for allocation table");
        m->allocs = g;
        m->cap_allocs = nc;
    }
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        *out = NULL;
        return lmc_err(LMC_ERR_DEVICE, "cuda: allocating %zu bytes for %s: %s", bytes, what,
                       cudaGetErrorString(e));
    }
    m->allocs[m->n_allocs++] = *out;
    return LMC_OK;
}

static void dev_release(cu_model *m, void *p) {
    if (!p) return;
    for (size_t i = 0; i < m->n_allocs; i++)
        if (m->allocs[i] == p) {
            m->allocs[i] = m->allocs[--m->n_allocs];
            break;
        }
    cudaFree(p);
}

/* Upload `src` (F32/F16/BF16, rows*cols elements) as bf16 at dst; staging
 * is a device buffer big enough for the largest tensor in f32.
 *
 * Every copy here is ordered on the model's stream. The model's stream is
 * non-blocking, so a plain cudaMemcpy (legacy default stream) is not
 * ordered before a kernel launched on it: from pageable memory the call may
 * return while the last DMA chunks are still in flight, and the conversion
 * kernel then read a half-written staging buffer. Small tensors (one DMA
 * chunk) escaped it; every f32/f16 tensor of a realistic width did not. */
static lmc_status upload(cu_model *m, uint16_t *dst, const lmc_cpu_mat *src, void *staging) {
    size_t n = (size_t)src->rows * (size_t)src->cols;
    if (src->dt == LMC_DT_BF16) {
        CU(cudaMemcpyAsync(dst, src->data, n * 2, cudaMemcpyHostToDevice, m->stream));
        CU(cudaStreamSynchronize(m->stream));
        return LMC_OK;
    }
    size_t es = src->dt == LMC_DT_F32 ? 4 : 2;
    CU(cudaMemcpyAsync(staging, src->data, n * es, cudaMemcpyHostToDevice, m->stream));
    if (src->dt == LMC_DT_F32)
        KL(lmc_cu_f32_to_bf16((const float *)staging, n, dst, (lmc_cu_stream)m->stream));
    else
        KL(lmc_cu_f16_to_bf16((const uint16_t *)staging, n, dst, (lmc_cu_stream)m->stream));
    CU(cudaStreamSynchronize(m->stream));
    return LMC_OK;
}

static lmc_status alloc_upload(cu_model *m, const lmc_cpu_mat *src, void *staging,
                               uint16_t **out, const char *what) {
    *out = NULL;
    if (!src->data) return LMC_OK;
    size_t n = (size_t)src->rows * (size_t)src->cols;
    lmc_status st = dev_alloc(m, n * 2, (void **)out, what);
    if (st) return st;
    m->weight_bytes += n * 2;
    return upload(m, *out, src, staging);
}

/* Several matrices stacked by rows into one allocation (all or none may
 * be present; absent ones make the result NULL). */
static lmc_status alloc_stack(cu_model *m, const lmc_cpu_mat *const *parts, int np,
                              void *staging, uint16_t **out, const char *what) {
    *out = NULL;
    size_t total = 0;
    for (int i = 0; i < np; i++) {
        if (!parts[i]->data) return LMC_OK;
        total += (size_t)parts[i]->rows * (size_t)parts[i]->cols;
    }
    lmc_status st = dev_alloc(m, total * 2, (void **)out, what);
    if (st) return st;
    m->weight_bytes += total * 2;
    size_t off = 0;
    for (int i = 0; i < np; i++) {
        if ((st = upload(m, *out + off, parts[i], staging))) return st;
        off += (size_t)parts[i]->rows * (size_t)parts[i]->cols;
    }
    return LMC_OK;
}

/* Two matrices (or vectors) of one shape, their rows interleaved into one
 * allocation: a0, b0, a1, b1, ... (both or neither may be present). */
static lmc_status alloc_interleave(cu_model *m, const lmc_cpu_mat *const parts[2],
                                   void *staging, uint16_t **out, const char *what) {
    *out = NULL;
    const lmc_cpu_mat *a = parts[0], *b = parts[1];
    if (!a->data || !b->data) return LMC_OK;
    if (a->rows != b->rows || a->cols != b->cols)
        return lmc_err(LMC_ERR_FORMAT, "device cuda: %s: the two halves differ in shape", what);
    size_t n = (size_t)a->rows * (size_t)a->cols;
    size_t unit = a->rows == 1 ? 1 : (size_t)a->cols; /* elements per interleaved row */
    lmc_status st = dev_alloc(m, 2 * n * 2, (void **)out, what);
    if (st) return st;
    m->weight_bytes += 2 * n * 2;
    uint16_t *tmp = NULL;
    CU(cudaMalloc((void **)&tmp, n * 2));
    for (int i = 0; i < 2 && !st; i++) {
        st = upload(m, tmp, parts[i], staging);
        cudaError_t e = st ? cudaSuccess
                           : cudaMemcpy2DAsync(*out + i * unit, 2 * unit * 2, tmp, unit * 2,
                                               unit * 2, n / unit, cudaMemcpyDeviceToDevice,
                                               m->stream);
        if (e == cudaSuccess && !st) e = cudaStreamSynchronize(m->stream);
        if (!st && e != cudaSuccess)
            st = lmc_err(LMC_ERR_DEVICE, "device cuda: interleaving %s: %s", what,
                         cudaGetErrorString(e));
    }
    cudaFree(tmp);
    return st;
}

static void cu_model_free(lmc_model *mm) {
    cu_model *m = (cu_model *)mm;
    if (!m) return;
    if (m->stream) cudaStreamSynchronize(m->stream);
    for (size_t i = 0; i < m->n_allocs; i++) cudaFree(m->allocs[i]);
    free(m->allocs);
    if (m->gemm_ok) lmc_cu_gemm_free(&m->gemm);
    if (m->h_state) cudaFreeHost(m->h_state);
    if (m->h_meta) cudaFreeHost(m->h_meta);
    if (m->b_have_graph) cudaGraphExecDestroy(m->b_graph);
    if (m->stream) cudaStreamDestroy(m->stream);
    free(m->layers);
    free(m->layer_window);
    free(m);
}

static lmc_status ensure_prefill_rows(cu_model *m, size_t rows) {
    if (rows <= m->pf_rows) return LMC_OK;
    CU(cudaStreamSynchronize(m->stream));
    void **bufs[] = {(void **)&m->p_x,   (void **)&m->p_norm, (void **)&m->p_qkv,
                     (void **)&m->p_q,   (void **)&m->p_attn, (void **)&m->p_gu,
                     (void **)&m->p_act, (void **)&m->p_ids};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
        dev_release(m, *bufs[i]);
        *bufs[i] = NULL;
    }
    m->pf_rows = 0;
    size_t H = (size_t)m->H, I = (size_t)m->I, QD = (size_t)m->hq * m->D;
    lmc_status st;
    if ((st = dev_alloc(m, rows * H * 4, (void **)&m->p_x, "prefill residual")) ||
        (st = dev_alloc(m, rows * H * 2, (void **)&m->p_norm, "prefill norm")) ||
        (st = dev_alloc(m, rows * (size_t)m->qkv_dim * 2, (void **)&m->p_qkv, "prefill qkv")) ||
        (st = dev_alloc(m, rows * QD * 2, (void **)&m->p_q, "prefill q")) ||
        (st = dev_alloc(m, rows * QD * 2, (void **)&m->p_attn, "prefill attention")) ||
        (st = dev_alloc(m, rows * 2 * I * 2, (void **)&m->p_gu, "prefill gate/up")) ||
        (st = dev_alloc(m, rows * I * 2, (void **)&m->p_act, "prefill activation")) ||
        (st = dev_alloc(m, rows * 4, (void **)&m->p_ids, "prefill ids")))
        return st;
    m->pf_rows = rows;
    return LMC_OK;
}

lmc_status lmc_cu_model_alloc(cu_model *m, size_t bytes, void **out, const char *what) {
    return dev_alloc(m, bytes, out, what);
}
void lmc_cu_model_release(cu_model *m, void *p) { dev_release(m, p); }
lmc_status lmc_cu_model_rows(cu_model *m, size_t rows) { return ensure_prefill_rows(m, rows); }

/* ------------------------------------------------------------ cache */

static void drop_graphs(cu_cache *c) {
    if (c->have_graph) cudaGraphExecDestroy(c->graph);
    c->have_graph = false;
    for (int i = 0; i < PF_KINDS; i++) {
        if (c->have_pf_graph[i]) cudaGraphExecDestroy(c->pf_graph[i]);
        c->have_pf_graph[i] = false;
    }
}

static lmc_status cache_reserve(cu_cache *c, size_t need) {
    cu_model *m = c->m;
    if (need <= c->cap) return LMC_OK;
    if (need > KV_HARD_MAX)
        return lmc_err(LMC_ERR_LIMIT, "cuda kv cache: %zu tokens exceed the limit of %u", need,
                       KV_HARD_MAX);
    size_t cap = c->cap ? c->cap : KV_INITIAL;
    while (cap < need) cap *= 2;
    if (cap > KV_HARD_MAX) cap = KV_HARD_MAX;
    size_t rows = (size_t)m->L * m->hkv, D = (size_t)m->D;
    size_t bytes = rows * cap * D * 2;
    uint16_t *k = NULL, *v = NULL;
    lmc_status st;
    if ((st = dev_alloc(m, bytes, (void **)&k, "kv cache keys")) ||
        (st = dev_alloc(m, bytes, (void **)&v, "kv cache values"))) {
        dev_release(m, k);
        dev_release(m, v);
        return st;
    }
    CU(cudaMemsetAsync(k, 0, bytes, m->stream));
    CU(cudaMemsetAsync(v, 0, bytes, m->stream));
    if (c->len && c->k) {
        size_t w = c->len * D * 2;
        CU(cudaMemcpy2DAsync(k, cap * D * 2, c->k, c->cap * D * 2, w, rows,
                             cudaMemcpyDeviceToDevice, m->stream));
        CU(cudaMemcpy2DAsync(v, cap * D * 2, c->v, c->cap * D * 2, w, rows,
                             cudaMemcpyDeviceToDevice, m->stream));
    }
    CU(cudaStreamSynchronize(m->stream));
    dev_release(m, c->k);
    dev_release(m, c->v);
    c->k = k;
    c->v = v;
    c->cap = cap;
    drop_graphs(c);
    return LMC_OK;
}

static size_t cu_kv_len(const lmc_kv_cache *cc) { return ((const cu_cache *)cc)->len; }

static lmc_status cu_kv_trim(lmc_kv_cache *cc, size_t n) {
    cu_cache *c = (cu_cache *)cc;
    if (n > c->len - c->floor)
        return lmc_err(LMC_ERR_STATE,
                       "kv cache trim: cannot drop %zu tokens, the cache holds %zu", n,
                       c->len - c->floor);
    c->len -= n;
    return LMC_OK;
}

static void cu_kv_clear(lmc_kv_cache *cc) {
    cu_cache *c = (cu_cache *)cc;
    c->len = 0;
    c->floor = 0;
}

static void cu_kv_free(lmc_kv_cache *cc) {
    cu_cache *c = (cu_cache *)cc;
    if (!c) return;
    cu_model *m = c->m;
    cudaStreamSynchronize(m->stream);
    drop_graphs(c);
    dev_release(m, c->k);
    dev_release(m, c->v);
    dev_release(m, c->ws);
    dev_release(m, c->d_state);
    free(c);
}

static lmc_status cu_kv_save(const lmc_kv_cache *cc, const char *path,
                             const char *const *meta_kv) {
    const cu_cache *c = (const cu_cache *)cc;
    cu_model *m = c->m;
    lmc_kv_snapshot s = {0};
    s.n_layers = (size_t)m->L;
    s.kv_heads = (size_t)m->hkv;
    s.head_dim = (size_t)m->D;
    s.n_tokens = c->len - c->floor;
    s.offset = c->len;
    s.window = (size_t)m->window;
    lmc_status st = lmc_kv_snapshot_alloc(&s);
    if (st) return st;
    size_t D = (size_t)m->D, T = s.n_tokens, per = s.kv_heads * T * D;
    uint16_t *tmp = malloc((per ? per : 1) * 2);
    if (!tmp) {
        lmc_kv_snapshot_free(&s);
        return lmc_err(LMC_ERR_NOMEM, "%s: no memory for the cache copy", path);
    }
    for (size_t l = 0; l < s.n_layers && !st; l++)
        for (int kv = 0; kv < 2 && !st; kv++) {
            const uint16_t *src = (kv ? c->v : c->k) + ((l * s.kv_heads) * c->cap + c->floor) * D;
            cudaError_t e = T ? cudaMemcpy2DAsync(tmp, T * D * 2, src, c->cap * D * 2,
                                                  T * D * 2, s.kv_heads, cudaMemcpyDeviceToHost,
                                                  m->stream)
                              : cudaSuccess;
            if (e == cudaSuccess) e = cudaStreamSynchronize(m->stream);
            if (e != cudaSuccess) {
                st = lmc_err(LMC_ERR_DEVICE, "%s: reading the cache: %s", path,
                             cudaGetErrorString(e));
                break;
            }
            float *dst = kv ? s.values[l] : s.keys[l];
            for (size_t i = 0; i < per; i++) dst[i] = lmc_bf16_to_f32(tmp[i]);
        }
    free(tmp);
    if (!st) st = lmc_kv_snapshot_save(&s, m->base.cfg.model_type, path, meta_kv);
    lmc_kv_snapshot_free(&s);
    return st;
}

static const lmc_kv_cache_vtable cu_kv_vt = {
    .len = cu_kv_len, .trim = cu_kv_trim, .clear = cu_kv_clear, .save = cu_kv_save,
    .free = cu_kv_free};

static lmc_status cu_cache_new(lmc_model *mm, lmc_kv_cache **out) {
    cu_model *m = (cu_model *)mm;
    *out = NULL;
    /* this cache's kernels take one table per layer; longrope's pick per
     * forward is the engine's (cuda_supports.c refuses the shapes it
     * cannot run) */
    if (m->inv_freq_long)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "device cuda: longrope rope scaling runs on the paged engine only");
    if (!lmc_cu_single_seq_attn_supported(m->hq, m->hkv, m->D))
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "device cuda: head_dim %d with %d/%d heads runs on the paged engine only",
                       m->D, m->hq, m->hkv);
    cu_cache *c = calloc(1, sizeof *c);
    if (!c) return lmc_err(LMC_ERR_NOMEM, "cuda kv cache: no memory");
    c->base.vt = &cu_kv_vt;
    c->m = m;
    size_t wsb = lmc_cu_attn_decode_ws_bytes(m->hq, m->hkv, m->D, m->dec_splits);
    lmc_status st = dev_alloc(m, 2 * sizeof(int32_t), (void **)&c->d_state, "cache state");
    if (!st) st = dev_alloc(m, wsb, &c->ws, "attention workspace");
    if (!st && cudaMemsetAsync(c->ws, 0, wsb, m->stream) != cudaSuccess)
        st = lmc_err(LMC_ERR_DEVICE, "cuda kv cache: clearing the attention workspace failed");
    if (!st) {
        size_t first = (size_t)m->base.cfg.max_position_embeddings;
        if (first == 0 || first > KV_INITIAL) first = KV_INITIAL;
        st = cache_reserve(c, first);
    }
    if (st) {
        cu_kv_free(&c->base);
        return st;
    }
    *out = &c->base;
    return LMC_OK;
}

static lmc_status cu_cache_load(lmc_model *mm, const char *path, lmc_kv_cache **out) {
    cu_model *m = (cu_model *)mm;
    *out = NULL;
    lmc_kv_snapshot s;
    lmc_status st = lmc_kv_snapshot_load(mm, path, &s);
    if (st) return st;
    if (s.n_tokens > s.offset || (s.n_tokens < s.offset && s.window == 0) ||
        (s.window && s.n_tokens < s.offset && s.n_tokens + 1 < s.window)) {
        lmc_kv_snapshot_free(&s);
        return lmc_err(LMC_ERR_FORMAT, "%s: cache holds %zu tokens of %zu with window %zu", path,
                       s.n_tokens, s.offset, s.window);
    }
    lmc_kv_cache *cc = NULL;
    if ((st = cu_cache_new(mm, &cc))) {
        lmc_kv_snapshot_free(&s);
        return st;
    }
    cu_cache *c = (cu_cache *)cc;
    size_t D = (size_t)m->D, T = s.n_tokens, per = s.kv_heads * T * D;
    uint16_t *tmp = NULL;
    if (!(st = cache_reserve(c, s.offset + 1))) {
        tmp = malloc((per ? per : 1) * 2);
        if (!tmp) st = lmc_err(LMC_ERR_NOMEM, "%s: no memory", path);
    }
    c->floor = s.offset - T;
    for (size_t l = 0; l < s.n_layers && !st; l++)
        for (int kv = 0; kv < 2 && !st; kv++) {
            const float *src = kv ? s.values[l] : s.keys[l];
            for (size_t i = 0; i < per; i++) tmp[i] = lmc_f32_to_bf16(src[i]);
            uint16_t *dst = (kv ? c->v : c->k) + ((l * s.kv_heads) * c->cap + c->floor) * D;
            /* ordered after cache_reserve's clearing memset on the same
             * stream; synchronized before tmp is refilled */
            cudaError_t e = T ? cudaMemcpy2DAsync(dst, c->cap * D * 2, tmp, T * D * 2,
                                                  T * D * 2, s.kv_heads, cudaMemcpyHostToDevice,
                                                  m->stream)
                              : cudaSuccess;
            if (e == cudaSuccess) e = cudaStreamSynchronize(m->stream);
            if (e != cudaSuccess)
                st = lmc_err(LMC_ERR_DEVICE, "%s: uploading the cache: %s", path,
                             cudaGetErrorString(e));
        }
    free(tmp);
    lmc_kv_snapshot_free(&s);
    if (st) {
        cu_kv_free(cc);
        return st;
    }
    c->len = c->floor + T;
    *out = cc;
    return LMC_OK;
}

/* ------------------------------------------------------------ forward */

static lmc_status gemv(cu_model *m, const uint16_t *w, int rows, int cols, int in_mode,
                       const void *x, const uint16_t *norm_w, const uint16_t *bias,
                       int out_mode, void *y) {
    if (in_mode == LMC_GEMV_IN_RMSNORM && m->norm_offset) in_mode |= LMC_GEMV_IN_NORM_OFFSET;
    if (!m->rnd) in_mode |= LMC_GEMV_IN_NO_ROUND;
    KL(lmc_cu_gemv(w, rows, cols, in_mode, x, norm_w, m->eps, bias, out_mode, y, m->num_sms,
                   (lmc_cu_stream)m->stream));
    return LMC_OK;
}

/* The rest of layer w for one row x (f32 residual) once m->d_attn holds
 * its attention: o_proj, the MLP with its input norm, and their residual
 * adds (with sandwich norms each output goes through m->y and its norm
 * first). GEMVs; the decode step's and a prefill's last row's. */
static lmc_status row_out(cu_model *m, const cu_layer *w, float *x) {
    lmc_cu_stream s = (lmc_cu_stream)m->stream;
    const int H = m->H, I = m->I, QD = m->hq * m->D;
    const int glu = m->gelu ? LMC_GEMV_OUT_GEGLU : LMC_GEMV_OUT_SWIGLU;
    lmc_status st;
    if (!m->sandwich) {
        if ((st = gemv(m, w->o, H, QD, LMC_GEMV_IN_BF16, m->d_attn, NULL, w->o_b,
                       LMC_GEMV_OUT_F32_ADD, x)) ||
            (st = gemv(m, w->gate_up, 2 * I, H, LMC_GEMV_IN_RMSNORM, x, w->post_norm,
                       w->gate_up_b, glu, m->d_act)) ||
            (st = gemv(m, w->down, H, I, LMC_GEMV_IN_BF16, m->d_act, NULL, w->down_b,
                       LMC_GEMV_OUT_F32_ADD, x)))
            return st;
        return LMC_OK;
    }
    if ((st = gemv(m, w->o, H, QD, LMC_GEMV_IN_BF16, m->d_attn, NULL, w->o_b, LMC_GEMV_OUT_F32,
                   m->y)))
        return st;
    KL(lmc_cu_norm_add(m->y, w->post_norm, 1, H, m->eps, x, m->norm_offset, m->rnd, s));
    if ((st = gemv(m, w->gate_up, 2 * I, H, LMC_GEMV_IN_RMSNORM, x, w->pre_ff_norm,
                   w->gate_up_b, glu, m->d_act)) ||
        (st = gemv(m, w->down, H, I, LMC_GEMV_IN_BF16, m->d_act, NULL, w->down_b,
                   LMC_GEMV_OUT_F32, m->y)))
        return st;
    KL(lmc_cu_norm_add(m->y, w->post_ff_norm, 1, H, m->eps, x, m->norm_offset, m->rnd, s));
    return LMC_OK;
}

/* One token whose id and position live in c->d_state; leaves the logits in
 * m->d_logits and their argmax in m->d_next. Capturable. */
static lmc_status decode_body(cu_model *m, cu_cache *c) {
    lmc_cu_stream s = (lmc_cu_stream)m->stream;
    const int H = m->H;
    lmc_status st;
    KL(lmc_cu_embed(m->embed, c->d_state + 1, 1, H, m->V, m->embed_scale, m->rnd, m->d_x, s));
    for (int l = 0; l < m->L; l++) {
        const cu_layer *w = &m->layers[l];
        size_t koff = (size_t)l * m->hkv * c->cap * m->D;
        if ((st = gemv(m, w->qkv, m->qkv_dim, H, LMC_GEMV_IN_RMSNORM, m->d_x, w->in_norm,
                       w->qkv_b, LMC_GEMV_OUT_BF16, m->d_qkv)))
            return st;
        KL(lmc_cu_attn_decode(m->d_qkv, m->hq, m->hkv, m->D, w->q_norm, w->k_norm, m->eps,
                              m->norm_offset, lmc_cu_layer_freq(m, l), m->rot,
                              lmc_cu_layer_rope_attn(m, l), c->d_state, c->k + koff,
                              c->v + koff, (int)c->cap, lmc_cu_layer_window(m, l),
                              m->attn_scale, m->attn_softcap, m->dec_splits, c->ws, m->d_attn,
                              m->rnd, 1, s));
        if ((st = row_out(m, w, m->d_x))) return st;
    }
    if ((st = gemv(m, m->lm_head, m->V, H, LMC_GEMV_IN_RMSNORM, m->d_x, m->final_norm, NULL,
                   LMC_GEMV_OUT_F32, m->d_logits)))
        return st;
    if (m->final_softcap != 0.0f)
        KL(lmc_cu_softcap(m->d_logits, (size_t)m->V, m->final_softcap, m->rnd, s));
    KL(lmc_cu_argmax(m->d_logits, m->V, m->d_argmax_ws, m->d_next, s));
    return LMC_OK;
}

/* Layer l of decode_body for one row of a batched step whose sequence
 * lives in a paged pool (cuda_batch.c, a step of one decode token): the
 * same kernels (GEMVs with the norms and GLU fused, the single-kernel
 * decode attention), the keys found through the sequence's block table.
 * x: the row's f32 residual; d_pos: its position (device); ws: a decode
 * attention workspace of the model's split count; rope_long: the table
 * longrope picked for the step. */
lmc_status lmc_cu_decode_layer_paged(cu_model *m, int l, float *x, const int32_t *d_pos,
                                     uint16_t *k_pool, uint16_t *v_pool, const int32_t *table,
                                     int block_tokens, void *ws, bool rope_long) {
    const cu_layer *w = &m->layers[l];
    lmc_status st;
    if ((st = gemv(m, w->qkv, m->qkv_dim, m->H, LMC_GEMV_IN_RMSNORM, x, w->in_norm, w->qkv_b,
                   LMC_GEMV_OUT_BF16, m->d_qkv)))
        return st;
    KL(lmc_cu_attn_decode_paged(m->d_qkv, m->hq, m->hkv, m->D, w->q_norm, w->k_norm, m->eps,
                                m->norm_offset, lmc_cu_layer_freq_sel(m, l, rope_long), m->rot,
                                lmc_cu_layer_rope_attn(m, l), d_pos, k_pool, v_pool, table,
                                block_tokens, lmc_cu_layer_window(m, l), m->attn_scale,
                                m->attn_softcap, m->dec_splits, ws, m->d_attn, m->rnd,
                                (lmc_cu_stream)m->stream));
    return row_out(m, w, x);
}

/* Diagnostics (LMC_CUDA_GRAPH_INFO set): how many of the captured graph's
 * edges are programmatic, i.e. let a kernel start before its predecessor
 * has finished. */
static void report_graph(cudaGraph_t g) {
    size_t nodes = 0, edges = 0, prog = 0;
    cudaGraphGetNodes(g, NULL, &nodes);
    cudaGraphGetEdges(g, NULL, NULL, NULL, &edges);
    cudaGraphNode_t *from = calloc(edges + 1, sizeof *from), *to = calloc(edges + 1, sizeof *to);
    cudaGraphEdgeData *data = calloc(edges + 1, sizeof *data);
    if (from && to && data && cudaGraphGetEdges(g, from, to, data, &edges) == cudaSuccess)
        for (size_t i = 0; i < edges; i++) prog += data[i].type == cudaGraphDependencyTypeProgrammatic;
    fprintf(stderr, "lmc cuda graph: %zu nodes, %zu edges, %zu programmatic\n", nodes, edges,
            prog);
    free(from);
    free(to);
    free(data);
}

static lmc_status run_decode(cu_model *m, cu_cache *c) {
    if (!c->have_graph && !c->graph_failed && !m->no_graphs) {
        cudaGraph_t g = NULL;
        CU(cudaStreamBeginCapture(m->stream, cudaStreamCaptureModeThreadLocal));
        lmc_status st = decode_body(m, c);
        cudaError_t e = cudaStreamEndCapture(m->stream, &g);
        if (st) {
            if (g) cudaGraphDestroy(g);
            return st;
        }
        if (e == cudaSuccess && getenv("LMC_CUDA_GRAPH_INFO")) report_graph(g);
        if (e == cudaSuccess && cudaGraphInstantiate(&c->graph, g, 0) == cudaSuccess)
            c->have_graph = true;
        else
            c->graph_failed = true; /* fall back to plain launches */
        if (g) cudaGraphDestroy(g);
        cudaGetLastError();
    }
    if (c->have_graph) {
        CU(cudaGraphLaunch(c->graph, m->stream));
        return LMC_OK;
    }
    return decode_body(m, c);
}

/* Rows [0, n) of the prefill buffers, positions d_state[0] + row. The last
 * layer finishes only the rows `keep` asks for: its keys and values go
 * into the cache for every row, but then only the last row goes on, through
 * the decode step's kernels (its attention over the cache, then the GEMVs),
 * or none. */
static lmc_status prefill_body(cu_model *m, cu_cache *c, int n, pf_rows keep) {
    lmc_cu_stream s = (lmc_cu_stream)m->stream;
    const int H = m->H;
    lmc_status st;
    KL(lmc_cu_embed(m->embed, m->p_ids, n, H, m->V, m->embed_scale, m->rnd, m->p_x, s));
    for (int l = 0; l < m->L; l++) {
        const cu_layer *w = &m->layers[l];
        size_t koff = (size_t)l * m->hkv * c->cap * m->D;
        const int win = lmc_cu_layer_window(m, l);
        KL(lmc_cu_rmsnorm(m->p_x, w->in_norm, n, H, m->eps, m->p_norm, m->norm_offset, m->rnd,
                          s));
        if ((st = lmc_cu_gemm(&m->gemm, m->p_norm, w->qkv, m->p_qkv, n, m->qkv_dim, H, false,
                              false, m->stream)))
            return st;
        KL(lmc_cu_qkv_post(m->p_qkv, n, m->hq, m->hkv, m->D, w->qkv_b, w->q_norm, w->k_norm,
                           m->eps, m->norm_offset, lmc_cu_layer_freq(m, l), m->rot,
                           lmc_cu_layer_rope_attn(m, l), c->d_state, m->p_q, c->k + koff,
                           c->v + koff, (int)c->cap, m->rnd, s));
        const bool tail = l == m->L - 1 && keep != PF_ROWS_ALL;
        if (tail && keep == PF_ROWS_NONE) break;
        if (tail) {
            const size_t r = (size_t)n - 1;
            float *xr = m->p_x + r * H;
            KL(lmc_cu_decode_row(m->p_qkv + r * m->qkv_dim, w->qkv_b, m->qkv_dim, m->d_qkv,
                                 m->rnd, s));
            KL(lmc_cu_attn_decode(m->d_qkv, m->hq, m->hkv, m->D, w->q_norm, w->k_norm, m->eps,
                                  m->norm_offset, lmc_cu_layer_freq(m, l), m->rot,
                                  lmc_cu_layer_rope_attn(m, l), c->d_state + 1, c->k + koff,
                                  c->v + koff, (int)c->cap, win, m->attn_scale, m->attn_softcap,
                                  m->dec_splits, c->ws, m->d_attn, m->rnd, 0, s));
            if ((st = row_out(m, w, xr))) return st;
            break;
        }
        KL(lmc_cu_attn_prefill(m->p_q, c->k + koff, c->v + koff, m->p_attn, n, m->hq, m->hkv,
                               m->D, (int)c->cap, c->d_state, win, m->attn_scale,
                               m->attn_softcap, s));
        if ((st = lmc_cu_rows_out(m, w, n))) return st;
    }
    return LMC_OK;
}

lmc_status lmc_cu_lm_head_rows(cu_model *m, int n) {
    lmc_status st = lmc_cu_gemm(&m->gemm, m->p_norm, m->lm_head, m->p_logits, n, m->V, m->H, true,
                                false, m->stream);
    if (!st && m->final_softcap != 0.0f)
        KL(lmc_cu_softcap(m->p_logits, (size_t)n * m->V, m->final_softcap, m->rnd,
                          (lmc_cu_stream)m->stream));
    return st;
}

lmc_status lmc_cu_rows_out(cu_model *m, const cu_layer *w, int n) {
    lmc_cu_stream s = (lmc_cu_stream)m->stream;
    const int H = m->H, I = m->I, QD = m->hq * m->D;
    const bool sw = m->sandwich;
    /* with sandwich norms the products land in y, normed into p_x after */
    float *out = sw ? m->y : m->p_x;
    lmc_status st;
    if ((st = lmc_cu_gemm(&m->gemm, m->p_attn, w->o, out, n, H, QD, true, !sw, m->stream)))
        return st;
    if (w->o_b) KL(lmc_cu_add_bias(out, 1, w->o_b, n, H, s));
    if (sw) KL(lmc_cu_norm_add(m->y, w->post_norm, n, H, m->eps, m->p_x, m->norm_offset, m->rnd, s));
    KL(lmc_cu_rmsnorm(m->p_x, sw ? w->pre_ff_norm : w->post_norm, n, H, m->eps, m->p_norm,
                      m->norm_offset, m->rnd, s));
    if ((st = lmc_cu_gemm(&m->gemm, m->p_norm, w->gate_up, m->p_gu, n, 2 * I, H, false, false,
                          m->stream)))
        return st;
    if (w->gate_up_b) KL(lmc_cu_add_bias(m->p_gu, 0, w->gate_up_b, n, 2 * I, s));
    KL(lmc_cu_glu(m->p_gu, n, I, m->gelu, m->p_act, m->rnd, s));
    if ((st = lmc_cu_gemm(&m->gemm, m->p_act, w->down, out, n, H, I, true, !sw, m->stream)))
        return st;
    if (w->down_b) KL(lmc_cu_add_bias(out, 1, w->down_b, n, H, s));
    if (sw)
        KL(lmc_cu_norm_add(m->y, w->post_ff_norm, n, H, m->eps, m->p_x, m->norm_offset, m->rnd, s));
    return LMC_OK;
}

/* A prefill of n rows: a full chunk replays its graph once captured. */
static lmc_status run_prefill(cu_model *m, cu_cache *c, int n, pf_rows keep) {
    if (n != PF_CHUNK || m->no_graphs) return prefill_body(m, c, n, keep);
    if (!c->have_pf_graph[keep] && !c->pf_graph_failed[keep] && c->pf_full_runs[keep]++ > 0) {
        cudaGraph_t g = NULL;
        CU(cudaStreamBeginCapture(m->stream, cudaStreamCaptureModeThreadLocal));
        lmc_status st = prefill_body(m, c, n, keep);
        cudaError_t e = cudaStreamEndCapture(m->stream, &g);
        if (st) {
            if (g) cudaGraphDestroy(g);
            return st;
        }
        if (e == cudaSuccess && cudaGraphInstantiate(&c->pf_graph[keep], g, 0) == cudaSuccess)
            c->have_pf_graph[keep] = true;
        else
            c->pf_graph_failed[keep] = true; /* plain launches from now on */
        if (g) cudaGraphDestroy(g);
        cudaGetLastError();
    }
    if (c->have_pf_graph[keep]) {
        CU(cudaGraphLaunch(c->pf_graph[keep], m->stream));
        return LMC_OK;
    }
    return prefill_body(m, c, n, keep);
}

static lmc_status check_call(cu_model *m, lmc_kv_cache *cc, const int32_t *ids, size_t n,
                             cu_cache **out) {
    if (!cc || cc->vt != &cu_kv_vt || ((cu_cache *)cc)->m != m)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "cuda forward: the KV cache was not created by this CUDA model");
    if (!ids || n == 0) return lmc_err(LMC_ERR_INVALID_ARG, "cuda forward: no tokens");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->V)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "cuda forward: token %zu is %" PRId32 ", outside the vocabulary [0, %d)",
                           i, ids[i], m->V);
    *out = (cu_cache *)cc;
    return cache_reserve(*out, (*out)->len + n);
}

/* Feeds n tokens. Afterwards the last position's logits are in d_logits
 * (when want_last) and, for all_logits, every row went to host_logits. */
static lmc_status feed(cu_model *m, cu_cache *c, const int32_t *ids, size_t n,
                       float *host_logits, bool all_logits, bool want_argmax) {
    lmc_status st;
    if (n == 1) {
        m->h_state[0] = (int32_t)c->len;
        m->h_state[1] = ids[0];
        CU(cudaMemcpyAsync(c->d_state, m->h_state, 8, cudaMemcpyHostToDevice, m->stream));
        if ((st = run_decode(m, c))) return st;
        c->len += 1;
        if (host_logits)
            CU(cudaMemcpyAsync(host_logits, m->d_logits, (size_t)m->V * 4,
                               cudaMemcpyDeviceToHost, m->stream));
        return LMC_OK;
    }
    for (size_t done = 0; done < n;) {
        size_t rows = n - done < PF_CHUNK ? n - done : PF_CHUNK;
        if ((st = ensure_prefill_rows(m, rows))) return st;
        m->h_state[0] = (int32_t)c->len;
        m->h_state[1] = (int32_t)(c->len + rows - 1); /* the last row's, for its attention */
        CU(cudaMemcpyAsync(c->d_state, m->h_state, 8, cudaMemcpyHostToDevice, m->stream));
        CU(cudaMemcpyAsync(m->p_ids, ids + done, rows * 4, cudaMemcpyHostToDevice, m->stream));
        const bool last = done + rows == n, every = all_logits && host_logits;
        if ((st = run_prefill(m, c, (int)rows,
                              every ? PF_ROWS_ALL : last ? PF_ROWS_LAST : PF_ROWS_NONE)))
            return st;
        lmc_cu_stream s = (lmc_cu_stream)m->stream;
        if (all_logits && host_logits) {
            for (size_t r = 0; r < rows; r += LOGIT_ROWS) {
                size_t rr = rows - r < LOGIT_ROWS ? rows - r : LOGIT_ROWS;
                KL(lmc_cu_rmsnorm(m->p_x + r * m->H, m->final_norm, (int)rr, m->H, m->eps,
                                  m->p_norm, m->norm_offset, m->rnd, s));
                if ((st = lmc_cu_lm_head_rows(m, (int)rr))) return st;
                CU(cudaMemcpyAsync(host_logits + (done + r) * (size_t)m->V, m->p_logits,
                                   rr * (size_t)m->V * 4, cudaMemcpyDeviceToHost, m->stream));
            }
            if (last && want_argmax) /* last row's logits are the tail of p_logits */
                CU(cudaMemcpyAsync(m->d_logits,
                                   m->p_logits + ((rows - 1) % LOGIT_ROWS) * (size_t)m->V,
                                   (size_t)m->V * 4, cudaMemcpyDeviceToDevice, m->stream));
        } else if (last) {
            if ((st = gemv(m, m->lm_head, m->V, m->H, LMC_GEMV_IN_RMSNORM,
                           m->p_x + (rows - 1) * m->H, m->final_norm, NULL, LMC_GEMV_OUT_F32,
                           m->d_logits)))
                return st;
            if (m->final_softcap != 0.0f)
                KL(lmc_cu_softcap(m->d_logits, (size_t)m->V, m->final_softcap, m->rnd, s));
            if (host_logits)
                CU(cudaMemcpyAsync(host_logits, m->d_logits, (size_t)m->V * 4,
                                   cudaMemcpyDeviceToHost, m->stream));
        }
        if (last && want_argmax)
            KL(lmc_cu_argmax(m->d_logits, m->V, m->d_argmax_ws, m->d_next, s));
        c->len += rows;
        done += rows;
    }
    return LMC_OK;
}

static lmc_status cu_forward(lmc_model *mm, lmc_kv_cache *cc, const int32_t *ids, size_t n,
                             float *logits, bool all_logits) {
    cu_model *m = (cu_model *)mm;
    cu_cache *c = NULL;
    lmc_status st = check_call(m, cc, ids, n, &c);
    if (st) return st;
    size_t len0 = c->len;
    st = feed(m, c, ids, n, logits, all_logits, false);
    cudaError_t e = cudaStreamSynchronize(m->stream);
    if (!st && e != cudaSuccess)
        st = lmc_err(LMC_ERR_DEVICE, "cuda forward: %s", cudaGetErrorString(e));
    if (st) c->len = len0;
    return st;
}

static lmc_status cu_forward_greedy(lmc_model *mm, lmc_kv_cache *cc, const int32_t *ids,
                                    size_t n, int32_t *next, float *logprob) {
    cu_model *m = (cu_model *)mm;
    cu_cache *c = NULL;
    lmc_status st = check_call(m, cc, ids, n, &c);
    if (st) return st;
    size_t len0 = c->len;
    st = feed(m, c, ids, n, NULL, false, true);
    if (!st) {
        cudaError_t e = cudaMemcpyAsync(m->h_state + 2, m->d_next, 8, cudaMemcpyDeviceToHost,
                                        m->stream);
        if (e == cudaSuccess) e = cudaStreamSynchronize(m->stream);
        if (e != cudaSuccess) {
            st = lmc_err(LMC_ERR_DEVICE, "cuda forward: %s", cudaGetErrorString(e));
        } else {
            *next = m->h_state[2];
            if (logprob) memcpy(logprob, &m->h_state[3], sizeof *logprob);
        }
    } else {
        cudaStreamSynchronize(m->stream);
    }
    if (st) c->len = len0;
    return st;
}

/* The vtable's forwards: the single-sequence path for this file's own
 * caches, the engine-backed one (models/kv_cache.c) for the others. */
static lmc_status cu_forward_any(lmc_model *mm, lmc_kv_cache *cc, const int32_t *ids, size_t n,
                                 float *logits, bool all_logits) {
    if (cc && cc->vt == &cu_kv_vt) return cu_forward(mm, cc, ids, n, logits, all_logits);
    return lmc_kv_cache_forward(mm, cc, ids, n, logits, all_logits);
}

static lmc_status cu_forward_greedy_any(lmc_model *mm, lmc_kv_cache *cc, const int32_t *ids,
                                        size_t n, int32_t *next, float *logprob) {
    if (cc && cc->vt == &cu_kv_vt) return cu_forward_greedy(mm, cc, ids, n, next, logprob);
    return lmc_kv_cache_forward_greedy(mm, cc, ids, n, next, logprob);
}

/* Whose caches the API gets by default for a model both can run: the
 * single-sequence caches of this file (0) or the paged engine's (1). The
 * engine's single-sequence prompts now run the flash prefill kernel over
 * their block table (cuda_batch.c); until that has been timed on a GPU
 * against these caches (bench/single_seq_vs_base.sh), they stay the
 * default. LMC_CUDA_SINGLE_SEQ_CACHE=0 or 1 picks either. */
#define CU_ENGINE_CACHES_DEFAULT 0

/* The engine's caches always for a feature checked through the engine only
 * (LMC_CUDA_ENGINE_FEATURES: gemma3_text, partial rotary, longrope) or a
 * head size that is the engine's only; this file's for the shapes only it
 * runs; otherwise as above. */
static bool cu_own_cache(lmc_model *mm) {
    const cu_model *m = (const cu_model *)mm;
    if (m->engine_caches) return false;
    /* shapes the paged attention has no kernel for (head_dim 16 or 32,
     * or 9 to 16 query heads per kv head; cuda_supports.c lets them
     * through for these caches) */
    if (!lmc_cu_paged_attn_supported(m->hq, m->hkv, m->D)) return true;
    const char *e = getenv("LMC_CUDA_SINGLE_SEQ_CACHE");
    if (e && (!strcmp(e, "0") || !strcmp(e, "1"))) return e[0] == '1';
    return !CU_ENGINE_CACHES_DEFAULT;
}

static const lmc_model_vtable cu_model_vt = {
    .forward = cu_forward_any,
    .forward_greedy = cu_forward_greedy_any,
    .free = cu_model_free,
    .pool_new = lmc_cu_pool_new,
    .forward_batch = lmc_cu_forward_batch,
    .batch_rows = PF_CHUNK,
    .pool_read = lmc_cu_pool_read,
    .pool_write = lmc_cu_pool_write,
    .cache_new = cu_cache_new,
    .cache_load = cu_cache_load,
    .own_cache = cu_own_cache,
};

/* ------------------------------------------------------------ create */

static lmc_status upload_weights(cu_model *m, const lmc_llama_weights *w, void *staging) {
    lmc_status st;
    if ((st = alloc_upload(m, &w->embed, staging, &m->embed, "embed_tokens")) ||
        (st = alloc_upload(m, &w->final_norm, staging, &m->final_norm, "norm")))
        return st;
    if (w->lm_head.data == w->embed.data)
        m->lm_head = m->embed;
    else if ((st = alloc_upload(m, &w->lm_head, staging, &m->lm_head, "lm_head")))
        return st;
    for (int l = 0; l < m->L; l++) {
        const lmc_llama_layer *s = &w->layers[l];
        cu_layer *d = &m->layers[l];
        const lmc_cpu_mat *qkv[] = {&s->q, &s->k, &s->v}, *qkvb[] = {&s->q_b, &s->k_b, &s->v_b};
        const lmc_cpu_mat *gu[] = {&s->gate, &s->up}, *gub[] = {&s->gate_b, &s->up_b};
        if ((st = alloc_upload(m, &s->in_norm, staging, &d->in_norm, "input_layernorm")) ||
            (st = alloc_upload(m, &s->post_norm, staging, &d->post_norm,
                               "post_attention_layernorm")) ||
            (st = alloc_upload(m, &s->pre_ff_norm, staging, &d->pre_ff_norm,
                               "pre_feedforward_layernorm")) ||
            (st = alloc_upload(m, &s->post_ff_norm, staging, &d->post_ff_norm,
                               "post_feedforward_layernorm")) ||
            (st = alloc_stack(m, qkv, 3, staging, &d->qkv, "q/k/v_proj")) ||
            (st = alloc_stack(m, qkvb, 3, staging, &d->qkv_b, "q/k/v_proj bias")) ||
            (st = alloc_upload(m, &s->o, staging, &d->o, "o_proj")) ||
            (st = alloc_upload(m, &s->o_b, staging, &d->o_b, "o_proj bias")) ||
            (st = alloc_upload(m, &s->q_norm, staging, &d->q_norm, "q_norm")) ||
            (st = alloc_upload(m, &s->k_norm, staging, &d->k_norm, "k_norm")) ||
            (st = alloc_interleave(m, gu, staging, &d->gate_up, "gate/up_proj")) ||
            (st = alloc_interleave(m, gub, staging, &d->gate_up_b, "gate/up_proj bias")) ||
            (st = alloc_upload(m, &s->down, staging, &d->down, "down_proj")) ||
            (st = alloc_upload(m, &s->down_b, staging, &d->down_b, "down_proj bias")))
            return lmc_err_prefix(st, "layer %d", l);
    }
    return LMC_OK;
}

static size_t largest_tensor_bytes(const lmc_llama_weights *w) {
    size_t best = 0;
#define T(mat)                                                                            \
    do {                                                                                  \
        size_t b_ = (size_t)(mat).rows * (size_t)(mat).cols * lmc_dtype_size((mat).dt);    \
        if ((mat).data && b_ > best) best = b_;                                           \
    } while (0)
    T(w->embed);
    T(w->lm_head);
    for (size_t l = 0; l < w->n_layers; l++) {
        const lmc_llama_layer *s = &w->layers[l];
        T(s->q);
        T(s->k);
        T(s->v);
        T(s->o);
        T(s->gate);
        T(s->up);
        T(s->down);
    }
#undef T
    return best;
}

/* rot / 2 frequencies of a RoPE table to new device memory. */
static lmc_status upload_freqs(cu_model *m, const float *host, float **freq, const char *what) {
    const size_t bytes = (size_t)m->rot / 2 * 4;
    cudaError_t e;
    lmc_status st = dev_alloc(m, bytes, (void **)freq, what);
    if (!st && ((e = cudaMemcpyAsync(*freq, host, bytes, cudaMemcpyHostToDevice, m->stream)) !=
                    cudaSuccess ||
                (e = cudaStreamSynchronize(m->stream)) != cudaSuccess))
        st = lmc_err(LMC_ERR_DEVICE, "device cuda: %s upload: %s", what, cudaGetErrorString(e));
    return st;
}

/* A RoPE table of the plan (the sliding layers' with local) on the device:
 * rot / 2 frequencies and the factor for cos and sin; longrope's long
 * table too (the global one only: a local table is never longrope). */
static lmc_status upload_rope(cu_model *m, const lmc_arch_plan *plan, const lmc_model_config *c,
                              bool local, float **freq, float *attn) {
    lmc_rope rope;
    lmc_status st = lmc_arch_rope_init(plan, c, local, &rope);
    if (st) return st;
    *attn = rope.attn_factor;
    st = upload_freqs(m, rope.inv_freq, freq,
                      local ? "local rope frequencies" : "rope frequencies");
    if (!st && !local && rope.inv_freq_long) {
        st = upload_freqs(m, rope.inv_freq_long, &m->inv_freq_long, "long rope frequencies");
        m->rope_long_after = rope.long_after;
    }
    lmc_rope_free(&rope);
    return st;
}

/* The embedding scale in the checkpoint's dtype, as the reference
 * multiplies by it (0: none). */
static float embed_scale(float scale, lmc_dtype dt) {
    if (scale == 0.0f) return 0.0f;
    if (dt == LMC_DT_BF16) return lmc_bf16_to_f32(lmc_f32_to_bf16(scale));
    if (dt == LMC_DT_F16) return lmc_f16_to_f32(lmc_f32_to_f16(scale));
    return scale;
}

/* The plan's features (those cuda_supports.c lets through) into the model:
 * each stays at its plain value for a plan without it, so those models
 * run exactly the kernels and arguments they always did. */
static lmc_status plan_features(cu_model *m, const lmc_arch_plan *plan,
                                const lmc_model_config *c) {
    const unsigned f = lmc_arch_plan_features(plan, c);
    m->norm_offset = plan->arch->norm == LMC_NORM_ONE_PLUS_W;
    m->sandwich = plan->arch->sandwich_norms;
    m->gelu = plan->act == LMC_GLU_GELU_TANH;
    m->attn_scale = f & LMC_FEAT_ATTN_SCALE ? plan->attn_scale : 0.0f;
    m->attn_softcap = plan->attn_softcap;
    m->final_softcap = plan->final_softcap;
    m->rot = (int)plan->rot_dim;
    /* the engine's caches for what only it runs: its features, and head
     * sizes the single-sequence kernels have none for (cuda_supports.c) */
    m->engine_caches = (f & LMC_CUDA_ENGINE_FEATURES) != 0 ||
                       !lmc_cu_single_seq_attn_supported(m->hq, m->hkv, m->D);
    m->layer_window = malloc((size_t)m->L * sizeof *m->layer_window);
    if (!m->layer_window) return lmc_err(LMC_ERR_NOMEM, "device cuda: no memory");
    for (int l = 0; l < m->L; l++) m->layer_window[l] = (int)plan->layer_window[l];
    return LMC_OK;
}

lmc_status lmc_cuda_model_create(const lmc_loaded_model *lm, const lmc_arch_plan *plan,
                                 lmc_model **out) {
    if (!lm || !lm->config || !lm->weights || !plan || !out)
        return lmc_err(LMC_ERR_INVALID_ARG, "device cuda: config, weights and out are required");
    *out = NULL;
    const lmc_model_config *c = lm->config;
    lmc_status st = LMC_OK;
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0)
        return lmc_err(LMC_ERR_DEVICE, "device cuda: no CUDA device available (%s)",
                       e != cudaSuccess ? cudaGetErrorString(e) : "count is 0");
    cu_model *m = calloc(1, sizeof *m);
    if (!m) return lmc_err(LMC_ERR_NOMEM, "device cuda: no memory");
    m->base.vt = &cu_model_vt;
    m->base.cfg = *c;
    m->base.cfg.sliding_window = (int64_t)plan->cache_window;
    m->base.device = LMC_DEVICE_CUDA;
    m->H = (int)c->hidden_size;
    m->I = (int)c->intermediate_size;
    m->V = (int)c->vocab_size;
    m->L = (int)c->num_hidden_layers;
    m->hq = (int)c->num_attention_heads;
    m->hkv = (int)c->num_key_value_heads;
    m->D = (int)c->head_dim;
    m->qkv_dim = (m->hq + 2 * m->hkv) * m->D;
    m->window = (int)plan->cache_window;
    m->eps = (float)c->rms_norm_eps;
    if ((st = plan_features(m, plan, c))) {
        cu_model_free(&m->base);
        return st;
    }
    lmc_llama_weights w;
    memset(&w, 0, sizeof w);
    void *staging = NULL;
    int dev = 0;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess ||
        (e = cudaDeviceGetAttribute(&m->num_sms, cudaDevAttrMultiProcessorCount, dev)) !=
            cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaMallocHost((void **)&m->h_state, 16)) != cudaSuccess) {
        st = lmc_err(LMC_ERR_DEVICE, "device cuda: setup: %s", cudaGetErrorString(e));
        goto fail;
    }
    m->dec_splits = lmc_cu_attn_decode_splits(m->hkv, m->num_sms);
    const char *graphs = getenv("LMC_CUDA_GRAPHS");
    m->no_graphs = graphs && !strcmp(graphs, "0");
    const char *pdl = getenv("LMC_CUDA_PDL");
    lmc_cu_set_pdl(!(pdl && !strcmp(pdl, "0")));
    int maxc = m->H > m->I ? m->H : m->I;
    if (m->hq * m->D > maxc) maxc = m->hq * m->D;
    if ((e = (cudaError_t)lmc_cu_gemv_setup(maxc)) != cudaSuccess ||
        (e = (cudaError_t)lmc_cu_attn_decode_setup(m->hq, m->hkv, m->D)) != cudaSuccess ||
        (e = (cudaError_t)lmc_cu_decode_kernels_setup()) != cudaSuccess) {
        st = lmc_err(LMC_ERR_DEVICE, "device cuda: gemv setup: %s", cudaGetErrorString(e));
        goto fail;
    }
    if ((st = lmc_cu_gemm_init(&m->gemm, PF_CHUNK))) goto fail;
    m->gemm_ok = true;
    m->layers = calloc((size_t)m->L, sizeof *m->layers);
    if (!m->layers) {
        st = lmc_err(LMC_ERR_NOMEM, "device cuda: no memory");
        goto fail;
    }
    if ((st = lmc_llama_weights_bind(plan, c, lm->weights, false, &w))) goto fail;
    /* a bf16 reference rounds between ops; f32 and f16 ones keep more */
    m->rnd = w.embed.dt == LMC_DT_BF16;
    m->embed_scale = embed_scale(plan->embed_scale, w.embed.dt);
    if ((e = cudaMalloc(&staging, largest_tensor_bytes(&w) + 16)) != cudaSuccess) {
        st = lmc_err(LMC_ERR_DEVICE, "device cuda: upload staging buffer: %s",
                     cudaGetErrorString(e));
        goto fail;
    }
    if ((st = upload_weights(m, &w, staging))) goto fail;
    cudaFree(staging);
    staging = NULL;
    lmc_llama_weights_free(&w);

    if ((st = upload_rope(m, plan, c, false, &m->inv_freq, &m->rope_attn)) ||
        (plan->local_rope &&
         (st = upload_rope(m, plan, c, true, &m->inv_freq_local, &m->rope_attn_local))))
        goto fail;
    size_t QD = (size_t)m->hq * m->D;
    if ((st = dev_alloc(m, (size_t)m->H * 4, (void **)&m->d_x, "decode residual")) ||
        (st = dev_alloc(m, (size_t)m->V * 4, (void **)&m->d_logits, "logits")) ||
        (st = dev_alloc(m, (size_t)m->qkv_dim * 2, (void **)&m->d_qkv, "decode qkv")) ||
        (st = dev_alloc(m, QD * 2, (void **)&m->d_attn, "decode attention")) ||
        (st = dev_alloc(m, (size_t)m->I * 2, (void **)&m->d_act, "decode activation")) ||
        (st = dev_alloc(m, 16, (void **)&m->d_next, "argmax")) ||
        (st = dev_alloc(m, lmc_cu_argmax_ws_bytes(), &m->d_argmax_ws, "argmax workspace")) ||
        (st = dev_alloc(m, (size_t)LOGIT_ROWS * m->V * 4, (void **)&m->p_logits,
                        "logits rows")) ||
        (m->sandwich && (st = dev_alloc(m, (size_t)PF_CHUNK * m->H * 4, (void **)&m->y,
                                        "sublayer output rows"))))
        goto fail;
    *out = &m->base;
    return LMC_OK;
fail:
    if (staging) cudaFree(staging);
    lmc_llama_weights_free(&w);
    cu_model_free(&m->base);
    return st;
}

size_t lmc_llama_cuda_weight_bytes(const lmc_model *m) {
    return m && m->vt == &cu_model_vt ? ((const cu_model *)m)->weight_bytes : 0;
}

int lmc_llama_cuda_graph_state(const lmc_kv_cache *cc) {
    if (cc && cc->vt == &cu_kv_vt) {
        const cu_cache *c = (const cu_cache *)cc;
        return c->have_graph ? 1 : c->graph_failed ? -1 : 0;
    }
    const lmc_model *mm = lmc_kv_cache_model(cc); /* an engine-backed cache */
    if (!mm || mm->vt != &cu_model_vt) return 0;
    const cu_model *m = (const cu_model *)mm;
    return m->b_have_graph ? 1 : m->b_graph_failed ? -1 : 0;
}
