/* The API's KV caches on the paged engine (models/kv_cache.c): prompt caches
 * written by the per-backend host cache that came before still load and
 * continue like the same tokens fed from scratch, in greedy tokens and in
 * logits (tests/golden/kvcache: a plain and a sliding-window one); a rollback into a block shared with a
 * fork leaves the fork intact and copies on the next write; a prompt
 * longer than one forward_batch step (512 rows on CPU) through the cache
 * gives the logits the batched path gives it in other pieces; windowed
 * rollbacks within the slack work and beyond it fail like the rotating
 * cache did; a save/load round trip of a windowed cache continues
 * bit-identically. */
#include "check.h"
#include "engine/kv_pool.h"
#include "lm/context.h"
#include "lm_test_util.h"
#include "models/model.h"
#include "tiny_model.h"

static const tiny_spec plain_spec = {"llama", 2, 32, 4, 2, 8, 64, 151936, 151645, 71, 0};
static const tiny_spec window_spec = {"mistral", 2, 32, 4, 2, 8, 64, 151936, 151645, 72, 8};

static double rel_err(const float *a, const float *b, size_t n) {
    float lo = b[0], hi = b[0];
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i] < lo) lo = b[i];
        if (b[i] > hi) hi = b[i];
        double e = fabs((double)a[i] - (double)b[i]);
        if (e > d) d = e;
    }
    return hi > lo ? d / (hi - lo) : d;
}

/* The legacy file continues like its tokens fed from scratch. */
static void test_legacy(lmc_context *ctx, const char *file) {
    char path[4096];
    tiny_asset(path, sizeof path, file);
    lmc_prompt_cache *pc = NULL;
    CHECK_MSG(lmc_prompt_cache_load(ctx, path, &pc) == LMC_OK, "%s: %s", file, lmc_last_error());
    if (!pc) return;
    CHECK_EQ_INT(lmc_prompt_cache_len(pc), 35);
    const int32_t *known = NULL;
    size_t nk = lmc_prompt_cache_tokens(pc, &known);
    CHECK_EQ_INT(nk, 35);
    int32_t prompt[40];
    for (size_t i = 0; i < 30; i++)
        CHECK_EQ_INT(known[i], (int32_t)((i * 7919 + 13) % 150000));
    memcpy(prompt, known, nk * sizeof *prompt);
    prompt[35] = 500, prompt[36] = 600, prompt[37] = 700;
    lmc_gen_params p;
    lmc_gen_params_default(&p);
    p.max_tokens = 8;
    collected a = {0}, b = {0};
    lmc_gen_stats st;
    CHECK(lmc_generate_ids(ctx, prompt, 38, &p, pc, collect_cb, &a, &st) == LMC_OK);
    CHECK_MSG(!st.cache_rebuilt && st.prefill_tokens == 3, "%s: the loaded cache was not reused",
              file);
    CHECK(lmc_generate_ids(ctx, prompt, 38, &p, NULL, collect_cb, &b, NULL) == LMC_OK);
    CHECK_MSG(a.n == b.n && a.n > 0 && !memcmp(a.tokens, b.tokens, a.n * sizeof(int32_t)),
              "%s: the loaded cache continues differently", file);
    collected_free(&a);
    collected_free(&b);
    lmc_prompt_cache_free(pc);
    /* and the logits: the restored cache fed the 3 more tokens against the
     * 38 fed from scratch */
    lmc_model *m = lmc_context_model(ctx);
    size_t V = (size_t)lmc_model_vocab(m);
    float *l1 = malloc(V * sizeof *l1), *l2 = malloc(V * sizeof *l2);
    lmc_kv_cache *r = NULL, *f = NULL;
    CHECK(lmc_kv_cache_load(m, path, &r) == LMC_OK && lmc_kv_cache_new(m, &f) == LMC_OK);
    if (r && f) {
        CHECK(lmc_model_forward(m, r, prompt + 35, 3, l1, false) == LMC_OK);
        CHECK(lmc_model_forward(m, f, prompt, 38, l2, false) == LMC_OK);
        double e = rel_err(l1, l2, V);
        printf("%s: restored + 3 tokens vs 38 from scratch: logits max|d|/range %.3g\n", file, e);
        CHECK_MSG(e <= 1e-5, "%s: the loaded cache's logits differ by %g", file, e);
    }
    lmc_kv_cache_free(r);
    lmc_kv_cache_free(f);
    free(l1), free(l2);
}

