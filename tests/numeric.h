/* Comparing logits in the tests: range, error relative to a reference's
 * range, greedy pick, log-probability. One copy for every test that
 * compares against a reference. */
#ifndef LMC_TEST_NUMERIC_H
#define LMC_TEST_NUMERIC_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* max - min of x[0..n) */
static inline double test_range(const float *x, size_t n) {
    float lo = x[0], hi = x[0];
    for (size_t i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    return (double)hi - lo;
}

/* max|a - ref| / range(ref); a NaN in a gives +inf */
static inline double test_rel_err(const float *a, const float *ref, size_t n) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= mx)) mx = isnan(d) ? INFINITY : d;
    }
    return mx / test_range(ref, n);
}

/* first index of the largest value */
static inline int32_t test_argmax(const float *x, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (int32_t)b;
}

/* log-softmax of x[0..n) at index i, in double */
static inline double test_logprob(const float *x, size_t n, size_t i) {
    double mx = -INFINITY, se = 0;
    for (size_t v = 0; v < n; v++)
        if (x[v] > mx) mx = x[v];
    for (size_t v = 0; v < n; v++) se += exp((double)x[v] - mx);
    return (double)x[i] - mx - log(se);
}

#endif
