/* gemma3_text (Gemma 3's text model): embeddings scaled by
 * sqrt(hidden_size), (1 + w) RMSNorms before and after both sublayers,
 * q/k norms, GeGLU with the tanh GELU, an attention scale from
 * query_pre_attn_scalar, every sliding_window_pattern-th layer attending in
 * full with the global RoPE and the rest sliding with a local one, and
 * optional final logit softcapping (null by default). attn_logit_softcapping
 * is refused when set: transformers' Gemma 3 attention ignores it. */
#include "models/arch.h"

const lmc_arch_desc lmc_arch_gemma3_text = {
    .model_type = "gemma3_text",
    .norm = LMC_NORM_ONE_PLUS_W,
    .sandwich_norms = true,
    .qk_norm = true,
    .qkv_bias = LMC_BIAS_CONFIG,
    .o_bias = LMC_BIAS_CONFIG,
    .mlp_bias = LMC_BIAS_NONE,
    .act = LMC_GLU_GELU_TANH,
    .act_key = "hidden_activation",
    .embed_scale = true,
    .layers = LMC_LAYERS_PATTERN,
    .local_rope = true,
    .query_pre_attn_scalar = true,
    .softcap = true,
    .attn_softcap_refused = true,
    .names = &lmc_arch_hf_names,
};
