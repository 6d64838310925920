/* lmc_cu_gemm's dispatch: a one-row product goes through the decode GEMV,
 * every other through cuBLASLt. The same products with the GEMV route on
 * and off: one row agrees within rounding (bf16 output) or 1e-5 (f32,
 * accumulated or not), and more rows give the same bits either way.
 * Exits 77 without a GPU. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_gemm.h"
#include "check.h"
#include "cuda_test_util.h"

/* lmc_cu_gemm with the GEMV route on and off: the same product. */
static void test_dispatch(int m, int n, int k, bool out_f32, bool acc) {
    uint16_t *w = rand_bf16((size_t)n * k, 0.05f, NULL), *x = rand_bf16((size_t)m * k, 2.f, NULL);
    const size_t mn = (size_t)m * n, es = out_f32 ? 4 : 2;
    float *y0 = malloc(mn * 4);
    for (size_t i = 0; i < mn; i++) y0[i] = urand();
    void *dw = to_dev(w, (size_t)n * k * 2), *dx = to_dev(x, (size_t)m * k * 2), *dy[2] = {0};
    float *y[2];
    for (int v = 0; v < 2; v++) {
        lmc_cu_gemm_ctx g;
        CHECK_EQ_INT(lmc_cu_gemm_init(&g, 0), LMC_OK);
        g.gemv_rows = v == 0;
        CHECK_EQ_INT(cudaMalloc(&dy[v], mn * es), 0);
        if (acc) cudaMemcpy(dy[v], y0, mn * 4, cudaMemcpyHostToDevice);
        else cudaMemset(dy[v], 0xff, mn * es); /* poison: NaN */
        CHECK_EQ_INT(lmc_cu_gemm(&g, dx, dw, dy[v], m, n, k, out_f32, acc, NULL), LMC_OK);
        CHECK_EQ_INT(cudaDeviceSynchronize(), 0);
        lmc_cu_gemm_free(&g);
        y[v] = malloc(mn * 4);
        unsigned char *h = malloc(mn * es);
        cudaMemcpy(h, dy[v], mn * es, cudaMemcpyDeviceToHost);
        for (size_t i = 0; i < mn; i++)
            y[v][i] = es == 2 ? lmc_bf16_to_f32(((uint16_t *)h)[i]) : ((float *)h)[i];
        free(h);
    }
    double num = 0, den = 0;
    for (size_t i = 0; i < mn; i++) {
        double d = (double)y[0][i] - y[1][i];
        num += d * d;
        den += (double)y[1][i] * y[1][i];
    }
    double err = isnan(num) ? 1e9 : sqrt(num / (den > 0 ? den : 1));
    printf("gemm m %3d n %5d k %5d f32 %d acc %d: GEMV route vs cuBLASLt %.2e\n", m, n, k,
           out_f32, acc, err);
    if (m == 1)
        CHECK_MSG(err < (out_f32 ? 1e-5 : 5e-3), "gemm %dx%dx%d err %.3e", m, n, k, err);
    else
        CHECK_MSG(memcmp(y[0], y[1], mn * 4) == 0, "gemm %dx%dx%d: %d rows left cuBLASLt", m, n,
                  k, m);
    for (int v = 0; v < 2; v++) cudaFree(dy[v]), free(y[v]);
    cudaFree(dw), cudaFree(dx);
    free(w), free(x), free(y0);
}

int main(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) CHECK_SKIP("no CUDA device");
    test_dispatch(1, 2048, 1024, false, false);
    test_dispatch(1, 2048, 1024, true, true);
    test_dispatch(1, 4100, 14336, true, false);
    test_dispatch(1, 300, 688, false, false);
    test_dispatch(2, 2048, 1024, false, false);
    test_dispatch(64, 1024, 4096, true, true);
    test_dispatch(1, 64, 30000, true, false); /* wider than the GEMV's staging: cuBLASLt */
    return check_summary("test_cuda_gemm");
}
