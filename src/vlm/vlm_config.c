/* VLM base config.json (with nested-eos promotion and the
 * generation_config.json override), the model_type alias table and the
 * processor-config file resolution. */
#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "vlm/vlm.h"
#include <stdlib.h>
#include <string.h>

/* Checkpoints declaring the left model_type are served by the right one's
 * implementation. Sorted by alias. This is the VLM table: LM aliases such
 * as mistral -> llama do not apply to VLM checkpoints. */
static const struct {
    const char *alias, *canonical;
} vlm_remapping[] = {
    {"bunny-llama", "llava_bunny"},
    {"cohere2_vision", "aya_vision"},
    {"falcon-perception", "falcon_perception"},
    {"granite-vision", "granite_vision"},
    {"granite4-vision", "granite4_vision"},
    {"granite4_vision", "granite4_vision"},
    {"jvlm", "jina_vlm"},
    {"lfm2-vl", "lfm2_vl"},
    {"llava-qwen2", "llava_bunny"},
    {"llava_qwen2", "fastvlm"},
    {"nemotronh_nano_omni_reasoning_v3", "nemotron_h_nano_omni"},
    {"phi4-siglip", "phi4_siglip"},
    {"rf-detr", "rfdetr"},
    {"sam3.1_video", "sam3_1"},
    {"sam3_video", "sam3"},
};

const char *lmc_vlm_remap_model_type(const char *model_type) {
    if (!model_type) return NULL;
    for (size_t i = 0; i < sizeof vlm_remapping / sizeof vlm_remapping[0]; i++)
        if (!strcmp(vlm_remapping[i].alias, model_type)) return vlm_remapping[i].canonical;
    return model_type;
}

/* Mistral3 checkpoints ship "PixtralProcessor" but need the Mistral3
 * processor (spatial merging). */
const char *lmc_vlm_processor_class_override(const char *canonical_model_type) {
    if (canonical_model_type && !strcmp(canonical_model_type, "mistral3"))
        return "Mistral3Processor";
    return NULL;
}

/* ------------------------------------------------------------ base config */

static bool is_id(json_object *e, int64_t *x) {
    if (!e || !json_object_is_type(e, json_type_int)) return false;
    *x = json_object_get_int64(e);
    return *x >= 0 && *x <= INT32_MAX;
}

/* Top-level eos_token_id: an id or a list of ids; null means absent. */
static lmc_status parse_eos(json_object *v, const char *what, lmc_vlm_base_config *c) {
    c->has_eos = false;
    c->n_eos = 0;
    if (!v) return LMC_OK;
    int64_t x;
    if (json_object_is_type(v, json_type_int)) {
        if (!is_id(v, &x))
            return lmc_err(LMC_ERR_FORMAT, "%s: eos_token_id %lld is not a valid token id", what,
                           (long long)json_object_get_int64(v));
        c->eos_ids[c->n_eos++] = (int32_t)x;
        c->has_eos = true;
        return LMC_OK;
    }
    if (!json_object_is_type(v, json_type_array))
        return lmc_err(LMC_ERR_FORMAT, "%s: eos_token_id must be an integer or a list", what);
    size_t n = json_object_array_length(v);
    if (n > LMC_MAX_EOS)
        return lmc_err(LMC_ERR_LIMIT, "%s: eos_token_id has %zu ids, over the limit of %d", what,
                       n, LMC_MAX_EOS);
    for (size_t i = 0; i < n; i++) {
        if (!is_id(json_object_array_get_idx(v, i), &x))
            return lmc_err(LMC_ERR_FORMAT, "%s: eos_token_id[%zu] is not a valid token id", what,
                           i);
        c->eos_ids[c->n_eos++] = (int32_t)x;
    }
    c->has_eos = true;
    return LMC_OK;
}

static lmc_status parse_quantization(json_object *q, const char *what, lmc_vlm_base_config *c) {
    if (!q) return LMC_OK;
    if (!json_object_is_type(q, json_type_object))
        return lmc_err(LMC_ERR_FORMAT, "%s: quantization must be an object", what);
    c->quantized = true;
    c->q_group_size = 64;
    c->q_bits = 4;
    bool bad = false;
    if (!lmc_json_int(q, "group_size", &c->q_group_size, &bad) && bad)
        return lmc_err(LMC_ERR_FORMAT, "%s: quantization.group_size must be an integer", what);
    if (!lmc_json_int(q, "bits", &c->q_bits, &bad) && bad)
        return lmc_err(LMC_ERR_FORMAT, "%s: quantization.bits must be an integer", what);
    if (c->q_group_size <= 0 || c->q_bits <= 0 || c->q_bits > 32)
        return lmc_err(LMC_ERR_FORMAT, "%s: quantization group_size %lld / bits %lld is invalid",
                       what, (long long)c->q_group_size, (long long)c->q_bits);
    return LMC_OK;
}

