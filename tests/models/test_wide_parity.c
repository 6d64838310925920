/* Realistic widths on the CPU (see tests/wide_parity.h): every architecture
 * in tests/golden/wide, in fp32, fp16 and bf16 checkpoints, against
 * transformers in fp32. The weights are exact in every dtype, but the CPU
 * rounds a half-precision checkpoint's activations to its dtype after each
 * op, as transformers run in that dtype does; so fp32 checkpoints meet an
 * fp32 bound and fp16/bf16 ones the rounding of their dtype. */
#include "wide_parity.h"

int main(void) {
    /* every recipe: the CPU runs every feature (softcapping included) */
    static const char *const all[] = {"llama", "mistral", "qwen2", "qwen3", "phi3", "phi3_partial",
                                      "gemma3_text", "gemma3_text_softcap", "phi3_longrope",
                                      "phi3_hd96", "gemma3_hd256", NULL};
    int recipes = 0;
    int n = wide_check_all("wide-cpu", LMC_DEVICE_CPU, 1e-4, 2e-3, 2e-2, all, &recipes);
    /* the six architectures at least, each recipe in all three dtypes */
    CHECK(recipes >= 6);
    CHECK_EQ_INT(n, 3 * recipes);
    return check_summary("test_wide_parity");
}
