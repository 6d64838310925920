/* LLaVA (transformers' LlavaForConditionalGeneration, model_type "llava")
 * on the CPU: a CLIP vision tower, the multi-modal projector (linear_1,
 * projector_hidden_act, linear_2) and a llama-family text model. The image
 * features replace the embeddings of the image-token placeholders of the
 * prompt, in order, and the text model runs on the result. */
#include "base/error.h"
#include "base/json.h"
#include "backend/backend.h"
#include "vlm/clip_vision.h"
#include "vlm/vlm.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FEATURE_LAYERS 16

typedef struct {
    lmc_vlm_model base;
    lmc_clip_vision vision;
    lmc_cpu_mat embed;                  /* the text model's embed_tokens */
    lmc_cpu_mat p1_w, p1_b, p2_w, p2_b; /* projector (biases may be absent) */
    lmc_act proj_act;
    bool full;                          /* keep the class token */
    size_t states[MAX_FEATURE_LAYERS];  /* hidden_states indices, concatenated */
    size_t n_states;
    size_t tokens;                      /* features per image */
    int32_t image_token_id;
    size_t hidden, vocab;               /* text model */
    lmc_dtype act_dt;
    void **owned;
    size_t n_owned;
} llava_model;

static void llava_free(lmc_vlm_model *base) {
    llava_model *m = (llava_model *)base;
    lmc_model_free(m->base.text);
    lmc_clip_vision_free(&m->vision);
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m);
}

/* ------------------------------------------------------------ config */

/* transformers' LlamaConfig defaults, for text_config keys a checkpoint
 * leaves out (LLaVA checkpoints save only what differs from them). */
static lmc_status add_default(json_object *o, const char *key, json_object *v) {
    if (!v) return lmc_err(LMC_ERR_NOMEM, "config.json: out of memory");
    if (lmc_json_get(o, key)) {
        json_object_put(v);
        return LMC_OK;
    }
    json_object_object_add(o, key, v);
    return LMC_OK;
}

/* text_config (or llm_config) as a standalone config document, parsed
 * with the LM config reader. */
static lmc_status parse_text_config(json_object *root, const char *what, lmc_model_config *tc,
                                    json_object **tjson) {
    json_object *t = lmc_json_get(root, "text_config");
    if (!t || json_object_is_type(t, json_type_null)) t = lmc_json_get(root, "llm_config");
    if (t && !json_object_is_type(t, json_type_object))
        return lmc_err(LMC_ERR_FORMAT, "%s: text_config must be an object", what);
    json_object *copy = NULL;
    if (t) {
        if (json_object_deep_copy(t, &copy, NULL) || !copy)
            return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", what);
    } else {
        copy = json_object_new_object();
        if (!copy) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", what);
    }
    lmc_status st = add_default(copy, "model_type", json_object_new_string("llama"));
    json_object *mt = lmc_json_get(copy, "model_type");
    if (!st && json_object_is_type(mt, json_type_string) &&
        !strcmp(json_object_get_string(mt), "llama")) {
        static const struct {
            const char *key;
            int64_t v;
        } ints[] = {{"vocab_size", 32000},           {"hidden_size", 4096},
                    {"intermediate_size", 11008},    {"num_hidden_layers", 32},
                    {"num_attention_heads", 32},     {"max_position_embeddings", 2048}};
        for (size_t i = 0; !st && i < sizeof ints / sizeof ints[0]; i++)
            st = add_default(copy, ints[i].key, json_object_new_int64(ints[i].v));
        if (!st) st = add_default(copy, "rms_norm_eps", json_object_new_double(1e-6));
    }
    /* Tied embeddings: the top-level flag or the text model's. */
    bool tie = false, bad = false;
    if (!st && lmc_json_bool(root, "tie_word_embeddings", &tie, &bad) && tie)
        json_object_object_add(copy, "tie_word_embeddings", json_object_new_boolean(1));
    if (st) {
        json_object_put(copy);
        return st;
    }
    const char *text = json_object_to_json_string_ext(copy, JSON_C_TO_STRING_PLAIN);
    char w[512];
    snprintf(w, sizeof w, "%s: text_config", what);
    st = text ? lmc_config_parse(text, strlen(text), w, tc, tjson)
              : lmc_err(LMC_ERR_NOMEM, "%s: out of memory", what);
    json_object_put(copy);
    return st;
}

/* vision_feature_layer: one index or a list, each normalized to an index
 * into the vision tower's hidden_states (0 .. num_hidden_layers). */
