/* The paged KV block pool (see kv_pool.h): a free list, per-block
 * reference counts, per-sequence block tables and the prefix index.
 *
 * Prefix index: an open-addressing table of entries, one per published
 * block, keyed by (salt, parent entry serial, the block's tokens). Parents
 * are named by a serial number that is never reused, so evicting a parent
 * makes its children unreachable instead of letting a recycled block id
 * match the wrong history; unreachable entries age out like any other.
 * The index holds one reference on each published block; an entry whose
 * block has no other holder is "cached" and may be evicted (oldest use
 * first) when the free list is empty. */
#include "engine/kv_pool.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"

typedef struct {
    uint64_t serial; /* 0 = empty slot; never reused */
    uint64_t parent; /* serial of the previous block's entry, 0 for the first */
    uint64_t salt;
    uint64_t hash;
    uint64_t used;   /* pool tick of the last lookup or publish */
    uint32_t block;
    bool dead;       /* tombstone: keeps probe chains intact */
} px_entry;

struct lmc_kv_pool {
    size_t n_blocks, B, bpb;
    lmc_status (*copy)(void *user, uint32_t dst, uint32_t src);
    void (*release)(void *user);
    lmc_status (*grow)(void *user, size_t n_blocks);
    void *user;
    unsigned char *storage;
    uint32_t *refs;
    uint32_t *free_list;
    size_t n_free;
    int32_t *tokens;      /* n_blocks * B: published blocks' tokens */
    int64_t *entry_of;    /* block -> index slot of its entry, -1 if none */
    px_entry *index;
    size_t index_cap, n_entries, n_dead, n_cached;
    uint64_t next_serial, tick;
    size_t n_seqs;
    const void *owner;
};

struct lmc_kv_seq {
    lmc_kv_pool *p;
    size_t window, len, reserved;
    size_t slack; /* positions kept beyond the window for rollbacks */
    size_t floor; /* positions below were never held (lmc_kv_seq_start_at) */
    size_t first_block; /* entries below are LMC_KV_NO_BLOCK */
    uint32_t *table;
    size_t n_table, cap_table;
};

/* ------------------------------------------------------------ pool */

lmc_status lmc_kv_pool_new(const lmc_kv_pool_options *o, lmc_kv_pool **out) {
    if (!o || !out) return lmc_err(LMC_ERR_INVALID_ARG, "kv pool: options and out are required");
    *out = NULL;
    if (o->n_blocks == 0 || o->block_tokens == 0 || o->n_blocks >= LMC_KV_NO_BLOCK)
        return lmc_err(LMC_ERR_INVALID_ARG, "kv pool: %zu blocks of %zu tokens is not a pool",
                       o->n_blocks, o->block_tokens);
    if (o->bytes_per_block == 0 && !o->copy)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "kv pool: a pool without host storage needs a copy hook");
    if (o->bytes_per_block && o->n_blocks > SIZE_MAX / o->bytes_per_block)
        return lmc_err(LMC_ERR_LIMIT, "kv pool: %zu blocks of %zu bytes overflow", o->n_blocks,
                       o->bytes_per_block);
    lmc_kv_pool *p = calloc(1, sizeof *p);
    if (!p) return lmc_err(LMC_ERR_NOMEM, "kv pool: no memory");
    p->n_blocks = o->n_blocks;
    p->B = o->block_tokens;
    p->bpb = o->bytes_per_block;
    p->copy = o->copy;
    p->grow = o->grow;
    p->user = o->user;
    p->index_cap = 16;
    while (p->index_cap < 2 * p->n_blocks) p->index_cap *= 2;
    p->refs = calloc(p->n_blocks, sizeof *p->refs);
    p->free_list = malloc(p->n_blocks * sizeof *p->free_list);
    p->tokens = malloc(p->n_blocks * p->B * sizeof *p->tokens);
    p->entry_of = malloc(p->n_blocks * sizeof *p->entry_of);
    p->index = calloc(p->index_cap, sizeof *p->index);
    if (p->bpb) p->storage = malloc(p->n_blocks * p->bpb);
    if (!p->refs || !p->free_list || !p->tokens || !p->entry_of || !p->index ||
        (p->bpb && !p->storage)) {
        lmc_kv_pool_free(p); /* the caller still owns its storage: no release yet */
        return lmc_err(LMC_ERR_NOMEM, "kv pool: no memory for %zu blocks", o->n_blocks);
    }
    for (size_t i = 0; i < p->n_blocks; i++) {
        p->free_list[i] = (uint32_t)(p->n_blocks - 1 - i); /* block 0 comes out first */
        p->entry_of[i] = -1;
    }
    p->n_free = p->n_blocks;
    p->next_serial = 1;
    p->release = o->release;
    *out = p;
    return LMC_OK;
}

