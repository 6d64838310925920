/* Sliding-window perplexity of stories260K on a TinyStories-style text
 * against tests/golden/perplexity/stories260K.json (made by
 * tests/oracle/perplexity_golden.py with transformers' recipe): lmc's ids
 * of the text equal the golden's, and for every (context, stride) the
 * perplexity is within 1e-4 (relative) with the same scored-token and
 * window counts. Also the argument checks and cancellation. */
#include "check.h"
#include "lmc.h"
#include <json-c/json.h>

static bool cancel_at_second(void *user, const char *stage, double fraction) {
    int *calls = user;
    (void)stage;
    (void)fraction;
    return ++*calls < 2;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0, *len = (size_t)n;
    return b;
}

int main(void) {
    const char *src = getenv("LMC_SOURCE_DIR");
    char path[1024], model[1024], textp[1024];
    snprintf(path, sizeof path, "%s/tests/golden/perplexity/stories260K.json", src ? src : ".");
    snprintf(model, sizeof model, "%s/models/stories260K", src ? src : ".");
    snprintf(textp, sizeof textp, "%s/tests/golden/perplexity/tinystories_style.txt",
             src ? src : ".");
    json_object *g = json_object_from_file(path);
    CHECK_MSG(g != NULL, "golden %s is missing or unreadable (run tests/oracle/"
                         "perplexity_golden.py)", path);
    if (!g) return check_summary("test_perplexity");
    size_t len = 0;
    char *text = slurp(textp, &len);
    CHECK(text != NULL);
    lmc_load_options lo = {.model_dir = model};
    lmc_context *ctx = NULL;
    CHECK_MSG(lmc_context_load(&lo, &ctx) == LMC_OK, "%s", lmc_last_error());
    if (!ctx || !text) return check_summary("test_perplexity");

    /* lmc's ids of the text are the reference tokenizer's. */
    json_object *jids = json_object_object_get(g, "input_ids");
    size_t n = json_object_array_length(jids), n_lmc = 0;
    int32_t *ids = malloc(n * sizeof *ids), *lids = NULL;
    for (size_t i = 0; i < n; i++) ids[i] = json_object_get_int(json_object_array_get_idx(jids, i));
    CHECK(lmc_context_encode(ctx, text, len, true, &lids, &n_lmc) == LMC_OK);
    CHECK_EQ_INT(n_lmc, n);
    CHECK(n_lmc == n && !memcmp(lids, ids, n * sizeof *ids));
    lmc_free(lids);

    json_object *cases = json_object_object_get(g, "cases");
    CHECK(json_object_array_length(cases) >= 3);
    for (size_t c = 0; c < json_object_array_length(cases); c++) {
        json_object *k = json_object_array_get_idx(cases, c);
        size_t context = (size_t)json_object_get_int(json_object_object_get(k, "context"));
        size_t stride = (size_t)json_object_get_int(json_object_object_get(k, "stride"));
        double want = json_object_get_double(json_object_object_get(k, "perplexity"));
        lmc_perplexity_result r, rt;
        CHECK_MSG(lmc_perplexity_ids(ctx, ids, n, context, stride, NULL, NULL, &r) == LMC_OK,
                  "%s", lmc_last_error());
        double rel = fabs(r.perplexity - want) / want;
        printf("context %zu stride %zu: lmc %.9f, reference %.9f, relative %.2e\n", context,
               stride, r.perplexity, want, rel);
        CHECK_MSG(rel < 1e-4, "context %zu stride %zu: %.9f vs %.9f", context, stride,
                  r.perplexity, want);
        CHECK_EQ_INT(r.n_scored, json_object_get_int(json_object_object_get(k, "n_scored")));
        CHECK_EQ_INT(r.n_windows, json_object_get_int(json_object_object_get(k, "n_windows")));
        CHECK_EQ_INT(r.n_tokens, n);
        CHECK(fabs(log(r.perplexity) - r.nll) < 1e-12);
        /* The text entry point encodes the same way. */
        CHECK(lmc_perplexity_text(ctx, text, len, context, stride, NULL, NULL, &rt) == LMC_OK);
        CHECK(rt.perplexity == r.perplexity);
    }

    /* Defaults: context = max_position_embeddings (512), stride = context. */
    lmc_perplexity_result d, e;
    CHECK(lmc_perplexity_text(ctx, text, len, 0, 0, NULL, NULL, &d) == LMC_OK);
    CHECK(lmc_perplexity_ids(ctx, ids, n, 512, 512, NULL, NULL, &e) == LMC_OK);
    CHECK(d.perplexity == e.perplexity && d.n_windows == e.n_windows);

    lmc_perplexity_result r;
    CHECK_ERR(lmc_perplexity_ids(ctx, ids, n, 64, 0, NULL, NULL, &r), LMC_ERR_INVALID_ARG,
              "1 <= stride <= context");
    CHECK_ERR(lmc_perplexity_ids(ctx, ids, n, 64, 65, NULL, NULL, &r), LMC_ERR_INVALID_ARG,
              "stride 65");
    CHECK_ERR(lmc_perplexity_ids(ctx, ids, n, 1024, 512, NULL, NULL, &r), LMC_ERR_LIMIT,
              "max_position_embeddings (512)");
    CHECK_ERR(lmc_perplexity_ids(ctx, ids, 1, 64, 32, NULL, NULL, &r), LMC_ERR_INVALID_ARG,
              "at least 2");
    int32_t bad[3] = {1, 403, 9999};
    CHECK_ERR(lmc_perplexity_ids(ctx, bad, 3, 64, 32, NULL, NULL, &r), LMC_ERR_INVALID_ARG,
              "outside the vocabulary");
    int calls = 0;
    CHECK_ERR(lmc_perplexity_ids(ctx, ids, n, 64, 32, cancel_at_second, &calls, &r),
              LMC_ERR_CANCELLED, "cancelled");
    CHECK_EQ_INT(calls, 2);

    free(ids);
    free(text);
    lmc_context_free(ctx);
    json_object_put(g);
    return check_summary("test_perplexity");
}
