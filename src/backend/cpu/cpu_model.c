/* The CPU backend's decoder: executes an architecture plan (models/arch.h)
 * for every description in the registry (llama, mistral, qwen2, qwen3,
 * phi3, gemma3_text). Weights are views into the mmapped safetensors
 * (quantized modules stay packed; the kernels dequantize on the fly);
 * activations are fp32. For bf16/fp16 checkpoints the activations are
 * rounded to that dtype after each op, the way a model computed in that
 * dtype (transformers, mlx) rounds them, so greedy decoding follows the
 * reference. Every forward is a batch over the paged KV pool
 * (forward_batch); the API's KV caches are sequences of pools of their own
 * (models/kv_cache.c). */
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/cpu_paged_attn.h"
#include "base/error.h"
#include "engine/kv_pool.h"
#include "models/llama_weights.h"
#include "models/rope.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest run of tokens one forward_batch takes (bounding activation
 * memory); the cache-level forward (models/kv_cache.c) feeds longer
 * prompts in pieces. */
#define PREFILL_CHUNK 512
/* Query rows of one sequence from which attention gathers its keys into a
 * contiguous copy and runs lmc_cpu_attention (the sgemm path for a prefill
 * chunk); fewer rows (decode) read the blocks in place. */
#define GATHER_ROWS 16

typedef struct {
    lmc_model base;
    lmc_arch_plan plan;
    lmc_llama_weights w;
    lmc_rope rope;       /* full-attention layers (all layers without a local table) */
    lmc_rope rope_local; /* sliding layers when the plan has a local table */
    lmc_dtype act_dt;    /* rounding of activations: F32 (none), BF16 or F16 */
    float embed_scale;   /* the plan's, in the activation dtype; 0 for none */
    /* lmc_cpu_rmsnorm, or the (1 + w) form */
    void (*norm)(const float *, const lmc_cpu_mat *, float, size_t, size_t, float *, lmc_dtype);
} llama_model;

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

/* The first half of layer l for n rows of ws->x: the input norm, q/k/v
 * (ws->q, ws->k, ws->v) and the per-head q/k norms (when the plan has them). */
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

/* RoPE of layer l on n rows of q and k (row stride one position) from
 * pos0, for a forward whose sequence reaches rope_len positions (longrope
 * picks its table by it). */
static void layer_rope(llama_model *m, size_t l, float *q, float *k, size_t n, size_t pos0,
                       size_t rope_len) {
    const lmc_model_config *cfg = &m->base.cfg;
    const lmc_arch_plan *P = &m->plan;
    const lmc_rope *rope = P->local_rope && P->layer_window[l] ? &m->rope_local : &m->rope;
    const float *freq = lmc_rope_table(rope, rope_len);
    size_t nh = (size_t)cfg->num_attention_heads, nkv = (size_t)cfg->num_key_value_heads;
    size_t hd = (size_t)cfg->head_dim;
    lmc_cpu_rope_partial(q, n, nh, hd, P->rot_dim, pos0, freq, rope->attn_factor, m->act_dt);
    lmc_cpu_rope_partial(k, n, nkv, hd, P->rot_dim, pos0, freq, rope->attn_factor, m->act_dt);
}

/* The rest of layer l once ws->att holds the attention rows: o_proj, the
 * residual (sandwich norms: normed first), the MLP and its residual, into
 * ws->x. */
