/* CLIP vision tower on the CPU (see clip_vision.h). */
#include "vlm/clip_vision.h"
#include "base/error.h"
#include "base/json.h"
#include <cblas.h>
/* cblas.h may pull in complex.h, whose I would clash with locals. */
#ifdef I
#undef I
#endif
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ activations */

lmc_status lmc_act_parse(const char *name, const char *what, lmc_act *out) {
    static const struct {
        const char *name;
        lmc_act act;
    } acts[] = {
        {"quick_gelu", LMC_ACT_QUICK_GELU}, {"gelu", LMC_ACT_GELU},
        {"gelu_new", LMC_ACT_GELU_TANH},    {"gelu_pytorch_tanh", LMC_ACT_GELU_TANH},
        {"gelu_fast", LMC_ACT_GELU_TANH},   {"relu", LMC_ACT_RELU},
        {"silu", LMC_ACT_SILU},             {"swish", LMC_ACT_SILU},
    };
    for (size_t i = 0; name && i < sizeof acts / sizeof acts[0]; i++)
        if (!strcmp(name, acts[i].name)) {
            *out = acts[i].act;
            return LMC_OK;
        }
    return lmc_err(LMC_ERR_UNSUPPORTED,
                   "%s: activation '%s' is not supported (quick_gelu, gelu, gelu_new, "
                   "gelu_pytorch_tanh, gelu_fast, relu, silu)",
                   what, name ? name : "null");
}

/* ------------------------------------------------------------ config */

static lmc_status get_pos_int(json_object *o, const char *what, const char *key, int64_t *out) {
    json_object *v = lmc_json_get(o, key);
    if (!v || json_object_is_type(v, json_type_null)) return LMC_OK;
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) <= 0 ||
        json_object_get_int64(v) > (1 << 20))
        return lmc_err(LMC_ERR_FORMAT, "%s: vision_config.%s must be a positive integer", what,
                       key);
    *out = json_object_get_int64(v);
    return LMC_OK;
}

lmc_status lmc_clip_vision_config_parse(json_object *vc, const char *what,
                                        lmc_clip_vision_config *c) {
    *c = (lmc_clip_vision_config){
        .hidden_size = 768, .intermediate_size = 3072, .num_hidden_layers = 12,
        .num_attention_heads = 12, .image_size = 224, .patch_size = 32, .num_channels = 3,
        .layer_norm_eps = 1e-5, .act = LMC_ACT_QUICK_GELU,
    };
    if (!vc || !json_object_is_type(vc, json_type_object))
        return lmc_err(LMC_ERR_FORMAT, "%s: vision_config must be an object", what);
    json_object *mt = lmc_json_get(vc, "model_type");
    if (mt && !json_object_is_type(mt, json_type_null)) {
        const char *s = json_object_get_string(mt);
        if (!json_object_is_type(mt, json_type_string) ||
            (strcmp(s, "clip_vision_model") && strcmp(s, "clip")))
            return lmc_err(LMC_ERR_UNSUPPORTED,
                           "%s: vision_config.model_type '%s' is not supported "
                           "(clip_vision_model)",
                           what, s ? s : "?");
    }
    static const struct {
        const char *key;
        size_t off;
    } ints[] = {
        {"hidden_size", offsetof(lmc_clip_vision_config, hidden_size)},
        {"intermediate_size", offsetof(lmc_clip_vision_config, intermediate_size)},
        {"num_hidden_layers", offsetof(lmc_clip_vision_config, num_hidden_layers)},
        {"num_attention_heads", offsetof(lmc_clip_vision_config, num_attention_heads)},
        {"image_size", offsetof(lmc_clip_vision_config, image_size)},
        {"patch_size", offsetof(lmc_clip_vision_config, patch_size)},
        {"num_channels", offsetof(lmc_clip_vision_config, num_channels)},
    };
    lmc_status st;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if ((st = get_pos_int(vc, what, ints[i].key, (int64_t *)((char *)c + ints[i].off))))
            return st;
    json_object *eps = lmc_json_get(vc, "layer_norm_eps");
    if (eps && !json_object_is_type(eps, json_type_null)) {
        if (!json_object_is_type(eps, json_type_double) && !json_object_is_type(eps, json_type_int))
            return lmc_err(LMC_ERR_FORMAT, "%s: vision_config.layer_norm_eps must be a number",
                           what);
        c->layer_norm_eps = json_object_get_double(eps);
        if (!(c->layer_norm_eps >= 0.0))
            return lmc_err(LMC_ERR_FORMAT, "%s: vision_config.layer_norm_eps must be >= 0", what);
    }
    json_object *act = lmc_json_get(vc, "hidden_act");
    if (act && !json_object_is_type(act, json_type_null)) {
        char w[512];
        snprintf(w, sizeof w, "%s: vision_config.hidden_act", what);
        if (!json_object_is_type(act, json_type_string))
            return lmc_err(LMC_ERR_FORMAT, "%s must be a string", w);
        if ((st = lmc_act_parse(json_object_get_string(act), w, &c->act))) return st;
    }
    if (c->hidden_size % c->num_attention_heads)
        return lmc_err(LMC_ERR_FORMAT,
                       "%s: vision_config.hidden_size %" PRId64
                       " is not a multiple of num_attention_heads %" PRId64,
                       what, c->hidden_size, c->num_attention_heads);
    if (c->image_size % c->patch_size)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "%s: vision_config.image_size %" PRId64
                       " is not a multiple of patch_size %" PRId64,
                       what, c->image_size, c->patch_size);
    int64_t grid = c->image_size / c->patch_size;
    if (c->image_size > 8192 || c->num_hidden_layers > 1024 || c->num_channels > 16 ||
        grid * grid > 65536)
        return lmc_err(LMC_ERR_LIMIT, "%s: vision_config dimensions are beyond supported limits",
                       what);
    return LMC_OK;
}

