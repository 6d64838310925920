/* phi3 (Phi-3, Phi-3.5, Phi-4-mini): llama's layer with q/k/v stored as
 * one qkv_proj and gate/up as one gate_up_proj (rows stacked in that
 * order), no biases, and a partial rotary embedding when
 * partial_rotary_factor < 1. */
#include "models/arch.h"

const lmc_arch_desc lmc_arch_phi3 = {
    .model_type = "phi3",
    .norm = LMC_NORM_W,
    .fused_qkv = true,
    .fused_gate_up = true,
    .qkv_bias = LMC_BIAS_NONE,
    .o_bias = LMC_BIAS_NONE,
    .mlp_bias = LMC_BIAS_NONE,
    .act = LMC_GLU_SILU,
    .act_key = "hidden_act",
    .partial_rotary = true,
    .layers = LMC_LAYERS_ALL,
    .vlm_text = true,
    .names = &lmc_arch_hf_names,
};
