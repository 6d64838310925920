/* Generation: stop-string holdback (unit + randomized property + end to
 * end), finish reasons, logprobs, and a saved+restored prompt cache that
 * continues a generation identically (tiny random-weight qwen3 on CPU). */
#include "base/file.h"
#include "base/json.h"
#include "check.h"
#include <math.h>
#include <sys/stat.h>
#include "lm/generate.h"
#include "lm_test_util.h"
#include "tiny_model.h"

/* ---------------------------------------------------------------- stop filter */
static char *push(lmc_stop_filter *f, const char *t, bool *stopped) {
    char *out = NULL;
    CHECK(lmc_stop_filter_push(f, t, &out, stopped) == LMC_OK);
    return out;
}

static void test_stop_units(void) {
    const char *stops[] = {"END", "\n\n"};
    lmc_stop_filter f;
    CHECK(lmc_stop_filter_init(&f, stops, 2) == LMC_OK);
    bool st;
    char *o = push(&f, "abc E", &st);
    CHECK_STREQ(o, "abc ");
    CHECK(!st);
    free(o);
    o = push(&f, "N", &st);
    CHECK_STREQ(o, ""); /* "EN" may still become "END" */
    free(o);
    o = push(&f, "X\n", &st);
    CHECK_STREQ(o, "ENX"); /* released once it cannot; "\n" held */
    free(o);
    o = push(&f, "\nmore", &st);
    CHECK(st);
    CHECK_STREQ(o, ""); /* the stop string and what follows are dropped */
    free(o);
    lmc_stop_filter_free(&f);

    CHECK(lmc_stop_filter_init(&f, stops, 2) == LMC_OK);
    o = push(&f, "foo EN", &st);
    CHECK_STREQ(o, "foo ");
    free(o);
    o = push(&f, "D bar", &st);
    CHECK(st);
    CHECK_STREQ(o, "");
    free(o);
    lmc_stop_filter_free(&f);

    /* a held prefix that never completes is flushed at the end */
    CHECK(lmc_stop_filter_init(&f, stops, 2) == LMC_OK);
    o = push(&f, "xyEN", &st);
    CHECK_STREQ(o, "xy");
    free(o);
    o = lmc_stop_filter_flush(&f);
    CHECK_STREQ(o, "EN");
    free(o);
    lmc_stop_filter_free(&f);

    const char *bad[] = {""};
    CHECK_ERR(lmc_stop_filter_init(&f, bad, 1), LMC_ERR_INVALID_ARG, "stop string 0 is empty");
}

/* Random pieces over a small alphabet: the shown text must always be a
 * prefix of the text before the first stop string (nothing partial leaks)
 * and, at the end, equal it. */
static void test_stop_property(void) {
    const char *stops[] = {"END", "NEE", "xx"};
    const char alpha[] = "ENDxa";
    lmc_rng r;
    lmc_rng_seed(&r, 7);
    int bad = 0;
    for (int trial = 0; trial < 3000; trial++) {
        char full[128] = {0};
        size_t fl = 0;
        lmc_stop_filter f;
        CHECK(lmc_stop_filter_init(&f, stops, 3) == LMC_OK);
        lmc_buf shown = {0};
        lmc_buf_puts(&shown, "");
        bool stopped = false;
        int pieces = 1 + (int)(lmc_rng_next(&r) % 12);
        for (int p = 0; p < pieces && !stopped; p++) {
            char piece[8];
            int len = (int)(lmc_rng_next(&r) % 4);
            for (int i = 0; i < len; i++) piece[i] = alpha[lmc_rng_next(&r) % 5];
            piece[len] = 0;
            memcpy(full + fl, piece, (size_t)len + 1);
            fl += (size_t)len;
            char *o = NULL;
            CHECK(lmc_stop_filter_push(&f, piece, &o, &stopped) == LMC_OK);
            lmc_buf_puts(&shown, o);
            free(o);
            /* expected output: full text cut at the first stop occurrence */
            size_t cut = fl;
            for (int s = 0; s < 3; s++) {
                char *m = strstr(full, stops[s]);
                if (m && (size_t)(m - full) < cut) cut = (size_t)(m - full);
            }
            if (shown.len > cut || strncmp(shown.p, full, shown.len) != 0) bad++;
            if (stopped && (shown.len != cut)) bad++;
            if (!stopped && cut < fl) bad++; /* a completed stop must be seen */
        }
        if (!stopped) {
            char *o = lmc_stop_filter_flush(&f);
            lmc_buf_puts(&shown, o);
            free(o);
            if (strcmp(shown.p, full) != 0) bad++;
        }
        lmc_buf_free(&shown);
        lmc_stop_filter_free(&f);
    }
    CHECK_EQ_INT(bad, 0);
}

