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

#include "backend/cpu/cpu_simd.h"

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

/* ------------------------------------------------ MLX affine quantization */

static inline float scalar_at(lmc_dtype dt, const void *p, size_t i) {
    switch (dt) {
    case LMC_DT_BF16: return bf16_bits_to_f32(((const uint16_t *)p)[i]);
    case LMC_DT_F16: return f16_bits_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

/* One value: the product and the sum are separate statements, so no
 * compiler fuses them into one fma and every path rounds alike. */
static inline float dequant_one(uint32_t q, float s, float b) {
    float p = s * (float)q;
    return p + b;
}

typedef int32_t v8i32 __attribute__((vector_size(32)));
typedef uint64_t v4u64 __attribute__((vector_size(32)));

/* Values 8c .. 8c + 7 of a row's words, dequantized with the broadcast
 * scale sv and bias bv exactly as dequant_one does: with 8 bits two words
 * hold them, with 4 bits one, with 2 bits half of one. A macro for the
 * reason given above FMA8_F32. */
#define DEQ8(out, words, c, BITS, sv, bv)                                                  \
    do {                                                                                   \
        v8i32 q_;                                                                          \
        if ((BITS) == 8) { /* both words in every lane pair, then a, a, a, a, b, b, b, b */ \
            uint64_t u_;                                                                   \
            memcpy(&u_, (words) + 2 * (size_t)(c), sizeof u_);                             \
            const v4u64 d_ = {u_, u_, u_, u_};                                             \
            const v8u32 p_ = (v8u32)d_;                                                    \
            const v8u32 w_ = __builtin_shufflevector(p_, p_, 0, 2, 4, 6, 1, 3, 5, 7);      \
            const v8u32 sh_ = {0, 8, 16, 24, 0, 8, 16, 24};                                \
            q_ = (v8i32)((w_ >> sh_) & 255u);                                              \
        } else {                                                                           \
            const uint32_t a_ = (BITS) == 4 ? (words)[(c)] : (words)[(c) / 2];             \
            const uint32_t o_ = (BITS) == 4 ? 0u : (uint32_t)((c) & 1) * 16u;              \
            const v8u32 w_ = {a_, a_, a_, a_, a_, a_, a_, a_};                             \
            const v8u32 sh_ = (BITS) == 4 ? (v8u32){0, 4, 8, 12, 16, 20, 24, 28}           \
                                          : (v8u32){0, 2, 4, 6, 8, 10, 12, 14} + o_;       \
            q_ = (v8i32)((w_ >> sh_) & ((1u << (BITS)) - 1u));                             \
        }                                                                                  \
        v8f p_ = (sv) * __builtin_convertvector(q_, v8f);                                  \
        (out) = p_ + (bv);                                                                 \
    } while (0)

/* A quantized row's scale and bias of group gi, broadcast. */
#define GROUP_SB(q, row, ng, gi, sv, bv)                                                   \
    do {                                                                                   \
        float s_ = scalar_at((q)->scales_dt, (q)->scales, (row) * (ng) + (gi));            \
        float b_ = scalar_at((q)->biases_dt, (q)->biases, (row) * (ng) + (gi));            \
        (sv) = (v8f){s_, s_, s_, s_, s_, s_, s_, s_};                                      \
        (bv) = (v8f){b_, b_, b_, b_, b_, b_, b_, b_};                                      \
    } while (0)

/* Whole groups [g0, g1) of a row into out (8 values per step). */
#define DEQUANT_GROUPS(BITS)                                                               \
    HOT static void dequant_groups##BITS(const lmc_cpu_quant *q, const uint32_t *words,    \
                                         size_t row, size_t ng, size_t g0, size_t g1,      \
                                         float *out) {                                     \
        const size_t g = (size_t)q->group_size;                                            \
        for (size_t gi = g0; gi < g1; gi++) {                                              \
            v8f sv, bv;                                                                    \
            GROUP_SB(q, row, ng, gi, sv, bv);                                              \
            for (size_t c = gi * g / 8; c < (gi + 1) * g / 8; c++) {                       \
                v8f v_;                                                                    \
                DEQ8(v_, words, c, BITS, sv, bv);                                          \
                memcpy(out + (c * 8 - g0 * g), &v_, sizeof v_);                            \
            }                                                                              \
        }                                                                                  \
    }
DEQUANT_GROUPS(2)
DEQUANT_GROUPS(4)
DEQUANT_GROUPS(8)

/* dot_f32 of a quantized row (dequantized on the fly) and x: the same
 * four partial sums over the same 32-value steps, so the result is that of
 * the dequantized row bit for bit (cols is a multiple of 32). */
#define DOT_QUANT(BITS)                                                                    \
    HOT static float dot_quant##BITS(const lmc_cpu_quant *q, const uint32_t *words,        \
                                     size_t row, size_t ng, const float *x, size_t k) {    \
        const size_t g = (size_t)q->group_size;                                            \
        v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, sv = {0}, bv = {0};                    \
        size_t gi = 0, left = 0; /* the current group, and its values not yet used */     \
        for (size_t i = 0; i + 32 <= k; i += 32, left -= 32) {                             \
            if (left == 0) {                                                               \
                GROUP_SB(q, row, ng, gi, sv, bv);                                          \
                gi++;                                                                      \
                left = g;                                                                  \
            }                                                                              \
            v8f w0, w1, w2, w3, x0, x1, x2, x3;                                            \
            DEQ8(w0, words, i / 8, BITS, sv, bv);                                          \
            DEQ8(w1, words, i / 8 + 1, BITS, sv, bv);                                      \
            DEQ8(w2, words, i / 8 + 2, BITS, sv, bv);                                      \
            DEQ8(w3, words, i / 8 + 3, BITS, sv, bv);                                      \
            memcpy(&x0, x + i, sizeof x0);                                                 \
            memcpy(&x1, x + i + 8, sizeof x1);                                             \
            memcpy(&x2, x + i + 16, sizeof x2);                                            \
            memcpy(&x3, x + i + 24, sizeof x3);                                            \
            a0 += w0 * x0;                                                                 \
            a1 += w1 * x1;                                                                 \
            a2 += w2 * x2;                                                                 \
            a3 += w3 * x3;                                                                 \
        }                                                                                  \
        v8f t = (a0 + a1) + (a2 + a3);                                                     \
        return HSUM8(t);                                                                   \
    }
