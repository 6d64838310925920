/* Resolving an architecture description against one config.json: the
 * checks every architecture shares (dimensions, activation, RoPE, rotary
 * width, layer kinds) and the plan backends execute (see arch.h). */
#include "models/arch.h"
#include "base/error.h"
#include "base/json.h"
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const lmc_arch_names lmc_arch_hf_names = {
    .embed = "embed_tokens",
    .final_norm = "norm.weight",
    .in_norm = "input_layernorm.weight",
    .post_attn_norm = "post_attention_layernorm.weight",
    .pre_ff_norm = "pre_feedforward_layernorm.weight",
    .post_ff_norm = "post_feedforward_layernorm.weight",
    .q = "self_attn.q_proj",
    .k = "self_attn.k_proj",
    .v = "self_attn.v_proj",
    .o = "self_attn.o_proj",
    .qkv = "self_attn.qkv_proj",
    .q_norm = "self_attn.q_norm.weight",
    .k_norm = "self_attn.k_norm.weight",
    .gate = "mlp.gate_proj",
    .up = "mlp.up_proj",
    .down = "mlp.down_proj",
    .gate_up = "mlp.gate_up_proj",
};

double lmc_arch_json_number(json_object *o, double fallback, bool *bad) {
    if (!o) return fallback;
    if (json_object_is_type(o, json_type_int) || json_object_is_type(o, json_type_double))
        return json_object_get_double(o);
    if (bad) *bad = true;
    return fallback;
}

static lmc_status check_dims(const lmc_model_config *c, json_object *raw) {
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
    if (c->sliding_window < 0)
        return lmc_err(LMC_ERR_FORMAT, "config.json: sliding_window must not be negative");
    /* a type without tables here is for the backends' checks to refuse */
    return lmc_rope_type_computed(c->rope_type) ? lmc_rope_check(c) : LMC_OK;
}

/* The activation named by the descriptor's key (its default when absent). */
static lmc_status check_act(const lmc_arch_desc *d, const lmc_model_config *c, json_object *raw,
                            lmc_arch_plan *p) {
    static const struct {
        const char *name;
        lmc_glu_act act;
    } acts[] = {
        {"silu", LMC_GLU_SILU},
        {"swish", LMC_GLU_SILU},
        {"gelu_pytorch_tanh", LMC_GLU_GELU_TANH},
    };
    const char *name = NULL;
    if (!strcmp(d->act_key, "hidden_act")) {
        name = c->hidden_act[0] ? c->hidden_act : NULL;
    } else if (raw) {
        json_object *o = lmc_json_get(raw, d->act_key);
        name = o ? json_object_get_string(o) : NULL;
        if (o && !json_object_is_type(o, json_type_string))
            return lmc_err(LMC_ERR_FORMAT, "config.json: %s must be a string", d->act_key);
    }
    p->act = d->act;
    if (!name) return LMC_OK;
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (!strcmp(name, acts[i].name) && acts[i].act == d->act) return LMC_OK;
    return lmc_err(LMC_ERR_UNSUPPORTED, "config.json: %s '%s' is not supported (%s)", d->act_key,
                   name, d->act == LMC_GLU_SILU ? "silu" : "gelu_pytorch_tanh");
}

/* partial_rotary_factor: under rope_parameters (transformers 5) or at the
 * top level; 1 when absent. */
static lmc_status check_rotary(const lmc_arch_desc *d, const lmc_model_config *c,
                               json_object *raw, lmc_arch_plan *p) {
    json_object *rp = raw ? lmc_json_get(raw, "rope_parameters") : NULL;
    json_object *o = rp ? lmc_json_get(rp, "partial_rotary_factor") : NULL;
    if (!o && raw) o = lmc_json_get(raw, "partial_rotary_factor");
    bool bad = false;
    double f = lmc_arch_json_number(o, 1.0, &bad);
    if (!bad && f != 1.0 && !d->partial_rotary)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "config.json: partial_rotary_factor %g: %s rotates whole heads", f,
                       d->model_type);
    if (bad || !(f > 0.0 && f <= 1.0))
        return lmc_err(LMC_ERR_FORMAT, "config.json: partial_rotary_factor must be in (0, 1]");
    const size_t rot = (size_t)((double)c->head_dim * f);
    if (rot < 2 || rot % 2)
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: partial_rotary_factor %g leaves %zu rotated values of "
                       "head_dim %" PRId64 " (a positive even count is needed)",
                       f, rot, c->head_dim);
    if (!strcmp(c->rope_type, "longrope") && (size_t)c->rope_n_factors != rot / 2)
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: longrope short_factor and long_factor have %d entries; "
                       "%zu rotated values of each head need %zu",
                       c->rope_n_factors, rot, rot / 2);
    p->partial_rotary_factor = f;
    p->rot_dim = rot;
    return LMC_OK;
}