/* ---------------------------------------------------------------- end to end */
static void test_generate_e2e(lmc_context *ctx, const test_vocab *tv) {
    int32_t *prompt = NULL;
    size_t np = 0;
    CHECK(lmc_context_encode(ctx, "The quick brown fox", 19, true, &prompt, &np) == LMC_OK);
    if (!prompt) return;
    lmc_gen_params p;
    test_params(&p, tv, 12);
    p.sampler.top_logprobs = 3;
    p.stop = NULL;
    collected ref = {0};
    lmc_gen_stats st;
    CHECK(lmc_generate_ids(ctx, prompt, np, &p, NULL, collect_cb, &ref, &st) == LMC_OK);
    CHECK_EQ_INT(ref.n, 12);
    CHECK_EQ_INT(st.generation_tokens, 12);
    CHECK_EQ_INT(st.prompt_tokens, np);
    CHECK_EQ_INT(st.prefill_tokens, np);
    CHECK(st.finish_reason == LMC_FINISH_LENGTH);
    CHECK(ref.last_reason == LMC_FINISH_LENGTH);
    CHECK(st.prompt_tps > 0 && st.generation_tps > 0);
    CHECK(st.peak_memory_bytes > 1000000);
    CHECK(ref.logprob_ok && ref.top_ok);
    /* every token is from the allowed set and the text is their decoding */
    for (size_t i = 0; i < ref.n; i++) CHECK(vocab_allowed(tv, ref.tokens[i]));
    char *dec = NULL;
    CHECK(lmc_context_decode(ctx, ref.tokens, ref.n, false, &dec) == LMC_OK);
    CHECK_STREQ(ref.text.p, dec);
    printf("reference text: \"%s\"\n", ref.text.p);
    /* the text entry point encodes the same way and returns the same text */
    char *whole = NULL;
    lmc_gen_stats ts;
    CHECK(lmc_generate_text(ctx, "The quick brown fox", &p, &whole, &ts) == LMC_OK);
    CHECK_STREQ(whole, ref.text.p);
    CHECK_EQ_INT(ts.generation_tokens, 12);
    lmc_free(whole);

    /* a stop string spanning a token boundary: the text stops right before
     * it, and no partial stop string is ever streamed */
    const char *txt = ref.text.p;
    size_t tl = strlen(txt);
    if (tl > 10) {
        /* the stop string begins in the middle of the third word */
        size_t a = 0;
        int spaces = 0;
        for (; a < tl && spaces < 3; a++)
            if (txt[a] == ' ') spaces++;
        size_t b = a + 1;
        char stop[16];
        size_t sl = (tl - b) < 4 ? tl - b : 4;
        memcpy(stop, txt + b, sl);
        stop[sl] = 0;
        const char *first = strstr(txt, stop);
        size_t want = (size_t)(first - txt);
        const char *stops[] = {stop};
        p.stop = stops;
        p.n_stop = 1;
        collected got = {0};
        got.expect_prefix = txt;
        got.expect_prefix_len = want;
        CHECK(lmc_generate_ids(ctx, prompt, np, &p, NULL, collect_cb, &got, &st) == LMC_OK);
        CHECK(got.prefix_ok);
        CHECK_MSG(got.text.len == want && !strncmp(got.text.p, txt, want),
                  "stop \"%s\": got \"%s\"", stop, got.text.p);
        CHECK(st.finish_reason == LMC_FINISH_STOP);
        CHECK(got.last_reason == LMC_FINISH_STOP);
        CHECK(got.n < ref.n);
        collected_free(&got);
        p.stop = NULL;
        p.n_stop = 0;
    }

    /* an eos token ends with "stop" and is not detokenized */
    lmc_gen_params pe = p;
    int32_t eos_only[1] = {tv->eos};
    float big[1] = {1000.0f};
    pe.sampler.logit_bias_ids = eos_only;
    pe.sampler.logit_bias_values = big;
    pe.sampler.n_logit_bias = 1;
    collected ge = {0};
    CHECK(lmc_generate_ids(ctx, prompt, np, &pe, NULL, collect_cb, &ge, &st) == LMC_OK);
    CHECK_EQ_INT(ge.n, 1);
    CHECK(ge.n == 1 && ge.tokens[0] == tv->eos);
    CHECK(st.finish_reason == LMC_FINISH_STOP);
    CHECK_STREQ(ge.text.p, "");
    collected_free(&ge);

    /* a callback that returns false stops early without an error */
    collected gc = {0};
    gc.stop_after = 3;
    CHECK(lmc_generate_ids(ctx, prompt, np, &p, NULL, collect_cb, &gc, &st) == LMC_OK);
    CHECK_EQ_INT(gc.n, 3);
    CHECK(gc.n == 3 && !memcmp(gc.tokens, ref.tokens, 3 * sizeof(int32_t)));
    collected_free(&gc);

    /* bad input */
    int32_t oob[1] = {(int32_t)lmc_tokenizer_vocab_size(lmc_context_tokenizer(ctx)) + 100000};
    CHECK_ERR(lmc_generate_ids(ctx, oob, 1, &p, NULL, NULL, NULL, NULL), LMC_ERR_INVALID_ARG,
              "outside the vocabulary");
    CHECK_ERR(lmc_generate_ids(ctx, prompt, 0, &p, NULL, NULL, NULL, NULL), LMC_ERR_INVALID_ARG,
              "empty");
    lmc_gen_params pb = p;
    pb.sampler.top_p = 2.0f;
    CHECK_ERR(lmc_generate_ids(ctx, prompt, np, &pb, NULL, NULL, NULL, NULL), LMC_ERR_INVALID_ARG,
              "top_p");

    /* seeded sampling is reproducible */
    lmc_gen_params ps = p;
    ps.sampler.temperature = 1.0f;
    ps.sampler.seed = 99;
    collected s1 = {0}, s2 = {0};
    CHECK(lmc_generate_ids(ctx, prompt, np, &ps, NULL, collect_cb, &s1, NULL) == LMC_OK);
    CHECK(lmc_generate_ids(ctx, prompt, np, &ps, NULL, collect_cb, &s2, NULL) == LMC_OK);
    CHECK(s1.n == s2.n && !memcmp(s1.tokens, s2.tokens, s1.n * sizeof(int32_t)));
    collected_free(&s1);
    collected_free(&s2);
    collected_free(&ref);
    lmc_free(dec);
    lmc_free(prompt);
}