/* ------------------------------------------------------------ weights */

void lmc_clip_vision_free(lmc_clip_vision *v) {
    if (!v) return;
    for (size_t i = 0; i < v->n_owned; i++) free(v->owned[i]);
    free(v->owned);
    free(v->layers);
    memset(v, 0, sizeof *v);
}

lmc_status lmc_clip_vision_bind(const lmc_clip_vision_config *cfg, const lmc_st_set *set,
                                const char *prefix, size_t n_layers, lmc_clip_vision *v) {
    memset(v, 0, sizeof *v);
    v->cfg = *cfg;
    int64_t D = cfg->hidden_size, I = cfg->intermediate_size, C = cfg->num_channels;
    int64_t P = cfg->patch_size, N = (int64_t)lmc_clip_vision_tokens(cfg);
    if (n_layers > (size_t)cfg->num_hidden_layers)
        return lmc_err(LMC_ERR_INVALID_ARG, "vision tower: %zu layers asked of %" PRId64,
                       n_layers, cfg->num_hidden_layers);
    v->n_layers = n_layers;
    v->layers = calloc(n_layers ? n_layers : 1, sizeof *v->layers);
    if (!v->layers) return lmc_err(LMC_ERR_NOMEM, "vision tower: no memory");
    char nm[320];
    lmc_status st;
#define BIND(dst, req, nd, ...)                                                               \
    do {                                                                                     \
        const int64_t shp_[] = {__VA_ARGS__};                                                \
        if ((st = lmc_weights_bind_tensor(set, nm, nd, shp_, req, &v->owned, &v->n_owned, dst))) \
            goto fail;                                                                       \
    } while (0)
#define NAME(...) snprintf(nm, sizeof nm, __VA_ARGS__)
    NAME("%sembeddings.patch_embedding.weight", prefix);
    BIND(&v->patch, true, 4, D, C, P, P);
    NAME("%sembeddings.class_embedding", prefix);
    BIND(&v->cls, true, 1, D);
    NAME("%sembeddings.position_embedding.weight", prefix);
    BIND(&v->pos, true, 2, N, D);
    NAME("%spre_layrnorm.weight", prefix);
    BIND(&v->pre_w, true, 1, D);
    NAME("%spre_layrnorm.bias", prefix);
    BIND(&v->pre_b, true, 1, D);
    for (size_t l = 0; l < n_layers; l++) {
        lmc_clip_layer *L = &v->layers[l];
        const char *pre = prefix;
#define LBIND(field, suffix, nd, ...)                                \
    do {                                                            \
        NAME("%sencoder.layers.%zu.%s", pre, l, suffix);             \
        BIND(&L->field, true, nd, __VA_ARGS__);                      \
    } while (0)
        LBIND(ln1_w, "layer_norm1.weight", 1, D);
        LBIND(ln1_b, "layer_norm1.bias", 1, D);
        LBIND(q, "self_attn.q_proj.weight", 2, D, D);
        LBIND(q_b, "self_attn.q_proj.bias", 1, D);
        LBIND(k, "self_attn.k_proj.weight", 2, D, D);
        LBIND(k_b, "self_attn.k_proj.bias", 1, D);
        LBIND(v, "self_attn.v_proj.weight", 2, D, D);
        LBIND(v_b, "self_attn.v_proj.bias", 1, D);
        LBIND(o, "self_attn.out_proj.weight", 2, D, D);
        LBIND(o_b, "self_attn.out_proj.bias", 1, D);
        LBIND(ln2_w, "layer_norm2.weight", 1, D);
        LBIND(ln2_b, "layer_norm2.bias", 1, D);
        LBIND(fc1, "mlp.fc1.weight", 2, I, D);
        LBIND(fc1_b, "mlp.fc1.bias", 1, I);
        LBIND(fc2, "mlp.fc2.weight", 2, D, I);
        LBIND(fc2_b, "mlp.fc2.bias", 1, D);
#undef LBIND
    }
#undef NAME
#undef BIND
    v->act_dt = v->patch.dt == LMC_DT_F32 ? LMC_DT_F32 : v->patch.dt;
    return LMC_OK;
fail:
    lmc_clip_vision_free(v);
    return st;
}

