/* The llama family on the CPU: llama, mistral (sliding window), qwen2 (q/k/v
 * bias), qwen3 (per-head q/k RMSNorm, explicit head_dim), phi3 (fused
 * q/k/v and gate/up weights, partial rotary embedding) and gemma3_text
 * (Gemma 3: scaled embeddings, (1 + w) norms around both sublayers, GeGLU,
 * sliding and full attention layers with their own RoPE). Weights are
 * views into the mmapped safetensors; activations are fp32. For bf16/fp16
 * checkpoints the activations are rounded to that dtype after each op, the
 * way a model computed in that dtype (transformers, mlx) rounds them, so
 * greedy decoding follows the reference. */
#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/cpu_paged_attn.h"
#include "base/error.h"
#include "engine/kv_pool.h"
#include "base/json.h"
#include "models/kv_cache_cpu.h"
#include "models/llama_weights.h"
#include "models/rope.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest run of tokens pushed through the layers at once; longer prompts
 * are processed in pieces (bounding activation memory). */
#define PREFILL_CHUNK 512

typedef struct {
    lmc_model base;
    lmc_llama_weights w;
    lmc_rope rope;
    size_t window;
    float scale;
    size_t rot_dim;   /* the rotated leading values of each head (phi3: partial) */
    lmc_dtype act_dt; /* rounding of activations: F32 (none), BF16 or F16 */
    /* lmc_cpu_rmsnorm, or gemma3's (1 + w) form */
    void (*norm)(const float *, const lmc_cpu_mat *, float, size_t, size_t, float *, lmc_dtype);
    /* gemma3_text */
    bool gemma;
    float embed_scale;     /* sqrt(hidden_size) in the activation dtype */
    lmc_rope rope_local;   /* the sliding layers' table */
    size_t *layer_window;  /* per layer: the window, 0 for full attention */
} llama_model;

/* ------------------------------------------------------------ config */

/* partial_rotary_factor: under rope_parameters (transformers 5) or at the
 * top level; 1 when absent. */
static double partial_rotary(json_object *raw) {
    json_object *rp = lmc_json_get(raw, "rope_parameters");
    json_object *o = rp ? lmc_json_get(rp, "partial_rotary_factor") : NULL;
    if (!o) o = lmc_json_get(raw, "partial_rotary_factor");
    if (!o) return 1.0;
    return json_object_is_type(o, json_type_int) || json_object_is_type(o, json_type_double)
               ? json_object_get_double(o)
               : NAN;
}

/* gemma3_text's own keys: the activation, no soft-capping, the attention
 * scalar. */
static lmc_status validate_gemma3(json_object *raw) {
    json_object *o = lmc_json_get(raw, "hidden_activation"); /* NULL-safe */
    const char *act = o ? json_object_get_string(o) : "gelu_pytorch_tanh";
    if (!act || strcmp(act, "gelu_pytorch_tanh"))
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "config.json: hidden_activation '%s' is not supported (gelu_pytorch_tanh)",
                       act ? act : "null");
    static const char *const capping[] = {"final_logit_softcapping", "attn_logit_softcapping"};
    for (size_t i = 0; i < 2; i++) {
        o = lmc_json_get(raw, capping[i]);
        if (o && !json_object_is_type(o, json_type_null))
            return lmc_err(LMC_ERR_UNSUPPORTED, "config.json: %s is not supported", capping[i]);
    }
    o = lmc_json_get(raw, "query_pre_attn_scalar");
    if (o && !(json_object_is_type(o, json_type_int) || json_object_is_type(o, json_type_double)))
        return lmc_err(LMC_ERR_FORMAT, "config.json: query_pre_attn_scalar must be a number");
    if (o && !(json_object_get_double(o) > 0.0))
        return lmc_err(LMC_ERR_FORMAT, "config.json: query_pre_attn_scalar must be positive");
    return LMC_OK;
}

static lmc_status validate_config(const lmc_model_config *c, json_object *raw) {
    const char *mt = c->model_type;
    bool gemma = !strcmp(mt, "gemma3_text");
    if (strcmp(mt, "llama") && strcmp(mt, "mistral") && strcmp(mt, "qwen2") &&
        strcmp(mt, "qwen3") && strcmp(mt, "phi3") && !gemma)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "config.json: model_type '%s' is not in the llama family "
                       "(llama, mistral, qwen2, qwen3, phi3, gemma3_text)",
                       mt);
#define POSITIVE(field)                                                                   \
    if (c->field <= 0)                                                                    \
        return lmc_err(LMC_ERR_FORMAT, "config.json: " #field " must be positive, got %" PRId64, \
                       (int64_t)c->field);
    POSITIVE(vocab_size)
    POSITIVE(hidden_size)
    POSITIVE(intermediate_size)
    POSITIVE(num_hidden_layers)
    POSITIVE(num_attention_heads)
    POSITIVE(num_key_value_heads)
    POSITIVE(head_dim)