/* (e) prompt cache: generate 10 tokens over a cache, save it, restore it
 * and continue: the 20 tokens equal one uninterrupted 20-token run. */
/* A cache file whose values hold a NaN (element 5 of layer 1's values)
 * is refused, naming the file, tensor, layer and index. */
static void cache_with_nan(lmc_context *ctx, const char *path, const char *dir) {
    char *raw = NULL;
    size_t len = 0;
    CHECK(lmc_read_file(path, "cache", 1u << 30, &raw, &len) == LMC_OK);
    if (!raw || len < 8) return;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (unsigned char)raw[i];
    json_object *hdr = NULL, *offs = NULL;
    CHECK(lmc_json_parse(raw + 8, (size_t)hlen, "header", &hdr) == LMC_OK);
    offs = lmc_json_get(lmc_json_get(hdr, "layers.1.values"), "data_offsets");
    CHECK(offs != NULL);
    if (offs) {
        size_t at = 8 + (size_t)hlen + (size_t)json_object_get_int64(json_object_array_get_idx(offs, 0));
        float nan = NAN;
        memcpy(raw + at + 5 * sizeof(float), &nan, sizeof nan);
        char bad[4200];
        snprintf(bad, sizeof bad, "%s/nan_cache.safetensors", dir);
        CHECK(lmc_write_file_atomic(bad, raw, len) == LMC_OK);
        lmc_prompt_cache *rc = NULL;
        CHECK_ERR(lmc_prompt_cache_load(ctx, bad, &rc), LMC_ERR_FORMAT,
                  "nan_cache.safetensors: tensor 'layers.1.values' (layer 1 values) holds NaN at index 5");
        CHECK(rc == NULL);
        unlink(bad);
    }
    json_object_put(hdr);
    free(raw);
}

