/* What the CUDA model runs, stated in one place: the llama-family layer
 * (optional q/k norms and biases; fused q/k/v and gate/up checkpoints are
 * split at upload) with the features of phi3 and gemma3_text: a partial
 * rotary embedding, (1 + w) RMSNorms, sandwich norms, GeGLU, scaled
 * embeddings, a second RoPE table for sliding layers, layers mixing
 * sliding and full attention, query_pre_attn_scalar, final logit
 * softcapping and longrope scaling (on the paged engine, so only in the
 * shapes its attention runs), all checked against transformers on an
 * H100; attention logit softcapping (which no description lets through
 * yet) behind LMC_CUDA_PREVIEW=1; within its kernels' shape limits, head
 * sizes 96 and 256 on the paged engine only. Anything else a description
 * adds is refused here by name.
 * Compiled in every build, so the refusals read the same with or without
 * CUDA; the kernel limits are asked of the kernels when they are built. */
#include "backend/cuda/cuda.h"
#include "base/error.h"
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#ifdef LMC_HAVE_CUDA
#include "backend/cuda/cuda_kernels.h"
#endif

/* The description's features the kernels implement (fused checkpoints
 * are split at upload; the rest are flags of cu_model, cuda_model.h):
 * gemma3_text's, the partial rotary embedding and longrope run through the
 * paged engine (LMC_CUDA_ENGINE_FEATURES, checked against transformers
 * there). */
/* Features whose CUDA kernels exist but have not been checked against
 * transformers on a GPU: refused by name unless LMC_CUDA_PREVIEW=1. The
 * attention logit softcap's kernels are checked against a host reference
 * (test_cuda_kernels) only: transformers' Gemma 3, the one description
 * with the key, ignores it, so gemma3_text refuses it. */
#define CUDA_PREVIEW LMC_FEAT_ATTN_SOFTCAP
static const unsigned cuda_preview = CUDA_PREVIEW;
static const unsigned cuda_features = (LMC_FEAT_FUSED | LMC_CUDA_ENGINE_FEATURES) & ~CUDA_PREVIEW;

static bool preview_enabled(void) {
    const char *e = getenv("LMC_CUDA_PREVIEW");
    return e && !strcmp(e, "1");
}

static lmc_status check_shapes(const lmc_arch_plan *p, const lmc_model_config *c) {
    int64_t D = c->head_dim, hq = c->num_attention_heads, hkv = c->num_key_value_heads;
    if (c->hidden_size % 8 || c->intermediate_size % 8 || (hq * D) % 8)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "device cuda: hidden_size (%" PRId64 "), intermediate_size (%" PRId64
                       ") and heads*head_dim must be multiples of 8",
                       c->hidden_size, c->intermediate_size);
#ifdef LMC_HAVE_CUDA
    /* two sets of attention kernels: the single-sequence cache's (prefill
     * and decode) and the paged engine's; a shape only the engine runs
     * keeps the API's caches there too (cuda_llama.c, engine_caches) */
    const bool single = lmc_cu_single_seq_attn_supported((int)hq, (int)hkv, (int)D);
    const bool paged = lmc_cu_paged_attn_supported((int)hq, (int)hkv, (int)D);
    if (!single && !paged)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "device cuda: head_dim %" PRId64 " with %" PRId64 " query and %" PRId64
                       " kv heads is not supported (head_dim 16, 32, 64 or 128 with at most 16 "
                       "query heads per kv head; 96 with at most 8, 256 with at most 4); use "
                       "--device cpu",
                       D, hq, hkv);
    /* the engine-only features (cuda.h) have no single-sequence cache to
     * fall back on: their shapes are the paged attention's */
    const unsigned eng = lmc_arch_plan_features(p, c) & LMC_CUDA_ENGINE_FEATURES;
    if (eng && !paged)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "device cuda: %s (%s) with head_dim %" PRId64 " and %" PRId64
                       " query and %" PRId64
                       " kv heads is not supported (it runs on the batched engine: head_dim 64, "
                       "96 or 128 with at most 8 query heads per kv head, 256 with at most 4); "
                       "use --device cpu",
                       lmc_arch_feature_name(eng & -eng), p->arch->model_type, D, hq, hkv);
#else
    (void)p;
    (void)hkv;
#endif
    int64_t maxc = c->hidden_size;
    if (c->intermediate_size > maxc) maxc = c->intermediate_size;
    if (hq * D > maxc) maxc = hq * D;
    if (maxc > 100000)
        return lmc_err(LMC_ERR_LIMIT, "device cuda: a matrix width of %" PRId64
                                      " exceeds the decode kernel's limit of 100000", maxc);
    if (c->vocab_size > INT32_MAX / 2)
        return lmc_err(LMC_ERR_LIMIT, "device cuda: vocabulary too large");
    return LMC_OK;
}

lmc_status lmc_cuda_supports(const lmc_arch_plan *p, const lmc_model_config *c) {
    lmc_status st = lmc_arch_require(p, c, cuda_features | cuda_preview, "device cuda",
                                     "; use --device cpu");
    if (!st && !preview_enabled())
        st = lmc_arch_require(p, c, cuda_features, "device cuda",
                              "; use --device cpu (LMC_CUDA_PREVIEW=1 runs the CUDA kernels "
                              "written for it, not yet checked against transformers)");
    return st ? st : check_shapes(p, c);
}
