/* ChatSession on a tiny random-weight qwen3 with the real Qwen3 tokenizer
 * and chat template, on CPU:
 *  (a) turn N feeds only the tokens the cache lacks and produces the same
 *      tokens as prefilling the whole rendered conversation from scratch;
 *  (b) an instructions change, and a template that is not prefix stable
 *      (enable_thinking=false), trigger a rebuild that still matches;
 *  (c) an early-stopped stream records the partial reply and the next turn
 *      still extends the cache;
 *  (e) a saved session cache restores as an opaque prefix and continues
 *      like a from-scratch run over prefix + render;
 *  plus history re-hydration, clear, and the error cases of the contract. */
#include "check.h"
#include "lm/generate.h"
#include "lm_test_util.h"
#include "tiny_model.h"
#include <json-c/json.h>

static void add_msg(json_object *arr, const char *role, const char *content) {
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string(role));
    json_object_object_add(m, "content", json_object_new_string(content));
    json_object_array_add(arr, m);
}

/* Render system + the session's history + a new user message, as the
 * session must, independently of it. */
static int render_ids(lmc_context *ctx, const char *system, const lmc_chat_session *s,
                      const char *user, const char *kwargs, int32_t **ids, size_t *n) {
    json_object *arr = json_object_new_array();
    if (system) add_msg(arr, "system", system);
    size_t hn = s ? lmc_chat_session_history_len(s) : 0;
    for (size_t i = 0; i < hn; i++) {
        lmc_role r;
        const char *c = lmc_chat_session_history_at(s, i, &r);
        add_msg(arr, lmc_role_str(r), c);
    }
    add_msg(arr, "user", user);
    char *text = NULL;
    lmc_status st = lmc_tokenizer_apply_chat_template(
        lmc_context_tokenizer(ctx), json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN),
        NULL, true, false, kwargs, &text);
    json_object_put(arr);
    if (st) return -1;
    st = lmc_context_encode(ctx, text, strlen(text), false, ids, n);
    lmc_free(text);
    return st ? -1 : 0;
}

/* Tokens a from-scratch generation over `ids` produces. */
static void scratch(lmc_context *ctx, const int32_t *ids, size_t n, const lmc_gen_params *p,
                    collected *out) {
    CHECK(lmc_generate_ids(ctx, ids, n, p, NULL, collect_cb, out, NULL) == LMC_OK);
}

static bool same_tokens(const collected *a, const collected *b) {
    return a->n == b->n && !memcmp(a->tokens, b->tokens, a->n * sizeof(int32_t));
}

typedef struct {
    size_t prompt, gen; /* previous turn's prompt and generated counts */
} prev_turn;

/* One turn: checks the prefill count against the previous turn and the
 * tokens against a from-scratch run. Returns the turn's prompt length. */
static void turn(lmc_context *ctx, lmc_chat_session *s, const char *system, const char *kwargs,
                 const char *msg, const lmc_gen_params *p, prev_turn *prev, bool expect_rebuild,
                 const char *label) {
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(render_ids(ctx, system, s, msg, kwargs, &ids, &n) == 0);
    size_t hist_before = lmc_chat_session_history_len(s);
    collected got = {0};
    CHECK(lmc_chat_session_stream(s, LMC_ROLE_USER, msg, collect_cb, &got) == LMC_OK);
    lmc_gen_stats st;
    lmc_chat_session_last_stats(s, &st);
    CHECK_EQ_INT(st.prompt_tokens, n);
    CHECK_EQ_INT(st.generation_tokens, got.n);
    CHECK_MSG(st.cache_rebuilt == expect_rebuild, "%s: rebuilt %d", label, st.cache_rebuilt);
    if (expect_rebuild || prev->prompt == 0) {
        CHECK_MSG(st.prefill_tokens == n, "%s: fed %zu of %zu", label, st.prefill_tokens, n);
    } else {
        /* the cache held the previous prompt and all but its last token */
        size_t cached = prev->prompt + prev->gen - 1;
        CHECK_MSG(st.prefill_tokens == n - cached && st.prefill_tokens < n,
                  "%s: fed %zu tokens, expected %zu - %zu", label, st.prefill_tokens, n, cached);
    }
    collected ref = {0};
    scratch(ctx, ids, n, p, &ref);
    CHECK_MSG(same_tokens(&got, &ref), "%s: session tokens differ from a from-scratch prefill",
              label);
    CHECK_EQ_INT(lmc_chat_session_history_len(s), hist_before + 2);
    lmc_role r;
    const char *reply = lmc_chat_session_history_at(s, hist_before + 1, &r);
    CHECK(r == LMC_ROLE_ASSISTANT);
    CHECK_STREQ(reply, got.text.p);
    CHECK(lmc_chat_session_has_cache(s));
    printf("%s: prompt %zu, fed %zu, generated %zu%s: \"%s\"\n", label, n, st.prefill_tokens,
           got.n, st.cache_rebuilt ? " (rebuilt)" : "", got.text.p);
    prev->prompt = n;
    prev->gen = got.n;
    collected_free(&got);
    collected_free(&ref);
    lmc_free(ids);
}

