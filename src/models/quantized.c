/* MLX affine-quantized checkpoints ("quantization": {"group_size", "bits"}).
 * Usage: the llama binder views each module stored as <m>.weight (U32) + <m>.scales + <m>.biases
 * as a packed matrix that the CPU kernels dequantize on the fly (the words stay in the mapping:
 * 4-bit weights take ~0.56 bytes per parameter), or for the CUDA upload dequantizes it to an
 * ordinary F32 matrix (one OpenMP pass over rows). Per-module overrides (false / {bits,
 * group_size}) are read off the tensor shapes. Limits: bits 2, 4, 8; group_size 32, 64, 128 (3, 6
 * refused). */
#include "models/quantized.h"
#include "base/error.h"
#include "models/llama_weights.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest row or column count accepted (keeps every product below 2^63). */
#define QUANT_MAX_DIM ((int64_t)1 << 31)

lmc_status lmc_mlx_check_params(int64_t bits, int64_t group_size, const char *what) {
    if (bits != 2 && bits != 4 && bits != 8)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "%s: quantization bits %" PRId64 " is not supported (2, 4 or 8)", what,
                       bits);
    if (group_size != 32 && group_size != 64 && group_size != 128)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "%s: quantization group_size %" PRId64 " is not supported (32, 64 or 128)",
                       what, group_size);
    return LMC_OK;
}

static bool float_dt(lmc_dtype dt) {
    return dt == LMC_DT_F32 || dt == LMC_DT_F16 || dt == LMC_DT_BF16;
}

lmc_status lmc_mlx_dequantize(const lmc_mlx_quant *q, lmc_dtype out_dt, void *out,
                              const char *what) {
    lmc_status st = lmc_mlx_check_params(q->bits, q->group_size, what);
    if (st) return st;
    int64_t rows = q->rows, cols = q->cols, g = q->group_size;
    if (rows <= 0 || cols <= 0 || rows > QUANT_MAX_DIM || cols > QUANT_MAX_DIM ||
        (uint64_t)rows * (uint64_t)cols > SIZE_MAX / sizeof(float))
        return lmc_err(LMC_ERR_LIMIT,
                       "%s: quantized matrix [%" PRId64 ", %" PRId64 "] is empty or too large",
                       what, rows, cols);
    if (cols % g)
        return lmc_err(LMC_ERR_FORMAT,
                       "%s: input dimension %" PRId64 " is not a multiple of group_size %" PRId64,
                       what, cols, g);
    int64_t ng = cols / g;
    const lmc_cpu_mat *sb[2] = {&q->scales, &q->biases};
    for (int i = 0; i < 2; i++)
        if (!sb[i]->data || !float_dt(sb[i]->dt) || sb[i]->rows != rows || sb[i]->cols != ng)
            return lmc_err(LMC_ERR_FORMAT,
                           "%s: %s must be an F32/F16/BF16 [%" PRId64 ", %" PRId64 "] matrix",
                           what, i ? "biases" : "scales", rows, ng);
    if (!q->packed || !out || (out_dt != LMC_DT_F32 && out_dt != LMC_DT_BF16))
        return lmc_err(LMC_ERR_INVALID_ARG, "%s: packed data, output and an F32/BF16 output "
                                            "dtype are required", what);
    /* the kernels' own dequantizer, so that a dequantized copy and the
     * packed matrix computed on the fly hold the same values */
    const lmc_cpu_quant cq = {.bits = (int)q->bits,
                              .group_size = (int)g,
                              .scales_dt = q->scales.dt,
                              .biases_dt = q->biases.dt,
                              .scales = q->scales.data,
                              .biases = q->biases.data};
    const lmc_cpu_mat view = {
        .dt = LMC_DT_U32, .data = q->packed, .rows = rows, .cols = cols, .quant = &cq};
    if (out_dt == LMC_DT_F32) {
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 16))
        for (int64_t r = 0; r < rows; r++)
            lmc_cpu_widen(&view, r, 0, (size_t)cols, (float *)out + r * cols);
        return LMC_OK;
    }
    float *row = malloc((size_t)cols * sizeof(float));
    if (!row) return lmc_err(LMC_ERR_NOMEM, "%s: no memory for a dequantized row", what);
    uint16_t *ob = out;
    for (int64_t r = 0; r < rows; r++) {
        lmc_cpu_widen(&view, r, 0, (size_t)cols, row);
        for (int64_t c = 0; c < cols; c++) ob[r * cols + c] = lmc_f32_to_bf16(row[c]);
    }
    free(row);
    return LMC_OK;
}

/* Appends p to the owned list (freed by the caller); NULL p or no memory:
 * LMC_ERR_NOMEM naming `what` (p is freed). */
