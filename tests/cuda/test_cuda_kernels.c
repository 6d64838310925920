/* CUDA kernels at the shapes of real models (which the tiny goldens do not
 * reach: head_dim 64/128, thousands of keys, wide GEMVs) against float64
 * references on the host, with fresh random inputs and poisoned outputs.
 * Exits 77 without a GPU. */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>
#include <math.h>

#include "backend/cuda/cuda_kernels.h"
#include "check.h"
#include "cuda_test_util.h"

#define OUT_GUARD 64 /* poisoned output elements past the end */

/* The features of gemma3_text and Phi-4-mini, off (0) unless a case sets
 * them: q/k norms and the GEMV's RMSNorm in the (1 + w) form, the rotated
 * values of a head in the prologues (0: all), the attention scale (0:
 * head_dim^-1/2) and attention logit softcapping. */
static int norm_offset = 0, rot_dims = 0;
static float attn_scale = 0.f, attn_softcap = 0.f;

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
    int swiglu = out_mode == LMC_GEMV_OUT_SWIGLU || out_mode == LMC_GEMV_OUT_GEGLU;
    int outn = swiglu ? rows / 2 : rows;
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
        else xs[i] = xf[i] / sqrt(ss / cols + 1e-5) * (norm_offset ? 1.0 + nw[i] : nw[i]);
    }
    for (int r = 0; r < rows; r++) {
        double a = bf[r];
        for (int i = 0; i < cols; i++) a += (double)wf[(size_t)r * cols + i] * xs[i];
        ref[r] = a + (out_mode == LMC_GEMV_OUT_F32_ADD ? yinit[r] : 0);
    }
    if (swiglu) /* rows interleave gate and up */
        for (int i = 0; i < outn; i++) {
            double g = ref[2 * i], u = ref[2 * i + 1];
            ref[i] = out_mode == LMC_GEMV_OUT_GEGLU
                         ? 0.5 * g * (1 + tanh(0.7978845608028654 * (g + 0.044715 * g * g * g))) * u
                         : g / (1 + exp(-g)) * u;
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
    const int mode = in_mode | (norm_offset ? LMC_GEMV_IN_NORM_OFFSET : 0);
    int e = lmc_cu_gemv(dw, rows, cols, mode, dx, dn, 1e-5f, db, out_mode, dy, sms, NULL);
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
    printf("gemv %6dx%-6d in %d out %d norm (1 + w) %d: rel err %.2e\n", rows, cols, in_mode,
           out_mode, norm_offset, err);
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
        s[j] = a * (attn_scale != 0.f ? attn_scale : 1 / sqrt((double)d));
        if (attn_softcap > 0.f) s[j] = attn_softcap * tanh(s[j] / attn_softcap);
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
    int e = lmc_cu_attn_prefill(dq, dk, dv, dout, n, hq, hkv, d, cap, ds, window, attn_scale,
                                attn_softcap, NULL);
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
    printf("attn n %4d pos0 %4d hq %2d hkv %d d %3d window %3d scale %g softcap %g: rel err "
           "%.2e\n", n, pos0, hq, hkv, d, window, attn_scale, attn_softcap, err);
    CHECK_MSG(err < 1e-2, "attention n %d pos0 %d d %d window %d err %.3e", n, pos0, d, window,
              err);
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(ds), cudaFree(dout);
    free(qf), free(kf), free(vf), free(q), free(k), free(v), free(o16), free(o), free(ref);
}

/* RoPE attention factor (yarn's scaling of cos and sin) passed to the
 * prologue kernels and applied by rope_ref; 1 except in the yarn cases. */
static float rope_attn = 1.f;

/* Host reference of the decode prologue for one head: optional RMSNorm
 * (f64; (1 + w) with norm_offset), rotate-half RoPE of the first rot_dims
 * values (all when 0; the rest pass through) at pos with cos and sin times
 * rope_attn. */
static void rope_ref(const float *x, const float *nw, int d, int pos, double theta, double *out) {
    double t[512], ss = 0;
    const int rot = rot_dims ? rot_dims : d;
    for (int i = 0; i < d; i++) ss += (double)x[i] * x[i];
    for (int i = 0; i < d; i++)
        t[i] = nw ? x[i] / sqrt(ss / d + 1e-6) * (norm_offset ? 1.0 + nw[i] : nw[i]) : x[i];
    for (int i = 0; i < rot / 2; i++) {
        double a = pos * pow(theta, -2.0 * i / rot), c = cos(a) * rope_attn,
               s = sin(a) * rope_attn;
        out[i] = t[i] * c - t[i + rot / 2] * s;
        out[i + rot / 2] = t[i + rot / 2] * c + t[i] * s;
    }
    for (int i = rot; i < d; i++) out[i] = t[i];
}

