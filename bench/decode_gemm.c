/* The products of batched decode, one at a time, as lmc_cu_gemm runs them
 * (one row: the decode GEMV; more: cuBLASLt's heuristic pick) against
 * cuBLASLt alone, tuned and with its heuristic's pick, at each row count, with the weight-read rate as a
 * fraction of the copy bandwidth measured in the same run (the hardware
 * limit: at these row counts the products are bound by reading W).
 *   decode_gemm [ROWS=1,8,32,64,128] [SHAPES=N,K[,f]:...]
 * Default shapes: Llama-3.1-8B's qkv 6144x4096, o 4096x4096 (f32 +=),
 * gate/up 28672x4096, down 4096x14336 (f32 +=), lm_head 128256x4096 (f32).
 * Each product is timed over 20 back-to-back launches on fresh weight
 * copies (several copies so no weight is still in L2), median of 7. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_gemm.h"
#include "copy_bandwidth.h"

#define REPS 7
#define LAUNCHES 20

typedef struct {
    int n, k;
    bool f32;
    const char *name;
} shape;

/* seconds per product, median over REPS of LAUNCHES launches cycling over
 * `copies` weight copies */
static double time_gemm(lmc_cu_gemm_ctx *g, uint16_t **w, int copies, const uint16_t *x, void *y,
                        int m, const shape *s) {
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    double t[REPS];
    for (int r = -1; r < REPS; r++) {
        cudaEventRecord(e0, 0);
        for (int i = 0; i < LAUNCHES; i++)
            if (lmc_cu_gemm(g, x, w[i % copies], y, m, s->n, s->k, s->f32, s->f32, 0)) {
                fprintf(stderr, "gemm %dx%dx%d failed: %s\n", m, s->n, s->k, lmc_last_error());
                exit(1);
            }
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (r >= 0) t[r] = ms / 1e3 / LAUNCHES;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return bench_median(t, REPS);
}

int main(int argc, char **argv) {
    const char *rows_arg = argc > 1 ? argv[1] : "1,8,32,64,128";
    shape shapes[16] = {{6144, 4096, false, "qkv"},
                        {4096, 4096, true, "o"},
                        {28672, 4096, false, "gate_up"},
                        {4096, 14336, true, "down"},
                        {128256, 4096, true, "lm_head"}};
    int ns = 5;
    if (argc > 2) {
        ns = 0;
        char *dup = strdup(argv[2]);
        for (char *tok = strtok(dup, ":"); tok && ns < 16; tok = strtok(NULL, ":")) {
            shape s = {0, 0, false, "custom"};
            char f = 0;
            if (sscanf(tok, "%d,%d,%c", &s.n, &s.k, &f) < 2) return 2;
            s.f32 = f == 'f';
            shapes[ns++] = s;
        }
    }
    const double bw = bench_copy_bandwidth();
    /* as the model sets it up (tuning only its 2,048-row chunks); tuned
     * cuBLASLt; the heuristic's pick */
    lmc_cu_gemm_ctx ours, lt, heur;
    if (lmc_cu_gemm_init(&ours, 2048) || lmc_cu_gemm_init(&lt, -1) ||
        lmc_cu_gemm_init(&heur, 0))
        return 1;
    lt.gemv_rows = heur.gemv_rows = false;
    printf("copy bandwidth %.3f TB/s\n", bw / 1e12);
    printf("| product | rows | lmc us | cuBLASLt tuned us | cuBLASLt heuristic us | speedup vs "
           "tuned | lmc %% of copy bw | tuned %% | heuristic %% |\n"
           "|---|---|---|---|---|---|---|---|---|\n");
    for (int si = 0; si < ns; si++) {
        const shape *s = &shapes[si];
        const size_t wbytes = (size_t)s->n * s->k * 2;
        int copies = (int)(200e6 / (double)wbytes) + 1; /* > L2 (50 MB) together */
        if (copies > LAUNCHES) copies = LAUNCHES;
        uint16_t *w[LAUNCHES];
        for (int c = 0; c < copies; c++) {
            if (cudaMalloc((void **)&w[c], wbytes)) return 1;
            cudaMemset(w[c], 0x3c, wbytes); /* bf16 ~0.0115: finite sums */
        }
        void *x = NULL, *y = NULL;
        cudaMalloc(&x, (size_t)128 * s->k * 2);
        cudaMalloc(&y, (size_t)128 * s->n * 4);
        cudaMemset(x, 0x3c, (size_t)128 * s->k * 2);
        cudaMemset(y, 0, (size_t)128 * s->n * 4);
        char *rows = strdup(rows_arg);
        for (char *tok = strtok(rows, ","); tok; tok = strtok(NULL, ",")) {
            int m = atoi(tok);
            double a = time_gemm(&ours, w, copies, x, y, m, s);
            double b = time_gemm(&lt, w, copies, x, y, m, s);
            double c = time_gemm(&heur, w, copies, x, y, m, s);
            printf("| %s %dx%d | %d | %.1f | %.1f | %.1f | %.2fx | %.1f%% | %.1f%% | %.1f%% |\n",
                   s->name, s->n, s->k, m, a * 1e6, b * 1e6, c * 1e6, b / a,
                   100.0 * wbytes / a / bw, 100.0 * wbytes / b / bw, 100.0 * wbytes / c / bw);
            fflush(stdout);
        }
        free(rows);
        for (int c = 0; c < copies; c++) cudaFree(w[c]);
        cudaFree(x);
        cudaFree(y);
    }
    lmc_cu_gemm_free(&ours);
    lmc_cu_gemm_free(&lt);
    lmc_cu_gemm_free(&heur);
    return 0;
}