DOT_QUANT(2)
DOT_QUANT(4)
DOT_QUANT(8)

static const uint32_t *quant_row(const lmc_cpu_mat *w, int64_t row) {
    return (const uint32_t *)w->data + (size_t)row * ((size_t)w->cols * (size_t)w->quant->bits / 32);
}

static float dot_quant(const lmc_cpu_mat *w, int64_t row, const float *x) {
    const lmc_cpu_quant *q = w->quant;
    const size_t k = (size_t)w->cols, ng = k / (size_t)q->group_size;
    const uint32_t *words = quant_row(w, row);
    switch (q->bits) {
    case 2: return dot_quant2(q, words, (size_t)row, ng, x, k);
    case 4: return dot_quant4(q, words, (size_t)row, ng, x, k);
    default: return dot_quant8(q, words, (size_t)row, ng, x, k);
    }
}

/* Values [c, end) of a row one by one (the ragged ends of a slice); dst
 * holds value c0 at index 0. */
static void dequant_values(const lmc_cpu_quant *q, const uint32_t *words, size_t row, size_t ng,
                           size_t c, size_t end, size_t c0, float *dst) {
    const int bits = q->bits, per = 32 / bits;
    const size_t g = (size_t)q->group_size;
    const uint32_t mask = (1u << bits) - 1u;
    for (; c < end; c++) {
        const size_t gi = c / g;
        dst[c - c0] = dequant_one((words[c / per] >> ((c % per) * (size_t)bits)) & mask,
                                  scalar_at(q->scales_dt, q->scales, row * ng + gi),
                                  scalar_at(q->biases_dt, q->biases, row * ng + gi));
    }
}