#undef POSITIVE
    if (c->num_attention_heads % c->num_key_value_heads)
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: num_attention_heads (%" PRId64
                       ") is not a multiple of num_key_value_heads (%" PRId64 ")",
                       c->num_attention_heads, c->num_key_value_heads);
    json_object *hd = raw ? lmc_json_get(raw, "head_dim") : NULL;
    if (!hd && c->hidden_size % c->num_attention_heads)
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: hidden_size (%" PRId64
                       ") is not a multiple of num_attention_heads (%" PRId64
                       ") and no head_dim is given",
                       c->hidden_size, c->num_attention_heads);
    if (c->head_dim % 2 || c->head_dim > 1024)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "config.json: head_dim %" PRId64 " must be even and at most 1024",
                       c->head_dim);
    if (c->hidden_size > (1 << 20) || c->intermediate_size > (1 << 22) ||
        c->vocab_size > (1 << 24) || c->num_hidden_layers > 4096 ||
        c->num_attention_heads > 4096)
        return lmc_err(LMC_ERR_LIMIT, "config.json: model dimensions are beyond supported limits");
    if (!(c->rms_norm_eps >= 0.0) || !(c->rope_theta > 0.0))
        return lmc_err(LMC_ERR_FORMAT, "config.json: rms_norm_eps must be >= 0 and rope_theta > 0");
    lmc_status st = lmc_rope_check(c);
    if (st) return st;
    const double prf = partial_rotary(raw);
    if (!(prf > 0.0 && prf <= 1.0))
        return lmc_err(LMC_ERR_FORMAT, "config.json: partial_rotary_factor must be in (0, 1]");
    const size_t rot = (size_t)((double)c->head_dim * prf);
    if (rot < 2 || rot % 2)
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: partial_rotary_factor %g leaves %zu rotated values of "
                       "head_dim %" PRId64 " (a positive even count is needed)",
                       prf, rot, c->head_dim);
    if (!gemma && c->hidden_act[0] && strcmp(c->hidden_act, "silu"))
        return lmc_err(LMC_ERR_UNSUPPORTED, "config.json: hidden_act '%s' is not supported (silu)",
                       c->hidden_act);
    if (c->sliding_window < 0)
        return lmc_err(LMC_ERR_FORMAT, "config.json: sliding_window must not be negative");
    return gemma ? validate_gemma3(raw) : LMC_OK;
}

lmc_status lmc_llama_require_full_rotary(const lmc_loaded_model *lm, const char *who) {
    if (partial_rotary(lm->config_json) == 1.0) return LMC_OK;
    return lmc_err(LMC_ERR_UNSUPPORTED,
                   "%s: config.json asks for a partial rotary embedding, which only the CPU "
                   "model supports",
                   who);
}

lmc_status lmc_llama_effective_window(const lmc_loaded_model *lm, int64_t *window) {
    const lmc_model_config *c = lm->config;
    int64_t L = c->num_hidden_layers, sliding = 0;
    *window = 0;
    if (c->sliding_window <= 0) return LMC_OK;
    json_object *types = lm->config_json ? lmc_json_get(lm->config_json, "layer_types") : NULL;
    if (types && json_object_is_type(types, json_type_array)) {
        size_t n = json_object_array_length(types);
        for (size_t i = 0; i < n; i++) {
            const char *t = json_object_get_string(json_object_array_get_idx(types, i));
            if (t && !strcmp(t, "sliding_attention")) sliding++;
            else if (!t || strcmp(t, "full_attention"))
                return lmc_err(LMC_ERR_UNSUPPORTED, "config.json: layer_types[%zu] is '%s'", i,
                               t ? t : "null");
        }
        if ((int64_t)n != L)
            return lmc_err(LMC_ERR_FORMAT,
                           "config.json: layer_types has %zu entries for %" PRId64 " layers", n, L);
    } else if (!strcmp(c->model_type, "qwen2") || !strcmp(c->model_type, "qwen3")) {
        /* Without layer_types these slide from layer max_window_layers on. */
        int64_t mwl = 28;
        json_object *o = lm->config_json ? lmc_json_get(lm->config_json, "max_window_layers") : NULL;
        if (o && json_object_is_type(o, json_type_int)) mwl = json_object_get_int64(o);
        sliding = mwl >= L ? 0 : L - (mwl > 0 ? mwl : 0);
    } else {
        sliding = L;
    }
    if (sliding && sliding != L)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "config.json: %" PRId64 " of %" PRId64
                       " layers use a sliding window; mixing windowed and full attention "
                       "layers is not supported",
                       sliding, L);
    *window = sliding ? c->sliding_window : 0;
    return LMC_OK;
}

/* ------------------------------------------------------------ forward */

typedef struct {
    float *x, *h, *q, *k, *v, *att, *o, *g, *u;
} workspace;

static void ws_free(workspace *w) {
    free(w->x), free(w->h), free(w->q), free(w->k), free(w->v);
    free(w->att), free(w->o), free(w->g), free(w->u);
}

