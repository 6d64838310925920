/* The device's copy bandwidth (bytes read + written per second, a 1 GiB
 * device-to-device copy, median of 10 after 2 warm-ups): the memory-bound
 * limit the CUDA benches measure themselves against in the same run. */
#ifndef LMC_BENCH_COPY_BANDWIDTH_H
#define LMC_BENCH_COPY_BANDWIDTH_H
#include <cuda_runtime.h>

#include "bench_median.h"

static double bench_copy_bandwidth(void) {
    size_t n = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    if (cudaMalloc(&a, n) || cudaMalloc(&b, n)) return 0;
    cudaMemset(a, 1, n);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    double t[10];
    for (int r = 0; r < 12; r++) {
        cudaEventRecord(e0, 0);
        cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (r >= 2) t[r - 2] = ms / 1e3;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * (double)n / bench_median(t, 10);
}

#endif
