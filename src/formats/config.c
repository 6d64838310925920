/* config.json typed subset + generation_config.json eos override. */
#include "formats/config.h"
#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Integer key (absent/null keeps *out); wrong type or negative -> error. */
static lmc_status get_int(json_object *o, const char *what, const char *prefix,
                          const char *key, int64_t *out) {
    bool bad = false;
    int64_t v;
    if (lmc_json_int(o, key, &v, &bad)) {
        if (v < 0)
            return lmc_err(LMC_ERR_FORMAT, "%s: %s%s is %lld, must be non-negative", what,
                           prefix, key, (long long)v);
        *out = v;
    } else if (bad) {
        return lmc_err(LMC_ERR_FORMAT, "%s: %s%s must be an integer", what, prefix, key);
    }
    return LMC_OK;
}

static lmc_status get_double(json_object *o, const char *what, const char *prefix,
                             const char *key, double *out) {
    bool bad = false;
    if (!lmc_json_double(o, key, out, &bad) && bad)
        return lmc_err(LMC_ERR_FORMAT, "%s: %s%s must be a number", what, prefix, key);
    return LMC_OK;
}

static lmc_status get_bool(json_object *o, const char *what, const char *key, bool *out,
                           bool *present) {
    bool bad = false;
    bool got = lmc_json_bool(o, key, out, &bad);
    if (bad) return lmc_err(LMC_ERR_FORMAT, "%s: %s must be true or false", what, key);
    if (present) *present = got;
    return LMC_OK;
}

/* String key copied into a fixed buffer (absent/null keeps it). */
static lmc_status get_str(json_object *o, const char *what, const char *prefix,
                          const char *key, char *dst, size_t cap) {
    bool bad = false;
    const char *s = lmc_json_str(o, key, &bad);
    if (bad) return lmc_err(LMC_ERR_FORMAT, "%s: %s%s must be a string", what, prefix, key);
    if (!s) return LMC_OK;
    if (strlen(s) >= cap)
        return lmc_err(LMC_ERR_LIMIT, "%s: %s%s '%.40s' is longer than %zu bytes", what, prefix,
                       key, s, cap - 1);
    memcpy(dst, s, strlen(s) + 1);
    return LMC_OK;
}

/* Per-module entries of the "quantization" object: false (left
 * unquantized), true (the default setting) or {group_size, bits}. */
static lmc_status parse_quant_overrides(json_object *q, const char *what, lmc_model_config *c) {
    json_object_object_foreach(q, key, val) {
        if (!strcmp(key, "group_size") || !strcmp(key, "bits") || !strcmp(key, "mode"))
            continue;
        if (json_object_is_type(val, json_type_boolean)) {
            c->q_n_overrides++;
            continue;
        }
        if (!json_object_is_type(val, json_type_object))
            return lmc_err(LMC_ERR_FORMAT,
                           "%s: quantization entry '%.80s' must be false, true or an object "
                           "with group_size and bits", what, key);
        int64_t g = -1, b = -1;
        lmc_status st;
        if ((st = get_int(val, what, "quantization entry ", "group_size", &g)) ||
            (st = get_int(val, what, "quantization entry ", "bits", &b)))
            return st;
        if (g <= 0 || b <= 0)
            return lmc_err(LMC_ERR_FORMAT,
                           "%s: quantization entry '%.80s' needs positive group_size and bits",
                           what, key);
        c->q_n_overrides++;
    }
    return LMC_OK;
}

/* One longrope factor list: rope_n_factors positive numbers (the first
 * list read sets the count, the other must match it). */