static void test_prompt_cache(lmc_context *ctx, const test_vocab *tv, const char *dir) {
    int32_t *prompt = NULL;
    size_t np = 0;
    CHECK(lmc_context_encode(ctx, "Once upon a time", 16, true, &prompt, &np) == LMC_OK);
    if (!prompt) return;
    lmc_gen_params p;
    test_params(&p, tv, 20);
    p.sampler.n_logit_bias = tv->n_bias_no_eos; /* eos disallowed: exactly 20 tokens */
    collected ref = {0};
    CHECK(lmc_generate_ids(ctx, prompt, np, &p, NULL, collect_cb, &ref, NULL) == LMC_OK);
    CHECK_EQ_INT(ref.n, 20);

    lmc_prompt_cache *pc = NULL;
    CHECK(lmc_prompt_cache_new(ctx, &pc) == LMC_OK);
    if (!pc) return;
    p.max_tokens = 10;
    collected a = {0};
    lmc_gen_stats st;
    CHECK(lmc_generate_ids(ctx, prompt, np, &p, pc, collect_cb, &a, &st) == LMC_OK);
    CHECK(a.n == 10 && !memcmp(a.tokens, ref.tokens, 10 * sizeof(int32_t)));
    /* the cache holds the prompt and all but the last generated token */
    CHECK_EQ_INT(lmc_prompt_cache_len(pc), np + 9);
    const int32_t *known = NULL;
    CHECK_EQ_INT(lmc_prompt_cache_tokens(pc, &known), np + 9);
    CHECK(known && !memcmp(known, prompt, np * sizeof(int32_t)) &&
          !memcmp(known + np, ref.tokens, 9 * sizeof(int32_t)));
    char path[4200];
    snprintf(path, sizeof path, "%s/prompt_cache.safetensors", dir);
    CHECK(lmc_prompt_cache_save(pc, path) == LMC_OK);
    lmc_prompt_cache_free(pc);
    struct stat fs;
    CHECK_MSG(stat(path, &fs) == 0 && (fs.st_mode & 0777) == 0600,
              "a prompt cache (the conversation) is private: mode %o", (unsigned)fs.st_mode & 0777);
    cache_with_nan(ctx, path, dir);

    lmc_prompt_cache *rc = NULL;
    CHECK(lmc_prompt_cache_load(ctx, path, &rc) == LMC_OK);
    if (rc) {
        CHECK_EQ_INT(lmc_prompt_cache_len(rc), np + 9);
        CHECK_EQ_INT(lmc_prompt_cache_tokens(rc, &known), np + 9);
        /* continue: prompt + the 10 tokens; only the 10th must be fed */
        int32_t *cont = malloc((np + 10) * sizeof *cont);
        memcpy(cont, prompt, np * sizeof *cont);
        memcpy(cont + np, a.tokens, 10 * sizeof *cont);
        collected b = {0};
        CHECK(lmc_generate_ids(ctx, cont, np + 10, &p, rc, collect_cb, &b, &st) == LMC_OK);
        CHECK_EQ_INT(st.prefill_tokens, 1);
        CHECK(!st.cache_rebuilt);
        CHECK_MSG(b.n == 10 && !memcmp(b.tokens, ref.tokens + 10, 10 * sizeof(int32_t)),
                  "restored continuation differs");
        /* a prompt that diverges trims to the common prefix */
        cont[np + 2] = cont[np + 2] == tv->ids[0] ? tv->ids[1] : tv->ids[0];
        collected c = {0};
        CHECK(lmc_generate_ids(ctx, cont, np + 10, &p, rc, collect_cb, &c, &st) == LMC_OK);
        CHECK(st.cache_rebuilt);
        CHECK_EQ_INT(st.prefill_tokens, 8);
        collected d = {0};
        CHECK(lmc_generate_ids(ctx, cont, np + 10, &p, NULL, collect_cb, &d, NULL) == LMC_OK);
        CHECK(c.n == d.n && !memcmp(c.tokens, d.tokens, c.n * sizeof(int32_t)));
        collected_free(&b);
        collected_free(&c);
        collected_free(&d);
        free(cont);
        lmc_prompt_cache_free(rc);
    }
    /* damaged metadata is refused with the file named */
    CHECK(lmc_prompt_cache_load(ctx, "/nonexistent/cache.safetensors", &rc) != LMC_OK);
    unlink(path);
    collected_free(&a);
    collected_free(&ref);
    lmc_free(prompt);
}

