/* CPU kernels against direct double-precision evaluations of their
 * definitions: matmul for every weight dtype on both the GEMV and the
 * sgemm path (with bias), both attention paths (causal, sliding window,
 * empty past slots), RMSNorm, RoPE and the bf16/fp16 rounding. */
#include "backend/cpu/cpu_ops.h"
#include "check.h"
#include <stdint.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static void make_mat(lmc_dtype dt, int64_t rows, int64_t cols, void **data, float *wide) {
    size_t n = (size_t)(rows * cols);
    if (dt == LMC_DT_F32) {
        float *f = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) f[i] = wide[i] = frand();
        *data = f;
    } else {
        uint16_t *h = malloc(n * sizeof(uint16_t));
        for (size_t i = 0; i < n; i++) {
            float v = frand();
            h[i] = dt == LMC_DT_BF16 ? lmc_f32_to_bf16(v) : lmc_f32_to_f16(v);
            wide[i] = dt == LMC_DT_BF16 ? lmc_bf16_to_f32(h[i]) : lmc_f16_to_f32(h[i]);
        }
        *data = h;
    }
}

static void test_matmul(lmc_dtype dt, size_t n) {
    int64_t rows = 67, cols = 129; /* odd sizes: no vector-width luck */
    float *wide = malloc((size_t)(rows * cols) * sizeof(float)), bw[67];
    void *data, *bdata;
    make_mat(dt, rows, cols, &data, wide);
    make_mat(dt, 1, rows, &bdata, bw);
    lmc_cpu_mat w = {dt, data, rows, cols, NULL}, b = {dt, bdata, 1, rows, NULL};
    float *x = malloc(n * (size_t)cols * sizeof(float)), *y = malloc(n * (size_t)rows * sizeof(float));
    for (size_t i = 0; i < n * (size_t)cols; i++) x[i] = frand();
    CHECK(lmc_cpu_matmul(&w, &b, x, n, y) == LMC_OK);
    double worst = 0;
    for (size_t j = 0; j < n; j++)
        for (int64_t r = 0; r < rows; r++) {
            double ref = bw[r];
            for (int64_t k = 0; k < cols; k++)
                ref += (double)wide[r * cols + k] * x[j * (size_t)cols + (size_t)k];
            double d = fabs(ref - y[j * (size_t)rows + (size_t)r]);
            if (d > worst) worst = d;
        }
    CHECK_MSG(worst < 1e-4, "matmul dtype %s n=%zu: max error %g", lmc_dtype_name(dt), n, worst);
    free(wide), free(data), free(bdata), free(x), free(y);
}

/* Fused matmuls equal separate ones (row counts differ per matrix). */
static void test_matmul_multi(size_t n) {
    int64_t rows[3] = {40, 17, 33}, cols = 70;
    void *data[3], *bdata;
    float *wide = malloc(40 * 70 * sizeof(float)), bw[17];
    lmc_cpu_mat w[3], b = {LMC_DT_BF16, NULL, 1, 17, NULL};
    make_mat(LMC_DT_BF16, 1, 17, &bdata, bw);
    b.data = bdata;
    float *x = malloc(n * 70 * sizeof(float)), *y[3], *ref[3];
    for (size_t i = 0; i < n * 70; i++) x[i] = frand();
    for (int i = 0; i < 3; i++) {
        make_mat(i == 1 ? LMC_DT_F32 : LMC_DT_BF16, rows[i], cols, &data[i], wide);
        w[i] = (lmc_cpu_mat){i == 1 ? LMC_DT_F32 : LMC_DT_BF16, data[i], rows[i], cols, NULL};
        y[i] = malloc(n * (size_t)rows[i] * sizeof(float));
        ref[i] = malloc(n * (size_t)rows[i] * sizeof(float));
    }
    const lmc_cpu_mat *wp[3] = {&w[0], &w[1], &w[2]}, *bp[3] = {NULL, &b, NULL};
    CHECK(lmc_cpu_matmul_multi(wp, bp, 3, x, n, y) == LMC_OK);
    for (int i = 0; i < 3; i++) {
        CHECK(lmc_cpu_matmul(wp[i], bp[i], x, n, ref[i]) == LMC_OK);
        double worst = 0;
        for (size_t j = 0; j < n * (size_t)rows[i]; j++)
            if (fabs(y[i][j] - ref[i][j]) > worst) worst = fabs(y[i][j] - ref[i][j]);
        CHECK_MSG(worst < 1e-5, "matmul_multi n=%zu matrix %d: %g", n, i, worst);
        free(y[i]), free(ref[i]), free(data[i]);
    }
    free(wide), free(bdata), free(x);
}