static lmc_status parse_feature_layers(json_object *root, const char *what, int64_t L,
                                       llava_model *m) {
    json_object *v = lmc_json_get(root, "vision_feature_layer");
    json_object *one = NULL;
    size_t n = 1;
    if (!v || json_object_is_type(v, json_type_null)) {
        m->states[0] = (size_t)(L - 1); /* default -2 */
        m->n_states = 1;
        return LMC_OK;
    }
    bool list = json_object_is_type(v, json_type_array);
    if (list) n = json_object_array_length(v);
    if (n == 0 || n > MAX_FEATURE_LAYERS)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "%s: vision_feature_layer lists %zu layers (1 to %d supported)", what, n,
                       MAX_FEATURE_LAYERS);
    for (size_t i = 0; i < n; i++) {
        one = list ? json_object_array_get_idx(v, i) : v;
        if (!json_object_is_type(one, json_type_int))
            return lmc_err(LMC_ERR_FORMAT, "%s: vision_feature_layer must be an integer or a "
                                           "list of integers",
                           what);
        int64_t k = json_object_get_int64(one), idx = k < 0 ? L + 1 + k : k;
        if (idx < 0 || idx > L)
            return lmc_err(LMC_ERR_FORMAT,
                           "%s: vision_feature_layer %" PRId64
                           " is outside the vision tower's %" PRId64 " hidden states",
                           what, k, L + 1);
        m->states[i] = (size_t)idx;
    }
    m->n_states = n;
    return LMC_OK;
}

static lmc_status get_str_or(json_object *root, const char *what, const char *key,
                             const char *def, const char **out) {
    json_object *v = lmc_json_get(root, key);
    *out = def;
    if (!v || json_object_is_type(v, json_type_null)) return LMC_OK;
    if (!json_object_is_type(v, json_type_string))
        return lmc_err(LMC_ERR_FORMAT, "%s: %s must be a string", what, key);
    *out = json_object_get_string(v);
    return LMC_OK;
}

/* ------------------------------------------------------------ forward */

static lmc_status llava_embed(lmc_vlm_model *base, const int32_t *ids, size_t n,
                              const lmc_vlm_image *images, size_t n_images, float **out) {
    llava_model *m = (llava_model *)base;
    *out = NULL;
    if (!ids || n == 0) return lmc_err(LMC_ERR_INVALID_ARG, "llava: the prompt is empty");
    if (n_images && !images) return lmc_err(LMC_ERR_INVALID_ARG, "llava: no images given");
    const lmc_clip_vision_config *vc = &m->vision.cfg;
    size_t S = (size_t)vc->image_size, C = (size_t)vc->num_channels;
    for (size_t i = 0; i < n_images; i++)
        if (!images[i].pixels || images[i].c != C || images[i].h != S || images[i].w != S)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "llava: image %zu is %zux%zux%zu; the vision tower takes %zux%zux%zu "
                           "(channels x height x width)",
                           i, images[i].c, images[i].h, images[i].w, C, S, S);
    size_t n_img_tok = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= m->vocab)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "llava: token id %d at index %zu is outside the vocabulary (%zu)",
                           ids[i], i, m->vocab);
        n_img_tok += ids[i] == m->image_token_id;
    }
    if (n_img_tok != n_images * m->tokens)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "llava: image features and image tokens do not match: the prompt has %zu "
                       "image tokens (id %d), %zu image%s give %zu features (%zu each)",
                       n_img_tok, m->image_token_id, n_images, n_images == 1 ? "" : "s",
                       n_images * m->tokens, m->tokens);
    size_t H = m->hidden, D = (size_t)vc->hidden_size, N = lmc_clip_vision_tokens(vc);
    size_t F = D * m->n_states, T = m->tokens, first = m->full ? 0 : 1;
    float *emb = malloc(n * H * sizeof(float));
    float *states = malloc(m->n_states * N * D * sizeof(float));
    float *sel = malloc(T * F * sizeof(float)), *mid = malloc(T * H * sizeof(float));
    float *outs[MAX_FEATURE_LAYERS];
    lmc_status st = LMC_OK;
    if (!emb || !states || !sel || !mid) {
        st = lmc_err(LMC_ERR_NOMEM, "llava: no memory for %zu prompt rows", n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) lmc_cpu_widen(&m->embed, ids[i], 0, H, emb + i * H);
    for (size_t k = 0; k < m->n_states; k++) outs[k] = states + k * N * D;
    size_t pos = 0;
    for (size_t im = 0; im < n_images; im++) {
        st = lmc_clip_vision_forward(&m->vision, images[im].pixels, m->states, m->n_states, outs);
        if (st) {
            lmc_err_prefix(st, "llava: image %zu", im);
            goto done;
        }
        /* Selected hidden states side by side: [T][n_states * D]. */
        for (size_t t = 0; t < T; t++)
            for (size_t k = 0; k < m->n_states; k++)
                memcpy(sel + t * F + k * D, outs[k] + (first + t) * D, D * sizeof(float));
        if ((st = lmc_cpu_matmul(&m->p1_w, m->p1_b.data ? &m->p1_b : NULL, sel, T, mid)))
            goto done;
        lmc_cpu_round(mid, T * H, m->act_dt);
        lmc_cpu_act(m->proj_act, mid, T * H, m->act_dt);
        float *feat = malloc(T * H * sizeof(float));
        if (!feat) {
            st = lmc_err(LMC_ERR_NOMEM, "llava: no memory for image features");
            goto done;
        }
        st = lmc_cpu_matmul(&m->p2_w, m->p2_b.data ? &m->p2_b : NULL, mid, T, feat);
        if (!st) {
            lmc_cpu_round(feat, T * H, m->act_dt);
            /* Scatter into the next T placeholder rows, in prompt order. */
            for (size_t t = 0; t < T; pos++)
                if (ids[pos] == m->image_token_id) {
                    memcpy(emb + pos * H, feat + t * H, H * sizeof(float));
                    t++;
                }
        }
        free(feat);
        if (st) goto done;
    }
done:
    free(states), free(sel), free(mid);
    if (st) {
        free(emb);
        return st;
    }
    *out = emb;
    return LMC_OK;
}

