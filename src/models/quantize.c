/* Writing MLX affine-quantized checkpoints from float ones (lmc_quantize_model).
 * Per row and group of `group_size` inputs: w_min and w_max; scale = (w_max - w_min) /
 * (2^bits - 1), or 1 for a constant group; bias = w_min; both stored as bf16, and
 * q = round_half_even((w - bias) / scale) clipped to [0, 2^bits - 1] with the stored values,
 * so that scale * q + bias (what every reader computes) is within half a step of w. Every
 * 2-D "*.weight" tensor (the Linear and Embedding modules of the llama family) whose input
 * dimension is a multiple of group_size is quantized; one that is not stays float and is
 * listed in config.json as a per-module `false` override. */
#include "base/error.h"
#include "base/cleanup.h"
#include "base/file.h"
#include "base/json.h"
#include "formats/config.h"
#include "models/quantized.h"
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

lmc_status lmc_mlx_quantize(const float *w, int64_t rows, int64_t cols, int bits, int group,
                            uint32_t *packed, uint16_t *scales, uint16_t *biases) {
    lmc_status st = lmc_mlx_check_params(bits, group, "quantize");
    if (st) return st;
    if (rows <= 0 || cols <= 0 || cols % group)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "quantize: a [%lld, %lld] matrix does not split into groups of %d",
                       (long long)rows, (long long)cols, group);
    const int per = 32 / bits;
    const float levels = (float)((1u << bits) - 1u);
    const int64_t ng = cols / group;
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 16))
    for (int64_t r = 0; r < rows; r++) {
        const float *row = w + r * cols;
        uint32_t *pw = packed + r * (cols / per);
        for (int64_t gi = 0; gi < ng; gi++) {
            const float *g = row + gi * group;
            float lo = g[0], hi = g[0];
            for (int i = 1; i < group; i++) {
                lo = g[i] < lo ? g[i] : lo;
                hi = g[i] > hi ? g[i] : hi;
            }
            float scale = (hi - lo) / levels;
            if (!(scale > 0.0f)) scale = 1.0f;
            uint16_t sb = lmc_f32_to_bf16(scale), bb = lmc_f32_to_bf16(lo);
            float s = lmc_bf16_to_f32(sb), b = lmc_bf16_to_f32(bb);
            if (!(s > 0.0f)) { /* a scale too small for bf16 */
                s = 1.0f;
                sb = lmc_f32_to_bf16(s);
            }
            scales[r * ng + gi] = sb;
            biases[r * ng + gi] = bb;
            for (int i = 0; i < group; i += per) {
                uint32_t word = 0;
                for (int j = 0; j < per; j++) {
                    float t = rintf((g[i + j] - b) / s);
                    t = t > 0.0f ? (t < levels ? t : levels) : 0.0f; /* NaN -> 0 */
                    word |= (uint32_t)t << (j * bits);
                }
                pw[(gi * group + i) / per] = word;
            }
        }
    }
    return LMC_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static bool float_dtype(lmc_dtype dt) {
    return dt == LMC_DT_F32 || dt == LMC_DT_F16 || dt == LMC_DT_BF16;
}

/* One float tensor quantized into three owned buffers (appended to bufs). */
static lmc_status quantize_tensor(const lmc_tensor_view *t, int bits, int group,
                                  lmc_st_write_tensor out[3], char *names[3], void **bufs,
                                  size_t *nb) {
    const int64_t rows = t->shape[0], cols = t->shape[1], ng = cols / group;
    size_t nw = (size_t)(rows * cols * bits / 32), ns = (size_t)(rows * ng);
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    uint32_t *packed = malloc(nw * sizeof *packed);
    uint16_t *sc = malloc(ns * 2), *bi = malloc(ns * 2);
    size_t len = strlen(t->name) - strlen(".weight");
    for (int i = 0; i < 3; i++) names[i] = malloc(len + 16);
    lmc_status st = LMC_OK;
    if (!w || !packed || !sc || !bi || !names[0] || !names[1] || !names[2]) {
        st = lmc_err(LMC_ERR_NOMEM, "quantize: no memory for '%s'", t->name);
    } else {
        lmc_to_f32(t->dtype, t->data, w, (size_t)(rows * cols));
        st = lmc_mlx_quantize(w, rows, cols, bits, group, packed, sc, bi);
    }
    free(w);
    void *own[] = {packed, sc, bi, names[0], names[1], names[2]};
    for (int i = 0; i < 6; i++) bufs[(*nb)++] = own[i];
    if (st) return st;
    snprintf(names[0], len + 16, "%.*s.weight", (int)len, t->name);
    snprintf(names[1], len + 16, "%.*s.scales", (int)len, t->name);
    snprintf(names[2], len + 16, "%.*s.biases", (int)len, t->name);
    out[0] = (lmc_st_write_tensor){names[0], LMC_DT_U32, 2, {rows, cols * bits / 32}, packed};
    out[1] = (lmc_st_write_tensor){names[1], LMC_DT_BF16, 2, {rows, ng}, sc};
    out[2] = (lmc_st_write_tensor){names[2], LMC_DT_BF16, 2, {rows, ng}, bi};
    return LMC_OK;
}