/* Direct attention for query i, head h. */
static void attn_ref(const lmc_cpu_attn_args *a, const float *q, size_t i, size_t h, double *o) {
    size_t hd = a->head_dim, g = h / (a->heads / a->kv_heads), p = a->pos0 + i;
    size_t m = a->n_past + a->n;
    double *sc = malloc(m * sizeof(double)), mx = -INFINITY, sum = 0;
    for (size_t s = 0; s < m; s++) {
        bool past = s < a->n_past;
        int64_t j = past ? a->pos[s] : (int64_t)(a->pos0 + s - a->n_past);
        bool ok = j >= 0 && (a->bidirectional || (size_t)j <= p) &&
                  (!a->window || (size_t)j + a->window > p);
        const float *k = past ? a->k + (g * a->past_stride + s) * hd
                              : a->k_new + (s - a->n_past) * a->kv_heads * hd + g * hd;
        double d = 0;
        for (size_t t = 0; t < hd; t++) d += (double)q[(i * a->heads + h) * hd + t] * k[t];
        d *= a->scale;
        if (a->softcap > 0) d = a->softcap * tanh(d / a->softcap);
        sc[s] = ok ? d : -INFINITY;
        if (sc[s] > mx) mx = sc[s];
    }
    for (size_t s = 0; s < m; s++) sum += sc[s] = sc[s] == -INFINITY ? 0 : exp(sc[s] - mx);
    for (size_t t = 0; t < hd; t++) o[t] = 0;
    for (size_t s = 0; s < m; s++) {
        const float *v = s < a->n_past ? a->v + (g * a->past_stride + s) * hd
                                       : a->v_new + (s - a->n_past) * a->kv_heads * hd + g * hd;
        for (size_t t = 0; t < hd; t++) o[t] += sc[s] / sum * v[t];
    }
    free(sc);
}

static void test_attention(size_t n, size_t n_past, size_t window, float softcap, bool bidir) {
    size_t heads = 4, kvh = 2, hd = 8, stride = n_past + 3;
    float *k = malloc(kvh * stride * hd * sizeof(float)), *v = malloc(kvh * stride * hd * sizeof(float));
    float *kn = malloc(n * kvh * hd * sizeof(float)), *vn = malloc(n * kvh * hd * sizeof(float));
    float *q = malloc(n * heads * hd * sizeof(float)), *out = malloc(n * heads * hd * sizeof(float));
    int64_t *pos = malloc((n_past + 1) * sizeof(int64_t));
    for (size_t i = 0; i < kvh * stride * hd; i++) k[i] = frand(), v[i] = frand();
    for (size_t i = 0; i < n * kvh * hd; i++) kn[i] = frand(), vn[i] = frand();
    for (size_t i = 0; i < n * heads * hd; i++) q[i] = 2 * frand();
    /* past slots hold positions 0..n_past-1 rotated by 3, one slot empty */
    for (size_t s = 0; s < n_past; s++) pos[s] = (int64_t)((s + 3) % n_past);
    if (n_past > 4) pos[2] = -1;
    lmc_cpu_attn_args a = {.k = k, .v = v, .pos = pos, .n_past = n_past, .past_stride = stride,
                           .k_new = kn, .v_new = vn, .n = n, .heads = heads, .kv_heads = kvh,
                           .head_dim = hd, .pos0 = n_past, .window = window, .scale = 0.35f,
                           .round_dt = LMC_DT_F32, .bidirectional = bidir, .softcap = softcap};
    CHECK(lmc_cpu_attention(&a, q, out) == LMC_OK);
    double worst = 0, o[8];
    for (size_t i = 0; i < n; i++)
        for (size_t h = 0; h < heads; h++) {
            attn_ref(&a, q, i, h, o);
            for (size_t t = 0; t < hd; t++) {
                double d = fabs(o[t] - out[(i * heads + h) * hd + t]);
                if (d > worst) worst = d;
            }
        }
    CHECK_MSG(worst < 1e-5, "attention n=%zu past=%zu window=%zu cap=%g%s: max error %g", n,
              n_past, window, (double)softcap, bidir ? " bidirectional" : "", worst);
    free(k), free(v), free(kn), free(vn), free(q), free(out), free(pos);
}

