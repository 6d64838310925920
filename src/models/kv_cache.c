/* KV caches: one implementation for every backend with a paged pool: a
 * sequence of a pool of the cache's own (src/engine/kv_pool.h), fed
 * through the backend's forward_batch; and the prompt-cache file format
 * (lmc_kv_snapshot_*), written and read through the backend's block
 * read/write hooks.
 *
 * Why a pool per cache: the API's caches are independent objects (a chat
 * session, a prompt cache, speculative decoding's draft) that live as long
 * as their owner; a pool of their own grows with use like the host and
 * device caches did (a short generation holds a few blocks, not the whole
 * context) and goes with the cache. */
#include "base/error.h"
#include "engine/kv_pool.h"
#include "formats/safetensors.h"
#include "models/model.h"
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Positions per block: windowed sequences give blocks back at this
 * granularity, so theirs are a fraction of the window. */
#define SEQ_BLOCK 64
/* Positions the pool first has room for; it doubles from there. */
#define SEQ_FIRST_TOKENS 256
/* A windowed cache keeps this many positions beyond its window (at most
 * the window again), so short rollbacks (speculative decoding) still work
 * after the window has moved on. */
#define SEQ_TRIM_RESERVE 64
/* Positions a cache may hold, unless the model's context is longer. */
#define SEQ_MAX_TOKENS ((size_t)1 << 21)

typedef struct {
    lmc_kv_cache base;
    lmc_model *m;
    lmc_kv_pool *pool;
    lmc_kv_seq *seq;
    size_t max_blocks; /* the pool grows up to this many blocks */
    size_t max_pos;    /* positions a restored cache may start at */
} seq_cache;

static const lmc_kv_cache_vtable seq_cache_vt;

static size_t seq_block_tokens(size_t window) {
    if (!window) return SEQ_BLOCK;
    size_t b = window / 2;
    return b < 1 ? 1 : b > SEQ_BLOCK ? SEQ_BLOCK : b;
}

static size_t seq_slack(size_t window) {
    return window < SEQ_TRIM_RESERVE ? window : SEQ_TRIM_RESERVE;
}

static void seq_cache_free(lmc_kv_cache *cc) {
    seq_cache *c = (seq_cache *)cc;
    if (!c) return;
    lmc_kv_seq_free(c->seq);
    lmc_kv_pool_free(c->pool);
    free(c);
}

static size_t seq_cache_len(const lmc_kv_cache *cc) {
    return lmc_kv_seq_len(((const seq_cache *)cc)->seq);
}

static void seq_cache_clear(lmc_kv_cache *cc) { lmc_kv_seq_reset(((seq_cache *)cc)->seq); }

static lmc_status seq_cache_trim(lmc_kv_cache *cc, size_t n) {
    seq_cache *c = (seq_cache *)cc;
    size_t len = lmc_kv_seq_len(c->seq), window = lmc_kv_seq_window(c->seq);
    if (n > len) /* each backend's own cache reported this with its own code */
        return lmc_err(c->m->device == LMC_DEVICE_CPU ? LMC_ERR_INVALID_ARG : LMC_ERR_STATE,
                       "kv cache trim: cannot drop %zu tokens (%zu tokens requested, %zu held)",
                       n, n, len);
    if (n == 0) return LMC_OK;
    size_t after = len - n, first = lmc_kv_seq_first_live(c->seq);
    /* the next query, at position after, needs after + 1 - window .. */
    size_t need = window && after + 1 > window ? after + 1 - window : 0;
    if (need < first)
        return lmc_err(LMC_ERR_STATE,
                       "kv cache trim: cannot drop %zu tokens; the sliding window (%zu) "
                       "already evicted position %zu that would be needed",
                       n, window, need);
    return lmc_kv_seq_trim(c->seq, after);
}

