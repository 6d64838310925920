/* The float vector helpers of cpu_simd.h, in their two builds. */
#include "backend/cpu/cpu_simd.h"

HOT float lmc_vdot(const float *a, const float *b, size_t n) {
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (size_t i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

HOT void lmc_vaxpy(float *y, float a, const float *x, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}