/* The frequencies of rope_ref (rot_dims / 2 of them, all when 0). */
static void rope_freqs(int d, double theta, float *inv) {
    const int rot = rot_dims ? rot_dims : d;
    for (int i = 0; i < rot / 2; i++) inv[i] = (float)pow(theta, -2.0 * i / rot);
}

/* Runs the prefill prologue on device inputs into freshly poisoned outputs
 * (q_out with a guard tail) and copies them back. */
static void qkv_run(const void *drow, int n, int hq, int hkv, int d, const void *db,
                    const void *dnq, const void *dnk, const void *dinv, const void *ds, int cap,
                    int rnd, uint16_t *q16, uint16_t *k16, uint16_t *v16) {
    const size_t qn = (size_t)n * hq * d + OUT_GUARD, kn = (size_t)hkv * cap * d;
    void *dq = NULL, *dk = NULL, *dv = NULL;
    cudaMalloc(&dq, qn * 2);
    cudaMalloc(&dk, kn * 2);
    cudaMalloc(&dv, kn * 2);
    cudaMemset(dq, 0xff, qn * 2);
    cudaMemset(dk, 0xff, kn * 2);
    cudaMemset(dv, 0xff, kn * 2);
    int e = lmc_cu_qkv_post(drow, n, hq, hkv, d, db, dnq, dnk, 1e-6f, norm_offset, dinv,
                            rot_dims ? rot_dims : d, rope_attn, ds, dq, dk, dv, cap, rnd, NULL);
    CHECK_EQ_INT(e, 0);
    CHECK_EQ_INT(cudaDeviceSynchronize(), 0);
    cudaMemcpy(q16, dq, qn * 2, cudaMemcpyDeviceToHost);
    cudaMemcpy(k16, dk, kn * 2, cudaMemcpyDeviceToHost);
    cudaMemcpy(v16, dv, kn * 2, cudaMemcpyDeviceToHost);
    cudaFree(dq), cudaFree(dk), cudaFree(dv);
}

/* The prefill prologue: n tokens from pos0, optional bias, optional q and/or
 * k norm (qn, kn); q to q_out, k and v into the caches, nothing elsewhere.
 * Head sizes 16/32/64/128/256 with aligned buffers take the kernel's vector
 * path; the same rows shifted one element off 16-byte alignment take its
 * generic path, and both must agree bit for bit (the same rounding
 * sequence, norm sums added in the same order). */
