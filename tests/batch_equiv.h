/* The batch-equivalence check shared by tests/engine/test_batch.c (CPU)
 * and tests/cuda/test_cuda_batch.c: see the former's head comment. */
#ifndef LMC_TEST_BATCH_EQUIV_H
#define LMC_TEST_BATCH_EQUIV_H
#include <stdint.h>

#include "check.h"
#include "model_load.h"
#include "engine/kv_pool.h"
#include "formats/config.h"
#include "models/model.h"

#define NSEQ 18
#define MAXP 72
#define MAXG 12
#define CHUNK 16
#define BLOCK 4

typedef struct {
    int32_t ids[MAXP + MAXG];
    size_t np, ng;
    float *ref;           /* (ng + 1) rows: prompt logits, then each step's */
    int32_t ref_tok[MAXG + 1];
    lmc_kv_seq *seq;
    size_t fed, made, start;
    bool done;
} sequence;


static uint64_t rng = 99;
static uint32_t rnd(uint32_t n) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((rng >> 33) % n);
}

/* Prompts from three stems; the reference run of each sequence alone. */
static void make_sequences(lmc_model *m, sequence *s, size_t V) {
    int32_t stems[3][40];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 40; i++) stems[k][i] = (int32_t)(3 + rnd((uint32_t)V - 3));
    for (int i = 0; i < NSEQ; i++) {
        sequence *q = &s[i];
        memset(q, 0, sizeof *q);
        q->np = 5 + rnd(MAXP - 5);
        q->ng = 3 + rnd(MAXG - 2);
        size_t stem = i % 4 == 3 ? 0 : 8 + rnd(33); /* a quarter share nothing */
        for (size_t j = 0; j < q->np; j++)
            q->ids[j] = j < stem ? stems[i % 3][j] : (int32_t)(3 + rnd((uint32_t)V - 3));
        q->start = (size_t)i / 2;
        q->ref = malloc((q->ng + 1) * V * sizeof(float));
        lmc_kv_cache *c = NULL;
        CHECK(!lmc_kv_cache_new(m, &c));
        lmc_status st = lmc_model_forward(m, c, q->ids, q->np, q->ref, false);
        for (size_t g = 0; g < q->ng && !st; g++) {
            q->ref_tok[g] = test_argmax(q->ref + g * V, V);
            st = lmc_model_forward(m, c, &q->ref_tok[g], 1, q->ref + (g + 1) * V, false);
        }
        CHECK_MSG(!st, "reference run %d: %s", i, lmc_last_error());
        lmc_kv_cache_free(c);
    }
}

/* top-1 minus top-2 */
static double margin(const float *x, size_t n) {
    float a = -INFINITY, b = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (x[i] > a) {
            b = a;
            a = x[i];
        } else if (x[i] > b)
            b = x[i];
    }
    return (double)a - b;
}