static void test_incremental(lmc_context *ctx, const test_vocab *tv, const char *dir) {
    lmc_gen_params p;
    test_params(&p, tv, 6);
    const char *sys = "You are terse.";
    lmc_chat_options o = {.instructions = sys, .gen = &p};
    lmc_chat_session *s = NULL;
    CHECK(lmc_chat_session_new(ctx, &o, &s) == LMC_OK);
    if (!s) return;
    CHECK(!lmc_chat_session_has_cache(s));
    CHECK_ERR(lmc_chat_session_save_cache(s, "/tmp/never.safetensors"), LMC_ERR_STATE,
              "no KV cache");
    prev_turn prev = {0};
    /* (a) three turns, each feeding only the new tokens */
    turn(ctx, s, sys, NULL, "Hello there", &p, &prev, false, "turn 1");
    turn(ctx, s, sys, NULL, "Tell me more", &p, &prev, false, "turn 2");
    turn(ctx, s, sys, NULL, "And then?", &p, &prev, false, "turn 3");

    /* (b) new instructions change the render's start: rebuild, same tokens */
    const char *sys2 = "You are verbose.";
    CHECK(lmc_chat_session_set_instructions(s, sys2) == LMC_OK);
    turn(ctx, s, sys2, NULL, "Why?", &p, &prev, true, "turn 4 (new instructions)");
    turn(ctx, s, sys2, NULL, "Go on", &p, &prev, false, "turn 5");
    /* enable_thinking=false appends an empty think block to the generation
     * prompt only: this turn extends, the next (which renders the reply
     * without it) diverges and rebuilds */
    const char *kw = "{\"enable_thinking\":false}";
    CHECK(lmc_chat_session_set_template_kwargs(s, kw) == LMC_OK);
    turn(ctx, s, sys2, kw, "Think less", &p, &prev, false, "turn 6 (no thinking)");
    turn(ctx, s, sys2, kw, "Again", &p, &prev, true, "turn 7 (template not prefix stable)");
    CHECK(lmc_chat_session_set_template_kwargs(s, NULL) == LMC_OK);
    CHECK_ERR(lmc_chat_session_set_template_kwargs(s, "[1]"), LMC_ERR_FORMAT, "JSON object");

    /* (c) an early-stopped stream records its partial reply */
    size_t h = lmc_chat_session_history_len(s);
    collected part = {0};
    part.stop_after = 2;
    lmc_gen_params *sp = lmc_chat_session_params(s);
    sp->max_tokens = 6;
    /* no eos, so 2 tokens are partial (the bias arrays are borrowed) */
    sp->sampler.logit_bias_ids = tv->bias_ids;
    sp->sampler.logit_bias_values = tv->bias_vals;
    sp->sampler.n_logit_bias = tv->n_bias_no_eos;
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(render_ids(ctx, sys2, s, "Interrupt me", NULL, &ids, &n) == 0);
    CHECK(lmc_chat_session_stream(s, LMC_ROLE_USER, "Interrupt me", collect_cb, &part) == LMC_OK);
    CHECK_EQ_INT(part.n, 2);
    CHECK_EQ_INT(lmc_chat_session_history_len(s), h + 2);
    lmc_role r;
    CHECK_STREQ(lmc_chat_session_history_at(s, h, &r), "Interrupt me");
    CHECK(r == LMC_ROLE_USER);
    const char *partial = lmc_chat_session_history_at(s, h + 1, &r);
    CHECK(r == LMC_ROLE_ASSISTANT);
    char *dec = NULL;
    CHECK(lmc_context_decode(ctx, part.tokens, 2, false, &dec) == LMC_OK);
    CHECK_STREQ(partial, dec);
    lmc_free(dec);
    /* the next turn still extends the cache (prompt + first token were fed) */
    prev.prompt = n;
    prev.gen = 2;
    sp->sampler.n_logit_bias = tv->n_bias;
    turn(ctx, s, sys2, NULL, "Continue", &p, &prev, false, "turn after early stop");
    collected_free(&part);
    lmc_free(ids);

    /* (e) save the session cache; a new session restores it as an opaque
     * prefix and its first turn continues exactly like a from-scratch run
     * over the cached tokens followed by the new render */
    char path[4200];
    snprintf(path, sizeof path, "%s/session_cache.safetensors", dir);
    CHECK(lmc_chat_session_save_cache(s, path) == LMC_OK);
    lmc_prompt_cache *pc = NULL;
    CHECK(lmc_prompt_cache_load(ctx, path, &pc) == LMC_OK);
    if (pc) {
        const int32_t *known = NULL;
        size_t nk = lmc_prompt_cache_tokens(pc, &known);
        CHECK_EQ_INT(nk, lmc_prompt_cache_len(pc));
        int32_t *prefix = malloc(nk * sizeof *prefix);
        memcpy(prefix, known, nk * sizeof *prefix);
        lmc_chat_options ro = {.gen = &p, .cache = pc};
        lmc_chat_session *rs = NULL;
        CHECK(lmc_chat_session_new(ctx, &ro, &rs) == LMC_OK);
        if (rs) {
            CHECK(lmc_chat_session_has_cache(rs));
            int32_t *rid = NULL;
            size_t rn = 0;
            CHECK(render_ids(ctx, NULL, NULL, "Resume", NULL, &rid, &rn) == 0);
            collected got = {0};
            CHECK(lmc_chat_session_stream(rs, LMC_ROLE_USER, "Resume", collect_cb, &got) ==
                  LMC_OK);
            lmc_gen_stats st;
            lmc_chat_session_last_stats(rs, &st);
            CHECK_EQ_INT(st.prefill_tokens, rn); /* the whole render continues the prefix */
            CHECK(!st.cache_rebuilt);
            int32_t *all = malloc((nk + rn) * sizeof *all);
            memcpy(all, prefix, nk * sizeof *all);
            memcpy(all + nk, rid, rn * sizeof *all);
            collected ref = {0};
            scratch(ctx, all, nk + rn, &p, &ref);
            CHECK_MSG(same_tokens(&got, &ref), "restored session differs from scratch");
            /* second turn: the render does not contain the opaque prefix yet
             * extends the known ids */
            prev_turn pv = {rn, got.n};
            turn(ctx, rs, NULL, NULL, "More", &p, &pv, false, "restored turn 2");
            free(all);
            lmc_free(rid);
            collected_free(&got);
            collected_free(&ref);
            lmc_chat_session_free(rs);
        } else {
            lmc_prompt_cache_free(pc);
        }
        free(prefix);
    }
    unlink(path);

    /* clear keeps instructions and parameters, drops cache and history */
    lmc_chat_session_clear(s);
    CHECK(!lmc_chat_session_has_cache(s));
    CHECK_EQ_INT(lmc_chat_session_history_len(s), 0);
    prev = (prev_turn){0};
    turn(ctx, s, sys2, NULL, "Hello again", &p, &prev, false, "after clear");

    /* bad input records nothing */
    h = lmc_chat_session_history_len(s);
    CHECK_ERR(lmc_chat_session_stream(s, LMC_ROLE_USER, NULL, NULL, NULL), LMC_ERR_INVALID_ARG,
              "NULL");
    CHECK_ERR(lmc_chat_session_stream(s, (lmc_role)9, "x", NULL, NULL), LMC_ERR_INVALID_ARG,
              "role");
    CHECK_EQ_INT(lmc_chat_session_history_len(s), h);
    lmc_chat_session_free(s);
}

