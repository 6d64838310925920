/* Sampler: exact top-p / top-k / min-p masks on a fixed distribution,
 * empirical draw frequencies under a seeded generator, processors
 * (logit bias, repetition penalty), reproducibility and argument checks. */
#include "check.h"
#include "lm/sampler.h"
#include "lmc.h"
#include <math.h>

#define V 8
/* A fixed distribution, deliberately not in sorted order by id. */
static const double P[V] = {0.12, 0.30, 0.04, 0.20, 0.10, 0.15, 0.01, 0.08};

static void fill_logits(float *x) {
    for (int i = 0; i < V; i++) x[i] = (float)log(P[i]) + 3.0f; /* shift: not normalised */
}

static unsigned mask_bits(const lmc_sampler_params *p) {
    lmc_sampler *s = NULL;
    CHECK(lmc_sampler_new(p, V, &s) == LMC_OK);
    if (!s) return 0;
    float lp[V];
    for (int i = 0; i < V; i++) lp[i] = (float)log(P[i]);
    bool keep[V];
    CHECK(lmc_sampler_mask(s, lp, keep) == LMC_OK);
    unsigned bits = 0;
    for (int i = 0; i < V; i++)
        if (keep[i]) bits |= 1u << i;
    lmc_sampler_free(s);
    return bits;
}

#define B(i) (1u << (i))

static void test_masks(void) {
    lmc_sampler_params p;
    lmc_sampler_params_default(&p);
    p.temperature = 1.0f;
    CHECK_EQ_INT(mask_bits(&p), 0xFF);
    /* sorted: id1 .30, id3 .20, id5 .15, id0 .12, id4 .10, id7 .08, id2 .04, id6 .01 */
    p.top_p = 0.45f; /* mass ahead: 0, .30, .50 -> keep ids 1,3 */
    CHECK_EQ_INT(mask_bits(&p), B(1) | B(3));
    p.top_p = 0.55f; /* .50 < .55 -> also id5; id0 has .65 ahead */
    CHECK_EQ_INT(mask_bits(&p), B(1) | B(3) | B(5));
    p.top_p = 0.9f; /* ahead of id7: .87 < .9 keep; id2: .95 drop */
    CHECK_EQ_INT(mask_bits(&p), B(1) | B(3) | B(5) | B(0) | B(4) | B(7));
    p.top_p = 0.01f; /* only the top token */
    CHECK_EQ_INT(mask_bits(&p), B(1));
    p.top_p = 1.0f;
    p.top_k = 3;
    CHECK_EQ_INT(mask_bits(&p), B(1) | B(3) | B(5));
    p.top_k = 1;
    CHECK_EQ_INT(mask_bits(&p), B(1));
    p.top_k = 100; /* larger than the vocabulary: no-op */
    CHECK_EQ_INT(mask_bits(&p), 0xFF);
    p.top_k = 0;
    p.min_p = 0.3f; /* p >= .09: .30 .20 .15 .12 .10 */
    CHECK_EQ_INT(mask_bits(&p), B(1) | B(3) | B(5) | B(0) | B(4));
    p.min_p = 0.9f; /* only the top token ... */
    CHECK_EQ_INT(mask_bits(&p), B(1));
    p.min_tokens_to_keep = 3; /* ... unless a floor keeps more */
    CHECK_EQ_INT(mask_bits(&p), B(1) | B(3) | B(5));
    p.min_tokens_to_keep = 1;
    /* intersection: top_k 5 and min_p .45 (p >= .135) and top_p .9 */
    p.min_p = 0.45f;
    p.top_k = 5;
    p.top_p = 0.9f;
    CHECK_EQ_INT(mask_bits(&p), B(1) | B(3) | B(5));
}

