/* The internal model interface: what the load factory constructs and what
 * generation drives. One lmc_model per loaded checkpoint; KV caches are
 * separate objects so several sessions can share one model. */
#ifndef LMC_MODELS_MODEL_H
#define LMC_MODELS_MODEL_H
#include "formats/config.h"
#include "formats/safetensors.h"
#include "lmc.h"

typedef struct lmc_model lmc_model;
typedef struct lmc_kv_cache lmc_kv_cache;

/* Everything a constructor needs; the directory has already been read. */
typedef struct {
    const lmc_model_config *config;
    json_object *config_json;   /* parsed config.json, for arch-specific keys */
    const char *config_raw;     /* the verbatim bytes it was parsed from */
    lmc_st_set *weights;        /* borrowed; the model may keep views into it
                                   and must be freed before the set */
    lmc_device device;
} lmc_loaded_model;

typedef lmc_status (*lmc_model_ctor)(const lmc_loaded_model *lm, lmc_model **out);

/* Batched execution over a paged KV cache (src/engine/kv_pool.h). One
 * forward takes a ragged batch: each item appends its n tokens to its own
 * sequence at that sequence's position, so prefill chunks and single
 * decode tokens mix in one step. */
struct lmc_kv_pool;
struct lmc_kv_seq;
typedef struct {
    struct lmc_kv_seq *seq; /* made from the model's pool */
    const int32_t *ids;     /* n token ids, or NULL when embeds is given */
    size_t n;               /* >= 1 */
    float *logits;          /* vocab floats for the item's last row (n * vocab
                               with all_logits), or NULL */
    int32_t *next;          /* or NULL: the greedy (argmax) id of that row,
                               computed where the logits are */
    /* Optional: n rows of hidden_size floats (host memory) used in place of
     * the token embeddings (a VLM prompt with image features spliced in); a
     * bf16/fp16 model rounds them to its dtype. Backends without
     * forward_embeds refuse such an item. */
    const float *embeds;
    bool all_logits;        /* logits holds every row's vocab floats */
    float *logprob;         /* or NULL: the log-softmax of next's logit */
    /* Optional: in a batch of this one item, a backend may poll it between
     * layers (a prefill chunk can take seconds on the CPU); true ends the
     * call with LMC_ERR_CANCELLED and the sequence not advanced. */
    bool (*cancel)(void *user);
    void *cancel_user;
    /* Optional: the length the sequence reaches at the end of the call this
     * item is one piece of (0: this item's own end). A model with longrope
     * picks its RoPE table by it, as transformers does for one forward of
     * the whole call (models/kv_cache.c feeds long prompts in pieces). */
    size_t rope_len;
} lmc_batch_item;

/* The length an item's RoPE table is picked by (see rope_len). */
static inline size_t lmc_batch_item_rope_len(const lmc_batch_item *it, size_t pos0) {
    return it->rope_len > pos0 + it->n ? it->rope_len : pos0 + it->n;
}

