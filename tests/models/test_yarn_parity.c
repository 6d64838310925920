/* YaRN rope scaling against transformers: for each yarn checkpoint in
 * tests/golden/models (built by tests/oracle/make_yarn_models.py, prompts
 * longer than the original context) the frequency table and attention
 * factor equal transformers' rotary embedding, and the CPU model's logits
 * and greedy tokens match; with the attention factor left out they do not.
 * Also: the legacy rope_scaling spelling, a null factor, the top-level
 * original_max_position_embeddings, and the errors for bad parameters and
 * unsupported rope types. */
#include "base/file.h"
#include "base/json.h"
#include "check.h"
#include "formats/config.h"
#include "models/model.h"
#include "models/rope.h"
#include "model_golden.h"
#include <math.h>
#include <stdint.h>

static const char *const yarn_models[] = {
    "llama_yarn-fp32", "llama_yarn-bf16", "qwen3_yarn-fp32", "qwen3_yarn-bf16",
    "llama_yarn_mscale-fp32",
};

/* max|a - ref| over n values, and (out) the range of ref. */
static double max_abs(const float *a, const float *ref, size_t n, double *range) {
    double mx = 0, lo = ref[0], hi = ref[0];
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= mx)) mx = d; /* NaN propagates as a failure */
        if (ref[i] < lo) lo = ref[i];
        if (ref[i] > hi) hi = ref[i];
    }
    *range = hi - lo;
    return mx;
}

static int32_t argmax(const float *x, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (int32_t)b;
}

/* The frequency table and attention factor against the golden's record of
 * transformers' rotary embedding. */
static void check_table(const char *dir, const char *name, const lmc_model_config *cfg) {
    char path[1500];
    snprintf(path, sizeof path, "%s/golden.json", dir);
    json_object *o = NULL;
    if (lmc_json_load_file(path, "golden.json", 1 << 24, &o, NULL)) {
        CHECK_MSG(0, "%s: unreadable golden.json", name);
        return;
    }
    size_t n = 0;
    float *ref = read_floats(o, "rope_inv_freq", &n);
    double af_ref = json_object_get_double(lmc_json_get(o, "rope_attention_factor"));
    lmc_rope r;
    lmc_status st = lmc_rope_init(cfg, &r);
    CHECK_MSG(st == LMC_OK, "%s: rope: %s", name, lmc_last_error());
    if (!st) {
        CHECK_EQ_INT(r.n, n);
        double worst = 0;
        for (size_t i = 0; i < n && i < r.n; i++) {
            double e = fabs((double)r.inv_freq[i] - ref[i]) / ref[i];
            if (!(e <= worst)) worst = e;
        }
        double af_err = fabs(r.attn_factor - af_ref) / af_ref;
        printf("%-24s inv_freq max rel err %.2g, attention factor %.7f (ref %.7f)\n", name,
               worst, r.attn_factor, af_ref);
        /* a few float ulps (transformers' fp32 pow may differ by one) */
        CHECK_MSG(worst <= 5e-7, "%s: inv_freq rel err %g", name, worst);
        CHECK_MSG(af_err <= 1e-6, "%s: attention factor %g, want %g", name, r.attn_factor,
                  af_ref);
        CHECK_MSG(fabs(af_ref - 1.0) > 0.02, "%s: the golden's attention factor is trivial", name);
        lmc_rope_free(&r);
    }
    free(ref);
    json_object_put(o);
}

static void no_attn_factor(lmc_model_config *c) { c->rope_attention_factor = 1.0; }