static lmc_status parse_factors(json_object *r, const char *what, const char *prefix,
                                const char *key, float *out, int *n) {
    json_object *a = NULL;
    if (!json_object_object_get_ex(r, key, &a) || !json_object_is_type(a, json_type_array))
        return lmc_err(LMC_ERR_FORMAT, "%s: %s%s must be a list of numbers for longrope rope",
                       what, prefix, key);
    size_t len = json_object_array_length(a);
    if (len == 0 || len > LMC_MAX_ROPE_FACTORS)
        return lmc_err(len ? LMC_ERR_LIMIT : LMC_ERR_FORMAT,
                       "%s: %s%s has %zu entries (1 to %d, one per rotated frequency)", what,
                       prefix, key, len, LMC_MAX_ROPE_FACTORS);
    if (*n && (size_t)*n != len)
        return lmc_err(LMC_ERR_FORMAT, "%s: %sshort_factor and long_factor differ in length",
                       what, prefix);
    for (size_t i = 0; i < len; i++) {
        json_object *e = json_object_array_get_idx(a, i);
        double v = e && (json_object_is_type(e, json_type_double) ||
                         json_object_is_type(e, json_type_int))
                       ? json_object_get_double(e)
                       : NAN;
        if (!(v > 0.0) || !isfinite(v) || v > 1e30)
            return lmc_err(LMC_ERR_FORMAT, "%s: %s%s[%zu] must be a positive number", what,
                           prefix, key, i);
        out[i] = (float)v;
    }
    *n = (int)len;
    return LMC_OK;
}

/* longrope: both factor lists, an optional factor (absent or null: derived
 * from the two context lengths once both are known) and attention_factor. */
static lmc_status parse_longrope(json_object *r, const char *what, const char *prefix,
                                 lmc_model_config *c) {
    json_object *fv = NULL;
    if (!json_object_object_get_ex(r, "factor", &fv) || !fv) c->rope_factor = NAN;
    c->rope_n_factors = 0;
    lmc_status st;
    if ((st = parse_factors(r, what, prefix, "short_factor", c->rope_short_factor,
                            &c->rope_n_factors)) ||
        (st = parse_factors(r, what, prefix, "long_factor", c->rope_long_factor,
                            &c->rope_n_factors)))
        return st;
    return get_double(r, what, prefix, "attention_factor", &c->rope_attention_factor);
}

/* Rope parameters from a rope_scaling / rope_parameters object. */
static lmc_status parse_rope_obj(json_object *r, const char *what, const char *name,
                                 lmc_model_config *c) {
    if (!json_object_is_type(r, json_type_object))
        return lmc_err(LMC_ERR_FORMAT, "%s: %s must be an object", what, name);
    char prefix[48];
    snprintf(prefix, sizeof prefix, "%s.", name);
    lmc_status st;
    char type[sizeof c->rope_type] = "";
    if ((st = get_str(r, what, prefix, "type", type, sizeof type))) return st;
    /* "rope_type" is the current spelling; "type" the legacy one. */
    if ((st = get_str(r, what, prefix, "rope_type", type, sizeof type))) return st;
    if (!strcmp(type, "default")) type[0] = '\0';
    if (!strcmp(type, "su")) strcpy(type, "longrope"); /* its earlier name */
    memcpy(c->rope_type, type, sizeof type);
    if ((st = get_double(r, what, prefix, "rope_theta", &c->rope_theta)) ||
        (st = get_double(r, what, prefix, "factor", &c->rope_factor)) ||
        (st = get_double(r, what, prefix, "low_freq_factor", &c->rope_low_freq_factor)) ||
        (st = get_double(r, what, prefix, "high_freq_factor", &c->rope_high_freq_factor)) ||
        (st = get_int(r, what, prefix, "original_max_position_embeddings",
                      &c->rope_original_max_position)))
        return st;
    if (!strcmp(type, "longrope")) return parse_longrope(r, what, prefix, c);
    if (strcmp(type, "yarn")) return LMC_OK;
    /* yarn: transformers requires "factor"; null means "derive it from the
     * two context lengths" (resolved once both are known). */
    json_object *fv = NULL;
    if (!json_object_object_get_ex(r, "factor", &fv))
        return lmc_err(LMC_ERR_FORMAT, "%s: %sfactor is required for yarn rope", what, prefix);
    if (!fv) c->rope_factor = NAN;
    if ((st = get_double(r, what, prefix, "beta_fast", &c->rope_beta_fast)) ||
        (st = get_double(r, what, prefix, "beta_slow", &c->rope_beta_slow)) ||
        (st = get_double(r, what, prefix, "attention_factor", &c->rope_attention_factor)) ||
        (st = get_double(r, what, prefix, "mscale", &c->rope_mscale)) ||
        (st = get_double(r, what, prefix, "mscale_all_dim", &c->rope_mscale_all_dim)))
        return st;
    bool bad = false;
    lmc_json_bool(r, "truncate", &c->rope_truncate, &bad);
    if (bad) return lmc_err(LMC_ERR_FORMAT, "%s: %struncate must be true or false", what, prefix);
    return LMC_OK;
}