lmc_status lmc_vlm_base_config_parse(const char *text, size_t len, const char *what,
                                     lmc_vlm_base_config *cfg, json_object **json_out) {
    if (json_out) *json_out = NULL;
    memset(cfg, 0, sizeof *cfg);
    if (!what) what = "config.json";
    json_object *o = NULL;
    lmc_status st = lmc_json_parse(text, len, what, &o);
    if (st) return st;
    if (!json_object_is_type(o, json_type_object)) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: not a JSON object", what);
        goto done;
    }
    bool bad = false;
    const char *mt = lmc_json_str(o, "model_type", &bad);
    if (!mt) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: model_type %s", what,
                     bad ? "must be a string" : "is missing");
        goto done;
    }
    if (strlen(mt) >= sizeof cfg->model_type) {
        st = lmc_err(LMC_ERR_LIMIT, "%s: model_type is longer than %zu bytes", what,
                     sizeof cfg->model_type - 1);
        goto done;
    }
    strcpy(cfg->model_type, mt);
    if ((st = parse_eos(lmc_json_get(o, "eos_token_id"), what, cfg))) goto done;
    st = parse_quantization(lmc_json_get(o, "quantization"), what, cfg);
done:
    if (st || !json_out)
        json_object_put(o);
    else
        *json_out = o;
    return st;
}

/* The first of text_config / llm_config whose object has an eos_token_id
 * key decides (a falsy value there means "none", not "keep looking"). */
static lmc_status promote_nested_eos(json_object *o, const char *what, lmc_vlm_base_config *c) {
    static const char *const keys[] = {"text_config", "llm_config"};
    for (size_t i = 0; i < 2; i++) {
        json_object *nested = lmc_json_get(o, keys[i]), *v = NULL;
        if (!nested || !json_object_is_type(nested, json_type_object) ||
            !json_object_object_get_ex(nested, "eos_token_id", &v))
            continue;
        int n = 0;
        int t = lmc_eos_truthy(v, c->eos_ids, &n);
        if (t < 0)
            return lmc_err(LMC_ERR_LIMIT, "%s: %s.eos_token_id has more than %d ids", what,
                           keys[i], LMC_MAX_EOS);
        if (t > 0) {
            c->has_eos = true;
            c->n_eos = n;
        }
        return LMC_OK;
    }
    return LMC_OK;
}

lmc_status lmc_vlm_base_config_load(const char *dir, lmc_vlm_base_config *cfg,
                                    json_object **json_out, char **raw_out) {
    if (json_out) *json_out = NULL;
    if (raw_out) *raw_out = NULL;
    memset(cfg, 0, sizeof *cfg);
    if (!dir || !*dir) return lmc_err(LMC_ERR_INVALID_ARG, "VLM config: no directory given");
    char *path = lmc_path_join(dir, "config.json");
    char *text = NULL;
    size_t len = 0;
    json_object *o = NULL;
    lmc_status st;
    if (!path) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    if ((st = lmc_read_file(path, path, LMC_MAX_CONFIG_BYTES, &text, &len))) goto done;
    if ((st = lmc_vlm_base_config_parse(text, len, path, cfg, &o))) goto done;
    if (!cfg->has_eos && (st = promote_nested_eos(o, path, cfg))) goto done;

    /* The same best-effort override as for language models. */
    bool override = false;
    if ((st = lmc_generation_eos(dir, cfg->eos_ids, &cfg->n_eos, &override))) goto done;
    if (override) cfg->has_eos = true;
done:
    if (!st && json_out) {
        *json_out = o;
        o = NULL;
    }
    if (!st && raw_out) {
        *raw_out = text;
        text = NULL;
    }
    json_object_put(o);
    free(text);
    free(path);
    return st;
}

/* ------------------------------------------------------------ processor config */

