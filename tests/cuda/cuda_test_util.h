/* What the CUDA kernel tests share: a seeded xorshift generator, random
 * bf16 arrays (with their exact float values for the host reference), and
 * a host-to-device copy. */
#ifndef LMC_TEST_CUDA_UTIL_H
#define LMC_TEST_CUDA_UTIL_H
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

#include "formats/safetensors.h"

static uint64_t cu_test_rng = 0x9e3779b97f4a7c15ull;
static inline uint32_t next_u32(void) {
    cu_test_rng ^= cu_test_rng << 13;
    cu_test_rng ^= cu_test_rng >> 7;
    cu_test_rng ^= cu_test_rng << 17;
    return (uint32_t)(cu_test_rng >> 32);
}
static inline float urand(void) { /* uniform in [-1, 1) */
    return (float)(next_u32() >> 8) * (2.f / (1 << 24)) - 1.f;
}

/* n bf16 values in [-scale, scale); mirror (or NULL) gets them as floats */
static inline uint16_t *rand_bf16(size_t n, float scale, float *mirror) {
    uint16_t *h = malloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        h[i] = lmc_f32_to_bf16(urand() * scale);
        if (mirror) mirror[i] = lmc_bf16_to_f32(h[i]);
    }
    return h;
}

static inline void *to_dev(const void *h, size_t bytes) {
    void *d = NULL;
    if (cudaMalloc(&d, bytes) != cudaSuccess) return NULL;
    cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice);
    return d;
}

#endif