static lmc_status seq_cache_create(lmc_model *m, seq_cache **out) {
    *out = NULL;
    if (!m->vt->pool_new || !m->vt->forward_batch || !m->vt->batch_rows)
        return lmc_err(LMC_ERR_UNSUPPORTED, "kv cache: the %s backend has no paged KV pool",
                       m->device == LMC_DEVICE_CPU ? "cpu" : "cuda");
    size_t window = lmc_model_seq_window(m), B = seq_block_tokens(window);
    size_t slack = seq_slack(window), ctx = SEQ_MAX_TOKENS;
    if (m->cfg.max_position_embeddings > 0 && (size_t)m->cfg.max_position_embeddings > ctx)
        ctx = (size_t)m->cfg.max_position_embeddings;
    seq_cache *c = calloc(1, sizeof *c);
    if (!c) return lmc_err(LMC_ERR_NOMEM, "kv cache: no memory");
    c->base.vt = &seq_cache_vt;
    c->m = m;
    c->max_pos = ctx;
    /* a windowed sequence holds its window, the slack and one step's rows */
    c->max_blocks = window ? (window + slack + m->vt->batch_rows) / B + 3 : (ctx + B - 1) / B;
    size_t first = (SEQ_FIRST_TOKENS + B - 1) / B;
    if (first > c->max_blocks) first = c->max_blocks;
    lmc_status st = m->vt->pool_new(m, first, B, &c->pool);
    if (!st) st = lmc_kv_seq_new(c->pool, window, &c->seq);
    if (st) {
        seq_cache_free(&c->base);
        return lmc_err_prefix(st, "kv cache");
    }
    lmc_kv_seq_set_slack(c->seq, slack);
    *out = c;
    return LMC_OK;
}

/* Grow the pool so that n more positions fit (a single sequence: no
 * sharing, so the blocks it holds are all it needs). */
static lmc_status seq_cache_room(seq_cache *c, size_t n) {
    size_t B = lmc_kv_pool_block_tokens(c->pool), len = lmc_kv_seq_len(c->seq);
    size_t first = lmc_kv_seq_first_live(c->seq) / B;
    size_t need = (len + n + B - 1) / B - first, have = lmc_kv_pool_n_blocks(c->pool);
    if (need <= have) return LMC_OK;
    if (need > c->max_blocks)
        return lmc_err(LMC_ERR_LIMIT,
                       "kv cache: %zu more tokens after %zu exceed the cache's limit of %zu "
                       "positions",
                       n, len, c->max_blocks * B);
    size_t to = 2 * have > need ? 2 * have : need;
    if (to > c->max_blocks) to = c->max_blocks;
    return lmc_kv_pool_grow(c->pool, to);
}

lmc_status lmc_kv_cache_new(lmc_model *m, lmc_kv_cache **out) {
    if (!m || !out) return lmc_err(LMC_ERR_INVALID_ARG, "kv cache: model and out are required");
    *out = NULL;
    if (m->vt->own_cache && m->vt->cache_new && m->vt->own_cache(m))
        return m->vt->cache_new(m, out);
    seq_cache *c;
    lmc_status st = seq_cache_create(m, &c);
    if (st == LMC_ERR_UNSUPPORTED && m->vt->cache_new) { /* the backend's own */
        lmc_err_clear();
        return m->vt->cache_new(m, out);
    }
    if (!st) *out = &c->base;
    return st;
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

lmc_model *lmc_kv_cache_model(const lmc_kv_cache *c) {
    return c && c->vt == &seq_cache_vt ? ((const seq_cache *)c)->m : NULL;
}

lmc_status lmc_kv_cache_save(const lmc_kv_cache *c, const char *path,
                             const char *const *meta_kv) {
    if (!c || !path) return lmc_err(LMC_ERR_INVALID_ARG, "kv cache save: cache and path are required");
    return c->vt->save(c, path, meta_kv);
}

/* ------------------------------------------------------------ forward */

/* n rows (ids or embeds) through forward_batch in chunks; the logits
 * (every row's with all_logits, else the last row's), the greedy id and
 * its log-probability come from the last chunk. */
static lmc_status seq_forward(lmc_model *m, lmc_kv_cache *cc, const int32_t *ids,
                              const float *embeds, size_t n, float *logits, bool all_logits,
                              int32_t *next, float *logprob, const char *what) {
    if (!cc || (!ids && !embeds))
        return lmc_err(LMC_ERR_INVALID_ARG, "%s: a cache and its input are required", what);
    if (cc->vt != &seq_cache_vt || ((seq_cache *)cc)->m != m)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "%s: the KV cache was made for another model (a model of another shape)",
                       what);
    if (n == 0) return lmc_err(LMC_ERR_INVALID_ARG, "%s: no tokens", what);
    seq_cache *c = (seq_cache *)cc;
    const lmc_model_config *cfg = &m->cfg;
    /* checked up front so a bad id never leaves the cache half-advanced */
    for (size_t i = 0; ids && i < n; i++)
        if (ids[i] < 0 || ids[i] >= cfg->vocab_size)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "%s: token id %d at index %zu is outside the vocabulary (size %" PRId64
                           ")",
                           what, ids[i], i, cfg->vocab_size);
    size_t V = (size_t)cfg->vocab_size, H = (size_t)cfg->hidden_size;
    size_t rows = m->vt->batch_rows, len0 = lmc_kv_seq_len(c->seq);
    lmc_status st = LMC_OK;
    for (size_t done = 0; done < n && !st; done += rows) {
        size_t k = n - done < rows ? n - done : rows;
        bool last = done + k == n;
        lmc_batch_item it = {.seq = c->seq, .n = k, .cancel = cc->cancel,
                             .cancel_user = cc->cancel_user,
                             .rope_len = cc->rope_len > len0 + n ? cc->rope_len : len0 + n};
        if (ids) it.ids = ids + done;
        else it.embeds = embeds + done * H;
        if (logits && all_logits) {
            it.logits = logits + done * V;
            it.all_logits = true;
        } else if (last) {
            it.logits = logits;
        }
        if (last) {
            it.next = next;
            it.logprob = next ? logprob : NULL;
        }
        st = seq_cache_room(c, k);
        if (!st) st = m->vt->forward_batch(m, c->pool, &it, 1);
    }
    /* what was fed before a failure goes again, unless the window has
     * already moved past it (then the contents are unspecified) */
    if (st && lmc_kv_seq_len(c->seq) > len0) {
        size_t first = lmc_kv_seq_first_live(c->seq), w = lmc_kv_seq_window(c->seq);
        if (!first || (w && len0 + 1 >= first + w)) lmc_kv_seq_trim(c->seq, len0);
    }
    return st;
}