void lmc_kv_pool_free(lmc_kv_pool *p) {
    if (!p) return;
    if (p->release) p->release(p->user);
    free(p->refs);
    free(p->free_list);
    free(p->tokens);
    free(p->entry_of);
    free(p->index);
    free(p->storage);
    free(p);
}

/* The prefix index rebuilt with room for cap slots (a power of two). */
static bool index_rehash(lmc_kv_pool *p, size_t cap) {
    px_entry *idx = calloc(cap, sizeof *idx);
    if (!idx) return false;
    for (size_t i = 0; i < p->index_cap; i++) {
        if (!p->index[i].serial) continue;
        size_t j = p->index[i].hash & (cap - 1);
        while (idx[j].serial) j = (j + 1) & (cap - 1);
        idx[j] = p->index[i];
        p->entry_of[idx[j].block] = (int64_t)j;
    }
    free(p->index);
    p->index = idx;
    p->index_cap = cap;
    p->n_dead = 0;
    return true;
}

lmc_status lmc_kv_pool_grow(lmc_kv_pool *p, size_t n) {
    if (n <= p->n_blocks) return LMC_OK;
    if (n >= LMC_KV_NO_BLOCK || (p->bpb && n > SIZE_MAX / p->bpb) || n > SIZE_MAX / p->B)
        return lmc_err(LMC_ERR_LIMIT, "kv pool: %zu blocks of %zu tokens overflow", n, p->B);
    if (!p->bpb && !p->grow)
        return lmc_err(LMC_ERR_UNSUPPORTED, "kv pool: this pool's storage cannot grow");
    /* every array first (a larger array is harmless), the storage last */
    uint32_t *refs = realloc(p->refs, n * sizeof *refs);
    if (refs) p->refs = refs;
    uint32_t *fl = refs ? realloc(p->free_list, n * sizeof *fl) : NULL;
    if (fl) p->free_list = fl;
    int32_t *toks = fl ? realloc(p->tokens, n * p->B * sizeof *toks) : NULL;
    if (toks) p->tokens = toks;
    int64_t *eo = toks ? realloc(p->entry_of, n * sizeof *eo) : NULL;
    if (eo) p->entry_of = eo;
    size_t cap = p->index_cap;
    while (cap < 2 * n) cap *= 2;
    if (!eo || (cap != p->index_cap && !index_rehash(p, cap)))
        return lmc_err(LMC_ERR_NOMEM, "kv pool: no memory to grow to %zu blocks", n);
    if (p->bpb) {
        unsigned char *st = realloc(p->storage, n * p->bpb);
        if (!st)
            return lmc_err(LMC_ERR_NOMEM, "kv pool: no memory for %zu blocks of %zu bytes", n,
                           p->bpb);
        p->storage = st;
    } else {
        lmc_status st = p->grow(p->user, n);
        if (st) return st;
    }
    /* the new blocks join the free list, the lowest id coming out first */
    for (size_t b = n; b-- > p->n_blocks;) {
        p->refs[b] = 0;
        p->entry_of[b] = -1;
        p->free_list[p->n_free++] = (uint32_t)b;
    }
    p->n_blocks = n;
    return LMC_OK;
}