/* layer_types: one "sliding_attention" / "full_attention" per layer. */
static lmc_status layer_types(json_object *types, size_t L, bool *slides) {
    if (!json_object_is_type(types, json_type_array) || json_object_array_length(types) != L)
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: layer_types must be a list of %zu layer types", L);
    for (size_t i = 0; i < L; i++) {
        const char *t = json_object_get_string(json_object_array_get_idx(types, i));
        slides[i] = t && !strcmp(t, "sliding_attention");
        if (!slides[i] && (!t || strcmp(t, "full_attention")))
            return lmc_err(LMC_ERR_UNSUPPORTED, "config.json: layer_types[%zu] is '%s'", i,
                           t ? t : "null");
    }
    return LMC_OK;
}

/* Which layers slide, by the descriptor's rule (slides[i]). */
static lmc_status sliding_layers(const lmc_arch_desc *d, json_object *raw, size_t L,
                                 bool *slides) {
    json_object *types = raw ? lmc_json_get(raw, "layer_types") : NULL;
    if (types) return layer_types(types, L, slides);
    bool bad = false;
    if (d->layers == LMC_LAYERS_MAX_WINDOW) {
        double mwl = lmc_arch_json_number(lmc_json_get(raw, "max_window_layers"), 28, &bad);
        if (bad || mwl != floor(mwl))
            return lmc_err(LMC_ERR_FORMAT, "config.json: max_window_layers must be an integer");
        for (size_t i = 0; i < L; i++) slides[i] = (double)i >= mwl;
    } else if (d->layers == LMC_LAYERS_PATTERN) {
        json_object *o = lmc_json_get(raw, "sliding_window_pattern");
        double n = lmc_arch_json_number(o ? o : lmc_json_get(raw, "_sliding_window_pattern"), 6,
                                        &bad);
        if (bad || !(n >= 1) || n != floor(n) || n > 1e6)
            return lmc_err(LMC_ERR_FORMAT,
                           "config.json: sliding_window_pattern must be a positive integer");
        for (size_t i = 0; i < L; i++) slides[i] = (i + 1) % (size_t)n != 0;
    } else {
        for (size_t i = 0; i < L; i++) slides[i] = true;
    }
    return LMC_OK;
}

/* Per-layer windows. Without a sliding_window no layer slides, except that
 * a pattern architecture's named sliding layers need one. */
static lmc_status layer_windows(const lmc_arch_desc *d, const lmc_model_config *c,
                                json_object *raw, lmc_arch_plan *p) {
    const size_t L = p->n_layers;
    const size_t w = c->sliding_window > 0 ? (size_t)c->sliding_window : 0;
    bool *slides = calloc(L, sizeof *slides);
    if (!slides) return lmc_err(LMC_ERR_NOMEM, "config.json: no memory for the layers");
    lmc_status st = sliding_layers(d, raw, L, slides);
    size_t n = 0;
    for (size_t i = 0; i < L && !st; i++) {
        p->layer_window[i] = slides[i] ? w : 0;
        n += slides[i];
    }
    free(slides);
    if (st) return st;
    if (n && !w && d->layers == LMC_LAYERS_PATTERN)
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: %s sliding layers need a positive sliding_window",
                       d->model_type);
    if (!w) n = 0;
    p->mixed_windows = n && n != L;
    p->cache_window = n == L ? w : 0;
    return LMC_OK;
}

/* Softcapping values (null = none); a positive number when given. */
static lmc_status softcap(json_object *raw, const char *key, float *out) {
    json_object *o = raw ? lmc_json_get(raw, key) : NULL;
    bool bad = false;
    double v = lmc_arch_json_number(o, 0.0, &bad);
    if (bad || (o && !(v > 0.0)) || !isfinite(v))
        return lmc_err(LMC_ERR_FORMAT, "config.json: %s must be null or a positive number", key);
    *out = (float)v;
    return LMC_OK;
}