/* Draw N tokens and compare frequencies to the renormalised target. */
static void check_freq(const lmc_sampler_params *p, const double *want, const char *what) {
    lmc_sampler *s = NULL;
    CHECK(lmc_sampler_new(p, V, &s) == LMC_OK);
    if (!s) return;
    enum { N = 60000 };
    int count[V] = {0};
    for (int n = 0; n < N; n++) {
        float x[V];
        fill_logits(x);
        int32_t t = -1;
        float lp = 0;
        CHECK(lmc_sampler_sample(s, x, NULL, 0, &t, &lp) == LMC_OK);
        if (t < 0 || t >= V) {
            CHECK(0);
            break;
        }
        count[t]++;
        /* the reported logprob is the unmasked log-softmax */
        if (n == 0) CHECK_MSG(fabs(lp - log(P[t])) < 1e-5, "%s: logprob %g", what, lp);
    }
    for (int i = 0; i < V; i++) {
        double f = (double)count[i] / N;
        /* 5 sigma of a binomial proportion, at least 0.004 */
        double tol = 5 * sqrt(want[i] * (1 - want[i]) / N) + 0.004;
        CHECK_MSG(fabs(f - want[i]) <= tol, "%s: token %d freq %.4f want %.4f", what, i, f,
                  want[i]);
        if (want[i] == 0) CHECK_MSG(count[i] == 0, "%s: masked token %d drawn", what, i);
    }
    lmc_sampler_free(s);
}

static void test_frequencies(void) {
    lmc_sampler_params p;
    lmc_sampler_params_default(&p);
    p.temperature = 1.0f;
    p.seed = 1234;
    double want[V];
    for (int i = 0; i < V; i++) want[i] = P[i];
    check_freq(&p, want, "temp 1");

    /* temperature 0.5 squares the probabilities */
    p.temperature = 0.5f;
    double z = 0;
    for (int i = 0; i < V; i++) z += P[i] * P[i];
    for (int i = 0; i < V; i++) want[i] = P[i] * P[i] / z;
    check_freq(&p, want, "temp 0.5");

    p.temperature = 1.0f;
    p.top_k = 3; /* ids 1,3,5 renormalised over .65 */
    for (int i = 0; i < V; i++) want[i] = 0;
    want[1] = .30 / .65, want[3] = .20 / .65, want[5] = .15 / .65;
    check_freq(&p, want, "top_k 3");

    p.top_k = 0;
    p.top_p = 0.45f; /* ids 1,3 */
    for (int i = 0; i < V; i++) want[i] = 0;
    want[1] = .6, want[3] = .4;
    check_freq(&p, want, "top_p .45");

    p.top_p = 1.0f;
    p.min_p = 0.3f; /* ids 1,3,5,0,4 over .87 */
    for (int i = 0; i < V; i++) want[i] = (P[i] >= 0.09) ? P[i] / .87 : 0;
    check_freq(&p, want, "min_p .3");
}

