/* GEMMs of the prefill and of batched decode: Y[m, N] = X[m, K] . W[N, K]^T
 * with bf16 operands, f32 accumulation, and a bf16 or f32 output; with
 * accumulate the product is added to an f32 Y (the residual stream).
 * A product of one row (batched decode at batch 1, a one-token prefill)
 * goes to the decode GEMV (gemv.cu), which streams W at 87-104% of the
 * copy bandwidth where cuBLASLt reaches 67-98% (bench/decode_gemm.c);
 * everything else goes through cuBLASLt, which at 8-128 rows already
 * streams W at 65-93% (a tensor-core kernel of our own was slower). */
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
    /* products of exactly this many rows time the heuristic's candidates
     * (once per shape and process); 0 none, -1 all */
    int tune_rows;
    /* one-row products through the GEMV (LMC_CUDA_GEMV_ROWS=0: cuBLASLt) */
    bool gemv_rows;
    int num_sms;
    unsigned long long tick;
    lmc_cu_gemm_plan plans[LMC_CU_GEMM_PLANS];
} lmc_cu_gemm_ctx;

/* tune_rows: the row count whose products are tuned (the model's full
 * prefill chunk: the shape every long prompt repeats, so the one-time
 * timing pays off); LMC_CUDA_GEMM_TUNE=0 turns tuning off, =1 on for all. */
lmc_status lmc_cu_gemm_init(lmc_cu_gemm_ctx *g, int tune_rows);
void lmc_cu_gemm_free(lmc_cu_gemm_ctx *g);
lmc_status lmc_cu_gemm(lmc_cu_gemm_ctx *g, const uint16_t *x, const uint16_t *w, void *y, int m,
                       int n, int k, bool out_f32, bool accumulate, cudaStream_t s);

#endif
