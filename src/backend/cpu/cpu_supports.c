/* What the CPU model runs: every architecture description with any layer
 * mix, partial rotary embeddings, logit softcapping and MLX affine
 * quantization (kept packed); refused by name (lmc_arch_require): RoPE
 * types without tables (longrope, dynamic, ...), other quantization
 * modes. */
#include "backend/cpu/cpu_backend.h"

/* Every feature a description may use. */
static const unsigned cpu_features = LMC_FEAT_ALL;

lmc_status lmc_cpu_supports(const lmc_arch_plan *p, const lmc_model_config *c) {
    return lmc_arch_require(p, c, cpu_features, "device cpu", "");
}
