/* KV caches: the generic entry points (dispatching through the cache's
 * vtable) and the prompt-cache file format shared by all backends (each
 * backend's cache object lives with the backend). */
#include "base/error.h"
#include "formats/safetensors.h"
#include "models/model.h"
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ dispatch */

lmc_status lmc_kv_cache_new(lmc_model *m, lmc_kv_cache **out) {
    if (!m || !out) return lmc_err(LMC_ERR_INVALID_ARG, "kv cache: model and out are required");
    *out = NULL;
    return m->vt->cache_new(m, out);
}

void lmc_kv_cache_free(lmc_kv_cache *c) {
    if (c) c->vt->free(c);
}

size_t lmc_kv_cache_len(const lmc_kv_cache *c) { return c ? c->vt->len(c) : 0; }

lmc_status lmc_kv_cache_trim(lmc_kv_cache *c, size_t n) {
    if (!c) return lmc_err(LMC_ERR_INVALID_ARG, "kv cache trim: no cache");
    return c->vt->trim(c, n);
}

void lmc_kv_cache_clear(lmc_kv_cache *c) {
    if (c) c->vt->clear(c);
}

lmc_status lmc_kv_cache_save(const lmc_kv_cache *c, const char *path,
                             const char *const *meta_kv) {
    if (!c || !path) return lmc_err(LMC_ERR_INVALID_ARG, "kv cache save: cache and path are required");
    return c->vt->save(c, path, meta_kv);
}

lmc_status lmc_kv_cache_load(lmc_model *m, const char *path, lmc_kv_cache **out) {
    if (!m || !path || !out)
        return lmc_err(LMC_ERR_INVALID_ARG, "kv cache load: model, path and out are required");
    *out = NULL;
    if (!m->vt->cache_load)
        return lmc_err(LMC_ERR_UNSUPPORTED, "%s: this backend cannot restore a saved KV cache",
                       path);
    return m->vt->cache_load(m, path, out);
}

/* ------------------------------------------------------------ snapshot */

lmc_status lmc_kv_snapshot_alloc(lmc_kv_snapshot *s) {
    size_t per = s->kv_heads * s->n_tokens * s->head_dim;
    s->keys = calloc(s->n_layers ? s->n_layers : 1, sizeof(float *));
    s->values = calloc(s->n_layers ? s->n_layers : 1, sizeof(float *));
    if (!s->keys || !s->values) goto oom;
    for (size_t l = 0; l < s->n_layers; l++) {
        s->keys[l] = calloc(per ? per : 1, sizeof(float));
        s->values[l] = calloc(per ? per : 1, sizeof(float));
        if (!s->keys[l] || !s->values[l]) goto oom;
    }
    return LMC_OK;
oom:
    lmc_kv_snapshot_free(s);
    return lmc_err(LMC_ERR_NOMEM, "kv cache: no memory for %zu layers of %zu tokens",
                   s->n_layers, s->n_tokens);
}

void lmc_kv_snapshot_free(lmc_kv_snapshot *s) {
    if (!s) return;
    for (size_t l = 0; l < s->n_layers; l++) {
        if (s->keys) free(s->keys[l]);
        if (s->values) free(s->values[l]);
    }
    free(s->keys);
    free(s->values);
    s->keys = s->values = NULL;
}

static const char *const reserved_meta[] = {"model_type", "offset", "window", "num_layers"};

