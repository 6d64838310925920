/* Tensor lookup for the llama family (HF names, "model." prefix by default). */
#include "models/llama_weights.h"
#include "base/error.h"
#include "models/quantized.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t len = 0;
    buf[0] = 0;
    len += (size_t)snprintf(buf + len, cap - len, "[");
    for (int d = 0; d < ndim && len < cap; d++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

lmc_status lmc_weights_bind_tensor(const lmc_st_set *set, const char *name, int ndim,
                                   const int64_t *shape, bool required, void ***owned,
                                   size_t *n_owned, lmc_cpu_mat *out) {
    memset(out, 0, sizeof *out);
    const lmc_tensor_view *t = lmc_st_set_find(set, name);
    if (!t) {
        if (!required) return LMC_OK;
        return lmc_err(LMC_ERR_NOT_FOUND, "model weights: missing tensor '%s'", name);
    }
    bool ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    if (!ok) {
        char got[160], exp[160];
        shape_str(got, sizeof got, t->ndim, t->shape);
        shape_str(exp, sizeof exp, ndim, shape);
        return lmc_err(LMC_ERR_FORMAT, "model weights: tensor '%s' has shape %s, expected %s",
                       name, got, exp);
    }
    if (t->dtype != LMC_DT_F32 && t->dtype != LMC_DT_F16 && t->dtype != LMC_DT_BF16)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "model weights: tensor '%s' has dtype %s; expected F32, F16 or BF16", name,
                       lmc_dtype_name(t->dtype));
    out->dt = t->dtype;
    out->rows = ndim == 1 ? 1 : shape[0];
    out->cols = ndim == 1 ? shape[0] : 1;
    for (int d = 1; d < ndim; d++) out->cols *= shape[d];
    out->data = t->data;
    size_t es = lmc_dtype_size(t->dtype);
    if ((uintptr_t)t->data % es) {
        /* Kernels load whole elements; keep an aligned copy instead. */
        void **grown = realloc(*owned, (*n_owned + 1) * sizeof *grown);
        if (!grown) return lmc_err(LMC_ERR_NOMEM, "model weights: no memory for '%s'", name);
        *owned = grown;
        void *copy = malloc(t->nbytes ? t->nbytes : 1);
        if (!copy) return lmc_err(LMC_ERR_NOMEM, "model weights: no memory for '%s'", name);
        memcpy(copy, t->data, t->nbytes);
        (*owned)[(*n_owned)++] = copy;
        out->data = copy;
    }
    return LMC_OK;
}

/* [d0] (d1 == 0) or [d0, d1]; missing and optional -> data NULL. */
static lmc_status bind(lmc_llama_weights *w, const lmc_st_set *set, const char *name,
                       int64_t d0, int64_t d1, bool required, lmc_cpu_mat *out) {
    const int64_t shape[2] = {d0, d1};
    return lmc_weights_bind_tensor(set, name, d1 ? 2 : 1, shape, required, &w->owned,
                                   &w->n_owned, out);
}

/* A Linear / Embedding weight "<module>.weight" of shape [d0, d1]. In a
 * quantized checkpoint a U32 weight is MLX-packed (with .scales and
 * .biases) and dequantized; a float one is a module left unquantized. With
 * per-module overrides the setting is read off the shapes of each module. */
static lmc_status bind_matrix(lmc_llama_weights *w, const lmc_model_config *c,
                              const lmc_st_set *set, const char *module, int64_t d0, int64_t d1,
                              bool packed, lmc_cpu_mat *out) {
    char nm[300];
    int len = snprintf(nm, sizeof nm, "%s.weight", module);
    if (len < 0 || (size_t)len >= sizeof nm)
        return lmc_err(LMC_ERR_LIMIT, "model weights: tensor name '%.64s...' is too long", module);
    const lmc_tensor_view *t = c->quantized ? lmc_st_set_find(set, nm) : NULL;
    if (t && t->dtype == LMC_DT_U32) {
        if (strcmp(c->q_mode, "affine"))
            return lmc_err(LMC_ERR_UNSUPPORTED,
                           "config.json: quantization mode '%s' is not supported (affine)",
                           c->q_mode);
        bool fixed = !c->q_n_overrides;
        return lmc_mlx_bind(set, module, d0, d1, fixed ? c->q_bits : 0,
                            fixed ? c->q_group_size : 0, packed, &w->owned, &w->n_owned, out);
    }
    return bind(w, set, nm, d0, d1, true, out);
}

/* Rows [r0, r0 + rows) of m as a matrix of their own (a view: Phi-3's fused
 * qkv_proj and gate_up_proj). A quantized m gets its own quantization
 * record, offset to the slice's scales and biases (owned by w). */