static double run_batched(lmc_model *m, lmc_kv_pool *pool, sequence *s, size_t V, const char *name,
                          double tol, size_t *shared, size_t *mixed_steps) {
    double worst = 0;
    size_t window = lmc_model_seq_window(m);
    float *lg = malloc(NSEQ * V * sizeof *lg);
    lmc_batch_item items[NSEQ];
    int owner[NSEQ];
    for (size_t step = 0;; step++) {
        size_t ni = 0, prefills = 0, decodes = 0;
        bool live = false;
        for (int i = 0; i < NSEQ; i++) {
            sequence *q = &s[i];
            if (q->done) continue;
            live = true;
            if (step < q->start) continue;
            if (!q->seq) {
                size_t matched = 0;
                CHECK(!lmc_kv_seq_new_prefix(pool, window, 0, q->ids, q->np, &q->seq, &matched));
                q->fed = matched;
                *shared += matched;
            }
            lmc_batch_item *it = &items[ni];
            memset(it, 0, sizeof *it);
            it->seq = q->seq;
            if (q->fed < q->np) { /* a prefill chunk */
                size_t n = q->np - q->fed < CHUNK ? q->np - q->fed : CHUNK;
                it->ids = q->ids + q->fed;
                it->n = n;
                it->logits = q->fed + n == q->np ? lg + ni * V : NULL;
                prefills++;
            } else { /* a decode step: the token this sequence chose last */
                it->ids = q->ids + q->np + q->made - 1;
                it->n = 1;
                it->logits = lg + ni * V;
                decodes++;
            }
            owner[ni++] = i;
        }
        if (!live) break;
        if (!ni) continue;
        if (prefills && decodes) (*mixed_steps)++;
        lmc_status st = m->vt->forward_batch(m, pool, items, ni);
        CHECK_MSG(!st, "%s: step %zu: %s", name, step, lmc_last_error());
        if (st) break;
        for (size_t k = 0; k < ni; k++) {
            sequence *q = &s[owner[k]];
            bool was_prefill = q->fed < q->np;
            if (was_prefill) q->fed += items[k].n;
            if (!items[k].logits) continue;
            if (was_prefill && q->fed == q->np) /* publish the prompt's full blocks */
                CHECK(!lmc_kv_seq_publish(q->seq, 0, q->ids, q->np));
            size_t row = q->made; /* 0: prompt logits */
            const float *ref = q->ref + row * V;
            double e = test_rel_err(items[k].logits, ref, V);
            if (!(e <= worst)) worst = e;
            /* the greedy pick must be the one made alone wherever that
             * choice was clear of the tolerance; the sequence then goes on
             * with the token chosen alone (teacher forcing), so a near-tie
             * cannot make the histories differ */
            int32_t t = test_argmax(items[k].logits, V);
            CHECK_MSG(row == q->ng || t == q->ref_tok[row] || margin(ref, V) <= 2 * tol * test_range(ref, V),
                      "%s: sequence %d step %zu: token %d, alone %d", name, owner[k], row, t,
                      q->ref_tok[row]);
            t = q->ref_tok[row];
            if (row == q->ng) {
                q->done = true;
                lmc_kv_seq_free(q->seq);
                q->seq = NULL;
                continue;
            }
            q->ids[q->np + q->made++] = t;
            CHECK_EQ_INT(lmc_kv_seq_len(q->seq), q->np + q->made - 1);
        }
    }
    free(lg);
    return worst;
}

/* Steps whose items want only the greedy id (the path a CUDA graph
 * replays from a shape's second step): 8 sequences prefilled together,
 * then 8 steps feeding back their own picks, which must be the picks made
 * alone as long as every earlier pick was clear of the tolerance. */
static void greedy_only(lmc_model *m, lmc_kv_pool *pool, sequence *s, size_t V, const char *name,
                        double tol) {
    enum { NG = 8 };
    lmc_batch_item it[NG];
    int32_t next[NG], fed[NG];
    lmc_kv_seq *seq[NG] = {0};
    bool track[NG];
    size_t agree = 0;
    for (int i = 0; i < NG; i++) {
        CHECK(!lmc_kv_seq_new(pool, lmc_model_seq_window(m), &seq[i]));
        it[i] = (lmc_batch_item){.seq = seq[i], .ids = s[i].ids, .n = s[i].np, .next = &next[i]};
        track[i] = true;
    }
    lmc_status st = m->vt->forward_batch(m, pool, it, NG);
    CHECK_MSG(!st, "%s: greedy-only prefill: %s", name, lmc_last_error());
    for (int step = 0; step < NG && !st; step++) {
        for (int i = 0; i < NG; i++) {
            sequence *q = &s[i];
            if (track[i] && (size_t)step < q->ng) {
                const float *ref = q->ref + (size_t)step * V;
                if (next[i] == q->ref_tok[step]) agree++;
                else if (margin(ref, V) > 2 * tol * test_range(ref, V))
                    CHECK_MSG(0, "%s: greedy-only sequence %d step %d: %d, alone %d", name, i,
                              step, next[i], q->ref_tok[step]);
                if (margin(ref, V) <= 2 * tol * test_range(ref, V) || next[i] != q->ref_tok[step])
                    track[i] = false;
            } else
                track[i] = false;
            fed[i] = next[i];
            it[i] = (lmc_batch_item){.seq = seq[i], .ids = &fed[i], .n = 1, .next = &next[i]};
        }
        st = m->vt->forward_batch(m, pool, it, NG);
        CHECK_MSG(!st, "%s: greedy-only step %d: %s", name, step, lmc_last_error());
    }
    printf("%-16s greedy-only steps: %zu picks identical to the runs alone\n", name, agree);
    CHECK(agree >= NG);
    for (int i = 0; i < NG; i++) lmc_kv_seq_free(seq[i]);
}

