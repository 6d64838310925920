/* (d) Speculative decoding on CPU with tiny random-weight checkpoints that
 * share the Qwen3 vocabulary: greedy speculative output equals the target's
 * plain greedy output for several draft lengths and for two drafts (the
 * target without its last layer, which agrees only part of the time and so
 * exercises the cache rollback, and the target itself, which should accept
 * nearly all);
 * speculative sessions; and the cache/speculative error cases. */
#include "check.h"
#include "lm_test_util.h"
#include "tiny_model.h"

static void test_equal_greedy(lmc_context *target, lmc_context *draft, const test_vocab *tv,
                              const char *label, double min_accept, const size_t *ks,
                              size_t nks, size_t max_tokens) {
    int32_t *prompt = NULL;
    size_t np = 0;
    CHECK(lmc_context_encode(target, "In a small village", 18, true, &prompt, &np) == LMC_OK);
    if (!prompt) return;
    lmc_gen_params p;
    test_params(&p, tv, max_tokens);
    p.sampler.n_logit_bias = tv->n_bias_no_eos;
    collected ref = {0};
    CHECK(lmc_generate_ids(target, prompt, np, &p, NULL, collect_cb, &ref, NULL) == LMC_OK);
    CHECK_EQ_INT(ref.n, max_tokens);
    for (size_t i = 0; i < nks; i++) {
        lmc_gen_params q = p;
        q.draft = draft;
        q.num_draft_tokens = ks[i];
        collected got = {0};
        lmc_gen_stats st;
        CHECK(lmc_generate_ids(target, prompt, np, &q, NULL, collect_cb, &got, &st) == LMC_OK);
        CHECK_MSG(got.n == ref.n && !memcmp(got.tokens, ref.tokens, ref.n * sizeof(int32_t)),
                  "%s k=%zu: speculative output differs from plain greedy", label, ks[i]);
        CHECK_STREQ(got.text.p, ref.text.p);
        CHECK(got.counts_ok);
        CHECK(st.finish_reason == LMC_FINISH_LENGTH);
        CHECK(st.draft_proposed > 0);
        CHECK_EQ_INT(got.drafted, st.draft_accepted);
        double rate = st.draft_proposed ? (double)st.draft_accepted / (double)st.draft_proposed : 0;
        CHECK_MSG(rate >= min_accept, "%s k=%zu: acceptance %.2f", label, ks[i], rate);
        printf("%s k=%zu: acceptance %zu/%zu = %.2f\n", label, ks[i], st.draft_accepted,
               st.draft_proposed, rate);
        collected_free(&got);
    }
    /* eos inside an accepted run ends generation there, as plain decoding does */
    test_params(&p, tv, max_tokens);
    collected r2 = {0}, g2 = {0};
    CHECK(lmc_generate_ids(target, prompt, np, &p, NULL, collect_cb, &r2, NULL) == LMC_OK);
    p.draft = draft;
    p.num_draft_tokens = 4;
    CHECK(lmc_generate_ids(target, prompt, np, &p, NULL, collect_cb, &g2, NULL) == LMC_OK);
    CHECK(r2.n == g2.n && !memcmp(r2.tokens, g2.tokens, r2.n * sizeof(int32_t)));
    CHECK(r2.last_reason == g2.last_reason);
    collected_free(&r2);
    collected_free(&g2);
    collected_free(&ref);
    lmc_free(prompt);
}

static void test_sessions(lmc_context *target, lmc_context *draft, const test_vocab *tv) {
    lmc_gen_params p;
    test_params(&p, tv, 8);
    lmc_chat_options plain = {.instructions = "Be brief.", .gen = &p};
    lmc_chat_options spec = {.instructions = "Be brief.", .gen = &p, .draft = draft,
                             .num_draft_tokens = 3};
    lmc_chat_session *a = NULL, *b = NULL;
    CHECK(lmc_chat_session_new(target, &plain, &a) == LMC_OK);
    CHECK(lmc_chat_session_new(target, &spec, &b) == LMC_OK);
    if (!a || !b) return;
    const char *msgs[] = {"Hello", "More please", "Last one"};
    for (int i = 0; i < 3; i++) {
        char *ra = NULL, *rb = NULL;
        CHECK(lmc_chat_session_respond(a, msgs[i], &ra) == LMC_OK);
        CHECK(lmc_chat_session_respond(b, msgs[i], &rb) == LMC_OK);
        CHECK_STREQ(ra, rb);
        lmc_gen_stats st;
        lmc_chat_session_last_stats(b, &st);
        /* speculative sessions re-prefill the whole conversation */
        CHECK_EQ_INT(st.prefill_tokens, st.prompt_tokens);
        free(ra);
        free(rb);
    }
    CHECK(lmc_chat_session_has_cache(a));
    CHECK(!lmc_chat_session_has_cache(b));
    CHECK_ERR(lmc_chat_session_save_cache(b, "/tmp/never.safetensors"), LMC_ERR_STATE,
              "speculative");
    /* a restored cache cannot be combined with a draft model */
    lmc_prompt_cache *pc = NULL;
    CHECK(lmc_prompt_cache_new(target, &pc) == LMC_OK);
    lmc_chat_options both = {.gen = &p, .draft = draft, .cache = pc};
    lmc_chat_session *c = NULL;
    CHECK_ERR(lmc_chat_session_new(target, &both, &c), LMC_ERR_INVALID_ARG,
              "restored cache cannot be combined with speculative decoding");
    CHECK(c == NULL);
    lmc_prompt_cache_free(pc); /* still ours after a failed build */
    lmc_chat_session_free(a);
    lmc_chat_session_free(b);
}

