#include "backend/cuda/cuda_gemm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_kernels.h"
#include "base/error.h"

#define GEMM_WORKSPACE (32u << 20)
#define TUNE_CANDIDATES 8
#define TUNE_MEMO 64

lmc_status lmc_cu_gemm_init(lmc_cu_gemm_ctx *g, int tune_rows) {
    memset(g, 0, sizeof *g);
    const char *t = getenv("LMC_CUDA_GEMM_TUNE");
    g->tune_rows = t && t[0] == '0' ? 0 : t && t[0] == '1' ? -1 : tune_rows;
    const char *gr = getenv("LMC_CUDA_GEMV_ROWS");
    int dev = 0;
    g->gemv_rows = !(gr && gr[0] == '0') && cudaGetDevice(&dev) == cudaSuccess &&
                cudaDeviceGetAttribute(&g->num_sms, cudaDevAttrMultiProcessorCount, dev) ==
                    cudaSuccess &&
                g->num_sms > 0;
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

/* One pick per shape and device for the whole process: two models of one
 * checkpoint then run the same algorithms and agree bit for bit, and a
 * shape is timed once. The lock is held while a shape is timed. */
typedef struct {
    int dev, m, n, k;
    bool out_f32, accumulate;
    cublasLtMatmulAlgo_t algo;
} tune_memo;
static pthread_mutex_t memo_lock = PTHREAD_MUTEX_INITIALIZER;
static tune_memo memo[TUNE_MEMO];
static int memo_len;

static const tune_memo *memo_find(int dev, const lmc_cu_gemm_plan *p) {
    for (int i = 0; i < memo_len; i++)
        if (memo[i].dev == dev && memo[i].m == p->m && memo[i].n == p->n && memo[i].k == p->k &&
            memo[i].out_f32 == p->out_f32 && memo[i].accumulate == p->accumulate)
            return &memo[i];
    return NULL;
}

/* Mean time of one launch over `reps` back-to-back launches, in ms; < 0 on
 * failure. Back-to-back, as a prefill runs them: a lone launch's time is
 * mostly its ramp-up. */
static float time_algo(lmc_cu_gemm_ctx *g, const lmc_cu_gemm_plan *p,
                       const cublasLtMatmulAlgo_t *algo, const uint16_t *x, const uint16_t *w,
                       void *scratch, cudaEvent_t e0, cudaEvent_t e1, int reps, cudaStream_t s) {
    const float alpha = 1.f, beta = p->accumulate ? 1.f : 0.f;
    float ms = 0.f;
    if (cudaEventRecord(e0, s) != cudaSuccess) return -1.f;
    for (int r = 0; r < reps; r++)
        if (cublasLtMatmul(g->lt, p->op, &alpha, w, p->la, x, p->lb, &beta, scratch, p->lc,
                           scratch, p->lc, algo, g->workspace, g->workspace_bytes,
                           s) != CUBLAS_STATUS_SUCCESS)
            return -1.f;
    if (cudaEventRecord(e1, s) != cudaSuccess || cudaEventSynchronize(e1) != cudaSuccess ||
        cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
        return -1.f;
    return ms / (float)reps;
}

/* The fastest of the heuristic's candidates, each timed (best of 3 runs of
 * 5 launches) into a scratch output, so an accumulating product leaves Y
 * alone. Another candidate must beat the heuristic's first by 3% (timing
 * noise). Falls back to the first on any failure, and while the stream is
 * being captured. */
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
    const size_t bytes = (size_t)p->m * p->n * (p->out_f32 ? 4 : 2);
    if (cudaMalloc(&scratch, bytes) != cudaSuccess ||
        cudaMemsetAsync(scratch, 0, bytes, s) != cudaSuccess)
        goto out;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) goto out;
    float best = -1.f;
    for (int a = 0; a < found; a++) {
        float fastest = -1.f;
        if (time_algo(g, p, &cand[a].algo, x, w, scratch, e0, e1, 1, s) < 0.f) continue;
        for (int r = 0; r < 3; r++) {
            const float ms = time_algo(g, p, &cand[a].algo, x, w, scratch, e0, e1, 5, s);
            if (ms < 0.f) {
                fastest = -1.f;
                break;
            }
            if (fastest < 0.f || ms < fastest) fastest = ms;
        }
        if (fastest >= 0.f && (best < 0.f || fastest < best * 0.97f)) {
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

/* The algorithm for p: the process's earlier pick for the shape, else the
 * heuristic's candidates, timed when tuning applies. */
static lmc_status choose_algo(lmc_cu_gemm_ctx *g, lmc_cu_gemm_plan *p,
                              cublasLtMatmulPreference_t pref, const uint16_t *x,
                              const uint16_t *w, cudaStream_t s) {
    bool tune = g->tune_rows < 0 || (g->tune_rows > 0 && p->m == g->tune_rows);
    cublasLtMatmulHeuristicResult_t cand[TUNE_CANDIDATES];
    int found = 0, dev = 0;
    if (tune && cudaGetDevice(&dev) != cudaSuccess) tune = false;
    if (tune) pthread_mutex_lock(&memo_lock);
    const tune_memo *known = tune ? memo_find(dev, p) : NULL;
    lmc_status rc = LMC_OK;
    if (known) {
        p->algo = known->algo;
        goto done;
    }
    if (tune && memo_len == TUNE_MEMO) { /* a shape not remembered is not timed again and again */
        pthread_mutex_unlock(&memo_lock);
        tune = false;
    }
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(g->lt, p->op, p->la, p->lb, p->lc, p->lc,
                                                       pref, tune ? TUNE_CANDIDATES : 1, cand,
                                                       &found);
    if (st != CUBLAS_STATUS_SUCCESS || found < 1) {
        rc = lmc_err(LMC_ERR_DEVICE, "cuBLASLt: no algorithm for %dx%dx%d (status %d)", p->m,
                     p->n, p->k, (int)st);
        goto done;
    }
    int pick = tune ? tune_pick(g, p, cand, found, x, w, s) : 0;
    p->algo = cand[pick].algo;
    enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    /* a capture could not time: its fallback pick is not remembered */
    if (tune && memo_len < TUNE_MEMO && cudaStreamIsCapturing(s, &cs) == cudaSuccess &&
        cs == cudaStreamCaptureStatusNone)
        memo[memo_len++] = (tune_memo){dev, p->m, p->n, p->k, p->out_f32, p->accumulate,
                                       p->algo};
done:
    if (tune) pthread_mutex_unlock(&memo_lock);
    return rc;
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
    rc = choose_algo(g, p, pref, x, w, s);
#undef LT
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    return rc;
}

/* A one-row product through the decode GEMV, which holds X in 48 KiB of
 * shared memory (K <= 24,576) and never accumulates into a bf16 output.
 * *done = false: not its product. */
static lmc_status gemm_one_row(lmc_cu_gemm_ctx *g, const uint16_t *x, const uint16_t *w, void *y,
                               int m, int n, int k, bool out_f32, bool accumulate,
                               cudaStream_t s, bool *done) {
    *done = false;
    if (!g->gemv_rows || m != 1 || k % 8 || k > 24 * 1024 || (accumulate && !out_f32))
        return LMC_OK;
    const int mode = !out_f32 ? LMC_GEMV_OUT_BF16 : accumulate ? LMC_GEMV_OUT_F32_ADD
                                                               : LMC_GEMV_OUT_F32;
    int e = lmc_cu_gemv(w, n, k, LMC_GEMV_IN_BF16, x, NULL, 0.f, NULL, mode, y, g->num_sms,
                        (lmc_cu_stream)s);
    *done = true;
    if (e != 0)
        return lmc_err(LMC_ERR_DEVICE, "GEMV %dx%d: %s", n, k, cudaGetErrorString((cudaError_t)e));
    return LMC_OK;
}

lmc_status lmc_cu_gemm(lmc_cu_gemm_ctx *g, const uint16_t *x, const uint16_t *w, void *y, int m,
                       int n, int k, bool out_f32, bool accumulate, cudaStream_t s) {
    bool done;
    lmc_status rs = gemm_one_row(g, x, w, y, m, n, k, out_f32, accumulate, s, &done);
    if (done) return rs;
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
