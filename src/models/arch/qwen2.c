/* qwen2: llama's layer with a bias on q/k/v always (none on o_proj or the
 * MLP); sliding layers from max_window_layers on. */
#include "models/arch.h"

const lmc_arch_desc lmc_arch_qwen2 = {
    .model_type = "qwen2",
    .norm = LMC_NORM_W,
    .qkv_bias = LMC_BIAS_ALWAYS,
    .o_bias = LMC_BIAS_NONE,
    .mlp_bias = LMC_BIAS_NONE,
    .act = LMC_GLU_SILU,
    .act_key = "hidden_act",
    .layers = LMC_LAYERS_MAX_WINDOW,
    .vlm_text = true,
    .names = &lmc_arch_hf_names,
};
