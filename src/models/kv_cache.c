/* KV caches: the generic entry points (dispatching through the cache's
 * vtable), the host-memory cache of the CPU models (standard, growing in
 * steps, or rotating for sliding-window attention), and the prompt-cache
 * file format shared by all backends. */
#include "base/error.h"
#include "formats/safetensors.h"
#include "models/kv_cache_cpu.h"
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

/* ------------------------------------------------------------ CPU cache */

static void cpu_kv_free(lmc_kv_cache *base) {
    lmc_cpu_kv_cache *c = (lmc_cpu_kv_cache *)base;
    for (size_t l = 0; l < c->n_layers; l++) {
        if (c->k) free(c->k[l]);
        if (c->v) free(c->v[l]);
    }
    free(c->k);
    free(c->v);
    free(c->pos);
    free(c);
}

static size_t cpu_kv_len(const lmc_kv_cache *base) {
    return ((const lmc_cpu_kv_cache *)base)->offset;
}

static void cpu_kv_clear(lmc_kv_cache *base) {
    lmc_cpu_kv_cache *c = (lmc_cpu_kv_cache *)base;
    for (size_t s = 0; s < c->cap; s++) c->pos[s] = -1;
    c->used = 0;
    c->offset = 0;
}

static lmc_status cpu_kv_trim(lmc_kv_cache *base, size_t n) {
    lmc_cpu_kv_cache *c = (lmc_cpu_kv_cache *)base;
    if (n > c->offset)
        return lmc_err(LMC_ERR_INVALID_ARG, "kv cache trim: %zu tokens requested, %zu held", n,
                       c->offset);
    size_t after = c->offset - n;
    if (c->ring) {
        /* The next query at `after` needs positions after - (window-1) ...
         * after-1; the ring keeps offset - ring ... offset-1. */
        size_t need = after + 1 > c->window ? after + 1 - c->window : 0;
        size_t kept = c->offset > c->ring ? c->offset - c->ring : 0;
        if (need < kept)
            return lmc_err(LMC_ERR_STATE,
                           "kv cache trim: cannot drop %zu tokens; the rotating cache "
                           "(window %zu) already evicted position %zu that would be needed",
                           n, c->window, need);
    }
    for (size_t s = 0; s < c->used; s++)
        if (c->pos[s] >= (int64_t)after) c->pos[s] = -1;
    if (!c->ring) c->used = after;
    c->offset = after;
    return LMC_OK;
}

static lmc_status snapshot_from_cpu(const lmc_cpu_kv_cache *c, lmc_kv_snapshot *s) {
    memset(s, 0, sizeof *s);
    size_t first = c->offset;
    for (size_t i = 0; i < c->used; i++)
        if (c->pos[i] >= 0 && (size_t)c->pos[i] < first) first = (size_t)c->pos[i];
    s->n_layers = c->n_layers;
    s->kv_heads = c->kv_heads;
    s->head_dim = c->head_dim;
    s->n_tokens = c->offset - first;
    s->offset = c->offset;
    s->window = c->window;
    lmc_status st = lmc_kv_snapshot_alloc(s);
    if (st) return st;
    size_t hd = c->head_dim, T = s->n_tokens;
    for (size_t l = 0; l < c->n_layers; l++)
        for (size_t h = 0; h < c->kv_heads; h++)
            for (size_t t = 0; t < T; t++) {
                size_t slot = lmc_cpu_kv_slot(c, first + t);
                size_t src = (h * c->cap + slot) * hd, dst = (h * T + t) * hd;
                memcpy(s->keys[l] + dst, c->k[l] + src, hd * sizeof(float));
                memcpy(s->values[l] + dst, c->v[l] + src, hd * sizeof(float));
            }
    return LMC_OK;
}

static lmc_status cpu_kv_save(const lmc_kv_cache *base, const char *path,
                              const char *const *meta_kv) {
    const lmc_cpu_kv_cache *c = (const lmc_cpu_kv_cache *)base;
    lmc_kv_snapshot s;
    lmc_status st = snapshot_from_cpu(c, &s);
    if (st) return st;
    st = lmc_kv_snapshot_save(&s, c->model_type, path, meta_kv);
    lmc_kv_snapshot_free(&s);
    return st;
}

const lmc_kv_cache_vtable lmc_cpu_kv_vtable = {
    .len = cpu_kv_len,
    .trim = cpu_kv_trim,
    .clear = cpu_kv_clear,
    .save = cpu_kv_save,
    .free = cpu_kv_free,
};

lmc_status lmc_cpu_kv_new(const lmc_model_config *cfg, lmc_cpu_kv_cache **out) {
    *out = NULL;
    lmc_cpu_kv_cache *c = calloc(1, sizeof *c);
    if (!c) return lmc_err(LMC_ERR_NOMEM, "kv cache: no memory");
    c->base.vt = &lmc_cpu_kv_vtable;
    snprintf(c->model_type, sizeof c->model_type, "%s", cfg->model_type);
    c->n_layers = (size_t)cfg->num_hidden_layers;
    c->kv_heads = (size_t)cfg->num_key_value_heads;
    c->head_dim = (size_t)cfg->head_dim;
    c->window = cfg->sliding_window > 0 ? (size_t)cfg->sliding_window : 0;
    c->ring = c->window ? c->window + (c->window < LMC_KV_TRIM_RESERVE ? c->window
                                                                       : LMC_KV_TRIM_RESERVE)
                        : 0;
    c->k = calloc(c->n_layers, sizeof(float *));
    c->v = calloc(c->n_layers, sizeof(float *));
    if (!c->k || !c->v) {
        cpu_kv_free(&c->base);
        return lmc_err(LMC_ERR_NOMEM, "kv cache: no memory");
    }
    *out = c;
    return LMC_OK;
}

