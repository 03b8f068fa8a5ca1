// Explicit instantiations and the host side of the Hopper attention fast path.
#include <cstdlib>
#include <cstring>

#include "../launchers.h"
#include "attention_sm90.cuh"

namespace spmla {
namespace cuda {

namespace {
// One instantiation per (D, layout, FP8 flavor): the flavor is a template argument so that each
// kernel holds one FP8 decoder (the E4M3FNUZ software decoder inlined beside the hardware E4M3FN
// one made the kernel too large for the instruction cache). BF16 sources use flavor 0.
template <int D, int Layout, int Flavor>
cudaError_t launch_one(const kern::AttnParams &p, bool ws, dim3 grid, cudaStream_t s) {
  if (ws)
    sm90::sparse_attention_sm90_ws_kernel<D, Layout, Flavor><<<grid, sm90::kWsThreads, sm90::Smem<D>::kBytes, s>>>(p);
  else
    sm90::sparse_attention_sm90_kernel<D, Layout, Flavor><<<grid, sm90::kThreads, sm90::Smem<D>::kBytes, s>>>(p);
  return cudaGetLastError();
}
template <int D, int Layout>
cudaError_t launch_layout(const kern::AttnParams &p, bool ws, dim3 grid, cudaStream_t s) {
  if constexpr (Layout == kern::kBF16)
    return launch_one<D, Layout, 0>(p, ws, grid, s);
  else
    return p.src[0].flavor == 2 ? launch_one<D, Layout, 2>(p, ws, grid, s) : launch_one<D, Layout, 1>(p, ws, grid, s);
}
template <int D>
cudaError_t prepare_kernel(void (*k)(kern::AttnParams), bool *usable) {
  cudaFuncAttributes fa;
  cudaError_t e = cudaFuncGetAttributes(&fa, k);
  if (e != cudaSuccess) return e;
  // The sm_90a machine code is the one the driver picked for this device (other passes hold an
  // empty body that must never run).
  if (fa.binaryVersion != 90) *usable = false;
  return cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, sm90::Smem<D>::kBytes);
}
template <int D, int Layout, int Flavor>
cudaError_t prepare_one(bool ws, bool *usable) {
  return ws ? prepare_kernel<D>(sm90::sparse_attention_sm90_ws_kernel<D, Layout, Flavor>, usable)
            : prepare_kernel<D>(sm90::sparse_attention_sm90_kernel<D, Layout, Flavor>, usable);
}
}  // namespace

bool attention_sm90_layout_ok(int D, int layout) {
  return layout == kern::kBF16 || (D == KvV32::kFixedDim && layout == kern::kV32) ||
         (D == KvV4::kFixedDim && layout == kern::kV4);
}

// SPMLA_CUDA_ATTENTION: unset or "sm90" = the two-warpgroup Hopper kernel, "sm90ws" = its
// warp-specialized variant (experimental), "portable" = the mma.sync kernel everywhere.
cudaError_t attention_sm90_prepare(int cc, size_t smem_optin, AttnSm90Mode *mode) {
  *mode = AttnSm90Mode::kOff;
#if defined(SPMLA_CUDA_HAS_SM90A)
  const char *env = std::getenv("SPMLA_CUDA_ATTENTION");
  if (env && std::strcmp(env, "portable") == 0) return cudaSuccess;
  const bool ws = env && std::strcmp(env, "sm90ws") == 0;
  if (cc != 90 || smem_optin < (size_t)sm90::Smem<576>::kBytes) return cudaSuccess;
  bool ok = true;
  cudaError_t e = prepare_one<576, kern::kBF16, 0>(ws, &ok);
  if (e == cudaSuccess) e = prepare_one<576, kern::kV32, 1>(ws, &ok);
  if (e == cudaSuccess) e = prepare_one<576, kern::kV32, 2>(ws, &ok);
  if (e == cudaSuccess) e = prepare_one<512, kern::kBF16, 0>(ws, &ok);
  if (e == cudaSuccess) e = prepare_one<512, kern::kV4, 1>(ws, &ok);
  if (e == cudaSuccess) e = prepare_one<512, kern::kV4, 2>(ws, &ok);
  if (e != cudaSuccess) return e;
  if (ok) *mode = ws ? AttnSm90Mode::kWarpSpecialized : AttnSm90Mode::kTwoWarpgroups;
#else
  (void)cc;
  (void)smem_optin;
#endif
  return cudaSuccess;
}

cudaError_t launch_attention_sm90(const kern::AttnParams &p, int layout, AttnSm90Mode mode, dim3 grid, cudaStream_t s) {
  const bool ws = mode == AttnSm90Mode::kWarpSpecialized;
  if (p.D == 576)
    return layout == kern::kV32 ? launch_layout<576, kern::kV32>(p, ws, grid, s) : launch_layout<576, kern::kBF16>(p, ws, grid, s);
  return layout == kern::kV4 ? launch_layout<512, kern::kV4>(p, ws, grid, s) : launch_layout<512, kern::kBF16>(p, ws, grid, s);
}

}  // namespace cuda
}  // namespace spmla
