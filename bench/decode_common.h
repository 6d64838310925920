/* Shared by bench/decode.c and bench/prefill.c: load a model directory on
 * the CUDA device and make reproducible token ids. */
#ifndef LMC_BENCH_DECODE_COMMON_H
#define LMC_BENCH_DECODE_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/cuda/cuda.h"
#include "bench_median.h"
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
} bench_model;

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline int bench_load(const char *dir, bench_model *b) {
    lmc_status st = lmc_config_load(dir, &b->cfg, &b->json, &b->raw);
    if (!st) st = lmc_st_set_open_dir(dir, &b->w);
    if (!st) {
        lmc_loaded_model lm = {.config = &b->cfg, .config_json = b->json,
                               .config_raw = b->raw, .weights = b->w,
                               .device = LMC_DEVICE_CUDA};
        st = lmc_model_create(&lm, &b->m);
    }
    if (st) {
        fprintf(stderr, "%s: %s\n", dir, lmc_last_error());
        return 1;
    }
    return 0;
}

static inline void bench_unload(bench_model *b) {
    lmc_model_free(b->m);
    lmc_st_set_free(b->w);
    if (b->json) json_object_put(b->json);
    free(b->raw);
}

/* Deterministic ids in [10, vocab) (never zeros: real-data-like rows). */
static inline void bench_ids(int32_t *ids, size_t n, int64_t vocab, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        ids[i] = (int32_t)(10 + (s >> 8) % (uint32_t)(vocab - 10));
    }
}

#endif
