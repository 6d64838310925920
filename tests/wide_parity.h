/* The realistic-width parity check shared by the CPU test
 * (tests/models/test_wide_parity.c) and the CUDA one
 * (tests/cuda/test_cuda_wide_parity.c): for every recipe in
 * tests/golden/wide and every checkpoint dtype (fp32, fp16, bf16), the
 * checkpoint is written to a scratch directory and run on the device:
 *  - logits of a 2,100-token prompt (longer than one 2,048-row prefill
 *    chunk) at positions 1000, 2047, 2048 and 2099, in one call with all
 *    rows returned, against transformers in fp32;
 *  - the prompt's last logits through the single-row path;
 *  - the greedy continuation (8 steps after the long prompt, 16 after a
 *    31-token one), teacher-forced: the reference's token wherever its
 *    top-1 margin is clear of the measured logit error, and the top-5
 *    log-probabilities' error;
 *  - a device that does not run a recipe's architecture or features must
 *    refuse it by name (LMC_ERR_UNSUPPORTED) unless the caller lists the
 *    recipe as required. */
#ifndef LMC_TEST_WIDE_PARITY_H
#define LMC_TEST_WIDE_PARITY_H
#include <dirent.h>

#include "check.h"
#include "model_load.h"
#include "formats/config.h"
#include "backend/backend.h"
#include "models/model.h"
#include "scratch.h"
#include "wide_model.h"

#define WIDE_MAXPOS 8
#define WIDE_MAXGEN 32

typedef struct {
    int32_t *prompt, *shortp;
    size_t n_prompt, n_short, n_pos;
    size_t pos[WIDE_MAXPOS];
    float *logits[WIDE_MAXPOS], *short_logits;
    int32_t greedy[WIDE_MAXGEN], short_greedy[WIDE_MAXGEN];
    float margins[WIDE_MAXGEN], short_margins[WIDE_MAXGEN];
    int32_t top5_id[WIDE_MAXGEN][5], stop5_id[WIDE_MAXGEN][5];
    float top5_lp[WIDE_MAXGEN][5], stop5_lp[WIDE_MAXGEN][5];
    size_t n_greedy, n_short_greedy;
    size_t vocab;
} wide_golden;

static int32_t *wide_ints_(json_object *o, const char *k, size_t *n) {
    json_object *a = lmc_json_get(o, k);
    *n = a ? json_object_array_length(a) : 0;
    int32_t *v = calloc(*n ? *n : 1, sizeof *v);
    for (size_t i = 0; i < *n; i++) v[i] = json_object_get_int(json_object_array_get_idx(a, i));
    return v;
}

static float *wide_floats_(json_object *a, size_t *n) {
    *n = a ? json_object_array_length(a) : 0;
    float *v = calloc(*n ? *n : 1, sizeof *v);
    for (size_t i = 0; i < *n; i++)
        v[i] = (float)json_object_get_double(json_object_array_get_idx(a, i));
    return v;
}

static void wide_steps_(json_object *o, const char *tk, const char *mk, const char *t5k,
                        int32_t *toks, float *margins, int32_t (*ids)[5], float (*lps)[5],
                        size_t *n) {
    size_t nt;
    int32_t *t = wide_ints_(o, tk, &nt);
    if (nt > WIDE_MAXGEN) nt = WIDE_MAXGEN;
    memcpy(toks, t, nt * sizeof *t);
    free(t);
    size_t nm;
    float *m = wide_floats_(lmc_json_get(o, mk), &nm);
    for (size_t i = 0; i < nt; i++) margins[i] = i < nm ? m[i] : 0.f;
    free(m);
    json_object *t5 = lmc_json_get(o, t5k);
    for (size_t i = 0; i < nt; i++)
        for (size_t j = 0; j < 5; j++) {
            json_object *e = json_object_array_get_idx(json_object_array_get_idx(t5, i), j);
            ids[i][j] = json_object_get_int(json_object_array_get_idx(e, 0));
            lps[i][j] = (float)json_object_get_double(json_object_array_get_idx(e, 1));
        }
    *n = nt;
}