static void test_greedy_and_processors(void) {
    lmc_sampler_params p;
    lmc_sampler_params_default(&p);
    lmc_sampler *s = NULL;
    CHECK(lmc_sampler_new(&p, V, &s) == LMC_OK);
    float x[V];
    fill_logits(x);
    int32_t t;
    float lp;
    CHECK(lmc_sampler_sample(s, x, NULL, 0, &t, &lp) == LMC_OK);
    CHECK_EQ_INT(t, 1);
    CHECK(fabs(lp - log(0.30)) < 1e-5);
    lmc_sampler_free(s);

    /* logit bias: +log(.30/.20)+0.01 on id 3 makes it the argmax */
    int32_t bid[1] = {3};
    float bval[1] = {(float)log(1.5) + 0.01f};
    p.logit_bias_ids = bid;
    p.logit_bias_values = bval;
    p.n_logit_bias = 1;
    CHECK(lmc_sampler_new(&p, V, &s) == LMC_OK);
    fill_logits(x);
    CHECK(lmc_sampler_sample(s, x, NULL, 0, &t, NULL) == LMC_OK);
    CHECK_EQ_INT(t, 3);
    lmc_sampler_free(s);
    p.n_logit_bias = 0;

    /* repetition penalty: positive logits divided, negative multiplied,
     * only within the context window, once per distinct token */
    p.repetition_penalty = 2.0f;
    p.repetition_context_size = 2;
    CHECK(lmc_sampler_new(&p, V, &s) == LMC_OK);
    float raw[V] = {1.0f, 4.0f, -1.0f, 3.0f, 0.5f, 0.0f, -2.0f, 2.0f};
    memcpy(x, raw, sizeof x);
    int32_t recent[4] = {1, 2, 1, 1}; /* window = last two: {1} only */
    CHECK(lmc_sampler_sample(s, x, recent, 4, &t, NULL) == LMC_OK);
    CHECK_EQ_INT(t, 3); /* 4/2 = 2 < 3 */
    /* verify the processed distribution exactly via the logprobs left in x */
    float pr[V];
    memcpy(pr, raw, sizeof pr);
    pr[1] = 2.0f;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp(pr[i]);
    for (int i = 0; i < V; i++)
        CHECK_MSG(fabs(x[i] - (pr[i] - log(sum))) < 1e-5, "penalised logprob %d", i);
    int32_t recent2[2] = {2, 2}; /* negative logit: multiplied once */
    memcpy(x, raw, sizeof x);
    CHECK(lmc_sampler_sample(s, x, recent2, 2, &t, NULL) == LMC_OK);
    memcpy(pr, raw, sizeof pr);
    pr[2] = -2.0f;
    sum = 0;
    for (int i = 0; i < V; i++) sum += exp(pr[i]);
    CHECK(fabs(x[2] - (pr[2] - log(sum))) < 1e-5);
    lmc_sampler_free(s);
    p.repetition_penalty = 1.0f;

    /* presence and frequency penalties: a token seen c times in the last
     * penalty_context_size tokens loses presence + c * frequency, once */
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.75f;
    p.penalty_context_size = 5;
    CHECK(lmc_sampler_new(&p, V, &s) == LMC_OK);
    int32_t recent3[7] = {3, 3, 1, 3, 7, 1, 3}; /* last 5: 1 x2, 3 x2, 7 x1 */
    memcpy(x, raw, sizeof x);
    CHECK(lmc_sampler_sample(s, x, recent3, 7, &t, NULL) == LMC_OK);
    memcpy(pr, raw, sizeof pr);
    pr[3] -= 0.5f + 2 * 0.75f;
    pr[1] -= 0.5f + 2 * 0.75f;
    pr[7] -= 0.5f + 0.75f;
    sum = 0;
    for (int i = 0; i < V; i++) sum += exp(pr[i]);
    for (int i = 0; i < V; i++)
        CHECK_MSG(fabs(x[i] - (pr[i] - log(sum))) < 1e-5, "count-penalised logprob %d", i);
    CHECK_EQ_INT(t, 1); /* 4 - 2 = 2 beats 3 - 2 = 1 and 2 - 1.25 */
    CHECK(!lmc_sampler_is_greedy(s));
    lmc_sampler_free(s);
    /* negative values favour repeats: a window of one sees only id 2 */
    p.presence_penalty = -3.0f;
    p.frequency_penalty = 0.0f;
    p.penalty_context_size = 1;
    CHECK(lmc_sampler_new(&p, V, &s) == LMC_OK);
    memcpy(x, raw, sizeof x);
    CHECK(lmc_sampler_sample(s, x, recent2, 2, &t, NULL) == LMC_OK);
    CHECK_EQ_INT(t, 1); /* id 2: -1 + 3 = 2 < 4 */
    memcpy(x, raw, sizeof x);
    x[1] = 1.0f;
    CHECK(lmc_sampler_sample(s, x, recent2, 2, &t, NULL) == LMC_OK);
    CHECK_EQ_INT(t, 3); /* id 2 at 2 still below 3 */
    lmc_sampler_free(s);
    p.presence_penalty = NAN;
    CHECK_ERR(lmc_sampler_new(&p, V, &s), LMC_ERR_INVALID_ARG, "must be finite");
    p.presence_penalty = 0.0f;
    p.penalty_context_size = -1;
    CHECK_ERR(lmc_sampler_new(&p, V, &s), LMC_ERR_INVALID_ARG, "penalty_context_size");
    p.penalty_context_size = 20;
}

