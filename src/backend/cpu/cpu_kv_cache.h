/* The host-memory KV cache the CPU model uses (private to src/backend/cpu). */
#ifndef LMC_BACKEND_CPU_KV_CACHE_H
#define LMC_BACKEND_CPU_KV_CACHE_H
#include "models/model.h"

/* Growth step of a standard cache, in tokens. */
#define LMC_KV_STEP 256
/* A rotating cache keeps window-1 past tokens for attention plus up to this
 * many more (at most the window again), so short rollbacks (speculative
 * decoding) still work after wrapping. */
#define LMC_KV_TRIM_RESERVE 64

typedef struct {
    lmc_kv_cache base;
    char model_type[64];
    size_t n_layers, kv_heads, head_dim;
    size_t window;   /* 0 = standard cache */
    size_t ring;     /* slot count of a rotating cache (0 for standard) */
    size_t cap;      /* slots allocated per layer and kv head */
    size_t used;     /* slots that may hold tokens (pos < 0 marks empty) */
    size_t offset;   /* tokens seen */
    int64_t *pos;    /* position held by each slot, -1 when empty */
    float **k, **v;  /* per layer [kv_heads][cap][head_dim] */
} lmc_cpu_kv_cache;

extern const lmc_kv_cache_vtable lmc_cpu_kv_vtable;

lmc_status lmc_cpu_kv_new(const lmc_model_config *cfg, lmc_cpu_kv_cache **out);
/* Make room so that `n` more tokens can be written. */
lmc_status lmc_cpu_kv_reserve(lmc_cpu_kv_cache *c, size_t n);
/* Slot that position p is written to (call after lmc_cpu_kv_reserve). */
static inline size_t lmc_cpu_kv_slot(const lmc_cpu_kv_cache *c, size_t p) {
    return c->ring ? p % c->ring : p;
}
/* Record that positions [offset, offset+n) were written to their slots. */
void lmc_cpu_kv_commit(lmc_cpu_kv_cache *c, size_t n);
lmc_status lmc_cpu_kv_load(lmc_model *m, const char *path, lmc_kv_cache **out);

#endif