/* config.json eos_token_id: an id or a list of ids (null/absent = none). */
static lmc_status parse_config_eos(json_object *v, const char *what, lmc_model_config *c) {
    c->n_eos = 0;
    if (!v) return LMC_OK;
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        if (x < 0 || x > INT32_MAX)
            return lmc_err(LMC_ERR_FORMAT, "%s: eos_token_id %lld is not a valid token id",
                           what, (long long)x);
        c->eos_ids[c->n_eos++] = (int32_t)x;
        return LMC_OK;
    }
    if (!json_object_is_type(v, json_type_array))
        return lmc_err(LMC_ERR_FORMAT, "%s: eos_token_id must be an integer or a list", what);
    size_t n = json_object_array_length(v);
    if (n > LMC_MAX_EOS)
        return lmc_err(LMC_ERR_LIMIT, "%s: eos_token_id has %zu ids, over the limit of %d",
                       what, n, LMC_MAX_EOS);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(v, i);
        int64_t x = e && json_object_is_type(e, json_type_int) ? json_object_get_int64(e) : -1;
        if (x < 0 || x > INT32_MAX)
            return lmc_err(LMC_ERR_FORMAT, "%s: eos_token_id[%zu] is not a valid token id",
                           what, i);
        c->eos_ids[c->n_eos++] = (int32_t)x;
    }
    return LMC_OK;
}

int lmc_eos_truthy(json_object *v, int32_t *ids, int *n_out) {
    *n_out = 0;
    if (!v) return 0;
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        if (x <= 0 || x > INT32_MAX) return 0;
        ids[0] = (int32_t)x;
        *n_out = 1;
        return 1;
    }
    if (!json_object_is_type(v, json_type_array)) return 0;
    size_t n = json_object_array_length(v);
    if (n == 0) return 0;
    if (n > LMC_MAX_EOS) return -1;
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(v, i);
        if (!e || !json_object_is_type(e, json_type_int)) continue;
        int64_t x = json_object_get_int64(e);
        if (x < 0 || x > INT32_MAX) continue;
        ids[k++] = (int32_t)x;
    }
    *n_out = k;
    return 1;
}

lmc_status lmc_generation_eos(const char *dir, int32_t ids[LMC_MAX_EOS], int *n,
                              bool *override) {
    *override = false;
    int32_t found[LMC_MAX_EOS];
    int nf = 0;
    char *gpath = lmc_path_join(dir, "generation_config.json");
    if (!gpath) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", dir);
    lmc_status st = LMC_OK;
    char *gtext = NULL;
    size_t glen = 0;
    if (lmc_read_file(gpath, gpath, LMC_MAX_CONFIG_BYTES, &gtext, &glen) == LMC_OK) {
        json_object *g = NULL;
        if (lmc_json_parse(gtext, glen, gpath, &g) == LMC_OK) {
            /* lmc_json_get yields NULL for a non-object document. */
            int t = lmc_eos_truthy(lmc_json_get(g, "eos_token_id"), found, &nf);
            if (t > 0) { /* the caller's set is replaced only now */
                memcpy(ids, found, (size_t)nf * sizeof *found);
                *n = nf;
                *override = true;
            }
            if (t < 0)
                st = lmc_err(LMC_ERR_LIMIT, "%s: eos_token_id has more than %d ids", gpath,
                             LMC_MAX_EOS);
            json_object_put(g);
        }
        free(gtext);
    }
    /* An ignored file must not leave its read/parse message behind. */
    if (!st) lmc_err_clear();
    free(gpath);
    return st;
}