static lmc_status quantize_dir(const char *model_dir, const char *save_dir, int bits,
                               int group_size, lmc_progress_fn progress, void *user) {
    if (!model_dir || !save_dir || !*model_dir || !*save_dir)
        return lmc_err(LMC_ERR_INVALID_ARG, "quantize: model and save directories are required");
    lmc_status st = lmc_mlx_check_params(bits, group_size, "quantize");
    if (st) return st;
    if (!lmc_is_dir(model_dir))
        return lmc_err(LMC_ERR_NOT_FOUND, "%s: model directory not found", model_dir);
    if (lmc_same_path(model_dir, save_dir))
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "quantize: the save directory %s is the model's directory; choose another "
                       "so the original stays intact",
                       save_dir);
    lmc_model_config cfg;
    json_object *cj = NULL;
    if ((st = lmc_config_load(model_dir, &cfg, &cj, NULL))) return st;
    if (cfg.quantized) {
        json_object_put(cj);
        return lmc_err(LMC_ERR_INVALID_ARG, "quantize: %s/config.json: the model is already "
                       "quantized", model_dir);
    }
    lmc_st_set *set = NULL;
    if ((st = lmc_st_set_open_dir(model_dir, &set))) {
        json_object_put(cj);
        return st;
    }
    size_t nt = lmc_st_set_count(set), nb = 0, no = 0;
    lmc_st_write_tensor *out = calloc(3 * nt + 1, sizeof *out);
    void **bufs = calloc(6 * nt + 1, sizeof *bufs);
    json_object *q = json_object_new_object();
    char *cfg_path = NULL, *st_path = NULL;
    lmc_dir_stage stage = {.slot = -1};
    if (!out || !bufs || !q) {
        st = lmc_err(LMC_ERR_NOMEM, "quantize: out of memory");
        goto done;
    }
    json_object_object_add(q, "group_size", json_object_new_int(group_size));
    json_object_object_add(q, "bits", json_object_new_int(bits));
    for (size_t i = 0; i < nt && !st; i++) {
        const lmc_tensor_view *t = lmc_st_set_at(set, i);
        bool matrix = t->ndim == 2 && float_dtype(t->dtype) && ends_with(t->name, ".weight");
        if (matrix && t->shape[1] % group_size == 0 && t->shape[0] > 0) {
            char *names[3] = {NULL, NULL, NULL};
            st = quantize_tensor(t, bits, group_size, out + no, names, bufs, &nb);
            no += 3;
        } else {
            if (matrix) { /* stays float: a per-module override says so */
                size_t len = strlen(t->name) - strlen(".weight");
                char module[512];
                snprintf(module, sizeof module, "%.*s", (int)len, t->name);
                json_object_object_add(q, module, json_object_new_boolean(0));
            }
            out[no++] = (lmc_st_write_tensor){t->name, t->dtype, t->ndim, {0}, t->data};
            memcpy(out[no - 1].shape, t->shape, sizeof out[no - 1].shape);
        }
        if (!st && progress && !progress(user, "quantize", (double)(i + 1) / (double)nt))
            st = lmc_err(LMC_ERR_CANCELLED, "quantize cancelled");
    }
    /* everything is written into a staging sibling of save_dir, then moved
     * into place: a crash leaves the old directory or the new one */
    if (st || (st = lmc_dir_stage_begin(&stage, save_dir))) goto done;
    cfg_path = lmc_path_join(stage.dir, "config.json");
    st_path = lmc_path_join(stage.dir, "model.safetensors");
    if (!cfg_path || !st_path) {
        st = lmc_err(LMC_ERR_NOMEM, "quantize: out of memory");
        goto done;
    }
    static const char *const meta[] = {"format", "mlx", NULL};
    if ((st = lmc_st_write(st_path, out, no, meta))) goto done;
    lmc_test_crash_point("quantize-weights-written");
    json_object_object_add(cj, "quantization", json_object_get(q));
    const char *text = json_object_to_json_string_ext(cj, JSON_C_TO_STRING_PRETTY |
                                                              JSON_C_TO_STRING_NOSLASHESCAPE);
    if ((st = lmc_write_file_atomic(cfg_path, text, strlen(text)))) goto done;
    if ((st = lmc_copy_model_side_files(model_dir, stage.dir))) goto done;
    st = lmc_dir_stage_commit(&stage);
done:
    if (st && stage.dir) lmc_dir_stage_abort(&stage);
    for (size_t i = 0; i < nb; i++) free(bufs[i]);
    free(bufs), free(out), free(cfg_path), free(st_path);
    json_object_put(q);
    json_object_put(cj);
    lmc_st_set_free(set);
    return st;
}

lmc_status lmc_quantize_model(const char *model_dir, const char *save_dir, int bits,
                              int group_size, lmc_progress_fn progress, void *user) {
    char *dir = NULL; /* an org/name in the Hugging Face cache, resolved */
    if (model_dir && *model_dir) {
        lmc_status st = lmc_model_dir_resolve(model_dir, &dir);
        if (st) return st;
    }
    lmc_status st = quantize_dir(dir ? dir : model_dir, save_dir, bits, group_size, progress, user);
    free(dir);
    return st;
}
