/* CPU matrix products on MLX affine-quantized weights kept packed (the
 * kernels dequantize on the fly) against the same weights dequantized to
 * F32 at load and against BF16, in one run: bytes held and time per
 * product for the decode GEMV (1 row) and a prefill block.
 *   cpu_quant_bench [ROWS=4096] [COLS=4096] [BITS=4] [GROUP=64] [PREFILL_ROWS=64] [REPS=15] */
#include "backend/cpu/cpu_ops.h"
#include "models/quantized.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint32_t lcg(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s;
}

/* Median seconds of one product y = x W^T with n input rows. */
static double time_matmul(const lmc_cpu_mat *w, const float *x, size_t n, float *y, int reps) {
    double t[64];
    for (int r = 0; r < reps + 2; r++) {
        double t0 = now();
        if (lmc_cpu_matmul(w, NULL, x, n, y)) {
            fprintf(stderr, "matmul failed\n");
            exit(1);
        }
        if (r >= 2) t[r - 2] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    return t[reps / 2];
}

int main(int argc, char **argv) {
    const int64_t rows = argc > 1 ? atol(argv[1]) : 4096, cols = argc > 2 ? atol(argv[2]) : 4096;
    const int bits = argc > 3 ? atoi(argv[3]) : 4, group = argc > 4 ? atoi(argv[4]) : 64;
    const size_t pf = argc > 5 ? (size_t)atol(argv[5]) : 64;
    int reps = argc > 6 ? atoi(argv[6]) : 15;
    if (reps < 1 || reps > 60 || rows <= 0 || cols <= 0 || pf < 9 ||
        lmc_mlx_check_params(bits, group, "bench") || cols % group) {
        fprintf(stderr, "bad arguments: %s\n", "ROWS COLS BITS GROUP PREFILL_ROWS(>8) REPS(1-60)");
        return 2;
    }
    const int64_t ng = cols / group, nw = rows * cols * bits / 32;
    uint32_t st = 7;
    uint32_t *words = malloc((size_t)nw * 4);
    uint16_t *scales = malloc((size_t)(rows * ng) * 2), *biases = malloc((size_t)(rows * ng) * 2);
    float *dense = malloc((size_t)(rows * cols) * 4);
    uint16_t *half = malloc((size_t)(rows * cols) * 2);
    float *x = malloc(pf * (size_t)cols * 4), *y = malloc(pf * (size_t)rows * 4);
    if (!words || !scales || !biases || !dense || !half || !x || !y) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < nw; i++) words[i] = lcg(&st);
    for (int64_t i = 0; i < rows * ng; i++) {
        scales[i] = lmc_f32_to_bf16((float)(lcg(&st) % 100 + 1) * 1e-4f);
        biases[i] = lmc_f32_to_bf16(-(float)(lcg(&st) % 100) * 1e-3f);
    }
    for (size_t i = 0; i < pf * (size_t)cols; i++) x[i] = (float)(lcg(&st) % 2001) * 1e-3f - 1.f;
    lmc_cpu_quant q = {.bits = bits,
                       .group_size = group,
                       .scales_dt = LMC_DT_BF16,
                       .biases_dt = LMC_DT_BF16,
                       .scales = scales,
                       .biases = biases};
    lmc_cpu_mat packed = {.dt = LMC_DT_U32, .data = words, .rows = rows, .cols = cols, .quant = &q};
    for (int64_t r = 0; r < rows; r++) lmc_cpu_widen(&packed, r, 0, (size_t)cols, dense + r * cols);
    for (int64_t i = 0; i < rows * cols; i++) half[i] = lmc_f32_to_bf16(dense[i]);
    lmc_cpu_mat f32 = {.dt = LMC_DT_F32, .data = dense, .rows = rows, .cols = cols};
    lmc_cpu_mat bf16 = {.dt = LMC_DT_BF16, .data = half, .rows = rows, .cols = cols};

    const struct {
        const char *name;
        const lmc_cpu_mat *w;
        double bytes;
    } kinds[] = {
        {"f32 (dequantized at load)", &f32, (double)rows * (double)cols * 4},
        {"bf16", &bf16, (double)rows * (double)cols * 2},
        {"packed", &packed, (double)nw * 4 + (double)(rows * ng) * 4},
    };
    printf("[%lld x %lld] %d-bit group %d (bf16 scales/biases); median of %d\n",
           (long long)rows, (long long)cols, bits, group, reps);
    printf("%-27s %10s %12s %10s %14s %10s\n", "weights", "MB held", "decode ms", "GB/s",
           "prefill ms", "GFLOP/s");
    double dec[3], pre[3];
    for (int k = 0; k < 3; k++) {
        dec[k] = time_matmul(kinds[k].w, x, 1, y, reps);
        pre[k] = time_matmul(kinds[k].w, x, pf, y, reps < 5 ? reps : 5);
        printf("%-27s %10.1f %12.3f %10.1f %14.2f %10.1f\n", kinds[k].name, kinds[k].bytes / 1e6,
               dec[k] * 1e3, kinds[k].bytes / dec[k] / 1e9, pre[k] * 1e3,
               2.0 * (double)pf * (double)rows * (double)cols / pre[k] / 1e9);
    }
    printf("packed vs f32: %.2fx less memory, decode %.2fx, prefill (%zu rows) %.2fx\n",
           kinds[0].bytes / kinds[2].bytes, dec[0] / dec[2], pf, pre[0] / pre[2]);
    printf("packed vs bf16: %.2fx less memory, decode %.2fx, prefill %.2fx\n",
           kinds[1].bytes / kinds[2].bytes, dec[1] / dec[2], pre[1] / pre[2]);
    free(words), free(scales), free(biases), free(dense), free(half), free(x), free(y);
    return 0;
}
