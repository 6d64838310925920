/* Element-wise kernels, RMSNorm, rotary embedding and attention on fp32
 * activations. */
#include "backend/cpu/cpu_ops.h"
#include "base/error.h"
#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_simd.h"

static inline float round_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    if ((b & 0x7f800000u) == 0x7f800000u) { /* inf/nan: keep, quiet nan */
        if (b & 0x007fffffu) b |= 0x00400000u;
        b &= 0xffff0000u;
    } else {
        b += 0x7fffu + ((b >> 16) & 1u);
        b &= 0xffff0000u;
    }
    memcpy(&f, &b, sizeof f);
    return f;
}

static inline float round_f16(float f) {
#ifdef __FLT16_MAX__
    return (float)(_Float16)f;
#else
    return lmc_f16_to_f32(lmc_f32_to_f16(f));
#endif
}

static inline float round_to(float f, lmc_dtype dt) {
    if (dt == LMC_DT_BF16) return round_bf16(f);
    if (dt == LMC_DT_F16) return round_f16(f);
    return f;
}

void lmc_cpu_round(float *x, size_t n, lmc_dtype dt) {
    if (dt == LMC_DT_BF16)
        for (size_t i = 0; i < n; i++) x[i] = round_bf16(x[i]);
    else if (dt == LMC_DT_F16)
        for (size_t i = 0; i < n; i++) x[i] = round_f16(x[i]);
}

static inline float softcap1(float x, float cap, lmc_dtype dt) {
    if (cap == 0.0f) return x;
    return round_to(round_to(tanhf(round_to(x / cap, dt)), dt) * cap, dt);
}

void lmc_cpu_softcap(float *x, size_t n, float cap, lmc_dtype round_dt) {
    if (cap != 0.0f)
        for (size_t i = 0; i < n; i++) x[i] = softcap1(x[i], cap, round_dt);
}