static int render_json(lmc_context *ctx, const char *json, int32_t **ids, size_t *n) {
    char *text = NULL;
    if (lmc_tokenizer_apply_chat_template(lmc_context_tokenizer(ctx), json, NULL, true, false,
                                          NULL, &text))
        return -1;
    lmc_status st = lmc_context_encode(ctx, text, strlen(text), false, ids, n);
    lmc_free(text);
    return st ? -1 : 0;
}

static void test_history_rehydration(lmc_context *ctx, const test_vocab *tv) {
    lmc_gen_params p;
    test_params(&p, tv, 5);
    const char *hist = "[{\"role\":\"user\",\"content\":\"Hi\"},"
                       "{\"role\":\"assistant\",\"content\":\" cat dog\"}]";
    lmc_chat_options o = {.gen = &p, .history_json = hist};
    lmc_chat_session *s = NULL;
    CHECK(lmc_chat_session_new(ctx, &o, &s) == LMC_OK);
    if (!s) return;
    CHECK(!lmc_chat_session_has_cache(s));
    CHECK_EQ_INT(lmc_chat_session_history_len(s), 0);
    /* the replayed history is rendered on the first turn, then kept */
    collected got = {0};
    CHECK(lmc_chat_session_stream(s, LMC_ROLE_USER, "Next", collect_cb, &got) == LMC_OK);
    CHECK_EQ_INT(lmc_chat_session_history_len(s), 4);
    lmc_role r;
    CHECK_STREQ(lmc_chat_session_history_at(s, 1, &r), " cat dog");
    CHECK(r == LMC_ROLE_ASSISTANT);
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(render_json(ctx,
                      "[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\","
                      "\"content\":\" cat dog\"},{\"role\":\"user\",\"content\":\"Next\"}]",
                      &ids, &n) == 0);
    collected ref = {0};
    scratch(ctx, ids, n, &p, &ref);
    CHECK(same_tokens(&got, &ref));
    /* respond returns the recorded reply; the next turn extends the cache */
    char *a = NULL;
    CHECK(lmc_chat_session_respond(s, "Once more", &a) == LMC_OK);
    CHECK_STREQ(a, lmc_chat_session_history_at(s, 5, &r));
    lmc_gen_stats st;
    lmc_chat_session_last_stats(s, &st);
    CHECK(!st.cache_rebuilt && st.prefill_tokens < st.prompt_tokens);
    free(a);
    collected_free(&got);
    collected_free(&ref);
    lmc_free(ids);

    /* malformed histories are refused, naming the message */
    lmc_chat_options bad = {.history_json = "[{\"role\":\"wizard\",\"content\":\"x\"}]"};
    lmc_chat_session *x = NULL;
    CHECK_ERR(lmc_chat_session_new(ctx, &bad, &x), LMC_ERR_FORMAT, "message 0 has unknown role");
    bad.history_json = "[{\"role\":\"user\"}]";
    CHECK_ERR(lmc_chat_session_new(ctx, &bad, &x), LMC_ERR_FORMAT, "message 0 needs");
    bad.history_json = "{";
    CHECK_ERR(lmc_chat_session_new(ctx, &bad, &x), LMC_ERR_FORMAT, "chat history");
    lmc_prompt_cache *pc = NULL;
    CHECK(lmc_prompt_cache_new(ctx, &pc) == LMC_OK);
    lmc_chat_options both = {.history_json = "[]", .cache = pc};
    CHECK_ERR(lmc_chat_session_new(ctx, &both, &x), LMC_ERR_INVALID_ARG, "mutually exclusive");
    lmc_prompt_cache_free(pc);
    CHECK(x == NULL);
    lmc_chat_session_free(s);
}

