/* LlavaProcessor: CLIPImageProcessor preprocessing plus the prompt
 * expansion transformers' LlavaProcessor does: every image token of the
 * prompt becomes (height / patch_size) * (width / patch_size)
 * + num_additional_image_tokens copies of itself (one fewer with
 * vision_feature_select_strategy "default", which drops the class token),
 * and the text is then tokenized with special tokens added. */
#include "base/error.h"
#include "base/json.h"
#include "vlm/vlm.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Expanded prompts are refused beyond this many bytes. */
#define MAX_EXPANDED_BYTES ((size_t)256 << 20)

typedef struct {
    lmc_vlm_processor base;
    const lmc_tokenizer *tok; /* borrowed: the context's tokenizer */
    char *image_token;
    int64_t patch_size, num_additional;
    bool full;
} llava_processor;

static void llava_processor_free(lmc_vlm_processor *base) {
    llava_processor *p = (llava_processor *)base;
    free(p->image_token);
    free(p);
}

static size_t count_occurrences(const char *s, const char *needle) {
    size_t n = 0, len = strlen(needle);
    for (const char *q = strstr(s, needle); q; q = strstr(q + len, needle)) n++;
    return n;
}

static lmc_status llava_encode(const lmc_vlm_processor *base, const char *prompt,
                               const lmc_vlm_image *images, size_t n_images, int32_t **ids,
                               size_t *n_ids) {
    const llava_processor *p = (const llava_processor *)base;
    *ids = NULL;
    *n_ids = 0;
    if (!prompt) return lmc_err(LMC_ERR_INVALID_ARG, "llava processor: no prompt");
    size_t found = count_occurrences(prompt, p->image_token);
    if (found != n_images)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "llava processor: the prompt has %zu '%s' token%s but %zu image%s given",
                       found, p->image_token, found == 1 ? "" : "s", n_images,
                       n_images == 1 ? " was" : "s were");
    size_t tl = strlen(p->image_token), pl = strlen(prompt), total = pl + 1;
    size_t *per = calloc(n_images ? n_images : 1, sizeof *per);
    if (!per) return lmc_err(LMC_ERR_NOMEM, "llava processor: out of memory");
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < n_images; i++) {
        int64_t P = p->patch_size;
        int64_t n = (int64_t)(images[i].h / (size_t)P) * (int64_t)(images[i].w / (size_t)P) +
                    p->num_additional - (p->full ? 0 : 1);
        if (n <= 0 || (size_t)n > MAX_EXPANDED_BYTES / tl || total + (size_t)n * tl > MAX_EXPANDED_BYTES) {
            st = lmc_err(LMC_ERR_LIMIT,
                         "llava processor: image %zu (%zux%zu, patch %" PRId64
                         ") expands to %" PRId64 " tokens",
                         i, images[i].h, images[i].w, P, n);
            free(per);
            return st;
        }
        per[i] = (size_t)n;
        total += (size_t)n * tl - tl;
    }
    char *text = malloc(total), *w = text;
    if (!text) {
        free(per);
        return lmc_err(LMC_ERR_NOMEM, "llava processor: out of memory");
    }
    const char *r = prompt;
    for (size_t i = 0; i < n_images; i++) {
        const char *q = strstr(r, p->image_token);
        memcpy(w, r, (size_t)(q - r));
        w += q - r;
        for (size_t k = 0; k < per[i]; k++, w += tl) memcpy(w, p->image_token, tl);
        r = q + tl;
    }
    size_t rest = strlen(r);
    memcpy(w, r, rest + 1);
    w += rest;
    free(per);
    st = lmc_tokenizer_encode(p->tok, text, (size_t)(w - text), true, ids, n_ids);
    free(text);
    return st;
}

/* A string or integer key of the processor config (absent: default). */
static lmc_status proc_int(json_object *o, const char *what, const char *key, int64_t *out) {
    json_object *v = o ? lmc_json_get(o, key) : NULL;
    if (!v || json_object_is_type(v, json_type_null)) return LMC_OK;
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
        json_object_get_int64(v) > (1 << 20))
        return lmc_err(LMC_ERR_FORMAT, "%s: %s must be a non-negative integer", what, key);
    *out = json_object_get_int64(v);
    return LMC_OK;
}