static void test_reproducible(void) {
    lmc_sampler_params p;
    lmc_sampler_params_default(&p);
    p.temperature = 1.0f;
    p.seed = 42;
    int32_t a[64], b[64], c[64];
    for (int run = 0; run < 3; run++) {
        if (run == 2) p.seed = 43;
        lmc_sampler *s = NULL;
        CHECK(lmc_sampler_new(&p, V, &s) == LMC_OK);
        if (!s) return;
        for (int i = 0; i < 64; i++) {
            float x[V];
            fill_logits(x);
            int32_t *dst = run == 0 ? a : run == 1 ? b : c;
            CHECK(lmc_sampler_sample(s, x, NULL, 0, &dst[i], NULL) == LMC_OK);
        }
        lmc_sampler_free(s);
    }
    CHECK(!memcmp(a, b, sizeof a));
    CHECK(memcmp(a, c, sizeof a) != 0);

    /* the generator itself: splitmix-seeded xoshiro256** is deterministic */
    lmc_rng r;
    lmc_rng_seed(&r, 0);
    uint64_t first = lmc_rng_next(&r);
    lmc_rng_seed(&r, 0);
    CHECK(first == lmc_rng_next(&r));
    double u = lmc_rng_uniform(&r);
    CHECK(u >= 0 && u < 1);
}

static void test_top_n(void) {
    float lp[V];
    for (int i = 0; i < V; i++) lp[i] = (float)log(P[i]);
    int32_t ids[3];
    float vals[3];
    lmc_top_n(lp, V, 3, ids, vals);
    CHECK_EQ_INT(ids[0], 1);
    CHECK_EQ_INT(ids[1], 3);
    CHECK_EQ_INT(ids[2], 5);
    CHECK(vals[0] == lp[1] && vals[2] == lp[5]);
}

static void test_errors(void) {
    lmc_sampler_params p;
    lmc_sampler *s = NULL;
    lmc_sampler_params_default(&p);
    p.temperature = -1;
    CHECK_ERR(lmc_sampler_new(&p, V, &s), LMC_ERR_INVALID_ARG, "temperature");
    lmc_sampler_params_default(&p);
    p.top_p = 1.5f;
    CHECK_ERR(lmc_sampler_new(&p, V, &s), LMC_ERR_INVALID_ARG, "top_p");
    lmc_sampler_params_default(&p);
    p.min_p = -0.1f;
    CHECK_ERR(lmc_sampler_new(&p, V, &s), LMC_ERR_INVALID_ARG, "min_p");
    lmc_sampler_params_default(&p);
    p.top_k = -2;
    CHECK_ERR(lmc_sampler_new(&p, V, &s), LMC_ERR_INVALID_ARG, "top_k");
    lmc_sampler_params_default(&p);
    int32_t bid[1] = {V};
    float bval[1] = {1};
    p.logit_bias_ids = bid;
    p.logit_bias_values = bval;
    p.n_logit_bias = 1;
    CHECK_ERR(lmc_sampler_new(&p, V, &s), LMC_ERR_INVALID_ARG, "outside vocabulary");
    lmc_sampler_params_default(&p);
    p.top_logprobs = 1000;
    CHECK_ERR(lmc_sampler_new(&p, V, &s), LMC_ERR_INVALID_ARG, "top_logprobs");
    CHECK(s == NULL);
    /* every token masked out by bias: a clear error, not a bogus token */
    lmc_sampler_params_default(&p);
    p.temperature = 1;
    int32_t all[V];
    float ninf[V];
    for (int i = 0; i < V; i++) all[i] = i, ninf[i] = -INFINITY;
    p.logit_bias_ids = all;
    p.logit_bias_values = ninf;
    p.n_logit_bias = V;
    CHECK(lmc_sampler_new(&p, V, &s) == LMC_OK);
    float x[V];
    fill_logits(x);
    int32_t t;
    CHECK_ERR(lmc_sampler_sample(s, x, NULL, 0, &t, NULL), LMC_ERR_INVALID_ARG, "no token");
    lmc_sampler_free(s);
}

