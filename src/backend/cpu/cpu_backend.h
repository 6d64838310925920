/* The CPU backend's model: what it can run (one capability check) and its
 * constructor. src/backend/backend.c calls both. */
#ifndef LMC_BACKEND_CPU_BACKEND_H
#define LMC_BACKEND_CPU_BACKEND_H
#include "models/arch.h"
#include "models/model.h"

/* LMC_OK when the CPU model can run the plan for this config; otherwise
 * LMC_ERR_UNSUPPORTED naming "device cpu" and the feature. The only place
 * the CPU backend refuses a description. */
lmc_status lmc_cpu_supports(const lmc_arch_plan *p, const lmc_model_config *c);

/* Build the CPU model of a plan that passed lmc_cpu_supports (the plan is
 * copied). names: the decoder's tensor-name prefix and lm_head (NULL for
 * "model." and "lm_head.weight"). */
lmc_status lmc_cpu_model_create(const lmc_loaded_model *lm, const lmc_arch_plan *plan,
                                const lmc_llama_names *names, lmc_model **out);

#endif
