/* The pool operations a single-sequence KV cache (models/kv_cache.c) runs
 * on: growing a pool in place (host storage and a device-style pool with a
 * grow hook) with every block keeping its id and contents, a sequence that
 * starts at a later position (a restored windowed cache), the rollback
 * slack of a windowed sequence, trims back into a block shared with a
 * fork (dropped by reference count, copied on the next write), and reset. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/error.h"
#include "engine/kv_pool.h"
#include "kv_pool_slots.h"

#define B 4

static void test_grow_host(void) {
    lmc_kv_pool_options o = {.n_blocks = 2, .block_tokens = B, .bytes_per_block = B * 4};
    lmc_kv_pool *p = NULL;
    CHECK(!lmc_kv_pool_new(&o, &p));
    lmc_kv_seq *s = NULL;
    CHECK(!lmc_kv_seq_new(p, 0, &s));
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = 1000 + i;
    CHECK(!append(p, s, ids, 8));
    CHECK_ERR(append(p, s, ids + 8, 1), LMC_ERR_LIMIT, "available");
    size_t nt;
    const uint32_t *t = lmc_kv_seq_table(s, &nt);
    uint32_t b0 = t[0], b1 = t[1];
    CHECK(!lmc_kv_pool_grow(p, 10));
    CHECK(!lmc_kv_pool_grow(p, 3)); /* never shrinks */
    CHECK_EQ_INT(lmc_kv_pool_n_blocks(p), 10);
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 8);
    t = lmc_kv_seq_table(s, &nt);
    CHECK(t[0] == b0 && t[1] == b1);
    CHECK(!append(p, s, ids + 8, 32));
    for (size_t q = 0; q < 40; q++) CHECK_EQ_INT(read_at(p, s, q), 1000 + (int)q);
    CHECK_ERR(lmc_kv_pool_grow(p, (size_t)UINT32_MAX), LMC_ERR_LIMIT, "overflow");
    lmc_kv_seq_reset(s);
    CHECK_EQ_INT(lmc_kv_seq_len(s), 0);
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 10);
    lmc_kv_seq_free(s);
    lmc_kv_pool_free(p);
}

/* a device-style pool: the backend keeps the storage, the pool asks it to grow */
typedef struct {
    int32_t *mem;
    size_t n;
    int grows;
} dev;

static lmc_status dev_copy(void *u, uint32_t dst, uint32_t src) {
    dev *d = u;
    memcpy(d->mem + dst * B, d->mem + src * B, B * sizeof(int32_t));
    return LMC_OK;
}

static lmc_status dev_grow(void *u, size_t n) {
    dev *d = u;
    int32_t *m = realloc(d->mem, n * B * sizeof(int32_t));
    if (!m) return lmc_err(LMC_ERR_NOMEM, "test: no memory");
    d->mem = m;
    d->n = n;
    d->grows++;
    return LMC_OK;
}

static void test_grow_hook(void) {
    dev d = {.mem = calloc(2 * B, sizeof(int32_t)), .n = 2};
    lmc_kv_pool_options o = {.n_blocks = 2, .block_tokens = B, .copy = dev_copy,
                             .grow = dev_grow, .user = &d};
    lmc_kv_pool *p = NULL;
    CHECK(!lmc_kv_pool_new(&o, &p));
    CHECK(!lmc_kv_pool_grow(p, 5));
    CHECK_EQ_INT(d.grows, 1);
    CHECK_EQ_INT(d.n, 5);
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 5);
    lmc_kv_pool_options bad = {.n_blocks = 2, .block_tokens = B, .copy = dev_copy, .user = &d};
    lmc_kv_pool *q = NULL;
    CHECK(!lmc_kv_pool_new(&bad, &q));
    CHECK_ERR(lmc_kv_pool_grow(q, 4), LMC_ERR_UNSUPPORTED, "cannot grow");
    CHECK_EQ_INT(lmc_kv_pool_n_blocks(q), 2);
    lmc_kv_pool_free(q);
    lmc_kv_pool_free(p);
    free(d.mem);
}

