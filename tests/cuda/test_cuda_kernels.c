/* CUDA kernels at the shapes of real models (which the tiny goldens do not
 * reach: head_dim 64/128, thousands of keys, wide GEMVs) against float64
 * references on the host, with fresh random inputs and poisoned outputs.
 * Exits 77 without a GPU. */
#include <cuda_runtime.h>
#include <stdint.h>

#include "backend/cuda/cuda_kernels.h"
#include "check.h"
#include "formats/safetensors.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float urand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1ull << 24))) * 2.f - 1.f;
}

static uint16_t *rand_bf16(size_t n, float scale, float *mirror) {
    uint16_t *h = malloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        h[i] = lmc_f32_to_bf16(urand() * scale);
        if (mirror) mirror[i] = lmc_bf16_to_f32(h[i]);
    }
    return h;
}

static void *to_dev(const void *h, size_t bytes) {
    void *d = NULL;
    if (cudaMalloc(&d, bytes) != cudaSuccess) return NULL;
    cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice);
    return d;
}

/* ||out - ref|| / ||ref|| */
static double rel_l2(const double *ref, const float *out, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = out[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return isnan(num) ? 1e9 : sqrt(num / (den > 0 ? den : 1));
}

static void test_gemv(int rows, int cols, int in_mode, int out_mode, int sms) {
    int xn = cols;
    int swiglu = out_mode == LMC_GEMV_OUT_SWIGLU, outn = swiglu ? rows / 2 : rows;
    float *wf = malloc((size_t)rows * cols * 4), *xf = malloc((size_t)xn * 4), *nw = malloc(cols * 4);
    float *bf = malloc(rows * 4);
    uint16_t *w = rand_bf16((size_t)rows * cols, 0.05f, wf);
    uint16_t *b = rand_bf16(rows, 0.5f, bf);
    uint16_t *n16 = rand_bf16(cols, 1.f, nw);
    uint16_t *x16 = rand_bf16(xn, 2.f, xf);
    double *ref = malloc(rows * sizeof(double));
    float *yinit = malloc(rows * 4);
    for (int r = 0; r < rows; r++) yinit[r] = urand();
    /* host reference of the staged input (f64, unrounded) */
    double *xs = malloc(cols * sizeof(double));
    double ss = 0;
    for (int i = 0; i < cols; i++) ss += (double)xf[i] * xf[i];
    for (int i = 0; i < cols; i++) {
        if (in_mode == LMC_GEMV_IN_BF16) xs[i] = xf[i];
        else xs[i] = xf[i] / sqrt(ss / cols + 1e-5) * nw[i];
    }
    for (int r = 0; r < rows; r++) {
        double a = bf[r];
        for (int i = 0; i < cols; i++) a += (double)wf[(size_t)r * cols + i] * xs[i];
        ref[r] = a + (out_mode == LMC_GEMV_OUT_F32_ADD ? yinit[r] : 0);
    }
    if (swiglu) /* rows interleave gate and up */
        for (int i = 0; i < outn; i++) {
            double g = ref[2 * i], u = ref[2 * i + 1];
            ref[i] = g / (1 + exp(-g)) * u;
        }
    void *dw = to_dev(w, (size_t)rows * cols * 2), *db = to_dev(b, rows * 2),
         *dn = to_dev(n16, cols * 2);
    void *dx;
    if (in_mode == LMC_GEMV_IN_RMSNORM) dx = to_dev(xf, (size_t)cols * 4);
    else dx = to_dev(x16, (size_t)xn * 2);
    void *dy = NULL;
    cudaMalloc(&dy, rows * 4);
    if (out_mode == LMC_GEMV_OUT_F32_ADD) cudaMemcpy(dy, yinit, rows * 4, cudaMemcpyHostToDevice);
    else cudaMemset(dy, 0xff, rows * 4); /* poison: NaN */
    int e = lmc_cu_gemv(dw, rows, cols, in_mode, dx, dn, 1e-5f, db, out_mode, dy, sms, NULL);
    CHECK_EQ_INT(e, 0);
    CHECK_EQ_INT(cudaDeviceSynchronize(), 0);
    float *y = malloc(rows * 4);
    if (out_mode == LMC_GEMV_OUT_BF16 || swiglu) {
        uint16_t *y16 = malloc(outn * 2);
        cudaMemcpy(y16, dy, outn * 2, cudaMemcpyDeviceToHost);
        for (int r = 0; r < outn; r++) y[r] = lmc_bf16_to_f32(y16[r]);
        free(y16);
    } else {
        cudaMemcpy(y, dy, rows * 4, cudaMemcpyDeviceToHost);
    }
    double err = rel_l2(ref, y, outn);
    printf("gemv %6dx%-6d in %d out %d: rel err %.2e\n", rows, cols, in_mode, out_mode, err);
    CHECK_MSG(err < 1e-2, "gemv %dx%d in %d out %d err %.3e", rows, cols, in_mode, out_mode, err);
    cudaFree(dw), cudaFree(db), cudaFree(dn), cudaFree(dx), cudaFree(dy);
    free(wf), free(xf), free(nw), free(bf), free(w), free(b), free(n16), free(x16), free(ref);
    free(yinit), free(xs), free(y);
}

/* Reference attention for query row t (position pos0 + t), head h. */
static void attn_ref(const float *q, const float *k, const float *v, int hq, int hkv, int d,
                     int cap, int pos0, int t, int h, int window, double *out) {
    int hk = h / (hq / hkv), qp = pos0 + t;
    int lo = window > 0 ? qp - window + 1 : 0;
    if (lo < 0) lo = 0;
    double mx = -1e300, sum = 0;
    double *s = malloc((qp + 1) * sizeof(double));
    for (int j = lo; j <= qp; j++) {
        double a = 0;
        for (int i = 0; i < d; i++)
            a += (double)q[((size_t)t * hq + h) * d + i] * k[((size_t)hk * cap + j) * d + i];
        s[j] = a / sqrt((double)d);
        if (s[j] > mx) mx = s[j];
    }
    for (int i = 0; i < d; i++) out[i] = 0;
    for (int j = lo; j <= qp; j++) {
        double p = exp(s[j] - mx);
        sum += p;
        for (int i = 0; i < d; i++) out[i] += p * v[((size_t)hk * cap + j) * d + i];
    }
    for (int i = 0; i < d; i++) out[i] /= sum;
    free(s);
}

static void test_attention(int n, int pos0, int hq, int hkv, int d, int cap, int window) {
    size_t qn = (size_t)n * hq * d, kn = (size_t)hkv * cap * d;
    float *qf = malloc(qn * 4), *kf = malloc(kn * 4), *vf = malloc(kn * 4);
    uint16_t *q = rand_bf16(qn, 2.f, qf), *k = rand_bf16(kn, 2.f, kf), *v = rand_bf16(kn, 1.f, vf);
    int32_t state[2] = {pos0, 0};
    void *dq = to_dev(q, qn * 2), *dk = to_dev(k, kn * 2), *dv = to_dev(v, kn * 2),
         *ds = to_dev(state, 8);
    void *dout = NULL;
    cudaMalloc(&dout, qn * 2);
    cudaMemset(dout, 0xff, qn * 2);
    int e = lmc_cu_attn_prefill(dq, dk, dv, dout, n, hq, hkv, d, cap, ds, window, NULL);
    CHECK_EQ_INT(e, 0);
    CHECK_EQ_INT(cudaDeviceSynchronize(), 0);
    uint16_t *o16 = malloc(qn * 2);
    cudaMemcpy(o16, dout, qn * 2, cudaMemcpyDeviceToHost);
    float *o = malloc(qn * 4);
    double *ref = malloc(qn * sizeof(double));
    for (size_t i = 0; i < qn; i++) o[i] = lmc_bf16_to_f32(o16[i]);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < hq; h++)
            attn_ref(qf, kf, vf, hq, hkv, d, cap, pos0, t, h, window, ref + ((size_t)t * hq + h) * d);
    double err = rel_l2(ref, o, qn);
    printf("attn n %4d pos0 %4d hq %2d hkv %d d %3d window %3d: rel err %.2e\n", n, pos0, hq,
           hkv, d, window, err);
    CHECK_MSG(err < 1e-2, "attention n %d pos0 %d d %d window %d err %.3e", n, pos0, d, window,
              err);
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(ds), cudaFree(dout);
    free(qf), free(kf), free(vf), free(q), free(k), free(v), free(o16), free(o), free(ref);
}