static lmc_status proc_str(json_object *o, const char *what, const char *key, const char **out) {
    json_object *v = o ? lmc_json_get(o, key) : NULL;
    if (!v || json_object_is_type(v, json_type_null)) return LMC_OK;
    if (!json_object_is_type(v, json_type_string))
        return lmc_err(LMC_ERR_FORMAT, "%s: %s must be a string", what, key);
    *out = json_object_get_string(v);
    return LMC_OK;
}

lmc_status lmc_llava_processor_create(const lmc_vlm_loaded_processor *lp,
                                      lmc_vlm_processor **out) {
    if (!lp || !lp->tokenizer || !out)
        return lmc_err(LMC_ERR_INVALID_ARG, "llava processor: tokenizer and out are required");
    *out = NULL;
    if (!lp->preprocessor_json && !lp->processor_json)
        return lmc_err(LMC_ERR_NOT_FOUND,
                       "llava processor: neither preprocessor_config.json nor "
                       "processor_config.json was read");
    llava_processor *p = calloc(1, sizeof *p);
    if (!p) return lmc_err(LMC_ERR_NOMEM, "llava processor: out of memory");
    p->base.free = llava_processor_free;
    p->base.encode = llava_encode;
    p->tok = lp->tokenizer;
    json_object *proc = NULL, *cfg = NULL;
    lmc_status st;
    /* Image keys: preprocessor_config.json, else processor_config.json
     * (whose "image_processor" object holds them in transformers 5). */
    const char *img_json = lp->preprocessor_json ? lp->preprocessor_json : lp->processor_json;
    const char *img_what = lp->preprocessor_json ? "preprocessor_config.json"
                                                 : "processor_config.json";
    if ((st = lmc_image_config_parse(img_json, strlen(img_json), img_what, &p->base.image)))
        goto fail;
    /* Processor keys: processor_config.json, else the preprocessor file,
     * else the model's config.json (patch size, strategy). */
    const char *what = lp->processor_json ? "processor_config.json" : "preprocessor_config.json";
    const char *pj = lp->processor_json ? lp->processor_json : lp->preprocessor_json;
    if ((st = lmc_json_parse(pj, strlen(pj), what, &proc))) goto fail;
    if (lp->config_raw &&
        (st = lmc_json_parse(lp->config_raw, strlen(lp->config_raw), "config.json", &cfg)))
        goto fail;
    json_object *vc = cfg ? lmc_json_get(cfg, "vision_config") : NULL;
    p->patch_size = 0;
    if ((st = proc_int(vc, "config.json: vision_config", "patch_size", &p->patch_size)) ||
        (st = proc_int(proc, what, "patch_size", &p->patch_size)))
        goto fail;
    if (p->patch_size <= 0) {
        st = lmc_err(LMC_ERR_FORMAT,
                     "%s: patch_size is missing (nor is vision_config.patch_size in config.json)",
                     what);
        goto fail;
    }
    /* The class token the vision tower adds: transformers' checkpoints
     * store 1 here; without the key the feature count of the model
     * (patches + class token) is assumed. */
    p->num_additional = 1;
    if ((st = proc_int(proc, what, "num_additional_image_tokens", &p->num_additional))) goto fail;
    const char *strategy = "default", *token = "<image>";
    if ((st = proc_str(cfg, "config.json", "vision_feature_select_strategy", &strategy)) ||
        (st = proc_str(proc, what, "vision_feature_select_strategy", &strategy)) ||
        (st = proc_str(proc, what, "image_token", &token)))
        goto fail;
    if (strcmp(strategy, "default") && strcmp(strategy, "full")) {
        st = lmc_err(LMC_ERR_UNSUPPORTED,
                     "%s: vision_feature_select_strategy '%s' is not supported (default, full)",
                     what, strategy);
        goto fail;
    }
    p->full = !strcmp(strategy, "full");
    if (!*token) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: image_token is empty", what);
        goto fail;
    }
    if (lmc_tokenizer_token_to_id(lp->tokenizer, token) < 0) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: image_token '%s' is not a token of the tokenizer", what,
                     token);
        goto fail;
    }
    if (!(p->image_token = strdup(token))) {
        st = lmc_err(LMC_ERR_NOMEM, "llava processor: out of memory");
        goto fail;
    }
    p->base.image_token = p->image_token;
    json_object_put(proc);
    json_object_put(cfg);
    *out = &p->base;
    return LMC_OK;
fail:
    json_object_put(proc);
    json_object_put(cfg);
    llava_processor_free(&p->base);
    return st;
}
