/* Cancellation inside a prefill chunk: the CPU forward polls the KV
 * cache's cancel callback between layers, so a long chunk stops after the
 * layer that was running, with the cache's length and contents as before
 * the call (its next forward gives the same logits as a cache that was
 * never cancelled), also when earlier chunks of the same call had been
 * committed. Through generation: p->cancel reaches that check, the prompt
 * cache stays empty, and the next generation gives the tokens of a fresh
 * run (tiny random-weight qwen3, 4 layers, on the CPU). */
#include "check.h"
#include "lm/context.h"
#include "lm_test_util.h"
#include "models/model.h"
#include "tiny_model.h"

#define LAYERS 4

typedef struct {
    int calls, stop_at; /* true from the stop_at-th call on (0: never) */
} counter;

static bool count_cb(void *user) {
    counter *c = user;
    c->calls++;
    return c->stop_at && c->calls >= c->stop_at;
}

static int32_t *prompt_ids(size_t n) {
    int32_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; ids && i < n; i++) ids[i] = (int32_t)(100 + (i * 7919) % 5000);
    return ids;
}

/* A cache fed `pre` tokens, then `ids` [0, n) cancelled at the
 * stop_at-th poll, then fed ids again: the logits equal those of a cache
 * that was never cancelled. `polls` is how many polls the cancelled call
 * made. */
static void check_cancelled_forward(lmc_model *m, const int32_t *ids, size_t pre, size_t n,
                                    int stop_at, int polls) {
    size_t V = (size_t)lmc_model_vocab(m);
    float *ref = malloc(V * sizeof *ref), *got = malloc(V * sizeof *got);
    lmc_kv_cache *a = NULL, *b = NULL;
    CHECK(ref && got);
    CHECK(lmc_kv_cache_new(m, &a) == LMC_OK && lmc_kv_cache_new(m, &b) == LMC_OK);
    if (!ref || !got || !a || !b) goto done;
    if (pre) {
        CHECK(lmc_model_forward(m, a, ids, pre, ref, false) == LMC_OK);
        CHECK(lmc_model_forward(m, b, ids, pre, got, false) == LMC_OK);
    }
    CHECK(lmc_model_forward(m, a, ids + pre, n, ref, false) == LMC_OK);

    counter c = {.stop_at = stop_at};
    b->cancel = count_cb;
    b->cancel_user = &c;
    CHECK_ERR(lmc_model_forward(m, b, ids + pre, n, got, false), LMC_ERR_CANCELLED,
              "forward: cancelled after layer 1 of 4");
    CHECK_EQ_INT(c.calls, polls);
    CHECK_EQ_INT(lmc_kv_cache_len(b), pre);
    /* the layers' callback is only polled while set */
    b->cancel = NULL;
    b->cancel_user = NULL;
    CHECK(lmc_model_forward(m, b, ids + pre, n, got, false) == LMC_OK);
    CHECK_EQ_INT(lmc_kv_cache_len(b), pre + n);
    size_t differ = 0;
    for (size_t i = 0; i < V; i++) differ += ref[i] != got[i];
    CHECK_MSG(differ == 0, "%zu of %zu logits differ after a cancelled forward", differ, V);
    /* a callback that never stops polls once between each pair of layers */
    counter never = {0};
    a->cancel = count_cb;
    a->cancel_user = &never;
    CHECK(lmc_model_forward(m, a, ids, 3, ref, false) == LMC_OK);
    CHECK_EQ_INT(never.calls, LAYERS - 1);
done:
    lmc_kv_cache_free(a);
    lmc_kv_cache_free(b);
    free(ref);
    free(got);
}

/* generation: p->cancel is polled before the chunk (call 1, false), then
 * after the chunk's first layer (call 2, true) */
static void check_generation(lmc_context *ctx, const test_vocab *tv, const int32_t *ids, size_t n) {
    lmc_gen_params p;
    test_params(&p, tv, 8);
    p.sampler.n_logit_bias = tv->n_bias_no_eos; /* exactly 8 tokens */
    collected ref = {0}, got = {0}, none = {0};
    CHECK(lmc_generate_ids(ctx, ids, n, &p, NULL, collect_cb, &ref, NULL) == LMC_OK);
    CHECK_EQ_INT(ref.n, 8);

    lmc_prompt_cache *pc = NULL;
    CHECK(lmc_prompt_cache_new(ctx, &pc) == LMC_OK);
    if (!pc) return;
    counter c = {.stop_at = 2};
    p.cancel = count_cb;
    p.cancel_user = &c;
    CHECK_ERR(lmc_generate_ids(ctx, ids, n, &p, pc, collect_cb, &none, NULL), LMC_ERR_CANCELLED,
              "prefill at prompt token 0: forward: cancelled after layer 1 of 4");
    CHECK_EQ_INT(c.calls, 2);
    CHECK_EQ_INT(none.n, 0);
    CHECK_EQ_INT(lmc_prompt_cache_len(pc), 0);
    CHECK_EQ_INT(lmc_prompt_cache_tokens(pc, NULL), 0);

    p.cancel = NULL;
    p.cancel_user = NULL;
    CHECK(lmc_generate_ids(ctx, ids, n, &p, pc, collect_cb, &got, NULL) == LMC_OK);
    CHECK(got.n == 8 && !memcmp(got.tokens, ref.tokens, 8 * sizeof(int32_t)));
    CHECK_EQ_INT(lmc_prompt_cache_len(pc), n + 7);
    lmc_prompt_cache_free(pc);
    lmc_buf_free(&ref.text);
    lmc_buf_free(&got.text);
    lmc_buf_free(&none.text);
}

static void body(lmc_context *ctx, const test_vocab *tv, const char *dir) {
    (void)dir;
    lmc_model *m = lmc_context_model(ctx);
    int32_t *ids = prompt_ids(1000);
    CHECK(ids != NULL);
    if (!ids) return;
    /* one chunk of 400 after 5 held tokens: stopped at the first poll */
    check_cancelled_forward(m, ids, 5, 400, 1, 1);
    /* 700 tokens are two chunks (512 + 188): the first is committed, the
     * second is stopped after its first layer; the first is dropped again */
    check_cancelled_forward(m, ids, 0, 700, LAYERS, LAYERS);
    check_generation(ctx, tv, ids, 300);
    free(ids);
}

int main(void) {
    tiny_single_thread();
    tiny_spec spec = {"qwen3", LAYERS, 32, 4, 2, 8, 64, 151936, 151645, 23, 0};
    if (tiny_qwen3_run("cancel", &spec, body)) return 1;
    return check_summary("test_prefill_cancel");
}