/* ------------------------------------------------------------ forward */

static lmc_status linear(const lmc_cpu_mat *w, const lmc_cpu_mat *b, const float *x, size_t n,
                         float *y, lmc_dtype rd) {
    lmc_status st = lmc_cpu_matmul(w, b && b->data ? b : NULL, x, n, y);
    if (!st) lmc_cpu_round(y, n * (size_t)w->rows, rd);
    return st;
}

/* Bidirectional multi-head attention of N tokens (q, k, v: [N][D]) through
 * the op layer, which computes it like transformers' eager path: scores
 * (q k^T) * scale, softmax in fp32, probabilities @ v; scores,
 * probabilities and the output rounded in a half dtype. */
static lmc_status attention(const float *q, const float *k, const float *v, size_t N,
                            size_t heads, size_t hd, float scale, float *out, lmc_dtype rd) {
    lmc_cpu_attn_args a = {
        .k_new = k, .v_new = v, .n = N, .heads = heads, .kv_heads = heads, .head_dim = hd,
        .scale = scale, .round_dt = rd, .bidirectional = true,
    };
    return lmc_cpu_attention(&a, q, out);
}

lmc_status lmc_clip_vision_forward(const lmc_clip_vision *v, const float *pixels,
                                   const size_t *states, size_t n_states, float *const *outs) {
    const lmc_clip_vision_config *c = &v->cfg;
    size_t D = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    size_t C = (size_t)c->num_channels, P = (size_t)c->patch_size, S = (size_t)c->image_size;
    size_t G = S / P, N = 1 + G * G, K = C * P * P, H = (size_t)c->num_attention_heads;
    lmc_dtype rd = v->act_dt;
    float eps = (float)c->layer_norm_eps;
    for (size_t k = 0; k < n_states; k++)
        if (states[k] > v->n_layers)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "vision tower: hidden state %zu asked, %zu layers are bound",
                           states[k], v->n_layers);
    float *patches = malloc(G * G * K * sizeof(float));
    float *x = malloc(N * D * sizeof(float)), *h = malloc(N * D * sizeof(float));
    float *q = malloc(N * D * sizeof(float)), *kk = malloc(N * D * sizeof(float));
    float *vv = malloc(N * D * sizeof(float)), *att = malloc(N * D * sizeof(float));
    float *mlp = malloc(N * (I > D ? I : D) * sizeof(float));
    float *emb = malloc(D * sizeof(float));
    lmc_status st = LMC_OK;
    if (!patches || !x || !h || !q || !kk || !vv || !att || !mlp || !emb) {
        st = lmc_err(LMC_ERR_NOMEM, "vision tower: no memory for %zu tokens", N);
        goto done;
    }
    /* Patch rows in the conv weight's (channel, row, column) order; the
     * pixels are first rounded to the weights' dtype, as the model casts. */
    for (size_t gy = 0; gy < G; gy++)
        for (size_t gx = 0; gx < G; gx++) {
            float *r = patches + (gy * G + gx) * K;
            for (size_t ch = 0; ch < C; ch++)
                for (size_t py = 0; py < P; py++)
                    memcpy(r + (ch * P + py) * P, pixels + (ch * S + gy * P + py) * S + gx * P,
                           P * sizeof(float));
        }
    lmc_cpu_round(patches, G * G * K, rd);
    if ((st = linear(&v->patch, NULL, patches, G * G, x + D, rd))) goto done;
    lmc_cpu_widen(&v->cls, 0, 0, D, x);
    for (size_t i = 0; i < N; i++) {
        lmc_cpu_widen(&v->pos, (int64_t)i, 0, D, emb);
        lmc_cpu_add(x + i * D, emb, D);
    }
    lmc_cpu_round(x, N * D, rd);
    lmc_cpu_layernorm(x, &v->pre_w, &v->pre_b, eps, N, D, x, rd);
    size_t last = 0;
    for (size_t k = 0; k < n_states; k++)
        if (states[k] > last) last = states[k];
    float scale = (float)(1.0 / sqrt((double)(D / H)));
    for (size_t l = 0;; l++) {
        for (size_t k = 0; k < n_states; k++)
            if (states[k] == l) memcpy(outs[k], x, N * D * sizeof(float));
        if (l == last) break;
        const lmc_clip_layer *L = &v->layers[l];
        lmc_cpu_layernorm(x, &L->ln1_w, &L->ln1_b, eps, N, D, h, rd);
        const lmc_cpu_mat *w3[3] = {&L->q, &L->k, &L->v}, *b3[3] = {&L->q_b, &L->k_b, &L->v_b};
        float *y3[3] = {q, kk, vv};
        if ((st = lmc_cpu_matmul_multi(w3, b3, 3, h, N, y3))) goto done;
        for (int i = 0; i < 3; i++) lmc_cpu_round(y3[i], N * D, rd);
        if ((st = attention(q, kk, vv, N, H, D / H, scale, att, rd))) goto done;
        if ((st = linear(&L->o, &L->o_b, att, N, h, rd))) goto done;
        lmc_cpu_add(x, h, N * D);
        lmc_cpu_round(x, N * D, rd);
        lmc_cpu_layernorm(x, &L->ln2_w, &L->ln2_b, eps, N, D, h, rd);
        if ((st = linear(&L->fc1, &L->fc1_b, h, N, mlp, rd))) goto done;
        lmc_cpu_act(c->act, mlp, N * I, rd);
        if ((st = linear(&L->fc2, &L->fc2_b, mlp, N, h, rd))) goto done;
        lmc_cpu_add(x, h, N * D);
        lmc_cpu_round(x, N * D, rd);
    }
done:
    free(patches), free(x), free(h), free(q), free(kk), free(vv), free(att), free(mlp);
    free(emb);
    return st;
}
