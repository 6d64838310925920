/* Realistic widths on the CPU (see tests/wide_parity.h): every architecture
 * in tests/golden/wide, in fp32, fp16 and bf16 checkpoints, against
 * transformers in fp32. The weights are exact in every dtype, but the CPU
 * rounds a half-precision checkpoint's activations to its dtype after each
 * op, as transformers run in that dtype does; so fp32 checkpoints meet an
 * fp32 bound and fp16/bf16 ones the rounding of their dtype. */
#include "wide_parity.h"

int main(void) {
    static const char *const all[] = {"llama", "mistral", "qwen2", "qwen3", "phi3",
                                      "gemma3_text", NULL};
    int n = wide_check_all("wide-cpu", LMC_DEVICE_CPU, 1e-4, 2e-3, 2e-2, all);
    CHECK_EQ_INT(n, 18);
    return check_summary("test_wide_parity");
}
