/* The CPU kernels' one copy of their dispatch attribute and float vector
 * helpers. HOT functions are built twice (AVX2/FMA and baseline x86-64)
 * and picked at load. The helpers are defined once (cpu_simd.c): clang
 * gives the resolvers of static multiversioned functions one global name,
 * so a copy in each file would not link. */
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

/* sum a[i] * b[i], in float */
float lmc_vdot(const float *a, const float *b, size_t n);
/* y += a * x */
void lmc_vaxpy(float *y, float a, const float *x, size_t n);

#endif