static bool wide_golden_read(json_object *o, wide_golden *g) {
    memset(g, 0, sizeof *g);
    g->prompt = wide_ints_(o, "prompt", &g->n_prompt);
    g->shortp = wide_ints_(o, "short", &g->n_short);
    json_object *pos = lmc_json_get(o, "positions"), *lg = lmc_json_get(o, "logits");
    g->n_pos = pos ? json_object_array_length(pos) : 0;
    if (g->n_pos > WIDE_MAXPOS) return false;
    for (size_t i = 0; i < g->n_pos; i++) {
        g->pos[i] = (size_t)json_object_get_int(json_object_array_get_idx(pos, i));
        size_t n;
        g->logits[i] = wide_floats_(json_object_array_get_idx(lg, i), &n);
        if (i == 0) g->vocab = n;
        if (n != g->vocab || g->pos[i] >= g->n_prompt) return false;
    }
    size_t ns;
    g->short_logits = wide_floats_(lmc_json_get(o, "short_logits"), &ns);
    wide_steps_(o, "greedy", "margins", "top5", g->greedy, g->margins, g->top5_id, g->top5_lp,
                &g->n_greedy);
    wide_steps_(o, "short_greedy", "short_margins", "short_top5", g->short_greedy,
                g->short_margins, g->stop5_id, g->stop5_lp, &g->n_short_greedy);
    return g->vocab > 0 && ns == g->vocab && g->n_pos > 0 && g->n_greedy > 0 &&
           g->pos[g->n_pos - 1] == g->n_prompt - 1;
}

static void wide_golden_free(wide_golden *g) {
    free(g->prompt);
    free(g->shortp);
    for (size_t i = 0; i < g->n_pos; i++) free(g->logits[i]);
    free(g->short_logits);
}

/* Teacher-forced greedy steps from logits `lg` (the prompt's last row):
 * each step feeds the reference's token, so every step has the
 * reference's history; a step whose reference top-1 margin exceeds
 * `clear` must pick the reference's token. Returns the largest error of
 * the reference's top-5 log-probabilities, which must stay within `lp_tol`. */
static void wide_greedy_(const char *name, lmc_model *m, lmc_kv_cache *c, float *lg, size_t V,
                         const int32_t *want, const float *margins, int32_t (*ids)[5],
                         float (*lps)[5], size_t n, double clear, double lp_tol) {
    double worst = 0;
    size_t agree = 0, checked = 0;
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < 5; j++) {
            double lp = test_logprob(lg, V, (size_t)ids[i][j]);
            double d = fabs(lp - lps[i][j]);
            if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
        }
        int32_t t = test_argmax(lg, V);
        if (margins[i] > clear) {
            checked++;
            agree += t == want[i];
            CHECK_MSG(t == want[i], "%s: step %zu picks %d, the reference %d (margin %g > %g)",
                      name, i, t, want[i], margins[i], clear);
        }
        int32_t feed = want[i];
        if (lmc_model_forward(m, c, &feed, 1, lg, false)) {
            CHECK_MSG(0, "%s: decode step %zu: %s", name, i, lmc_last_error());
            break;
        }
    }
    CHECK_MSG(worst <= lp_tol, "%s: top-5 log-probability error %.3g > %.3g", name, worst, lp_tol);
    printf("  %-28s greedy: %zu/%zu clear steps agree (of %zu), top-5 logprob err %.3g\n", name,
           agree, checked, n, worst);
}