static void check_model(const char *dir, const char *name, lmc_device dev, double tol) {
    test_model L;
    lmc_status st = test_model_load(dir, dev, &L);
    CHECK_MSG(!st, "%s: load: %s", name, lmc_last_error());
    if (st) {
        test_model_unload(&L);
        return;
    }
    lmc_model *m = L.m;
    CHECK(m->vt->forward_batch && m->vt->pool_new);
    size_t V = (size_t)lmc_model_vocab(m);
    sequence s[NSEQ];
    make_sequences(m, s, V);
    lmc_kv_pool *pool = NULL;
    st = m->vt->pool_new(m, 512, BLOCK, &pool);
    CHECK_MSG(!st, "%s: pool: %s", name, lmc_last_error());
    if (st) {
        for (int i = 0; i < NSEQ; i++) free(s[i].ref);
        test_model_unload(&L);
        return;
    }
    size_t shared = 0, mixed = 0;
    double worst = run_batched(m, pool, s, V, name, tol, &shared, &mixed);
    printf("%-16s %d sequences: logits err %.2e (bound %.0e), %zu prompt tokens from shared "
           "blocks, %zu mixed prefill+decode steps\n",
           name, NSEQ, worst, tol, shared, mixed);
    CHECK_MSG(worst <= tol, "%s: batched logits err %.3e", name, worst);
    CHECK(shared > 0 && mixed > 0);
    greedy_only(m, pool, s, V, name, tol);
    for (int i = 0; i < NSEQ; i++) {
        CHECK(s[i].done);
        lmc_kv_seq_free(s[i].seq);
        free(s[i].ref);
    }
    lmc_kv_pool_drop_cache(pool);
    CHECK_EQ_INT(lmc_kv_pool_free_blocks(pool), 512);

    /* exhaustion: 3 blocks cannot hold 20 tokens; nothing advances */
    lmc_kv_pool *tiny = NULL;
    CHECK(!m->vt->pool_new(m, 3, BLOCK, &tiny));
    lmc_kv_seq *a = NULL, *b = NULL;
    CHECK(!lmc_kv_seq_new(tiny, lmc_model_seq_window(m), &a));
    int32_t ids[20] = {0};
    float *lg = malloc(V * sizeof *lg);
    lmc_batch_item it = {.seq = a, .ids = ids, .n = 20, .logits = lg};
    CHECK_ERR(m->vt->forward_batch(m, tiny, &it, 1), LMC_ERR_LIMIT, "blocks");
    CHECK_EQ_INT(lmc_kv_seq_len(a), 0);
    /* bad batches: a sequence twice, another pool's sequence, a bad id */
    it.n = 2;
    lmc_batch_item two[2] = {it, it};
    CHECK_ERR(m->vt->forward_batch(m, tiny, two, 2), LMC_ERR_INVALID_ARG, "share");
    CHECK_ERR(m->vt->forward_batch(m, pool, &it, 1), LMC_ERR_INVALID_ARG, "another pool");
    ids[1] = (int32_t)V;
    CHECK_ERR(m->vt->forward_batch(m, tiny, &it, 1), LMC_ERR_INVALID_ARG, "vocabulary");
    CHECK(!lmc_kv_seq_new(tiny, lmc_model_seq_window(m) + 1, &b));
    ids[1] = 0;
    it.seq = b;
    CHECK_ERR(m->vt->forward_batch(m, tiny, &it, 1), LMC_ERR_INVALID_ARG, "window");
    free(lg);
    lmc_kv_seq_free(a);
    lmc_kv_seq_free(b);
    lmc_kv_pool_free(tiny);
    lmc_kv_pool_free(pool);
    test_model_unload(&L);
}

/* ---- longrope: each item's table (checkpoints with original_max_position_embeddings
 * LR_SWITCH, the phi3_longrope recipe of tests/golden/wide) */

#define LR_SWITCH 1024
#define LR_STEPS 8