static lmc_status slice_rows(lmc_llama_weights *w, const lmc_cpu_mat *m, int64_t r0,
                             int64_t rows, lmc_cpu_mat *out) {
    *out = *m;
    out->rows = rows;
    if (m->dt != LMC_DT_U32) {
        out->data = (const char *)m->data + (size_t)r0 * (size_t)m->cols * lmc_dtype_size(m->dt);
        return LMC_OK;
    }
    const lmc_cpu_quant *q = m->quant;
    lmc_cpu_quant *sq = malloc(sizeof *sq);
    void **grown = sq ? realloc(w->owned, (w->n_owned + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(sq);
        return lmc_err(LMC_ERR_NOMEM, "model weights: no memory");
    }
    w->owned = grown;
    w->owned[w->n_owned++] = sq;
    const size_t groups = (size_t)(m->cols / q->group_size);
    *sq = *q;
    sq->scales = (const char *)q->scales + (size_t)r0 * groups * lmc_dtype_size(q->scales_dt);
    sq->biases = (const char *)q->biases + (size_t)r0 * groups * lmc_dtype_size(q->biases_dt);
    out->data = (const uint32_t *)m->data + (size_t)r0 * (size_t)m->cols * q->bits / 32;
    out->quant = sq;
    return LMC_OK;
}

lmc_status lmc_llama_weights_bind(const lmc_arch_plan *p, const lmc_model_config *c,
                                  const lmc_st_set *set, bool packed, lmc_llama_weights *w) {
    const lmc_llama_names names = {.prefix = "model.", .lm_head = "lm_head.weight"};
    return lmc_llama_weights_bind_named(p, c, set, &names, packed, w);
}

/* A module, or the rows of a fused one: "<prefix>layers.N.<module>". */
static lmc_status bind_layer_matrix(lmc_llama_weights *w, const lmc_model_config *c,
                                    const lmc_st_set *set, const char *pre, size_t l,
                                    const char *module, int64_t d0, int64_t d1, bool packed,
                                    lmc_cpu_mat *out) {
    char nm[300];
    snprintf(nm, sizeof nm, "%slayers.%zu.%s", pre, l, module);
    return bind_matrix(w, c, set, nm, d0, d1, packed, out);
}

/* A fused module split into its parts' rows (count of them, rows each). */
static lmc_status bind_fused(lmc_llama_weights *w, const lmc_model_config *c,
                             const lmc_st_set *set, const char *pre, size_t l, const char *module,
                             const int64_t *rows, size_t count, int64_t cols, bool packed,
                             lmc_cpu_mat *const *parts) {
    int64_t total = 0, r0 = 0;
    for (size_t i = 0; i < count; i++) total += rows[i];
    lmc_cpu_mat fused;
    lmc_status st = bind_layer_matrix(w, c, set, pre, l, module, total, cols, packed, &fused);
    for (size_t i = 0; i < count && !st; r0 += rows[i], i++)
        st = slice_rows(w, &fused, r0, rows[i], parts[i]);
    return st;
}

/* "<prefix>layers.N.<name>" of shape [d0] (optional tensors: data NULL). */
static lmc_status bind_layer_vec(lmc_llama_weights *w, const lmc_st_set *set, const char *pre,
                                 size_t l, const char *name, int64_t d0, lmc_cpu_mat *out) {
    char nm[300];
    snprintf(nm, sizeof nm, "%slayers.%zu.%s", pre, l, name);
    return bind(w, set, nm, d0, 0, true, out);
}

/* A bias "<prefix>layers.N.<module>.bias" of shape [d0]. */
static lmc_status bind_bias(lmc_llama_weights *w, const lmc_st_set *set, const char *pre,
                            size_t l, const char *module, int64_t d0, lmc_cpu_mat *out) {
    char nm[300];
    snprintf(nm, sizeof nm, "%slayers.%zu.%s.bias", pre, l, module);
    return bind(w, set, nm, d0, 0, true, out);
}

static lmc_status bind_layer(const lmc_arch_plan *p, const lmc_model_config *c,
                             const lmc_st_set *set, const char *pre, size_t l, bool packed,
                             lmc_llama_weights *w) {
    const lmc_arch_desc *d = p->arch;
    const lmc_arch_names *N = d->names;
    lmc_llama_layer *L = &w->layers[l];
    int64_t H = c->hidden_size, I = c->intermediate_size;
    int64_t qd = c->num_attention_heads * c->head_dim, kvd = c->num_key_value_heads * c->head_dim;
    lmc_status st;
    if ((st = bind_layer_vec(w, set, pre, l, N->in_norm, H, &L->in_norm)) ||
        (st = bind_layer_vec(w, set, pre, l, N->post_attn_norm, H, &L->post_norm)))
        return st;
    if (d->fused_qkv) {
        const int64_t rows[3] = {qd, kvd, kvd};
        lmc_cpu_mat *parts[3] = {&L->q, &L->k, &L->v};
        st = bind_fused(w, c, set, pre, l, N->qkv, rows, 3, H, packed, parts);
    } else if (!(st = bind_layer_matrix(w, c, set, pre, l, N->q, qd, H, packed, &L->q)) &&
               !(st = bind_layer_matrix(w, c, set, pre, l, N->k, kvd, H, packed, &L->k))) {
        st = bind_layer_matrix(w, c, set, pre, l, N->v, kvd, H, packed, &L->v);
    }
    if (st) return st;
    if (d->fused_gate_up) {
        const int64_t rows[2] = {I, I};
        lmc_cpu_mat *parts[2] = {&L->gate, &L->up};
        st = bind_fused(w, c, set, pre, l, N->gate_up, rows, 2, H, packed, parts);
    } else if (!(st = bind_layer_matrix(w, c, set, pre, l, N->gate, I, H, packed, &L->gate))) {
        st = bind_layer_matrix(w, c, set, pre, l, N->up, I, H, packed, &L->up);
    }
    if (st || (st = bind_layer_matrix(w, c, set, pre, l, N->o, H, qd, packed, &L->o)) ||
        (st = bind_layer_matrix(w, c, set, pre, l, N->down, H, I, packed, &L->down)))
        return st;
    if (p->qkv_bias && ((st = bind_bias(w, set, pre, l, d->fused_qkv ? N->qkv : N->q, qd, &L->q_b)) ||
                        (st = bind_bias(w, set, pre, l, N->k, kvd, &L->k_b)) ||
                        (st = bind_bias(w, set, pre, l, N->v, kvd, &L->v_b))))
        return st;
    if (p->o_bias && (st = bind_bias(w, set, pre, l, N->o, H, &L->o_b))) return st;
    if (p->mlp_bias && ((st = bind_bias(w, set, pre, l, N->gate, I, &L->gate_b)) ||
                        (st = bind_bias(w, set, pre, l, N->up, I, &L->up_b)) ||
                        (st = bind_bias(w, set, pre, l, N->down, H, &L->down_b))))
        return st;
    if (d->qk_norm && ((st = bind_layer_vec(w, set, pre, l, N->q_norm, c->head_dim, &L->q_norm)) ||
                       (st = bind_layer_vec(w, set, pre, l, N->k_norm, c->head_dim, &L->k_norm))))
        return st;
    if (d->sandwich_norms &&
        ((st = bind_layer_vec(w, set, pre, l, N->pre_ff_norm, H, &L->pre_ff_norm)) ||
         (st = bind_layer_vec(w, set, pre, l, N->post_ff_norm, H, &L->post_ff_norm))))
        return st;
    return LMC_OK;
}

lmc_status lmc_llama_weights_bind_named(const lmc_arch_plan *p, const lmc_model_config *c,
                                        const lmc_st_set *set, const lmc_llama_names *names,
                                        bool packed, lmc_llama_weights *w) {
    memset(w, 0, sizeof *w);
    if (p->arch->fused_qkv && p->qkv_bias)
        return lmc_err(LMC_ERR_UNSUPPORTED, "model weights: %s: biases on a fused q/k/v "
                       "projection are not supported", p->arch->model_type);
    const char *pre = names->prefix;
    const lmc_arch_names *N = p->arch->names;
    char nm[256];
    int64_t H = c->hidden_size, V = c->vocab_size;
    lmc_status st;
    w->n_layers = (size_t)c->num_hidden_layers;
    w->layers = calloc(w->n_layers, sizeof *w->layers);
    if (!w->layers) return lmc_err(LMC_ERR_NOMEM, "model weights: no memory");
    snprintf(nm, sizeof nm, "%s%s", pre, N->embed);
    if ((st = bind_matrix(w, c, set, nm, V, H, packed, &w->embed))) goto fail;
    snprintf(nm, sizeof nm, "%s%s", pre, N->final_norm);
    if ((st = bind(w, set, nm, H, 0, true, &w->final_norm))) goto fail;
    if (c->tie_word_embeddings) {
        w->lm_head = w->embed;
    } else {
        /* the module name is the tensor name less ".weight" */
        size_t ln = strlen(names->lm_head);
        if (ln > 7 && ln - 7 < sizeof nm && !strcmp(names->lm_head + ln - 7, ".weight")) {
            memcpy(nm, names->lm_head, ln - 7);
            nm[ln - 7] = 0;
            st = bind_matrix(w, c, set, nm, V, H, packed, &w->lm_head);
        } else {
            st = bind(w, set, names->lm_head, V, H, true, &w->lm_head);
        }
        if (st) goto fail;
    }
    for (size_t l = 0; l < w->n_layers; l++)
        if ((st = bind_layer(p, c, set, pre, l, packed, w))) goto fail;
    return LMC_OK;
fail:
    lmc_llama_weights_free(w);
    return st;
}

void lmc_llama_weights_free(lmc_llama_weights *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_owned; i++) free(w->owned[i]);
    free(w->owned);
    free(w->layers);
    memset(w, 0, sizeof *w);
}