/* ------------------------------------------------------------ constructor */

/* Tensor names. transformers 5 models name them "model.language_model.",
 * "lm_head", "model.vision_tower.", "model.multi_modal_projector.", but
 * its save_pretrained writes the older layout ("language_model.model.",
 * "language_model.lm_head", "vision_tower." + "vision_model." in older
 * files, "multi_modal_projector."); each part is looked up under either. */
static const char *const TEXT_PREFIXES[] = {"model.language_model.", "language_model.model."};
static const char *const LM_HEADS[] = {"lm_head.weight", "language_model.lm_head.weight"};
static const char *const VISION_PREFIXES[] = {"model.vision_tower.vision_model.",
                                              "model.vision_tower.", "vision_tower.vision_model.",
                                              "vision_tower."};
static const char *const PROJ_PREFIXES[] = {"model.multi_modal_projector.",
                                            "multi_modal_projector."};

/* The first prefix under which `probe` exists (the first one when none,
 * so the missing-tensor error names the transformers 5 name). */
static size_t pick(const lmc_st_set *set, const char *const *prefixes, size_t n,
                   const char *probe) {
    char nm[320];
    for (size_t i = 0; i < n; i++) {
        snprintf(nm, sizeof nm, "%s%s", prefixes[i], probe);
        if (lmc_st_set_find(set, nm)) return i;
    }
    return 0;
}