static lmc_status own(void *p, void ***owned, size_t *n_owned, const char *what) {
    void **grown = p ? realloc(*owned, (*n_owned + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(p);
        return lmc_err(LMC_ERR_NOMEM, "model weights: no memory for '%s'", what);
    }
    *owned = grown;
    (*owned)[(*n_owned)++] = p;
    return LMC_OK;
}

lmc_status lmc_mlx_bind(const lmc_st_set *set, const char *module, int64_t rows, int64_t cols,
                        int64_t bits, int64_t group_size, bool packed, void ***owned,
                        size_t *n_owned, lmc_cpu_mat *out) {
    memset(out, 0, sizeof *out);
    char wn[320], sn[320], bn[320];
    snprintf(wn, sizeof wn, "%s.weight", module);
    snprintf(sn, sizeof sn, "%s.scales", module);
    snprintf(bn, sizeof bn, "%s.biases", module);
    if (rows <= 0 || cols <= 0 || rows > QUANT_MAX_DIM || cols > QUANT_MAX_DIM)
        return lmc_err(LMC_ERR_LIMIT, "model weights: '%s' dimensions [%" PRId64 ", %" PRId64
                                      "] are out of range", wn, rows, cols);
    const lmc_tensor_view *t = lmc_st_set_find(set, wn);
    if (!t) return lmc_err(LMC_ERR_NOT_FOUND, "model weights: missing tensor '%s'", wn);
    if (t->dtype != LMC_DT_U32)
        return lmc_err(LMC_ERR_FORMAT, "model weights: quantized tensor '%s' has dtype %s, "
                                       "expected U32", wn, lmc_dtype_name(t->dtype));
    const lmc_tensor_view *ts = lmc_st_set_find(set, sn);
    if (!ts)
        return lmc_err(LMC_ERR_NOT_FOUND,
                       "model weights: missing tensor '%s' (quantized '%s' needs scales and "
                       "biases)", sn, wn);
    if (!lmc_st_set_find(set, bn))
        return lmc_err(LMC_ERR_NOT_FOUND,
                       "model weights: missing tensor '%s' (quantized '%s' needs scales and "
                       "biases)", bn, wn);
    lmc_status st;
    if (bits <= 0 || group_size <= 0) {
        /* Per-module setting: read it off the packed width and the scales. */
        int64_t pc = t->ndim == 2 ? t->shape[1] : 0, sc = ts->ndim == 2 ? ts->shape[1] : 0;
        if (pc <= 0 || pc > QUANT_MAX_DIM || (pc * 32) % cols || sc <= 0 || cols % sc)
            return lmc_err(LMC_ERR_FORMAT,
                           "model weights: '%s' (packed width %" PRId64 ") and '%s' (%" PRId64
                           " groups) fit no quantization of %" PRId64 " inputs",
                           wn, pc, sn, sc, cols);
        bits = pc * 32 / cols;
        group_size = cols / sc;
    }
    if ((st = lmc_mlx_check_params(bits, group_size, wn))) return st;
    if (cols % group_size)
        return lmc_err(LMC_ERR_FORMAT,
                       "model weights: '%s': input dimension %" PRId64
                       " is not a multiple of group_size %" PRId64,
                       wn, cols, group_size);
    int64_t pcols = cols * bits / 32;
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != pcols) {
        char got[96] = "[";
        size_t len = 1;
        for (int d = 0; d < t->ndim && len < sizeof got; d++)
            len += (size_t)snprintf(got + len, sizeof got - len, "%s%" PRId64, d ? ", " : "",
                                    t->shape[d]);
        if (len < sizeof got) snprintf(got + len, sizeof got - len, "]");
        return lmc_err(LMC_ERR_FORMAT,
                       "model weights: tensor '%s' has shape %s, expected [%" PRId64
                       ", %" PRId64 "] (U32, %" PRId64 "-bit values packed %" PRId64
                       " per word, %" PRId64 " inputs)",
                       wn, got, rows, pcols, bits, 32 / bits, cols);
    }
    const int64_t sshape[2] = {rows, cols / group_size};
    lmc_mlx_quant q = {.rows = rows, .cols = cols, .bits = bits, .group_size = group_size,
                       .packed = t->data};
    if ((st = lmc_weights_bind_tensor(set, sn, 2, sshape, true, owned, n_owned, &q.scales)) ||
        (st = lmc_weights_bind_tensor(set, bn, 2, sshape, true, owned, n_owned, &q.biases)))
        return st;
    if (packed) {
        /* the words stay in the mapping (copied only when misaligned) */
        if ((uintptr_t)q.packed % sizeof(uint32_t)) {
            void *copy = malloc(t->nbytes);
            if (copy) memcpy(copy, t->data, t->nbytes);
            if ((st = own(copy, owned, n_owned, wn))) return st;
            q.packed = copy;
        }
        lmc_cpu_quant *cq = malloc(sizeof *cq);
        if (cq)
            *cq = (lmc_cpu_quant){.bits = (int)bits,
                                  .group_size = (int)group_size,
                                  .scales_dt = q.scales.dt,
                                  .biases_dt = q.biases.dt,
                                  .scales = q.scales.data,
                                  .biases = q.biases.data};
        if ((st = own(cq, owned, n_owned, wn))) return st;
        *out = (lmc_cpu_mat){
            .dt = LMC_DT_U32, .data = q.packed, .rows = rows, .cols = cols, .quant = cq};
        return LMC_OK;
    }
    size_t n = (size_t)rows * (size_t)cols;
    if (n > SIZE_MAX / sizeof(float) - 64)
        return lmc_err(LMC_ERR_LIMIT, "model weights: '%s' is too large", wn);
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *buf = aligned_alloc(64, bytes);
    if (!buf)
        return lmc_err(LMC_ERR_NOMEM, "model weights: no memory to dequantize '%s' (%zu bytes)",
                       wn, bytes);
    if ((st = own(buf, owned, n_owned, wn))) return st;
    if ((st = lmc_mlx_dequantize(&q, LMC_DT_F32, buf, wn))) return st;
    out->dt = LMC_DT_F32;
    out->data = buf;
    out->rows = rows;
    out->cols = cols;
    return LMC_OK;
}