/* n tokens into seq alone, one item per step in pieces of the model's
 * batch_rows, every piece picking the table of the whole call (rope_len),
 * as models/kv_cache.c feeds a long call; the last piece's logits into lg
 * (NULL: none). */
static lmc_status lr_feed(lmc_model *m, lmc_kv_pool *pool, lmc_kv_seq *seq, const int32_t *ids,
                          size_t n, size_t rope_len, float *lg) {
    size_t rows = m->vt->batch_rows;
    for (size_t f = 0; f < n;) {
        size_t k = n - f < rows ? n - f : rows;
        lmc_batch_item it = {.seq = seq, .ids = ids + f, .n = k,
                             .logits = f + k == n ? lg : NULL, .rope_len = rope_len};
        lmc_status st = m->vt->forward_batch(m, pool, &it, 1);
        if (st) return st;
        f += k;
    }
    return LMC_OK;
}

/* The first layer's keys at positions [p0, p1) of sequences a and b: the
 * largest difference over the largest value of b's. A key rotated by the
 * other table differs in most of its rotated values; the first layer's
 * input is the embedding alone, so the two paths otherwise differ only by
 * rounding. */
static double lr_key_err(lmc_model *m, lmc_kv_pool *pool, const lmc_kv_seq *a,
                         const lmc_kv_seq *b, size_t p0, size_t p1) {
    size_t B = lmc_kv_pool_block_tokens(pool), hkv = (size_t)m->cfg.num_key_value_heads;
    size_t D = (size_t)m->cfg.head_dim, per = hkv * B * D;
    float *ka = malloc(per * sizeof *ka), *kb = malloc(per * sizeof *kb);
    double num = 0, den = 0;
    for (size_t p = p0; p < p1; p++) {
        uint32_t ba, bb, sa, sb;
        if (lmc_kv_seq_locate(a, p, &ba, &sa) || lmc_kv_seq_locate(b, p, &bb, &sb) ||
            m->vt->pool_read(m, pool, ba, 0, 0, ka) || m->vt->pool_read(m, pool, bb, 0, 0, kb)) {
            num = INFINITY;
            break;
        }
        for (size_t h = 0; h < hkv; h++)
            for (size_t d = 0; d < D; d++) {
                double x = ka[(h * B + sa) * D + d], y = kb[(h * B + sb) * D + d];
                if (!(fabs(x - y) <= num)) num = isnan(x - y) ? INFINITY : fabs(x - y);
                if (fabs(y) > den) den = fabs(y);
            }
    }
    free(ka);
    free(kb);
    return den > 0 ? num / den : num;
}

static void lr_random_ids(int32_t *ids, size_t n, size_t V) {
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(3 + rnd((uint32_t)V - 3));
}

/* One step of four prefill pieces whose calls end at 64, 1,030, 1,024 and
 * 1,025 positions (short, long, short, long: the rows of each table are
 * not one run), each piece against its sequence fed alone in the same
 * calls. The recipe must tell the tables apart: the piece ending at 1,024
 * fed alone as part of a call reaching 1,025 (rope_len) differs. */
