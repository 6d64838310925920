/* Paged attention on the CPU (see cpu_paged_attn.h). One (row, head) pair
 * per task: scores over the visible positions block by block, a softmax
 * with a double sum, and the weighted values, with lmc_cpu_attention's
 * rounding steps. */
#include "backend/cpu/cpu_paged_attn.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "base/error.h"

#include "backend/cpu/cpu_simd.h"

HOT static float dot(const float *a, const float *b, size_t n) {
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (size_t i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

HOT static void axpy(float *y, float a, const float *x, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

static const float *slot(const lmc_cpu_paged_kv *kv, size_t off, size_t g, size_t hd, size_t p) {
    size_t B = kv->block_tokens;
    return kv->pool + (size_t)kv->table[p / B] * kv->block_floats + off + (g * B + p % B) * hd;
}

lmc_status lmc_cpu_paged_attention(const lmc_cpu_paged_kv *kv, const lmc_cpu_paged_attn_args *a,
                                   const float *q, float *out) {
    size_t hd = a->head_dim, group = a->heads / a->kv_heads, qs = a->heads * hd;
    size_t last = a->pos0 + a->n; /* one past the last position seen */
    if (!a->n) return LMC_OK;
    if (last > kv->n_table * kv->block_tokens)
        return lmc_err(LMC_ERR_STATE, "paged attention: position %zu is past the block table",
                       last - 1);
    size_t lo0 = a->window && a->pos0 + 1 > a->window ? a->pos0 + 1 - a->window : 0;
    if (lo0 < kv->first_live)
        return lmc_err(LMC_ERR_STATE,
                       "paged attention: position %zu needs keys from %zu, the cache holds "
                       "them from %zu",
                       a->pos0, lo0, kv->first_live);
    size_t total = a->n * a->heads;
    int failed = 0;
    bool team = total * last * hd > 65536;
#pragma omp parallel if (team)
    {
        float *sc = malloc(last * sizeof *sc), *acc = malloc(hd * sizeof *acc);
        if (!sc || !acc) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 4)
        for (size_t t = 0; t < total; t++) {
            if (!sc || !acc) continue;
            size_t i = t / a->heads, h = t % a->heads, g = h / group, p = a->pos0 + i;
            size_t lo = a->window && p + 1 > a->window ? p + 1 - a->window : 0;
            const float *qi = q + i * qs + h * hd;
            size_t m = p + 1 - lo, B = kv->block_tokens;
            /* block by block: one table lookup per block, not per key */
            for (size_t s = 0; s < m;) {
                const float *k = slot(kv, kv->k_off, g, hd, lo + s);
                size_t run = B - (lo + s) % B;
                if (run > m - s) run = m - s;
                for (size_t e = 0; e < run; e++, s++, k += hd) sc[s] = dot(qi, k, hd);
            }
            /* the element-wise steps run over the whole row (one call
             * each), in lmc_cpu_attention's order */
            lmc_cpu_round(sc, m, a->round_dt);
            for (size_t s = 0; s < m; s++) sc[s] *= a->scale;
            lmc_cpu_round(sc, m, a->round_dt);
            lmc_cpu_softcap(sc, m, a->softcap, a->round_dt);
            float mx = -INFINITY;
            for (size_t s = 0; s < m; s++)
                if (sc[s] > mx) mx = sc[s];
            double sum = 0.0;
            for (size_t s = 0; s < m; s++) {
                sc[s] = expf(sc[s] - mx);
                sum += sc[s];
            }
            float inv = (float)(1.0 / sum);
            for (size_t s = 0; s < m; s++) sc[s] *= inv;
            lmc_cpu_round(sc, m, a->round_dt); /* the weights */
            memset(acc, 0, hd * sizeof *acc);
            for (size_t s = 0; s < m;) {
                const float *v = slot(kv, kv->v_off, g, hd, lo + s);
                size_t run = B - (lo + s) % B;
                if (run > m - s) run = m - s;
                for (size_t e = 0; e < run; e++, s++, v += hd)
                    if (sc[s] != 0.0f) axpy(acc, sc[s], v, hd);
            }
            float *oi = out + i * qs + h * hd;
            memcpy(oi, acc, hd * sizeof *acc);
            lmc_cpu_round(oi, hd, a->round_dt);
        }
        free(sc);
        free(acc);
    }
    if (failed) return lmc_err(LMC_ERR_NOMEM, "paged attention: no memory for score rows");
    return LMC_OK;
}
