/* The paged attention of batched execution (paged_attn.cu) against a
 * float64 host reference: rows of different sequences at different
 * positions, block tables that are shuffled (blocks out of order), a
 * window, head sizes 64 and 128 (GQA groups 1-8), 96 (Phi-3-mini's, three
 * values a lane) and 256 (Gemma 3's, groups up to 4), and each split count
 * (1: one block per row and KV head; more: partials merged by a second
 * kernel) giving the same result within rounding. Also the flash prefill
 * kernel over a block table (lmc_cu_attn_prefill_paged: one sequence's
 * prompt rows in a batched step), with a window whose given-back blocks
 * hold NaN (they must not be read) and with softcapping. Exits 77 without
 * a GPU. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend/cuda/cuda_kernels.h"
#include "check.h"
#include "cuda_test_util.h"

/* The float64 attention of one query row q (d values, bf16) over positions
 * lo..pos of one sequence, whose KV head kh's rows are found through its
 * block table tab (blocks of be elements, bt positions); scores scaled,
 * then capped at softcap * tanh(s / softcap) where softcap > 0. sc: room
 * for pos + 1 scores. */
static void ref_row(const uint16_t *q, const uint16_t *kp, const uint16_t *vp,
                    const int32_t *tab, size_t be, int bt, int kh, int d, int lo, int pos,
                    float scale, float softcap, double *sc, double *out) {
    double mx = -INFINITY, sum = 0;
    for (int p = lo; p <= pos; p++) {
        const size_t at = (size_t)tab[p / bt] * be + ((size_t)kh * bt + p % bt) * d;
        double s = 0;
        for (int e = 0; e < d; e++)
            s += (double)lmc_bf16_to_f32(q[e]) * scale * lmc_bf16_to_f32(kp[at + e]);
        if (softcap > 0) s = softcap * tanh(s / softcap);
        sc[p] = s;
        if (s > mx) mx = s;
    }
    for (int p = lo; p <= pos; p++) sum += exp(sc[p] - mx);
    for (int e = 0; e < d; e++) {
        double a = 0;
        for (int p = lo; p <= pos; p++) {
            const size_t at = (size_t)tab[p / bt] * be + ((size_t)kh * bt + p % bt) * d;
            a += exp(sc[p] - mx) / sum * lmc_bf16_to_f32(vp[at + e]);
        }
        out[e] = a;
    }
}

/* n rows; row r at position pos[r] of sequence seq[r] (nseq sequences,
 * each with positions up to maxpos). */