/* ------------------------------------------------ context length, cancel */
typedef struct {
    int calls, stop_at;   /* cancel() returns true on call stop_at */
    size_t tokens, stop_after_tokens;
} cancel_probe;

static bool probe_cancel(void *user) {
    cancel_probe *c = user;
    return ++c->calls == c->stop_at ||
           (c->stop_after_tokens && c->tokens >= c->stop_after_tokens);
}

static bool probe_token(void *user, const lmc_gen_response *r) {
    (void)r;
    ((cancel_probe *)user)->tokens++;
    return true;
}

static int32_t *word_prompt(const test_vocab *tv, size_t n) {
    int32_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++) ids[i] = tv->ids[i % TV_WORDS];
    return ids;
}

/* The context length bounds prompt + output; cancel() is polled between
 * prefill chunks and before every decode step. */
static void test_context_and_cancel(lmc_context *ctx, const test_vocab *tv) {
    lmc_gen_params p;
    lmc_gen_stats stats;
    int32_t *ids = word_prompt(tv, 4096);
    /* the model's max_position_embeddings (4096): a prompt of 4096 leaves no room */
    test_params(&p, tv, 4);
    CHECK_ERR(lmc_generate_ids(ctx, ids, 4096, &p, NULL, NULL, NULL, &stats), LMC_ERR_LIMIT,
              "prompt of 4096 tokens leaves no room in the context of 4096 tokens (the "
              "model's max_position_embeddings)");
    /* an explicit override, with a prompt cache holding part of it */
    lmc_prompt_cache *cache = NULL;
    CHECK(lmc_prompt_cache_new(ctx, &cache) == LMC_OK);
    p.max_context = 20;
    CHECK_ERR(lmc_generate_ids(ctx, ids, 20, &p, cache, NULL, NULL, &stats), LMC_ERR_LIMIT,
              "context of 20 tokens (max_context)");
    /* max_tokens is clamped to the room left; eos never comes (bias) */
    for (size_t i = 0; i < tv->n_bias; i++)
        if (tv->bias_ids[i] == tv->eos) CHECK(0);
    int32_t eos_ban = tv->eos;
    float ban = -100.f;
    lmc_gen_params q = p;
    size_t nb = tv->n_bias;
    int32_t *bids = malloc((nb + 1) * sizeof *bids);
    float *bvals = malloc((nb + 1) * sizeof *bvals);
    memcpy(bids, tv->bias_ids, nb * sizeof *bids);
    memcpy(bvals, tv->bias_vals, nb * sizeof *bvals);
    bids[nb] = eos_ban;
    bvals[nb] = ban;
    q.sampler.logit_bias_ids = bids;
    q.sampler.logit_bias_values = bvals;
    q.sampler.n_logit_bias = nb + 1;
    q.max_tokens = 1000;
    CHECK(lmc_generate_ids(ctx, ids, 12, &q, NULL, NULL, NULL, &stats) == LMC_OK);
    CHECK_EQ_INT(stats.generation_tokens, 8);
    CHECK_EQ_INT(stats.finish_reason, LMC_FINISH_LENGTH);
    /* the cache now holds 12 + 7 tokens; a 15-token prompt sharing 12 of
     * them still gets only 20 - 15 tokens */
    CHECK(lmc_generate_ids(ctx, ids, 12, &q, cache, NULL, NULL, &stats) == LMC_OK);
    CHECK(lmc_generate_ids(ctx, ids, 15, &q, cache, NULL, NULL, &stats) == LMC_OK);
    CHECK_EQ_INT(stats.generation_tokens, 5);
    lmc_prompt_cache_free(cache);
    /* speculative decoding obeys the same budget */
    q.draft = ctx;
    CHECK(lmc_generate_ids(ctx, ids, 12, &q, NULL, NULL, NULL, &stats) == LMC_OK);
    CHECK_EQ_INT(stats.generation_tokens, 8);
    q.draft = NULL;

    /* cancel between prefill chunks: a 40-token prompt fed 4 at a time is
     * polled before each chunk and between its two layers, so the fifth
     * poll stops it before the third chunk, before any token is produced */
    cancel_probe cp = {.stop_at = 5};
    test_params(&p, tv, 50);
    p.prefill_step = 4;
    p.cancel = probe_cancel;
    p.cancel_user = &cp;
    CHECK_ERR(lmc_generate_ids(ctx, ids, 40, &p, NULL, probe_token, &cp, &stats),
              LMC_ERR_CANCELLED, "cancelled at prompt token 8");
    CHECK_EQ_INT(cp.calls, 5);
    CHECK_EQ_INT(cp.tokens, 0);
    /* and before a decode step */
    cp = (cancel_probe){.stop_after_tokens = 3};
    q.cancel = probe_cancel;
    q.cancel_user = &cp;
    q.max_context = 0;
    q.max_tokens = 50;
    CHECK_ERR(lmc_generate_ids(ctx, ids, 10, &q, NULL, probe_token, &cp, &stats),
              LMC_ERR_CANCELLED, "decode step 3");
    CHECK_EQ_INT(cp.tokens, 3);
    /* speculative prefill too */
    cp = (cancel_probe){.stop_at = 2};
    p.draft = ctx;
    CHECK_ERR(lmc_generate_ids(ctx, ids, 40, &p, NULL, probe_token, &cp, &stats),
              LMC_ERR_CANCELLED, "cancelled");
    CHECK_EQ_INT(cp.tokens, 0);
    free(bids);
    free(bvals);
    free(ids);
}

static void model_tests(lmc_context *ctx, const test_vocab *tv, const char *dir) {
    test_context_and_cancel(ctx, tv);
    test_generate_e2e(ctx, tv);
    test_prompt_cache(ctx, tv, dir);
}

int main(void) {
    tiny_single_thread();
    test_stop_units();
    test_stop_property();
    tiny_spec spec = {"qwen3", 2, 32, 4, 2, 8, 64, 151936, 151645, 11, 0};
    if (tiny_qwen3_run("gen", &spec, model_tests)) return 1;
    return check_summary("test_generate");
}