static void test_qkv_post_ex(int n, int pos0, int hq, int hkv, int d, int qn, int kn,
                             int has_bias, int rnd) {
    const double theta = 500000.0;
    const int heads = hq + 2 * hkv, cap = pos0 + n + 3;
    size_t rown = (size_t)n * heads * d, kvn = (size_t)hkv * cap * d;
    size_t qon = (size_t)n * hq * d + OUT_GUARD;
    float *rowf = malloc(rown * 4), *bf = malloc((size_t)heads * d * 4), nqf[256], nkf[256],
          inv[128] = {0};
    uint16_t *row = rand_bf16(rown, 2.f, rowf), *b = rand_bf16((size_t)heads * d, 0.5f, bf);
    uint16_t *nq = rand_bf16(d, 1.5f, nqf), *nk = rand_bf16(d, 1.5f, nkf);
    rope_freqs(d, theta, inv);
    int32_t state[2] = {pos0, 0};
    void *drow = to_dev(row, rown * 2), *db = to_dev(b, (size_t)heads * d * 2),
         *dnq = to_dev(nq, d * 2), *dnk = to_dev(nk, d * 2), *dinv = to_dev(inv, d / 2 * 4),
         *ds = to_dev(state, 8), *drow_off = NULL;
    uint16_t *q16 = malloc(qon * 2), *k16 = malloc(kvn * 2), *v16 = malloc(kvn * 2);
    qkv_run(drow, n, hq, hkv, d, has_bias ? db : NULL, qn ? dnq : NULL, kn ? dnk : NULL, dinv, ds,
            cap, rnd, q16, k16, v16);
    double maxerr = 0, x[256], r[256];
    for (int t = 0; t < n; t++)
        for (int h = 0; h < heads; h++) {
            float xf[256];
            for (int i = 0; i < d; i++) {
                x[i] = (double)rowf[((size_t)t * heads + h) * d + i] +
                       (has_bias ? bf[(size_t)h * d + i] : 0.f);
                xf[i] = (float)x[i];
            }
            const uint16_t *got;
            if (h < hq + hkv) {
                const float *nw = h < hq ? (qn ? nqf : NULL) : (kn ? nkf : NULL);
                rope_ref(xf, nw, d, pos0 + t, theta, r);
                got = h < hq ? q16 + ((size_t)t * hq + h) * d
                             : k16 + ((size_t)(h - hq) * cap + pos0 + t) * d;
            } else {
                for (int i = 0; i < d; i++) r[i] = x[i];
                got = v16 + ((size_t)(h - hq - hkv) * cap + pos0 + t) * d;
            }
            for (int i = 0; i < d; i++) {
                double diff = fabs(lmc_bf16_to_f32(got[i]) - r[i]) / (1 + fabs(r[i]));
                if (!(diff <= maxerr)) maxerr = isnan(diff) ? 1e9 : diff;
            }
        }
    /* untouched: q_out's guard tail and every other cache position */
    size_t stray = 0;
    for (size_t i = (size_t)n * hq * d; i < qon; i++) stray += q16[i] != 0xffff;
    for (int h = 0; h < hkv; h++)
        for (int p = 0; p < cap; p++)
            if (p < pos0 || p >= pos0 + n)
                for (int i = 0; i < d; i++) {
                    size_t at = ((size_t)h * cap + p) * d + i;
                    stray += (k16[at] != 0xffff) + (v16[at] != 0xffff);
                }
    printf("qkv_post n %4d pos0 %5d hq %2d hkv %d d %3d rot %3d norm q%d k%d (1 + w) %d bias %d "
           "rnd %d: max rel err %.2e, stray writes %zu\n", n, pos0, hq, hkv, d,
           rot_dims ? rot_dims : d, qn, kn, norm_offset, has_bias, rnd, maxerr, stray);
    CHECK_MSG(maxerr < 0.02, "qkv_post d %d norm %d/%d err %.3e", d, qn, kn, maxerr);
    CHECK_MSG(stray == 0, "qkv_post d %d: %zu values written outside the outputs", d, stray);
    if (d == 16 || d == 32 || d == 64 || d == 128 || d == 256) {
        /* rows at an odd element offset: the generic path */
        uint16_t *q2 = malloc(qon * 2), *k2 = malloc(kvn * 2), *v2 = malloc(kvn * 2);
        cudaMalloc(&drow_off, (rown + 8) * 2);
        cudaMemcpy((uint16_t *)drow_off + 1, row, rown * 2, cudaMemcpyHostToDevice);
        qkv_run((uint16_t *)drow_off + 1, n, hq, hkv, d, has_bias ? db : NULL, qn ? dnq : NULL,
                kn ? dnk : NULL, dinv, ds, cap, rnd, q2, k2, v2);
        size_t differ = 0, total = 0;
        double maxd = 0;
        for (size_t i = 0; i < qon + 2 * kvn; i++) {
            uint16_t a = i < qon ? q16[i] : i < qon + kvn ? k16[i - qon] : v16[i - qon - kvn];
            uint16_t c = i < qon ? q2[i] : i < qon + kvn ? k2[i - qon] : v2[i - qon - kvn];
            double dd = fabs(lmc_bf16_to_f32(a) - lmc_bf16_to_f32(c)) /
                        (1 + fabs(lmc_bf16_to_f32(c)));
            differ += a != c;
            total++;
            if (a != c && !(dd <= maxd)) maxd = isnan(dd) ? 1e9 : dd;
        }
        printf("  vector vs generic path: %zu of %zu values differ (max rel %.2e)\n", differ,
               total, maxd);
        CHECK_MSG(differ == 0, "qkv_post d %d: vector and generic paths differ in %zu values",
                  d, differ);
        free(q2), free(k2), free(v2);
    }
    cudaFree(drow), cudaFree(db), cudaFree(dnq), cudaFree(dnk), cudaFree(dinv), cudaFree(ds);
    cudaFree(drow_off);
    free(rowf), free(bf), free(row), free(b), free(nq), free(nk), free(q16), free(k16), free(v16);
}

static void test_qkv_post(int n, int pos0, int hq, int hkv, int d, int qk_norm) {
    test_qkv_post_ex(n, pos0, hq, hkv, d, qk_norm, qk_norm, 1, 1);
}

/* lmc_cu_rmsnorm of host rows x placed `xoff` floats into a device buffer
 * (an odd offset misaligns them), into a poisoned output with a guard tail. */
static void rms_run(const float *x, int rows, int cols, const void *dw, int rnd, int xoff,
                    uint16_t *o16) {
    const size_t nel = (size_t)rows * cols, on = nel + OUT_GUARD;
    void *dx = NULL, *dout = NULL;
    cudaMalloc(&dx, (nel + 4) * 4);
    cudaMemcpy((float *)dx + xoff, x, nel * 4, cudaMemcpyHostToDevice);
    cudaMalloc(&dout, on * 2);
    cudaMemset(dout, 0xff, on * 2);
    int e = lmc_cu_rmsnorm((const float *)dx + xoff, dw, rows, cols, 1e-6f, dout, norm_offset, rnd,
                           NULL);
    CHECK_EQ_INT(e, 0);
    CHECK_EQ_INT(cudaDeviceSynchronize(), 0);
    cudaMemcpy(o16, dout, on * 2, cudaMemcpyDeviceToHost);
    cudaFree(dx), cudaFree(dout);
}

