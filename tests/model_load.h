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
#include "numeric.h"

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

static void test_model_unload(test_model *L) {
    lmc_model_free(L->m);
    lmc_st_set_free(L->w);
    if (L->json) json_object_put(L->json);
    free(L->raw);
}

#endif