static void widen_quant(const lmc_cpu_mat *w, int64_t row, int64_t col0, size_t n, float *dst) {
    const lmc_cpu_quant *q = w->quant;
    const size_t g = (size_t)q->group_size, ng = (size_t)w->cols / g, r = (size_t)row;
    const uint32_t *words = quant_row(w, row);
    const size_t c0 = (size_t)col0, end = c0 + n;
    /* whole groups [g0, g1) by vectors, the ragged ends value by value */
    const size_t g0 = (c0 + g - 1) / g, g1 = end / g;
    if (g0 >= g1) {
        dequant_values(q, words, r, ng, c0, end, c0, dst);
        return;
    }
    dequant_values(q, words, r, ng, c0, g0 * g, c0, dst);
    float *mid = dst + (g0 * g - c0);
    switch (q->bits) {
    case 2: dequant_groups2(q, words, r, ng, g0, g1, mid); break;
    case 4: dequant_groups4(q, words, r, ng, g0, g1, mid); break;
    default: dequant_groups8(q, words, r, ng, g0, g1, mid); break;
    }
    dequant_values(q, words, r, ng, g1 * g, end, c0, dst);
}

void lmc_cpu_widen(const lmc_cpu_mat *w, int64_t row, int64_t col0, size_t n, float *dst) {
    size_t off = (size_t)row * (size_t)w->cols + (size_t)col0;
    switch (w->dt) {
    case LMC_DT_BF16: widen_bf16((const uint16_t *)w->data + off, dst, n); break;
    case LMC_DT_F16: widen_f16((const uint16_t *)w->data + off, dst, n); break;
    case LMC_DT_U32: widen_quant(w, row, col0, n, dst); break;
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

/* y[j * rows + r] for the n inputs x[j] (k wide) and row r of w. A
 * quantized row is dotted while it is dequantized (one input), or
 * dequantized once into `row` (k floats) and dotted as an F32 row; both
 * give the F32 row's results bit for bit. */
static void rows_dot(const lmc_cpu_mat *w, int64_t r, const float *x, size_t n, size_t k,
                     float *y, float *row) {
    const size_t rows = (size_t)w->rows;
    if (w->dt == LMC_DT_U32 && n == 1) {
        y[r] = dot_quant(w, r, x);
        return;
    }
    if (w->dt == LMC_DT_U32) {
        widen_quant(w, r, 0, k, row);
        for (size_t j = 0; j < n; j++) y[j * rows + (size_t)r] = dot_f32(row, x + j * k, k);
        return;
    }
    for (size_t j = 0; j < n; j++) y[j * rows + (size_t)r] = row_dot(w, r, x + j * k);
}

/* One k-float row per thread for dequantizing quantized rows once for
 * several inputs (NULL when not needed: one input dots them on the fly). */
static lmc_status row_scratch(bool quantized, size_t k, float **out) {
    *out = NULL;
    if (!quantized) return LMC_OK;
    size_t threads = (size_t)omp_get_max_threads();
    *out = malloc(threads * k * sizeof(float));
    if (!*out)
        return lmc_err(LMC_ERR_NOMEM, "matmul: no memory for %zu dequantized rows of %zu", threads,
                       k);
    return LMC_OK;
}

static lmc_status gemv(const lmc_cpu_mat *w, const float *x, size_t n, float *y) {
    int64_t rows = w->rows;
    size_t k = (size_t)w->cols;
    float *scratch;
    lmc_status st = row_scratch(w->dt == LMC_DT_U32 && n > 1, k, &scratch);
    if (st) return st;
    /* Row chunks handed out dynamically: on a shared machine a thread whose
     * core is busy must not hold the others up. */
#pragma omp parallel for schedule(dynamic, 32) if (rows * w->cols > 32768)
    for (int64_t r = 0; r < rows; r++)
        rows_dot(w, r, x, n, k, y, scratch ? scratch + (size_t)omp_get_thread_num() * k : NULL);
    free(scratch);
    return LMC_OK;
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
        st = gemv(w, x, n, y);
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
    bool quantized = false;
    for (size_t i = 0; i < count; i++) quantized |= w[i]->dt == LMC_DT_U32;
    float *scratch;
    if ((st = row_scratch(quantized && n > 1, k, &scratch))) return st;
#pragma omp parallel for schedule(dynamic, 32) if (total * (int64_t)k > 32768)
    for (int64_t g = 0; g < total; g++) {
        size_t i = 0;
        while (g >= start[i + 1]) i++;
        rows_dot(w[i], g - start[i], x, n, k, y[i],
                 scratch ? scratch + (size_t)omp_get_thread_num() * k : NULL);
    }
    free(scratch);
    for (size_t i = 0; i < count && !st; i++)
        if (bias && bias[i]) st = add_bias(bias[i], (size_t)w[i]->rows, n, y[i]);
    return st;
}