/* Row-wise RMSNorm of an f32 matrix to bf16 against the host, rounded as
 * the kernel does (the normalized value to bf16 when rnd, then times the
 * weight, then to bf16): within a bf16 step per rounding (the host's
 * 1/rms differs in the last bits). Aligned rows with cols % 4 == 0 (up to
 * 16384) take the vector path and misaligned ones the generic path, which
 * must agree bit for bit (the same sum in the same order); guard tails
 * after the outputs must stay poisoned. */
static void test_rmsnorm(int rows, int cols, int rnd) {
    const size_t nel = (size_t)rows * cols, on = nel + OUT_GUARD;
    float *x = malloc(nel * 4), *wf = malloc((size_t)cols * 4);
    for (size_t i = 0; i < nel; i++) x[i] = urand() * 3.f;
    uint16_t *w = rand_bf16(cols, 1.5f, wf), *ov = malloc(on * 2), *og = malloc(on * 2);
    void *dw = to_dev(w, (size_t)cols * 2);
    rms_run(x, rows, cols, dw, rnd, 0, ov);
    rms_run(x, rows, cols, dw, rnd, 1, og);
    double maxerr = 0;
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * cols;
        double ss = 0;
        for (int i = 0; i < cols; i++) ss += (double)xr[i] * xr[i];
        const float inv = (float)(1.0 / sqrt(ss / cols + 1e-6));
        for (int i = 0; i < cols; i++) {
            float t = xr[i] * inv;
            if (rnd && !norm_offset) t = lmc_bf16_to_f32(lmc_f32_to_bf16(t));
            const double ref =
                lmc_bf16_to_f32(lmc_f32_to_bf16(t * (norm_offset ? 1.0f + wf[i] : wf[i])));
            for (int k = 0; k < 2; k++) {
                const double got = lmc_bf16_to_f32((k ? og : ov)[(size_t)r * cols + i]);
                const double err = fabs(got - ref) / (fabs(ref) + 1e-30);
                if (!(err <= maxerr)) maxerr = isnan(err) ? 1e9 : err;
            }
        }
    }
    size_t stray = 0, differ = 0;
    for (size_t i = nel; i < on; i++) stray += (ov[i] != 0xffff) + (og[i] != 0xffff);
    for (size_t i = 0; i < nel; i++) differ += ov[i] != og[i];
    printf("rmsnorm rows %4d cols %5d rnd %d (1 + w) %d: max rel err %.2e, stray writes %zu, "
           "vector vs generic path: %zu values differ\n", rows, cols, rnd, norm_offset, maxerr,
           stray, differ);
    CHECK_MSG(maxerr <= (rnd ? 1.0 / 32 : 1.0 / 64), "rmsnorm %dx%d rnd %d: err %.3e", rows, cols,
              rnd, maxerr);
    CHECK_MSG(stray == 0, "rmsnorm %dx%d: %zu values written past the output", rows, cols, stray);
    CHECK_MSG(differ == 0, "rmsnorm %dx%d: vector and generic paths differ in %zu values", rows,
              cols, differ);
    cudaFree(dw);
    free(x), free(wf), free(w), free(ov), free(og);
}

/* Sandwich norms: x += rmsnorm(y) * w (or * (1 + w)) for rows of an f32
 * residual, y rounded to bf16 first with rnd, against the host (f64 sums,
 * the same roundings): within a bf16 step of the added value. */
static void test_norm_add(int rows, int cols, int rnd) {
    const size_t nel = (size_t)rows * cols;
    float *x = malloc(nel * 4), *y = malloc(nel * 4), *wf = malloc(cols * 4), *got = malloc(nel * 4);
    for (size_t i = 0; i < nel; i++) x[i] = 4.f * urand(), y[i] = 30.f * urand();
    uint16_t *w = rand_bf16(cols, 0.5f, wf);
    void *dx = to_dev(x, nel * 4), *dy = to_dev(y, nel * 4), *dw = to_dev(w, cols * 2);
    int e = lmc_cu_norm_add(dy, dw, rows, cols, 1e-6f, dx, norm_offset, rnd, NULL);
    CHECK_EQ_INT(e, 0);
    CHECK_EQ_INT(cudaDeviceSynchronize(), 0);
    cudaMemcpy(got, dx, nel * 4, cudaMemcpyDeviceToHost);
    double maxerr = 0, *yr = malloc(cols * sizeof(double));
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < cols; i++) {
            float v = y[(size_t)r * cols + i];
            yr[i] = rnd ? lmc_bf16_to_f32(lmc_f32_to_bf16(v)) : v;
            ss += yr[i] * yr[i];
        }
        const double inv = 1.0 / sqrt(ss / cols + 1e-6);
        for (int i = 0; i < cols; i++) {
            const double add = yr[i] * inv * (norm_offset ? 1.0 + wf[i] : wf[i]);
            const double ref = x[(size_t)r * cols + i] + add;
            const double err = fabs(got[(size_t)r * cols + i] - ref) / (1 + fabs(add));
            if (!(err <= maxerr)) maxerr = isnan(err) ? 1e9 : err;
        }
    }
    printf("norm_add rows %3d cols %5d rnd %d (1 + w) %d: max err %.2e\n", rows, cols, rnd,
           norm_offset, maxerr);
    CHECK_MSG(maxerr < 1.0 / 64, "norm_add %dx%d rnd %d: err %.3e", rows, cols, rnd, maxerr);
    cudaFree(dx), cudaFree(dy), cudaFree(dw);
    free(x), free(y), free(wf), free(got), free(w), free(yr);
}

