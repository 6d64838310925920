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
    int xn = in_mode == LMC_GEMV_IN_SWIGLU ? 2 * cols : cols;
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
        else if (in_mode == LMC_GEMV_IN_RMSNORM) xs[i] = xf[i] / sqrt(ss / cols + 1e-5) * nw[i];
        else xs[i] = xf[i] / (1 + exp(-(double)xf[i])) * xf[cols + i];
    }
    for (int r = 0; r < rows; r++) {
        double a = bf[r];
        for (int i = 0; i < cols; i++) a += (double)wf[(size_t)r * cols + i] * xs[i];
        ref[r] = a + (out_mode == LMC_GEMV_OUT_F32_ADD ? yinit[r] : 0);
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
    if (out_mode == LMC_GEMV_OUT_BF16) {
        uint16_t *y16 = malloc(rows * 2);
        cudaMemcpy(y16, dy, rows * 2, cudaMemcpyDeviceToHost);
        for (int r = 0; r < rows; r++) y[r] = lmc_bf16_to_f32(y16[r]);
        free(y16);
    } else {
        cudaMemcpy(y, dy, rows * 4, cudaMemcpyDeviceToHost);
    }
    double err = rel_l2(ref, y, rows);
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
    void *dout = NULL, *ws = NULL;
    cudaMalloc(&dout, qn * 2);
    cudaMemset(dout, 0xff, qn * 2);
    int e;
    if (n == 1) {
        size_t wsb = lmc_cu_attn_decode_ws_floats(hq, hkv, d, cap) * 4;
        cudaMalloc(&ws, wsb);
        cudaMemset(ws, 0, wsb);
        e = lmc_cu_attn_decode(dq, dk, dv, dout, hq, hkv, d, cap, ds, window, ws, NULL);
    } else {
        e = lmc_cu_attn_prefill(dq, dk, dv, dout, n, hq, hkv, d, cap, ds, window, NULL);
    }
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
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(ds), cudaFree(dout), cudaFree(ws);
    free(qf), free(kf), free(vf), free(q), free(k), free(v), free(o16), free(o), free(ref);
}

int main(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) CHECK_SKIP("no CUDA device");
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    CHECK_EQ_INT(lmc_cu_gemv_setup(14336), 0);
    test_gemv(896, 896, LMC_GEMV_IN_BF16, LMC_GEMV_OUT_BF16, sms);
    test_gemv(6144, 4096, LMC_GEMV_IN_RMSNORM, LMC_GEMV_OUT_BF16, sms);
    test_gemv(4096, 14336, LMC_GEMV_IN_SWIGLU, LMC_GEMV_OUT_F32_ADD, sms);
    test_gemv(1000, 200, LMC_GEMV_IN_BF16, LMC_GEMV_OUT_F32, sms);
    test_gemv(20000, 2048, LMC_GEMV_IN_RMSNORM, LMC_GEMV_OUT_F32, sms);
    /* prefill: GQA, tails, a cache already holding tokens, windows */
    test_attention(300, 0, 8, 2, 128, 512, 0);
    test_attention(130, 77, 4, 4, 64, 256, 0);
    test_attention(200, 40, 8, 2, 128, 256, 50);
    test_attention(70, 0, 14, 2, 64, 128, 0);
    test_attention(33, 5, 4, 2, 32, 64, 16);
    test_attention(40, 0, 4, 2, 16, 64, 0);
    /* decode: many splits, window, larger groups */
    test_attention(1, 1500, 32, 8, 128, 2048, 0);
    test_attention(1, 700, 14, 2, 64, 1024, 0);
    test_attention(1, 1000, 8, 2, 128, 1024, 300);
    test_attention(1, 0, 4, 2, 32, 64, 0);
    test_attention(1, 63, 16, 1, 16, 64, 0);
    return check_summary("test_cuda_kernels");
}