static lmc_status ws_alloc(const lmc_model_config *c, size_t n, workspace *w) {
    size_t H = (size_t)c->hidden_size, qd = (size_t)(c->num_attention_heads * c->head_dim);
    size_t kvd = (size_t)(c->num_key_value_heads * c->head_dim), I = (size_t)c->intermediate_size;
    memset(w, 0, sizeof *w);
    w->x = malloc(n * H * sizeof(float));
    w->h = malloc(n * H * sizeof(float));
    w->q = malloc(n * qd * sizeof(float));
    w->k = malloc(n * kvd * sizeof(float));
    w->v = malloc(n * kvd * sizeof(float));
    w->att = malloc(n * qd * sizeof(float));
    w->o = malloc(n * H * sizeof(float));
    w->g = malloc(n * I * sizeof(float));
    w->u = malloc(n * I * sizeof(float));
    if (!w->x || !w->h || !w->q || !w->k || !w->v || !w->att || !w->o || !w->g || !w->u) {
        ws_free(w);
        return lmc_err(LMC_ERR_NOMEM, "forward: no memory for activations of %zu tokens", n);
    }
    return LMC_OK;
}

/* Several matmuls over one input (q/k/v, gate/up), then the rounding. */
static lmc_status linear_multi(const llama_model *m, const lmc_cpu_mat *const *w,
                               const lmc_cpu_mat *const *b, size_t count, const float *x,
                               size_t n, float *const *y) {
    const lmc_cpu_mat *bias[4];
    for (size_t i = 0; i < count; i++) bias[i] = b[i] && b[i]->data ? b[i] : NULL;
    lmc_status st = lmc_cpu_matmul_multi(w, bias, count, x, n, y);
    for (size_t i = 0; i < count && !st; i++) lmc_cpu_round(y[i], n * (size_t)w[i]->rows, m->act_dt);
    return st;
}

/* Matmul followed by the activation-dtype rounding. */
static lmc_status linear(const llama_model *m, const lmc_cpu_mat *w, const lmc_cpu_mat *b,
                         const float *x, size_t n, float *y) {
    lmc_status st = lmc_cpu_matmul(w, b && b->data ? b : NULL, x, n, y);
    if (!st) lmc_cpu_round(y, n * (size_t)w->rows, m->act_dt);
    return st;
}

static void store_kv(lmc_cpu_kv_cache *c, size_t l, const float *k, const float *v, size_t n) {
    size_t hd = c->head_dim, kvh = c->kv_heads;
    size_t first = c->ring && n > c->ring ? n - c->ring : 0;
    for (size_t i = first; i < n; i++) {
        size_t s = lmc_cpu_kv_slot(c, c->offset + i);
        for (size_t h = 0; h < kvh; h++) {
            memcpy(c->k[l] + (h * c->cap + s) * hd, k + (i * kvh + h) * hd, hd * sizeof(float));
            memcpy(c->v[l] + (h * c->cap + s) * hd, v + (i * kvh + h) * hd, hd * sizeof(float));
        }
    }
}

/* The first half of layer l for n rows of ws->x: the input norm, q/k/v
 * (ws->q, ws->k, ws->v) and qwen3/gemma3's per-head q/k norms. */
static lmc_status layer_qkv(llama_model *m, size_t l, size_t n, workspace *ws) {
    const lmc_model_config *cfg = &m->base.cfg;
    const lmc_llama_layer *L = &m->w.layers[l];
    size_t H = (size_t)cfg->hidden_size, nh = (size_t)cfg->num_attention_heads;
    size_t nkv = (size_t)cfg->num_key_value_heads, hd = (size_t)cfg->head_dim;
    float eps = (float)cfg->rms_norm_eps;
    m->norm(ws->x, &L->in_norm, eps, n, H, ws->h, m->act_dt);
    const lmc_cpu_mat *qkv[3] = {&L->q, &L->k, &L->v}, *qkv_b[3] = {&L->q_b, &L->k_b, &L->v_b};
    float *qkv_out[3] = {ws->q, ws->k, ws->v};
    lmc_status st = linear_multi(m, qkv, qkv_b, 3, ws->h, n, qkv_out);
    if (!st && L->q_norm.data) {
        m->norm(ws->q, &L->q_norm, eps, n * nh, hd, ws->q, m->act_dt);
        m->norm(ws->k, &L->k_norm, eps, n * nkv, hd, ws->k, m->act_dt);
    }
    return st;
}

/* RoPE of layer l on n rows of q and k (row stride one position) from pos0. */
static void layer_rope(llama_model *m, size_t l, float *q, float *k, size_t n, size_t pos0) {
    const lmc_model_config *cfg = &m->base.cfg;
    const size_t window = m->layer_window ? m->layer_window[l] : m->window;
    const lmc_rope *rope = m->layer_window && window ? &m->rope_local : &m->rope;
    size_t nh = (size_t)cfg->num_attention_heads, nkv = (size_t)cfg->num_key_value_heads;
    size_t hd = (size_t)cfg->head_dim;
    lmc_cpu_rope_partial(q, n, nh, hd, m->rot_dim, pos0, rope->inv_freq, rope->attn_factor,
                         m->act_dt);
    lmc_cpu_rope_partial(k, n, nkv, hd, m->rot_dim, pos0, rope->inv_freq, rope->attn_factor,
                         m->act_dt);
}