static void lr_mixed_step(lmc_model *m, lmc_kv_pool *pool, size_t V, const char *name,
                          double tol, double ktol) {
    enum { NI = 4 };
    static const size_t pre[NI] = {40, 1000, 990, 1010}, piece[NI] = {24, 30, 34, 15};
    size_t window = lmc_model_seq_window(m);
    lmc_kv_seq *bs[NI] = {0}, *as[NI] = {0}, *other = NULL;
    int32_t *ids[NI] = {0};
    float *lb = malloc(NI * V * sizeof *lb), *la = malloc(V * sizeof *la);
    lmc_batch_item it[NI];
    lmc_status st = LMC_OK;
    for (int i = 0; i < NI && !st; i++) {
        ids[i] = malloc((pre[i] + piece[i]) * sizeof *ids[i]);
        lr_random_ids(ids[i], pre[i] + piece[i], V);
        st = lmc_kv_seq_new(pool, window, &bs[i]);
        if (!st) st = lmc_kv_seq_new(pool, window, &as[i]);
        if (!st) st = lr_feed(m, pool, bs[i], ids[i], pre[i], pre[i], NULL);
        if (!st) st = lr_feed(m, pool, as[i], ids[i], pre[i], pre[i], NULL);
        it[i] = (lmc_batch_item){.seq = bs[i], .ids = ids[i] + pre[i], .n = piece[i],
                                 .logits = lb + i * V};
    }
    CHECK_MSG(!st, "%s: longrope prefixes: %s", name, lmc_last_error());
    if (!st) st = m->vt->forward_batch(m, pool, it, NI);
    CHECK_MSG(!st, "%s: longrope mixed step: %s", name, lmc_last_error());
    for (int i = 0; i < NI && !st; i++) {
        size_t end = pre[i] + piece[i];
        st = lr_feed(m, pool, as[i], ids[i] + pre[i], piece[i], end, la);
        CHECK_MSG(!st, "%s: longrope piece %d alone: %s", name, i, lmc_last_error());
        if (st) break;
        double e = test_rel_err(lb + i * V, la, V),
               ke = lr_key_err(m, pool, bs[i], as[i], pre[i], end);
        printf("%-16s longrope piece to %4zu (%s table): logits err %.2e, keys err %.2e\n", name,
               end, end > LR_SWITCH ? "long" : "short", e, ke);
        CHECK_MSG(e <= tol, "%s: longrope piece to %zu: logits err %.3e", name, end, e);
        CHECK_MSG(ke <= ktol, "%s: longrope piece to %zu: keys err %.3e", name, end, ke);
    }
    /* the piece to 1,024 again, as part of a call past the switch */
    if (!st) st = lmc_kv_seq_new(pool, window, &other);
    if (!st) st = lr_feed(m, pool, other, ids[2], pre[2], pre[2], NULL);
    if (!st) st = lr_feed(m, pool, other, ids[2] + pre[2], piece[2], LR_SWITCH + 1, la);
    CHECK_MSG(!st, "%s: longrope forced long table: %s", name, lmc_last_error());
    if (!st) {
        double e = test_rel_err(la, lb + 2 * V, V),
               ke = lr_key_err(m, pool, other, bs[2], pre[2], pre[2] + piece[2]);
        printf("%-16s longrope: the other table moves the logits by %.2e, the keys by %.2e\n",
               name, e, ke);
        /* the key comparison above tells the tables apart (the logits' does
         * too where the recipe's factors move them past the tolerance) */
        CHECK_MSG(ke > 4 * ktol,
                  "%s: the long and short tables give the same keys (%.3e; logits %.3e)", name,
                  ke, e);
    }
    lmc_kv_seq_free(other);
    for (int i = 0; i < NI; i++) {
        lmc_kv_seq_free(bs[i]);
        lmc_kv_seq_free(as[i]);
        free(ids[i]);
    }
    free(lb);
    free(la);
}

/* Greedy-only decode steps (the steps a CUDA graph replays) of a sequence
 * crossing the switch (prompt 1,020: its fifth step reaches 1,025
 * positions) beside one past it all along (prompt 2,081), fed the tokens
 * of their runs alone (one item per step: on CUDA the one-row decode
 * kernels); picks identical where clear, log-probabilities and the first
 * layer's keys alike. The longer sequence keeps every step's shape as the
 * other crosses: its table width (positions 2,081-2,088 stay in one block
 * of 16) and the attention's split count (past 2,048 positions), so only
 * the RoPE table tells the steps after the switch from those before. */
