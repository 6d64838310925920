/* Training forward and backward of the llama family with LoRA adapters, in
 * fp32 on the CPU. Base weights are frozen and read in their stored dtype;
 * only adapter gradients are produced.
 *
 * Memory: the forward keeps only each layer's input (the residual stream);
 * the backward recomputes one layer's activations at a time from it
 * (activation checkpointing), and attention probabilities are recomputed
 * per head rather than stored. Layers below the first adapted one are run
 * forward only. */
#include "backend/cpu/cpu_ops.h"
#include "base/error.h"
#include "train/lora.h"
#include <cblas.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Logit rows computed at once by the loss (bounds its [rows, vocab] buffer). */
#define LOGIT_ROWS 128
/* Rows of a 16/bf16 weight widened per sgemm in mat_dx. */
#define WIDEN_FLOATS ((size_t)1 << 20)

typedef struct {
    size_t T;
    float *xs;                 /* [(L + 1), T, H] residual stream per layer boundary */
    float *tmp;                /* [T, H] */
    float *x_mid, *h1, *h2;    /* [T, H] */
    float *q_pre, *q, *att;    /* [T, qd] */
    float *k_pre, *k, *v;      /* [T, kvd] */
    float *g, *u, *a;          /* [T, Idim] */
    float *xa[LORA_N_MODULES]; /* [T, r] */
    /* gradients */
    float *dx, *dh;            /* [T, H] */
    float *dq, *datt;          /* [T, qd] */
    float *dk, *dv;            /* [T, kvd] */
    float *dg, *du, *da;       /* [T, Idim] */
    float *dxa;                /* [T, r] */
    float *P, *dP;             /* [T, T] */
    float *wbuf;               /* widened weight rows */
    float *logits;             /* [LOGIT_ROWS, V] */
} lora_ws;

static void ws_free(lora_ws *w) {
    /* Every member after T is a float pointer. */
    size_t n = (sizeof *w - offsetof(lora_ws, xs)) / sizeof(float *);
    float **p = (float **)((char *)w + offsetof(lora_ws, xs));
    for (size_t i = 0; i < n; i++) free(p[i]);
    memset(w, 0, sizeof *w);
}

static lmc_status ws_alloc(const lmc_lora_net *net, size_t T, bool backward, lora_ws *w) {
    const lmc_model_config *c = &net->cfg;
    size_t H = (size_t)c->hidden_size, Idim = (size_t)c->intermediate_size;
    size_t qd = (size_t)(c->num_attention_heads * c->head_dim);
    size_t kvd = (size_t)(c->num_key_value_heads * c->head_dim);
    size_t L = net->w.n_layers, r = (size_t)net->shape.rank, V = (size_t)c->vocab_size;
    memset(w, 0, sizeof *w);
    w->T = T;
    bool ok = true;
#define A(field, count) (ok = ok && (w->field = malloc((size_t)(count) * sizeof(float) + 16)))
    A(xs, (L + 1) * T * H);
    A(tmp, T * H), A(x_mid, T * H), A(h1, T * H), A(h2, T * H);
    A(q_pre, T * qd), A(q, T * qd), A(att, T * qd);
    A(k_pre, T * kvd), A(k, T * kvd), A(v, T * kvd);
    A(g, T * Idim), A(u, T * Idim), A(a, T * Idim);
    for (int m = 0; m < LORA_N_MODULES; m++) A(xa[m], T * r);
    A(P, T * T);
    size_t wb = WIDEN_FLOATS;
    wb = wb > H ? wb : H;
    wb = wb > Idim ? wb : Idim;
    wb = wb > qd ? wb : qd;
    A(wbuf, wb);
    A(logits, LOGIT_ROWS * V);
    if (backward) {
        A(dx, T * H), A(dh, T * H);
        A(dq, T * qd), A(datt, T * qd);
        A(dk, T * kvd), A(dv, T * kvd);
        A(dg, T * Idim), A(du, T * Idim), A(da, T * Idim);
        A(dxa, T * r);
        A(dP, T * T);
    }
#undef A
    if (!ok) {
        ws_free(w);
        return lmc_err(LMC_ERR_NOMEM, "lora: no memory for the activations of %zu tokens", T);
    }
    return LMC_OK;
}

/* ------------------------------------------------------------ linear algebra */