/* The rest of layer l once ws->att holds the attention rows: o_proj, the
 * residual (gemma3: normed first), the MLP and its residual, into ws->x. */
static lmc_status layer_out(llama_model *m, size_t l, size_t n, workspace *ws) {
    const lmc_model_config *cfg = &m->base.cfg;
    const lmc_llama_layer *L = &m->w.layers[l];
    size_t H = (size_t)cfg->hidden_size, I = (size_t)cfg->intermediate_size;
    float eps = (float)cfg->rms_norm_eps;
    lmc_dtype rd = m->act_dt;
    lmc_status st;
    if ((st = linear(m, &L->o, &L->o_b, ws->att, n, ws->o))) return st;
    if (m->gemma) /* the attention output is normed before the residual add */
        m->norm(ws->o, &L->post_norm, eps, n, H, ws->o, rd);
    lmc_cpu_add(ws->x, ws->o, n * H);
    lmc_cpu_round(ws->x, n * H, rd);
    m->norm(ws->x, m->gemma ? &L->pre_ff_norm : &L->post_norm, eps, n, H, ws->h, rd);
    const lmc_cpu_mat *gu[2] = {&L->gate, &L->up}, *gu_b[2] = {&L->gate_b, &L->up_b};
    float *gu_out[2] = {ws->g, ws->u};
    if ((st = linear_multi(m, gu, gu_b, 2, ws->h, n, gu_out))) return st;
    if (m->gemma)
        lmc_cpu_gelu_tanh_mul(ws->g, ws->u, n * I, ws->g, rd);
    else
        lmc_cpu_silu_mul(ws->g, ws->u, n * I, ws->g, rd);
    if ((st = linear(m, &L->down, &L->down_b, ws->g, n, ws->o))) return st;
    if (m->gemma) m->norm(ws->o, &L->post_ff_norm, eps, n, H, ws->o, rd);
    lmc_cpu_add(ws->x, ws->o, n * H);
    lmc_cpu_round(ws->x, n * H, rd);
    return LMC_OK;
}

/* One chunk of n rows, whose input embeddings are already in ws->x,
 * through every layer; ws->x ends holding the last layer's output. */
static lmc_status forward_chunk(llama_model *m, lmc_cpu_kv_cache *c, size_t n, workspace *ws) {
    const lmc_model_config *cfg = &m->base.cfg;
    size_t nh = (size_t)cfg->num_attention_heads;
    size_t nkv = (size_t)cfg->num_key_value_heads, hd = (size_t)cfg->head_dim;
    lmc_status st;
    if ((st = lmc_cpu_kv_reserve(c, n))) return st;
    for (size_t l = 0; l < m->w.n_layers; l++) {
        if ((st = layer_qkv(m, l, n, ws))) return st;
        layer_rope(m, l, ws->q, ws->k, n, c->offset);
        lmc_cpu_attn_args a = {
            .k = c->k[l], .v = c->v[l], .pos = c->pos, .n_past = c->used,
            .past_stride = c->cap, .k_new = ws->k, .v_new = ws->v, .n = n, .heads = nh,
            .kv_heads = nkv, .head_dim = hd, .pos0 = c->offset,
            .window = m->layer_window ? m->layer_window[l] : m->window,
            .scale = m->scale, .round_dt = m->act_dt,
        };
        if ((st = lmc_cpu_attention(&a, ws->q, ws->att))) return st;
        store_kv(c, l, ws->k, ws->v, n);
        if ((st = layer_out(m, l, n, ws))) return st;
    }
    lmc_cpu_kv_commit(c, n);
    return LMC_OK;
}

/* Rows of ids (or embeds) into ws->x: the embedding lookup (gemma3: scaled
 * in the model's dtype), or the given rows rounded to the activation dtype. */
static void embed_rows(llama_model *m, const int32_t *ids, const float *embeds, size_t k,
                       float *x) {
    size_t H = (size_t)m->base.cfg.hidden_size;
    if (ids) {
        for (size_t i = 0; i < k; i++) lmc_cpu_widen(&m->w.embed, ids[i], 0, H, x + i * H);
        if (m->gemma) {
            for (size_t i = 0; i < k * H; i++) x[i] *= m->embed_scale;
            lmc_cpu_round(x, k * H, m->act_dt);
        }
    } else {
        memcpy(x, embeds, k * H * sizeof(float));
        lmc_cpu_round(x, k * H, m->act_dt);
    }
}