lmc_status lmc_cpu_kv_reserve(lmc_cpu_kv_cache *c, size_t n) {
    if (n > ((size_t)1 << 40) - c->offset)
        return lmc_err(LMC_ERR_LIMIT, "kv cache: %zu more tokens exceed the cache limit", n);
    size_t need = c->offset + n;
    if (c->ring && need > c->ring) need = c->ring;
    if (need <= c->cap) return LMC_OK;
    size_t cap = (need + LMC_KV_STEP - 1) / LMC_KV_STEP * LMC_KV_STEP;
    if (c->ring && cap > c->ring) cap = c->ring;
    size_t hd = c->head_dim, kvh = c->kv_heads, nb = 2 * c->n_layers;
    int64_t *pos = realloc(c->pos, cap * sizeof *pos);
    if (!pos) return lmc_err(LMC_ERR_NOMEM, "kv cache: no memory to grow to %zu tokens", cap);
    c->pos = pos;
    for (size_t s = c->cap; s < cap; s++) pos[s] = -1;
    /* Allocate every new buffer before touching the old ones, so a failure
     * leaves the cache as it was. */
    float **bufs = calloc(nb ? nb : 1, sizeof *bufs);
    bool ok = bufs != NULL;
    for (size_t i = 0; ok && i < nb; i++) ok = (bufs[i] = malloc(kvh * cap * hd * sizeof(float)));
    if (!ok) {
        for (size_t i = 0; bufs && i < nb; i++) free(bufs[i]);
        free(bufs);
        return lmc_err(LMC_ERR_NOMEM, "kv cache: no memory to grow to %zu tokens", cap);
    }
    for (size_t i = 0; i < nb; i++) {
        float **slot = i % 2 ? &c->v[i / 2] : &c->k[i / 2];
        if (*slot)
            for (size_t h = 0; h < kvh; h++)
                memcpy(bufs[i] + h * cap * hd, *slot + h * c->cap * hd,
                       c->used * hd * sizeof(float));
        free(*slot);
        *slot = bufs[i];
    }
    free(bufs);
    c->cap = cap;
    return LMC_OK;
}

void lmc_cpu_kv_commit(lmc_cpu_kv_cache *c, size_t n) {
    size_t first = c->ring && n > c->ring ? n - c->ring : 0;
    for (size_t i = first; i < n; i++) {
        size_t p = c->offset + i, s = lmc_cpu_kv_slot(c, p);
        c->pos[s] = (int64_t)p;
        if (s + 1 > c->used) c->used = s + 1;
    }
    c->offset += n;
}

lmc_status lmc_cpu_kv_load(lmc_model *m, const char *path, lmc_kv_cache **out) {
    lmc_kv_snapshot s;
    lmc_status st = lmc_kv_snapshot_load(m, path, &s);
    if (st) return st;
    lmc_cpu_kv_cache *c = NULL;
    if ((st = lmc_cpu_kv_new(&m->cfg, &c))) goto done;
    size_t T = s.n_tokens;
    if (!c->ring && T != s.offset) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: holds %zu tokens but its offset is %zu", path, T,
                     s.offset);
        goto done;
    }
    if (c->ring) {
        size_t need = s.offset + 1 > c->window ? c->window - 1 : s.offset;
        if (T < need) {
            st = lmc_err(LMC_ERR_FORMAT,
                         "%s: holds %zu tokens; continuing at offset %zu with window %zu needs "
                         "the last %zu",
                         path, T, s.offset, c->window, need);
            goto done;
        }
    }
    /* Keep the newest tokens that fit and write them to their slots. */
    size_t keep = c->ring && T > c->ring ? c->ring : T, skip = T - keep;
    size_t first_pos = s.offset - T + skip;
    c->offset = first_pos;
    if ((st = lmc_cpu_kv_reserve(c, keep))) goto done;
    size_t hd = c->head_dim;
    for (size_t l = 0; l < c->n_layers; l++)
        for (size_t h = 0; h < c->kv_heads; h++)
            for (size_t t = 0; t < keep; t++) {
                size_t slot = lmc_cpu_kv_slot(c, first_pos + t);
                size_t dst = (h * c->cap + slot) * hd, src = (h * T + skip + t) * hd;
                memcpy(c->k[l] + dst, s.keys[l] + src, hd * sizeof(float));
                memcpy(c->v[l] + dst, s.values[l] + src, hd * sizeof(float));
            }
    lmc_cpu_kv_commit(c, keep);
done:
    lmc_kv_snapshot_free(&s);
    if (st) {
        if (c) cpu_kv_free(&c->base);
        return st;
    }
    *out = &c->base;
    return LMC_OK;
}