/* Llama 3.1's template trims assistant content, so a reply that starts
 * with a space renders differently from the generated ids: the session
 * detects the divergence, rebuilds, and still matches a from-scratch run. */
static void test_llama_trim_template(void) {
    char dir[1024];
    if (tiny_tmpdir(dir, sizeof dir, "llama")) return;
    tiny_spec spec = {"llama", 2, 32, 4, 2, 8, 64, 128256, 128009, 51, 0};
    lmc_context *ctx = tiny_load(dir, &spec, ".cache/assets/tokenizers/llama3_1");
    CHECK(ctx != NULL);
    test_vocab tv;
    if (ctx && test_vocab_init(&tv, ctx) == 0) {
        lmc_gen_params p;
        test_params(&p, &tv, 4);
        p.sampler.n_logit_bias = tv.n_bias_no_eos;
        lmc_chat_options o = {.gen = &p};
        lmc_chat_session *s = NULL;
        CHECK(lmc_chat_session_new(ctx, &o, &s) == LMC_OK);
        if (s) {
            prev_turn prev = {0};
            turn(ctx, s, NULL, NULL, "Hi", &p, &prev, false, "llama turn 1");
            turn(ctx, s, NULL, NULL, "More", &p, &prev, true, "llama turn 2 (trimmed reply)");
            lmc_chat_session_free(s);
        }
        test_vocab_free(&tv);
    } else {
        CHECK(0);
    }
    lmc_context_free(ctx);
    tiny_rmdir(dir);
}

static void model_tests(lmc_context *ctx, const test_vocab *tv, const char *dir) {
    test_incremental(ctx, tv, dir);
    test_history_rehydration(ctx, tv);
}

int main(void) {
    tiny_single_thread();
    tiny_spec spec = {"qwen3", 2, 32, 4, 2, 8, 64, 151936, 151645, 21, 0};
    if (tiny_qwen3_run("sess", &spec, model_tests)) return 1;
    test_llama_trim_template();
    return check_summary("test_session");
}