/* Large vocabulary with a wide spread: the sampler's masks equal a
 * brute-force reference (full sort, mass accumulated in rank order). */
static int cmp_idx_desc(const void *a, const void *b, void *ctx) {
    const float *v = ctx;
    int i = *(const int *)a, j = *(const int *)b;
    if (v[i] > v[j]) return -1;
    if (v[i] < v[j]) return 1;
    return (i > j) - (i < j);
}

static void test_large_vocab_masks(void) {
    enum { NV = 20000 };
    static float lp[NV];
    static int idx[NV];
    static bool keep[NV], want[NV];
    lmc_rng r;
    lmc_rng_seed(&r, 5);
    double z = 0;
    for (int i = 0; i < NV; i++) {
        /* heavy spread so most tokens sit far below the best */
        double u = lmc_rng_uniform(&r);
        lp[i] = (float)(-60.0 * u * u);
        z += exp(lp[i]);
    }
    for (int i = 0; i < NV; i++) lp[i] -= (float)log(z);
    for (int i = 0; i < NV; i++) idx[i] = i;
    qsort_r(idx, NV, sizeof idx[0], cmp_idx_desc, lp);
    const struct {
        float top_p, min_p;
        int top_k, floor;
    } cases[] = {{0.5f, 0, 0, 1},  {0.95f, 0, 0, 1}, {0.9999f, 0, 0, 1}, {1.0f, 0, 40, 1},
                 {1.0f, 0, 9000, 1}, {1.0f, 0.01f, 0, 1}, {1.0f, 1e-20f, 0, 1},
                 {1.0f, 0.5f, 0, 3000}, {0.8f, 0.001f, 100, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        lmc_sampler_params p;
        lmc_sampler_params_default(&p);
        p.temperature = 1;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        p.top_k = cases[c].top_k;
        p.min_tokens_to_keep = cases[c].floor;
        lmc_sampler *s = NULL;
        CHECK(lmc_sampler_new(&p, NV, &s) == LMC_OK);
        if (!s) continue;
        CHECK(lmc_sampler_mask(s, lp, keep) == LMC_OK);
        double mass = 0;
        float cut = p.min_p > 0 ? lp[idx[0]] + logf(p.min_p) : -INFINITY;
        for (int rnk = 0; rnk < NV; rnk++) {
            int t = idx[rnk];
            bool k = true;
            if (p.top_p < 1 && !(mass < p.top_p)) k = false;
            if (p.top_k > 0 && rnk >= p.top_k) k = false;
            if (p.min_p > 0 && lp[t] < cut && rnk >= p.min_tokens_to_keep) k = false;
            want[t] = k;
            mass += exp((double)lp[t]);
        }
        int diff = 0, kept = 0;
        for (int i = 0; i < NV; i++) {
            diff += keep[i] != want[i];
            kept += keep[i];
        }
        CHECK_MSG(diff == 0, "case %zu: %d mask differences (%d kept)", c, diff, kept);
        lmc_sampler_free(s);
    }
}

int main(void) {
    test_masks();
    test_frequencies();
    test_greedy_and_processors();
    test_reproducible();
    test_top_n();
    test_errors();
    test_large_vocab_masks();
    return check_summary("test_sampler");
}
