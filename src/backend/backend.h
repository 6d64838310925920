/* The one entry from a loaded checkpoint to a runnable model: find the
 * architecture description, resolve it into a plan, ask the chosen
 * backend's capability check, then build that backend's model. */
#ifndef LMC_BACKEND_BACKEND_H
#define LMC_BACKEND_BACKEND_H
#include "models/arch.h"
#include "models/model.h"

/* The model for lm->config->model_type on lm->device. Errors: the plan's
 * config checks (LMC_ERR_FORMAT / UNSUPPORTED naming config.json and the
 * key), then the backend's refusal by name, then the backend's own. */
lmc_status lmc_model_create(const lmc_loaded_model *lm, lmc_model **out);
/* The same for a decoder stored under other tensor names (the text model
 * of a VLM; CPU only, and only for descriptions marked vlm_text). Its
 * vtable has forward_embeds. */
lmc_status lmc_model_create_named(const lmc_loaded_model *lm, const lmc_llama_names *names,
                                  lmc_model **out);
/* The capability check of `device` (LMC_ERR_UNSUPPORTED naming the
 * device and the feature); the same check lmc_model_create applies. */
lmc_status lmc_backend_supports(lmc_device device, const lmc_arch_plan *p,
                                const lmc_model_config *c);

#endif
