/* bf16 conversions and the rounding and RoPE helpers that every kernel
 * file must spell alike, so that the paths agree bit for bit. */
#ifndef LMC_BACKEND_CUDA_BF16_CUH
#define LMC_BACKEND_CUDA_BF16_CUH
#include <cuda_bf16.h>
#include <stdint.h>

static __device__ __forceinline__ float bf2f(uint16_t v) {
    return __uint_as_float(((uint32_t)v) << 16);
}
static __device__ __forceinline__ uint16_t f2bf(float f) {
    __nv_bfloat16 h = __float2bfloat16_rn(f);
    return *(uint16_t *)&h;
}
/* Rounds through bf16, as a bf16 tensor op in the reference would; models
 * from f32 checkpoints keep those intermediates unrounded (rnd == 0). */
static __device__ __forceinline__ float rbf(float f) { return bf2f(f2bf(f)); }
static __device__ __forceinline__ float rbfc(float f, int rnd) { return rnd ? rbf(f) : f; }
/* Two values as adjacent bf16 (lo at the lower address), rounded as f2bf. */
static __device__ __forceinline__ uint32_t pack_bf2(float lo, float hi) {
    return (uint32_t)f2bf(lo) | ((uint32_t)f2bf(hi) << 16);
}

/* Rotate-half pair (x1 at i, x2 at i + half) by the angle with cosine c and
 * sine s. The fused multiply-adds are spelled out so that every path
 * rounds alike. */
static __device__ __forceinline__ float rope_lo(float x1, float x2, float c, float s) {
    return __fmaf_rn(x1, c, -__fmul_rn(x2, s));
}
static __device__ __forceinline__ float rope_hi(float x1, float x2, float c, float s) {
    return __fmaf_rn(x2, c, __fmul_rn(x1, s));
}

/* GELU with its tanh approximation (gelu_pytorch_tanh), the GeGLU gate's
 * activation; unrounded, as the CPU's gelu_tanh. */
static __device__ __forceinline__ float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

/* One value of an RMSNorm's output from x * rsqrt(mean(x^2) + eps) = xr:
 * the stored-weight form rounds xr before the weight multiply (with rnd);
 * the (1 + w) form (offset) scales in fp32 and rounds once, as Gemma's
 * RMSNorm does. The caller rounds the result to bf16. */
static __device__ __forceinline__ float rms_w(float xr, float w, int offset, int rnd) {
    return offset ? xr * (1.0f + w) : rbfc(xr, rnd) * w;
}

#endif
