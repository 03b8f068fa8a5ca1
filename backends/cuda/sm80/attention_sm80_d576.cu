// Explicit instantiation: sparse attention, D_qk = 576, NVIDIA mma.sync policy.
#include "common/attention.cuh"
#include "cuda/vendor_cuda.h"
#include "mma_policy_sm80.cuh"

namespace spmla {
namespace cuda {

cudaError_t launch_sm80_d576(const kern::AttnParams &p, int q_vec16, dim3 grid, cudaStream_t s) {
  kern::sparse_attention_kernel<576, MmaPolicySm80>
      <<<grid, kern::kAttnThreads, kern::AttnSmem<576>::kBytes, s>>>(p, q_vec16);
  return cudaGetLastError();
}

cudaError_t sm80_prepare_d576() {
  return cudaFuncSetAttribute(kern::sparse_attention_kernel<576, MmaPolicySm80>,
                              cudaFuncAttributeMaxDynamicSharedMemorySize, kern::AttnSmem<576>::kBytes);
}

}  // namespace cuda
}  // namespace spmla