HOT static float vdot(const float *a, const float *b, size_t n) {
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (size_t i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

HOT static void vaxpy(float *y, float a, const float *x, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* The element-wise kernels run on the calling thread: next to the matmuls
 * they are cheap, and an OpenMP team spinning between them would compete
 * with OpenBLAS's threads for the cores during prefill. */
void lmc_cpu_add(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* 1 / sqrt(mean(x^2) + eps) of one row, the statistics in double. */
/* Both RMSNorms: the statistics in double, the weight widened once (per
 * element if that allocation fails). llama rounds the normalized value
 * before the weight; gemma's offset form scales by (1 + w) in fp32 and
 * rounds once. */
static void rmsnorm_rows(const float *x, const lmc_cpu_mat *weight, float eps, size_t n,
                         size_t d, float *out, lmc_dtype round_dt, bool offset) {
    float *w = malloc(d * sizeof(float));
    if (w) lmc_cpu_widen(weight, 0, 0, d, w);
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * d;
        float *oi = out + i * d;
        double ss = 0.0;
        for (size_t j = 0; j < d; j++) ss += (double)xi[j] * xi[j];
        const float r = 1.0f / sqrtf((float)(ss / (double)d) + eps);
        for (size_t j = 0; j < d; j++) {
            float wj = w ? w[j] : 0.0f;
            if (!w) lmc_cpu_widen(weight, 0, (int64_t)j, 1, &wj);
            oi[j] = offset ? round_to(xi[j] * r * (1.0f + wj), round_dt)
                           : round_to(wj * round_to(xi[j] * r, round_dt), round_dt);
        }
    }
    free(w);
}

void lmc_cpu_rmsnorm(const float *x, const lmc_cpu_mat *weight, float eps, size_t n, size_t d,
                     float *out, lmc_dtype round_dt) {
    rmsnorm_rows(x, weight, eps, n, d, out, round_dt, false);
}

void lmc_cpu_rmsnorm_offset(const float *x, const lmc_cpu_mat *weight, float eps, size_t n,
                            size_t d, float *out, lmc_dtype round_dt) {
    rmsnorm_rows(x, weight, eps, n, d, out, round_dt, true);
}

void lmc_cpu_rope(float *x, size_t n, size_t heads, size_t head_dim, size_t pos0,
                  const float *inv_freq, float attn_factor, lmc_dtype round_dt) {
    lmc_cpu_rope_partial(x, n, heads, head_dim, head_dim, pos0, inv_freq, attn_factor, round_dt);
}

/* Rotation of the first rot_dim values of each head by the position's
 * angles; sign -1 rotates backwards (the transpose, for training). */
static void rope_rotate(float *x, size_t n, size_t heads, size_t head_dim, size_t rot_dim,
                        size_t pos0, const float *inv_freq, float attn_factor, lmc_dtype round_dt,
                        float sign) {
    size_t half = rot_dim / 2;
    for (size_t i = 0; i < n; i++) {
        float cs[512], sn[512]; /* head_dim <= 1024 is checked by the model */
        float p = (float)(pos0 + i);
        for (size_t f = 0; f < half; f++) {
            float ang = p * inv_freq[f];
            cs[f] = round_to((float)cos((double)ang) * attn_factor, round_dt);
            sn[f] = sign * round_to((float)sin((double)ang) * attn_factor, round_dt);
        }
        for (size_t h = 0; h < heads; h++) {
            float *v = x + (i * heads + h) * head_dim;
            for (size_t f = 0; f < half; f++) {
                float a = v[f], b = v[f + half];
                float a_c = round_to(a * cs[f], round_dt), b_s = round_to(b * sn[f], round_dt);
                float b_c = round_to(b * cs[f], round_dt), a_s = round_to(a * sn[f], round_dt);
                v[f] = round_to(a_c - b_s, round_dt);
                v[f + half] = round_to(b_c + a_s, round_dt);
            }
        }
    }
}

void lmc_cpu_rope_partial(float *x, size_t n, size_t heads, size_t head_dim, size_t rot_dim,
                          size_t pos0, const float *inv_freq, float attn_factor,
                          lmc_dtype round_dt) {
    rope_rotate(x, n, heads, head_dim, rot_dim, pos0, inv_freq, attn_factor, round_dt, 1.0f);
}

void lmc_cpu_rope_bwd(float *x, size_t n, size_t heads, size_t head_dim, size_t rot_dim,
                      size_t pos0, const float *inv_freq, float attn_factor) {
    rope_rotate(x, n, heads, head_dim, rot_dim, pos0, inv_freq, attn_factor, LMC_DT_F32, -1.0f);
}

/* The scalar activations, one definition each, unrounded. */
static inline float silu(float x) { return x / (1.0f + expf(-x)); }
static inline float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

void lmc_cpu_silu_mul(const float *g, const float *u, size_t n, float *a, lmc_dtype round_dt) {
    for (size_t i = 0; i < n; i++) {
        float s = round_to(silu(g[i]), round_dt);
        a[i] = round_to(s * u[i], round_dt);
    }
}

void lmc_cpu_gelu_tanh_mul(const float *g, const float *u, size_t n, float *a,
                           lmc_dtype round_dt) {
    for (size_t i = 0; i < n; i++) {
        float s = round_to(gelu_tanh(g[i]), round_dt);
        a[i] = round_to(s * u[i], round_dt);
    }
}

void lmc_cpu_silu_mul_bwd(const float *g, const float *u, const float *da, size_t n, float *dg,
                          float *du) {
    for (size_t i = 0; i < n; i++) {
        float x = g[i], sg = 1.0f / (1.0f + expf(-x));
        dg[i] = da[i] * u[i] * sg * (1.0f + x * (1.0f - sg));
        du[i] = da[i] * x * sg;
    }
}

void lmc_cpu_act(lmc_act act, float *x, size_t n, lmc_dtype rd) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float v = x[i], r;
        switch (act) {
        case LMC_ACT_QUICK_GELU: {
            /* x * sigmoid(1.702 x): three ops, each rounded in a half dtype */
            float t = round_to(1.702f * v, rd);
            float s = round_to(1.0f / (1.0f + expf(-t)), rd);
            r = v * s;
            break;
        }
        case LMC_ACT_GELU:
            r = (float)(0.5 * v * (1.0 + erf(v * 0.70710678118654752440)));
            break;
        case LMC_ACT_GELU_TANH:
            r = gelu_tanh(v);
            break;
        case LMC_ACT_RELU:
            r = v > 0.f ? v : 0.f;
            break;
        default:
            r = silu(v);
            break;
        }
        x[i] = round_to(r, rd);
    }
}

/* One LayerNorm row: statistics in double; the weight and bias from wf
 * (widened, d each) or, when that allocation failed, widened per element. */
static void layernorm_row(const float *r, size_t d, float eps, const float *wf,
                          const lmc_cpu_mat *w, const lmc_cpu_mat *b, float *o, lmc_dtype rd) {
    double mean = 0, var = 0;
    for (size_t j = 0; j < d; j++) mean += r[j];
    mean /= (double)d;
    for (size_t j = 0; j < d; j++) var += (r[j] - mean) * (r[j] - mean);
    float inv = (float)(1.0 / sqrt(var / (double)d + eps)), m = (float)mean;
    for (size_t j = 0; j < d; j++) {
        float g, bb;
        if (wf) {
            g = wf[j], bb = wf[d + j];
        } else {
            lmc_cpu_widen(w, 0, (int64_t)j, 1, &g);
            lmc_cpu_widen(b, 0, (int64_t)j, 1, &bb);
        }
        o[j] = (r[j] - m) * inv * g + bb;
    }
    lmc_cpu_round(o, d, rd);
}

void lmc_cpu_layernorm(const float *x, const lmc_cpu_mat *w, const lmc_cpu_mat *b, float eps,
                       size_t n, size_t d, float *out, lmc_dtype rd) {
    float *wf = malloc(2 * d * sizeof(float));
    if (wf) {
        lmc_cpu_widen(w, 0, 0, d, wf);
        lmc_cpu_widen(b, 0, 0, d, wf + d);
    }
#pragma omp parallel for schedule(static) if (n * d > 65536)
    for (size_t i = 0; i < n; i++) layernorm_row(x + i * d, d, eps, wf, w, b, out + i * d, rd);
    free(wf);
}

/* Decode and short chunks: one (query, head) pair per OpenMP task. */
static lmc_status attention_rows(const lmc_cpu_attn_args *a, const float *q, float *out) {
    size_t hd = a->head_dim, group = a->heads / a->kv_heads;
    size_t q_stride = a->heads * hd, kv_stride = a->kv_heads * hd;
    size_t total = a->n * a->heads;
    int failed = 0;
    /* A team only pays off when there is real work to share. */
    bool team = total * (a->n_past + a->n) * hd > 65536;
#pragma omp parallel if (team)
    {
        float *sc = malloc((a->n_past + a->n) * sizeof(float));
        float *acc = malloc(hd * sizeof(float));
        if (!sc || !acc) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 4)
        for (size_t t = 0; t < total; t++) {
            if (!sc || !acc) continue;
            size_t i = t / a->heads, h = t % a->heads, g = h / group;
            const float *qi = q + i * q_stride + h * hd;
            size_t p = a->pos0 + i;
            size_t lo = (a->window && p + 1 > a->window) ? p + 1 - a->window : 0;
            const float *kp = a->k ? a->k + g * a->past_stride * hd : NULL;
            const float *vp = a->v ? a->v + g * a->past_stride * hd : NULL;
            float mx = -INFINITY;
            for (size_t s = 0; s < a->n_past; s++) {
                if (a->pos[s] < 0 || (size_t)a->pos[s] < lo) { /* empty or out of window */
                    sc[s] = -INFINITY;
                    continue;
                }
                float d = round_to(vdot(qi, kp + s * hd, hd), a->round_dt);
                sc[s] = softcap1(round_to(d * a->scale, a->round_dt), a->softcap, a->round_dt);
                if (sc[s] > mx) mx = sc[s];
            }
            const size_t seen = a->bidirectional ? a->n : i + 1; /* new keys visible */
            for (size_t s = 0; s < seen; s++) {
                float *o = &sc[a->n_past + s];
                if (a->pos0 + s < lo) {
                    *o = -INFINITY;
                    continue;
                }
                float d = round_to(vdot(qi, a->k_new + s * kv_stride + g * hd, hd), a->round_dt);
                *o = softcap1(round_to(d * a->scale, a->round_dt), a->softcap, a->round_dt);
                if (*o > mx) mx = *o;
            }
            size_t m = a->n_past + seen;
            double sum = 0.0;
            for (size_t s = 0; s < m; s++) {
                float e = sc[s] == -INFINITY ? 0.0f : expf(sc[s] - mx);
                sc[s] = e;
                sum += e;
            }
            float inv = (float)(1.0 / sum);
            memset(acc, 0, hd * sizeof(float));
            for (size_t s = 0; s < a->n_past; s++) {
                if (sc[s] == 0.0f) continue;
                vaxpy(acc, round_to(sc[s] * inv, a->round_dt), vp + s * hd, hd);
            }
            for (size_t s = 0; s < seen; s++) {
                float w = sc[a->n_past + s];
                if (w == 0.0f) continue;
                vaxpy(acc, round_to(w * inv, a->round_dt), a->v_new + s * kv_stride + g * hd,
                      hd);
            }
            float *oi = out + i * q_stride + h * hd;
            for (size_t d = 0; d < hd; d++) oi[d] = round_to(acc[d], a->round_dt);
        }
        free(sc);
        free(acc);
    }
    if (failed) return lmc_err(LMC_ERR_NOMEM, "attention: no memory for score rows");
    return LMC_OK;
}