static void test_checkpoint(const char *dir, const char *name) {
    golden g;
    loaded L;
    if (!open_checkpoint(dir, name, &g, &L)) return;
    CHECK_STREQ(L.cfg.rope_type, "yarn");
    CHECK_MSG(g.n_prompt + g.n_greedy > (size_t)L.cfg.rope_original_max_position,
              "%s: the golden stays inside the original context", name);
    check_table(dir, name, &L.cfg);
    lmc_model *m = L.model;
    size_t V = (size_t)lmc_model_vocab(m);
    CHECK_EQ_INT(V, g.vocab);
    double tol = g.half ? 1e-2 : 1e-4, range;
    float *lg = calloc(V, sizeof(float));
    lmc_kv_cache *c = NULL;
    CHECK(lmc_kv_cache_new(m, &c) == LMC_OK);

    /* 1. prompt logits (positions past the original context) */
    CHECK(lmc_model_forward(m, c, g.prompt, g.n_prompt, lg, false) == LMC_OK);
    double e = max_abs(lg, g.logits, V, &range);
    printf("%-24s prompt logits   max|d| = %.3g (range %.3g, tol %.0g of it)\n", name, e, range,
           tol);
    CHECK_MSG(e <= tol * range, "%s: prompt logits err %g > %g", name, e, tol * range);

    /* 2. free-running greedy (decode steps), identical up to the first
     * reference near-tie */
    int32_t toks[MAX_TOK];
    size_t must = g.n_greedy;
    double tie = g.half ? 1e-3 : 0.0;
    for (size_t i = 0; i < g.n_greedy; i++)
        if (g.margins[i] <= tie) {
            must = i;
            break;
        }
    for (size_t i = 0; i < g.n_greedy; i++) {
        toks[i] = argmax(lg, V);
        if (lmc_model_forward(m, c, &toks[i], 1, lg, false)) {
            toks[i] = -1;
            break;
        }
    }
    size_t same = 0;
    while (same < g.n_greedy && toks[same] == g.greedy[same]) same++;
    printf("%-24s greedy          %zu/%zu tokens identical (reference has no tie before %zu)\n",
           name, same, g.n_greedy, must);
    CHECK_MSG(same >= must, "%s: greedy diverged at token %zu", name, same);

    /* 3. one forward over prompt + greedy[:-1], and the same through
     * prefill + single-token decode */
    int32_t seq[2 * MAX_TOK];
    size_t ns = g.n_prompt + g.n_greedy - 1;
    memcpy(seq, g.prompt, g.n_prompt * sizeof(int32_t));
    memcpy(seq + g.n_prompt, g.greedy, (g.n_greedy - 1) * sizeof(int32_t));
    lmc_kv_cache_clear(c);
    CHECK(lmc_model_forward(m, c, seq, ns, lg, false) == LMC_OK);
    double e_full = e = max_abs(lg, g.full_logits, V, &range);
    printf("%-24s %zu-token logits max|d| = %.3g (range %.3g)\n", name, ns, e, range);
    CHECK_MSG(e <= tol * range, "%s: full-sequence logits err %g", name, e);
    lmc_kv_cache_clear(c);
    lmc_status st = lmc_model_forward(m, c, seq, 60, lg, false);
    for (size_t i = 60; i < ns && !st; i++) st = lmc_model_forward(m, c, &seq[i], 1, lg, false);
    CHECK(st == LMC_OK);
    e = max_abs(lg, g.full_logits, V, &range);
    CHECK_MSG(e <= tol * range, "%s: decode-path full logits err %g", name, e);
    lmc_kv_cache_free(c);
    unload(&L);

    /* 4. control: the same model without the attention factor (cos and sin
     * unscaled) must miss the reference by far more than the model with
     * it, or the comparisons above could not tell. */
    st = load_model(dir, &L, no_attn_factor);
    CHECK_MSG(st == LMC_OK, "%s: load: %s", name, lmc_last_error());
    c = NULL;
    if (!st && lmc_kv_cache_new(L.model, &c) == LMC_OK &&
        lmc_model_forward(L.model, c, seq, ns, lg, false) == LMC_OK) {
        e = max_abs(lg, g.full_logits, V, &range);
        printf("%-24s without the attention factor: max|d| = %.3g\n", name, e);
        CHECK_MSG(e > 4 * e_full && e > 1e-3 * range,
                  "%s: the attention factor changes little (%g, with it %g)", name, e, e_full);
    } else {
        CHECK_MSG(0, "%s: control run failed: %s", name, lmc_last_error());
    }
    lmc_kv_cache_free(c);
    unload(&L);
    free(lg);
    golden_free(&g);
}

/* ------------------------------------------------------------ config */

#define HEAD                                                                                \
    "{\"model_type\": \"llama\", \"vocab_size\": 96, \"hidden_size\": 64, "               \
    "\"intermediate_size\": 48, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "    \
    "\"num_key_value_heads\": 1, \"max_position_embeddings\": 256, "

static lmc_status parse(const char *json, lmc_model_config *c) {
    return lmc_config_parse(json, strlen(json), "config.json", c, NULL);
}

/* longrope: both tables, the switch past original_max_position_embeddings,
 * the attention factor from max / original positions unless factor or
 * attention_factor is given, and the legacy type name "su". */
