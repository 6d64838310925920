/* Loading a checkpoint directory as a model on a given device, for the
 * model tests that need more than the public API (raw forward, caches,
 * batched execution): config, weights, model; unload frees all three. */
#ifndef LMC_TEST_MODEL_LOAD_H
#define LMC_TEST_MODEL_LOAD_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/config.h"
#include "formats/safetensors.h"
#include "backend/backend.h"
#include "models/model.h"

typedef struct {
    lmc_model_config cfg;
    json_object *json;
    char *raw;
    lmc_st_set *w;
    lmc_model *m;
} test_model;

static lmc_status test_model_load(const char *dir, lmc_device dev, test_model *L) {
    memset(L, 0, sizeof *L);
    lmc_status st = lmc_config_load(dir, &L->cfg, &L->json, &L->raw);
    if (!st) st = lmc_st_set_open_dir(dir, &L->w);
    if (st) return st;
    lmc_loaded_model lm = {.config = &L->cfg, .config_json = L->json, .config_raw = L->raw,
                           .weights = L->w, .device = dev};
    return lmc_model_create(&lm, &L->m);
}

/* max - min of x[0..n) */
static inline double test_range(const float *x, size_t n) {
    float lo = x[0], hi = x[0];
    for (size_t i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    return (double)hi - lo;
}

/* max|a - ref| / range(ref); a NaN in a gives +inf */
static inline double test_rel_err(const float *a, const float *ref, size_t n) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= mx)) mx = isnan(d) ? INFINITY : d;
    }
    return mx / test_range(ref, n);
}

/* first index of the largest value */
static inline int32_t test_argmax(const float *x, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (int32_t)b;
}

static void test_model_unload(test_model *L) {
    lmc_model_free(L->m);
    lmc_st_set_free(L->w);
    if (L->json) json_object_put(L->json);
    free(L->raw);
}

#endif