/* Final-logit softcapping: x = cap * tanh(x / cap) in place. */
static void test_softcap(size_t n, float cap, int rnd) {
    float *x = malloc(n * 4), *got = malloc(n * 4);
    for (size_t i = 0; i < n; i++) x[i] = 60.f * urand();
    void *dx = to_dev(x, n * 4);
    CHECK_EQ_INT(lmc_cu_softcap(dx, n, cap, rnd, NULL), 0);
    CHECK_EQ_INT(cudaDeviceSynchronize(), 0);
    cudaMemcpy(got, dx, n * 4, cudaMemcpyDeviceToHost);
    double maxerr = 0;
    for (size_t i = 0; i < n; i++) {
        const double ref = cap * tanh((double)x[i] / cap);
        const double err = fabs(got[i] - ref) / cap;
        if (!(err <= maxerr)) maxerr = isnan(err) ? 1e9 : err;
    }
    printf("softcap n %zu cap %g rnd %d: max err %.2e of the cap\n", n, cap, rnd, maxerr);
    CHECK_MSG(maxerr < (rnd ? 1.0 / 64 : 1e-5), "softcap cap %g rnd %d: err %.3e", cap, rnd,
              maxerr);
    cudaFree(dx);
    free(x), free(got);
}

/* The fused decode step: `steps` consecutive tokens from position pos0
 * (the arrival counters must reset between launches), each appending its
 * roped k and its v and attending over the cache. */
static void test_decode(int pos0, int steps, int hq, int hkv, int d, int cap, int window,
                        int qk_norm, int sms) {
    const double theta = 10000.0;
    size_t kn = (size_t)hkv * cap * d, rown = (size_t)(hq + 2 * hkv) * d;
    float *kf = malloc(kn * 4), *vf = malloc(kn * 4), *rowf = malloc(rown * 4);
    float nqf[256], nkf[256], inv[128] = {0};
    uint16_t *k = rand_bf16(kn, 2.f, kf), *v = rand_bf16(kn, 1.f, vf);
    uint16_t *nq = rand_bf16(d, 1.5f, nqf), *nk = rand_bf16(d, 1.5f, nkf);
    rope_freqs(d, theta, inv);
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
                                   1e-6f, norm_offset, dinv, rot_dims ? rot_dims : d, rope_attn,
                                   ds, dk, dv, cap, window, attn_scale, attn_softcap, ns, ws,
                                   dout, 1, 1, NULL);
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
        printf("decode pos %5d hq %2d hkv %d d %3d window %3d norm %d splits %2d rot %d (1 + w) "
               "%d scale %g softcap %g: rel err %.2e, new key max err %.2e\n", pos, hq, hkv, d,
               window, qk_norm, ns, rot_dims ? rot_dims : d, norm_offset, attn_scale,
               attn_softcap, err, kmax_err);
        CHECK_MSG(err < 1e-2, "decode pos %d d %d window %d err %.3e", pos, d, window, err);
        CHECK_MSG(kmax_err < 0.05, "decode pos %d: appended key err %.3e", pos, kmax_err);
        free(row);
    }
    cudaFree(dk), cudaFree(dv), cudaFree(dinv), cudaFree(dnq), cudaFree(dnk), cudaFree(ws);
    cudaFree(dout), cudaFree(ds), cudaFree(drow);
    free(kf), free(vf), free(rowf), free(k), free(v), free(nq), free(nk), free(q), free(ref);
    free(qr), free(o), free(o16);
}

/* prefill: GQA, tails, a cache already holding tokens, windows; the
 * head-packed kernel (groups of 7, 3, 8 and 16 heads whose rows do not fill
 * the last block, windows narrower than the tokens of one block) */
static void test_prefill_cases(void) {
    test_attention(300, 0, 8, 2, 128, 512, 0);
    test_attention(130, 77, 4, 4, 64, 256, 0);
    test_attention(200, 40, 8, 2, 128, 256, 50);
    test_attention(70, 0, 14, 2, 64, 128, 0);
    test_attention(33, 5, 4, 2, 32, 64, 16);
    test_attention(40, 0, 4, 2, 16, 64, 0);
    test_attention(150, 33, 14, 2, 64, 256, 0);
    test_attention(160, 20, 14, 2, 64, 256, 40);
    test_attention(45, 9, 6, 2, 32, 64, 0);
    test_attention(90, 0, 8, 2, 16, 128, 7);
    test_attention(300, 100, 8, 1, 64, 512, 64);
    test_attention(50, 0, 16, 1, 64, 64, 0);
}

