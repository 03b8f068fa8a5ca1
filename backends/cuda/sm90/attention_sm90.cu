// Explicit instantiations and the host side of the Hopper attention fast path.
#include <cstdlib>
#include <cstring>

#include "../launchers.h"
#include "attention_sm90.cuh"

namespace spmla {
namespace cuda {

namespace {
template <int D, int Layout>
cudaError_t launch_one(const kern::AttnParams &p, dim3 grid, cudaStream_t s) {
  sm90::sparse_attention_sm90_kernel<D, Layout><<<grid, sm90::kThreads, sm90::Smem<D>::kBytes, s>>>(p);
  return cudaGetLastError();
}
template <int D, int Layout>
cudaError_t prepare_one(bool *usable) {
  const auto k = sm90::sparse_attention_sm90_kernel<D, Layout>;
  cudaFuncAttributes fa;
  cudaError_t e = cudaFuncGetAttributes(&fa, k);
  if (e != cudaSuccess) return e;
  // The sm_90a machine code is the one the driver picked for this device (other passes hold an
  // empty body that must never run).
  if (fa.binaryVersion != 90) *usable = false;
  return cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, sm90::Smem<D>::kBytes);
}
}  // namespace

bool attention_sm90_layout_ok(int D, int layout) {
  return layout == kern::kBF16 || (D == 576 && layout == kern::kV32) || (D == 512 && layout == kern::kV4);
}

cudaError_t attention_sm90_prepare(int cc, size_t smem_optin, bool *usable) {
  *usable = false;
#if defined(SPMLA_CUDA_HAS_SM90A)
  const char *env = std::getenv("SPMLA_CUDA_ATTENTION");
  if (env && std::strcmp(env, "portable") == 0) return cudaSuccess;
  if (cc != 90 || smem_optin < (size_t)sm90::Smem<576>::kBytes) return cudaSuccess;
  bool ok = true;
  cudaError_t e = prepare_one<576, kern::kBF16>(&ok);
  if (e == cudaSuccess) e = prepare_one<576, kern::kV32>(&ok);
  if (e == cudaSuccess) e = prepare_one<512, kern::kBF16>(&ok);
  if (e == cudaSuccess) e = prepare_one<512, kern::kV4>(&ok);
  if (e != cudaSuccess) return e;
  *usable = ok;
#else
  (void)cc;
  (void)smem_optin;
#endif
  return cudaSuccess;
}

cudaError_t launch_attention_sm90(const kern::AttnParams &p, int layout, dim3 grid, cudaStream_t s) {
  if (p.D == 576) return layout == kern::kV32 ? launch_one<576, kern::kV32>(p, grid, s) : launch_one<576, kern::kBF16>(p, grid, s);
  return layout == kern::kV4 ? launch_one<512, kern::kV4>(p, grid, s) : launch_one<512, kern::kBF16>(p, grid, s);
}

}  // namespace cuda
}  // namespace spmla
