/* The paged KV block pool (src/engine/kv_pool.c). Every slot of host
 * storage holds the token written at that position, so reading a
 * sequence's positions back through its block table shows whether sharing,
 * copy-on-write, windows and eviction kept each sequence's history intact.
 * Besides the targeted cases, a randomized run drives 32 sequences through
 * thousands of appends, forks, trims, publishes, prefix attaches and frees
 * against a plain array model of each sequence, and checks the pool's
 * accounting (every block free, cached or held; refs equal holders) after
 * every step. */
#include <stdint.h>

#include "check.h"
#include "engine/kv_pool.h"
#include "kv_pool_slots.h"

#define B 4

static lmc_kv_pool *pool_new(size_t n) {
    lmc_kv_pool_options o = {.n_blocks = n, .block_tokens = B, .bytes_per_block = B * 4};
    lmc_kv_pool *p = NULL;
    CHECK(!lmc_kv_pool_new(&o, &p));
    return p;
}

static void test_basics(void) {
    lmc_kv_pool *p = pool_new(8);
    lmc_kv_seq *a = NULL;
    CHECK(!lmc_kv_seq_new(p, 0, &a));
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = 100 + i;
    CHECK(!append(p, a, ids, 10)); /* 3 blocks */
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 5);
    for (size_t i = 0; i < 10; i++) CHECK_EQ_INT(read_at(p, a, i), 100 + (int)i);
    /* exhaustion: all or nothing, the message names the counts */
    CHECK_ERR(lmc_kv_seq_reserve(a, 30), LMC_ERR_LIMIT, "available");
    CHECK_EQ_INT(lmc_kv_seq_len(a), 10);
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 5);
    CHECK_ERR(lmc_kv_seq_commit(a, 1), LMC_ERR_STATE, "reserved");
    /* fork shares, the partly filled block is copied at the divergence */
    lmc_kv_seq *b = NULL;
    CHECK(!lmc_kv_seq_fork(a, &b));
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 5);
    size_t nt;
    const uint32_t *ta = lmc_kv_seq_table(a, &nt);
    CHECK_EQ_INT(lmc_kv_pool_refs(p, ta[0]), 2);
    int32_t x = 7, y = 9;
    CHECK(!append(p, b, &x, 1));
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 4); /* one copy */
    CHECK(!append(p, a, &y, 1));                 /* a's block is private again: no copy */
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 4);
    CHECK_EQ_INT(read_at(p, a, 10), 9);
    CHECK_EQ_INT(read_at(p, b, 10), 7);
    for (size_t i = 0; i < 10; i++) CHECK_EQ_INT(read_at(p, b, i), 100 + (int)i);
    /* trim gives back whole blocks */
    CHECK(!lmc_kv_seq_trim(a, 4));
    CHECK_EQ_INT(lmc_kv_seq_len(a), 4);
    CHECK_ERR(lmc_kv_seq_trim(a, 5), LMC_ERR_STATE, "trim");
    lmc_kv_seq_free(a);
    lmc_kv_seq_free(b);
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 8);
    lmc_kv_pool_free(p);
}

static void test_window(void) {
    lmc_kv_pool *p = pool_new(6);
    lmc_kv_seq *s = NULL;
    CHECK(!lmc_kv_seq_new(p, 8, &s));
    /* a 100-token sequence in a 6-block (24-position) pool: the window
     * keeps at most 8 + 2 blocks' worth... of which only 3-4 are held */
    for (int32_t t = 0; t < 100; t++) {
        lmc_status st = append(p, s, &t, 1);
        CHECK_MSG(!st, "step %d: %s", t, lmc_last_error());
        if (st) break;
        size_t first = lmc_kv_seq_first_live(s);
        CHECK(first + 8 <= (size_t)t + 1 || first == 0);
        for (size_t q = first; q <= (size_t)t; q++) CHECK_EQ_INT(read_at(p, s, q), (int)q);
    }
    CHECK(lmc_kv_pool_free_blocks(p) >= 2);
    CHECK_EQ_INT(read_at(p, s, 0), -1); /* released */
    CHECK_ERR(lmc_kv_seq_trim(s, 90), LMC_ERR_STATE, "window");
    lmc_kv_seq_free(s);
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 6);
    lmc_kv_pool_free(p);
}