/* The cache must have been made by this backend for this model's shape. */
static lmc_status check_cache(const llama_model *m, lmc_kv_cache *cache, const char *what) {
    const lmc_model_config *cfg = &m->base.cfg;
    if (cache->vt != &lmc_cpu_kv_vtable)
        return lmc_err(LMC_ERR_INVALID_ARG, "%s: the KV cache belongs to another backend", what);
    lmc_cpu_kv_cache *c = (lmc_cpu_kv_cache *)cache;
    if (c->n_layers != m->w.n_layers || c->kv_heads != (size_t)cfg->num_key_value_heads ||
        c->head_dim != (size_t)cfg->head_dim || c->window != m->window)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "%s: the KV cache was made for a model of another shape", what);
    return LMC_OK;
}

/* The shared body of forward and forward_embeds: n rows in chunks, each
 * chunk's input taken from ids (embedding lookup) or from embeds (rows of
 * hidden_size floats, rounded to the activation dtype). */
static lmc_status run_rows(llama_model *m, lmc_cpu_kv_cache *c, const int32_t *ids,
                           const float *embeds, size_t n, float *logits, bool all_logits) {
    const lmc_model_config *cfg = &m->base.cfg;
    size_t H = (size_t)cfg->hidden_size, V = (size_t)cfg->vocab_size;
    size_t chunk = n < PREFILL_CHUNK ? n : PREFILL_CHUNK;
    workspace ws;
    lmc_status st = ws_alloc(cfg, chunk, &ws);
    if (st) return st;
    float eps = (float)cfg->rms_norm_eps;
    for (size_t done = 0; done < n && !st; done += chunk) {
        size_t k = n - done < chunk ? n - done : chunk;
        embed_rows(m, ids ? ids + done : NULL, ids ? NULL : embeds + done * H, k, ws.x);
        if ((st = forward_chunk(m, c, k, &ws))) break;
        bool last = done + k == n;
        if (!all_logits && !last) continue;
        /* Logits for every row (all_logits) or only the final position. */
        size_t r0 = all_logits ? 0 : k - 1, nr = k - r0;
        m->norm(ws.x + r0 * H, &m->w.final_norm, eps, nr, H, ws.h, m->act_dt);
        float *dst = all_logits ? logits + done * V : logits;
        st = linear(m, &m->w.lm_head, NULL, ws.h, nr, dst);
    }
    ws_free(&ws);
    return st;
}

static lmc_status llama_forward(lmc_model *base, lmc_kv_cache *cache, const int32_t *ids,
                                size_t n, float *logits, bool all_logits) {
    llama_model *m = (llama_model *)base;
    const lmc_model_config *cfg = &base->cfg;
    if (!cache || !ids || (n && !logits))
        return lmc_err(LMC_ERR_INVALID_ARG, "forward: cache, ids and logits are required");
    lmc_status st = check_cache(m, cache, "forward");
    if (st) return st;
    if (n == 0) return lmc_err(LMC_ERR_INVALID_ARG, "forward: no tokens");
    /* Checked up front so a bad id never leaves the cache half-advanced. */
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= cfg->vocab_size)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "forward: token id %d at index %zu is outside the vocabulary (size %" PRId64 ")",
                           ids[i], i, cfg->vocab_size);
    return run_rows(m, (lmc_cpu_kv_cache *)cache, ids, NULL, n, logits, all_logits);
}

static lmc_status llama_forward_embeds(lmc_model *base, lmc_kv_cache *cache, const float *embeds,
                                       size_t n, float *logits, bool all_logits) {
    llama_model *m = (llama_model *)base;
    if (!cache || !embeds || (n && !logits))
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "forward_embeds: cache, embeddings and logits are required");
    lmc_status st = check_cache(m, cache, "forward_embeds");
    if (st) return st;
    if (n == 0) return lmc_err(LMC_ERR_INVALID_ARG, "forward_embeds: no rows");
    return run_rows(m, (lmc_cpu_kv_cache *)cache, NULL, embeds, n, logits, all_logits);
}

/* ------------------------------------------------------------ batched */

/* Floats of one pool block: per layer, keys then values, each
 * [kv_heads][block_tokens][head_dim]. */
static size_t block_floats(const llama_model *m, size_t B) {
    const lmc_model_config *c = &m->base.cfg;
    return m->w.n_layers * 2 * (size_t)c->num_key_value_heads * B * (size_t)c->head_dim;
}

static lmc_status llama_pool_new(lmc_model *base, size_t n_blocks, size_t block_tokens,
                                 lmc_kv_pool **out) {
    llama_model *m = (llama_model *)base;
    if (block_tokens == 0 || block_tokens > (1u << 16))
        return lmc_err(LMC_ERR_INVALID_ARG, "kv pool: block size %zu is not in 1..65536",
                       block_tokens);
    lmc_kv_pool_options o = {.n_blocks = n_blocks, .block_tokens = block_tokens,
                             .bytes_per_block = block_floats(m, block_tokens) * sizeof(float)};
    lmc_status st = lmc_kv_pool_new(&o, out);
    if (!st) lmc_kv_pool_set_owner(*out, m);
    return st;
}

/* Keys and values of rows r0.. of one item (positions pos0..) into layer
 * l of its blocks. */