/* One checkpoint: tol is max|Δlogit| / range for every compared row. */
static void wide_check_one(const char *name, const char *dir, const wide_golden *g,
                           lmc_device dev, double tol, bool required) {
    test_model L;
    lmc_status st = test_model_load(dir, dev, &L);
    if (st == LMC_ERR_UNSUPPORTED && !required) {
        printf("  %-28s refused: %s\n", name, lmc_last_error());
        CHECK_MSG(strlen(lmc_last_error()) > 10, "%s: refusal without a reason", name);
        test_model_unload(&L);
        return;
    }
    CHECK_MSG(!st, "%s: load: %s", name, lmc_last_error());
    if (st) {
        test_model_unload(&L);
        return;
    }
    size_t V = g->vocab, n = g->n_prompt;
    CHECK_EQ_INT(lmc_model_vocab(L.m), V);
    float *all = malloc(n * V * sizeof *all), *lg = malloc(V * sizeof *lg);
    lmc_kv_cache *c = NULL;
    CHECK(!lmc_kv_cache_new(L.m, &c));
    /* every row of the long prompt in one call */
    st = lmc_model_forward(L.m, c, g->prompt, n, all, true);
    CHECK_MSG(!st, "%s: long prefill: %s", name, lmc_last_error());
    double worst = 0;
    for (size_t i = 0; !st && i < g->n_pos; i++) {
        double e = test_rel_err(all + g->pos[i] * V, g->logits[i], V);
        CHECK_MSG(e <= tol, "%s: logits at position %zu: err %.3e > %.1e", name, g->pos[i], e,
                  tol);
        if (!(e <= worst)) worst = e;
    }
    printf("  %-28s long prompt (%zu tokens) logits err %.3e at %zu positions\n", name, n, worst,
           g->n_pos);
    const float *last = g->logits[g->n_pos - 1];
    double range = test_range(last, V);
    /* the single-row path, then greedy from it */
    lmc_kv_cache_clear(c);
    st = lmc_model_forward(L.m, c, g->prompt, n, lg, false);
    double e = st ? INFINITY : test_rel_err(lg, last, V);
    CHECK_MSG(e <= tol, "%s: last logits (single row) err %.3e", name, e);
    /* a step can flip only where the margin is within twice the logit
     * error; 1.5 times that allows for the error growing over the steps */
    if (!st)
        wide_greedy_(name, L.m, c, lg, V, g->greedy, g->margins, (int32_t(*)[5])g->top5_id,
                     (float(*)[5])g->top5_lp, g->n_greedy, 3 * e * range + 1e-6,
                     4 * tol * range);
    /* the short prompt */
    lmc_kv_cache_clear(c);
    st = lmc_model_forward(L.m, c, g->shortp, g->n_short, lg, false);
    e = st ? INFINITY : test_rel_err(lg, g->short_logits, V);
    CHECK_MSG(e <= tol, "%s: short prompt logits err %.3e", name, e);
    printf("  %-28s short prompt logits err %.3e\n", name, e);
    double srange = test_range(g->short_logits, V);
    if (!st)
        wide_greedy_(name, L.m, c, lg, V, g->short_greedy, g->short_margins,
                     (int32_t(*)[5])g->stop5_id, (float(*)[5])g->stop5_lp, g->n_short_greedy,
                     3 * e * srange + 1e-6, 4 * tol * srange);
    lmc_kv_cache_free(c);
    free(all);
    free(lg);
    test_model_unload(&L);
}

/* Every recipe in tests/golden/wide, in fp32, fp16 and bf16, with the
 * tolerance of each dtype (tol[0..2]); `required` lists the recipes
 * (directory names: the model_type, or a variant such as phi3_partial)
 * the device must run (others may be refused by name). Returns the number
 * of checkpoints checked; *recipes (when not NULL) gets the number of
 * recipe directories. */
static int wide_check_all(const char *tag, lmc_device dev, double tol_f32, double tol_f16,
                          double tol_bf16, const char *const *required, int *recipes) {
    const char *src = getenv("LMC_SOURCE_DIR");
    char root[1024];
    snprintf(root, sizeof root, "%s/tests/golden/wide", src ? src : ".");
    DIR *d = opendir(root);
    CHECK_MSG(d != NULL, "no recipes in %s", root);
    if (!d) return 0;
    const char *scratch = scratch_root(tag);
    struct dirent *de;
    int seen = 0;
    if (recipes) *recipes = 0;
    static const lmc_dtype dts[] = {LMC_DT_F32, LMC_DT_F16, LMC_DT_BF16};
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char dir[1400], gp[1500];
        snprintf(dir, sizeof dir, "%s/%s", root, de->d_name);
        if (!lmc_is_dir(dir)) continue;
        if (recipes) (*recipes)++;
        snprintf(gp, sizeof gp, "%s/golden.json", dir);
        json_object *o = NULL;
        lmc_status st = lmc_json_load_file(gp, "golden.json", 1 << 26, &o, NULL);
        CHECK_MSG(!st, "%s: %s", gp, lmc_last_error());
        if (st) continue;
        wide_golden g;
        bool ok = wide_golden_read(o, &g);
        CHECK_MSG(ok, "%s: incomplete golden", gp);
        bool req = false;
        for (size_t i = 0; required && required[i]; i++) req |= !strcmp(required[i], de->d_name);
        for (size_t k = 0; ok && k < 3; k++) {
            char name[300], out[1800];
            snprintf(name, sizeof name, "%s-%s", de->d_name, wide_dtype_name(dts[k]));
            snprintf(out, sizeof out, "%s/%s", scratch, name);
            st = wide_build(dir, o, dts[k], out);
            CHECK_MSG(!st, "%s: building the checkpoint: %s", name, lmc_last_error());
            if (st) continue;
            double tol = dts[k] == LMC_DT_BF16 ? tol_bf16 : dts[k] == LMC_DT_F16 ? tol_f16 : tol_f32;
            wide_check_one(name, out, &g, dev, tol, req);
            scratch_rm_tree(out);
            seen++;
        }
        wide_golden_free(&g);
        json_object_put(o);
    }
    closedir(d);
    return seen;
}

#endif