static bool bias_on(lmc_bias_rule r, bool cfg) {
    return r == LMC_BIAS_ALWAYS || (r == LMC_BIAS_CONFIG && cfg);
}

lmc_status lmc_arch_plan_init(const lmc_model_config *c, json_object *raw, lmc_arch_plan *p) {
    memset(p, 0, sizeof *p);
    const lmc_arch_desc *d = lmc_arch_find(c->model_type);
    if (!d) {
        size_t n = 0;
        const lmc_arch_desc *const *all = lmc_arch_all(&n);
        char known[256] = "";
        for (size_t i = 0; i < n; i++) {
            strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
            strncat(known, all[i]->model_type, sizeof known - strlen(known) - 1);
        }
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "config.json: model_type '%s' has no architecture description (%s)",
                       c->model_type, known);
    }
    lmc_status st = check_dims(c, raw);
    if (st) return st;
    p->arch = d;
    p->n_layers = (size_t)c->num_hidden_layers;
    p->qkv_bias = bias_on(d->qkv_bias, c->attention_bias);
    p->o_bias = bias_on(d->o_bias, c->attention_bias);
    p->mlp_bias = bias_on(d->mlp_bias, c->mlp_bias);
    p->layer_window = calloc(p->n_layers, sizeof *p->layer_window);
    if (!p->layer_window) return lmc_err(LMC_ERR_NOMEM, "config.json: no memory for the layers");
    if ((st = check_act(d, c, raw, p)) || (st = check_rotary(d, c, raw, p)) ||
        (st = layer_windows(d, c, raw, p)))
        goto fail;
    double qpas = (double)c->head_dim;
    if (d->query_pre_attn_scalar) {
        bool bad = false;
        qpas = lmc_arch_json_number(lmc_json_get(raw, "query_pre_attn_scalar"), qpas, &bad);
        if (bad || !(qpas > 0.0)) {
            st = lmc_err(LMC_ERR_FORMAT,
                         "config.json: query_pre_attn_scalar must be a positive number");
            goto fail;
        }
    }
    p->attn_scale = (float)(1.0 / sqrt(qpas));
    if (d->embed_scale) p->embed_scale = (float)sqrt((double)c->hidden_size);
    if (d->softcap && ((st = softcap(raw, "final_logit_softcapping", &p->final_softcap)) ||
                       (st = softcap(raw, "attn_logit_softcapping", &p->attn_softcap))))
        goto fail;
    if (d->attn_softcap_refused && p->attn_softcap != 0.0f) {
        st = lmc_err(LMC_ERR_UNSUPPORTED,
                     "config.json: attn_logit_softcapping %g is set, but %s attention takes no "
                     "softcap in transformers (Gemma 3 dropped it), so there are no reference "
                     "numerics to match; set it to null",
                     (double)p->attn_softcap, d->model_type);
        goto fail;
    }
    if (d->local_rope) {
        p->local_rope = true;
        json_object *rp = raw ? lmc_json_get(raw, "rope_parameters") : NULL;
        json_object *sl = rp ? lmc_json_get(rp, "sliding_attention") : NULL;
        bool bad = false;
        if (sl) {
            json_object *t = lmc_json_get(sl, "rope_type");
            const char *ts = t ? json_object_get_string(t) : "default";
            if (!ts || strcmp(ts, "default")) {
                st = lmc_err(LMC_ERR_UNSUPPORTED,
                             "config.json: rope_parameters.sliding_attention.rope_type '%s' is "
                             "not supported (default)",
                             ts ? ts : "null");
                goto fail;
            }
            p->local_rope_theta = lmc_arch_json_number(lmc_json_get(sl, "rope_theta"), 1e4, &bad);
        } else {
            p->local_rope_theta =
                lmc_arch_json_number(lmc_json_get(raw, "rope_local_base_freq"), 1e4, &bad);
        }
        if (bad || !(p->local_rope_theta > 0.0)) {
            st = lmc_err(LMC_ERR_FORMAT,
                         "config.json: the sliding layers' rope_theta must be a positive number");
            goto fail;
        }
    }
    if (d->parse && (st = d->parse(d, c, raw, p))) goto fail;
    return LMC_OK;
fail:
    lmc_arch_plan_free(p);
    return st;
}