#define PREFERRED "preprocessor_config.json"
#define FALLBACK "processor_config.json"

/* Read a processor-config file; absent -> LMC_OK with *body NULL. Any other
 * failure (FIFO, directory, oversized, unreadable) is an error. */
static lmc_status read_optional(const char *path, char **body) {
    *body = NULL;
    size_t len = 0;
    lmc_status st = lmc_read_file(path, path, LMC_MAX_CONFIG_BYTES, body, &len);
    if (st == LMC_ERR_NOT_FOUND && !lmc_path_exists(path)) {
        lmc_err_clear();
        return LMC_OK;
    }
    if (!st && memchr(*body, 0, len)) {
        free(*body);
        *body = NULL;
        return lmc_err(LMC_ERR_FORMAT, "%s: contains a NUL byte", path);
    }
    return st;
}

/* Tolerant view: the file must be a JSON object; processor_class may be
 * absent or null (*cls NULL), otherwise it must be a string. */
static lmc_status read_class(const char *body, const char *path, char **cls) {
    *cls = NULL;
    json_object *o = NULL;
    lmc_status st = lmc_json_parse(body, strlen(body), path, &o);
    if (st) return st;
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return lmc_err(LMC_ERR_FORMAT,
                       "%s: expected an object, optionally with a processor_class string", path);
    }
    bool bad = false;
    const char *c = lmc_json_str(o, "processor_class", &bad);
    if (bad) st = lmc_err(LMC_ERR_FORMAT, "%s: processor_class must be a string", path);
    if (c && !(*cls = strdup(c))) st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", path);
    json_object_put(o);
    return st;
}

void lmc_vlm_processor_config_free(lmc_vlm_processor_config *pc) {
    if (!pc) return;
    free(pc->processor_class);
    free(pc->preprocessor_json);
    free(pc->processor_json);
    memset(pc, 0, sizeof *pc);
}

lmc_status lmc_vlm_processor_config_load(const char *dir, lmc_vlm_processor_config *out) {
    memset(out, 0, sizeof *out);
    if (!dir || !*dir)
        return lmc_err(LMC_ERR_INVALID_ARG, "processor config: no directory given");
    char *pre_path = lmc_path_join(dir, PREFERRED);
    char *fb_path = lmc_path_join(dir, FALLBACK);
    lmc_status st;
    if (!pre_path || !fb_path) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    if ((st = read_optional(pre_path, &out->preprocessor_json))) goto done;
    if (out->preprocessor_json) {
        /* The preferred file decides the class when it has one; the other
         * file is still read (once) so its body reaches the processor. */
        if ((st = read_class(out->preprocessor_json, pre_path, &out->processor_class))) goto done;
        if ((st = read_optional(fb_path, &out->processor_json))) goto done;
        out->filename = PREFERRED;
        if (out->processor_class) {
            out->class_source = PREFERRED;
            goto done;
        }
        /* Image-preprocessor-only layout: dispatch comes from the other file. */
        if (!out->processor_json) {
            st = lmc_err(LMC_ERR_FORMAT,
                         "%s has no processor_class and %s is not present: processor_class "
                         "is missing",
                         pre_path, fb_path);
            goto done;
        }
        if ((st = read_class(out->processor_json, fb_path, &out->processor_class))) goto done;
        if (!out->processor_class) {
            st = lmc_err(LMC_ERR_FORMAT,
                         "neither %s nor %s has processor_class: processor_class is missing",
                         pre_path, fb_path);
            goto done;
        }
        out->class_source = FALLBACK;
        goto done;
    }
    if ((st = read_optional(fb_path, &out->processor_json))) goto done;
    if (!out->processor_json) {
        st = lmc_err(LMC_ERR_NOT_FOUND, "%s: neither %s nor %s is present", dir, PREFERRED,
                     FALLBACK);
        goto done;
    }
    if ((st = read_class(out->processor_json, fb_path, &out->processor_class))) goto done;
    if (!out->processor_class) {
        st = lmc_err(LMC_ERR_FORMAT,
                     "%s has no processor_class (and %s is not present): processor_class is "
                     "missing",
                     fb_path, PREFERRED);
        goto done;
    }
    out->filename = out->class_source = FALLBACK;
done:
    if (st) lmc_vlm_processor_config_free(out);
    free(pre_path);
    free(fb_path);
    return st;
}
