/* Shared helpers for the generation tests: a restricted output vocabulary
 * (so random-weight models emit whole words that re-tokenize identically,
 * which chat-history rendering relies on), and a response collector. */
#ifndef LMC_TESTS_LM_TEST_UTIL_H
#define LMC_TESTS_LM_TEST_UTIL_H
#include "base/buf.h"
#include "check.h"
#include "lm/context.h"
#include "lmc.h"
#include "tiny_model.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TV_WORDS 10
typedef struct {
    int32_t ids[TV_WORDS];
    int32_t eos;
    int32_t *bias_ids; /* every token except the allowed words, then eos last */
    float *bias_vals;
    size_t n_bias;         /* bias that leaves words + eos drawable */
    size_t n_bias_no_eos;  /* bias that also forbids eos */
} test_vocab;

static inline bool vocab_allowed(const test_vocab *tv, int32_t t) {
    if (t == tv->eos) return true;
    for (int i = 0; i < TV_WORDS; i++)
        if (tv->ids[i] == t) return true;
    return false;
}

static inline int test_vocab_init(test_vocab *tv, lmc_context *ctx) {
    static const char *words[TV_WORDS] = {" cat", " dog", " red", " blue", " sun",
                                          " moon", " tree", " bird", " fish", " hat"};
    memset(tv, 0, sizeof *tv);
    const int32_t *eos = NULL;
    if (lmc_tokenizer_eos_ids(lmc_context_tokenizer(ctx), &eos) < 1) return -1;
    tv->eos = eos[0];
    for (int i = 0; i < TV_WORDS; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (lmc_context_encode(ctx, words[i], strlen(words[i]), false, &ids, &n) || n != 1) {
            fprintf(stderr, "word \"%s\" is not a single token\n", words[i]);
            lmc_free(ids);
            return -1;
        }
        tv->ids[i] = ids[0];
        lmc_free(ids);
    }
    /* the model's vocabulary (it may be padded past the tokenizer's) */
    size_t Vm = (size_t)lmc_context_config(ctx)->vocab_size;
    tv->bias_ids = malloc(Vm * sizeof *tv->bias_ids);
    tv->bias_vals = malloc(Vm * sizeof *tv->bias_vals);
    if (!tv->bias_ids || !tv->bias_vals) return -1;
    size_t k = 0;
    for (size_t t = 0; t < Vm; t++) {
        if (vocab_allowed(tv, (int32_t)t)) continue;
        tv->bias_ids[k] = (int32_t)t;
        tv->bias_vals[k++] = -INFINITY;
    }
    tv->n_bias = k;
    tv->bias_ids[k] = tv->eos;
    tv->bias_vals[k++] = -INFINITY;
    tv->n_bias_no_eos = k;
    return 0;
}

static inline void test_vocab_free(test_vocab *tv) {
    free(tv->bias_ids);
    free(tv->bias_vals);
}

/* Greedy over the allowed words (+ eos). */
static inline void test_params(lmc_gen_params *p, const test_vocab *tv, size_t max_tokens) {
    lmc_gen_params_default(p);
    p->max_tokens = max_tokens;
    p->sampler.logit_bias_ids = tv->bias_ids;
    p->sampler.logit_bias_values = tv->bias_vals;
    p->sampler.n_logit_bias = tv->n_bias;
}

typedef struct {
    int32_t tokens[512];
    size_t n;
    lmc_buf text;
    lmc_finish_reason last_reason;
    size_t stop_after;       /* return false after this many (0 = never) */
    const char *expect_prefix; /* the streamed text must stay a prefix of this */
    size_t expect_prefix_len;
    bool prefix_ok, logprob_ok, top_ok, counts_ok;
    size_t drafted;          /* responses marked from_draft */
} collected;

static inline bool collect_cb(void *user, const lmc_gen_response *r) {
    collected *c = user;
    if (c->n == 0) {
        c->prefix_ok = c->logprob_ok = c->top_ok = c->counts_ok = true;
        lmc_buf_puts(&c->text, "");
    }
    if (c->n < 512) c->tokens[c->n] = r->token;
    c->n++;
    lmc_buf_puts(&c->text, r->text);
    c->last_reason = r->finish_reason;
    if (r->from_draft) c->drafted++;
    if (!(r->logprob <= 0.0f) || !isfinite(r->logprob)) c->logprob_ok = false;
    if (r->generation_tokens != c->n) c->counts_ok = false;
    if (r->n_top) {
        /* sorted, and greedy picks the best */
        for (size_t i = 1; i < r->n_top; i++)
            if (r->top_logprobs[i] > r->top_logprobs[i - 1]) c->top_ok = false;
        if (r->top_ids[0] != r->token || fabsf(r->top_logprobs[0] - r->logprob) > 1e-6f)
            c->top_ok = false;
    }
    if (c->expect_prefix &&
        (c->text.len > c->expect_prefix_len || strncmp(c->text.p, c->expect_prefix, c->text.len)))
        c->prefix_ok = false;
    return !(c->stop_after && c->n >= c->stop_after);
}

static inline void collected_free(collected *c) { lmc_buf_free(&c->text); }

/* Builds the tiny model `spec` with the Qwen3 tokenizer in a fresh temp dir
 * (named after `tag`), runs `body` on it with the restricted vocabulary, then
 * removes the dir. A failed load or vocabulary setup is a failed check.
 * Returns 1 when no temp dir could be made. */
static inline int tiny_qwen3_run(const char *tag, const tiny_spec *spec,
                                 void (*body)(lmc_context *ctx, const test_vocab *tv,
                                              const char *dir)) {
    char dir[1024];
    if (tiny_tmpdir(dir, sizeof dir, tag)) return 1;
    lmc_context *ctx = tiny_load(dir, spec, ".cache/assets/tokenizers/qwen3");
    CHECK(ctx != NULL);
    if (ctx) {
        test_vocab tv;
        if (test_vocab_init(&tv, ctx) == 0) {
            body(ctx, &tv, dir);
            test_vocab_free(&tv);
        } else {
            CHECK(0);
        }
        lmc_context_free(ctx);
    }
    tiny_rmdir(dir);
    return 0;
}

#endif
