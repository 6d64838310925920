/* LoRA adapters on a frozen llama-family base: module names, seeded
 * initialisation, base binding (config checks, rotary frequencies). The
 * forward/backward lives in lora_grad.c, AdamW in optim.c, files in
 * lora_io.c. */
#include "train/lora.h"
#include "base/error.h"
#include "base/file.h"
#include "models/model.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const module_names[LORA_N_MODULES] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
static const char *const module_paths[LORA_N_MODULES] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

const char *lmc_lora_module_name(int m) {
    return m >= 0 && m < LORA_N_MODULES ? module_names[m] : "?";
}
const char *lmc_lora_module_path(int m) {
    return m >= 0 && m < LORA_N_MODULES ? module_paths[m] : "?";
}

lmc_status lmc_lora_parse_targets(const char *list, unsigned *mask) {
    *mask = 0;
    if (!list || !*list)
        return lmc_err(LMC_ERR_INVALID_ARG, "lora: target modules: the list is empty");
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && *p == ' ') p++, len--;
        while (len && p[len - 1] == ' ') len--;
        if (!len)
            return lmc_err(LMC_ERR_INVALID_ARG, "lora: target modules '%s': empty entry", list);
        int found = -1;
        for (int m = 0; m < LORA_N_MODULES; m++)
            if (strlen(module_names[m]) == len && !strncmp(p, module_names[m], len)) found = m;
        if (found < 0)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "lora: unknown target module '%.*s' (known: q_proj, k_proj, v_proj, "
                           "o_proj, gate_proj, up_proj, down_proj)",
                           (int)len, p);
        *mask |= 1u << found;
        if (!end) break;
        p = end + 1;
    }
    return LMC_OK;
}

void lmc_lora_key(const lmc_lora_adapter *a, bool is_b, char *buf, size_t cap) {
    snprintf(buf, cap, "base_model.model.model.layers.%zu.%s.lora_%c.weight", a->layer,
             module_paths[a->module], is_b ? 'B' : 'A');
}

size_t lmc_lora_count_targets(size_t n, size_t offset) {
    size_t lo = offset > 1 ? offset : 1;
    return n > lo ? n - lo : 0;
}

/* ------------------------------------------------------------ rng */

/* splitmix64: small, seedable, and enough for an initialisation draw. */
static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double next_unit(uint64_t *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

/* ------------------------------------------------------------ base */

/* What the trainer's forward/backward implements, stated in one place:
 * the plain llama layer (separate projections, RMSNorm weights as stored,
 * optional q/k norms and biases, SwiGLU, one full-width RoPE table, one
 * window for every layer); the rest is refused by name. */
static const unsigned lora_features = 0;

lmc_status lmc_lora_supports(const lmc_arch_plan *p, const lmc_model_config *c) {
    return lmc_arch_require(p, c, lora_features, "lora", " for training");
}

lmc_status lmc_lora_base_open(const char *dir, lmc_lora_base *b) {
    memset(b, 0, sizeof *b);
    if (!dir || !*dir) return lmc_err(LMC_ERR_INVALID_ARG, "lora: a model directory is required");
    if (!lmc_is_dir(dir)) return lmc_err(LMC_ERR_NOT_FOUND, "%s: model directory not found", dir);
    lmc_status st = lmc_config_load(dir, &b->cfg, &b->config_json, NULL);
    if (!st) st = lmc_st_set_open_dir(dir, &b->weights);
    if (st) lmc_lora_base_close(b);
    return st;
}

void lmc_lora_base_close(lmc_lora_base *b) {
    if (!b) return;
    lmc_st_set_free(b->weights);
    if (b->config_json) json_object_put(b->config_json);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------ net */

static int64_t module_in(const lmc_llama_layer *L, int m) {
    const lmc_cpu_mat *w[] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down};
    return w[m]->cols;
}
static int64_t module_out(const lmc_llama_layer *L, int m) {
    const lmc_cpu_mat *w[] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down};
    return w[m]->rows;
}

