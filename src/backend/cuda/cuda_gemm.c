#include "backend/cuda/cuda_gemm.h"

#include "base/error.h"

#define GEMM_WORKSPACE (32u << 20)

lmc_status lmc_cu_gemm_init(lmc_cu_gemm_ctx *g) {
    g->lt = NULL;
    g->workspace = NULL;
    g->workspace_bytes = 0;
    cublasStatus_t st = cublasLtCreate(&g->lt);
    if (st != CUBLAS_STATUS_SUCCESS)
        return lmc_err(LMC_ERR_DEVICE, "cublasLtCreate failed (status %d)", (int)st);
    cudaError_t e = cudaMalloc(&g->workspace, GEMM_WORKSPACE);
    if (e != cudaSuccess) {
        cublasLtDestroy(g->lt);
        g->lt = NULL;
        return lmc_err(LMC_ERR_DEVICE, "cuBLASLt workspace (%u bytes): %s", GEMM_WORKSPACE,
                       cudaGetErrorString(e));
    }
    g->workspace_bytes = GEMM_WORKSPACE;
    return LMC_OK;
}

void lmc_cu_gemm_free(lmc_cu_gemm_ctx *g) {
    if (g->workspace) cudaFree(g->workspace);
    if (g->lt) cublasLtDestroy(g->lt);
    g->workspace = NULL;
    g->lt = NULL;
}

/* Column-major view: Y^T [n x m] = W^T-as-stored [k x n]^T . X^T [k x m]. */
lmc_status lmc_cu_gemm(lmc_cu_gemm_ctx *g, const uint16_t *x, const uint16_t *w, void *y, int m,
                       int n, int k, bool out_f32, bool accumulate, cudaStream_t s) {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    lmc_status rc = LMC_OK;
    cublasStatus_t st;
    const cudaDataType_t ct = out_f32 ? CUDA_R_32F : CUDA_R_16BF;
    const cublasOperation_t tr = CUBLAS_OP_T;
    float alpha = 1.f, beta = accumulate ? 1.f : 0.f;

#define LT(call)                                                                         \
    do {                                                                                 \
        st = (call);                                                                     \
        if (st != CUBLAS_STATUS_SUCCESS) {                                               \
            rc = lmc_err(LMC_ERR_DEVICE, "cuBLASLt %s failed (status %d) for %dx%dx%d", #call, \
                         (int)st, m, n, k);                                              \
            goto done;                                                                   \
        }                                                                                \
    } while (0)

    LT(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof(tr)));
    LT(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, k, n, k));
    LT(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, k, m, k));
    LT(cublasLtMatrixLayoutCreate(&lc, ct, n, m, n));
    LT(cublasLtMatmulPreferenceCreate(&pref));
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                            &g->workspace_bytes, sizeof(g->workspace_bytes)));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    LT(cublasLtMatmulAlgoGetHeuristic(g->lt, op, la, lb, lc, lc, pref, 1, &heur, &found));
    if (found < 1) {
        rc = lmc_err(LMC_ERR_DEVICE, "cuBLASLt: no algorithm for %dx%dx%d", m, n, k);
        goto done;
    }
    LT(cublasLtMatmul(g->lt, op, &alpha, w, la, x, lb, &beta, y, lc, y, lc, &heur.algo,
                      g->workspace, g->workspace_bytes, s));
#undef LT
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return rc;
}