/* Host reference of the decode prologue for one head: optional RMSNorm
 * (f64), rotate-half RoPE at pos. */
static void rope_ref(const float *x, const float *nw, int d, int pos, double theta, double *out) {
    double t[512], ss = 0;
    for (int i = 0; i < d; i++) ss += (double)x[i] * x[i];
    for (int i = 0; i < d; i++) t[i] = nw ? x[i] / sqrt(ss / d + 1e-6) * nw[i] : x[i];
    for (int i = 0; i < d / 2; i++) {
        double a = pos * pow(theta, -2.0 * i / d), c = cos(a), s = sin(a);
        out[i] = t[i] * c - t[i + d / 2] * s;
        out[i + d / 2] = t[i + d / 2] * c + t[i] * s;
    }
}

/* The prefill prologue: n tokens from pos0, bias, optional q/k norm; q to
 * q_out, k and v into the caches. */
static void test_qkv_post(int n, int pos0, int hq, int hkv, int d, int qk_norm) {
    const double theta = 500000.0;
    const int heads = hq + 2 * hkv, cap = pos0 + n;
    size_t rown = (size_t)n * heads * d, kn = (size_t)hkv * cap * d;
    float *rowf = malloc(rown * 4), *bf = malloc((size_t)heads * d * 4), nqf[256], nkf[256],
          inv[128];
    uint16_t *row = rand_bf16(rown, 2.f, rowf), *b = rand_bf16((size_t)heads * d, 0.5f, bf);
    uint16_t *nq = rand_bf16(d, 1.5f, nqf), *nk = rand_bf16(d, 1.5f, nkf);
    for (int i = 0; i < d / 2; i++) inv[i] = (float)pow(theta, -2.0 * i / d);
    int32_t state[2] = {pos0, 0};
    void *drow = to_dev(row, rown * 2), *db = to_dev(b, (size_t)heads * d * 2),
         *dnq = to_dev(nq, d * 2), *dnk = to_dev(nk, d * 2), *dinv = to_dev(inv, d / 2 * 4),
         *ds = to_dev(state, 8), *dq = NULL, *dk = NULL, *dv = NULL;
    cudaMalloc(&dq, (size_t)n * hq * d * 2);
    cudaMalloc(&dk, kn * 2);
    cudaMalloc(&dv, kn * 2);
    int e = lmc_cu_qkv_post(drow, n, hq, hkv, d, db, qk_norm ? dnq : NULL, qk_norm ? dnk : NULL,
                            1e-6f, dinv, ds, dq, dk, dv, cap, 1, NULL);
    CHECK_EQ_INT(e, 0);
    CHECK_EQ_INT(cudaDeviceSynchronize(), 0);
    uint16_t *q16 = malloc((size_t)n * hq * d * 2), *k16 = malloc(kn * 2), *v16 = malloc(kn * 2);
    cudaMemcpy(q16, dq, (size_t)n * hq * d * 2, cudaMemcpyDeviceToHost);
    cudaMemcpy(k16, dk, kn * 2, cudaMemcpyDeviceToHost);
    cudaMemcpy(v16, dv, kn * 2, cudaMemcpyDeviceToHost);
    double maxerr = 0, x[256], r[256];
    for (int t = 0; t < n; t++)
        for (int h = 0; h < heads; h++) {
            float xf[256];
            for (int i = 0; i < d; i++) {
                x[i] = (double)rowf[((size_t)t * heads + h) * d + i] + bf[(size_t)h * d + i];
                xf[i] = (float)x[i];
            }
            const uint16_t *got;
            if (h < hq + hkv) {
                rope_ref(xf, !qk_norm ? NULL : h < hq ? nqf : nkf, d, pos0 + t, theta, r);
                got = h < hq ? q16 + ((size_t)t * hq + h) * d
                             : k16 + ((size_t)(h - hq) * cap + pos0 + t) * d;
            } else {
                for (int i = 0; i < d; i++) r[i] = x[i];
                got = v16 + ((size_t)(h - hq - hkv) * cap + pos0 + t) * d;
            }
            for (int i = 0; i < d; i++) {
                double diff = fabs(lmc_bf16_to_f32(got[i]) - r[i]) / (1 + fabs(r[i]));
                if (diff > maxerr) maxerr = diff;
            }
        }
    printf("qkv_post n %4d pos0 %5d hq %2d hkv %d d %3d norm %d: max rel err %.2e\n", n, pos0, hq,
           hkv, d, qk_norm, maxerr);
    CHECK_MSG(maxerr < 0.02, "qkv_post d %d norm %d err %.3e", d, qk_norm, maxerr);
    cudaFree(drow), cudaFree(db), cudaFree(dnq), cudaFree(dnk), cudaFree(dinv), cudaFree(ds);
    cudaFree(dq), cudaFree(dk), cudaFree(dv);
    free(rowf), free(bf), free(row), free(b), free(nq), free(nk), free(q16), free(k16), free(v16);
}