lmc_status lmc_arch_plan_copy(const lmc_arch_plan *src, lmc_arch_plan *dst) {
    *dst = *src;
    dst->layer_window = malloc(src->n_layers * sizeof *dst->layer_window);
    if (!dst->layer_window) {
        memset(dst, 0, sizeof *dst);
        return lmc_err(LMC_ERR_NOMEM, "%s: no memory for the plan", src->arch->model_type);
    }
    memcpy(dst->layer_window, src->layer_window, src->n_layers * sizeof *dst->layer_window);
    return LMC_OK;
}

void lmc_arch_plan_free(lmc_arch_plan *p) {
    if (!p) return;
    free(p->layer_window);
    memset(p, 0, sizeof *p);
}

lmc_status lmc_arch_rope_init(const lmc_arch_plan *p, const lmc_model_config *c, bool local,
                              lmc_rope *r) {
    lmc_model_config rc = *c;
    rc.head_dim = (int64_t)p->rot_dim; /* the frequencies span the rotated dims */
    if (local) {
        rc.rope_type[0] = 0;
        rc.rope_theta = p->local_rope_theta;
    }
    return lmc_rope_init(&rc, r);
}

unsigned lmc_arch_plan_features(const lmc_arch_plan *p, const lmc_model_config *c) {
    const lmc_arch_desc *d = p->arch;
    const struct {
        bool used;
        unsigned bit;
    } uses[] = {
        {p->rot_dim != (size_t)c->head_dim, LMC_FEAT_PARTIAL_ROTARY},
        {!strcmp(c->rope_type, "longrope"), LMC_FEAT_LONGROPE},
        {d->fused_qkv || d->fused_gate_up, LMC_FEAT_FUSED},
        {d->norm == LMC_NORM_ONE_PLUS_W, LMC_FEAT_NORM_ONE_PLUS_W},
        {d->sandwich_norms, LMC_FEAT_SANDWICH_NORMS},
        {p->act == LMC_GLU_GELU_TANH, LMC_FEAT_GEGLU},
        {p->embed_scale != 0.0f, LMC_FEAT_EMBED_SCALE},
        {p->attn_scale != (float)(1.0 / sqrt((double)c->head_dim)), LMC_FEAT_ATTN_SCALE},
        {p->local_rope, LMC_FEAT_LOCAL_ROPE},
        {p->mixed_windows, LMC_FEAT_MIXED_WINDOWS},
        {p->final_softcap != 0.0f, LMC_FEAT_FINAL_SOFTCAP},
        {p->attn_softcap != 0.0f, LMC_FEAT_ATTN_SOFTCAP},
    };
    unsigned f = 0;
    for (size_t i = 0; i < sizeof uses / sizeof uses[0]; i++)
        if (uses[i].used) f |= uses[i].bit;
    return f;
}

const char *lmc_arch_feature_name(unsigned bit) {
    static const char *const names[] = {
        "a partial rotary embedding (partial_rotary_factor)",
        "fused q/k/v or gate/up projections",
        "(1 + w) RMSNorm weights",
        "sandwich norms around the sublayers",
        "a GeGLU MLP",
        "scaled embeddings",
        "an attention scale other than head_dim^-1/2 (query_pre_attn_scalar)",
        "a second RoPE table for the sliding layers",
        "layers mixing sliding-window and full attention",
        "final_logit_softcapping",
        "attn_logit_softcapping",
        "longrope rope scaling",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (bit == 1u << i) return names[i];
    return "an unnamed feature";
}

lmc_status lmc_arch_require(const lmc_arch_plan *p, const lmc_model_config *c,
                            unsigned supported, const char *who, const char *hint) {
    if (!lmc_rope_type_computed(c->rope_type))
        return lmc_err(LMC_ERR_UNSUPPORTED, "%s: rope type '%s' is not supported (%s)", who,
                       c->rope_type, LMC_ROPE_TYPES);
    if (c->quantized && strcmp(c->q_mode, "affine"))
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "%s: quantization mode '%s' is not supported (affine)", who, c->q_mode);
    unsigned missing = lmc_arch_plan_features(p, c) & ~supported;
    if (!missing) return LMC_OK;
    return lmc_err(LMC_ERR_UNSUPPORTED, "%s: %s (%s) is not supported%s", who,
                   lmc_arch_feature_name(missing & -missing), p->arch->model_type, hint);
}
