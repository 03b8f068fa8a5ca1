// Explicit instantiation: sparse attention, D_qk = 512, NVIDIA mma.sync policy.
#include "common/attention.cuh"
#include "cuda/vendor_cuda.h"
#include "mma_policy_sm80.cuh"

namespace spmla {
namespace cuda {

cudaError_t launch_sm80_d512(const kern::AttnParams &p, int q_vec16, dim3 grid, cudaStream_t s) {
  kern::sparse_attention_kernel<512, MmaPolicySm80>
      <<<grid, kern::kAttnThreads, kern::AttnSmem<512>::kBytes, s>>>(p, q_vec16);
  return cudaGetLastError();
}

cudaError_t sm80_prepare_d512() {
  return cudaFuncSetAttribute(kern::sparse_attention_kernel<512, MmaPolicySm80>,
                              cudaFuncAttributeMaxDynamicSharedMemorySize, kern::AttnSmem<512>::kBytes);
}

}  // namespace cuda
}  // namespace spmla