static const lmc_cpu_mat *opt_bias(const lmc_cpu_mat *b) { return b && b->data ? b : NULL; }

/* dx[n, in] (+)= dy[n, out] @ W[out, in], W in its stored dtype. */
static void mat_dx(const lmc_cpu_mat *W, const float *dy, size_t n, float *dx, bool acc,
                   float *wbuf) {
    int out = (int)W->rows, in = (int)W->cols;
    if (W->dt == LMC_DT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, in, out, 1.0f, dy, out,
                    (const float *)W->data, in, acc ? 1.0f : 0.0f, dx, in);
        return;
    }
    size_t rb = WIDEN_FLOATS / (size_t)in;
    if (rb < 1) rb = 1;
    for (size_t r0 = 0; r0 < (size_t)out; r0 += rb) {
        size_t nb = (size_t)out - r0 < rb ? (size_t)out - r0 : rb;
        for (size_t i = 0; i < nb; i++)
            lmc_cpu_widen(W, (int64_t)(r0 + i), 0, (size_t)in, wbuf + i * (size_t)in);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, in, (int)nb, 1.0f,
                    dy + r0, out, wbuf, in, (acc || r0) ? 1.0f : 0.0f, dx, in);
    }
}

/* y = x W^T + b (+ s * (x A^T) B^T with the adapter, keeping xa = x A^T). */
static lmc_status lin_fwd(const lmc_lora_net *net, const lmc_cpu_mat *W, const lmc_cpu_mat *b,
                          const lmc_lora_adapter *ad, const float *x, size_t n, float *y,
                          float *xa) {
    lmc_status st = lmc_cpu_matmul(W, opt_bias(b), x, n, y);
    if (st || !ad) return st;
    int r = net->shape.rank, in = (int)ad->in, out = (int)ad->out;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, r, in, 1.0f, x, in, ad->A, in,
                0.0f, xa, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, out, r, net->scaling, xa, r,
                ad->B, r, 1.0f, y, out);
    return LMC_OK;
}

/* Backward of lin_fwd given dy: adapter gradients, and dx (+)= dy W (+ the
 * adapter's share) when dx != NULL. */
static void lin_bwd(const lmc_lora_net *net, const lmc_cpu_mat *W, lmc_lora_adapter *ad,
                    const float *x, const float *xa, const float *dy, size_t n, float *dx,
                    bool acc, lora_ws *ws) {
    if (dx) mat_dx(W, dy, n, dx, acc, ws->wbuf);
    if (!ad) return;
    int r = net->shape.rank, in = (int)ad->in, out = (int)ad->out;
    float s = net->scaling;
    /* gB += s dy^T xa; dxa = s dy B; gA += dxa^T x; dx += dxa A */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, r, (int)n, s, dy, out, xa, r, 1.0f,
                ad->gB, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, r, out, s, dy, out, ad->B, r,
                0.0f, ws->dxa, r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, (int)n, 1.0f, ws->dxa, r, x, in,
                1.0f, ad->gA, in);
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, in, r, 1.0f, ws->dxa, r,
                    ad->A, in, 1.0f, dx, in);
}

/* ------------------------------------------------------------ ops */

/* RoPE of the training forward (positions 0..n-1), or its transpose. */
static void rope(const lmc_lora_net *net, float *x, size_t n, size_t heads, bool inverse) {
    size_t hd = (size_t)net->cfg.head_dim;
    if (inverse)
        lmc_cpu_rope_bwd(x, n, heads, hd, hd, 0, net->rope.inv_freq, net->rope.attn_factor);
    else
        lmc_cpu_rope(x, n, heads, hd, 0, net->rope.inv_freq, net->rope.attn_factor, LMC_DT_F32);
}

static lmc_cpu_seq_attn seq_attn(const lmc_lora_net *net, lora_ws *ws, size_t T) {
    const lmc_model_config *c = &net->cfg;
    return (lmc_cpu_seq_attn){
        .T = T, .heads = (size_t)c->num_attention_heads,
        .kv_heads = (size_t)c->num_key_value_heads, .head_dim = (size_t)c->head_dim,
        .window = net->window, .scale = net->attn_scale, .P = ws->P, .dP = ws->dP,
    };
}

/* ------------------------------------------------------------ layer */

