/* Binding of the llama-family HF tensor names to checked matrix views. */
#ifndef LMC_MODELS_LLAMA_WEIGHTS_H
#define LMC_MODELS_LLAMA_WEIGHTS_H
#include "backend/cpu/cpu_ops.h"
#include "formats/config.h"
#include "formats/safetensors.h"
#include "models/arch.h"
#include "models/model.h"

/* An absent optional tensor has data == NULL. */
typedef struct {
    lmc_cpu_mat in_norm, post_norm;
    lmc_cpu_mat q, k, v, o, q_b, k_b, v_b, o_b;
    lmc_cpu_mat q_norm, k_norm;            /* qwen3, gemma3 */
    lmc_cpu_mat pre_ff_norm, post_ff_norm; /* gemma3 (its post_norm follows attention) */
    lmc_cpu_mat gate, up, down, gate_b, up_b, down_b;
} lmc_llama_layer;

typedef struct {
    size_t n_layers;
    lmc_llama_layer *layers;
    lmc_cpu_mat embed, final_norm, lm_head;
    void **owned; /* aligned copies of tensors the mapping left misaligned,
                     and the dequantized weights or quantization views of
                     quantized checkpoints */
    size_t n_owned;
} lmc_llama_weights;

/* One tensor of `set`, checked against an N-d shape and a float dtype
 * (F32/F16/BF16) and viewed as a matrix: rows = shape[0], cols = the
 * product of the rest (a 1-d tensor is one row). A misaligned tensor is
 * copied; the copy is appended to *owned (the caller frees). Missing and
 * optional -> data NULL. Errors name the tensor and the expected shape. */
lmc_status lmc_weights_bind_tensor(const lmc_st_set *set, const char *name, int ndim,
                                   const int64_t *shape, bool required, void ***owned,
                                   size_t *n_owned, lmc_cpu_mat *out);

/* Look up and check every tensor the plan implies (its descriptor's
 * names, fusions, biases and norms; fused modules are bound as views of
 * their parts' rows), with shapes and
 * dtypes F32/F16/BF16 checked. Errors name the tensor and expected vs actual.
 * When config.quantized, each Linear/Embedding module stored MLX-style
 * (U32 "<m>.weight" + "<m>.scales" + "<m>.biases") binds as a packed
 * quantized matrix (`packed`: for the CPU kernels) or is dequantized into
 * an owned F32 matrix (models/quantized.h); float modules bind as usual. */
lmc_status lmc_llama_weights_bind(const lmc_arch_plan *p, const lmc_model_config *c,
                                  const lmc_st_set *set, bool packed, lmc_llama_weights *w);
/* The same for a decoder stored under other names (the text model of a
 * VLM): "<prefix>embed_tokens.weight", "<prefix>layers.N...",
 * "<prefix>norm.weight" and the lm_head tensor named in full. */
lmc_status lmc_llama_weights_bind_named(const lmc_arch_plan *p, const lmc_model_config *c,
                                        const lmc_st_set *set, const lmc_llama_names *names,
                                        bool packed, lmc_llama_weights *w);
void lmc_llama_weights_free(lmc_llama_weights *w);

#endif