static void test_prefix(void) {
    lmc_kv_pool *p = pool_new(16);
    int32_t ids[20], other[20];
    for (int i = 0; i < 20; i++) ids[i] = other[i] = 1000 + i;
    other[9] = 5; /* diverges inside block 2 */
    lmc_kv_seq *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    CHECK(!lmc_kv_seq_new(p, 0, &a));
    CHECK(!append(p, a, ids, 14));
    CHECK(!lmc_kv_seq_publish(a, 1, ids, 14)); /* 3 full blocks */
    size_t m = 0;
    CHECK(!lmc_kv_seq_new_prefix(p, 0, 1, ids, 20, &b, &m));
    CHECK_EQ_INT(m, 12);
    for (size_t i = 0; i < 12; i++) CHECK_EQ_INT(read_at(p, b, i), ids[i]);
    CHECK(!lmc_kv_seq_new_prefix(p, 0, 1, other, 20, &c, &m));
    CHECK_EQ_INT(m, 8); /* blocks 0 and 1 only */
    /* another salt sees nothing */
    CHECK(!lmc_kv_seq_new_prefix(p, 0, 2, ids, 20, &d, &m));
    CHECK_EQ_INT(m, 0);
    /* a prompt of exactly 12 tokens keeps its last block to compute */
    lmc_kv_seq_free(d);
    CHECK(!lmc_kv_seq_new_prefix(p, 0, 1, ids, 12, &d, &m));
    CHECK_EQ_INT(m, 8);
    lmc_kv_seq_free(a);
    lmc_kv_seq_free(b);
    lmc_kv_seq_free(c);
    lmc_kv_seq_free(d);
    /* the published blocks stay cached, and count as available */
    CHECK_EQ_INT(lmc_kv_pool_cached_blocks(p), 3);
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p) + lmc_kv_pool_cached_blocks(p), 16);
    CHECK(!lmc_kv_seq_new_prefix(p, 0, 1, ids, 20, &a, &m));
    CHECK_EQ_INT(m, 12);
    CHECK_EQ_INT(lmc_kv_pool_cached_blocks(p), 0);
    lmc_kv_seq_free(a);
    /* filling the pool evicts cached blocks rather than failing */
    CHECK(!lmc_kv_seq_new(p, 0, &a));
    int32_t big[64] = {0};
    CHECK(!append(p, a, big, 64));
    CHECK_EQ_INT(lmc_kv_pool_cached_blocks(p), 0);
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 0);
    lmc_kv_seq_free(a);
    CHECK(!lmc_kv_seq_new_prefix(p, 0, 1, ids, 20, &a, &m));
    CHECK_EQ_INT(m, 0); /* evicted */
    lmc_kv_seq_free(a);
    lmc_kv_pool_drop_cache(p);
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 16);
    lmc_kv_pool_free(p);
}

/* ------------------------------------------------------------ stress */

#define NS 32
#define MAXLEN 96

typedef struct {
    lmc_kv_seq *s;
    int32_t ids[MAXLEN];
    size_t len;
    size_t window;
} model_seq;

static uint64_t rng_state = 0x1234567;
static uint32_t rnd(uint32_t n) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((rng_state >> 33) % n);
}

/* refs[b] == holders in tables + 1 if published; free + cached + held */
static void check_accounting(lmc_kv_pool *p, model_seq *ms) {
    size_t nb = lmc_kv_pool_n_blocks(p);
    uint32_t *holders = calloc(nb, sizeof *holders);
    for (int i = 0; i < NS; i++) {
        if (!ms[i].s) continue;
        size_t n;
        const uint32_t *t = lmc_kv_seq_table(ms[i].s, &n);
        for (size_t e = 0; e < n; e++)
            if (t[e] != LMC_KV_NO_BLOCK) holders[t[e]]++;
    }
    size_t held = 0, bad = 0;
    for (size_t b = 0; b < nb; b++) {
        uint32_t r = lmc_kv_pool_refs(p, (uint32_t)b);
        if (holders[b]) held++;
        if (r < holders[b] || r > holders[b] + 1) bad++;
    }
    CHECK_MSG(bad == 0, "%zu blocks with refs unlike their holders", bad);
    size_t cached = lmc_kv_pool_cached_blocks(p), fr = lmc_kv_pool_free_blocks(p);
    CHECK_MSG(fr + cached + held == nb, "free %zu + cached %zu + held %zu != %zu", fr, cached,
              held, nb);
    free(holders);
}

static void check_contents(lmc_kv_pool *p, model_seq *ms) {
    for (int i = 0; i < NS; i++) {
        if (!ms[i].s) continue;
        CHECK_EQ_INT(lmc_kv_seq_len(ms[i].s), ms[i].len);
        for (size_t q = lmc_kv_seq_first_live(ms[i].s); q < ms[i].len; q++)
            if (read_at(p, ms[i].s, q) != ms[i].ids[q]) {
                CHECK_MSG(0, "seq %d position %zu: %d, want %d", i, q, read_at(p, ms[i].s, q),
                          ms[i].ids[q]);
                return;
            }
    }
}

