/* Test helper shared by the llama-family model tests: the golden.json that
 * tests/oracle scripts write next to each tiny checkpoint (prompt, greedy
 * continuation with its reference margins, last-position and full-sequence
 * logits, dtype), and loading a checkpoint directory as a CPU model. */
#ifndef LMC_TESTS_MODELS_MODEL_GOLDEN_H
#define LMC_TESTS_MODELS_MODEL_GOLDEN_H
#include "base/json.h"
#include "formats/config.h"
#include "formats/safetensors.h"
#include "backend/backend.h"
#include "models/model.h"
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOK 128

typedef struct {
    char name[64];
    int32_t prompt[MAX_TOK], greedy[MAX_TOK];
    float margins[MAX_TOK];
    size_t n_prompt, n_greedy, n_margins;
    float *logits, *full_logits;
    size_t vocab;
    bool half; /* bf16 or fp16: the reference computed in that dtype */
} golden;

static inline const char *src_dir(void) {
    const char *s = getenv("LMC_SOURCE_DIR");
    return s ? s : ".";
}

static inline size_t read_ints(json_object *o, const char *key, int32_t *dst, size_t cap) {
    json_object *a = lmc_json_get(o, key);
    size_t n = a ? json_object_array_length(a) : 0;
    if (n > cap) n = cap;
    for (size_t i = 0; i < n; i++) dst[i] = (int32_t)json_object_get_int(json_object_array_get_idx(a, i));
    return n;
}

static inline float *read_floats(json_object *o, const char *key, size_t *n_out) {
    json_object *a = lmc_json_get(o, key);
    size_t n = a ? json_object_array_length(a) : 0;
    float *f = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        f[i] = (float)json_object_get_double(json_object_array_get_idx(a, i));
    *n_out = n;
    return f;
}

/* dir/golden.json; false when unreadable or when the logits are missing or
 * of unequal lengths. */
static inline bool load_golden(const char *dir, const char *name, golden *g) {
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    char path[1500];
    snprintf(path, sizeof path, "%s/golden.json", dir);
    json_object *o = NULL;
    if (lmc_json_load_file(path, "golden.json", 1 << 24, &o, NULL)) return false;
    g->n_prompt = read_ints(o, "prompt", g->prompt, MAX_TOK);
    g->n_greedy = read_ints(o, "greedy", g->greedy, MAX_TOK);
    size_t nf = 0;
    float *m = read_floats(o, "margins", &g->n_margins);
    for (size_t i = 0; i < g->n_margins && i < MAX_TOK; i++) g->margins[i] = m[i];
    free(m);
    g->logits = read_floats(o, "logits", &g->vocab);
    g->full_logits = read_floats(o, "full_logits", &nf);
    const char *dt = lmc_json_str(o, "dtype", NULL);
    g->half = dt && (!strcmp(dt, "bf16") || !strcmp(dt, "fp16"));
    json_object_put(o);
    return g->vocab > 0 && nf == g->vocab && g->n_prompt > 0;
}

/* max|a - ref| / range(ref) over n values (NaN in a fails any bound). */
static inline double golden_rel_err(const float *a, const float *ref, size_t n) {
    double mx = 0, lo = ref[0], hi = ref[0];
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= mx)) mx = d;
        if (ref[i] < lo) lo = ref[i];
        if (ref[i] > hi) hi = ref[i];
    }
    return mx / (hi - lo);
}

static inline int32_t golden_argmax(const float *x, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (int32_t)b;
}

static inline void golden_free(golden *g) {
    free(g->logits);
    free(g->full_logits);
    g->logits = g->full_logits = NULL;
}

typedef struct {
    lmc_model_config cfg;
    json_object *cfg_json;
    char *raw;
    lmc_st_set *weights;
    lmc_model *model;
} loaded;

static inline void unload(loaded *L) {
    lmc_model_free(L->model);
    lmc_st_set_free(L->weights);
    if (L->cfg_json) json_object_put(L->cfg_json);
    free(L->raw);
    memset(L, 0, sizeof *L);
}

/* Load the checkpoint in dir on the CPU; `edit` (optional) changes the
 * parsed config first. On failure nothing stays held (L is zeroed). */
static inline lmc_status load_model(const char *dir, loaded *L,
                                    void (*edit)(lmc_model_config *)) {
    memset(L, 0, sizeof *L);
    lmc_status st = lmc_config_load(dir, &L->cfg, &L->cfg_json, &L->raw);
    if (!st) st = lmc_st_set_open_dir(dir, &L->weights);
    if (!st) {
        if (edit) edit(&L->cfg);
        lmc_loaded_model lm = {.config = &L->cfg, .config_json = L->cfg_json,
                               .config_raw = L->raw, .weights = L->weights,
                               .device = LMC_DEVICE_CPU};
        st = lmc_model_create(&lm, &L->model);
    }
    if (st) unload(L); /* the error message stays with lmc_last_error */
    return st;
}

/* The golden and the CPU model of checkpoint `name` in dir; false (after
 * recording a failed check) when either cannot be read. */
static inline bool open_checkpoint(const char *dir, const char *name, golden *g, loaded *L) {
    if (!load_golden(dir, name, g)) {
        CHECK_MSG(0, "%s: unreadable golden.json", name);
        return false;
    }
    lmc_status st = load_model(dir, L, NULL);
    CHECK_MSG(st == LMC_OK, "%s: load: %s", name, lmc_last_error());
    if (st) {
        unload(L);
        golden_free(g);
        return false;
    }
    return true;
}

#endif