lmc_status lmc_llava_create(const lmc_vlm_loaded_model *lm, lmc_vlm_model **out) {
    if (!lm || !lm->config_json || !lm->weights || !out)
        return lmc_err(LMC_ERR_INVALID_ARG, "llava: config and weights are required");
    *out = NULL;
    const char *what = "config.json";
    if (lm->device != LMC_DEVICE_CPU)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "llava: vision-language models run on the CPU only; device cuda is not "
                       "supported for model_type '%s' yet (use --device cpu)",
                       lm->config ? lm->config->model_type : "llava");
    json_object *root = lm->config_json;
    llava_model *m = calloc(1, sizeof *m);
    if (!m) return lmc_err(LMC_ERR_NOMEM, "llava: no memory");
    m->base.free = llava_free;
    m->base.embed = llava_embed;
    lmc_model_config tc;
    json_object *tjson = NULL;
    lmc_clip_vision_config vc;
    const char *s = NULL;
    lmc_status st = parse_text_config(root, what, &tc, &tjson);
    if (st) goto fail;
    if ((st = lmc_clip_vision_config_parse(lmc_json_get(root, "vision_config"), what, &vc)))
        goto fail;
    if ((st = parse_feature_layers(root, what, vc.num_hidden_layers, m))) goto fail;
    if ((st = get_str_or(root, what, "vision_feature_select_strategy", "default", &s))) goto fail;
    if (strcmp(s, "default") && strcmp(s, "full")) {
        st = lmc_err(LMC_ERR_UNSUPPORTED,
                     "%s: vision_feature_select_strategy '%s' is not supported (default, full)",
                     what, s);
        goto fail;
    }
    m->full = !strcmp(s, "full");
    if ((st = get_str_or(root, what, "projector_hidden_act", "gelu", &s))) goto fail;
    char aw[128];
    snprintf(aw, sizeof aw, "%s: projector_hidden_act", what);
    if ((st = lmc_act_parse(s, aw, &m->proj_act))) goto fail;
    int64_t itok = 32000;
    bool bad = false;
    if (!lmc_json_int(root, "image_token_id", &itok, &bad) && !bad)
        lmc_json_int(root, "image_token_index", &itok, &bad);
    if (bad || itok < 0 || itok >= tc.vocab_size) {
        st = lmc_err(LMC_ERR_FORMAT,
                     "%s: image_token_index must be a token id below text_config.vocab_size "
                     "(%" PRId64 ")",
                     what, tc.vocab_size);
        goto fail;
    }
    m->image_token_id = (int32_t)itok;
    bool proj_bias = true;
    lmc_json_bool(root, "multimodal_projector_bias", &proj_bias, &bad);

    /* Tensor names: whichever layout the checkpoint uses. */
    char nm[320];
    size_t ti = pick(lm->weights, TEXT_PREFIXES, 2, "embed_tokens.weight");
    const char *text_pre = TEXT_PREFIXES[ti], *lm_head = LM_HEADS[ti];
    if (!lmc_st_set_find(lm->weights, lm_head) && lmc_st_set_find(lm->weights, LM_HEADS[!ti]))
        lm_head = LM_HEADS[!ti];
    const char *vis_pre = VISION_PREFIXES[pick(lm->weights, VISION_PREFIXES, 4,
                                               "embeddings.patch_embedding.weight")];
    const char *proj_pre = PROJ_PREFIXES[pick(lm->weights, PROJ_PREFIXES, 2, "linear_1.weight")];

    lmc_loaded_model tl = {.config = &tc, .config_json = tjson, .config_raw = NULL,
                           .weights = lm->weights, .device = LMC_DEVICE_CPU};
    lmc_llama_names names = {.prefix = text_pre, .lm_head = lm_head};
    if ((st = lmc_model_create_named(&tl, &names, &m->base.text))) {
        lmc_err_prefix(st, "llava text model");
        goto fail;
    }
    if (!m->base.text->vt->forward_embeds) {
        st = lmc_err(LMC_ERR_UNSUPPORTED, "llava: the text model cannot take embeddings");
        goto fail;
    }
    m->hidden = (size_t)tc.hidden_size;
    m->vocab = (size_t)tc.vocab_size;
    size_t max_state = 0;
    for (size_t k = 0; k < m->n_states; k++)
        if (m->states[k] > max_state) max_state = m->states[k];
    if ((st = lmc_clip_vision_bind(&vc, lm->weights, vis_pre, max_state, &m->vision))) {
        lmc_err_prefix(st, "llava vision tower");
        goto fail;
    }
    int64_t H = tc.hidden_size, F = vc.hidden_size * (int64_t)m->n_states;
#define BIND(dst, suffix, req, nd, ...)                                                         \
    do {                                                                                       \
        const int64_t shp_[] = {__VA_ARGS__};                                                  \
        snprintf(nm, sizeof nm, "%s%s", proj_pre, suffix);                                     \
        if ((st = lmc_weights_bind_tensor(lm->weights, nm, nd, shp_, req, &m->owned, &m->n_owned, \
                                      dst))) {                                                 \
            lmc_err_prefix(st, "llava projector");                                             \
            goto fail;                                                                         \
        }                                                                                      \
    } while (0)
    BIND(&m->p1_w, "linear_1.weight", true, 2, H, F);
    BIND(&m->p1_b, "linear_1.bias", proj_bias, 1, H);
    BIND(&m->p2_w, "linear_2.weight", true, 2, H, H);
    BIND(&m->p2_b, "linear_2.bias", proj_bias, 1, H);
#undef BIND
    snprintf(nm, sizeof nm, "%sembed_tokens.weight", text_pre);
    const int64_t eshape[2] = {tc.vocab_size, H};
    if ((st = lmc_weights_bind_tensor(lm->weights, nm, 2, eshape, true, &m->owned, &m->n_owned,
                                  &m->embed)))
        goto fail;
    size_t g = (size_t)(vc.image_size / vc.patch_size);
    m->tokens = g * g + (m->full ? 1 : 0);
    /* The projector's dtype sets the rounding of the image features. */
    m->act_dt = m->p1_w.dt == LMC_DT_F32 ? LMC_DT_F32 : m->p1_w.dt;
    json_object_put(tjson);
    *out = &m->base;
    return LMC_OK;
fail:
    json_object_put(tjson);
    llava_free(&m->base);
    return st;
}