/* Score buffer of the sgemm path, in floats; query rows are processed in
 * blocks that fit it. */
#define ATTN_SCORE_FLOATS ((size_t)1 << 22)

/* Longer chunks: per head and block of query rows, scores and the weighted
 * sum are sgemm calls (OpenBLAS threads them); masking and softmax run over
 * the score rows. */
static lmc_status attention_blas(const lmc_cpu_attn_args *a, const float *q, float *out) {
    size_t hd = a->head_dim, group = a->heads / a->kv_heads, n = a->n, np = a->n_past;
    size_t q_stride = a->heads * hd, kv_stride = a->kv_heads * hd;
    size_t rb = ATTN_SCORE_FLOATS / (np + n);
    if (rb < 1) rb = 1;
    if (rb > n) rb = n;
    float *S = malloc(rb * (np + n) * sizeof(float));
    if (!S) return lmc_err(LMC_ERR_NOMEM, "attention: no memory for %zu x %zu scores", rb, np + n);
    for (size_t h = 0; h < a->heads; h++) {
        size_t g = h / group;
        const float *kp = np ? a->k + g * a->past_stride * hd : NULL;
        const float *vp = np ? a->v + g * a->past_stride * hd : NULL;
        for (size_t i0 = 0; i0 < n; i0 += rb) {
            size_t nb = n - i0 < rb ? n - i0 : rb;
            size_t nn = a->bidirectional ? n : i0 + nb; /* new keys this block can see */
            size_t m = np + nn;
            const float *qh = q + i0 * q_stride + h * hd;
            if (np)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)np, (int)hd,
                            1.0f, qh, (int)q_stride, kp, (int)hd, 0.0f, S, (int)m);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)nn, (int)hd, 1.0f,
                        qh, (int)q_stride, a->k_new + g * hd, (int)kv_stride, 0.0f, S + np,
                        (int)m);
            for (size_t r = 0; r < nb; r++) {
                float *row = S + r * m;
                size_t i = i0 + r, p = a->pos0 + i;
                size_t lo = (a->window && p + 1 > a->window) ? p + 1 - a->window : 0;
                float mx = -INFINITY;
                for (size_t s = 0; s < m; s++) {
                    bool masked = s < np ? (a->pos[s] < 0 || (size_t)a->pos[s] < lo)
                                         : ((!a->bidirectional && s - np > i) ||
                                            a->pos0 + (s - np) < lo);
                    if (masked) {
                        row[s] = -INFINITY;
                        continue;
                    }
                    row[s] = round_to(round_to(row[s], a->round_dt) * a->scale, a->round_dt);
                    row[s] = softcap1(row[s], a->softcap, a->round_dt);
                    if (row[s] > mx) mx = row[s];
                }
                double sum = 0.0;
                for (size_t s = 0; s < m; s++) {
                    float e = row[s] == -INFINITY ? 0.0f : expf(row[s] - mx);
                    row[s] = e;
                    sum += e;
                }
                float inv = (float)(1.0 / sum);
                for (size_t s = 0; s < m; s++) row[s] = round_to(row[s] * inv, a->round_dt);
            }
            float *oh = out + i0 * q_stride + h * hd;
            if (np)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)hd, (int)np,
                            1.0f, S, (int)m, vp, (int)hd, 0.0f, oh, (int)q_stride);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)hd, (int)nn,
                        1.0f, S + np, (int)m, a->v_new + g * hd, (int)kv_stride,
                        np ? 1.0f : 0.0f, oh, (int)q_stride);
            if (a->round_dt != LMC_DT_F32)
                for (size_t r = 0; r < nb; r++) lmc_cpu_round(oh + r * q_stride, hd, a->round_dt);
        }
    }
    free(S);
    return LMC_OK;
}

lmc_status lmc_cpu_attention(const lmc_cpu_attn_args *a, const float *q, float *out) {
    if (a->n >= 16) return attention_blas(a, q, out);
    return attention_rows(a, q, out);
}
