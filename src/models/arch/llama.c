/* llama (and mistral, whose checkpoints differ only in config values):
 * pre-norm decoder, RMSNorm weights as stored, SwiGLU MLP, optional
 * attention and MLP biases (attention_bias, mlp_bias). */
#include "models/arch.h"

static const char *const aliases[] = {"mistral", NULL};

const lmc_arch_desc lmc_arch_llama = {
    .model_type = "llama",
    .aliases = aliases,
    .norm = LMC_NORM_W,
    .qkv_bias = LMC_BIAS_CONFIG,
    .o_bias = LMC_BIAS_CONFIG,
    .mlp_bias = LMC_BIAS_CONFIG,
    .act = LMC_GLU_SILU,
    .act_key = "hidden_act",
    .partial_rotary = false,
    .layers = LMC_LAYERS_ALL,
    .vlm_text = true,
    .names = &lmc_arch_hf_names,
};
