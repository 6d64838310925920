/* The median of a bench's repeated timings (sorts v in place). */
#ifndef LMC_BENCH_MEDIAN_H
#define LMC_BENCH_MEDIAN_H
#include <stdlib.h>

static int bench_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static inline double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