lmc_status lmc_kv_snapshot_save(const lmc_kv_snapshot *s, const char *model_type,
                                const char *path, const char *const *meta_kv) {
    size_t n_user = 0;
    if (meta_kv) {
        for (; meta_kv[2 * n_user]; n_user++) {
            if (!meta_kv[2 * n_user + 1])
                return lmc_err(LMC_ERR_INVALID_ARG, "%s: metadata key '%s' has no value", path,
                               meta_kv[2 * n_user]);
            for (size_t r = 0; r < sizeof reserved_meta / sizeof *reserved_meta; r++)
                if (!strcmp(meta_kv[2 * n_user], reserved_meta[r]))
                    return lmc_err(LMC_ERR_INVALID_ARG,
                                   "%s: metadata key '%s' is reserved for the cache itself",
                                   path, reserved_meta[r]);
        }
    }
    char offset[32], window[32], layers[32];
    snprintf(offset, sizeof offset, "%zu", s->offset);
    snprintf(window, sizeof window, "%zu", s->window);
    snprintf(layers, sizeof layers, "%zu", s->n_layers);
    const char **meta = calloc(2 * n_user + 9, sizeof *meta);
    lmc_st_write_tensor *t = calloc(2 * s->n_layers + 1, sizeof *t);
    char *names = calloc(2 * s->n_layers + 1, 48);
    lmc_status st = LMC_OK;
    if (!meta || !t || !names) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: no memory for the cache header", path);
        goto done;
    }
    size_t k = 0;
    meta[k++] = "model_type", meta[k++] = model_type;
    meta[k++] = "offset", meta[k++] = offset;
    meta[k++] = "window", meta[k++] = window;
    meta[k++] = "num_layers", meta[k++] = layers;
    for (size_t i = 0; i < 2 * n_user; i++) meta[k++] = meta_kv[i];
    meta[k] = NULL;
    for (size_t l = 0; l < s->n_layers; l++)
        for (int kv = 0; kv < 2; kv++) {
            size_t i = 2 * l + (size_t)kv;
            char *nm = names + 48 * i;
            snprintf(nm, 48, "layers.%zu.%s", l, kv ? "values" : "keys");
            t[i].name = nm;
            t[i].dtype = LMC_DT_F32;
            t[i].ndim = 4;
            t[i].shape[0] = 1;
            t[i].shape[1] = (int64_t)s->kv_heads;
            t[i].shape[2] = (int64_t)s->n_tokens;
            t[i].shape[3] = (int64_t)s->head_dim;
            t[i].data = kv ? s->values[l] : s->keys[l];
        }
    /* a prompt cache holds the conversation: readable by its owner only */
    st = lmc_st_write_mode(path, t, 2 * s->n_layers, meta, LMC_MODE_PRIVATE);
done:
    free(meta);
    free(t);
    free(names);
    return st;
}

static lmc_status meta_size(const lmc_st_file *f, const char *path, const char *key,
                            size_t *out) {
    const char *v = lmc_st_metadata(f, key);
    if (!v) return lmc_err(LMC_ERR_FORMAT, "%s: not a KV cache file (no '%s' metadata)", path, key);
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end || errno || v[0] == '-' || x > (1ull << 40))
        return lmc_err(LMC_ERR_FORMAT, "%s: metadata '%s' is '%s', expected a token count", path,
                       key, v);
    *out = (size_t)x;
    return LMC_OK;
}