lmc_status lmc_kv_cache_forward(lmc_model *m, lmc_kv_cache *c, const int32_t *ids, size_t n,
                                float *logits, bool all_logits) {
    return seq_forward(m, c, ids, NULL, n, logits, all_logits, NULL, NULL, "forward");
}

lmc_status lmc_kv_cache_forward_greedy(lmc_model *m, lmc_kv_cache *c, const int32_t *ids,
                                       size_t n, int32_t *next, float *logprob) {
    if (!next) return lmc_err(LMC_ERR_INVALID_ARG, "forward_greedy: next is required");
    return seq_forward(m, c, ids, NULL, n, NULL, false, next, logprob, "forward_greedy");
}

lmc_status lmc_kv_cache_forward_embeds(lmc_model *m, lmc_kv_cache *c, const float *embeds,
                                       size_t n, float *logits, bool all_logits) {
    return seq_forward(m, c, NULL, embeds, n, logits, all_logits, NULL, NULL, "forward_embeds");
}

/* ------------------------------------------------------------ save / load */

/* Per layer and k/v: the snapshot's [kv_heads][T][head_dim] rows for
 * positions first .. first+T-1, from (or to, with to_pool) the blocks. */
static lmc_status seq_copy(seq_cache *c, lmc_kv_snapshot *s, size_t first, bool to_pool) {
    lmc_model *m = c->m;
    size_t B = lmc_kv_pool_block_tokens(c->pool), hd = s->head_dim, kvh = s->kv_heads;
    size_t T = s->n_tokens, end = first + T, nt;
    const uint32_t *table = lmc_kv_seq_table(c->seq, &nt);
    size_t bf = kvh * B * hd;
    float *buf = calloc(bf ? bf : 1, sizeof *buf);
    if (!buf) return lmc_err(LMC_ERR_NOMEM, "kv cache: no memory for a block copy");
    lmc_status st = LMC_OK;
    for (size_t l = 0; l < s->n_layers && !st; l++)
        for (int kv = 0; kv < 2 && !st; kv++) {
            float *snap = kv ? s->values[l] : s->keys[l];
            for (size_t e = first / B; e * B < end && !st; e++) {
                size_t lo = e * B > first ? e * B : first, hi = (e + 1) * B < end ? (e + 1) * B : end;
                if (e >= nt || table[e] == LMC_KV_NO_BLOCK) {
                    st = lmc_err(LMC_ERR_STATE, "kv cache: position %zu is not held", lo);
                    break;
                }
                if (!to_pool) st = m->vt->pool_read(m, c->pool, table[e], l, kv, buf);
                else memset(buf, 0, bf * sizeof *buf);
                for (size_t h = 0; h < kvh && !st; h++)
                    for (size_t p = lo; p < hi; p++) {
                        float *b = buf + (h * B + p % B) * hd, *t = snap + (h * T + p - first) * hd;
                        memcpy(to_pool ? b : t, to_pool ? t : b, hd * sizeof(float));
                    }
                if (!st && to_pool) st = m->vt->pool_write(m, c->pool, table[e], l, kv, buf);
            }
        }
    free(buf);
    return st;
}