static lmc_status layer_out(llama_model *m, size_t l, size_t n, workspace *ws) {
    const lmc_model_config *cfg = &m->base.cfg;
    const lmc_llama_layer *L = &m->w.layers[l];
    size_t H = (size_t)cfg->hidden_size, I = (size_t)cfg->intermediate_size;
    float eps = (float)cfg->rms_norm_eps;
    lmc_dtype rd = m->act_dt;
    const bool sandwich = m->plan.arch->sandwich_norms;
    lmc_status st;
    if ((st = linear(m, &L->o, &L->o_b, ws->att, n, ws->o))) return st;
    if (sandwich) /* the attention output is normed before the residual add */
        m->norm(ws->o, &L->post_norm, eps, n, H, ws->o, rd);
    lmc_cpu_add(ws->x, ws->o, n * H);
    lmc_cpu_round(ws->x, n * H, rd);
    m->norm(ws->x, sandwich ? &L->pre_ff_norm : &L->post_norm, eps, n, H, ws->h, rd);
    const lmc_cpu_mat *gu[2] = {&L->gate, &L->up}, *gu_b[2] = {&L->gate_b, &L->up_b};
    float *gu_out[2] = {ws->g, ws->u};
    if ((st = linear_multi(m, gu, gu_b, 2, ws->h, n, gu_out))) return st;
    if (m->plan.act == LMC_GLU_GELU_TANH)
        lmc_cpu_gelu_tanh_mul(ws->g, ws->u, n * I, ws->g, rd);
    else
        lmc_cpu_silu_mul(ws->g, ws->u, n * I, ws->g, rd);
    if ((st = linear(m, &L->down, &L->down_b, ws->g, n, ws->o))) return st;
    if (sandwich) m->norm(ws->o, &L->post_ff_norm, eps, n, H, ws->o, rd);
    lmc_cpu_add(ws->x, ws->o, n * H);
    lmc_cpu_round(ws->x, n * H, rd);
    return LMC_OK;
}

/* Rows of ids (or embeds) into ws->x: the embedding lookup (scaled in the
 * model's dtype when the plan says so), or the given rows rounded to the
 * activation dtype. */