/* The fused decode step: `steps` consecutive tokens from position pos0
 * (the arrival counters must reset between launches), each appending its
 * roped k and its v and attending over the cache. */
static void test_decode(int pos0, int steps, int hq, int hkv, int d, int cap, int window,
                        int qk_norm, int sms) {
    const double theta = 10000.0;
    size_t kn = (size_t)hkv * cap * d, rown = (size_t)(hq + 2 * hkv) * d;
    float *kf = malloc(kn * 4), *vf = malloc(kn * 4), *rowf = malloc(rown * 4);
    float nqf[256], nkf[256], inv[128];
    uint16_t *k = rand_bf16(kn, 2.f, kf), *v = rand_bf16(kn, 1.f, vf);
    uint16_t *nq = rand_bf16(d, 1.5f, nqf), *nk = rand_bf16(d, 1.5f, nkf);
    for (int i = 0; i < d / 2; i++) inv[i] = (float)pow(theta, -2.0 * i / d);
    CHECK_EQ_INT(lmc_cu_attn_decode_setup(hq, hkv, d), 0);
    int ns = lmc_cu_attn_decode_splits(hkv, sms);
    size_t wsb = lmc_cu_attn_decode_ws_bytes(hq, hkv, d, ns);
    void *dk = to_dev(k, kn * 2), *dv = to_dev(v, kn * 2), *dinv = to_dev(inv, d / 2 * 4);
    void *dnq = to_dev(nq, d * 2), *dnk = to_dev(nk, d * 2), *ws = NULL, *dout = NULL, *ds = NULL,
         *drow = NULL;
    cudaMalloc(&ws, wsb);
    cudaMemset(ws, 0, wsb);
    cudaMalloc(&dout, (size_t)hq * d * 2);
    cudaMalloc(&ds, 8);
    cudaMalloc(&drow, rown * 2);
    double *q = malloc((size_t)hq * d * sizeof(double)), *ref = malloc((size_t)hq * d * sizeof(double));
    float *qr = malloc((size_t)hq * d * 4), *o = malloc((size_t)hq * d * 4);
    uint16_t *o16 = malloc((size_t)hq * d * 2), kdev[256];
    for (int step = 0; step < steps; step++) {
        const int pos = pos0 + step;
        uint16_t *row = rand_bf16(rown, 2.f, rowf);
        int32_t state[2] = {pos, 0};
        cudaMemcpy(ds, state, 8, cudaMemcpyHostToDevice);
        cudaMemcpy(drow, row, rown * 2, cudaMemcpyHostToDevice);
        cudaMemset(dout, 0xff, (size_t)hq * d * 2);
        /* host: roped q (kept bf16-rounded like the kernel), new k and v */
        for (int h = 0; h < hq; h++) {
            rope_ref(rowf + (size_t)h * d, qk_norm ? nqf : NULL, d, pos, theta, q + (size_t)h * d);
            for (int i = 0; i < d; i++)
                qr[(size_t)h * d + i] = lmc_bf16_to_f32(lmc_f32_to_bf16((float)q[(size_t)h * d + i]));
        }
        double kmax_err = 0;
        for (int h = 0; h < hkv; h++) {
            double kk[256];
            rope_ref(rowf + (size_t)(hq + h) * d, qk_norm ? nkf : NULL, d, pos, theta, kk);
            size_t at = ((size_t)h * cap + pos) * d;
            for (int i = 0; i < d; i++) {
                kf[at + i] = lmc_bf16_to_f32(lmc_f32_to_bf16((float)kk[i]));
                vf[at + i] = rowf[(size_t)(hq + hkv + h) * d + i];
            }
        }
        int e = lmc_cu_attn_decode(drow, hq, hkv, d, qk_norm ? dnq : NULL, qk_norm ? dnk : NULL,
                                   1e-6f, dinv, ds, dk, dv, cap, window, ns, ws, dout, 1, NULL);
        CHECK_EQ_INT(e, 0);
        CHECK_EQ_INT(cudaDeviceSynchronize(), 0);
        for (int h = 0; h < hkv; h++) { /* the appended key, against the host's */
            size_t at = ((size_t)h * cap + pos) * d;
            cudaMemcpy(kdev, (uint16_t *)dk + at, d * 2, cudaMemcpyDeviceToHost);
            for (int i = 0; i < d; i++) {
                double diff = fabs(lmc_bf16_to_f32(kdev[i]) - kf[at + i]);
                if (diff > kmax_err) kmax_err = diff;
            }
        }
        cudaMemcpy(o16, dout, (size_t)hq * d * 2, cudaMemcpyDeviceToHost);
        for (size_t i = 0; i < (size_t)hq * d; i++) o[i] = lmc_bf16_to_f32(o16[i]);
        for (int h = 0; h < hq; h++)
            attn_ref(qr, kf, vf, hq, hkv, d, cap, pos, 0, h, window, ref + (size_t)h * d);
        double err = rel_l2(ref, o, (size_t)hq * d);
        printf("decode pos %5d hq %2d hkv %d d %3d window %3d norm %d splits %2d: rel err %.2e, "
               "new key max err %.2e\n", pos, hq, hkv, d, window, qk_norm, ns, err, kmax_err);
        CHECK_MSG(err < 1e-2, "decode pos %d d %d window %d err %.3e", pos, d, window, err);
        CHECK_MSG(kmax_err < 0.05, "decode pos %d: appended key err %.3e", pos, kmax_err);
        free(row);
    }
    cudaFree(dk), cudaFree(dv), cudaFree(dinv), cudaFree(dnq), cudaFree(dnk), cudaFree(ws);
    cudaFree(dout), cudaFree(ds), cudaFree(drow);
    free(kf), free(vf), free(rowf), free(k), free(v), free(nq), free(nk), free(q), free(ref);
    free(qr), free(o), free(o16);
}