size_t lmc_kv_pool_block_tokens(const lmc_kv_pool *p) { return p->B; }
size_t lmc_kv_pool_n_blocks(const lmc_kv_pool *p) { return p->n_blocks; }
size_t lmc_kv_pool_bytes_per_block(const lmc_kv_pool *p) { return p->bpb; }
const void *lmc_kv_pool_owner(const lmc_kv_pool *p) { return p->owner; }
void lmc_kv_pool_set_owner(lmc_kv_pool *p, const void *owner) { p->owner = owner; }
size_t lmc_kv_pool_free_blocks(const lmc_kv_pool *p) { return p->n_free; }
size_t lmc_kv_pool_cached_blocks(const lmc_kv_pool *p) { return p->n_cached; }
void *lmc_kv_pool_user(const lmc_kv_pool *p) { return p->user; }
void *lmc_kv_pool_block(lmc_kv_pool *p, uint32_t id) {
    return p->storage && id < p->n_blocks ? p->storage + (size_t)id * p->bpb : NULL;
}
uint32_t lmc_kv_pool_refs(const lmc_kv_pool *p, uint32_t id) {
    return id < p->n_blocks ? p->refs[id] : 0;
}

static void entry_remove(lmc_kv_pool *p, size_t slot);

/* One reference fewer; a block nobody holds goes back to the free list,
 * one only the index holds becomes cached. */
static void unref(lmc_kv_pool *p, uint32_t b) {
    if (--p->refs[b] == 0)
        p->free_list[p->n_free++] = b;
    else if (p->refs[b] == 1 && p->entry_of[b] >= 0)
        p->n_cached++;
}

static void ref(lmc_kv_pool *p, uint32_t b) {
    if (p->refs[b] == 1 && p->entry_of[b] >= 0) p->n_cached--;
    p->refs[b]++;
}

/* Evict the least recently used cached entry; false when none is. */
static bool evict_one(lmc_kv_pool *p) {
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < p->index_cap; i++) {
        const px_entry *e = &p->index[i];
        if (!e->serial || e->dead || p->refs[e->block] != 1) continue;
        if (best == SIZE_MAX || e->used < p->index[best].used) best = i;
    }
    if (best == SIZE_MAX) return false;
    entry_remove(p, best);
    return true;
}

/* Blocks an allocation can count on: free plus evictable. */
static size_t available(const lmc_kv_pool *p) { return p->n_free + p->n_cached; }

/* A fresh block with one reference (callers checked available()). */
static uint32_t take(lmc_kv_pool *p) {
    if (p->n_free == 0) evict_one(p);
    uint32_t b = p->free_list[--p->n_free];
    p->refs[b] = 1;
    return b;
}

/* ------------------------------------------------------------ index */

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 29);
}

static uint64_t key_hash(uint64_t salt, uint64_t parent, const int32_t *toks, size_t B) {
    uint64_t h = mix(mix(0x51ED270B27ull, salt), parent);
    for (size_t i = 0; i < B; i++) h = mix(h, (uint32_t)toks[i]);
    return h;
}

static int64_t entry_find(lmc_kv_pool *p, uint64_t salt, uint64_t parent, const int32_t *toks) {
    uint64_t h = key_hash(salt, parent, toks, p->B);
    size_t mask = p->index_cap - 1;
    for (size_t i = h & mask, n = 0; n < p->index_cap; i = (i + 1) & mask, n++) {
        const px_entry *e = &p->index[i];
        if (!e->serial && !e->dead) return -1;
        if (e->dead || e->hash != h || e->salt != salt || e->parent != parent) continue;
        if (!memcmp(p->tokens + (size_t)e->block * p->B, toks, p->B * sizeof *toks))
            return (int64_t)i;
    }
    return -1;
}

static void entry_remove(lmc_kv_pool *p, size_t slot) {
    px_entry *e = &p->index[slot];
    uint32_t b = e->block;
    p->entry_of[b] = -1;
    if (p->refs[b] == 1) p->n_cached--;
    e->serial = 0;
    e->dead = true;
    p->n_entries--;
    p->n_dead++;
    unref(p, b);
}