static lmc_lora_adapter *adapter(const lmc_lora_net *net, size_t l, int m) {
    return net->by_layer[l * LORA_N_MODULES + (size_t)m];
}

/* x_in -> x_out through layer l, leaving its activations in ws. */
static lmc_status layer_fwd(const lmc_lora_net *net, size_t l, const float *x_in, float *x_out,
                            lora_ws *ws, size_t T) {
    const lmc_model_config *c = &net->cfg;
    const lmc_llama_layer *Ly = &net->w.layers[l];
    size_t H = (size_t)c->hidden_size, Idim = (size_t)c->intermediate_size;
    size_t hd = (size_t)c->head_dim, nh = (size_t)c->num_attention_heads;
    size_t nkv = (size_t)c->num_key_value_heads;
    float eps = (float)c->rms_norm_eps;
    lmc_status st;
    lmc_cpu_rmsnorm(x_in, &Ly->in_norm, eps, T, H, ws->h1, LMC_DT_F32);
    if ((st = lin_fwd(net, &Ly->q, &Ly->q_b, adapter(net, l, LORA_Q), ws->h1, T, ws->q_pre,
                      ws->xa[LORA_Q])) ||
        (st = lin_fwd(net, &Ly->k, &Ly->k_b, adapter(net, l, LORA_K), ws->h1, T, ws->k_pre,
                      ws->xa[LORA_K])) ||
        (st = lin_fwd(net, &Ly->v, &Ly->v_b, adapter(net, l, LORA_V), ws->h1, T, ws->v,
                      ws->xa[LORA_V])))
        return st;
    if (Ly->q_norm.data) {
        lmc_cpu_rmsnorm(ws->q_pre, &Ly->q_norm, eps, T * nh, hd, ws->q, LMC_DT_F32);
        lmc_cpu_rmsnorm(ws->k_pre, &Ly->k_norm, eps, T * nkv, hd, ws->k, LMC_DT_F32);
    } else {
        memcpy(ws->q, ws->q_pre, T * nh * hd * sizeof(float));
        memcpy(ws->k, ws->k_pre, T * nkv * hd * sizeof(float));
    }
    rope(net, ws->q, T, nh, false);
    rope(net, ws->k, T, nkv, false);
    lmc_cpu_seq_attn sa = seq_attn(net, ws, T);
    lmc_cpu_seq_attention(&sa, ws->q, ws->k, ws->v, ws->att);
    if ((st = lin_fwd(net, &Ly->o, &Ly->o_b, adapter(net, l, LORA_O), ws->att, T, ws->tmp,
                      ws->xa[LORA_O])))
        return st;
    for (size_t i = 0; i < T * H; i++) ws->x_mid[i] = x_in[i] + ws->tmp[i];
    lmc_cpu_rmsnorm(ws->x_mid, &Ly->post_norm, eps, T, H, ws->h2, LMC_DT_F32);
    if ((st = lin_fwd(net, &Ly->gate, &Ly->gate_b, adapter(net, l, LORA_GATE), ws->h2, T, ws->g,
                      ws->xa[LORA_GATE])) ||
        (st = lin_fwd(net, &Ly->up, &Ly->up_b, adapter(net, l, LORA_UP), ws->h2, T, ws->u,
                      ws->xa[LORA_UP])))
        return st;
    lmc_cpu_silu_mul(ws->g, ws->u, T * Idim, ws->a, LMC_DT_F32);
    if ((st = lin_fwd(net, &Ly->down, &Ly->down_b, adapter(net, l, LORA_DOWN), ws->a, T, ws->tmp,
                      ws->xa[LORA_DOWN])))
        return st;
    for (size_t i = 0; i < T * H; i++) x_out[i] = ws->x_mid[i] + ws->tmp[i];
    return LMC_OK;
}

/* ws->dx holds dL/dx_out of layer l (activations in ws); leaves dL/dx_in
 * there when need_dx. */
