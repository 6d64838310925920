/* Matrix products against mmapped weights. Decode (a handful of rows) is a
 * GEMV that streams each weight row once and widens it in registers; prefill
 * widens row blocks of the weight into an fp32 scratch and hands them to
 * OpenBLAS, so no fp32 copy of the whole model ever exists. */
#include "backend/cpu/cpu_ops.h"
#include "base/error.h"
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Up to this many input rows the GEMV path wins: it reads the weights once
 * without a widening pass. */
#define GEMV_MAX_ROWS 8
/* Widened weight block handed to one sgemm call (floats). */
#define GEMM_BLOCK_FLOATS ((size_t)1 << 21)

#define HOT __attribute__((target_clones("arch=x86-64-v3", "default")))

static inline float bf16_bits_to_f32(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static inline float f16_bits_to_f32(uint16_t h) {
#ifdef __FLT16_MAX__
    _Float16 v;
    memcpy(&v, &h, sizeof v);
    return (float)v;
#else
    return lmc_f16_to_f32(h);
#endif
}

/* Dot products keep four 8-lane partial sums in registers (GCC vector
 * extensions; the AVX2 clone maps them to ymm registers) so the additions
 * do not form one serial dependency chain. The loads are macros, not
 * functions: a vector value passed across a call between the AVX2 clone and
 * default-ABI code would change the calling convention (clang rejects it). */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v8f __attribute__((vector_size(32)));
typedef uint16_t v8u16 __attribute__((vector_size(16)));
typedef uint32_t v8u32 __attribute__((vector_size(32)));

#define FMA8_F32(acc, wp, xp)                                                          \
    do {                                                                               \
        v8f w_, x_;                                                                    \
        memcpy(&w_, (wp), sizeof w_);                                                  \
        memcpy(&x_, (xp), sizeof x_);                                                  \
        (acc) += w_ * x_;                                                              \
    } while (0)
#define FMA8_BF16(acc, wp, xp)                                                         \
    do {                                                                               \
        v8u16 h_;                                                                      \
        v8f w_, x_;                                                                    \
        memcpy(&h_, (wp), sizeof h_);                                                  \
        v8u32 u_ = __builtin_convertvector(h_, v8u32) << 16;                           \
        memcpy(&w_, &u_, sizeof w_);                                                   \
        memcpy(&x_, (xp), sizeof x_);                                                  \
        (acc) += w_ * x_;                                                              \
    } while (0)
#define HSUM8(v) ((((v)[0] + (v)[4]) + ((v)[1] + (v)[5])) + (((v)[2] + (v)[6]) + ((v)[3] + (v)[7])))

HOT static float dot_f32(const float *w, const float *x, size_t n) {
    v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        FMA8_F32(a0, w + i, x + i);
        FMA8_F32(a1, w + i + 8, x + i + 8);
        FMA8_F32(a2, w + i + 16, x + i + 16);
        FMA8_F32(a3, w + i + 24, x + i + 24);
    }
    v8f t = (a0 + a1) + (a2 + a3);
    float sum = HSUM8(t);
    for (; i < n; i++) sum += w[i] * x[i];
    return sum;
}

HOT static float dot_bf16(const uint16_t *w, const float *x, size_t n) {
    v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        FMA8_BF16(a0, w + i, x + i);
        FMA8_BF16(a1, w + i + 8, x + i + 8);
        FMA8_BF16(a2, w + i + 16, x + i + 16);
        FMA8_BF16(a3, w + i + 24, x + i + 24);
    }
    v8f t = (a0 + a1) + (a2 + a3);
    float sum = HSUM8(t);
    for (; i < n; i++) sum += bf16_bits_to_f32(w[i]) * x[i];
    return sum;
}

HOT static float dot_f16(const uint16_t *w, const float *x, size_t n) {
    float acc[32] = {0};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
#pragma omp simd
        for (size_t j = 0; j < 32; j++) acc[j] += f16_bits_to_f32(w[i + j]) * x[i + j];
    }
    float sum = 0.0f;
    for (; i < n; i++) sum += f16_bits_to_f32(w[i]) * x[i];
    for (size_t j = 0; j < 32; j++) sum += acc[j];
    return sum;
}

HOT static void widen_bf16(const uint16_t *src, float *dst, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] = bf16_bits_to_f32(src[i]);
}

HOT static void widen_f16(const uint16_t *src, float *dst, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] = f16_bits_to_f32(src[i]);
}

void lmc_cpu_widen(const lmc_cpu_mat *w, int64_t row, int64_t col0, size_t n, float *dst) {
    size_t off = (size_t)row * (size_t)w->cols + (size_t)col0;
    switch (w->dt) {
    case LMC_DT_BF16: widen_bf16((const uint16_t *)w->data + off, dst, n); break;
    case LMC_DT_F16: widen_f16((const uint16_t *)w->data + off, dst, n); break;
    default: memcpy(dst, (const float *)w->data + off, n * sizeof(float)); break;
    }
}