/* Rebuild the table without tombstones when they crowd it. */
static void index_compact(lmc_kv_pool *p) {
    px_entry *old = p->index;
    p->index = calloc(p->index_cap, sizeof *p->index);
    if (!p->index) { /* keep the crowded table: lookups still work */
        p->index = old;
        return;
    }
    size_t mask = p->index_cap - 1;
    for (size_t i = 0; i < p->index_cap; i++) {
        if (!old[i].serial) continue;
        size_t j = old[i].hash & mask;
        while (p->index[j].serial) j = (j + 1) & mask;
        p->index[j] = old[i];
        p->entry_of[old[i].block] = (int64_t)j;
    }
    free(old);
    p->n_dead = 0;
}

static uint64_t entry_add(lmc_kv_pool *p, uint64_t salt, uint64_t parent, uint32_t b,
                          const int32_t *toks) {
    if (p->n_entries + p->n_dead + 1 > p->index_cap * 3 / 4) index_compact(p);
    memcpy(p->tokens + (size_t)b * p->B, toks, p->B * sizeof *toks);
    uint64_t h = key_hash(salt, parent, toks, p->B);
    size_t mask = p->index_cap - 1, i = h & mask;
    while (p->index[i].serial) i = (i + 1) & mask;
    px_entry *e = &p->index[i];
    *e = (px_entry){.serial = p->next_serial++, .parent = parent, .salt = salt, .hash = h,
                    .used = ++p->tick, .block = b};
    p->entry_of[b] = (int64_t)i;
    p->n_entries++;
    p->refs[b]++; /* the index's reference; a sequence holds the block too */
    return e->serial;
}

void lmc_kv_pool_drop_cache(lmc_kv_pool *p) {
    for (size_t i = 0; i < p->index_cap; i++)
        if (p->index[i].serial && p->refs[p->index[i].block] == 1) entry_remove(p, i);
    index_compact(p);
}

/* ------------------------------------------------------------ sequences */

static lmc_status table_grow(lmc_kv_seq *s, size_t n) {
    if (n <= s->cap_table) return LMC_OK;
    size_t cap = s->cap_table ? s->cap_table : 8;
    while (cap < n) cap *= 2;
    uint32_t *t = realloc(s->table, cap * sizeof *t);
    if (!t) return lmc_err(LMC_ERR_NOMEM, "kv pool: no memory for a block table");
    s->table = t;
    s->cap_table = cap;
    return LMC_OK;
}

lmc_status lmc_kv_seq_new(lmc_kv_pool *p, size_t window, lmc_kv_seq **out) {
    if (!p || !out) return lmc_err(LMC_ERR_INVALID_ARG, "kv pool: pool and out are required");
    *out = calloc(1, sizeof **out);
    if (!*out) return lmc_err(LMC_ERR_NOMEM, "kv pool: no memory");
    (*out)->p = p;
    (*out)->window = window;
    p->n_seqs++;
    return LMC_OK;
}

lmc_status lmc_kv_seq_fork(lmc_kv_seq *s, lmc_kv_seq **out) {
    if (!s || !out) return lmc_err(LMC_ERR_INVALID_ARG, "kv pool: sequence and out are required");
    lmc_status st = lmc_kv_seq_new(s->p, s->window, out);
    if (st) return st;
    lmc_kv_seq *c = *out;
    if ((st = table_grow(c, s->n_table))) {
        lmc_kv_seq_free(c);
        *out = NULL;
        return st;
    }
    /* reserved-but-unwritten positions are not shared: the fork ends at len */
    size_t keep = (s->len + s->p->B - 1) / s->p->B;
    for (size_t i = 0; i < keep; i++) {
        c->table[i] = s->table[i];
        if (c->table[i] != LMC_KV_NO_BLOCK) ref(s->p, c->table[i]);
    }
    c->n_table = keep;
    c->len = s->len;
    c->first_block = s->first_block;
    c->floor = s->floor;
    c->slack = s->slack;
    return LMC_OK;
}

static void drop_from(lmc_kv_seq *s, size_t first_entry) {
    for (size_t i = first_entry; i < s->n_table; i++)
        if (s->table[i] != LMC_KV_NO_BLOCK) unref(s->p, s->table[i]);
    if (s->n_table > first_entry) s->n_table = first_entry;
}