static void test_longrope_tables(void) {
    char json[2048], sf[512] = "", lf[512] = "";
    for (int i = 0; i < 16; i++) {
        size_t a = strlen(sf), b = strlen(lf);
        snprintf(sf + a, sizeof sf - a, "%s%g", i ? ", " : "", 1.0 + 0.25 * i);
        snprintf(lf + b, sizeof lf - b, "%s%g", i ? ", " : "", 2.0 + 3.0 * i);
    }
    const struct {
        const char *type, *extra;
        double attn;
    } cases[] = {
        /* factor = 256 / 64 = 4 */
        {"longrope", "", 1.1547005383792515 /* sqrt(1 + ln 4 / ln 64) */},
        {"su", "", 1.1547005383792515},
        {"longrope", ", \"factor\": 16", 1.2909944487358056 /* sqrt(1 + ln 16 / ln 64) */},
        {"longrope", ", \"factor\": null", 1.1547005383792515},
        {"longrope", ", \"attention_factor\": 0.75", 0.75},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        snprintf(json, sizeof json,
                 HEAD "\"rope_theta\": 5000, \"original_max_position_embeddings\": 64, "
                      "\"rope_scaling\": {\"type\": \"%s\", \"short_factor\": [%s], "
                      "\"long_factor\": [%s]%s}}",
                 cases[k].type, sf, lf, cases[k].extra);
        lmc_model_config c;
        CHECK_MSG(parse(json, &c) == LMC_OK, "case %zu: %s", k, lmc_last_error());
        CHECK(!strcmp(c.rope_type, "longrope") && c.rope_n_factors == 16);
        lmc_rope r;
        CHECK_MSG(lmc_rope_init(&c, &r) == LMC_OK, "case %zu: %s", k, lmc_last_error());
        CHECK(r.n == 16 && r.inv_freq_long && r.long_after == 64);
        CHECK_MSG(fabs(r.attn_factor - cases[k].attn) < 1e-6, "case %zu: attention factor %g",
                  k, r.attn_factor);
        for (int i = 0; i < 16; i++) {
            double base = pow(5000.0, (2.0 * i) / 32.0);
            double s_want = 1.0 / ((1.0 + 0.25 * i) * base), l_want = 1.0 / ((2.0 + 3.0 * i) * base);
            CHECK_MSG(fabs(r.inv_freq[i] - s_want) <= 3e-7 * s_want, "short %d: %g vs %g", i,
                      r.inv_freq[i], s_want);
            CHECK_MSG(fabs(r.inv_freq_long[i] - l_want) <= 3e-7 * l_want, "long %d: %g vs %g", i,
                      r.inv_freq_long[i], l_want);
        }
        CHECK(lmc_rope_table(&r, 1) == r.inv_freq && lmc_rope_table(&r, 64) == r.inv_freq);
        CHECK(lmc_rope_table(&r, 65) == r.inv_freq_long);
        lmc_rope_free(&r);
        CHECK(r.inv_freq == NULL && r.inv_freq_long == NULL);
    }
}

/* Parse json and build its rope table (status of whichever fails). */
static lmc_status rope_of(const char *json, lmc_rope *r) {
    lmc_model_config c;
    memset(r, 0, sizeof *r);
    lmc_status st = parse(json, &c);
    return st ? st : lmc_rope_init(&c, r);
}

static bool same_rope(const lmc_rope *a, const lmc_rope *b) {
    return a->n == b->n && a->n && a->attn_factor == b->attn_factor &&
           !memcmp(a->inv_freq, b->inv_freq, a->n * sizeof(float));
}

