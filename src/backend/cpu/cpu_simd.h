/* The CPU kernels' one copy of their dispatch attribute and float vector
 * helpers. HOT functions are built twice (AVX2/FMA and baseline x86-64) and
 * picked at load. The helpers are static, so a file that wants them defines
 * LMC_CPU_SIMD_VEC before including this (multiversioned functions take no
 * `unused` attribute under clang, and the other files would warn). */
#ifndef LMC_CPU_SIMD_H
#define LMC_CPU_SIMD_H

#include <stddef.h>

/* (not under ThreadSanitizer: the clones' ifunc resolvers would run
 * instrumented before its runtime starts) */
#if defined(LMC_TSAN) || !defined(__x86_64__)
#define HOT
#else
#define HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#endif

#ifdef LMC_CPU_SIMD_VEC
/* sum a[i] * b[i], in float */
HOT static float lmc_vdot(const float *a, const float *b, size_t n) {
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (size_t i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

/* y += a * x */
HOT static void lmc_vaxpy(float *y, float a, const float *x, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}
#endif

#endif
