/* Programmatic dependent launch for the decode chain: a kernel launched
 * with lmc_pdl_launch may start while its predecessor drains. It must call
 * pdl_wait() before touching anything an earlier kernel writes or reads
 * (only weights, which nothing writes, may be read before); pdl_trigger()
 * lets the next kernel's blocks be scheduled once every block of this one
 * has started. Both are no-ops for a kernel launched the ordinary way. */
#ifndef LMC_BACKEND_CUDA_PDL_CUH
#define LMC_BACKEND_CUDA_PDL_CUH
#include <cuda_runtime.h>

static __device__ __forceinline__ void pdl_wait(void) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
}
static __device__ __forceinline__ void pdl_trigger(void) {
    asm volatile("griddepcontrol.launch_dependents;");
}

/* 0 turns programmatic launches off (environment LMC_CUDA_PDL=0; for
 * comparisons); set once by the model constructor. */
extern "C" int lmc_cu_pdl_enabled;

template <typename... Exp, typename... Act>
static cudaError_t lmc_pdl_launch(void (*kernel)(Exp...), dim3 grid, dim3 block, size_t smem,
                                  cudaStream_t s, Act &&...args) {
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = &attr;
    cfg.numAttrs = lmc_cu_pdl_enabled ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, static_cast<Act &&>(args)...);
}

#endif