static void test_stress(void) {
    lmc_kv_pool *p = pool_new(160);
    model_seq ms[NS] = {0};
    size_t limits = 0, shared_hits = 0;
    for (int step = 0; step < 6000; step++) {
        int i = (int)rnd(NS);
        model_seq *m = &ms[i];
        uint32_t op = rnd(10);
        if (!m->s) { /* start: plain, windowed or from a published prefix */
            m->len = 0;
            m->window = rnd(4) == 0 ? 8 + rnd(12) : 0;
            size_t want = 8 + rnd(40);
            /* prompts from a few shared stems so prefixes repeat */
            for (size_t q = 0; q < want; q++)
                m->ids[q] = q < 20 ? (int32_t)(rnd(3) == 0 ? q + 1000 * (1 + i % 3) : q) :
                                     (int32_t)rnd(50);
            for (size_t q = 0; q < 12; q++) m->ids[q] = (int32_t)(q + 1000 * (i % 3));
            size_t matched = 0;
            CHECK(!lmc_kv_seq_new_prefix(p, m->window, (uint64_t)(i % 2), m->ids, want, &m->s,
                                         &matched));
            shared_hits += matched > 0;
            lmc_status st = append(p, m->s, m->ids + matched, want - matched);
            if (st) {
                CHECK_EQ_INT(st, LMC_ERR_LIMIT);
                limits++;
                lmc_kv_seq_free(m->s);
                m->s = NULL;
            } else
                m->len = want;
        } else if (op < 4 && m->len < MAXLEN) { /* decode a few tokens */
            size_t n = 1 + rnd(4);
            if (m->len + n > MAXLEN) n = MAXLEN - m->len;
            int32_t t[4];
            for (size_t q = 0; q < n; q++) t[q] = (int32_t)rnd(1000);
            lmc_status st = append(p, m->s, t, n);
            if (st == LMC_ERR_LIMIT) {
                limits++;
                CHECK_EQ_INT(lmc_kv_seq_len(m->s), m->len);
            } else {
                CHECK(!st);
                memcpy(m->ids + m->len, t, n * sizeof *t);
                m->len += n;
            }
        } else if (op == 4) { /* fork into a free slot */
            int j = (int)rnd(NS);
            if (!ms[j].s) {
                CHECK(!lmc_kv_seq_fork(m->s, &ms[j].s));
                ms[j].len = m->len;
                ms[j].window = m->window;
                memcpy(ms[j].ids, m->ids, sizeof m->ids);
            }
        } else if (op == 5 && m->len > 0) { /* trim (refused past a window) */
            size_t to = rnd((uint32_t)m->len + 1);
            lmc_status st = lmc_kv_seq_trim(m->s, to);
            if (!st) m->len = to;
            else CHECK_EQ_INT(st, LMC_ERR_STATE);
        } else if (op == 6) {
            CHECK(!lmc_kv_seq_publish(m->s, (uint64_t)(i % 2), m->ids, m->len));
        } else if (op >= 8) {
            lmc_kv_seq_free(m->s);
            m->s = NULL;
        }
        check_accounting(p, ms);
        if (step % 10 == 0) check_contents(p, ms);
    }
    check_contents(p, ms);
    printf("stress: %zu exhaustion refusals, %zu prefix hits\n", limits, shared_hits);
    CHECK(limits > 0 && shared_hits > 0);
    for (int i = 0; i < NS; i++) lmc_kv_seq_free(ms[i].s);
    lmc_kv_pool_drop_cache(p);
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(p), 160);
    lmc_kv_pool_free(p);
}

static void test_bad_options(void) {
    lmc_kv_pool *p = NULL;
    lmc_kv_pool_options o = {.n_blocks = 0, .block_tokens = 16, .bytes_per_block = 64};
    CHECK_ERR(lmc_kv_pool_new(&o, &p), LMC_ERR_INVALID_ARG, "blocks");
    o = (lmc_kv_pool_options){.n_blocks = 4, .block_tokens = 16};
    CHECK_ERR(lmc_kv_pool_new(&o, &p), LMC_ERR_INVALID_ARG, "copy hook");
    o = (lmc_kv_pool_options){.n_blocks = SIZE_MAX / 2, .block_tokens = 16,
                              .bytes_per_block = 64};
    CHECK(lmc_kv_pool_new(&o, &p) != LMC_OK);
    CHECK(p == NULL);
}

int main(void) {
    test_basics();
    test_window();
    test_prefix();
    test_stress();
    test_bad_options();
    return check_summary("test_kv_pool");
}