int main(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) CHECK_SKIP("no CUDA device");
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    CHECK_EQ_INT(lmc_cu_gemv_setup(14336), 0);
    test_gemv(896, 896, LMC_GEMV_IN_BF16, LMC_GEMV_OUT_BF16, sms);
    test_gemv(6144, 4096, LMC_GEMV_IN_RMSNORM, LMC_GEMV_OUT_BF16, sms);
    test_gemv(4096, 14336, LMC_GEMV_IN_BF16, LMC_GEMV_OUT_F32_ADD, sms);
    test_gemv(2 * 14336, 4096, LMC_GEMV_IN_RMSNORM, LMC_GEMV_OUT_SWIGLU, sms);
    test_gemv(2 * 4864, 896, LMC_GEMV_IN_RMSNORM, LMC_GEMV_OUT_SWIGLU, sms);
    test_gemv(1000, 200, LMC_GEMV_IN_BF16, LMC_GEMV_OUT_F32, sms);
    test_gemv(20000, 2048, LMC_GEMV_IN_RMSNORM, LMC_GEMV_OUT_F32, sms);
    /* prefill: GQA, tails, a cache already holding tokens, windows */
    test_attention(300, 0, 8, 2, 128, 512, 0);
    test_attention(130, 77, 4, 4, 64, 256, 0);
    test_attention(200, 40, 8, 2, 128, 256, 50);
    test_attention(70, 0, 14, 2, 64, 128, 0);
    test_attention(33, 5, 4, 2, 32, 64, 16);
    test_attention(40, 0, 4, 2, 16, 64, 0);
    test_qkv_post(37, 3000, 14, 2, 64, 0);
    test_qkv_post(20, 100, 32, 8, 128, 1);
    test_qkv_post(9, 0, 4, 2, 32, 1);
    test_qkv_post(9, 5, 4, 2, 16, 0);
    /* decode: one split, many splits with a merge, windows, q/k norm,
     * larger groups, the first token */
    test_decode(130, 3, 32, 8, 64, 512, 0, 0, sms);
    test_decode(1500, 2, 32, 8, 128, 2048, 0, 1, sms);
    test_decode(9000, 2, 14, 2, 64, 10000, 0, 0, sms);
    test_decode(700, 2, 14, 2, 64, 1024, 0, 1, sms);
    test_decode(1000, 2, 8, 2, 128, 1024, 300, 0, sms);
    test_decode(0, 2, 4, 2, 32, 64, 0, 0, sms);
    test_decode(63, 2, 16, 1, 16, 128, 0, 1, sms);
    return check_summary("test_cuda_kernels");
}