/* lmc_cu_argmax_rows (batched decode's greedy ids): each row's id and
 * log-softmax against the host (ties to the lowest index) and against
 * lmc_cu_argmax run on the row alone; rows with a planted tie, a row of
 * equal values and a row of NaNs (id 0) included. */
static void test_argmax_rows(int rows, int V) {
    const size_t n = (size_t)rows * V;
    float *x = malloc(n * 4);
    for (size_t i = 0; i < n; i++) x[i] = 8.f * urand();
    if (rows > 1) x[(size_t)1 * V + 17] = x[(size_t)1 * V + V - 3] = 100.f; /* a tie */
    if (rows > 2)
        for (int v = 0; v < V; v++) x[(size_t)2 * V + v] = 0.5f; /* all equal */
    if (rows > 3)
        for (int v = 0; v < V; v++) x[(size_t)3 * V + v] = NAN;
    float *dx = to_dev(x, n * 4);
    int32_t *dout = NULL, *done = NULL, out[2 * 64], one[2];
    void *ws = NULL;
    CHECK(dx && rows <= 64);
    CHECK_EQ_INT(cudaMalloc((void **)&dout, rows * 8), 0);
    CHECK_EQ_INT(cudaMalloc((void **)&done, 8), 0);
    CHECK_EQ_INT(cudaMalloc(&ws, lmc_cu_argmax_ws_bytes()), 0);
    CHECK_EQ_INT(lmc_cu_argmax_rows(dx, rows, V, (size_t)V, dout, NULL), 0);
    CHECK_EQ_INT(cudaDeviceSynchronize(), 0);
    cudaMemcpy(out, dout, rows * 8, cudaMemcpyDeviceToHost);
    size_t wrong = 0;
    double lp_err = 0;
    for (int r = 0; r < rows; r++) {
        const float *row = x + (size_t)r * V;
        int b = 0;
        for (int v = 1; v < V; v++)
            if (row[v] > row[b]) b = v;
        double sum = 0;
        for (int v = 0; v < V; v++) sum += exp((double)row[v] - row[b]);
        const bool nan_row = isnan(row[0]);
        wrong += out[2 * r] != (nan_row ? 0 : b);
        float lp;
        memcpy(&lp, &out[2 * r + 1], 4);
        if (!nan_row && fabs(lp + log(sum)) > lp_err) lp_err = fabs(lp + log(sum));
        CHECK_EQ_INT(lmc_cu_argmax(dx + (size_t)r * V, V, ws, done, NULL), 0);
        CHECK_EQ_INT(cudaDeviceSynchronize(), 0);
        cudaMemcpy(one, done, 8, cudaMemcpyDeviceToHost);
        wrong += one[0] != out[2 * r];
    }
    printf("argmax rows %d x %d: %zu wrong ids, log-softmax err %.2e\n", rows, V, wrong, lp_err);
    CHECK_MSG(wrong == 0, "argmax rows %d x %d: %zu wrong ids", rows, V, wrong);
    CHECK_MSG(lp_err < 1e-4, "argmax rows %d x %d: log-softmax err %.3e", rows, V, lp_err);
    cudaFree(dx), cudaFree(dout), cudaFree(done), cudaFree(ws);
    free(x);
}

