/* Realistic-width test checkpoints, written at test time from the recipe in
 * tests/golden/wide/<name>/golden.json (see tests/oracle/make_wide_models.py,
 * which made the reference with transformers from the same numbers).
 *
 * Committing fp32/fp16/bf16 copies of six ~10 MB checkpoints would bloat the
 * repository; instead each weight is center + (k - half) * 2^exp with k from
 * splitmix64(seed << 48 | index << 36 | element). Every such value is exact
 * in all three dtypes, so the three checkpoints hold the same numbers and
 * share one fp32 reference. The recorded sum and sum of squares of every
 * tensor catch a generator that no longer matches the script's. */
#ifndef LMC_TEST_WIDE_MODEL_H
#define LMC_TEST_WIDE_MODEL_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "formats/safetensors.h"

static uint64_t wide_splitmix_(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* dtype names as config.json spells them */
static const char *wide_dtype_name(lmc_dtype dt) {
    return dt == LMC_DT_BF16 ? "bfloat16" : dt == LMC_DT_F16 ? "float16" : "float32";
}

/* Replace every "float32" in the committed config.json with the dtype. */
static lmc_status wide_write_config(const char *src_dir, const char *dst_dir, lmc_dtype dt) {
    char *p = lmc_path_join(src_dir, "config.json");
    char *text = NULL;
    size_t n = 0;
    lmc_status st = lmc_read_file(p, "config.json", 1 << 20, &text, &n);
    free(p);
    if (st) return st;
    const char *name = wide_dtype_name(dt);
    char *out = malloc(2 * n + 64);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (!strncmp(text + i, "\"float32\"", 9)) {
            o += (size_t)sprintf(out + o, "\"%s\"", name);
            i += 9;
        } else
            out[o++] = text[i++];
    }
    free(text);
    p = lmc_path_join(dst_dir, "config.json");
    st = lmc_write_file_atomic(p, out, o);
    free(p);
    free(out);
    return st;
}

/* Build <dst_dir> (config.json + model.safetensors in `dt`) from the recipe
 * in <src_dir>/golden.json (already parsed as `golden`). */
static lmc_status wide_build(const char *src_dir, json_object *golden, lmc_dtype dt,
                             const char *dst_dir) {
    if (mkdir(dst_dir, 0700) && !lmc_is_dir(dst_dir))
        return lmc_err(LMC_ERR_IO, "%s: cannot create", dst_dir);
    lmc_status st = wide_write_config(src_dir, dst_dir, dt);
    if (st) return st;
    uint64_t seed = (uint64_t)json_object_get_int64(lmc_json_get(golden, "seed"));
    json_object *ts = lmc_json_get(golden, "tensors");
    size_t nt = ts ? json_object_array_length(ts) : 0;
    if (!nt) return lmc_err(LMC_ERR_FORMAT, "%s: golden.json lists no tensors", src_dir);
    lmc_st_write_tensor *w = calloc(nt, sizeof *w);
    void **bufs = calloc(nt, sizeof *bufs);
    size_t es = dt == LMC_DT_F32 ? 4 : 2;
    for (size_t t = 0; t < nt && !st; t++) {
        json_object *o = json_object_array_get_idx(ts, t);
        json_object *shape = lmc_json_get(o, "shape");
        size_t n = 1;
        w[t].name = json_object_get_string(lmc_json_get(o, "name"));
        w[t].dtype = dt;
        w[t].ndim = (int)json_object_array_length(shape);
        for (int d = 0; d < w[t].ndim; d++) {
            w[t].shape[d] = json_object_get_int64(json_object_array_get_idx(shape, d));
            n *= (size_t)w[t].shape[d];
        }
        uint64_t index = (uint64_t)json_object_get_int64(lmc_json_get(o, "index"));
        float center = (float)json_object_get_double(lmc_json_get(o, "center"));
        int64_t half = json_object_get_int64(lmc_json_get(o, "half_range"));
        float step = ldexpf(1.0f, json_object_get_int(lmc_json_get(o, "exp")));
        bufs[t] = malloc(n * es);
        double sum = 0, sumsq = 0;
        uint64_t base = (seed << 48) + (index << 36);
        for (size_t i = 0; i < n; i++) {
            int64_t k = (int64_t)((wide_splitmix_(base + i) >> 32) % (uint64_t)(2 * half)) - half;
            float v = center + (float)k * step;
            sum += v;
            sumsq += (double)v * v;
            if (dt == LMC_DT_F32)
                ((float *)bufs[t])[i] = v;
            else if (dt == LMC_DT_BF16)
                ((uint16_t *)bufs[t])[i] = lmc_f32_to_bf16(v);
            else
                ((uint16_t *)bufs[t])[i] = lmc_f32_to_f16(v);
        }
        double want = json_object_get_double(lmc_json_get(o, "sum"));
        double want2 = json_object_get_double(lmc_json_get(o, "sumsq"));
        if (fabs(sum - want) > 1e-6 * (1 + fabs(want)) || fabs(sumsq - want2) > 1e-9 * want2)
            st = lmc_err(LMC_ERR_FORMAT, "%s: tensor %s: generated sum %.9g / %.9g, recipe %.9g / %.9g",
                         src_dir, w[t].name, sum, sumsq, want, want2);
        w[t].data = bufs[t];
    }
    if (!st) {
        char *p = lmc_path_join(dst_dir, "model.safetensors");
        st = lmc_st_write(p, w, nt, NULL);
        free(p);
    }
    for (size_t t = 0; t < nt; t++) free(bufs[t]);
    free(bufs);
    free(w);
    return st;
}

#endif
