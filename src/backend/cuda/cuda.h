/* The CUDA backend's entry points: its one capability check, its model
 * constructor, and what tests and benchmarks read off a CUDA model. */
#ifndef LMC_BACKEND_CUDA_H
#define LMC_BACKEND_CUDA_H
#include "models/arch.h"
#include "models/model.h"
#include <stddef.h>

/* LMC_OK when the CUDA model can run the plan for this config; otherwise
 * LMC_ERR_UNSUPPORTED (or LMC_ERR_LIMIT) naming "device cuda" and the
 * feature or shape. The only place the CUDA backend refuses a description;
 * available in builds without CUDA too. */
lmc_status lmc_cuda_supports(const lmc_arch_plan *p, const lmc_model_config *c);
/* Features the CUDA model runs through the paged engine only, where
 * tests/cuda/test_cuda_wide_parity and test_cuda_batch check them against
 * transformers and against each sequence run alone: a model using
 * any of them keeps its API caches on the engine (models/kv_cache.c),
 * never on the single-sequence caches of cuda_llama.c (cu_own_cache says
 * which caches the other models get). longrope needs the engine
 * besides: it picks its RoPE table per forward and item, where those
 * caches' kernels take one table per layer. (Attention logit softcapping
 * is among them, behind LMC_CUDA_PREVIEW=1: cuda_supports.c.) */
#define LMC_CUDA_ENGINE_FEATURES                                                             \
    (LMC_FEAT_PARTIAL_ROTARY | LMC_FEAT_NORM_ONE_PLUS_W | LMC_FEAT_SANDWICH_NORMS |           \
     LMC_FEAT_GEGLU | LMC_FEAT_EMBED_SCALE | LMC_FEAT_LOCAL_ROPE | LMC_FEAT_MIXED_WINDOWS |   \
     LMC_FEAT_LONGROPE | LMC_FEAT_ATTN_SCALE | LMC_FEAT_FINAL_SOFTCAP | LMC_FEAT_ATTN_SOFTCAP)
/* Build the CUDA model of a plan that passed lmc_cuda_supports (builds
 * with CUDA only). */
lmc_status lmc_cuda_model_create(const lmc_loaded_model *lm, const lmc_arch_plan *plan,
                                 lmc_model **out);

/* Bytes of weights the model holds on the device (0 for a non-CUDA model). */
size_t lmc_llama_cuda_weight_bytes(const lmc_model *m);
/* Whether a CUDA cache's decode step runs as a captured graph: 1 yes,
 * 0 not captured yet, -1 capture failed (plain launches). */
int lmc_llama_cuda_graph_state(const lmc_kv_cache *c);

#endif