lmc_status lmc_config_parse(const char *text, size_t len, const char *what,
                            lmc_model_config *cfg, json_object **json_out) {
    if (json_out) *json_out = NULL;
    memset(cfg, 0, sizeof *cfg);
    json_object *o = NULL;
    lmc_status st = lmc_json_parse(text, len, what, &o);
    if (st) return st;
    lmc_model_config *c = cfg;
    if (!json_object_is_type(o, json_type_object)) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: not a JSON object", what);
        goto done;
    }
    bool bad = false;
    if (!lmc_json_str(o, "model_type", &bad)) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: model_type %s", what,
                     bad ? "must be a string" : "is missing");
        goto done;
    }
    if ((st = get_str(o, what, "", "model_type", c->model_type, sizeof c->model_type)))
        goto done;

    c->rms_norm_eps = 1e-6;
    c->rope_theta = 10000.0;
    c->rope_factor = 1.0;
    c->rope_low_freq_factor = 1.0;
    c->rope_high_freq_factor = 4.0;
    c->bos_token_id = -1;
    c->num_key_value_heads = -1;
    c->head_dim = -1;
    c->rope_original_max_position = -1;
    c->rope_attention_factor = NAN;
    c->rope_truncate = true;
    c->q_group_size = 64;
    c->q_bits = 4;
    strcpy(c->hidden_act, "silu");

    static const struct {
        const char *key;
        size_t off;
    } ints[] = {
        {"vocab_size", offsetof(lmc_model_config, vocab_size)},
        {"hidden_size", offsetof(lmc_model_config, hidden_size)},
        {"intermediate_size", offsetof(lmc_model_config, intermediate_size)},
        {"num_hidden_layers", offsetof(lmc_model_config, num_hidden_layers)},
        {"num_attention_heads", offsetof(lmc_model_config, num_attention_heads)},
        {"num_key_value_heads", offsetof(lmc_model_config, num_key_value_heads)},
        {"head_dim", offsetof(lmc_model_config, head_dim)},
        {"max_position_embeddings", offsetof(lmc_model_config, max_position_embeddings)},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if ((st = get_int(o, what, "", ints[i].key, (int64_t *)((char *)c + ints[i].off))))
            goto done;
    if (c->num_key_value_heads < 0) c->num_key_value_heads = c->num_attention_heads;
    if (c->head_dim < 0)
        c->head_dim = c->num_attention_heads > 0 ? c->hidden_size / c->num_attention_heads : 0;
    if ((st = get_double(o, what, "", "rms_norm_eps", &c->rms_norm_eps))) goto done;

    /* Rope: transformers 5.x nests everything under rope_parameters (per
     * attention type for some models); older configs use rope_theta +
     * rope_scaling. Top-level keys win when both appear. */
    json_object *rp = lmc_json_get(o, "rope_parameters");
    if (rp) {
        json_object *full = lmc_json_get(rp, "full_attention");
        if (full && json_object_is_type(full, json_type_object) &&
            !lmc_json_get(rp, "rope_type") && !lmc_json_get(rp, "rope_theta"))
            st = parse_rope_obj(full, what, "rope_parameters.full_attention", c);
        else
            st = parse_rope_obj(rp, what, "rope_parameters", c);
        if (st) goto done;
    }
    if ((st = get_double(o, what, "", "rope_theta", &c->rope_theta))) goto done;
    json_object *rs = lmc_json_get(o, "rope_scaling");
    if (rs && (st = parse_rope_obj(rs, what, "rope_scaling", c))) goto done;
    /* A top-level original_max_position_embeddings (phi3 style) takes
     * precedence for the rope types that use one, as in transformers. */
    int64_t top_orig = -1;
    if ((st = get_int(o, what, "", "original_max_position_embeddings", &top_orig))) goto done;
    if (top_orig >= 0 && (!strcmp(c->rope_type, "llama3") || !strcmp(c->rope_type, "yarn") ||
                          !strcmp(c->rope_type, "longrope")))
        c->rope_original_max_position = top_orig;
    if (c->rope_original_max_position < 0) c->rope_original_max_position = c->max_position_embeddings;
    if (isnan(c->rope_factor)) /* yarn "factor": null */
        c->rope_factor = c->rope_original_max_position > 0
                             ? (double)c->max_position_embeddings /
                                   (double)c->rope_original_max_position
                             : 0.0;

    if ((st = get_bool(o, what, "tie_word_embeddings", &c->tie_word_embeddings, NULL)) ||
        (st = get_bool(o, what, "attention_bias", &c->attention_bias, NULL)) ||
        (st = get_bool(o, what, "mlp_bias", &c->mlp_bias, NULL)))
        goto done;

    if ((st = get_int(o, what, "", "sliding_window", &c->sliding_window))) goto done;
    bool use_sw = true, has_use_sw = false;
    if ((st = get_bool(o, what, "use_sliding_window", &use_sw, &has_use_sw))) goto done;
    if (has_use_sw && !use_sw) c->sliding_window = 0;

    if ((st = get_str(o, what, "", "hidden_act", c->hidden_act, sizeof c->hidden_act)))
        goto done;

    json_object *q = lmc_json_get(o, "quantization");
    if (q) {
        if (!json_object_is_type(q, json_type_object)) {
            st = lmc_err(LMC_ERR_FORMAT, "%s: quantization must be an object", what);
            goto done;
        }
        c->quantized = true;
        snprintf(c->q_mode, sizeof c->q_mode, "affine");
        if ((st = get_int(q, what, "quantization.", "group_size", &c->q_group_size)) ||
            (st = get_int(q, what, "quantization.", "bits", &c->q_bits)) ||
            (st = get_str(q, what, "quantization.", "mode", c->q_mode, sizeof c->q_mode)))
            goto done;
        if ((st = parse_quant_overrides(q, what, c))) goto done;
    }

    if ((st = parse_config_eos(lmc_json_get(o, "eos_token_id"), what, c))) goto done;
    if ((st = get_int(o, what, "", "bos_token_id", &c->bos_token_id))) goto done;
    /* "dtype" is the transformers 5.x name of "torch_dtype". */
    if ((st = get_str(o, what, "", "dtype", c->torch_dtype, sizeof c->torch_dtype)) ||
        (st = get_str(o, what, "", "torch_dtype", c->torch_dtype, sizeof c->torch_dtype)))
        goto done;
done:
    if (st || !json_out)
        json_object_put(o);
    else
        *json_out = o;
    return st;
}

lmc_status lmc_config_load(const char *dir, lmc_model_config *cfg, json_object **json_out,
                           char **raw_out) {
    if (json_out) *json_out = NULL;
    if (raw_out) *raw_out = NULL;
    char *path = lmc_path_join(dir, "config.json");
    char *text = NULL;
    size_t len = 0;
    json_object *o = NULL;
    lmc_status st = LMC_OK;
    if (!path) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    if ((st = lmc_read_file(path, path, LMC_MAX_CONFIG_BYTES, &text, &len))) goto done;
    if ((st = lmc_config_parse(text, len, path, cfg, &o))) goto done;

    bool override = false;
    if ((st = lmc_generation_eos(dir, cfg->eos_ids, &cfg->n_eos, &override))) goto done;
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