void lmc_kv_seq_free(lmc_kv_seq *s) {
    if (!s) return;
    drop_from(s, 0);
    s->p->n_seqs--;
    free(s->table);
    free(s);
}

size_t lmc_kv_seq_len(const lmc_kv_seq *s) { return s->len; }
size_t lmc_kv_seq_window(const lmc_kv_seq *s) { return s->window; }
lmc_kv_pool *lmc_kv_seq_pool(const lmc_kv_seq *s) { return s->p; }
size_t lmc_kv_seq_first_live(const lmc_kv_seq *s) {
    size_t f = s->first_block * s->p->B;
    return f > s->floor ? f : s->floor;
}
void lmc_kv_seq_set_slack(lmc_kv_seq *s, size_t extra) { s->slack = extra; }

lmc_status lmc_kv_seq_start_at(lmc_kv_seq *s, size_t n) {
    if (s->len || s->n_table)
        return lmc_err(LMC_ERR_STATE, "kv pool: only an empty sequence can start at %zu", n);
    size_t first = n / s->p->B;
    lmc_status st = table_grow(s, first);
    if (st) return st;
    for (size_t i = 0; i < first; i++) s->table[i] = LMC_KV_NO_BLOCK;
    s->n_table = first;
    s->first_block = first;
    s->floor = n;
    s->len = s->reserved = n;
    return LMC_OK;
}

void lmc_kv_seq_reset(lmc_kv_seq *s) {
    drop_from(s, 0);
    s->len = s->reserved = s->first_block = s->floor = 0;
}
const uint32_t *lmc_kv_seq_table(const lmc_kv_seq *s, size_t *n) {
    *n = s->n_table;
    return s->table;
}

lmc_status lmc_kv_seq_reserve(lmc_kv_seq *s, size_t n) {
    lmc_kv_pool *p = s->p;
    size_t B = p->B, end = s->len + n;
    if (end < s->len) return lmc_err(LMC_ERR_LIMIT, "kv pool: %zu positions overflow", n);
    size_t need_entries = (end + B - 1) / B;
    size_t have = s->n_table;
    size_t fresh = need_entries > have ? need_entries - have : 0;
    /* the partly filled last block must be private before it is written */
    size_t part = s->len / B;
    bool cow = n > 0 && s->len % B != 0 && part < have && s->table[part] != LMC_KV_NO_BLOCK &&
               p->refs[s->table[part]] > 1;
    size_t want = fresh + (cow ? 1 : 0);
    if (want > available(p))
        return lmc_err(LMC_ERR_LIMIT,
                       "kv pool: %zu more positions need %zu blocks of %zu tokens, %zu are "
                       "available of %zu",
                       n, want, B, available(p), p->n_blocks);
    lmc_status st = table_grow(s, need_entries);
    if (st) return st;
    if (cow) {
        uint32_t b = take(p), old = s->table[part];
        if (p->storage && !p->copy)
            memcpy(p->storage + (size_t)b * p->bpb, p->storage + (size_t)old * p->bpb, p->bpb);
        else if ((st = p->copy(p->user, b, old))) {
            unref(p, b);
            return st;
        }
        s->table[part] = b;
        unref(p, old);
    }
    for (size_t i = have; i < need_entries; i++) s->table[i] = take(p);
    s->n_table = need_entries > have ? need_entries : have;
    if (end > s->reserved) s->reserved = end;
    return LMC_OK;
}

lmc_status lmc_kv_seq_commit(lmc_kv_seq *s, size_t n) {
    if (s->len + n > s->reserved || s->len + n > s->n_table * s->p->B)
        return lmc_err(LMC_ERR_STATE, "kv pool: committing %zu positions past the %zu reserved",
                       n, s->reserved > s->len ? s->reserved - s->len : 0);
    s->len += n;
    if (s->window && s->len > s->window + s->slack) {
        /* positions before len - window are never attended again (the
         * slack keeps a few more for rollbacks) */
        size_t keep_from = (s->len - s->window - s->slack) / s->p->B;
        for (size_t i = s->first_block; i < keep_from && i < s->n_table; i++) {
            if (s->table[i] != LMC_KV_NO_BLOCK) unref(s->p, s->table[i]);
            s->table[i] = LMC_KV_NO_BLOCK;
        }
        if (keep_from > s->first_block) s->first_block = keep_from;
    }
    return LMC_OK;
}