/* A sliding-window model (mistral, window 8) uses a rotating KV cache that
 * wraps during a 90-token generation (its ring keeps window - 1 + 64
 * slots): speculative rollbacks on it and a saved+restored prompt cache
 * still reproduce plain greedy decoding. */
static void test_rotating(void) {
    char d1[1024], d2[1024];
    if (tiny_tmpdir(d1, sizeof d1, "swt") || tiny_tmpdir(d2, sizeof d2, "swd")) return;
    tiny_spec ts = {"mistral", 2, 32, 4, 2, 8, 64, 151936, 151645, 61, 8};
    tiny_spec ds = {"mistral", 1, 32, 4, 2, 8, 64, 151936, 151645, 61, 8};
    lmc_context *target = tiny_load(d1, &ts, ".cache/assets/tokenizers/qwen3");
    lmc_context *draft = tiny_load(d2, &ds, ".cache/assets/tokenizers/qwen3");
    CHECK(target && draft);
    test_vocab tv;
    if (target && draft && test_vocab_init(&tv, target) == 0) {
        const size_t ks[] = {3};
        test_equal_greedy(target, draft, &tv, "sliding-window 1-layer draft", 0.0, ks, 1, 90);
        /* prompt cache over a wrapped rotating cache */
        int32_t prompt[3] = {785, 3974, 13876};
        lmc_gen_params p;
        test_params(&p, &tv, 80);
        p.sampler.n_logit_bias = tv.n_bias_no_eos;
        collected ref = {0}, a = {0}, b = {0};
        CHECK(lmc_generate_ids(target, prompt, 3, &p, NULL, collect_cb, &ref, NULL) == LMC_OK);
        lmc_prompt_cache *pc = NULL;
        CHECK(lmc_prompt_cache_new(target, &pc) == LMC_OK);
        p.max_tokens = 40;
        CHECK(lmc_generate_ids(target, prompt, 3, &p, pc, collect_cb, &a, NULL) == LMC_OK);
        char path[1200];
        snprintf(path, sizeof path, "%s/rot.safetensors", d1);
        CHECK(lmc_prompt_cache_save(pc, path) == LMC_OK);
        lmc_prompt_cache *rc = NULL;
        CHECK(lmc_prompt_cache_load(target, path, &rc) == LMC_OK);
        if (rc && a.n == 40) {
            int32_t cont[43];
            memcpy(cont, prompt, sizeof prompt);
            memcpy(cont + 3, a.tokens, 40 * sizeof(int32_t));
            lmc_gen_stats st;
            CHECK(lmc_generate_ids(target, cont, 43, &p, rc, collect_cb, &b, &st) == LMC_OK);
            CHECK_EQ_INT(st.prefill_tokens, 1);
            CHECK_MSG(b.n == 40 && !memcmp(b.tokens, ref.tokens + 40, 40 * sizeof(int32_t)),
                      "rotating cache: restored continuation differs");
        }
        unlink(path);
        lmc_prompt_cache_free(pc);
        lmc_prompt_cache_free(rc);
        collected_free(&ref);
        collected_free(&a);
        collected_free(&b);
        test_vocab_free(&tv);
    }
    lmc_context_free(target);
    lmc_context_free(draft);
    tiny_rmdir(d1);
    tiny_rmdir(d2);
}

int main(void) {
    tiny_single_thread();
    char d1[1024], d2[1024];
    if (tiny_tmpdir(d1, sizeof d1, "tgt") || tiny_tmpdir(d2, sizeof d2, "drf")) return 1;
    tiny_spec ts = {"qwen3", 2, 32, 4, 2, 8, 64, 151936, 151645, 31, 0};
    /* same seed: the draft is the target without its second layer */
    tiny_spec ds = {"qwen3", 1, 32, 4, 2, 8, 64, 151936, 151645, 31, 0};
    lmc_context *target = tiny_load(d1, &ts, ".cache/assets/tokenizers/qwen3");
    lmc_context *draft = tiny_load(d2, &ds, ".cache/assets/tokenizers/qwen3");
    CHECK(target && draft);
    if (target && draft) {
        test_vocab tv;
        if (test_vocab_init(&tv, target) == 0) {
            const size_t ks[] = {1, 5}, kself[] = {4};
            test_equal_greedy(target, draft, &tv, "1-layer draft", 0.0, ks, 2, 24);
            test_equal_greedy(target, target, &tv, "self draft", 0.9, kself, 1, 24);
            test_sessions(target, draft, &tv);
            test_vocab_free(&tv);
        } else {
            CHECK(0);
        }
    }
    lmc_context_free(target);
    lmc_context_free(draft);
    tiny_rmdir(d1);
    tiny_rmdir(d2);
    test_rotating();
    return check_summary("test_speculative");
}