static void layer_bwd(lmc_lora_net *net, size_t l, const float *x_in, lora_ws *ws, size_t T,
                      bool need_dx) {
    const lmc_model_config *c = &net->cfg;
    const lmc_llama_layer *Ly = &net->w.layers[l];
    size_t H = (size_t)c->hidden_size, Idim = (size_t)c->intermediate_size;
    size_t hd = (size_t)c->head_dim, nh = (size_t)c->num_attention_heads;
    size_t nkv = (size_t)c->num_key_value_heads;
    float eps = (float)c->rms_norm_eps;
    /* MLP: x_out = x_mid + down(silu(gate(h2)) * up(h2)) */
    lin_bwd(net, &Ly->down, adapter(net, l, LORA_DOWN), ws->a, ws->xa[LORA_DOWN], ws->dx, T,
            ws->da, false, ws);
    lmc_cpu_silu_mul_bwd(ws->g, ws->u, ws->da, T * Idim, ws->dg, ws->du);
    lin_bwd(net, &Ly->gate, adapter(net, l, LORA_GATE), ws->h2, ws->xa[LORA_GATE], ws->dg, T,
            ws->dh, false, ws);
    lin_bwd(net, &Ly->up, adapter(net, l, LORA_UP), ws->h2, ws->xa[LORA_UP], ws->du, T, ws->dh,
            true, ws);
    lmc_cpu_rmsnorm_bwd(ws->x_mid, &Ly->post_norm, eps, T, H, ws->dh, ws->dx, true, ws->wbuf);
    /* Attention: x_mid = x_in + o(attn(rope(norm?(q)), rope(norm?(k)), v)) */
    lin_bwd(net, &Ly->o, adapter(net, l, LORA_O), ws->att, ws->xa[LORA_O], ws->dx, T, ws->datt,
            false, ws);
    lmc_cpu_seq_attn sa = seq_attn(net, ws, T);
    lmc_cpu_seq_attention_bwd(&sa, ws->q, ws->k, ws->v, ws->datt, ws->dq, ws->dk, ws->dv);
    rope(net, ws->dq, T, nh, true);
    rope(net, ws->dk, T, nkv, true);
    if (Ly->q_norm.data) {
        /* datt is free again after attn_bwd: scratch for the norm input
         * gradients (kvd <= qd). */
        lmc_cpu_rmsnorm_bwd(ws->q_pre, &Ly->q_norm, eps, T * nh, hd, ws->dq, ws->datt, false,
                            ws->wbuf);
        memcpy(ws->dq, ws->datt, T * nh * hd * sizeof(float));
        lmc_cpu_rmsnorm_bwd(ws->k_pre, &Ly->k_norm, eps, T * nkv, hd, ws->dk, ws->datt, false,
                            ws->wbuf);
        memcpy(ws->dk, ws->datt, T * nkv * hd * sizeof(float));
    }
    lin_bwd(net, &Ly->q, adapter(net, l, LORA_Q), ws->h1, ws->xa[LORA_Q], ws->dq, T,
            need_dx ? ws->dh : NULL, false, ws);
    lin_bwd(net, &Ly->k, adapter(net, l, LORA_K), ws->h1, ws->xa[LORA_K], ws->dk, T,
            need_dx ? ws->dh : NULL, true, ws);
    lin_bwd(net, &Ly->v, adapter(net, l, LORA_V), ws->h1, ws->xa[LORA_V], ws->dv, T,
            need_dx ? ws->dh : NULL, true, ws);
    if (need_dx)
        lmc_cpu_rmsnorm_bwd(x_in, &Ly->in_norm, eps, T, H, ws->dh, ws->dx, true, ws->wbuf);
}

/* ------------------------------------------------------------ model */

static lmc_status check_ids(const lmc_lora_net *net, const int32_t *ids, size_t n) {
    if (!ids || n == 0) return lmc_err(LMC_ERR_INVALID_ARG, "lora: empty sequence");
    if (n > (1u << 20)) return lmc_err(LMC_ERR_LIMIT, "lora: sequence of %zu tokens is too long", n);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= net->cfg.vocab_size)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "lora: token id %d at index %zu is outside the vocabulary (size %" PRId64
                           ")",
                           ids[i], i, net->cfg.vocab_size);
    return LMC_OK;
}

/* Embedding then every layer; xs[l] is the input of layer l, xs[L] the
 * final residual. ws holds the last layer's activations afterwards. */