static lmc_status store_paged(llama_model *m, lmc_kv_pool *pool, lmc_kv_seq *seq, size_t l,
                              const float *k, const float *v, size_t n, size_t pos0) {
    size_t nkv = (size_t)m->base.cfg.num_key_value_heads, hd = (size_t)m->base.cfg.head_dim;
    size_t B = lmc_kv_pool_block_tokens(pool), per = nkv * B * hd;
    for (size_t i = 0; i < n; i++) {
        uint32_t b, slot;
        lmc_status st = lmc_kv_seq_locate(seq, pos0 + i, &b, &slot);
        if (st) return st;
        float *K = (float *)lmc_kv_pool_block(pool, b) + l * 2 * per, *V = K + per;
        for (size_t g = 0; g < nkv; g++) {
            memcpy(K + (g * B + slot) * hd, k + (i * nkv + g) * hd, hd * sizeof(float));
            memcpy(V + (g * B + slot) * hd, v + (i * nkv + g) * hd, hd * sizeof(float));
        }
    }
    return LMC_OK;
}

static lmc_status batch_layers(llama_model *m, lmc_kv_pool *pool, lmc_batch_item *it, size_t ni,
                               size_t T, workspace *ws) {
    const lmc_model_config *cfg = &m->base.cfg;
    size_t nh = (size_t)cfg->num_attention_heads, nkv = (size_t)cfg->num_key_value_heads;
    size_t hd = (size_t)cfg->head_dim, qd = nh * hd, kvd = nkv * hd;
    size_t B = lmc_kv_pool_block_tokens(pool), per = nkv * B * hd;
    lmc_status st;
    for (size_t l = 0; l < m->w.n_layers; l++) {
        if ((st = layer_qkv(m, l, T, ws))) return st;
        for (size_t i = 0, r = 0; i < ni; r += it[i].n, i++) {
            size_t pos0 = lmc_kv_seq_len(it[i].seq);
            layer_rope(m, l, ws->q + r * qd, ws->k + r * kvd, it[i].n, pos0);
            if ((st = store_paged(m, pool, it[i].seq, l, ws->k + r * kvd, ws->v + r * kvd,
                                  it[i].n, pos0)))
                return st;
            size_t nt;
            const uint32_t *table = lmc_kv_seq_table(it[i].seq, &nt);
            lmc_cpu_paged_kv kv = {.pool = lmc_kv_pool_block(pool, 0), .table = table,
                                   .n_table = nt, .block_tokens = B,
                                   .block_floats = block_floats(m, B), .k_off = l * 2 * per,
                                   .v_off = l * 2 * per + per,
                                   .first_live = lmc_kv_seq_first_live(it[i].seq)};
            lmc_cpu_paged_attn_args a = {
                .n = it[i].n, .heads = nh, .kv_heads = nkv, .head_dim = hd, .pos0 = pos0,
                .window = m->layer_window ? m->layer_window[l] : m->window, .scale = m->scale,
                .round_dt = m->act_dt};
            if ((st = lmc_cpu_paged_attention(&kv, &a, ws->q + r * qd, ws->att + r * qd)))
                return st;
        }
        if ((st = layer_out(m, l, T, ws))) return st;
    }
    return LMC_OK;
}

static lmc_status llama_forward_batch(lmc_model *base, lmc_kv_pool *pool, lmc_batch_item *it,
                                      size_t ni) {
    llama_model *m = (llama_model *)base;
    const lmc_model_config *cfg = &base->cfg;
    size_t H = (size_t)cfg->hidden_size, T = 0;
    lmc_status st = lmc_batch_check(&m->base, pool, it, ni, &T);
    if (st) return st;
    for (size_t i = 0; i < ni; i++)
        if ((st = lmc_kv_seq_reserve(it[i].seq, it[i].n)))
            return lmc_err_prefix(st, "forward_batch: item %zu", i);
    workspace ws;
    if ((st = ws_alloc(cfg, T, &ws))) return st;
    for (size_t i = 0, r = 0; i < ni; r += it[i].n, i++)
        embed_rows(m, it[i].ids, NULL, it[i].n, ws.x + r * H);
    st = batch_layers(m, pool, it, ni, T, &ws);
    for (size_t i = 0; i < ni && !st; i++) st = lmc_kv_seq_commit(it[i].seq, it[i].n);
    /* the last row of every item that wants logits, gathered */
    size_t nl = 0;
    for (size_t i = 0, r = 0; i < ni && !st; r += it[i].n, i++)
        if (it[i].logits || it[i].next) {
            if (nl != r + it[i].n - 1)
                memmove(ws.x + nl * H, ws.x + (r + it[i].n - 1) * H, H * sizeof(float));
            nl++;
        }
    float *lg = NULL;
    if (!st && nl) {
        size_t V = (size_t)cfg->vocab_size;
        lg = malloc(nl * V * sizeof *lg);
        if (!lg) st = lmc_err(LMC_ERR_NOMEM, "forward_batch: no memory for %zu logit rows", nl);
        if (!st) {
            m->norm(ws.x, &m->w.final_norm, (float)cfg->rms_norm_eps, nl, H, ws.h, m->act_dt);
            st = linear(m, &m->w.lm_head, NULL, ws.h, nl, lg);
        }
        for (size_t i = 0, j = 0; i < ni && !st; i++) {
            if (!it[i].logits && !it[i].next) continue;
            const float *row = lg + j++ * V;
            if (it[i].logits) memcpy(it[i].logits, row, V * sizeof *lg);
            if (it[i].next) {
                size_t b = 0;
                for (size_t v = 1; v < V; v++)
                    if (row[v] > row[b]) b = v;
                *it[i].next = (int32_t)b;
            }
        }
    }
    free(lg);
    ws_free(&ws);
    return st;
}