lmc_status lmc_kv_snapshot_load(const lmc_model *m, const char *path, lmc_kv_snapshot *s) {
    memset(s, 0, sizeof *s);
    lmc_st_file *f = NULL;
    lmc_status st = lmc_st_open(path, &f);
    if (st) return st;
    const lmc_model_config *cfg = &m->cfg;
    const char *mt = lmc_st_metadata(f, "model_type");
    size_t layers = 0, window = 0, offset = 0;
    if (!mt) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: not a KV cache file (no 'model_type' metadata)", path);
        goto fail;
    }
    if (strcmp(mt, cfg->model_type)) {
        st = lmc_err(LMC_ERR_INVALID_ARG, "%s: cache was made by a '%s' model, this model is '%s'",
                     path, mt, cfg->model_type);
        goto fail;
    }
    if ((st = meta_size(f, path, "num_layers", &layers)) ||
        (st = meta_size(f, path, "window", &window)) ||
        (st = meta_size(f, path, "offset", &offset)))
        goto fail;
    if (layers != (size_t)cfg->num_hidden_layers) {
        st = lmc_err(LMC_ERR_INVALID_ARG, "%s: cache has %zu layers, the model has %" PRId64, path,
                     layers, cfg->num_hidden_layers);
        goto fail;
    }
    size_t model_window = cfg->sliding_window > 0 ? (size_t)cfg->sliding_window : 0;
    if (window != model_window) {
        st = lmc_err(LMC_ERR_INVALID_ARG, "%s: cache window is %zu, the model's is %zu", path,
                     window, model_window);
        goto fail;
    }
    s->n_layers = layers;
    s->kv_heads = (size_t)cfg->num_key_value_heads;
    s->head_dim = (size_t)cfg->head_dim;
    s->offset = offset;
    s->window = window;
    for (size_t l = 0; l < layers; l++)
        for (int kv = 0; kv < 2; kv++) {
            char nm[48];
            snprintf(nm, sizeof nm, "layers.%zu.%s", l, kv ? "values" : "keys");
            const lmc_tensor_view *t = lmc_st_find(f, nm);
            if (!t) {
                st = lmc_err(LMC_ERR_FORMAT, "%s: missing tensor '%s'", path, nm);
                goto fail;
            }
            if (t->dtype != LMC_DT_F32 && t->dtype != LMC_DT_F16 && t->dtype != LMC_DT_BF16) {
                st = lmc_err(LMC_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected F32", path,
                             nm, lmc_dtype_name(t->dtype));
                goto fail;
            }
            if (l == 0 && kv == 0 && t->ndim == 4) s->n_tokens = (size_t)t->shape[2];
            if (t->ndim != 4 || t->shape[0] != 1 || t->shape[1] != (int64_t)s->kv_heads ||
                t->shape[2] != (int64_t)s->n_tokens || t->shape[3] != (int64_t)s->head_dim) {
                char got[96] = "";
                for (int d = 0; d < t->ndim && d < 4; d++)
                    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%" PRId64,
                             d ? ", " : "", t->shape[d]);
                if (t->ndim > 4) snprintf(got + strlen(got), sizeof got - strlen(got), ", ...");
                st = lmc_err(LMC_ERR_INVALID_ARG,
                             "%s: tensor '%s' has shape [%s], expected [1, %zu, %zu, %zu] "
                             "(kv heads, tokens, head dim of this model)",
                             path, nm, got, s->kv_heads, s->n_tokens, s->head_dim);
                goto fail;
            }
        }
    if (s->n_tokens > offset) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: holds %zu tokens but its offset is %zu", path,
                     s->n_tokens, offset);
        goto fail;
    }
    if ((st = lmc_kv_snapshot_alloc(s))) goto fail;
    for (size_t l = 0; l < layers; l++)
        for (int kv = 0; kv < 2; kv++) {
            char nm[48];
            snprintf(nm, sizeof nm, "layers.%zu.%s", l, kv ? "values" : "keys");
            const lmc_tensor_view *t = lmc_st_find(f, nm);
            float *dst = kv ? s->values[l] : s->keys[l];
            lmc_to_f32(t->dtype, t->data, dst, (size_t)t->numel);
            /* a NaN or inf restored into the cache would poison every
             * later attention score silently */
            for (size_t i = 0; i < (size_t)t->numel; i++)
                if (!isfinite(dst[i])) {
                    st = lmc_err(LMC_ERR_FORMAT, "%s: tensor '%s' (layer %zu %s) holds %s at index "
                                 "%zu; a saved cache holds only finite values",
                                 path, nm, l, kv ? "values" : "keys",
                                 isnan(dst[i]) ? "NaN" : "an infinity", i);
                    goto fail;
                }
        }
    lmc_st_close(f);
    return LMC_OK;
fail:
    lmc_kv_snapshot_free(s);
    lmc_st_close(f);
    return st;
}