lmc_status lmc_kv_seq_locate(const lmc_kv_seq *s, size_t pos, uint32_t *block, uint32_t *slot) {
    size_t B = s->p->B, e = pos / B;
    if (e >= s->n_table || pos >= (s->reserved > s->len ? s->reserved : s->len) ||
        s->table[e] == LMC_KV_NO_BLOCK)
        return lmc_err(LMC_ERR_STATE, "kv pool: position %zu is not held (length %zu, first "
                       "live %zu)", pos, s->len, s->first_block * B);
    *block = s->table[e];
    *slot = (uint32_t)(pos % B);
    return LMC_OK;
}

lmc_status lmc_kv_seq_trim(lmc_kv_seq *s, size_t n) {
    if (n > s->len)
        return lmc_err(LMC_ERR_STATE, "kv pool: cannot trim %zu positions to %zu", s->len, n);
    /* the next query, at position n, attends back to n + 1 - window:
     * still held? */
    size_t first = lmc_kv_seq_first_live(s);
    if (first > 0 && n < s->len && (!s->window || n + 1 < first + s->window))
        return lmc_err(LMC_ERR_STATE,
                       "kv pool: cannot go back to %zu: the sliding window already gave back "
                       "positions before %zu",
                       n, first);
    size_t keep = (n + s->p->B - 1) / s->p->B;
    drop_from(s, keep);
    s->len = s->reserved = n;
    return LMC_OK;
}

/* ------------------------------------------------------------ prefixes */

lmc_status lmc_kv_seq_publish(lmc_kv_seq *s, uint64_t salt, const int32_t *ids, size_t n) {
    lmc_kv_pool *p = s->p;
    if (n > s->len)
        return lmc_err(LMC_ERR_INVALID_ARG, "kv pool: %zu ids for a sequence of %zu", n, s->len);
    if (s->first_block > 0) return LMC_OK; /* a windowed sequence past its window: no prefix */
    size_t full = n / p->B;
    uint64_t parent = 0;
    for (size_t b = 0; b < full; b++) {
        const int32_t *t = ids + b * p->B;
        int64_t at = entry_find(p, salt, parent, t);
        if (at >= 0) {
            px_entry *e = &p->index[at];
            e->used = ++p->tick;
            parent = e->serial;
            continue; /* this history is already published (maybe by another block) */
        }
        uint32_t blk = s->table[b];
        /* a block holds one entry: one published under another salt or
         * history ends the chain here */
        if (p->entry_of[blk] >= 0) break;
        parent = entry_add(p, salt, parent, blk, t);
    }
    return LMC_OK;
}

lmc_status lmc_kv_seq_new_prefix(lmc_kv_pool *p, size_t window, uint64_t salt,
                                 const int32_t *ids, size_t n, lmc_kv_seq **out,
                                 size_t *matched) {
    *matched = 0;
    lmc_status st = lmc_kv_seq_new(p, window, out);
    if (st) return st;
    lmc_kv_seq *s = *out;
    /* leave at least one token to run */
    size_t usable = n ? (n - 1) / p->B : 0;
    uint64_t parent = 0;
    size_t b = 0;
    for (; b < usable; b++) {
        int64_t at = entry_find(p, salt, parent, ids + b * p->B);
        if (at < 0) break;
        if ((st = table_grow(s, b + 1))) {
            lmc_kv_seq_free(s);
            *out = NULL;
            return st;
        }
        px_entry *e = &p->index[at];
        e->used = ++p->tick;
        ref(p, e->block);
        s->table[b] = e->block;
        s->n_table = b + 1;
        parent = e->serial;
    }
    s->len = s->reserved = b * p->B;
    *matched = s->len;
    return LMC_OK;
}
