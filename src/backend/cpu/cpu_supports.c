/* What the CPU model runs: every architecture description with any layer
 * mix, partial rotary embeddings and MLX affine quantization (kept packed);
 * refused here by name: RoPE types without tables (longrope, dynamic, ...),
 * logit softcapping, other quantization modes. */
#include "backend/cpu/cpu_backend.h"
#include "base/error.h"
#include <string.h>

lmc_status lmc_cpu_supports(const lmc_arch_plan *p, const lmc_model_config *c) {
    if (!lmc_rope_type_computed(c->rope_type))
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "device cpu: rope type '%s' is not supported (%s)", c->rope_type,
                       LMC_ROPE_TYPES);
    if (p->final_softcap != 0.0f)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "device cpu: final_logit_softcapping (%g) is not supported",
                       (double)p->final_softcap);
    if (p->attn_softcap != 0.0f)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "device cpu: attn_logit_softcapping (%g) is not supported",
                       (double)p->attn_softcap);
    if (c->quantized && strcmp(c->q_mode, "affine"))
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "device cpu: quantization mode '%s' is not supported (affine)", c->q_mode);
    return LMC_OK;
}