/* Feed ids through forward_batch in the given pieces; last row's logits. */
static lmc_status feed_batched(lmc_model *m, lmc_kv_pool *pool, lmc_kv_seq *s,
                               const int32_t *ids, const size_t *pieces, size_t np, float *lg) {
    size_t off = 0;
    for (size_t i = 0; i < np; i++) {
        lmc_batch_item it = {.seq = s, .ids = ids + off, .n = pieces[i], .logits = lg};
        lmc_status st = m->vt->forward_batch(m, pool, &it, 1);
        if (st) return st;
        off += pieces[i];
    }
    return LMC_OK;
}

static void test_long_prompt(lmc_model *m) {
    enum { LONG = 700 };
    size_t V = (size_t)lmc_model_vocab(m);
    int32_t *ids = malloc(LONG * sizeof *ids);
    float *all = malloc((size_t)LONG * V * sizeof *all), *lg = malloc(V * sizeof *lg);
    float *ref = malloc(V * sizeof *ref), *ref2 = malloc(V * sizeof *ref2);
    for (size_t i = 0; i < LONG; i++) ids[i] = (int32_t)((i * 7919 + 13) % 150000);
    lmc_kv_cache *c = NULL;
    CHECK(lmc_kv_cache_new(m, &c) == LMC_OK);
    CHECK(lmc_model_forward(m, c, ids, LONG, all, true) == LMC_OK);
    CHECK_EQ_INT(lmc_kv_cache_len(c), LONG);
    lmc_kv_cache_clear(c);
    CHECK(lmc_model_forward(m, c, ids, LONG, lg, false) == LMC_OK);
    lmc_kv_pool *pool = NULL;
    lmc_kv_seq *s = NULL;
    CHECK(!m->vt->pool_new(m, 64, 16, &pool));
    CHECK(pool && !lmc_kv_seq_new(pool, lmc_model_seq_window(m), &s));
    /* the batched path in other pieces: the rows at the cache's 512-row cut */
    size_t p1[] = {300, 212}, p2[] = {1}, p3[] = {187};
    CHECK(!feed_batched(m, pool, s, ids, p1, 2, ref));
    CHECK(!feed_batched(m, pool, s, ids + 512, p2, 1, ref2));
    double e1 = rel_err(all + 511 * V, ref, V), e2 = rel_err(all + 512 * V, ref2, V);
    CHECK_MSG(e1 <= 1e-5 && e2 <= 1e-5, "rows 511/512 differ from the batched path: %g %g", e1,
              e2);
    CHECK(!feed_batched(m, pool, s, ids + 513, p3, 1, ref));
    double e3 = rel_err(lg, ref, V), e4 = rel_err(all + (LONG - 1) * V, ref, V);
    CHECK_MSG(e3 <= 1e-5 && e4 <= 1e-5, "700-token logits differ from the batched path: %g %g",
              e3, e4);
    printf("long prompt: cache vs batched max|d|/range %.3g %.3g %.3g %.3g\n", e1, e2, e3, e4);
    lmc_kv_seq_free(s);
    lmc_kv_pool_free(pool);
    lmc_kv_cache_free(c);
    free(ids), free(all), free(lg), free(ref), free(ref2);
}

/* A sequence trimmed back into a block its fork shares: the fork's next
 * logits are those of its own history, the trimmed one's those of its new
 * one (each against a fresh sequence fed the same tokens). */
static void test_shared_rollback(lmc_model *m) {
    size_t V = (size_t)lmc_model_vocab(m);
    float *la = malloc(V * sizeof *la), *lb = malloc(V * sizeof *lb), *lr = malloc(V * sizeof *lr);
    int32_t ids[11] = {11, 22, 33, 44, 55, 66, 77, 88, 99, 111, 222};
    int32_t alt[10] = {11, 22, 33, 44, 55, 66, 901, 902, 903, 904};
    lmc_kv_pool *pool = NULL;
    CHECK(!m->vt->pool_new(m, 16, 4, &pool));
    if (!pool) return;
    lmc_kv_seq *a = NULL, *b = NULL, *r = NULL;
    CHECK(!lmc_kv_seq_new(pool, 0, &a));
    size_t ten[] = {10}, one[] = {1}, four[] = {4};
    CHECK(!feed_batched(m, pool, a, ids, ten, 1, la));
    CHECK(!lmc_kv_seq_fork(a, &b));
    size_t nt;
    uint32_t blk1 = lmc_kv_seq_table(a, &nt)[1];
    CHECK(!lmc_kv_seq_trim(a, 6)); /* into the shared second block */
    CHECK_EQ_INT(lmc_kv_pool_refs(pool, blk1), 2);
    CHECK(!feed_batched(m, pool, a, alt + 6, four, 1, la));
    CHECK(lmc_kv_seq_table(a, &nt)[1] != blk1); /* copied on write */
    CHECK(!feed_batched(m, pool, b, ids + 10, one, 1, lb));
    CHECK(!lmc_kv_seq_new(pool, 0, &r));
    CHECK(!feed_batched(m, pool, r, alt, ten, 1, lr));
    CHECK_MSG(rel_err(la, lr, V) <= 1e-5, "rolled-back sequence: %g", rel_err(la, lr, V));
    lmc_kv_seq_reset(r);
    size_t eleven[] = {11};
    CHECK(!feed_batched(m, pool, r, ids, eleven, 1, lr));
    CHECK_MSG(rel_err(lb, lr, V) <= 1e-5, "the fork changed: %g", rel_err(lb, lr, V));
    lmc_kv_seq_free(a), lmc_kv_seq_free(b), lmc_kv_seq_free(r);
    lmc_kv_pool_free(pool);
    free(la), free(lb), free(lr);
}

