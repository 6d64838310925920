/* CUDA backend entry points beyond lmc_llama_cuda_create (declared in
 * models/model.h). */
#ifndef LMC_BACKEND_CUDA_H
#define LMC_BACKEND_CUDA_H
#include "models/model.h"
#include <stddef.h>

/* Bytes of weights the model holds on the device (0 for a non-CUDA model). */
size_t lmc_llama_cuda_weight_bytes(const lmc_model *m);
/* Whether a CUDA cache's decode step runs as a captured graph: 1 yes,
 * 0 not captured yet, -1 capture failed (plain launches). */
int lmc_llama_cuda_graph_state(const lmc_kv_cache *c);

#endif
