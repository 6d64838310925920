/* The host-memory KV cache of the CPU model: standard (growing in steps)
 * or rotating for sliding-window attention; saves and loads through the
 * shared snapshot format (models/model.h). */
#include "backend/cpu/cpu_kv_cache.h"
#include "base/error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