/* a windowed sequence restored at position 19 with slack 4 (window 8) */
static void test_start_and_slack(void) {
    lmc_kv_pool_options o = {.n_blocks = 16, .block_tokens = B, .bytes_per_block = B * 4};
    lmc_kv_pool *p = NULL;
    CHECK(!lmc_kv_pool_new(&o, &p));
    lmc_kv_seq *s = NULL;
    CHECK(!lmc_kv_seq_new(p, 8, &s));
    lmc_kv_seq_set_slack(s, 4);
    CHECK(!lmc_kv_seq_start_at(s, 19));
    CHECK_EQ_INT(lmc_kv_seq_len(s), 19);
    CHECK_EQ_INT(lmc_kv_seq_first_live(s), 19);
    CHECK_ERR(lmc_kv_seq_start_at(s, 3), LMC_ERR_STATE, "empty");
    int32_t ids[64];
    for (int i = 0; i < 64; i++) ids[i] = i;
    CHECK(!append(p, s, ids + 19, 13)); /* positions 19 .. 31 */
    /* len 32, window 8, slack 4: the block of 16 .. 19 went back */
    CHECK_EQ_INT(lmc_kv_seq_first_live(s), 20);
    for (size_t q = 20; q < 32; q++) CHECK_EQ_INT(read_at(p, s, q), (int)q);
    CHECK_EQ_INT(read_at(p, s, 19), -1);
    CHECK(!lmc_kv_seq_trim(s, 27)); /* the query at 27 needs 20 .. 26 */
    CHECK_ERR(lmc_kv_seq_trim(s, 21), LMC_ERR_STATE, "window");
    CHECK_EQ_INT(lmc_kv_seq_len(s), 27);
    for (size_t q = 27; q < 60; q++) CHECK(!append(p, s, ids + q, 1));
    /* slack holds: every rollback by up to slack + 1 works */
    CHECK(!lmc_kv_seq_trim(s, 60 - 5));
    CHECK(lmc_kv_pool_free_blocks(p) >= 16 - 5);
    lmc_kv_seq_free(s);
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 16);
    lmc_kv_pool_free(p);
}

/* trim back into a block a fork shares: the fork keeps its positions, the
 * next write copies the block first */
static void test_trim_shared(void) {
    lmc_kv_pool_options o = {.n_blocks = 8, .block_tokens = B, .bytes_per_block = B * 4};
    lmc_kv_pool *p = NULL;
    CHECK(!lmc_kv_pool_new(&o, &p));
    lmc_kv_seq *a = NULL, *b = NULL;
    CHECK(!lmc_kv_seq_new(p, 0, &a));
    int32_t ids[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, x[4] = {70, 71, 72, 73};
    CHECK(!append(p, a, ids, 10));
    CHECK(!lmc_kv_seq_fork(a, &b));
    size_t nt;
    uint32_t shared1 = lmc_kv_seq_table(a, &nt)[1], shared2 = lmc_kv_seq_table(a, &nt)[2];
    CHECK_EQ_INT(lmc_kv_pool_refs(p, shared1), 2);
    CHECK(!lmc_kv_seq_trim(a, 6));
    CHECK_EQ_INT(lmc_kv_pool_refs(p, shared2), 1); /* only b */
    CHECK_EQ_INT(lmc_kv_pool_refs(p, shared1), 2);
    CHECK(!append(p, a, x, 4)); /* positions 6 .. 9 */
    CHECK(lmc_kv_seq_table(a, &nt)[1] != shared1);
    CHECK_EQ_INT(lmc_kv_pool_refs(p, shared1), 1);
    for (size_t q = 0; q < 10; q++) {
        CHECK_EQ_INT(read_at(p, a, q), q < 6 ? (int)q : 70 + (int)q - 6);
        CHECK_EQ_INT(read_at(p, b, q), (int)q);
    }
    lmc_kv_seq_free(a);
    lmc_kv_seq_free(b);
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 8);
    lmc_kv_pool_free(p);
}

int main(void) {
    test_grow_host();
    test_grow_hook();
    test_start_and_slack();
    test_trim_shared();
    return check_summary("test_kv_pool_grow");
}