typedef struct {
    /* The cache-level entry points. Every backend with a paged pool points
     * them at the engine-backed implementations in models/kv_cache.c
     * (lmc_kv_cache_forward*), which run the cache's pool sequence through
     * forward_batch in chunks of at most batch_rows.
     *
     * forward: feed n tokens at the cache's current position; append their
     * K/V. logits: vocab floats for the last position, or n*vocab when
     * all_logits (speculative verification, perplexity); NULL for none.
     * Host memory. Bad arguments leave the cache untouched; after any other
     * failure (out of memory) its contents are unspecified: clear it. */
    lmc_status (*forward)(lmc_model *m, lmc_kv_cache *c, const int32_t *ids, size_t n,
                          float *logits, bool all_logits);
    void (*free)(lmc_model *m);
    /* Optional (NULL on CPU): like forward, but only the greedy (argmax) id
     * of the last position's logits and its log-softmax (logprob may be
     * NULL) come back; the logits stay on the device. Generation uses it
     * for temperature-0 sampling without processors or top logprobs. */
    lmc_status (*forward_greedy)(lmc_model *m, lmc_kv_cache *c, const int32_t *ids, size_t n,
                                 int32_t *next, float *logprob);
    /* Optional (NULL when the backend cannot): like forward, but the input
     * is n rows of hidden_size floats (host memory) used in place of the
     * token embeddings, e.g. a VLM prompt with image features spliced in.
     * A bf16/fp16 model rounds them to its dtype first. */
    lmc_status (*forward_embeds)(lmc_model *m, lmc_kv_cache *c, const float *embeds, size_t n,
                                 float *logits, bool all_logits);
    /* A pool of n_blocks blocks of block_tokens positions shaped for this
     * model (growable: lmc_kv_pool_grow), and one forward over a ragged
     * batch of its sequences. Sequences of a model whose every layer
     * slides are made with its window (lmc_model_seq_window); others keep
     * every position. The pool's exhaustion is LMC_ERR_LIMIT with no
     * sequence advanced. A backend without them has no KV cache. */
    lmc_status (*pool_new)(lmc_model *m, size_t n_blocks, size_t block_tokens,
                           struct lmc_kv_pool **out);
    lmc_status (*forward_batch)(lmc_model *m, struct lmc_kv_pool *pool, lmc_batch_item *items,
                                size_t n_items);
    size_t batch_rows; /* rows one forward_batch takes at most */
    /* Optional (NULL: lmc_kv_cache_save/load are UNSUPPORTED): copy the
     * keys (kv 0) or values (kv 1) of layer `layer` of one pool block from
     * or to host floats laid out [kv_heads][block_tokens][head_dim]. */
    lmc_status (*pool_read)(lmc_model *m, struct lmc_kv_pool *pool, uint32_t block,
                            size_t layer, int kv, float *dst);
    lmc_status (*pool_write)(lmc_model *m, struct lmc_kv_pool *pool, uint32_t block,
                             size_t layer, int kv, const float *src);
    /* Optional: the backend's own single-sequence cache, for models whose
     * shape its paged kernels cannot run (pool_new answers
     * LMC_ERR_UNSUPPORTED): lmc_kv_cache_new / lmc_kv_cache_load fall back
     * to these, and the backend's forwards recognise the caches they make. */
    lmc_status (*cache_new)(lmc_model *m, lmc_kv_cache **out);
    lmc_status (*cache_load)(lmc_model *m, const char *path, lmc_kv_cache **out);
    /* Optional: true when the API's caches are to be the backend's own
     * (cache_new / cache_load) even where its paged pool could hold them
     * (CUDA until its engine path has been checked on a GPU). */
    bool (*own_cache)(lmc_model *m);
} lmc_model_vtable;

struct lmc_model {
    const lmc_model_vtable *vt;
    lmc_model_config cfg;
    lmc_device device;
};

static inline lmc_status lmc_model_forward(lmc_model *m, lmc_kv_cache *c, const int32_t *ids,
                                           size_t n, float *logits, bool all_logits) {
    return m->vt->forward(m, c, ids, n, logits, all_logits);
}
static inline int64_t lmc_model_vocab(const lmc_model *m) { return m->cfg.vocab_size; }
/* The window sequences of this model's pool are made with (0: none). */
static inline size_t lmc_model_seq_window(const lmc_model *m) {
    return m->cfg.sliding_window > 0 ? (size_t)m->cfg.sliding_window : 0;
}
/* The checks every backend's forward_batch makes before anything changes:
 * the pool was made for m, each item has tokens in the vocabulary and a
 * sequence of that pool with the model's window, no sequence twice.
 * *rows = the total token count. */
lmc_status lmc_batch_check(const lmc_model *m, struct lmc_kv_pool *pool,
                           const lmc_batch_item *items, size_t n_items, size_t *rows);
static inline void lmc_model_free(lmc_model *m) {
    if (m) m->vt->free(m);
}

/* KV cache: one sequence of a paged pool of the cache's own
 * (src/engine/kv_pool.h), backend-independent (models/kv_cache.c). The
 * pool grows with use, so a short generation holds little; a sliding-window
 * model's sequence gives back what fell out of its window, keeping a few
 * positions more for short rollbacks. (A backend may keep a cache of its
 * own for models its paged kernels cannot run: the vtable's cache_new.)
 * The functions below dispatch through the cache's vtable. */
