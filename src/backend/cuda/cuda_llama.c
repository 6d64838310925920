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
 * Generation runs on the paged KV pool (cuda_batch.c): every KV cache of
 * the API is a sequence of a pool of its own (models/kv_cache.c), fed
 * through lmc_cu_forward_batch in steps of at most PF_CHUNK rows; this file
 * holds the model's weights, scratch buffers and the dense part of a layer
 * (lmc_cu_rows_out). */
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

/* ------------------------------------------------------------ forward */

lmc_status lmc_cu_rows_out(cu_model *m, const cu_layer *w, int n) {
    lmc_cu_stream s = (lmc_cu_stream)m->stream;
    const int H = m->H, I = m->I, QD = m->hq * m->D;
    lmc_status st;
    if ((st = lmc_cu_gemm(&m->gemm, m->p_attn, w->o, m->p_x, n, H, QD, true, true, m->stream)))
        return st;
    if (w->o_b) KL(lmc_cu_add_bias(m->p_x, 1, w->o_b, n, H, s));
    KL(lmc_cu_rmsnorm(m->p_x, w->post_norm, n, H, m->eps, m->p_norm, m->rnd, s));
    if ((st = lmc_cu_gemm(&m->gemm, m->p_norm, w->gate_up, m->p_gu, n, 2 * I, H, false, false,
                          m->stream)))
        return st;
    if (w->gate_up_b) KL(lmc_cu_add_bias(m->p_gu, 0, w->gate_up_b, n, 2 * I, s));
    KL(lmc_cu_swiglu(m->p_gu, n, I, m->p_act, m->rnd, s));
    if ((st = lmc_cu_gemm(&m->gemm, m->p_act, w->down, m->p_x, n, H, I, true, true, m->stream)))
        return st;
    if (w->down_b) KL(lmc_cu_add_bias(m->p_x, 1, w->down_b, n, H, s));
    return LMC_OK;
}

static const lmc_model_vtable cu_model_vt = {
    .forward = lmc_kv_cache_forward,
    .forward_greedy = lmc_kv_cache_forward_greedy,
    .free = cu_model_free,
    .pool_new = lmc_cu_pool_new,
    .forward_batch = lmc_cu_forward_batch,
    .batch_rows = PF_CHUNK,
    .pool_read = lmc_cu_pool_read,
    .pool_write = lmc_cu_pool_write,
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
    if ((e = cudaMalloc(&staging, largest_tensor_bytes(&w) + 16)) != cudaSuccess) {
        st = lmc_err(LMC_ERR_DEVICE, "device cuda: upload staging buffer: %s",
                     cudaGetErrorString(e));
        goto fail;
    }
    if ((st = upload_weights(m, &w, staging))) goto fail;
    cudaFree(staging);
    staging = NULL;
    lmc_llama_weights_free(&w);

    lmc_rope rope;
    if ((st = lmc_arch_rope_init(plan, c, false, &rope))) goto fail;
    m->rope_attn = rope.attn_factor;
    st = dev_alloc(m, (size_t)m->D / 2 * 4, (void **)&m->inv_freq, "rope frequencies");
    if (!st && ((e = cudaMemcpyAsync(m->inv_freq, rope.inv_freq, (size_t)m->D / 2 * 4,
                                     cudaMemcpyHostToDevice, m->stream)) != cudaSuccess ||
                (e = cudaStreamSynchronize(m->stream)) != cudaSuccess))
        st = lmc_err(LMC_ERR_DEVICE, "device cuda: rope upload: %s", cudaGetErrorString(e));
    lmc_rope_free(&rope);
    if (st) goto fail;
    size_t QD = (size_t)m->hq * m->D;
    if ((st = dev_alloc(m, (size_t)m->H * 4, (void **)&m->d_x, "decode residual")) ||
        (st = dev_alloc(m, (size_t)m->V * 4, (void **)&m->d_logits, "logits")) ||
        (st = dev_alloc(m, (size_t)m->qkv_dim * 2, (void **)&m->d_qkv, "decode qkv")) ||
        (st = dev_alloc(m, QD * 2, (void **)&m->d_attn, "decode attention")) ||
        (st = dev_alloc(m, (size_t)m->I * 2, (void **)&m->d_act, "decode activation")) ||
        (st = dev_alloc(m, 16, (void **)&m->d_next, "argmax")) ||
        (st = dev_alloc(m, lmc_cu_argmax_ws_bytes(), &m->d_argmax_ws, "argmax workspace")) ||
        (st = dev_alloc(m, (size_t)LOGIT_ROWS * m->V * 4, (void **)&m->p_logits,
                        "logits rows")))
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
    const lmc_model *mm = lmc_kv_cache_model(cc);
    if (!mm || mm->vt != &cu_model_vt) return 0;
    const cu_model *m = (const cu_model *)mm;
    return m->b_have_graph ? 1 : m->b_graph_failed ? -1 : 0;
}