int main(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) CHECK_SKIP("no CUDA device");
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    CHECK_EQ_INT(lmc_cu_gemv_setup(14336), 0);
    test_argmax_rows(64, 128256);
    test_argmax_rows(5, 1000);
    test_gemv(896, 896, LMC_GEMV_IN_BF16, LMC_GEMV_OUT_BF16, sms);
    test_gemv(6144, 4096, LMC_GEMV_IN_RMSNORM, LMC_GEMV_OUT_BF16, sms);
    test_gemv(4096, 14336, LMC_GEMV_IN_BF16, LMC_GEMV_OUT_F32_ADD, sms);
    test_gemv(2 * 14336, 4096, LMC_GEMV_IN_RMSNORM, LMC_GEMV_OUT_SWIGLU, sms);
    test_gemv(2 * 4864, 896, LMC_GEMV_IN_RMSNORM, LMC_GEMV_OUT_SWIGLU, sms);
    test_gemv(1000, 200, LMC_GEMV_IN_BF16, LMC_GEMV_OUT_F32, sms);
    test_gemv(20000, 2048, LMC_GEMV_IN_RMSNORM, LMC_GEMV_OUT_F32, sms);
    /* prefill with each kernel: the default choice, the one-head kernel
     * everywhere (packed 0), the head-packed kernel everywhere (packed 1)
     * in each block shape (rows x key slices) */
    const char *fa_packed[] = {NULL, "0", "1", "1"};
    const char *fa_tile[] = {NULL, NULL, "64x2", "128x2"};
    for (int i = 0; i < 4; i++) {
        if (fa_packed[i]) setenv("LMC_CUDA_FA_PACKED", fa_packed[i], 1);
        if (fa_tile[i]) setenv("LMC_CUDA_FA_TILE", fa_tile[i], 1);
        printf("prefill kernel: packed %s tile %s\n", fa_packed[i] ? fa_packed[i] : "default",
               fa_tile[i] ? fa_tile[i] : "default");
        test_prefill_cases();
    }
    unsetenv("LMC_CUDA_FA_PACKED");
    unsetenv("LMC_CUDA_FA_TILE");
    test_qkv_post(37, 3000, 14, 2, 64, 0);
    test_qkv_post(20, 100, 32, 8, 128, 1);
    test_qkv_post(9, 0, 4, 2, 32, 1);
    test_qkv_post(9, 5, 4, 2, 16, 0);
    /* the prefill of a 0.5B model; one token; q-only and k-only norms
     * without bias; unrounded; both norms at d 64 and d 256; rows wider
     * than one block; head sizes of the generic path only */
    test_qkv_post_ex(2048, 0, 14, 2, 64, 0, 0, 1, 1);
    test_qkv_post_ex(1, 7, 14, 2, 64, 0, 0, 1, 1);
    test_qkv_post_ex(13, 40, 16, 8, 128, 1, 0, 0, 0);
    test_qkv_post_ex(11, 1, 8, 2, 64, 1, 1, 1, 1);
    test_qkv_post_ex(7, 0, 6, 3, 16, 0, 1, 0, 1);
    test_qkv_post_ex(5, 10, 8, 2, 256, 1, 1, 1, 1);
    test_qkv_post_ex(3, 9, 64, 8, 128, 0, 0, 1, 1);
    test_qkv_post_ex(6, 3, 4, 2, 24, 1, 1, 1, 1);
    test_qkv_post_ex(4, 2, 4, 1, 192, 0, 0, 1, 0);
    test_qkv_post_ex(5, 0, 2, 1, 8, 1, 1, 0, 1);
    /* 96 (Phi-3-mini's head): three values a lane, rotated through the
     * warp's shared row */
    test_qkv_post_ex(6, 50, 4, 2, 96, 1, 1, 1, 1);
    test_qkv_post_ex(5, 3000, 32, 32, 96, 0, 0, 0, 1);
    /* rmsnorm: each vector shape (a warp per row with 1/2/4 steps per
     * chain, 2/4/8 warps per row, the widest rows), row counts off the rows
     * per block, one row, and only the generic path (cols % 4 != 0, rows
     * beyond the vector path) */
    test_rmsnorm(2048, 896, 1);
    test_rmsnorm(37, 896, 1);
    test_rmsnorm(1, 896, 0);
    test_rmsnorm(11, 64, 1);
    test_rmsnorm(4, 300, 1);
    test_rmsnorm(6, 1000, 0);
    test_rmsnorm(6, 1536, 1);
    test_rmsnorm(5, 4096, 1);
    test_rmsnorm(3, 5120, 0);
    test_rmsnorm(2, 12288, 1);
    test_rmsnorm(9, 130, 1);
    test_rmsnorm(3, 20000, 1);
    /* decode: one split, many splits with a merge, windows, q/k norm,
     * larger groups, the first token */
    test_decode(130, 3, 32, 8, 64, 512, 0, 0, sms);
    test_decode(1500, 2, 32, 8, 128, 2048, 0, 1, sms);
    test_decode(9000, 2, 14, 2, 64, 10000, 0, 0, sms);
    test_decode(700, 2, 14, 2, 64, 1024, 0, 1, sms);
    test_decode(1000, 2, 8, 2, 128, 1024, 300, 0, sms);
    test_decode(0, 2, 4, 2, 32, 64, 0, 0, sms);
    test_decode(63, 2, 16, 1, 16, 128, 0, 1, sms);
    /* chunk edges of the one-key-per-lane kernel (256 keys per pass, 512
     * per block at least), several blocks under a window, 16 heads per KV
     * head (d = 64: that kernel; d = 128: the tiled one) */
    test_decode(254, 4, 32, 8, 64, 1024, 0, 0, sms);
    test_decode(510, 4, 16, 2, 128, 1024, 0, 1, sms);
    test_decode(3000, 2, 16, 2, 128, 4096, 1300, 0, sms);
    test_decode(600, 2, 16, 1, 64, 1024, 0, 0, sms);
    test_decode(600, 2, 32, 2, 128, 1024, 0, 0, sms);
    test_decode(40, 2, 6, 2, 32, 64, 0, 1, sms);
    /* yarn: cos and sin scaled by an attention factor, in the prefill
     * prologue (vector and generic paths) and both decode kernels */
    rope_attn = 1.3465736f;
    printf("rope attention factor %g\n", rope_attn);
    test_qkv_post_ex(9, 100, 4, 2, 64, 1, 1, 1, 1);
    test_qkv_post_ex(6, 3, 4, 2, 24, 1, 1, 1, 1);
    test_qkv_post_ex(5, 70, 4, 1, 32, 1, 1, 0, 0);
    test_decode(130, 2, 32, 8, 64, 512, 0, 1, sms);
    test_decode(510, 2, 16, 2, 128, 1024, 0, 1, sms);
    test_decode(63, 2, 16, 1, 16, 128, 0, 0, sms);
    rope_attn = 1.f;
    /* gemma3_text: (1 + w) norms (GEMV prologue, rmsnorm, q/k norms in
     * both prologue paths and the decode attention), GeGLU, sandwich norms,
     * final softcapping */
    norm_offset = 1;
    test_gemv(6144, 4096, LMC_GEMV_IN_RMSNORM, LMC_GEMV_OUT_BF16, sms);
    test_gemv(2 * 6912, 1152, LMC_GEMV_IN_RMSNORM, LMC_GEMV_OUT_GEGLU, sms);
    test_rmsnorm(37, 896, 1);
    test_rmsnorm(6, 1000, 0);
    test_rmsnorm(5, 4096, 1);
    test_qkv_post_ex(20, 100, 8, 4, 128, 1, 1, 0, 1);
    test_qkv_post_ex(9, 3, 4, 1, 256, 1, 1, 0, 0);
    test_decode(700, 2, 8, 4, 128, 1024, 512, 1, sms);
    test_decode(130, 2, 4, 1, 64, 512, 0, 1, sms);
    test_norm_add(37, 1152, 1);
    test_norm_add(3, 2560, 0);
    norm_offset = 0;
    test_norm_add(5, 896, 1);
    test_gemv(2 * 4864, 896, LMC_GEMV_IN_RMSNORM, LMC_GEMV_OUT_GEGLU, sms);
    test_softcap(262144, 30.f, 1);
    test_softcap(4099, 20.f, 0);
    /* Phi-4-mini: RoPE on the first 3/4 of each head (the generic prologue
     * path, whose partners may sit in other lanes), in the decode kernels */
    rot_dims = 96;
    test_qkv_post_ex(37, 3000, 24, 8, 128, 0, 0, 0, 1);
    test_qkv_post_ex(5, 0, 4, 2, 128, 1, 1, 1, 1);
    test_decode(600, 2, 24, 8, 128, 1024, 0, 0, sms);
    rot_dims = 48;
    test_qkv_post_ex(11, 7, 4, 2, 64, 1, 1, 1, 0);
    test_decode(254, 2, 8, 2, 64, 512, 0, 1, sms);
    rot_dims = 24;
    test_qkv_post_ex(6, 2, 4, 2, 32, 0, 1, 1, 1);
    test_decode(40, 2, 6, 2, 32, 64, 0, 0, sms);
    rot_dims = 12;
    test_qkv_post_ex(7, 0, 6, 3, 16, 1, 0, 0, 1);
    test_decode(63, 2, 16, 1, 16, 128, 0, 1, sms);
    rot_dims = 0;
    /* query_pre_attn_scalar and attention logit softcapping: prefill with
     * each kernel, both decode kernels (one key per lane: d 64/128; tiled:
     * d 16) */
    attn_scale = 0.125f;
    attn_softcap = 3.f;
    for (int i = 0; i < 4; i++) {
        if (fa_packed[i]) setenv("LMC_CUDA_FA_PACKED", fa_packed[i], 1);
        if (fa_tile[i]) setenv("LMC_CUDA_FA_TILE", fa_tile[i], 1);
        test_attention(300, 0, 8, 2, 128, 512, 0);
        test_attention(200, 40, 8, 2, 128, 256, 50);
        test_attention(150, 33, 14, 2, 64, 256, 0);
        test_attention(90, 0, 8, 2, 16, 128, 7);
    }
    unsetenv("LMC_CUDA_FA_PACKED");
    unsetenv("LMC_CUDA_FA_TILE");
    test_decode(1500, 2, 32, 8, 128, 2048, 0, 1, sms);
    test_decode(1000, 2, 8, 2, 128, 1024, 300, 0, sms);
    test_decode(130, 2, 8, 2, 64, 512, 0, 0, sms);
    test_decode(63, 2, 16, 1, 16, 128, 0, 1, sms);
    test_decode(510, 4, 16, 2, 128, 1024, 0, 1, sms);
    attn_softcap = 0.f;
    test_attention(130, 77, 4, 4, 64, 256, 0);
    test_decode(130, 2, 8, 2, 64, 512, 0, 0, sms);
    attn_scale = 0.f;
    return check_summary("test_cuda_kernels");
}
