/* Realistic widths on CUDA (see tests/wide_parity.h): every architecture in
 * tests/golden/wide, in fp32, fp16 and bf16 checkpoints, against
 * transformers in fp32, at the bf16 tolerance (the device computes in bf16
 * whatever the checkpoint holds). The architectures the CUDA backend runs
 * are required; the others must be refused by name. Exits 77 without a
 * GPU. */
#include <cuda_runtime.h>

#include "wide_parity.h"

int main(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) CHECK_SKIP("no CUDA device");
    /* phi3 with a full rotary embedding: fused q/k/v and gate/up split at upload */
    static const char *const cuda[] = {"llama", "mistral", "qwen2", "qwen3", "phi3", NULL};
    int n = wide_check_all("wide-cuda", LMC_DEVICE_CUDA, 2e-2, 2e-2, 2e-2, cuda);
    CHECK_EQ_INT(n, 18);
    return check_summary("test_cuda_wide_parity");
}