/* Window 8 (the rotating cache kept 8 more): rollbacks within that work. */
static void test_window(lmc_model *m) {
    size_t V = (size_t)lmc_model_vocab(m);
    float *lg = malloc(V * sizeof *lg), *l2 = malloc(V * sizeof *l2);
    int32_t ids[64];
    for (size_t i = 0; i < 64; i++) ids[i] = (int32_t)(1000 + 37 * i);
    lmc_kv_cache *c = NULL, *r = NULL;
    CHECK(lmc_kv_cache_new(m, &c) == LMC_OK);
    if (!c) return;
    for (size_t i = 0; i < 40; i++) CHECK(lmc_model_forward(m, c, &ids[i], 1, lg, false) == 0);
    CHECK(lmc_kv_cache_trim(c, 9) == LMC_OK);
    CHECK_ERR(lmc_kv_cache_trim(c, 20), LMC_ERR_STATE, "evicted");
    CHECK_EQ_INT(lmc_kv_cache_len(c), 31);
    CHECK_ERR(lmc_kv_cache_trim(c, 99), LMC_ERR_INVALID_ARG, "99 tokens requested");
    /* refeeding what was dropped gives the same logits again */
    CHECK(lmc_model_forward(m, c, ids + 31, 9, lg, false) == LMC_OK);
    lmc_kv_cache *f = NULL;
    CHECK(lmc_kv_cache_new(m, &f) == LMC_OK);
    CHECK(f && lmc_model_forward(m, f, ids, 40, l2, false) == LMC_OK);
    CHECK_MSG(rel_err(lg, l2, V) <= 1e-5, "windowed refeed: %g", rel_err(lg, l2, V));
    lmc_kv_cache_free(f);
    /* save + load: continues bit-identically */
    char path[256];
    snprintf(path, sizeof path, "/tmp/lmc_test_kv_engine_%d.safetensors", (int)getpid());
    CHECK(lmc_kv_cache_save(c, path, NULL) == LMC_OK);
    CHECK_MSG(lmc_kv_cache_load(m, path, &r) == LMC_OK, "load: %s", lmc_last_error());
    if (r) {
        CHECK_EQ_INT(lmc_kv_cache_len(r), 40);
        for (size_t i = 40; i < 50; i++) {
            CHECK(lmc_model_forward(m, c, &ids[i], 1, lg, false) == LMC_OK);
            CHECK(lmc_model_forward(m, r, &ids[i], 1, l2, false) == LMC_OK);
            CHECK(!memcmp(lg, l2, V * sizeof *lg));
        }
        CHECK(lmc_kv_cache_trim(r, 3) == LMC_OK);
    }
    unlink(path);
    lmc_kv_cache_free(r);
    lmc_kv_cache_free(c);
    free(lg), free(l2);
}

int main(void) {
    tiny_single_thread();
    char d1[4096], d2[4096];
    if (tiny_tmpdir(d1, sizeof d1, "kvp") || tiny_tmpdir(d2, sizeof d2, "kvw")) return 1;
    lmc_context *plain = tiny_load(d1, &plain_spec, ".cache/assets/tokenizers/qwen3");
    lmc_context *win = tiny_load(d2, &window_spec, ".cache/assets/tokenizers/qwen3");
    CHECK(plain && win);
    if (plain && win) {
        test_legacy(plain, "tests/golden/kvcache/legacy_llama.safetensors");
        test_legacy(win, "tests/golden/kvcache/legacy_mistral_w8.safetensors");
        test_long_prompt(lmc_context_model(plain));
        test_long_prompt(lmc_context_model(win));
        test_shared_rollback(lmc_context_model(plain));
        test_window(lmc_context_model(win));
    }
    lmc_context_free(plain);
    lmc_context_free(win);
    tiny_rmdir(d1);
    tiny_rmdir(d2);
    return check_summary("test_kv_engine");
}
