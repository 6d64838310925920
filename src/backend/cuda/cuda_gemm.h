/* Prefill GEMMs through cuBLASLt: Y[m, N] = X[m, K] . W[N, K]^T with bf16
 * operands, f32 accumulation, and a bf16 or f32 output; with accumulate the
 * product is added to an f32 Y (the residual stream). */
#ifndef LMC_BACKEND_CUDA_GEMM_H
#define LMC_BACKEND_CUDA_GEMM_H
#include "lmc.h"
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdbool.h>
#include <stdint.h>

/* Descriptors and the chosen algorithm of one problem shape, kept so a
 * prefill does not rebuild them (and re-run the heuristic) per layer. */
typedef struct {
    int m, n, k;
    bool out_f32, accumulate, live;
    unsigned long long last_use;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} lmc_cu_gemm_plan;

#define LMC_CU_GEMM_PLANS 16

typedef struct {
    cublasLtHandle_t lt;
    void *workspace;
    size_t workspace_bytes;
    bool tune; /* LMC_CUDA_GEMM_TUNE=1: time the heuristic's candidates once per shape */
    unsigned long long tick;
    lmc_cu_gemm_plan plans[LMC_CU_GEMM_PLANS];
} lmc_cu_gemm_ctx;

lmc_status lmc_cu_gemm_init(lmc_cu_gemm_ctx *g);
void lmc_cu_gemm_free(lmc_cu_gemm_ctx *g);
lmc_status lmc_cu_gemm(lmc_cu_gemm_ctx *g, const uint16_t *x, const uint16_t *w, void *y, int m,
                       int n, int k, bool out_f32, bool accumulate, cudaStream_t s);

#endif
