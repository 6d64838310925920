/* What the CUDA model runs, stated in one place: the llama-family layer
 * (RMSNorm weights as stored, optional q/k norms and biases, SwiGLU, full
 * rotary embedding, one RoPE table, one window for every layer; fused
 * q/k/v and gate/up checkpoints are split at upload) within its kernels'
 * shape limits. Everything else in a description is refused here by name.
 * Compiled in every build, so the refusals read the same with or without
 * CUDA; the kernel limits are asked of the kernels when they are built. */
#include "backend/cuda/cuda.h"
#include "base/error.h"
#include <inttypes.h>
#include <math.h>
#include <string.h>
#ifdef LMC_HAVE_CUDA
#include "backend/cuda/cuda_kernels.h"
#endif

/* The description's features the kernels do not implement. */
static lmc_status check_features(const lmc_arch_plan *p, const lmc_model_config *c) {
    const lmc_arch_desc *d = p->arch;
    const struct {
        bool refused;
        const char *what;
    } features[] = {
        {p->rot_dim != (size_t)c->head_dim, "a partial rotary embedding (partial_rotary_factor)"},
        {d->norm != LMC_NORM_W, "(1 + w) RMSNorm weights"},
        {d->sandwich_norms, "sandwich norms around the sublayers"},
        {p->act != LMC_GLU_SILU, "an MLP activation other than SwiGLU"},
        {p->embed_scale != 0.0f, "scaled embeddings"},
        {p->attn_scale != (float)(1.0 / sqrt((double)c->head_dim)),
         "an attention scale other than head_dim^-1/2 (query_pre_attn_scalar)"},
        {p->local_rope, "a second RoPE table for the sliding layers"},
        {p->mixed_windows, "layers mixing sliding-window and full attention"},
        {p->final_softcap != 0.0f, "final_logit_softcapping"},
        {p->attn_softcap != 0.0f, "attn_logit_softcapping"},
    };
    if (!lmc_rope_type_computed(c->rope_type))
        return lmc_err(LMC_ERR_UNSUPPORTED, "device cuda: rope type '%s' is not supported (%s)",
                       c->rope_type, LMC_ROPE_TYPES);
    if (c->quantized && strcmp(c->q_mode, "affine"))
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "device cuda: quantization mode '%s' is not supported (affine)", c->q_mode);
    for (size_t i = 0; i < sizeof features / sizeof features[0]; i++)
        if (features[i].refused)
            return lmc_err(LMC_ERR_UNSUPPORTED,
                           "device cuda: %s (%s) is not supported; use --device cpu",
                           features[i].what, d->model_type);
    return LMC_OK;
}

static lmc_status check_shapes(const lmc_model_config *c) {
    int64_t D = c->head_dim, hq = c->num_attention_heads, hkv = c->num_key_value_heads;
    if (c->hidden_size % 8 || c->intermediate_size % 8 || (hq * D) % 8)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "device cuda: hidden_size (%" PRId64 "), intermediate_size (%" PRId64
                       ") and heads*head_dim must be multiples of 8",
                       c->hidden_size, c->intermediate_size);
#ifdef LMC_HAVE_CUDA
    if (!lmc_cu_attn_prefill_supported((int)D) ||
        !lmc_cu_attn_decode_supported((int)hq, (int)hkv, (int)D))
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "device cuda: head_dim %" PRId64 " with %" PRId64 " query and %" PRId64
                       " kv heads is not supported (head_dim 16, 32, 64 or 128; at most 16 "
                       "query heads per kv head)",
                       D, hq, hkv);
#else
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
    lmc_status st = check_features(p, c);
    return st ? st : check_shapes(c);
}
