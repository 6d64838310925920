/* The convention of the pool tests: host storage whose every slot holds
 * the token written at that position, so a sequence's history can be read
 * back through its block table. */
#ifndef LMC_TEST_KV_POOL_SLOTS_H
#define LMC_TEST_KV_POOL_SLOTS_H
#include <stdint.h>

#include "engine/kv_pool.h"

/* append ids[0..n) to s: reserve, write the slots, commit */
static lmc_status append(lmc_kv_pool *p, lmc_kv_seq *s, const int32_t *ids, size_t n) {
    lmc_status st = lmc_kv_seq_reserve(s, n);
    if (st) return st;
    size_t at = lmc_kv_seq_len(s);
    for (size_t i = 0; i < n; i++) {
        uint32_t b, k;
        if ((st = lmc_kv_seq_locate(s, at + i, &b, &k))) return st;
        ((int32_t *)lmc_kv_pool_block(p, b))[k] = ids[i];
    }
    return lmc_kv_seq_commit(s, n);
}

/* the token held at position pos of s (-1: none) */
static int32_t read_at(lmc_kv_pool *p, const lmc_kv_seq *s, size_t pos) {
    uint32_t b, k;
    if (lmc_kv_seq_locate(s, pos, &b, &k)) return -1;
    return ((int32_t *)lmc_kv_pool_block(p, b))[k];
}

#endif
