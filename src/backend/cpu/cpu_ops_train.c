/* The op layer's training kernels (fp32): RMSNorm's backward and causal
 * attention over a whole sequence with its backward, probabilities
 * recomputed per head rather than stored (see cpu_ops.h). */
#include "backend/cpu/cpu_ops.h"
#include <cblas.h>
#include <math.h>
#include <string.h>

static float rms_inv(const float *x, size_t d, float eps) {
    double ss = 0.0;
    for (size_t j = 0; j < d; j++) ss += (double)x[j] * x[j];
    return 1.0f / sqrtf((float)(ss / (double)d) + eps);
}

void lmc_cpu_rmsnorm_bwd(const float *x, const lmc_cpu_mat *weight, float eps, size_t n,
                         size_t d, const float *dy, float *dx, bool acc, float *wbuf) {
    lmc_cpu_widen(weight, 0, 0, d, wbuf);
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * d, *gi = dy + i * d;
        float *oi = dx + i * d;
        float r = rms_inv(xi, d, eps);
        double dot = 0.0;
        for (size_t j = 0; j < d; j++) dot += (double)wbuf[j] * gi[j] * xi[j];
        float c = (float)(dot * (double)r * r * r / (double)d);
        for (size_t j = 0; j < d; j++) {
            float v = r * wbuf[j] * gi[j] - c * xi[j];
            oi[j] = acc ? oi[j] + v : v;
        }
    }
}

/* P = softmax(scale q_h k_g^T) of head h under the causal (and window) mask. */
static void head_probs(const lmc_cpu_seq_attn *a, const float *q, const float *k, size_t h) {
    size_t T = a->T, hd = a->head_dim, nh = a->heads, nkv = a->kv_heads, g = h / (nh / nkv);
    size_t qd = nh * hd, kvd = nkv * hd;
    float *P = a->P;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)hd, a->scale,
                q + h * hd, (int)qd, k + g * hd, (int)kvd, 0.0f, P, (int)T);
    for (size_t i = 0; i < T; i++) {
        float *row = P + i * T;
        size_t lo = a->window && i + 1 > a->window ? i + 1 - a->window : 0;
        float mx = -INFINITY;
        for (size_t j = lo; j <= i; j++) mx = row[j] > mx ? row[j] : mx;
        double sum = 0.0;
        for (size_t j = lo; j <= i; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        float inv = (float)(1.0 / sum);
        for (size_t j = 0; j < T; j++) row[j] = (j >= lo && j <= i) ? row[j] * inv : 0.0f;
    }
}

void lmc_cpu_seq_attention(const lmc_cpu_seq_attn *a, const float *q, const float *k,
                           const float *v, float *att) {
    size_t T = a->T, hd = a->head_dim, nh = a->heads, nkv = a->kv_heads;
    size_t qd = nh * hd, kvd = nkv * hd;
    for (size_t h = 0; h < nh; h++) {
        size_t g = h / (nh / nkv);
        head_probs(a, q, k, h);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)hd, (int)T, 1.0f,
                    a->P, (int)T, v + g * hd, (int)kvd, 0.0f, att + h * hd, (int)qd);
    }
}

void lmc_cpu_seq_attention_bwd(const lmc_cpu_seq_attn *a, const float *q, const float *k,
                               const float *v, const float *datt, float *dq, float *dk,
                               float *dv) {
    size_t T = a->T, hd = a->head_dim, nh = a->heads, nkv = a->kv_heads;
    size_t qd = nh * hd, kvd = nkv * hd;
    float sc = a->scale, *P = a->P, *dP = a->dP;
    memset(dk, 0, T * kvd * sizeof(float));
    memset(dv, 0, T * kvd * sizeof(float));
    for (size_t h = 0; h < nh; h++) {
        size_t g = h / (nh / nkv);
        head_probs(a, q, k, h);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)hd, 1.0f,
                    datt + h * hd, (int)qd, v + g * hd, (int)kvd, 0.0f, dP, (int)T);
        /* dS = P * (dP - rowsum(P * dP)), stored over dP. */
        for (size_t i = 0; i < T; i++) {
            float *p = P + i * T, *d = dP + i * T;
            double D = 0.0;
            for (size_t j = 0; j <= i; j++) D += (double)p[j] * d[j];
            for (size_t j = 0; j < T; j++) d[j] = p[j] * (d[j] - (float)D);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)hd, (int)T, sc, dP,
                    (int)T, k + g * hd, (int)kvd, 0.0f, dq + h * hd, (int)qd);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)hd, (int)T, sc, dP,
                    (int)T, q + h * hd, (int)qd, 1.0f, dk + g * hd, (int)kvd);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)hd, (int)T, 1.0f, P,
                    (int)T, datt + h * hd, (int)qd, 1.0f, dv + g * hd, (int)kvd);
    }
}
