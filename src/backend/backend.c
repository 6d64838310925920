/* Device dispatch: description -> plan -> capability check -> backend
 * constructor (see backend.h). */
#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda.h"
#include "base/error.h"

lmc_status lmc_backend_supports(lmc_device device, const lmc_arch_plan *p,
                                const lmc_model_config *c) {
    switch (device) {
    case LMC_DEVICE_CPU:
        return lmc_cpu_supports(p, c);
    case LMC_DEVICE_CUDA:
        return lmc_cuda_supports(p, c);
    }
    return lmc_err(LMC_ERR_UNSUPPORTED, "unknown device %d", (int)device);
}

static lmc_status create(const lmc_loaded_model *lm, const lmc_llama_names *names,
                         lmc_model **out) {
    if (!lm || !lm->config || !lm->weights || !out)
        return lmc_err(LMC_ERR_INVALID_ARG, "model: config, weights and out are required");
    *out = NULL;
    lmc_arch_plan plan;
    lmc_status st = lmc_arch_plan_init(lm->config, lm->config_json, &plan);
    if (st) return st;
    if (names && !plan.arch->vlm_text)
        st = lmc_err(LMC_ERR_UNSUPPORTED, "%s: not supported as a VLM's text model",
                     plan.arch->model_type);
    else if (names && lm->device != LMC_DEVICE_CPU)
        st = lmc_err(LMC_ERR_UNSUPPORTED,
                     "device cuda: a text model under prefix '%s' is not supported; use "
                     "--device cpu",
                     names->prefix);
    if (!st) st = lmc_backend_supports(lm->device, &plan, lm->config);
    if (!st && lm->device == LMC_DEVICE_CPU) st = lmc_cpu_model_create(lm, &plan, names, out);
#ifdef LMC_HAVE_CUDA
    else if (!st) st = lmc_cuda_model_create(lm, &plan, out);
#else
    else if (!st)
        st = lmc_err(LMC_ERR_UNSUPPORTED, "device cuda: this lmc was built without CUDA");
#endif
    lmc_arch_plan_free(&plan);
    return st;
}

lmc_status lmc_model_create(const lmc_loaded_model *lm, lmc_model **out) {
    return create(lm, NULL, out);
}

lmc_status lmc_model_create_named(const lmc_loaded_model *lm, const lmc_llama_names *names,
                                  lmc_model **out) {
    if (!names || !names->prefix || !names->lm_head)
        return lmc_err(LMC_ERR_INVALID_ARG, "model: tensor names are required");
    return create(lm, names, out);
}
