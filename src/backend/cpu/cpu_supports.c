/* What the CPU model runs: every architecture description with any layer
 * mix, partial rotary embeddings and MLX affine quantization (kept packed);
 * refused here by name: RoPE types without tables (longrope, dynamic, ...),
 * logit softcapping, other quantization modes. */
#include "backend/cpu/cpu_backend.h"

/* Every feature a description may use, but logit softcapping. */
static const unsigned cpu_features =
    LMC_FEAT_ALL & ~(unsigned)(LMC_FEAT_FINAL_SOFTCAP | LMC_FEAT_ATTN_SOFTCAP);

lmc_status lmc_cpu_supports(const lmc_arch_plan *p, const lmc_model_config *c) {
    return lmc_arch_require(p, c, cpu_features, "device cpu", "");
}
