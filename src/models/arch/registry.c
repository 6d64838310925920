/* The architecture registry: model_type (and aliases) -> description.
 * Adding an architecture: its file in this directory plus one line here. */
#include "models/arch.h"
#include <string.h>

extern const lmc_arch_desc lmc_arch_llama, lmc_arch_qwen2, lmc_arch_qwen3, lmc_arch_phi3,
    lmc_arch_gemma3_text;

static const lmc_arch_desc *const archs[] = {
    &lmc_arch_llama,
    &lmc_arch_qwen2,
    &lmc_arch_qwen3,
    &lmc_arch_phi3,
    &lmc_arch_gemma3_text,
};

const lmc_arch_desc *const *lmc_arch_all(size_t *n) {
    *n = sizeof archs / sizeof archs[0];
    return archs;
}

const lmc_arch_desc *lmc_arch_find(const char *model_type) {
    for (size_t i = 0; model_type && i < sizeof archs / sizeof archs[0]; i++) {
        if (!strcmp(archs[i]->model_type, model_type)) return archs[i];
        for (const char *const *a = archs[i]->aliases; a && *a; a++)
            if (!strcmp(*a, model_type)) return archs[i];
    }
    return NULL;
}