static lmc_status llama_cache_new(lmc_model *base, lmc_kv_cache **out) {
    lmc_cpu_kv_cache *c;
    lmc_status st = lmc_cpu_kv_new(&base->cfg, &c);
    if (st) return st;
    *out = &c->base;
    return LMC_OK;
}

static void llama_free(lmc_model *base) {
    llama_model *m = (llama_model *)base;
    lmc_llama_weights_free(&m->w);
    lmc_rope_free(&m->rope);
    lmc_rope_free(&m->rope_local);
    free(m->layer_window);
    free(m);
}

static const lmc_model_vtable llama_vt = {
    .forward = llama_forward,
    .forward_embeds = llama_forward_embeds,
    .pool_new = llama_pool_new,
    .forward_batch = llama_forward_batch,
    .cache_new = llama_cache_new,
    .free = llama_free,
    .cache_load = lmc_cpu_kv_load,
};

#ifndef LMC_HAVE_CUDA
lmc_status lmc_llama_cuda_create(const lmc_loaded_model *lm, lmc_model **out) {
    (void)lm;
    *out = NULL;
    return lmc_err(LMC_ERR_UNSUPPORTED, "device cuda: this lmc was built without CUDA");
}
#endif

static double json_number(json_object *o, double fallback) {
    return o && (json_object_is_type(o, json_type_int) || json_object_is_type(o, json_type_double))
               ? json_object_get_double(o)
               : fallback;
}

/* gemma3_text: which layers slide (layer_types, else all but every
 * sliding_window_pattern-th, 6 by default), the sliding layers' RoPE
 * (rope_parameters.sliding_attention, else rope_local_base_freq, 10000 by
 * default; unscaled), the attention scale query_pre_attn_scalar^-1/2 and
 * the embedding scale. The cache keeps every position: the windows are
 * applied per layer by the attention. */
static lmc_status gemma3_setup(llama_model *m, json_object *raw, int64_t window) {
    const lmc_model_config *c = &m->base.cfg;
    const size_t L = (size_t)c->num_hidden_layers;
    m->gemma = true;
    m->norm = lmc_cpu_rmsnorm_offset;
    m->layer_window = calloc(L, sizeof *m->layer_window);
    if (!m->layer_window) return lmc_err(LMC_ERR_NOMEM, "gemma3: no memory");
    json_object *types = lmc_json_get(raw, "layer_types");
    bool slides = false;
    if (types) {
        if (!json_object_is_type(types, json_type_array) || json_object_array_length(types) != L)
            return lmc_err(LMC_ERR_FORMAT,
                           "config.json: layer_types must be a list of %zu layer types", L);
        for (size_t i = 0; i < L; i++) {
            const char *t = json_object_get_string(json_object_array_get_idx(types, i));
            bool sliding = t && !strcmp(t, "sliding_attention");
            if (!sliding && (!t || strcmp(t, "full_attention")))
                return lmc_err(LMC_ERR_UNSUPPORTED, "config.json: layer_types[%zu] is '%s'", i,
                               t ? t : "null");
            m->layer_window[i] = sliding ? (size_t)window : 0;
            slides |= sliding;
        }
    } else {
        json_object *p = lmc_json_get(raw, "sliding_window_pattern");
        double pattern = json_number(p ? p : lmc_json_get(raw, "_sliding_window_pattern"), 6);
        if (!(pattern >= 1) || pattern != floor(pattern) || pattern > 1e6)
            return lmc_err(LMC_ERR_FORMAT,
                           "config.json: sliding_window_pattern must be a positive integer");
        for (size_t i = 0; i < L; i++) {
            bool sliding = (i + 1) % (size_t)pattern != 0;
            m->layer_window[i] = sliding ? (size_t)window : 0;
            slides |= sliding;
        }
    }
    if (slides && window <= 0)
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: gemma3 sliding layers need a positive sliding_window");
    lmc_model_config local = *c;
    local.rope_type[0] = 0;
    json_object *rp = lmc_json_get(raw, "rope_parameters");
    json_object *sl = rp ? lmc_json_get(rp, "sliding_attention") : NULL;
    if (sl) {
        json_object *t = lmc_json_get(sl, "rope_type");
        const char *ts = t ? json_object_get_string(t) : "default";
        if (!ts || strcmp(ts, "default"))
            return lmc_err(LMC_ERR_UNSUPPORTED,
                           "config.json: rope_parameters.sliding_attention.rope_type '%s' is not "
                           "supported (default)",
                           ts ? ts : "null");
        local.rope_theta = json_number(lmc_json_get(sl, "rope_theta"), 10000.0);
    } else {
        local.rope_theta = json_number(lmc_json_get(raw, "rope_local_base_freq"), 10000.0);
    }
    if (!(local.rope_theta > 0.0))
        return lmc_err(LMC_ERR_FORMAT, "config.json: the sliding layers' rope_theta must be positive");
    lmc_status st = lmc_rope_init(&local, &m->rope_local);
    if (st) return st;
    m->scale = (float)(1.0 / sqrt(json_number(lmc_json_get(raw, "query_pre_attn_scalar"),
                                              (double)c->head_dim)));
    m->embed_scale = (float)sqrt((double)c->hidden_size);
    lmc_cpu_round(&m->embed_scale, 1, m->act_dt);
    return LMC_OK;
}