lmc_status lmc_lora_net_init(lmc_lora_net *net, const lmc_model_config *cfg,
                             json_object *config_json, const lmc_st_set *set,
                             const lmc_lora_shape *shape, uint64_t seed) {
    memset(net, 0, sizeof *net);
    if (!cfg || !set || !shape)
        return lmc_err(LMC_ERR_INVALID_ARG, "lora: config, weights and shape are required");
    if (shape->rank <= 0 || shape->rank > 4096)
        return lmc_err(LMC_ERR_INVALID_ARG, "lora: rank must be in 1..4096, got %d",
                       (int)shape->rank);
    if (!(shape->alpha > 0.0f) || !isfinite(shape->alpha))
        return lmc_err(LMC_ERR_INVALID_ARG, "lora: alpha must be a positive number");
    if (!shape->targets || shape->targets >> LORA_N_MODULES)
        return lmc_err(LMC_ERR_INVALID_ARG, "lora: no valid target modules");
    if (shape->num_layers == 0 || shape->num_layers < -1)
        return lmc_err(LMC_ERR_INVALID_ARG, "lora: num_layers must be -1 (all) or positive, got %d",
                       (int)shape->num_layers);
    lmc_status st = lmc_arch_plan_init(cfg, config_json, &net->plan);
    if (st) return st;
    if ((st = lmc_lora_supports(&net->plan, cfg))) goto fail;
    net->cfg = *cfg;
    net->window = net->plan.cache_window;
    net->cfg.sliding_window = (int64_t)net->window;
    net->shape = *shape;
    net->scaling = shape->alpha / (float)shape->rank;
    net->attn_scale = net->plan.attn_scale;
    /* a quantized base stays packed (the products dequantize on the fly):
     * training then holds ~0.56 bytes per frozen parameter at 4 bits */
    if ((st = lmc_llama_weights_bind(&net->plan, &net->cfg, set, true, &net->w))) goto fail;
    if ((st = lmc_arch_rope_init(&net->plan, &net->cfg, false, &net->rope))) goto fail;

    size_t L = net->w.n_layers;
    size_t n_adapt = shape->num_layers < 0 || (size_t)shape->num_layers >= L
                         ? L
                         : (size_t)shape->num_layers;
    net->first_layer = L - n_adapt;
    size_t per_layer = 0;
    for (int m = 0; m < LORA_N_MODULES; m++)
        if (shape->targets & (1u << m)) per_layer++;
    net->n_ad = per_layer * n_adapt;
    net->ad = calloc(net->n_ad, sizeof *net->ad);
    net->by_layer = calloc(L * LORA_N_MODULES, sizeof *net->by_layer);
    if (!net->ad || !net->by_layer) {
        st = lmc_err(LMC_ERR_NOMEM, "lora: no memory for adapters");
        goto fail;
    }
    uint64_t rng = seed;
    size_t r = (size_t)shape->rank, k = 0;
    for (size_t l = net->first_layer; l < L; l++) {
        for (int m = 0; m < LORA_N_MODULES; m++) {
            if (!(shape->targets & (1u << m))) continue;
            lmc_lora_adapter *a = &net->ad[k++];
            a->module = m;
            a->layer = l;
            a->in = module_in(&net->w.layers[l], m);
            a->out = module_out(&net->w.layers[l], m);
            size_t na = r * (size_t)a->in, nb = (size_t)a->out * r;
            a->A = malloc(na * sizeof(float));
            a->B = calloc(nb, sizeof(float));
            a->gA = calloc(na, sizeof(float));
            a->gB = calloc(nb, sizeof(float));
            if (!a->A || !a->B || !a->gA || !a->gB) {
                st = lmc_err(LMC_ERR_NOMEM, "lora: no memory for adapters");
                goto fail;
            }
            /* kaiming_uniform(a=sqrt(5)) on [r, in]: bound = 1/sqrt(in). */
            double bound = 1.0 / sqrt((double)a->in);
            for (size_t i = 0; i < na; i++) a->A[i] = (float)((2.0 * next_unit(&rng) - 1.0) * bound);
            net->by_layer[l * LORA_N_MODULES + (size_t)m] = a;
        }
    }
    return LMC_OK;
fail:
    lmc_lora_net_free(net);
    return st;
}

void lmc_lora_net_free(lmc_lora_net *net) {
    if (!net) return;
    for (size_t i = 0; i < net->n_ad; i++) {
        free(net->ad[i].A), free(net->ad[i].B);
        free(net->ad[i].gA), free(net->ad[i].gB);
    }
    free(net->ad);
    free(net->by_layer);
    lmc_rope_free(&net->rope);
    lmc_llama_weights_free(&net->w);
    lmc_arch_plan_free(&net->plan);
    memset(net, 0, sizeof *net);
}

void lmc_lora_zero_grad(lmc_lora_net *net) {
    size_t r = (size_t)net->shape.rank;
    for (size_t i = 0; i < net->n_ad; i++) {
        lmc_lora_adapter *a = &net->ad[i];
        memset(a->gA, 0, r * (size_t)a->in * sizeof(float));
        memset(a->gB, 0, r * (size_t)a->out * sizeof(float));
    }
}

size_t lmc_lora_param_count(const lmc_lora_net *net) {
    size_t n = 0, r = (size_t)net->shape.rank;
    for (size_t i = 0; i < net->n_ad; i++) n += r * (size_t)(net->ad[i].in + net->ad[i].out);
    return n;
}
