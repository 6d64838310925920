#include "backend/cuda/cuda_gemm.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"

#define GEMM_WORKSPACE (32u << 20)
#define TUNE_CANDIDATES 8

lmc_status lmc_cu_gemm_init(lmc_cu_gemm_ctx *g) {
    memset(g, 0, sizeof *g);
    const char *t = getenv("LMC_CUDA_GEMM_TUNE");
    g->tune = t && t[0] == '1';
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

static void plan_release(lmc_cu_gemm_plan *p) {
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    memset(p, 0, sizeof *p);
}

void lmc_cu_gemm_free(lmc_cu_gemm_ctx *g) {
    for (int i = 0; i < LMC_CU_GEMM_PLANS; i++) plan_release(&g->plans[i]);
    if (g->workspace) cudaFree(g->workspace);
    if (g->lt) cublasLtDestroy(g->lt);
    g->workspace = NULL;
    g->lt = NULL;
}

/* The fastest of the heuristic's candidates, by timing each into a scratch
 * output (so an accumulating product leaves Y alone). Falls back to the
 * first candidate on any failure. Not while the stream is being captured. */
static int tune_pick(lmc_cu_gemm_ctx *g, lmc_cu_gemm_plan *p,
                     const cublasLtMatmulHeuristicResult_t *cand, int found, const uint16_t *x,
                     const uint16_t *w, cudaStream_t s) {
    enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (found < 2 || cudaStreamIsCapturing(s, &cs) != cudaSuccess ||
        cs != cudaStreamCaptureStatusNone)
        return 0;
    void *scratch = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    int pick = 0;
    if (cudaMalloc(&scratch, (size_t)p->m * p->n * 4) != cudaSuccess) goto out;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) goto out;
    const float alpha = 1.f, beta = p->accumulate ? 1.f : 0.f;
    float best = -1.f;
    for (int a = 0; a < found; a++) {
        float fastest = -1.f;
        for (int r = 0; r < 4; r++) { /* the first run warms up */
            float ms = 0.f;
            cudaEventRecord(e0, s);
            cublasStatus_t q =
                cublasLtMatmul(g->lt, p->op, &alpha, w, p->la, x, p->lb, &beta, scratch, p->lc,
                               scratch, p->lc, &cand[a].algo, g->workspace, g->workspace_bytes, s);
            cudaEventRecord(e1, s);
            if (q != CUBLAS_STATUS_SUCCESS || cudaEventSynchronize(e1) != cudaSuccess ||
                cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) {
                fastest = -1.f;
                break;
            }
            if (r > 0 && (fastest < 0.f || ms < fastest)) fastest = ms;
        }
        /* a candidate must beat the best so far by 2% (timing noise) */
        if (fastest >= 0.f && (best < 0.f || fastest < best * 0.98f)) {
            best = fastest;
            pick = a;
        }
    }
out:
    cudaGetLastError();
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (scratch) cudaFree(scratch);
    return pick;
}

/* Column-major view: Y^T [n x m] = W^T-as-stored [k x n]^T . X^T [k x m]. */
static lmc_status plan_build(lmc_cu_gemm_ctx *g, lmc_cu_gemm_plan *p, const uint16_t *x,
                             const uint16_t *w, cudaStream_t s) {
    cublasLtMatmulPreference_t pref = NULL;
    lmc_status rc = LMC_OK;
    cublasStatus_t st;
    const cudaDataType_t ct = p->out_f32 ? CUDA_R_32F : CUDA_R_16BF;
    const cublasOperation_t tr = CUBLAS_OP_T;
    const int m = p->m, n = p->n, k = p->k;

#define LT(call)                                                                         \
    do {                                                                                 \
        st = (call);                                                                     \
        if (st != CUBLAS_STATUS_SUCCESS) {                                               \
            rc = lmc_err(LMC_ERR_DEVICE, "cuBLASLt %s failed (status %d) for %dx%dx%d", #call, \
                         (int)st, m, n, k);                                              \
            goto done;                                                                   \
        }                                                                                \
    } while (0)

    LT(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof(tr)));
    LT(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, k, n, k));
    LT(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, k, m, k));
    LT(cublasLtMatrixLayoutCreate(&p->lc, ct, n, m, n));
    LT(cublasLtMatmulPreferenceCreate(&pref));
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                            &g->workspace_bytes, sizeof(g->workspace_bytes)));
    cublasLtMatmulHeuristicResult_t cand[TUNE_CANDIDATES];
    int found = 0;
    LT(cublasLtMatmulAlgoGetHeuristic(g->lt, p->op, p->la, p->lb, p->lc, p->lc, pref,
                                      g->tune ? TUNE_CANDIDATES : 1, cand, &found));
    if (found < 1) {
        rc = lmc_err(LMC_ERR_DEVICE, "cuBLASLt: no algorithm for %dx%dx%d", m, n, k);
        goto done;
    }
    p->algo = cand[g->tune ? tune_pick(g, p, cand, found, x, w, s) : 0].algo;
#undef LT
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    return rc;
}

lmc_status lmc_cu_gemm(lmc_cu_gemm_ctx *g, const uint16_t *x, const uint16_t *w, void *y, int m,
                       int n, int k, bool out_f32, bool accumulate, cudaStream_t s) {
    lmc_cu_gemm_plan *p = NULL, *victim = &g->plans[0];
    for (int i = 0; i < LMC_CU_GEMM_PLANS && !p; i++) {
        lmc_cu_gemm_plan *c = &g->plans[i];
        if (c->live && c->m == m && c->n == n && c->k == k && c->out_f32 == out_f32 &&
            c->accumulate == accumulate)
            p = c;
        else if (!c->live || (victim->live && c->last_use < victim->last_use))
            victim = c;
    }
    if (!p) { /* least recently used slot */
        plan_release(victim);
        p = victim;
        p->m = m, p->n = n, p->k = k, p->out_f32 = out_f32, p->accumulate = accumulate;
        lmc_status rc = plan_build(g, p, x, w, s);
        if (rc) {
            plan_release(p);
            return rc;
        }
        p->live = true;
    }
    p->last_use = ++g->tick;
    const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
    cublasStatus_t st = cublasLtMatmul(g->lt, p->op, &alpha, w, p->la, x, p->lb, &beta, y, p->lc,
                                       y, p->lc, &p->algo, g->workspace, g->workspace_bytes, s);
    if (st != CUBLAS_STATUS_SUCCESS)
        return lmc_err(LMC_ERR_DEVICE, "cuBLASLt matmul failed (status %d) for %dx%dx%d",
                       (int)st, m, n, k);
    return LMC_OK;
}