/* Both constructors: names are the tensor-name prefix of the decoder and
 * the lm_head tensor (NULL: "model." and "lm_head.weight" on any device). */
static lmc_status create(const lmc_loaded_model *lm, const lmc_llama_names *names,
                         lmc_model **out) {
    if (!lm || !lm->config || !lm->weights || !out)
        return lmc_err(LMC_ERR_INVALID_ARG, "llama: config, weights and out are required");
    *out = NULL;
    lmc_status st = validate_config(lm->config, lm->config_json);
    const bool gemma = !strcmp(lm->config->model_type, "gemma3_text");
    int64_t window = 0;
    if (!st && !gemma) st = lmc_llama_effective_window(lm, &window);
    if (st) return st;
    if (gemma && names)
        return lmc_err(LMC_ERR_UNSUPPORTED, "gemma3_text: not supported as a VLM's text model");
    const bool phi3 = !strcmp(lm->config->model_type, "phi3");
    if ((gemma || phi3) && lm->device != LMC_DEVICE_CPU)
        return lmc_err(LMC_ERR_UNSUPPORTED, "%s runs on the CPU only (--device cpu)",
                       lm->config->model_type);
    if (lm->device != LMC_DEVICE_CPU && (st = lmc_llama_require_full_rotary(lm, "device cuda")))
        return st;
    if (lm->device == LMC_DEVICE_CUDA) {
        if (names)
            return lmc_err(LMC_ERR_UNSUPPORTED,
                           "llama: a text model under prefix '%s' runs on the CPU only",
                           names->prefix);
        return lmc_llama_cuda_create(lm, out);
    }
    if (lm->device != LMC_DEVICE_CPU)
        return lmc_err(LMC_ERR_UNSUPPORTED, "llama: unknown device %d", (int)lm->device);
    llama_model *m = calloc(1, sizeof *m);
    if (!m) return lmc_err(LMC_ERR_NOMEM, "llama: no memory");
    m->base.vt = &llama_vt;
    m->norm = lmc_cpu_rmsnorm;
    m->base.cfg = *lm->config;
    m->base.cfg.sliding_window = window; /* gemma3: 0, a cache of every position */
    m->base.device = LMC_DEVICE_CPU;
    const lmc_model_config *c = &m->base.cfg;
    /* quantized modules stay packed: the CPU kernels dequantize on the fly */
    st = names ? lmc_llama_weights_bind_named(c, lm->weights, names, true, &m->w)
               : lmc_llama_weights_bind(c, lm->weights, true, &m->w);
    /* the frequencies of a partial rotary embedding span its rotated dims */
    lmc_model_config rc = *c;
    m->rot_dim = (size_t)((double)c->head_dim * partial_rotary(lm->config_json));
    rc.head_dim = (int64_t)m->rot_dim;
    if (st || (st = lmc_rope_init(&rc, &m->rope))) {
        llama_free(&m->base);
        return st;
    }
    m->window = c->sliding_window > 0 ? (size_t)c->sliding_window : 0;
    m->scale = (float)(1.0 / sqrt((double)c->head_dim));
    /* Compute like the checkpoint's dtype: a bf16/fp16 model rounds its
     * activations to that dtype between ops. */
    const lmc_dtype edt = m->w.embed.dt; /* quantized (U32) embeddings compute in fp32 */
    m->act_dt = edt == LMC_DT_BF16 || edt == LMC_DT_F16 ? edt : LMC_DT_F32;
    if (gemma && (st = gemma3_setup(m, lm->config_json, lm->config->sliding_window))) {
        llama_free(&m->base);
        return st;
    }
    *out = &m->base;
    return LMC_OK;
}

lmc_status lmc_llama_create(const lmc_loaded_model *lm, lmc_model **out) {
    return create(lm, NULL, out);
}

lmc_status lmc_llama_create_named(const lmc_loaded_model *lm, const lmc_llama_names *names,
                                  lmc_model **out) {
    if (!names || !names->prefix || !names->lm_head)
        return lmc_err(LMC_ERR_INVALID_ARG, "llama: tensor names are required");
    return create(lm, names, out);
}
