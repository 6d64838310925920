/* LoRA on an MLX affine-quantized base (tests/golden/quant): the frozen
 * base stays packed, and the loss, logits and every adapter gradient equal
 * those of the same net over the dequantized (F32) base, whose LoRA
 * arithmetic is checked against PEFT in test_lora. Fusing onto a
 * quantized base fails with a clear error. */
#include "base/error.h"
#include "check.h"
#include "scratch.h"
#include "train/lora.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *src_dir(void) {
    const char *s = getenv("LMC_SOURCE_DIR");
    return s ? s : ".";
}

/* Replace a packed matrix by an owned F32 copy of its values. */
static void to_f32(lmc_cpu_mat *m, void **bufs, size_t *nb) {
    if (m->dt != LMC_DT_U32) return;
    float *f = malloc((size_t)(m->rows * m->cols) * sizeof *f);
    for (int64_t r = 0; r < m->rows; r++) lmc_cpu_widen(m, r, 0, (size_t)m->cols, f + r * m->cols);
    *m = (lmc_cpu_mat){.dt = LMC_DT_F32, .data = f, .rows = m->rows, .cols = m->cols};
    bufs[(*nb)++] = f;
}

static double rel_l2(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return s > 0 ? sqrt(d / s) : sqrt(d);
}

static uint32_t lcg(uint32_t *st) {
    *st = *st * 1664525u + 1013904223u;
    return *st;
}

static void run_case(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/golden/quant/%s", src_dir(), name);
    lmc_lora_base base;
    if (lmc_lora_base_open(dir, &base)) {
        CHECK_MSG(0, "%s: %s", name, lmc_last_error());
        return;
    }
    const lmc_lora_shape shape = {
        .rank = 4, .alpha = 8.f, .targets = (1u << LORA_N_MODULES) - 1u, .num_layers = -1};
    lmc_lora_net packed, plain;
    CHECK_MSG(!lmc_lora_net_init(&packed, &base.cfg, base.config_json, base.weights, &shape, 7),
              "%s: %s", name, lmc_last_error());
    CHECK(!lmc_lora_net_init(&plain, &base.cfg, base.config_json, base.weights, &shape, 7));
    CHECK(packed.w.layers[0].q.dt == LMC_DT_U32 && packed.w.layers[0].down.dt == LMC_DT_U32);

    /* the twin's frozen base: the same values, dequantized */
    size_t L = plain.w.n_layers, nb = 0;
    void **bufs = calloc(L * 7 + 2, sizeof *bufs);
    for (size_t l = 0; l < L; l++) {
        lmc_llama_layer *y = &plain.w.layers[l];
        lmc_cpu_mat *ms[] = {&y->q, &y->k, &y->v, &y->o, &y->gate, &y->up, &y->down};
        for (size_t i = 0; i < 7; i++) to_f32(ms[i], bufs, &nb);
    }
    const bool tied = plain.w.lm_head.data == plain.w.embed.data;
    to_f32(&plain.w.embed, bufs, &nb);
    if (tied) plain.w.lm_head = plain.w.embed;
    else to_f32(&plain.w.lm_head, bufs, &nb);
    CHECK(nb >= 7 * L);

    /* non-zero B in both, so that every A gets a gradient too */
    uint32_t st = 99;
    for (size_t i = 0; i < packed.n_ad; i++) {
        lmc_lora_adapter *a = &packed.ad[i], *b = &plain.ad[i];
        size_t n = (size_t)(a->out * shape.rank);
        for (size_t j = 0; j < n; j++) a->B[j] = b->B[j] = (float)(lcg(&st) % 2001) * 1e-5f - 1e-2f;
        CHECK(!memcmp(a->A, b->A, (size_t)(shape.rank * a->in) * sizeof(float)));
    }
    int32_t ids[24];
    const size_t n = sizeof ids / sizeof *ids, V = (size_t)base.cfg.vocab_size;
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(lcg(&st) % V);
    double lp = 0, lq = 0;
    lmc_lora_zero_grad(&packed);
    lmc_lora_zero_grad(&plain);
    CHECK_MSG(!lmc_lora_seq_grad(&packed, ids, n, 5, 0.05f, &lp), "%s", lmc_last_error());
    CHECK(!lmc_lora_seq_grad(&plain, ids, n, 5, 0.05f, &lq));
    CHECK_MSG(fabs(lp - lq) <= 1e-6 * fabs(lq) && lq > 0, "%s: loss %.9g vs %.9g", name, lp, lq);
    double worst = 0;
    for (size_t i = 0; i < packed.n_ad; i++) {
        const lmc_lora_adapter *a = &packed.ad[i], *b = &plain.ad[i];
        double ea = rel_l2(a->gA, b->gA, (size_t)(shape.rank * a->in));
        double eb = rel_l2(a->gB, b->gB, (size_t)(a->out * shape.rank));
        double e = ea > eb ? ea : eb;
        if (e > worst) worst = e;
        float s = 0;
        for (size_t j = 0; j < (size_t)(shape.rank * a->in); j++) s += fabsf(a->gA[j]);
        CHECK_MSG(s > 0, "%s: adapter %zu has no A gradient", name, i);
    }
    CHECK_MSG(worst < 1e-5, "%s: gradients differ by %.3g", name, worst);
    float *lg1 = malloc(n * V * sizeof *lg1), *lg2 = malloc(n * V * sizeof *lg2);
    CHECK(!lmc_lora_logits(&packed, ids, n, lg1) && !lmc_lora_logits(&plain, ids, n, lg2));
    double el = rel_l2(lg1, lg2, n * V);
    CHECK_MSG(el < 1e-6, "%s: logits differ by %.3g", name, el);
    printf("%-14s loss %.6f (dequantized %.6f), gradients %.2e, logits %.2e\n", name, lp, lq,
           worst, el);
    /* the adapters save as usual; fusing them into quantized weights is
     * refused by name */
    char ad[600], fused[600];
    snprintf(ad, sizeof ad, "%s/%s-adapters", scratch_root("lora-quant"), name);
    snprintf(fused, sizeof fused, "%s/%s-fused", scratch_root("lora-quant"), name);
    CHECK_MSG(!lmc_lora_save(&packed, ad, dir), "%s: save: %s", name, lmc_last_error());
    CHECK_ERR(lmc_lora_fuse_dirs(dir, ad, fused, NULL, NULL), LMC_ERR_UNSUPPORTED, "is quantized");
    free(lg1), free(lg2);
    lmc_lora_net_free(&packed);
    lmc_lora_net_free(&plain);
    for (size_t i = 0; i < nb; i++) free(bufs[i]);
    free(bufs);
    lmc_lora_base_close(&base);
}

int main(void) {
    run_case("llama-q4g64");
    run_case("llama-q8g32");
    run_case("llama-q4mixed");
    run_case("qwen3-q4g64");
    return check_summary("test_lora_quant");
}