static void lr_greedy_cross(lmc_model *m, lmc_kv_pool *pool, size_t V, const char *name,
                            double tol, double ktol) {
    enum { NI = 2 };
    static const size_t np[NI] = {LR_SWITCH - 4, 2081};
    size_t window = lmc_model_seq_window(m);
    lmc_kv_seq *bs[NI] = {0}, *as[NI] = {0};
    int32_t *ids[NI], tok[NI][LR_STEPS + 1], next[NI];
    float *ref[NI], lp[NI];
    lmc_status st = LMC_OK;
    for (int i = 0; i < NI; i++) {
        ids[i] = malloc(np[i] * sizeof *ids[i]);
        ref[i] = malloc((LR_STEPS + 1) * V * sizeof *ref[i]);
        lr_random_ids(ids[i], np[i], V);
    }
    /* the prompts alone, then each sequence's steps alone */
    for (int i = 0; i < NI && !st; i++) {
        st = lmc_kv_seq_new(pool, window, &bs[i]);
        if (!st) st = lmc_kv_seq_new(pool, window, &as[i]);
        if (!st) st = lr_feed(m, pool, bs[i], ids[i], np[i], np[i], NULL);
        if (!st) st = lr_feed(m, pool, as[i], ids[i], np[i], np[i], ref[i]);
        for (int s = 0; s < LR_STEPS && !st; s++) {
            tok[i][s] = test_argmax(ref[i] + (size_t)s * V, V);
            st = lr_feed(m, pool, as[i], &tok[i][s], 1, 0, ref[i] + (size_t)(s + 1) * V);
        }
    }
    CHECK_MSG(!st, "%s: longrope runs alone: %s", name, lmc_last_error());
    size_t agree = 0;
    for (int s = 0; s < LR_STEPS && !st; s++) {
        lmc_batch_item it[NI];
        for (int i = 0; i < NI; i++)
            it[i] = (lmc_batch_item){.seq = bs[i], .ids = &tok[i][s], .n = 1, .next = &next[i],
                                     .logprob = &lp[i]};
        st = m->vt->forward_batch(m, pool, it, NI);
        CHECK_MSG(!st, "%s: longrope greedy step %d: %s", name, s, lmc_last_error());
        for (int i = 0; i < NI && !st; i++) {
            const float *r = ref[i] + (size_t)(s + 1) * V;
            double range = test_range(r, V);
            bool clear = margin(r, V) > 2 * tol * range;
            agree += next[i] == test_argmax(r, V);
            CHECK_MSG(!clear || next[i] == test_argmax(r, V),
                      "%s: longrope sequence %d step %d: %d, alone %d", name, i, s, next[i],
                      test_argmax(r, V));
            double want = test_logprob(r, V, (size_t)next[i]);
            CHECK_MSG(fabs(lp[i] - want) <= 4 * tol * range,
                      "%s: longrope sequence %d step %d: log-probability %g, alone %g", name, i,
                      s, lp[i], want);
        }
    }
    for (int i = 0; i < NI && !st; i++) {
        double ke = lr_key_err(m, pool, bs[i], as[i], np[i], np[i] + LR_STEPS);
        printf("%-16s longrope greedy steps from %zu: keys err %.2e\n", name, np[i], ke);
        CHECK_MSG(ke <= ktol, "%s: longrope greedy steps from %zu: keys err %.3e", name, np[i],
                  ke);
    }
    printf("%-16s longrope greedy steps: %zu of %d picks as alone\n", name, agree, NI * LR_STEPS);
    for (int i = 0; i < NI; i++) {
        lmc_kv_seq_free(bs[i]);
        lmc_kv_seq_free(as[i]);
        free(ids[i]);
        free(ref[i]);
    }
}

/* The longrope checks on a checkpoint whose table switches past LR_SWITCH
 * positions, in a pool of blocks of 16; tol bounds logits (of the range),
 * ktol keys (of their largest value). */
static void check_longrope(const char *dir, const char *name, lmc_device dev, double tol,
                           double ktol) {
    test_model L;
    lmc_status st = test_model_load(dir, dev, &L);
    CHECK_MSG(!st, "%s: load: %s", name, lmc_last_error());
    lmc_kv_pool *pool = NULL;
    if (!st) st = L.m->vt->pool_new(L.m, 1024, 16, &pool);
    CHECK_MSG(!st, "%s: pool: %s", name, lmc_last_error());
    if (!st) {
        CHECK_EQ_INT(L.cfg.rope_original_max_position, LR_SWITCH);
        size_t V = (size_t)lmc_model_vocab(L.m);
        lr_mixed_step(L.m, pool, V, name, tol, ktol);
        lr_greedy_cross(L.m, pool, V, name, tol, ktol);
        CHECK_EQ_INT(lmc_kv_pool_free_blocks(pool), 1024);
    }
    lmc_kv_pool_free(pool);
    test_model_unload(&L);
}

#endif
