/* The CLIP vision tower (transformers' CLIPVisionModel) on the CPU, as
 * vision encoders of LLaVA-style VLMs use it: patch embedding (the conv
 * done as one matmul per patch), class embedding, position embeddings,
 * pre-LayerNorm, then pre-norm encoder layers (LayerNorm, multi-head
 * self-attention with biases, LayerNorm, fc1 / activation / fc2). Weights
 * are views into the mapped safetensors; activations are fp32, rounded to
 * bf16/fp16 after each op for checkpoints stored in those dtypes. */
#ifndef LMC_VLM_CLIP_VISION_H
#define LMC_VLM_CLIP_VISION_H
#include "backend/cpu/cpu_ops.h"
#include "formats/safetensors.h"
#include "models/llama_weights.h" /* lmc_weights_bind_tensor */
#include "lmc.h"
#include <json-c/json.h>

/* Parse an activation name (hidden_act / projector_hidden_act; applied by
 * lmc_cpu_act); `what` names the file and key in errors
 * (LMC_ERR_UNSUPPORTED lists the supported names). */
lmc_status lmc_act_parse(const char *name, const char *what, lmc_act *out);

typedef struct {
    int64_t hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
    int64_t image_size, patch_size, num_channels;
    double layer_norm_eps;
    lmc_act act;
} lmc_clip_vision_config;

/* vision_config as transformers' CLIPVisionConfig reads it: missing keys
 * take its defaults (hidden 768, intermediate 3072, 12 layers, 12 heads,
 * image 224, patch 32, 3 channels, eps 1e-5, quick_gelu). model_type, when
 * present, must be clip_vision_model. `what` names the file in errors. */
lmc_status lmc_clip_vision_config_parse(json_object *vc, const char *what,
                                        lmc_clip_vision_config *cfg);

typedef struct {
    lmc_cpu_mat ln1_w, ln1_b, ln2_w, ln2_b;
    lmc_cpu_mat q, k, v, o, q_b, k_b, v_b, o_b;
    lmc_cpu_mat fc1, fc1_b, fc2, fc2_b;
} lmc_clip_layer;

typedef struct {
    lmc_clip_vision_config cfg;
    size_t n_layers;        /* layers bound (only those a caller needs) */
    lmc_clip_layer *layers;
    lmc_cpu_mat patch;      /* [hidden, channels * patch * patch] */
    lmc_cpu_mat cls, pos;   /* [hidden], [1 + patches, hidden] */
    lmc_cpu_mat pre_w, pre_b;
    lmc_dtype act_dt;       /* F32, or the checkpoint's BF16 / F16 */
    void **owned;           /* aligned copies of misaligned tensors */
    size_t n_owned;
} lmc_clip_vision;

/* Bind "<prefix>embeddings.*", "<prefix>pre_layrnorm.*" and layers
 * 0..n_layers-1 of "<prefix>encoder.layers.N.*" (checked shapes and float
 * dtypes; errors name the tensor). */
lmc_status lmc_clip_vision_bind(const lmc_clip_vision_config *cfg, const lmc_st_set *set,
                                const char *prefix, size_t n_layers, lmc_clip_vision *v);
void lmc_clip_vision_free(lmc_clip_vision *v);

static inline size_t lmc_clip_vision_tokens(const lmc_clip_vision_config *c) {
    size_t g = (size_t)(c->image_size / c->patch_size);
    return 1 + g * g;
}

/* One image (channels x image_size x image_size floats). For each of the
 * n_states entries of `states` (indices into transformers' hidden_states:
 * 0 = after pre_layrnorm, i = after layer i; each <= v->n_layers) copy that
 * hidden state, tokens x hidden floats, into outs[k]. */
lmc_status lmc_clip_vision_forward(const lmc_clip_vision *v, const float *pixels,
                                   const size_t *states, size_t n_states, float *const *outs);

#endif