static void embed_rows(llama_model *m, const int32_t *ids, const float *embeds, size_t k,
                       float *x) {
    size_t H = (size_t)m->base.cfg.hidden_size;
    if (ids) {
        for (size_t i = 0; i < k; i++) lmc_cpu_widen(&m->w.embed, ids[i], 0, H, x + i * H);
        if (m->embed_scale != 0.0f) {
            for (size_t i = 0; i < k * H; i++) x[i] *= m->embed_scale;
            lmc_cpu_round(x, k * H, m->act_dt);
        }
    } else {
        memcpy(x, embeds, k * H * sizeof(float));
        lmc_cpu_round(x, k * H, m->act_dt);
    }
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

/* Contiguous copies of one sequence's keys and values of one layer, for the
 * sgemm attention path: [kv_heads][n][head_dim] each, and the positions. */
typedef struct {
    float *k, *v;
    int64_t *pos;
    size_t cap; /* positions the buffers hold */
} gather_buf;

static lmc_status gather_reserve(gather_buf *g, size_t kvd, size_t n) {
    if (n <= g->cap) return LMC_OK;
    free(g->k), free(g->v), free(g->pos);
    g->k = malloc(n * kvd * sizeof(float));
    g->v = malloc(n * kvd * sizeof(float));
    g->pos = malloc(n * sizeof(int64_t));
    g->cap = g->k && g->v && g->pos ? n : 0;
    if (!g->cap) return lmc_err(LMC_ERR_NOMEM, "forward_batch: no memory to gather %zu keys", n);
    return LMC_OK;
}

/* Attention of one item's rows (their keys already in the blocks) in
 * layer l: a prefill chunk gathers the past positions it can see and runs
 * lmc_cpu_attention (keys of its own rows from ws); decode rows read the
 * blocks in place. */
static lmc_status item_attention(llama_model *m, lmc_kv_pool *pool, const lmc_batch_item *it,
                                 size_t l, const float *q, const float *k, const float *v,
                                 float *out, gather_buf *g) {
    const lmc_model_config *cfg = &m->base.cfg;
    size_t nh = (size_t)cfg->num_attention_heads, nkv = (size_t)cfg->num_key_value_heads;
    size_t hd = (size_t)cfg->head_dim, B = lmc_kv_pool_block_tokens(pool), per = nkv * B * hd;
    size_t pos0 = lmc_kv_seq_len(it->seq), window = m->plan.layer_window[l];
    size_t first = lmc_kv_seq_first_live(it->seq);
    size_t nt;
    const uint32_t *table = lmc_kv_seq_table(it->seq, &nt);
    lmc_status st;
    if (it->n < GATHER_ROWS) {
        lmc_cpu_paged_kv kv = {.pool = lmc_kv_pool_block(pool, 0), .table = table, .n_table = nt,
                               .block_tokens = B, .block_floats = block_floats(m, B),
                               .k_off = l * 2 * per, .v_off = l * 2 * per + per,
                               .first_live = first};
        lmc_cpu_paged_attn_args a = {
            .n = it->n, .heads = nh, .kv_heads = nkv, .head_dim = hd, .pos0 = pos0,
            .window = window, .scale = m->plan.attn_scale, .round_dt = m->act_dt,
            .softcap = m->plan.attn_softcap};
        return lmc_cpu_paged_attention(&kv, &a, q, out);
    }
    size_t lo = window && pos0 + 1 > window ? pos0 + 1 - window : 0;
    if (lo < first) lo = first;
    size_t np = pos0 > lo ? pos0 - lo : 0;
    if ((st = gather_reserve(g, nkv * hd, np))) return st;
    for (size_t p = lo; p < pos0; p++) {
        const float *K = (const float *)lmc_kv_pool_block(pool, table[p / B]) + l * 2 * per;
        for (size_t h = 0; h < nkv; h++) {
            size_t src = (h * B + p % B) * hd, dst = (h * np + p - lo) * hd;
            memcpy(g->k + dst, K + src, hd * sizeof(float));
            memcpy(g->v + dst, K + per + src, hd * sizeof(float));
        }
        g->pos[p - lo] = (int64_t)p;
    }
    lmc_cpu_attn_args a = {
        .k = g->k, .v = g->v, .pos = g->pos, .n_past = np, .past_stride = np, .k_new = k,
        .v_new = v, .n = it->n, .heads = nh, .kv_heads = nkv, .head_dim = hd, .pos0 = pos0,
        .window = window, .scale = m->plan.attn_scale, .round_dt = m->act_dt,
        .softcap = m->plan.attn_softcap,
    };
    return lmc_cpu_attention(&a, q, out);
}

static lmc_status batch_layers(llama_model *m, lmc_kv_pool *pool, lmc_batch_item *it, size_t ni,
                               size_t T, workspace *ws) {
    const lmc_model_config *cfg = &m->base.cfg;
    size_t nh = (size_t)cfg->num_attention_heads, nkv = (size_t)cfg->num_key_value_heads;
    size_t hd = (size_t)cfg->head_dim, qd = nh * hd, kvd = nkv * hd;
    gather_buf g = {0};
    lmc_status st = LMC_OK;
    for (size_t l = 0; l < m->w.n_layers && !st; l++) {
        if ((st = layer_qkv(m, l, T, ws))) break;
        for (size_t i = 0, r = 0; i < ni && !st; r += it[i].n, i++) {
            size_t pos0 = lmc_kv_seq_len(it[i].seq);
            layer_rope(m, l, ws->q + r * qd, ws->k + r * kvd, it[i].n, pos0,
                       lmc_batch_item_rope_len(&it[i], pos0));
            st = store_paged(m, pool, it[i].seq, l, ws->k + r * kvd, ws->v + r * kvd, it[i].n,
                             pos0);
            if (!st)
                st = item_attention(m, pool, &it[i], l, ws->q + r * qd, ws->k + r * kvd,
                                    ws->v + r * kvd, ws->att + r * qd, &g);
        }
        if (!st) st = layer_out(m, l, T, ws);
        /* a lone item's cancellation, between layers: nothing is committed
         * yet, so the sequence stays as it was */
        if (!st && ni == 1 && it[0].cancel && l + 1 < m->w.n_layers &&
            it[0].cancel(it[0].cancel_user))
            st = lmc_err(LMC_ERR_CANCELLED, "forward: cancelled after layer %zu of %zu", l + 1,
                         m->w.n_layers);
    }
    free(g.k), free(g.v), free(g.pos);
    return st;
}

/* Rows of an item that need logits: every row with all_logits, else the
 * last one when logits or a greedy id are wanted. */
static size_t logit_rows(const lmc_batch_item *it) {
    if (it->all_logits) return it->n;
    return it->logits || it->next ? 1 : 0;
}

/* The greedy id of a row of V logits and its log-softmax. */
static int32_t row_argmax(const float *row, size_t V, float *logprob) {
    size_t b = 0;
    for (size_t v = 1; v < V; v++)
        if (row[v] > row[b]) b = v;
    if (logprob) {
        double sum = 0.0;
        for (size_t v = 0; v < V; v++) sum += exp((double)row[v] - (double)row[b]);
        *logprob = (float)-log(sum);
    }
    return (int32_t)b;
}

static lmc_status llama_forward_batch(lmc_model *base, lmc_kv_pool *pool, lmc_batch_item *it,
                                      size_t ni) {
    llama_model *m = (llama_model *)base;
    const lmc_model_config *cfg = &base->cfg;
    size_t H = (size_t)cfg->hidden_size, V = (size_t)cfg->vocab_size, T = 0;
    lmc_status st = lmc_batch_check(&m->base, pool, it, ni, &T);
    if (st) return st;
    if (T > PREFILL_CHUNK)
        return lmc_err(LMC_ERR_LIMIT, "forward_batch: %zu rows exceed the %d rows of one step",
                       T, PREFILL_CHUNK);
    for (size_t i = 0; i < ni; i++)
        if ((st = lmc_kv_seq_reserve(it[i].seq, it[i].n)))
            return lmc_err_prefix(st, "forward_batch: item %zu", i);
    workspace ws;
    if ((st = ws_alloc(cfg, T, &ws))) return st;
    for (size_t i = 0, r = 0; i < ni; r += it[i].n, i++)
        embed_rows(m, it[i].ids, it[i].embeds, it[i].n, ws.x + r * H);
    st = batch_layers(m, pool, it, ni, T, &ws);
    for (size_t i = 0; i < ni && !st; i++) st = lmc_kv_seq_commit(it[i].seq, it[i].n);
    /* the rows that want logits, gathered to the front (in order, so a
     * row only ever moves down) */
    size_t nl = 0;
    for (size_t i = 0, r = 0; i < ni && !st; r += it[i].n, i++) {
        size_t k = logit_rows(&it[i]), src = r + it[i].n - k;
        if (k && nl != src) memmove(ws.x + nl * H, ws.x + src * H, k * H * sizeof(float));
        nl += k;
    }
    float *lg = NULL;
    if (!st && nl) {
        /* a single item's rows go straight into its buffer */
        bool direct = ni == 1 && it[0].logits;
        lg = direct ? it[0].logits : malloc(nl * V * sizeof *lg);
        if (!lg) st = lmc_err(LMC_ERR_NOMEM, "forward_batch: no memory for %zu logit rows", nl);
        if (!st) {
            m->norm(ws.x, &m->w.final_norm, (float)cfg->rms_norm_eps, nl, H, ws.h, m->act_dt);
            st = linear(m, &m->w.lm_head, NULL, ws.h, nl, lg);
            if (!st) lmc_cpu_softcap(lg, nl * V, m->plan.final_softcap, m->act_dt);
        }
        for (size_t i = 0, j = 0; i < ni && !st; i++) {
            size_t k = logit_rows(&it[i]);
            const float *rows = lg + j * V;
            j += k;
            if (!k) continue;
            if (it[i].logits && !direct) memcpy(it[i].logits, rows, k * V * sizeof *lg);
            if (it[i].next) *it[i].next = row_argmax(rows + (k - 1) * V, V, it[i].logprob);
        }
        if (direct) lg = NULL;
    }
    free(lg);
    ws_free(&ws);
    return st;
}

/* One layer's keys or values of a block, to or from host floats. */
static lmc_status llama_pool_access(lmc_model *base, lmc_kv_pool *pool, uint32_t block,
                                    size_t layer, int kv, float *host, bool write) {
    llama_model *m = (llama_model *)base;
    const lmc_model_config *cfg = &base->cfg;
    size_t B = lmc_kv_pool_block_tokens(pool);
    size_t per = (size_t)cfg->num_key_value_heads * B * (size_t)cfg->head_dim;
    float *b = lmc_kv_pool_block(pool, block);
    if (lmc_kv_pool_owner(pool) != m || !b || layer >= m->w.n_layers)
        return lmc_err(LMC_ERR_INVALID_ARG, "kv pool: block %u layer %zu is not of this model",
                       block, layer);
    float *at = b + layer * 2 * per + (kv ? per : 0);
    if (write) memcpy(at, host, per * sizeof(float));
    else memcpy(host, at, per * sizeof(float));
    return LMC_OK;
}

static lmc_status llama_pool_read(lmc_model *m, lmc_kv_pool *pool, uint32_t block, size_t layer,
                                  int kv, float *dst) {
    return llama_pool_access(m, pool, block, layer, kv, dst, false);
}

static lmc_status llama_pool_write(lmc_model *m, lmc_kv_pool *pool, uint32_t block,
                                   size_t layer, int kv, const float *src) {
    return llama_pool_access(m, pool, block, layer, kv, (float *)src, true);
}

static void llama_free(lmc_model *base) {
    llama_model *m = (llama_model *)base;
    lmc_llama_weights_free(&m->w);
    lmc_rope_free(&m->rope);
    lmc_rope_free(&m->rope_local);
    lmc_arch_plan_free(&m->plan);
    free(m);
}

static const lmc_model_vtable llama_vt = {
    .forward = lmc_kv_cache_forward,
    .forward_embeds = lmc_kv_cache_forward_embeds,
    .pool_new = llama_pool_new,
    .forward_batch = llama_forward_batch,
    .batch_rows = PREFILL_CHUNK,
    .pool_read = llama_pool_read,
    .pool_write = llama_pool_write,
    .free = llama_free,
};

lmc_status lmc_cpu_model_create(const lmc_loaded_model *lm, const lmc_arch_plan *plan,
                                const lmc_llama_names *names, lmc_model **out) {
    *out = NULL;
    llama_model *m = calloc(1, sizeof *m);
    if (!m) return lmc_err(LMC_ERR_NOMEM, "device cpu: no memory");
    m->base.vt = &llama_vt;
    m->base.cfg = *lm->config;
    m->base.cfg.sliding_window = (int64_t)plan->cache_window; /* the cache's window */
    m->base.device = LMC_DEVICE_CPU;
    m->norm = plan->arch->norm == LMC_NORM_ONE_PLUS_W ? lmc_cpu_rmsnorm_offset : lmc_cpu_rmsnorm;
    const lmc_model_config *c = &m->base.cfg;
    lmc_status st = lmc_arch_plan_copy(plan, &m->plan);
    /* quantized modules stay packed: the CPU kernels dequantize on the fly */
    if (!st)
        st = names ? lmc_llama_weights_bind_named(plan, c, lm->weights, names, true, &m->w)
                   : lmc_llama_weights_bind(plan, c, lm->weights, true, &m->w);
    if (!st) st = lmc_arch_rope_init(plan, c, false, &m->rope);
    if (!st && plan->local_rope) st = lmc_arch_rope_init(plan, c, true, &m->rope_local);
    if (st) {
        llama_free(&m->base);
        return st;
    }
    /* Compute like the checkpoint's dtype: a bf16/fp16 model rounds its
     * activations to that dtype between ops. */
    const lmc_dtype edt = m->w.embed.dt; /* quantized (U32) embeddings compute in fp32 */
    m->act_dt = edt == LMC_DT_BF16 || edt == LMC_DT_F16 ? edt : LMC_DT_F32;
    m->embed_scale = plan->embed_scale;
    lmc_cpu_round(&m->embed_scale, 1, m->act_dt);
    *out = &m->base;
    return LMC_OK;
}