static void test_paged(int nseq, int n, int maxpos, int hq, int hkv, int d, int window, int bt) {
    const int mb = (maxpos + bt - 1) / bt, nblocks = nseq * mb;
    const size_t be = (size_t)hkv * bt * d; /* elements of one block */
    uint16_t *kp = malloc(nblocks * be * 2), *vp = malloc(nblocks * be * 2);
    for (size_t i = 0; i < nblocks * be; i++) {
        kp[i] = lmc_f32_to_bf16(urand());
        vp[i] = lmc_f32_to_bf16(urand());
    }
    /* a shuffled assignment of blocks to (sequence, slot) */
    int32_t *perm = malloc(nblocks * 4), *tables = malloc(nblocks * 4);
    for (int i = 0; i < nblocks; i++) perm[i] = i;
    for (int i = nblocks - 1; i > 0; i--) {
        int j = (int)(next_u32() % (uint32_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int i = 0; i < nblocks; i++) tables[i] = perm[i];
    int32_t *rseq = malloc(n * 4), *rpos = malloc(n * 4);
    for (int r = 0; r < n; r++) {
        rseq[r] = r % nseq;
        rpos[r] = r == 0 ? maxpos - 1 : (int)(next_u32() % (uint32_t)maxpos);
    }
    uint16_t *q = malloc((size_t)n * hq * d * 2);
    for (size_t i = 0; i < (size_t)n * hq * d; i++) q[i] = lmc_f32_to_bf16(urand());
    const float scale = 1.f / sqrtf((float)d);
    double *ref = malloc((size_t)n * hq * d * sizeof(double)), *sc = malloc(maxpos * sizeof(double));
    const int G = hq / hkv;
    for (int r = 0; r < n; r++)
        for (int h = 0; h < hq; h++) {
            const int pos = rpos[r];
            const int lo = window > 0 && pos + 1 > window ? pos + 1 - window : 0;
            const size_t qo = ((size_t)r * hq + h) * d;
            ref_row(q + qo, kp, vp, tables + rseq[r] * mb, be, bt, h / G, d, lo, pos, scale, 0.f,
                    sc, ref + qo);
        }
    void *dk = to_dev(kp, nblocks * be * 2), *dv = to_dev(vp, nblocks * be * 2),
         *dq = to_dev(q, (size_t)n * hq * d * 2), *dt = to_dev(tables, nblocks * 4),
         *ds = to_dev(rseq, n * 4), *dp = to_dev(rpos, n * 4), *dout = NULL, *ws = NULL;
    const size_t on = (size_t)n * hq * d;
    CHECK_EQ_INT(cudaMalloc(&dout, on * 2), 0);
    const int splits_list[] = {1, 2, 5, 32};
    uint16_t *out = malloc(on * 2);
    for (int si = 0; si < 4; si++) {
        const int splits = splits_list[si];
        size_t wsf = lmc_cu_paged_attn_ws_floats(n, hq, d, splits);
        if (wsf) CHECK_EQ_INT(cudaMalloc(&ws, wsf * 4), 0);
        cudaMemset(dout, 0xff, on * 2); /* poison: NaN */
        CHECK_EQ_INT(lmc_cu_paged_attn(dq, dk, dv, ds, dp, dt, mb, bt, n, hq, hkv, d, window,
                                       scale, 0.0f, splits, ws, dout, NULL),
                     0);
        CHECK_EQ_INT(cudaDeviceSynchronize(), 0);
        cudaMemcpy(out, dout, on * 2, cudaMemcpyDeviceToHost);
        double maxerr = 0;
        for (size_t i = 0; i < on; i++) {
            double e = fabs(lmc_bf16_to_f32(out[i]) - ref[i]);
            if (isnan(e) || e > maxerr) maxerr = isnan(e) ? 1e9 : e;
        }
        printf("paged attn rows %d d %d hq %d/%d window %d splits %d: max err %.2e\n", n, d, hq,
               hkv, window, splits, maxerr);
        CHECK_MSG(maxerr < 1e-2, "paged attn d %d G %d window %d splits %d: err %.3e", d, G,
                  window, splits, maxerr);
        if (ws) cudaFree(ws);
        ws = NULL;
    }
    cudaFree(dk), cudaFree(dv), cudaFree(dq), cudaFree(dt), cudaFree(ds), cudaFree(dp);
    cudaFree(dout);
    free(kp), free(vp), free(perm), free(tables), free(rseq), free(rpos), free(q), free(ref);
    free(sc), free(out);
}

/* One sequence's n new rows at positions pos0.. through the flash kernel
 * over a shuffled block table; blocks wholly below the window of the first
 * row point at a block of NaN (given back: must not be read). */
static void test_flash_paged(int n, int pos0, int hq, int hkv, int d, int window, int bt,
                             float softcap) {
    const int last = pos0 + n, mb = (last + bt - 1) / bt, nblocks = mb + 1;
    const size_t be = (size_t)hkv * bt * d;
    uint16_t *kp = malloc(nblocks * be * 2), *vp = malloc(nblocks * be * 2);
    for (size_t i = 0; i < nblocks * be; i++) {
        kp[i] = lmc_f32_to_bf16(urand());
        vp[i] = lmc_f32_to_bf16(urand());
    }
    const int nan_block = nblocks - 1;
    for (size_t i = 0; i < be; i++) kp[nan_block * be + i] = vp[nan_block * be + i] = 0x7fc0;
    int32_t *tables = malloc(mb * 4);
    for (int i = 0; i < mb; i++) tables[i] = i;
    for (int i = mb - 1; i > 0; i--) {
        int j = (int)(next_u32() % (uint32_t)(i + 1)), t = tables[i];
        tables[i] = tables[j], tables[j] = t;
    }
    const int lo0 = window > 0 && pos0 + 1 > window ? pos0 + 1 - window : 0;
    int released = 0;
    for (int i = 0; i < mb; i++)
        if ((i + 1) * bt <= lo0) tables[i] = nan_block, released++;
    uint16_t *q = malloc((size_t)n * hq * d * 2);
    for (size_t i = 0; i < (size_t)n * hq * d; i++) q[i] = lmc_f32_to_bf16(urand());
    const float scale = 1.f / sqrtf((float)d);
    const size_t on = (size_t)n * hq * d;
    double *ref = malloc(on * sizeof(double)), *sc = malloc(last * sizeof(double));
    const int G = hq / hkv;
    for (int r = 0; r < n; r++)
        for (int h = 0; h < hq; h++) {
            const int pos = pos0 + r;
            const int lo = window > 0 && pos + 1 > window ? pos + 1 - window : 0;
            const size_t qo = ((size_t)r * hq + h) * d;
            ref_row(q + qo, kp, vp, tables, be, bt, h / G, d, lo, pos, scale, softcap, sc,
                    ref + qo);
        }
    int32_t p0 = pos0;
    void *dk = to_dev(kp, nblocks * be * 2), *dv = to_dev(vp, nblocks * be * 2),
         *dq = to_dev(q, on * 2), *dt = to_dev(tables, mb * 4), *dp = to_dev(&p0, 4),
         *dout = NULL;
    CHECK_EQ_INT(cudaMalloc(&dout, on * 2), 0);
    cudaMemset(dout, 0xff, on * 2);
    CHECK_EQ_INT(lmc_cu_attn_prefill_paged(dq, dk, dv, dout, n, hq, hkv, d, dp, dt, bt, window,
                                           scale, softcap, NULL),
                 0);
    CHECK_EQ_INT(cudaDeviceSynchronize(), 0);
    uint16_t *out = malloc(on * 2);
    cudaMemcpy(out, dout, on * 2, cudaMemcpyDeviceToHost);
    double maxerr = 0;
    for (size_t i = 0; i < on; i++) {
        double e = fabs(lmc_bf16_to_f32(out[i]) - ref[i]);
        if (isnan(e) || e > maxerr) maxerr = isnan(e) ? 1e9 : e;
    }
    printf("flash paged rows %d at %d d %d hq %d/%d window %d (%d blocks given back) bt %d "
           "softcap %g: max err %.2e\n",
           n, pos0, d, hq, hkv, window, released, bt, softcap, maxerr);
    CHECK_MSG(maxerr < 1e-2, "flash paged d %d G %d window %d: err %.3e", d, G, window, maxerr);
    cudaFree(dk), cudaFree(dv), cudaFree(dq), cudaFree(dt), cudaFree(dp), cudaFree(dout);
    free(kp), free(vp), free(tables), free(q), free(ref), free(sc), free(out);
}

int main(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) CHECK_SKIP("no CUDA device");
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    test_paged(3, 7, 700, 32, 8, 128, 0, 16);
    test_paged(5, 12, 300, 8, 8, 64, 0, 16);
    test_paged(2, 5, 1000, 16, 2, 128, 100, 16);
    test_paged(4, 9, 130, 28, 4, 64, 0, 32);
    test_paged(1, 1, 2100, 16, 2, 64, 0, 16);
    test_paged(3, 7, 700, 32, 4, 96, 0, 16);
    test_paged(2, 6, 900, 4, 1, 256, 300, 16);
    test_paged(3, 5, 600, 16, 8, 256, 0, 32);
    /* one sequence's prompt rows: a first chunk, a later one (tiles over
     * earlier blocks), odd block sizes, GQA 1-8, window with given-back
     * blocks, softcapping */
    test_flash_paged(200, 0, 32, 8, 128, 0, 16, 0.f);
    test_flash_paged(130, 517, 8, 8, 64, 0, 16, 0.f);
    test_flash_paged(300, 1000, 16, 2, 128, 256, 16, 0.f);
    test_flash_paged(77, 700, 28, 4, 64, 100, 24, 0.f);
    test_flash_paged(64, 300, 8, 4, 128, 0, 32, 50.f);
    setenv("LMC_CUDA_FA_TILE", "128x2", 1); /* tiles of 128 rows */
    test_flash_paged(500, 40, 32, 8, 128, 0, 16, 0.f);
    test_flash_paged(150, 40, 16, 4, 64, 64, 16, 0.f);
    unsetenv("LMC_CUDA_FA_TILE");
    CHECK(lmc_cu_attn_prefill_paged_supported(96) == 0);
    /* groupings the kernels are not built for */
    CHECK(lmc_cu_paged_attn_supported(8, 1, 256) == 0);
    CHECK(lmc_cu_paged_attn_supported(16, 1, 96) == 0);
    CHECK(lmc_cu_paged_attn_supported(4, 2, 80) == 0);
    /* the split choice: none for a wide batch, some for one row, never
     * more than the positions allow */
    CHECK_EQ_INT(lmc_cu_paged_attn_splits(4 * sms, 8, 512, sms), 1);
    CHECK(lmc_cu_paged_attn_splits(1, 8, 512, sms) > 1);
    CHECK(lmc_cu_paged_attn_splits(1, 8, 512, sms) <= 512 / 64);
    CHECK_EQ_INT(lmc_cu_paged_attn_splits(1, 8, 40, sms), 1);
    return check_summary("test_cuda_paged_attn");
}