static lmc_status seq_cache_save(const lmc_kv_cache *cc, const char *path,
                                 const char *const *meta_kv) {
    seq_cache *c = (seq_cache *)cc;
    lmc_model *m = c->m;
    if (!m->vt->pool_read)
        return lmc_err(LMC_ERR_UNSUPPORTED, "%s: this backend cannot read its KV cache back",
                       path);
    const lmc_model_config *cfg = &m->cfg;
    size_t len = lmc_kv_seq_len(c->seq), first = lmc_kv_seq_first_live(c->seq);
    lmc_kv_snapshot s = {.n_layers = (size_t)cfg->num_hidden_layers,
                         .kv_heads = (size_t)cfg->num_key_value_heads,
                         .head_dim = (size_t)cfg->head_dim, .n_tokens = len - first,
                         .offset = len, .window = lmc_kv_seq_window(c->seq)};
    lmc_status st = lmc_kv_snapshot_alloc(&s);
    if (st) return st;
    st = seq_copy(c, &s, first, false);
    if (!st) st = lmc_kv_snapshot_save(&s, cfg->model_type, path, meta_kv);
    lmc_kv_snapshot_free(&s);
    return st;
}

static const lmc_kv_cache_vtable seq_cache_vt = {
    .len = seq_cache_len,
    .trim = seq_cache_trim,
    .clear = seq_cache_clear,
    .save = seq_cache_save,
    .free = seq_cache_free,
};

lmc_status lmc_kv_cache_load(lmc_model *m, const char *path, lmc_kv_cache **out) {
    if (!m || !path || !out)
        return lmc_err(LMC_ERR_INVALID_ARG, "kv cache load: model, path and out are required");
    *out = NULL;
    if (m->vt->own_cache && m->vt->cache_load && m->vt->own_cache(m))
        return m->vt->cache_load(m, path, out);
    seq_cache *c = NULL;
    lmc_status st = m->vt->pool_write ? seq_cache_create(m, &c) : LMC_ERR_UNSUPPORTED;
    if (st == LMC_ERR_UNSUPPORTED && m->vt->cache_load) { /* the backend's own cache */
        lmc_err_clear();
        return m->vt->cache_load(m, path, out);
    }
    if (st == LMC_ERR_UNSUPPORTED)
        return lmc_err(LMC_ERR_UNSUPPORTED, "%s: this backend cannot restore a saved KV cache",
                       path);
    if (st) return st;
    lmc_kv_snapshot s;
    if ((st = lmc_kv_snapshot_load(m, path, &s))) {
        seq_cache_free(&c->base);
        return st;
    }
    size_t T = s.n_tokens, window = s.window;
    if (!window && T != s.offset) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: holds %zu tokens but its offset is %zu", path, T,
                     s.offset);
        goto done;
    }
    if (window) {
        size_t need = s.offset + 1 > window ? window - 1 : s.offset;
        if (T < need) {
            st = lmc_err(LMC_ERR_FORMAT,
                         "%s: holds %zu tokens; continuing at offset %zu with window %zu needs "
                         "the last %zu",
                         path, T, s.offset, window, need);
            goto done;
        }
    }
    if (s.offset > c->max_pos) {
        st = lmc_err(LMC_ERR_LIMIT, "%s: offset %zu exceeds the cache's limit of %zu positions",
                     path, s.offset, c->max_pos);
        goto done;
    }
    /* the newest positions the cache would hold; older ones are not needed */
    size_t cap = window ? window + seq_slack(window) : T, keep = T > cap ? cap : T;
    size_t first = s.offset - keep;
    if (keep < T) { /* the snapshot's rows from T - keep on */
        for (size_t l = 0; l < s.n_layers; l++)
            for (int kv = 0; kv < 2; kv++) {
                float *a = kv ? s.values[l] : s.keys[l];
                for (size_t h = 0; h < s.kv_heads; h++)
                    memmove(a + h * keep * s.head_dim, a + (h * T + T - keep) * s.head_dim,
                            keep * s.head_dim * sizeof *a);
            }
        s.n_tokens = keep;
    }
    if (first) st = lmc_kv_seq_start_at(c->seq, first);
    if (!st && keep) {
        st = seq_cache_room(c, keep);
        if (!st) st = lmc_kv_seq_reserve(c->seq, keep);
        if (!st) st = seq_copy(c, &s, first, true);
        if (!st) st = lmc_kv_seq_commit(c->seq, keep);
    }
    if (st) st = lmc_err_prefix(st, "%s", path);
done:
    lmc_kv_snapshot_free(&s);
    if (st) {
        if (c) seq_cache_free(&c->base);
        return st;
    }
    *out = &c->base;
    return LMC_OK;
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
