/* qwen3: llama's layer plus a per-head RMSNorm of q and k before RoPE;
 * attention biases when attention_bias; sliding layers as qwen2. */
#include "models/arch.h"

const lmc_arch_desc lmc_arch_qwen3 = {
    .model_type = "qwen3",
    .norm = LMC_NORM_W,
    .qk_norm = true,
    .qkv_bias = LMC_BIAS_CONFIG,
    .o_bias = LMC_BIAS_CONFIG,
    .mlp_bias = LMC_BIAS_NONE,
    .act = LMC_GLU_SILU,
    .act_key = "hidden_act",
    .layers = LMC_LAYERS_MAX_WINDOW,
    .vlm_text = true,
    .names = &lmc_arch_hf_names,
};