static lmc_status forward_all(const lmc_lora_net *net, const int32_t *ids, size_t T, lora_ws *ws) {
    size_t H = (size_t)net->cfg.hidden_size, L = net->w.n_layers;
    for (size_t i = 0; i < T; i++) lmc_cpu_widen(&net->w.embed, ids[i], 0, H, ws->xs + i * H);
    for (size_t l = 0; l < L; l++) {
        lmc_status st = layer_fwd(net, l, ws->xs + l * T * H, ws->xs + (l + 1) * T * H, ws, T);
        if (st) return st;
    }
    return LMC_OK;
}

lmc_status lmc_lora_logits(lmc_lora_net *net, const int32_t *ids, size_t n, float *logits) {
    lmc_status st = check_ids(net, ids, n);
    if (st) return st;
    lora_ws ws;
    if ((st = ws_alloc(net, n, false, &ws))) return st;
    size_t H = (size_t)net->cfg.hidden_size, L = net->w.n_layers;
    if (!(st = forward_all(net, ids, n, &ws))) {
        lmc_cpu_rmsnorm(ws.xs + L * n * H, &net->w.final_norm, (float)net->cfg.rms_norm_eps, n, H,
                        ws.h1, LMC_DT_F32);
        st = lmc_cpu_matmul(&net->w.lm_head, NULL, ws.h1, n, logits);
    }
    ws_free(&ws);
    return st;
}

lmc_status lmc_lora_seq_grad(lmc_lora_net *net, const int32_t *ids, size_t n, size_t offset,
                             float weight, double *loss_sum) {
    lmc_status st = check_ids(net, ids, n);
    if (st) return st;
    size_t lo = offset > 1 ? offset : 1;
    if (lo >= n) return LMC_OK; /* no target token: contributes nothing */
    lora_ws ws;
    if ((st = ws_alloc(net, n, true, &ws))) return st;
    const lmc_model_config *c = &net->cfg;
    size_t H = (size_t)c->hidden_size, L = net->w.n_layers, V = (size_t)c->vocab_size, T = n;
    float eps = (float)c->rms_norm_eps;
    if ((st = forward_all(net, ids, T, &ws))) goto done;
    /* Final norm, logits of the rows that predict a target, cross-entropy
     * and its gradient back to the final norm's input. */
    const float *xL = ws.xs + L * T * H;
    /* tmp, not h1: the last layer's activations must survive for its backward. */
    lmc_cpu_rmsnorm(xL, &net->w.final_norm, eps, T, H, ws.tmp, LMC_DT_F32);
    memset(ws.dh, 0, T * H * sizeof(float));
    double loss = 0.0;
    for (size_t r0 = lo - 1; r0 < T - 1; r0 += LOGIT_ROWS) {
        size_t nb = T - 1 - r0 < LOGIT_ROWS ? T - 1 - r0 : LOGIT_ROWS;
        if ((st = lmc_cpu_matmul(&net->w.lm_head, NULL, ws.tmp + r0 * H, nb, ws.logits))) goto done;
        for (size_t i = 0; i < nb; i++) {
            float *z = ws.logits + i * V;
            int32_t tgt = ids[r0 + i + 1];
            float mx = z[0];
            for (size_t j = 1; j < V; j++) mx = z[j] > mx ? z[j] : mx;
            double sum = 0.0;
            for (size_t j = 0; j < V; j++) sum += exp((double)(z[j] - mx));
            double lse = (double)mx + log(sum);
            loss += lse - (double)z[tgt];
            float inv = (float)(1.0 / sum);
            for (size_t j = 0; j < V; j++) z[j] = weight * expf(z[j] - mx) * inv;
            z[tgt] -= weight;
        }
        mat_dx(&net->w.lm_head, ws.logits, nb, ws.dh + r0 * H, false, ws.wbuf);
    }
    *loss_sum += (double)weight * loss;
    lmc_cpu_rmsnorm_bwd(xL, &net->w.final_norm, eps, T, H, ws.dh, ws.dx, false, ws.wbuf);
    /* Layers from the top down to the first adapted one; the last layer's
     * activations are still in ws from the forward. */
    for (size_t l = L; l-- > net->first_layer;) {
        const float *x_in = ws.xs + l * T * H;
        if (l != L - 1 && (st = layer_fwd(net, l, x_in, ws.xs + (l + 1) * T * H, &ws, T)))
            goto done;
        layer_bwd(net, l, x_in, &ws, T, l > net->first_layer);
    }
done:
    ws_free(&ws);
    return st;
}