static void test_config(void) {
    lmc_model_config c;
    lmc_rope a, b;
    /* rope_parameters (transformers 5) and the legacy rope_scaling + "type"
     * spelling give the same table */
    CHECK(rope_of(HEAD "\"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 10000.0, "
                       "\"factor\": 4.0, \"original_max_position_embeddings\": 64}}",
                  &a) == LMC_OK);
    CHECK(rope_of(HEAD "\"rope_theta\": 10000.0, \"rope_scaling\": {\"type\": \"yarn\", "
                       "\"factor\": 4.0, \"original_max_position_embeddings\": 64}}",
                  &b) == LMC_OK);
    CHECK(same_rope(&a, &b));
    CHECK(fabs(a.attn_factor - (0.1 * log(4.0) + 1.0)) < 1e-6);
    /* with head_dim 32, theta 1e4, context 64 the ramp runs over dims
     * [0, 5]: dim 0 keeps its frequency, dims >= 5 are divided by 4 */
    CHECK(a.n == 16);
    CHECK(a.inv_freq[0] == 1.0f);
    for (size_t i = 5; i < a.n; i++) {
        double plain = pow(10000.0, -2.0 * (double)i / 32.0);
        CHECK_MSG(fabs(a.inv_freq[i] - plain / 4) <= 1e-6 * plain, "dim %zu: %g vs %g", i,
                  a.inv_freq[i], plain / 4);
    }
    for (size_t i = 1; i < 5; i++) /* blended: strictly between the two */
        CHECK(a.inv_freq[i] < (float)pow(10000.0, -2.0 * (double)i / 32.0) &&
              a.inv_freq[i] > (float)(pow(10000.0, -2.0 * (double)i / 32.0) / 4));
    lmc_rope_free(&b);
    /* factor null: max_position_embeddings / original (256 / 64) */
    CHECK(rope_of(HEAD "\"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 10000.0, "
                       "\"factor\": null, \"original_max_position_embeddings\": 64}}",
                  &b) == LMC_OK);
    CHECK(same_rope(&a, &b));
    lmc_rope_free(&b);
    /* a top-level original_max_position_embeddings wins */
    CHECK(rope_of(HEAD "\"original_max_position_embeddings\": 64, \"rope_parameters\": "
                       "{\"rope_type\": \"yarn\", \"rope_theta\": 10000.0, \"factor\": 4.0, "
                       "\"original_max_position_embeddings\": 128}}",
                  &b) == LMC_OK);
    CHECK(same_rope(&a, &b));
    lmc_rope_free(&b);
    /* without original_max_position_embeddings: max_position_embeddings */
    CHECK(parse(HEAD "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2.0}}", &c) ==
          LMC_OK);
    CHECK_EQ_INT(c.rope_original_max_position, 256);
    CHECK(c.rope_truncate && isnan(c.rope_attention_factor));
    lmc_rope_free(&a);
    /* explicit attention_factor; mscale pair; factor 1 leaves the plain table */
    CHECK(rope_of(HEAD "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 8.0, "
                       "\"attention_factor\": 0.5, \"mscale\": 1, \"mscale_all_dim\": 1}}",
                  &a) == LMC_OK);
    CHECK(a.attn_factor == 0.5f);
    lmc_rope_free(&a);
    CHECK(rope_of(HEAD "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 8.0, "
                       "\"mscale\": 0.5, \"mscale_all_dim\": 1}}",
                  &a) == LMC_OK);
    CHECK(fabs(a.attn_factor - (0.05 * log(8.0) + 1) / (0.1 * log(8.0) + 1)) < 1e-6);
    lmc_rope_free(&a);
    CHECK(rope_of(HEAD "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 8.0, "
                       "\"mscale\": 0.5}}",
                  &a) == LMC_OK); /* mscale alone: the plain mscale of factor */
    CHECK(fabs(a.attn_factor - (0.1 * log(8.0) + 1)) < 1e-6);
    lmc_rope_free(&a);
    CHECK(rope_of(HEAD "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 1.0}}", &a) ==
          LMC_OK);
    CHECK(a.attn_factor == 1.0f);
    for (size_t i = 0; i < a.n; i++) {
        double plain = pow(10000.0, -2.0 * (double)i / 32.0);
        CHECK(fabs(a.inv_freq[i] - plain) <= 2e-7 * plain);
    }
    lmc_rope_free(&a);

    /* bad parameters: config.json and the field are named */
    static const struct {
        const char *rs, *needle;
        lmc_status st;
    } bad[] = {
        {"{\"rope_type\": \"yarn\", \"factor\": -2.0}", "yarn rope factor must be positive",
         LMC_ERR_FORMAT},
        {"{\"rope_type\": \"yarn\", \"factor\": 0}", "yarn rope factor must be positive",
         LMC_ERR_FORMAT},
        {"{\"rope_type\": \"yarn\", \"original_max_position_embeddings\": 64}",
         "rope_scaling.factor is required for yarn", LMC_ERR_FORMAT},
        {"{\"rope_type\": \"yarn\", \"factor\": 4, \"original_max_position_embeddings\": 0}",
         "original_max_position_embeddings must be positive, got 0", LMC_ERR_FORMAT},
        {"{\"rope_type\": \"yarn\", \"factor\": 4, \"beta_fast\": 1, \"beta_slow\": 2}",
         "beta_fast (1) must be greater than beta_slow (2)", LMC_ERR_FORMAT},
        {"{\"rope_type\": \"yarn\", \"factor\": 4, \"beta_fast\": 2, \"beta_slow\": 2}",
         "beta_fast (2) must be greater than beta_slow (2)", LMC_ERR_FORMAT},
        {"{\"rope_type\": \"yarn\", \"factor\": 4, \"beta_slow\": -1}",
         "beta_slow (-1) must be positive", LMC_ERR_FORMAT},
        {"{\"rope_type\": \"yarn\", \"factor\": 4, \"attention_factor\": -1}",
         "attention_factor must be positive, got -1", LMC_ERR_FORMAT},
        {"{\"rope_type\": \"yarn\", \"factor\": 4, \"mscale\": 1, \"mscale_all_dim\": -100}",
         "attention factor from factor 4", LMC_ERR_FORMAT},
        {"{\"rope_type\": \"dynamic\", \"factor\": 2.0}", "rope type 'dynamic' is not supported",
         LMC_ERR_UNSUPPORTED},
        {"{\"rope_type\": \"longrope\", \"factor\": 2.0}",
         "rope_scaling.short_factor must be a list of numbers for longrope", LMC_ERR_FORMAT},
        {"{\"rope_type\": \"longrope\", \"short_factor\": [1, 1], \"long_factor\": [1]}",
         "short_factor and long_factor differ in length", LMC_ERR_FORMAT},
        {"{\"type\": \"su\", \"short_factor\": [1, 0], \"long_factor\": [1, 1]}",
         "rope_scaling.short_factor[1] must be a positive number", LMC_ERR_FORMAT},
        {"{\"rope_type\": \"longrope\", \"short_factor\": [], \"long_factor\": []}",
         "short_factor has 0 entries", LMC_ERR_FORMAT},
        {"{\"rope_type\": \"longrope\", \"short_factor\": [1, 1], \"long_factor\": [2, 2],"
         " \"attention_factor\": 0}",
         "longrope rope attention factor 0 is outside", LMC_ERR_FORMAT},
        {"{\"rope_type\": \"longrope\", \"short_factor\": [1, 1], \"long_factor\": [2, 2],"
         " \"factor\": -2}",
         "longrope rope factor must be positive", LMC_ERR_FORMAT},
        {"{\"rope_type\": \"longrope\", \"short_factor\": [1, 1, 1], \"long_factor\": [2, 2, 2]}",
         "longrope short_factor and long_factor have 3 entries", LMC_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char json[600];
        snprintf(json, sizeof json, HEAD "\"rope_scaling\": %s}", bad[i].rs);
        lmc_status st = rope_of(json, &a);
        const char *msg = lmc_last_error();
        CHECK_MSG(st == bad[i].st && strstr(msg, bad[i].needle) && strstr(msg, "config.json"),
                  "case %zu: status %d, \"%s\" (want \"%s\")", i, (int)st, msg, bad[i].needle);
        lmc_rope_free(&a);
    }
    CHECK_ERR(parse(HEAD "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4, "
                         "\"truncate\": \"no\"}}",
                    &c),
              LMC_ERR_FORMAT, "rope_scaling.truncate must be true or false");
    CHECK_ERR(parse(HEAD "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4, "
                         "\"beta_fast\": \"x\"}}",
                    &c),
              LMC_ERR_FORMAT, "rope_scaling.beta_fast must be a number");
    /* parsing keeps the unsupported types; the model's check names them */
    CHECK(parse(HEAD "\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2}}", &c) ==
          LMC_OK);
    CHECK_ERR(lmc_rope_check(&c), LMC_ERR_UNSUPPORTED, "rope type 'dynamic'");
    test_longrope_tables();
}

int main(void) {
    test_config();
    char gold[1024];
    snprintf(gold, sizeof gold, "%s/tests/golden/models", src_dir());
    if (!lmc_is_dir(gold)) CHECK_SKIP("no golden models in %s", gold);
    for (size_t i = 0; i < sizeof yarn_models / sizeof *yarn_models; i++) {
        char dir[1400];
        snprintf(dir, sizeof dir, "%s/%s", gold, yarn_models[i]);
        test_checkpoint(dir, yarn_models[i]);
    }
    return check_summary("test_yarn_parity");
}
