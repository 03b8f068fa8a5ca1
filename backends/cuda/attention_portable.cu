// Explicit instantiation: the portable attention kernel (common/attention_portable.cuh), the CUDA
// plugin's fallback on devices whose shared memory is too small for the mma.sync kernel.
#include "common/attention_portable.cuh"
#include "cuda/vendor_cuda.h"

namespace spmla {
namespace cuda {

size_t portable_smem_bytes(int D) { return D == 576 ? kern::PortSmem<576>::kBytes : kern::PortSmem<512>::kBytes; }

cudaError_t portable_prepare(int D) {
  return D == 576 ? cudaFuncSetAttribute(kern::sparse_attention_portable_kernel<576>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, kern::PortSmem<576>::kBytes)
                  : cudaFuncSetAttribute(kern::sparse_attention_portable_kernel<512>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, kern::PortSmem<512>::kBytes);
}

cudaError_t launch_portable(const kern::AttnParams &p, dim3 grid, cudaStream_t s) {
  if (p.D == 576)
    kern::sparse_attention_portable_kernel<576><<<grid, kern::kPortThreads, kern::PortSmem<576>::kBytes, s>>>(p);
  else
    kern::sparse_attention_portable_kernel<512><<<grid, kern::kPortThreads, kern::PortSmem<512>::kBytes, s>>>(p);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace spmla
