/* The CPU kernels' one copy of their dispatch attribute: HOT functions
 * are built twice (AVX2/FMA and baseline x86-64) and picked at load. Keep
 * them static and give each a name of its own across files: clang names
 * the resolvers of static multiversioned functions globally, and a shared
 * non-static one would be exported from the library. */
#ifndef LMC_CPU_SIMD_H
#define LMC_CPU_SIMD_H

/* (not under ThreadSanitizer: the clones' ifunc resolvers would run
 * instrumented before its runtime starts) */
#if defined(LMC_TSAN) || !defined(__x86_64__)
#define HOT
#else
#define HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#endif

#endif
