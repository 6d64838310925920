/* MLX affine-quantized weights: checks and dequantization to ordinary
 * matrices (see quantized.c for the format and its limits). */
#ifndef LMC_MODELS_QUANTIZED_H
#define LMC_MODELS_QUANTIZED_H
#include "backend/cpu/cpu_ops.h"
#include "formats/safetensors.h"
#include "lmc.h"
#include <stdbool.h>
#include <stdint.h>

/* One quantized [rows, cols] matrix: packed is rows * (cols*bits/32) words
 * (the first value of a word in its lowest bits); scales and biases are
 * [rows, cols/group_size] matrices of dtype F32, F16 or BF16. */
typedef struct {
    int64_t rows, cols;
    int64_t bits, group_size;
    const uint32_t *packed;
    lmc_cpu_mat scales, biases;
} lmc_mlx_quant;

/* bits in {2, 4, 8} and group_size in {32, 64, 128}; otherwise
 * LMC_ERR_UNSUPPORTED naming `what` and the value (bits 3 and 6 included:
 * their words straddle value boundaries). */
lmc_status lmc_mlx_check_params(int64_t bits, int64_t group_size, const char *what);

/* w[r][c] = scales[r][c/g] * q[r][c] + biases[r][c/g], computed in fp32 and
 * rounded once to out_dt (F32: exact for bf16/f16 scales; BF16: nearest
 * even). out holds rows*cols elements of out_dt. Checks the parameters,
 * the dimensions (positive, cols a multiple of group_size, sizes without
 * overflow) and the scales/biases shapes; `what` names the module. */
lmc_status lmc_mlx_dequantize(const lmc_mlx_quant *q, lmc_dtype out_dt, void *out,
                              const char *what);

/* Bind "<module>.weight" (U32), "<module>.scales" and "<module>.biases" of
 * `set` as a [rows, cols] matrix: with `packed` a quantized lmc_cpu_mat
 * over the mapped words (its lmc_cpu_quant, and a copy of misaligned
 * words, appended to *owned), else dequantized into an F32 buffer aligned
 * to 64 bytes, appended to *owned (the caller frees either). bits and
 * group_size > 0 are the expected setting (shapes checked against it);
 * 0 reads them off the tensor shapes (per-module overrides) and checks
 * that they form a supported setting. Errors name the tensor and the
 * expected shape. */
lmc_status lmc_mlx_bind(const lmc_st_set *set, const char *module, int64_t rows, int64_t cols,
                        int64_t bits, int64_t group_size, bool packed, void ***owned,
                        size_t *n_owned, lmc_cpu_mat *out);

/* Quantize a row-major fp32 [rows, cols] matrix (cols a multiple of
 * group): packed holds rows * cols * bits / 32 words, scales and biases
 * rows * cols / group bf16 values (quantize.c gives the rule). */
lmc_status lmc_mlx_quantize(const float *w, int64_t rows, int64_t cols, int bits, int group,
                            uint32_t *packed, uint16_t *scales, uint16_t *biases);

#endif
