/* longrope's table is picked per forward, as transformers does: a forward
 * whose sequence reaches past original_max_position_embeddings rotates its
 * queries and keys with the long factors, one that stays within it with
 * the short ones, and keys already cached keep their rotation. A prompt
 * fed in prefill steps (lmc_prefill) or in the KV cache's own pieces must
 * give the logits of one forward of the whole prompt; feeding the same
 * tokens in two separate calls that straddle the switch must not (tiny
 * random-weight llama with longrope scaling, original context 40). The
 * tables themselves are checked against transformers in
 * tests/models/test_wide_parity.c (the phi3_longrope recipe). */
#include "check.h"
#include "lm/context.h"
#include "lm/generate.h"
#include "lm_test_util.h"
#include "models/model.h"
#include "numeric.h"
#include "tiny_model.h"

#define ORIG 40

static int32_t *prompt_ids(size_t n) {
    int32_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; ids && i < n; i++) ids[i] = (int32_t)(100 + (i * 7919) % 5000);
    return ids;
}

/* Logits of the last of ids[0, n) fed as `calls` forwards of the given
 * sizes (0-terminated), or through lmc_prefill in steps of `step`. */
static int feed(lmc_model *m, const int32_t *ids, const size_t *calls, size_t step, size_t n,
                float *out) {
    lmc_kv_cache *kv = NULL;
    if (lmc_kv_cache_new(m, &kv)) return -1;
    lmc_status st = LMC_OK;
    if (step) {
        lmc_gen_params p = {.prefill_step = step};
        st = lmc_prefill(m, kv, ids, n, &p, out);
        CHECK(kv->rope_len == 0); /* the hint lives only for the call */
    } else {
        size_t off = 0;
        for (size_t i = 0; calls[i] && !st; off += calls[i], i++)
            st = lmc_model_forward(m, kv, ids + off, calls[i], out, false);
        CHECK(off == n);
    }
    CHECK_MSG(!st, "feed: %s", lmc_last_error());
    CHECK_EQ_INT(lmc_kv_cache_len(kv), n);
    lmc_kv_cache_free(kv);
    return st ? -1 : 0;
}

int main(void) {
    tiny_single_thread();
    char dir[4096];
    if (tiny_tmpdir(dir, sizeof dir, "longrope")) return 1;
    char extra[1024], sf[256] = "", lf[256] = "";
    for (int i = 0; i < 16; i++) { /* head_dim 32: 16 frequencies */
        size_t a = strlen(sf), b = strlen(lf);
        snprintf(sf + a, sizeof sf - a, "%s%g", i ? "," : "", 1.0 + 0.1 * i);
        snprintf(lf + b, sizeof lf - b, "%s%g", i ? "," : "", 3.0 + 2.0 * i);
    }
    snprintf(extra, sizeof extra,
             "\"original_max_position_embeddings\":%d,\"rope_scaling\":{\"type\":\"longrope\","
             "\"short_factor\":[%s],\"long_factor\":[%s]}",
             ORIG, sf, lf);
    tiny_spec s = {.model_type = "llama", .layers = 2, .hidden = 64, .heads = 2, .kv_heads = 1,
                   .head_dim = 32, .inter = 96, .vocab = 6000, .eos = 2, .seed = 41};
    lmc_context *ctx = tiny_load_cfg(dir, &s, ".cache/assets/tokenizers/qwen3", extra);
    CHECK(ctx != NULL);
    if (!ctx) return check_summary("test_longrope");
    lmc_model *m = lmc_context_model(ctx);
    size_t V = (size_t)lmc_model_vocab(m), n = 100;
    int32_t *ids = prompt_ids(n);
    float *one = malloc(V * sizeof *one), *got = malloc(V * sizeof *got);
    CHECK(ids && one && got);

    /* one forward of all 100 tokens: the long table throughout */
    const size_t whole[] = {100, 0};
    CHECK(feed(m, ids, whole, 0, n, one) == 0);
    /* prefill steps of 16 (the first two within the original context) */
    CHECK(feed(m, ids, NULL, 16, n, got) == 0);
    double d = test_rel_err(got, one, V);
    CHECK_MSG(d <= 1e-5, "prefill in steps of 16 vs one forward: %.3e", d);
    printf("  prefill steps of 16 vs one forward: relative diff %.3e\n", d);
    /* two calls, the first within the original context: its keys keep the
     * short rotation, so the logits differ (transformers with a cache
     * across two forwards does the same) */
    const size_t split[] = {30, 70, 0};
    CHECK(feed(m, ids, split, 0, n, got) == 0);
    d = test_rel_err(got, one, V);
    CHECK_MSG(d > 1e-2, "30 + 70 tokens in two calls should differ from one forward: %.3e", d);
    printf("  30 + 70 tokens in two calls vs one forward: relative diff %.3e\n", d);
    /* two calls both past the switch rotate alike */
    const size_t late[] = {45, 55, 0};
    CHECK(feed(m, ids, late, 0, n, got) == 0);
    d = test_rel_err(got, one, V);
    CHECK_MSG(d <= 1e-5, "45 + 55 tokens in two calls vs one forward: %.3e", d);
    /* within the original context a forward uses the short table, so a
     * 40-token prompt fed at once or in steps agrees, and differs from the
     * same tokens continued past the switch */
    const size_t short_whole[] = {ORIG, 0};
    CHECK(feed(m, ids, short_whole, 0, ORIG, one) == 0);
    CHECK(feed(m, ids, NULL, 7, ORIG, got) == 0);
    d = test_rel_err(got, one, V);
    CHECK_MSG(d <= 1e-5, "40 tokens in steps of 7 vs one forward: %.3e", d);

    free(ids);
    free(one);
    free(got);
    lmc_context_free(ctx);
    tiny_rmdir(dir);
    return check_summary("test_longrope");
}
