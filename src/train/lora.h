/* LoRA on the architectures lmc_lora_supports accepts (llama, mistral,
 * qwen2, qwen3 today), CPU, fp32:
 * a training forward that keeps what the backward needs and a backward
 * pass that produces gradients for the adapters only (base weights frozen,
 * read in their stored dtype straight from the mapping).
 *
 * An adapted linear is y = W x + b + (alpha / r) * B (A x) with A [r, in]
 * and B [out, r], as PEFT's LoRA (no dropout). */
#ifndef LMC_TRAIN_LORA_H
#define LMC_TRAIN_LORA_H
#include "formats/config.h"
#include "formats/safetensors.h"
#include "lmc.h"
#include "models/arch.h"
#include "models/llama_weights.h"
#include "models/rope.h"
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

/* The seven adaptable projections of a llama-family layer. */
typedef enum {
    LORA_Q, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, LORA_N_MODULES
} lmc_lora_module;

/* "q_proj", ... and the HF path inside a layer ("self_attn.q_proj"). */
const char *lmc_lora_module_name(int m);
const char *lmc_lora_module_path(int m);
/* Parse a comma-separated list into a bit mask (bit m for module m).
 * Unknown names, empty entries and an empty list fail naming the entry. */
lmc_status lmc_lora_parse_targets(const char *list, unsigned *mask);

typedef struct {
    int module;       /* lmc_lora_module */
    size_t layer;
    int64_t in, out;  /* A is [r, in], B is [out, r] */
    float *A, *B;     /* values */
    float *gA, *gB;   /* gradient accumulators (same shapes) */
} lmc_lora_adapter;

typedef struct {
    int32_t rank;
    float alpha;
    unsigned targets;   /* module mask */
    int32_t num_layers; /* the last N layers; -1 (or >= layer count) = all */
} lmc_lora_shape;

/* The frozen base plus the adapters. */
typedef struct {
    lmc_model_config cfg;
    lmc_arch_plan plan;
    lmc_llama_weights w;
    lmc_rope rope;  /* frequencies and attention factor, as the model's */
    size_t window; /* sliding window, 0 for none */
    float attn_scale;
    lmc_lora_shape shape;
    float scaling;      /* alpha / r */
    size_t first_layer; /* first adapted layer */
    lmc_lora_adapter *ad;
    size_t n_ad;
    lmc_lora_adapter **by_layer; /* [n_layers * LORA_N_MODULES], NULL when not adapted */
} lmc_lora_net;

/* The trainer's capability check: LMC_ERR_UNSUPPORTED naming "lora" and
 * the feature of the description it does not implement. */
lmc_status lmc_lora_supports(const lmc_arch_plan *p, const lmc_model_config *c);

/* Bind the base weights of `set` (config already parsed; config_json for
 * layer_types / max_window_layers) and allocate adapters: A from a seeded
 * kaiming-uniform(a = sqrt(5)) draw (U(-1/sqrt(in), 1/sqrt(in))), B zero.
 * `set` is borrowed and must outlive the net. */
lmc_status lmc_lora_net_init(lmc_lora_net *net, const lmc_model_config *cfg,
                             json_object *config_json, const lmc_st_set *set,
                             const lmc_lora_shape *shape, uint64_t seed);
void lmc_lora_net_free(lmc_lora_net *net);
void lmc_lora_zero_grad(lmc_lora_net *net);
size_t lmc_lora_param_count(const lmc_lora_net *net);

/* PEFT's key for an adapter tensor:
 * base_model.model.model.layers.<l>.<path>.lora_<A|B>.weight */
void lmc_lora_key(const lmc_lora_adapter *a, bool is_b, char *buf, size_t cap);

/* Targets of a sequence: token j counts when max(offset, 1) <= j < n. */
size_t lmc_lora_count_targets(size_t n, size_t offset);

/* Forward + backward of one sequence: adds the sum of its target tokens'
 * cross-entropy times `weight` to *loss_sum and weight * d(sum)/d(adapter)
 * to the gradient accumulators. Ids are checked against the vocabulary. */
lmc_status lmc_lora_seq_grad(lmc_lora_net *net, const int32_t *ids, size_t n, size_t offset,
                             float weight, double *loss_sum);
/* Forward only (with adapters): logits of every position, [n, vocab]. */
lmc_status lmc_lora_logits(lmc_lora_net *net, const int32_t *ids, size_t n, float *logits);

/* AdamW with PyTorch's semantics (decoupled weight decay, bias-corrected
 * moments): p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t t;     /* steps taken */
    float *m, *v;  /* per parameter, in adapter order (A then B) */
    size_t n;
} lmc_adamw;
lmc_status lmc_adamw_init(lmc_adamw *o, size_t n_params, float lr, float beta1, float beta2,
                          float eps, float weight_decay);
void lmc_adamw_free(lmc_adamw *o);
/* One update of every adapter from its gradient accumulators. */
void lmc_adamw_step(lmc_adamw *o, lmc_lora_net *net);

/* PEFT-format files. Save writes <dir>/adapter_model.safetensors (fp32
 * lora_A/lora_B tensors) and <dir>/adapter_config.json atomically (the
 * directory is created when absent). Load reads both, checks peft_type,
 * r, lora_alpha, target_modules and layers against the net, and every
 * tensor's presence and shape; errors name the file and tensor. */
lmc_status lmc_lora_save(const lmc_lora_net *net, const char *dir, const char *base_model);
lmc_status lmc_lora_load(lmc_lora_net *net, const char *dir);
/* Read only adapter_config.json: rank, alpha, target mask, num_layers (the
 * last N, from layers_to_transform; -1 when absent). */
lmc_status lmc_lora_read_config(const char *dir, int64_t n_layers, lmc_lora_shape *shape);

/* Write a model directory with W' = W + (alpha/r) B A for every adapted
 * weight (stored in the base dtype), every other tensor copied, and the
 * config / generation config / tokenizer files copied. */
lmc_status lmc_lora_fuse_dirs(const char *model_dir, const char *adapter_dir,
                              const char *save_dir, lmc_progress_fn progress, void *user);

/* Open a model directory's config and weights for training. */
typedef struct {
    lmc_model_config cfg;
    json_object *config_json;
    lmc_st_set *weights;
} lmc_lora_base;
lmc_status lmc_lora_base_open(const char *dir, lmc_lora_base *b);
void lmc_lora_base_close(lmc_lora_base *b);

/* The trainer's net (tests read gradients and values through it). */
lmc_lora_net *lmc_lora_trainer_net(lmc_lora_trainer *t);

#endif