int main(void) {
    lmc_dtype dts[] = {LMC_DT_F32, LMC_DT_BF16, LMC_DT_F16};
    size_t ns[] = {1, 3, 8, 9, 40};
    for (size_t d = 0; d < 3; d++)
        for (size_t i = 0; i < 5; i++) test_matmul(dts[d], ns[i]);
    test_matmul_multi(1);
    test_matmul_multi(12);

    /* decode (row path) and chunks (sgemm path), with and without window */
    size_t cases[][3] = {{1, 0, 0}, {1, 30, 0}, {1, 30, 7}, {5, 12, 0}, {20, 0, 0},
                         {20, 30, 0}, {20, 30, 9}, {33, 0, 6},
                         /* a past long enough that query rows go in blocks */
                         {20, 210000, 0}, {20, 210000, 50}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        test_attention(cases[c][0], cases[c][1], cases[c][2], 0.0f, false);
    /* softcapped scores (gemma), and encoders' unmasked attention, on both
     * paths (rows below 16 new tokens, sgemm from 16) */
    for (size_t n = 3; n <= 40; n += 37) {
        test_attention(n, 0, 0, 0.3f, false);
        test_attention(n, 5, 4, 0.3f, false);
        test_attention(n, 0, 0, 0.0f, true);
        test_attention(n, 0, 0, 0.3f, true);
    }

    /* RMSNorm */
    float x[12], y[12], wv[6] = {1, 2, 0.5f, -1, 3, 0.25f};
    lmc_cpu_mat w = {LMC_DT_F32, wv, 1, 6, NULL};
    for (int i = 0; i < 12; i++) x[i] = frand();
    lmc_cpu_rmsnorm(x, &w, 1e-5f, 2, 6, y, LMC_DT_F32);
    for (int r = 0; r < 2; r++) {
        double ss = 0;
        for (int j = 0; j < 6; j++) ss += (double)x[r * 6 + j] * x[r * 6 + j];
        double inv = 1 / sqrt(ss / 6 + 1e-5);
        for (int j = 0; j < 6; j++)
            CHECK_MSG(fabs(y[r * 6 + j] - x[r * 6 + j] * inv * wv[j]) < 1e-5, "rmsnorm %d %d", r, j);
    }

    /* RoPE: position 3, rotate-half pairs (i, i + half) */
    float hv[8] = {1, 2, 3, 4, 5, 6, 7, 8}, inv[4] = {1.0f, 0.5f, 0.1f, 0.01f}, orig[8];
    memcpy(orig, hv, sizeof hv);
    lmc_cpu_rope(hv, 1, 1, 8, 3, inv, 1.0f, LMC_DT_F32);
    for (int f = 0; f < 4; f++) {
        double c = cos(3.0 * inv[f]), s = sin(3.0 * inv[f]);
        CHECK(fabs(hv[f] - (orig[f] * c - orig[f + 4] * s)) < 1e-5);
        CHECK(fabs(hv[f + 4] - (orig[f + 4] * c + orig[f] * s)) < 1e-5);
    }
    /* an attention factor (yarn) scales both rotated halves */
    memcpy(hv, orig, sizeof hv);
    lmc_cpu_rope(hv, 1, 1, 8, 3, inv, 1.25f, LMC_DT_F32);
    for (int f = 0; f < 4; f++) {
        double c = 1.25 * cos(3.0 * inv[f]), s = 1.25 * sin(3.0 * inv[f]);
        CHECK(fabs(hv[f] - (orig[f] * c - orig[f + 4] * s)) < 1e-5);
        CHECK(fabs(hv[f + 4] - (orig[f + 4] * c + orig[f] * s)) < 1e-5);
    }

    /* rounding: nearest-even to bf16 / fp16 */
    float r[4] = {1.00390625f, 1.01171875f, 3.14159265f, 65519.0f};
    lmc_cpu_round(r, 4, LMC_DT_BF16);
    CHECK(r[0] == 1.0f);       /* tie -> even */
    CHECK(r[1] == 1.015625f);  /* tie -> even (up) */
    CHECK(r[2] == 3.140625f);
    float h[2] = {1.0f + 1.0f / 2048, 65519.0f};
    lmc_cpu_round(h, 2, LMC_DT_F16);
    CHECK(h[0] == 1.0f);
    CHECK(h[1] == 65504.0f);
    return check_summary("test_cpu_ops");
}
