/* Every cuBLASLt candidate for the prefill GEMM shapes, timed: which tile,
 * split and swizzle the heuristic's first pick is, and how far it is from
 * the fastest. Shapes are given as M,N,K[,f] (f: f32 accumulating output,
 * as the o/down projections into the residual stream).
 *   gemm_candidates 2048,1152,896 2048,896,896,f 2048,9728,896 2048,896,4864,f */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXC 32
#define REPS 7
#define BATCH 20

static int cfg(const cublasLtMatmulAlgo_t *a, cublasLtMatmulAlgoConfigAttributes_t at) {
    int v = 0;
    size_t w = 0;
    cublasLtMatmulAlgoConfigGetAttribute(a, at, &v, sizeof v, &w);
    return v;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* bf16 values in [-1, 1) */
static int fill_random(void *dev, size_t count) {
    unsigned short *h = malloc(count * 2);
    if (!h) return 1;
    unsigned int st = 12345u;
    for (size_t i = 0; i < count; i++) {
        st = st * 1664525u + 1013904223u;
        float v = (float)(st >> 8) / 8388608.f - 1.f;
        unsigned int b;
        memcpy(&b, &v, 4);
        h[i] = (unsigned short)(b >> 16);
    }
    int rc = cudaMemcpy(dev, h, count * 2, cudaMemcpyHostToDevice) != cudaSuccess;
    free(h);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s M,N,K[,f] ...\n", argv[0]);
        return 2;
    }
    cublasLtHandle_t lt;
    if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) return 1;
    size_t wsb = 32u << 20;
    void *ws = NULL;
    if (cudaMalloc(&ws, wsb) != cudaSuccess) return 1;
    cudaStream_t s;
    cudaStreamCreate(&s);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    for (int ai = 1; ai < argc; ai++) {
        int m = 0, n = 0, k = 0;
        char f = 0;
        if (sscanf(argv[ai], "%d,%d,%d,%c", &m, &n, &k, &f) < 3 || m <= 0 || n <= 0 || k <= 0) {
            fprintf(stderr, "bad shape %s\n", argv[ai]);
            return 2;
        }
        const int acc = f == 'f';
        void *x, *w, *y;
        if (cudaMalloc(&x, (size_t)m * k * 2) || cudaMalloc(&w, (size_t)n * k * 2) ||
            cudaMalloc(&y, (size_t)m * n * 4))
            return 1;
        /* random values: zeros would draw less power and run at higher clocks */
        if (fill_random(x, (size_t)m * k) || fill_random(w, (size_t)n * k)) return 1;
        cudaMemset(y, 0, (size_t)m * n * 4);
        cublasLtMatmulDesc_t op;
        cublasLtMatrixLayout_t la, lb, lc;
        cublasLtMatmulPreference_t pref;
        const cublasOperation_t tr = CUBLAS_OP_T;
        cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof tr);
        cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, k, n, k);
        cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, k, m, k);
        cublasLtMatrixLayoutCreate(&lc, acc ? CUDA_R_32F : CUDA_R_16BF, n, m, n);
        cublasLtMatmulPreferenceCreate(&pref);
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                             &wsb, sizeof wsb);
        cublasLtMatmulHeuristicResult_t c[MAXC];
        int found = 0;
        cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, MAXC, c, &found);
        printf("shape m=%d n=%d k=%d %s: %d candidates (%.2f GFLOP)\n", m, n, k,
               acc ? "f32 acc" : "bf16", found, 2.0 * m * n * k / 1e9);
        const float alpha = 1.f, beta = acc ? 1.f : 0.f;
        float first = 0.f;
        for (int a = 0; a < found; a++) {
            /* REPS timings of BATCH back-to-back launches (one launch alone
             * would mostly time the launch) */
            float t[REPS];
            int ok = 1;
            for (int r = 0; r < REPS + 1 && ok; r++) {
                cudaEventRecord(e0, s);
                for (int b = 0; b < BATCH && ok; b++)
                    ok = cublasLtMatmul(lt, op, &alpha, w, la, x, lb, &beta, y, lc, y, lc,
                                        &c[a].algo, ws, wsb, s) == CUBLAS_STATUS_SUCCESS;
                cudaEventRecord(e1, s);
                cudaEventSynchronize(e1);
                if (r >= 1) {
                    cudaEventElapsedTime(&t[r - 1], e0, e1);
                    t[r - 1] /= BATCH;
                }
            }
            if (!ok) {
                printf("  #%-2d failed\n", a);
                continue;
            }
            qsort(t, REPS, sizeof t[0], cmp_float);
            float med = t[REPS / 2] * 1000.f;
            if (a == 0) first = med;
            printf("  #%-2d %7.1f us %5.0f TFLOP/s %5.2fx  algo %d tile %d stages %d splitk %d "
                   "red %d swz %d cluster %d inner %d waves %.2f ws %zu\n",
                   a, med, 2.0 * m * n * k / (med * 1e-6) / 1e12, first / med,
                   cfg(&c[a].algo, CUBLASLT_ALGO_CONFIG_ID),
                   cfg(&c[a].algo, CUBLASLT_ALGO_CONFIG_TILE_ID),
                   cfg(&c[a].algo, CUBLASLT_ALGO_CONFIG_STAGES_ID),
                   cfg(&c[a].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
                   cfg(&c[a].algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME),
                   cfg(&c[a].algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING),
                   cfg(&c[a].algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID),
                   cfg(&c[a].algo, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID), c[a].wavesCount,
                   c[a].workspaceSize);
        }
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatrixLayoutDestroy(lc);
        cublasLtMatrixLayoutDestroy(lb);
        cublasLtMatrixLayoutDestroy(la);
        cublasLtMatmulDescDestroy(op);
        cudaFree(x);
        cudaFree(w);
        cudaFree(y);
    }
    cudaFree(ws);
    cublasLtDestroy(lt);
    return 0;
}
