/* AdamW over the LoRA adapters, with PyTorch's torch.optim.AdamW update
 * order (decoupled decay first, then bias-corrected moments). */
#include "base/error.h"
#include "train/lora.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

lmc_status lmc_adamw_init(lmc_adamw *o, size_t n_params, float lr, float beta1, float beta2,
                          float eps, float weight_decay) {
    memset(o, 0, sizeof *o);
    if (!(lr >= 0.0f) || !isfinite(lr))
        return lmc_err(LMC_ERR_INVALID_ARG, "adamw: learning rate must be >= 0");
    if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
        return lmc_err(LMC_ERR_INVALID_ARG, "adamw: betas must be in [0, 1)");
    if (!(eps > 0.0f) || !(weight_decay >= 0.0f) || !isfinite(weight_decay))
        return lmc_err(LMC_ERR_INVALID_ARG, "adamw: eps must be > 0 and weight decay >= 0");
    o->m = calloc(n_params ? n_params : 1, sizeof(float));
    o->v = calloc(n_params ? n_params : 1, sizeof(float));
    if (!o->m || !o->v) {
        lmc_adamw_free(o);
        return lmc_err(LMC_ERR_NOMEM, "adamw: no memory for %zu moments", n_params);
    }
    o->n = n_params;
    o->lr = lr, o->beta1 = beta1, o->beta2 = beta2, o->eps = eps;
    o->weight_decay = weight_decay;
    return LMC_OK;
}

void lmc_adamw_free(lmc_adamw *o) {
    if (!o) return;
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

static void update(const lmc_adamw *o, float *p, const float *g, float *m, float *v, size_t n,
                   float step_size, float bc2_sqrt) {
    float decay = 1.0f - o->lr * o->weight_decay;
    for (size_t i = 0; i < n; i++) {
        p[i] *= decay;
        m[i] += (g[i] - m[i]) * (1.0f - o->beta1);
        v[i] = v[i] * o->beta2 + (1.0f - o->beta2) * g[i] * g[i];
        float denom = sqrtf(v[i]) / bc2_sqrt + o->eps;
        p[i] -= step_size * m[i] / denom;
    }
}

void lmc_adamw_step(lmc_adamw *o, lmc_lora_net *net) {
    o->t++;
    double bc1 = 1.0 - pow((double)o->beta1, (double)o->t);
    double bc2 = 1.0 - pow((double)o->beta2, (double)o->t);
    float step_size = (float)(o->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    size_t off = 0, r = (size_t)net->shape.rank;
    for (size_t i = 0; i < net->n_ad; i++) {
        lmc_lora_adapter *a = &net->ad[i];
        size_t na = r * (size_t)a->in, nb = (size_t)a->out * r;
        if (off + na + nb > o->n) return; /* sized by lmc_lora_param_count: cannot happen */
        update(o, a->A, a->gA, o->m + off, o->v + off, na, step_size, bc2_sqrt);
        off += na;
        update(o, a->B, a->gB, o->m + off, o->v + off, nb, step_size, bc2_sqrt);
        off += nb;
    }
}