static float row_dot(const lmc_cpu_mat *w, int64_t r, const float *x) {
    size_t k = (size_t)w->cols, off = (size_t)r * k;
    switch (w->dt) {
    case LMC_DT_BF16: return dot_bf16((const uint16_t *)w->data + off, x, k);
    case LMC_DT_F16: return dot_f16((const uint16_t *)w->data + off, x, k);
    default: return dot_f32((const float *)w->data + off, x, k);
    }
}

static void gemv(const lmc_cpu_mat *w, const float *x, size_t n, float *y) {
    int64_t rows = w->rows;
    size_t k = (size_t)w->cols;
    /* Row chunks handed out dynamically: on a shared machine a thread whose
     * core is busy must not hold the others up. */
#pragma omp parallel for schedule(dynamic, 32) if (rows * w->cols > 32768)
    for (int64_t r = 0; r < rows; r++)
        for (size_t j = 0; j < n; j++) y[j * (size_t)rows + (size_t)r] = row_dot(w, r, x + j * k);
}

static lmc_status gemm(const lmc_cpu_mat *w, const float *x, size_t n, float *y) {
    size_t rows = (size_t)w->rows, k = (size_t)w->cols;
    if (w->dt == LMC_DT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows, (int)k, 1.0f, x,
                    (int)k, (const float *)w->data, (int)k, 0.0f, y, (int)rows);
        return LMC_OK;
    }
    size_t rb = GEMM_BLOCK_FLOATS / (k ? k : 1);
    if (rb < 16) rb = 16;
    if (rb > rows) rb = rows;
    float *tile = malloc(rb * k * sizeof(float));
    if (!tile)
        return lmc_err(LMC_ERR_NOMEM, "matmul: no memory for a %zu x %zu weight tile", rb, k);
    for (size_t r0 = 0; r0 < rows; r0 += rb) {
        size_t nr = rows - r0 < rb ? rows - r0 : rb;
        /* Widening is cheap next to the sgemm; keeping it on this thread
         * leaves the cores to OpenBLAS's pool. */
        for (size_t r = 0; r < nr; r++) lmc_cpu_widen(w, (int64_t)(r0 + r), 0, k, tile + r * k);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)nr, (int)k, 1.0f, x,
                    (int)k, tile, (int)k, 0.0f, y + r0, (int)rows);
    }
    free(tile);
    return LMC_OK;
}

static lmc_status add_bias(const lmc_cpu_mat *bias, size_t rows, size_t n, float *y) {
    float *b = malloc(rows * sizeof(float));
    if (!b) return lmc_err(LMC_ERR_NOMEM, "matmul: no memory for a bias row");
    lmc_cpu_widen(bias, 0, 0, rows, b);
    for (size_t j = 0; j < n; j++)
        for (size_t r = 0; r < rows; r++) y[j * rows + r] += b[r];
    free(b);
    return LMC_OK;
}

lmc_status lmc_cpu_matmul(const lmc_cpu_mat *w, const lmc_cpu_mat *bias, const float *x,
                          size_t n, float *y) {
    if (n == 0) return LMC_OK;
    lmc_status st = LMC_OK;
    if (n <= GEMV_MAX_ROWS)
        gemv(w, x, n, y);
    else
        st = gemm(w, x, n, y);
    if (st == LMC_OK && bias) st = add_bias(bias, (size_t)w->rows, n, y);
    return st;
}

lmc_status lmc_cpu_matmul_multi(const lmc_cpu_mat *const *w, const lmc_cpu_mat *const *bias,
                                size_t count, const float *x, size_t n, float *const *y) {
    if (n == 0 || count == 0) return LMC_OK;
    lmc_status st = LMC_OK;
    if (n > GEMV_MAX_ROWS || count > 8) {
        for (size_t i = 0; i < count && !st; i++)
            st = lmc_cpu_matmul(w[i], bias ? bias[i] : NULL, x, n, y[i]);
        return st;
    }
    /* Decode: one parallel loop over the rows of all matrices, so the team
     * meets at one barrier instead of one per matrix. */
    int64_t start[9] = {0};
    for (size_t i = 0; i < count; i++) start[i + 1] = start[i] + w[i]->rows;
    int64_t total = start[count];
    size_t k = (size_t)w[0]->cols;
#pragma omp parallel for schedule(dynamic, 32) if (total * (int64_t)k > 32768)
    for (int64_t g = 0; g < total; g++) {
        size_t i = 0;
        while (g >= start[i + 1]) i++;
        int64_t r = g - start[i], rows = w[i]->rows;
        for (size_t j = 0; j < n; j++) y[i][j * (size_t)rows + (size_t)r] = row_dot(w[i], r, x + j * k);
    }
    for (size_t i = 0; i < count && !st; i++)
        if (bias && bias[i]) st = add_bias(bias[i], (size_t)w[i]->rows, n, y[i]);
    return st;
}
