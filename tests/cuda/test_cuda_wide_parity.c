/* Realistic widths on CUDA (see tests/wide_parity.h): every recipe in
 * tests/golden/wide, in fp32, fp16 and bf16 checkpoints, against
 * transformers in fp32, at the bf16 tolerance (the device computes in bf16
 * whatever the checkpoint holds). The CUDA backend must run every recipe:
 * gemma3_text, Phi-4-mini's partial rotary embedding (phi3_partial),
 * longrope scaling (phi3_longrope: the long prompt past
 * original_max_position_embeddings takes the long table, the short one the
 * short table) and gemma3_text with logit softcapping and
 * query_pre_attn_scalar (gemma3_text_softcap) included, and the head sizes
 * only its paged engine runs (phi3_hd96: Phi-3-mini's 96 with longrope;
 * gemma3_hd256: Gemma 3's 256), through the API's caches put on the paged
 * engine for every model, prompt chunks through the flash kernel over
 * their block table (test_cuda_parity checks both caches). Exits 77
 * without a GPU. */
#include <cuda_runtime.h>
#include <stdlib.h>

#include "wide_parity.h"

int main(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) CHECK_SKIP("no CUDA device");
    setenv("LMC_CUDA_SINGLE_SEQ_CACHE", "0", 1);
    setenv("LMC_CUDA_PAGED_FA_MIN", "16", 1);
    /* phi3: fused q/k/v and gate/up split at upload; gemma3_text: (1 + w)
     * and sandwich norms, GeGLU, scaled embeddings, a sliding layer with
     * its own RoPE table beside a full one; phi3_longrope: two tables,
     * picked per forward on the paged engine */
    static const char *const cuda[] = {"llama",        "mistral",     "qwen2",
                                       "qwen3",        "phi3",        "phi3_partial",
                                       "gemma3_text",  "gemma3_text_softcap", "phi3_longrope",
                                       "phi3_hd96",    "gemma3_hd256", NULL};
    int recipes = 0;
    int n = wide_check_all("wide-cuda", LMC_DEVICE_CUDA, 2e-2, 2e-2, 2e-2, cuda, &recipes);
    /* every recipe of tests/golden/wide (at least the six of the first
     * goldens; the recipes of tests/oracle/make_wide_models.py whose
     * goldens are not made yet are absent), three dtypes each */
    CHECK(recipes >= 6);
    CHECK_EQ_INT(n, 3 * recipes);
    return check_summary("test_cuda_wide_parity");
}