typedef struct {
    size_t (*len)(const lmc_kv_cache *c);
    lmc_status (*trim)(lmc_kv_cache *c, size_t n);
    void (*clear)(lmc_kv_cache *c);
    lmc_status (*save)(const lmc_kv_cache *c, const char *path, const char *const *meta_kv);
    void (*free)(lmc_kv_cache *c);
} lmc_kv_cache_vtable;
struct lmc_kv_cache {
    const lmc_kv_cache_vtable *vt;
    /* Optional (NULL: none): while set, a backend's forward may poll it
     * between layers; true ends the call with LMC_ERR_CANCELLED and the
     * cache as it was before the call. Generation sets it around a prefill. */
    bool (*cancel)(void *user);
    void *cancel_user;
    /* Optional (0: none): the length the sequence will reach at the end of
     * the caller's pieces (a prompt fed in prefill steps); forwards pass
     * it on as lmc_batch_item.rope_len. Generation sets it around a
     * prefill, perplexity around a window. */
    size_t rope_len;
};

static inline bool lmc_kv_cache_cancelled(const lmc_kv_cache *c) {
    return c->cancel && c->cancel(c->cancel_user);
}

lmc_status lmc_kv_cache_new(lmc_model *m, lmc_kv_cache **out);
void lmc_kv_cache_free(lmc_kv_cache *c);
size_t lmc_kv_cache_len(const lmc_kv_cache *c);          /* tokens seen so far */
/* Drop the last n tokens (speculative rollback, prefix reuse). Fails with
 * LMC_ERR_STATE when a sliding window has already given back what is
 * needed. */
lmc_status lmc_kv_cache_trim(lmc_kv_cache *c, size_t n);
void lmc_kv_cache_clear(lmc_kv_cache *c);
/* Prompt cache: K/V tensors + metadata (key,value,...,NULL) to safetensors. */
lmc_status lmc_kv_cache_save(const lmc_kv_cache *c, const char *path,
                             const char *const *meta_kv);
lmc_status lmc_kv_cache_load(lmc_model *m, const char *path, lmc_kv_cache **out);
/* The model an engine-backed cache was made for (NULL for others). */
lmc_model *lmc_kv_cache_model(const lmc_kv_cache *c);
/* The engine-backed cache-level forwards the backends' vtables name. */
lmc_status lmc_kv_cache_forward(lmc_model *m, lmc_kv_cache *c, const int32_t *ids, size_t n,
                                float *logits, bool all_logits);
lmc_status lmc_kv_cache_forward_greedy(lmc_model *m, lmc_kv_cache *c, const int32_t *ids,
                                       size_t n, int32_t *next, float *logprob);
lmc_status lmc_kv_cache_forward_embeds(lmc_model *m, lmc_kv_cache *c, const float *embeds,
                                       size_t n, float *logits, bool all_logits);

/* Tensor names of a llama-family decoder nested in a larger checkpoint
 * (backend/backend.h builds models; models/arch.h describes them). */
typedef struct {
    const char *prefix;  /* e.g. "model.language_model." (default "model.") */
    const char *lm_head; /* e.g. "lm_head.weight"; unused with tied embeddings */
} lmc_llama_names;

/* Prompt-cache file format shared by every backend: safetensors with
 * "layers.N.keys" / "layers.N.values" tensors of shape [1, kv_heads, T,
 * head_dim] (F32, T tokens in position order, the last of which is at
 * position offset-1) and metadata model_type, offset, window, num_layers
 * plus the caller's own keys. lmc_kv_cache_save copies the held positions
 * into a snapshot through the backend's pool_read; lmc_kv_cache_load reads
 * one and writes it into a new cache's blocks through pool_write. */
typedef struct {
    size_t n_layers, kv_heads, head_dim;
    size_t n_tokens; /* T: tokens held */
    size_t offset;   /* tokens seen (>= T; > T once a window gave positions back) */
    size_t window;   /* sliding window, 0 for none */
    float **keys, **values; /* per layer [kv_heads][T][head_dim] */
} lmc_kv_snapshot;
/* Allocate zeroed keys/values for the given dimensions. */
lmc_status lmc_kv_snapshot_alloc(lmc_kv_snapshot *s);
void lmc_kv_snapshot_free(lmc_kv_snapshot *s);
lmc_status lmc_kv_snapshot_save(const lmc_kv_snapshot *s, const char *model_type,
                                const char *path, const char *const *meta_kv);
/* Read `path` and check it against the model (type, layers, kv heads, head
 * dim, window); errors name the file and the mismatching field. */
lmc_status lmc_kv_snapshot_load(const lmc_model *m, const char *path, lmc_kv_snapshot *s);

#endif
