// Explicit instantiations and the host side of the Hopper attention fast paths: variant "sm90"
// (two consumer warpgroups), "sm90pair" (BF16 sources: two consumer warpgroups on pairs of key
// tiles and a producer warpgroup) and, built only with SPMLA_CUDA_SM90_WS (off by default), the
// experimental warp-specialized "sm90ws".
#include <cstdlib>
#include <cstring>

#include "attention_sm90.cuh"
#include "attention_sm90_pair.cuh"
#include "cuda/vendor_cuda.h"

namespace spmla {
namespace cuda {

namespace {
// One instantiation per (D, layout, FP8 flavor): the flavor is a template argument so that each
// kernel holds one FP8 decoder (the E4M3FNUZ software decoder inlined beside the hardware E4M3FN
// one made the kernel too large for the instruction cache). BF16 sources use flavor 0.
template <int D, int Layout, int Flavor, bool WS>
cudaError_t launch_one(const kern::AttnParams &p, dim3 grid, cudaStream_t s) {
#if defined(SPMLA_CUDA_SM90_WS)
  if constexpr (WS) {
    sm90::sparse_attention_sm90_ws_kernel<D, Layout, Flavor><<<grid, sm90::kWsThreads, sm90::Smem<D>::kBytes, s>>>(p);
    return cudaGetLastError();
  }
#endif
  sm90::sparse_attention_sm90_kernel<D, Layout, Flavor><<<grid, sm90::kThreads, sm90::Smem<D>::kBytes, s>>>(p);
  return cudaGetLastError();
}
// The FP8 flavor the kernel decodes: the main source's, or for V41 sources the one of whichever
// holds V41_FP8 rows (V41_FP4 has none; sm90_sources_ok allows one FP8 flavor per call).
int fp8_flavor(const kern::AttnParams &p) {
  if (p.src[0].layout == kern::kV41FP4 && p.K[1] > 0 && p.src[1].layout == kern::kV41FP8) return p.src[1].flavor;
  return p.src[0].flavor;
}
template <int D, int Layout, bool WS>
cudaError_t launch_layout(const kern::AttnParams &p, dim3 grid, cudaStream_t s) {
  if constexpr (Layout == kern::kBF16)
    return launch_one<D, Layout, 0, WS>(p, grid, s);
  else
    return fp8_flavor(p) == 2 ? launch_one<D, Layout, 2, WS>(p, grid, s) : launch_one<D, Layout, 1, WS>(p, grid, s);
}
template <bool WS>
cudaError_t launch_any(const kern::AttnParams &p, dim3 grid, cudaStream_t s) {
  const int layout = p.src[0].layout;
  if (p.D == 576)
    return layout == kern::kV32 ? launch_layout<576, kern::kV32, WS>(p, grid, s) : launch_layout<576, kern::kBF16, WS>(p, grid, s);
  if (layout == kern::kV41FP8 || layout == kern::kV41FP4) return launch_layout<512, sm90::kV41, WS>(p, grid, s);
  return layout == kern::kV4 ? launch_layout<512, kern::kV4, WS>(p, grid, s) : launch_layout<512, kern::kBF16, WS>(p, grid, s);
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
template <int D>
cudaError_t prepare_pair(bool *usable) {
  cudaFuncAttributes fa;
  cudaError_t e = cudaFuncGetAttributes(&fa, sm90::pair::sparse_attention_sm90pair_kernel<D>);
  if (e != cudaSuccess) return e;
  if (fa.binaryVersion != 90) *usable = false;
  return cudaFuncSetAttribute(sm90::pair::sparse_attention_sm90pair_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              sm90::pair::Smem<D>::kBytes);
}
template <int D, int Layout, int Flavor, bool WS>
cudaError_t prepare_one(bool *usable) {
#if defined(SPMLA_CUDA_SM90_WS)
  if constexpr (WS) return prepare_kernel<D>(sm90::sparse_attention_sm90_ws_kernel<D, Layout, Flavor>, usable);
#endif
  return prepare_kernel<D>(sm90::sparse_attention_sm90_kernel<D, Layout, Flavor>, usable);
}
template <bool WS>
cudaError_t prepare_all(bool *ok) {
  cudaError_t e = prepare_one<576, kern::kBF16, 0, WS>(ok);
  if (e == cudaSuccess) e = prepare_one<576, kern::kV32, 1, WS>(ok);
  if (e == cudaSuccess) e = prepare_one<576, kern::kV32, 2, WS>(ok);
  if (e == cudaSuccess) e = prepare_one<512, kern::kBF16, 0, WS>(ok);
  if (e == cudaSuccess) e = prepare_one<512, kern::kV4, 1, WS>(ok);
  if (e == cudaSuccess) e = prepare_one<512, kern::kV4, 2, WS>(ok);
  if (e == cudaSuccess) e = prepare_one<512, sm90::kV41, 1, WS>(ok);
  if (e == cudaSuccess) e = prepare_one<512, sm90::kV41, 2, WS>(ok);
  return e;
}
}  // namespace

namespace {
bool is_v41(int layout) { return layout == kern::kV41FP8 || layout == kern::kV41FP4; }
}  // namespace

const char *sm90_sources_unsupported(int D, int layout0, int flavor0, int layout1, int flavor1) {
  const bool layout_ok = layout0 == kern::kBF16 || (D == KvV32::kFixedDim && layout0 == kern::kV32) ||
                         (D == KvV4::kFixedDim && (layout0 == kern::kV4 || is_v41(layout0)));
  if (!layout_ok) return "reads BF16, V32_FP8 (D 576), V4_FP8, V41_FP8 and V41_FP4 (D 512) only";
  if (layout1 == 0 || (layout1 == layout0 && flavor1 == flavor0)) return nullptr;
  // V41 rows of both kinds share one instantiation; their FP8 rows need one flavor.
  if (is_v41(layout0) && is_v41(layout1)) {
    if (layout0 == kern::kV41FP8 && layout1 == kern::kV41FP8 && flavor0 != flavor1)
      return "needs one FP8 flavor for both V41_FP8 sources";
    return nullptr;
  }
  return "needs one layout and flavor for both sources (or V41 layouts for both)";
}

bool sm90_ws_built() {
#if defined(SPMLA_CUDA_SM90_WS)
  return true;
#else
  return false;
#endif
}

size_t sm90_smem_bytes(int D) { return D == 576 ? sm90::Smem<576>::kBytes : sm90::Smem<512>::kBytes; }

cudaError_t sm90_prepare(bool ws, bool *ready) {
  *ready = false;
#if defined(SPMLA_CUDA_HAS_SM90A)
  bool ok = true;
  const cudaError_t e = ws ? prepare_all<true>(&ok) : prepare_all<false>(&ok);
  if (e != cudaSuccess) return e;
  *ready = ok;
#else
  (void)ws;
#endif
  return cudaSuccess;
}

cudaError_t launch_sm90(const kern::AttnParams &p, bool ws, dim3 grid, cudaStream_t s) {
  return ws ? launch_any<true>(p, grid, s) : launch_any<false>(p, grid, s);
}

const char *sm90pair_sources_unsupported(int layout0, int layout1) {
  if (layout0 != kern::kBF16 || (layout1 != 0 && layout1 != kern::kBF16)) return "reads BF16 sources only";
  return nullptr;
}

cudaError_t sm90pair_prepare(bool *ready) {
  *ready = false;
#if defined(SPMLA_CUDA_HAS_SM90A)
  bool ok = true;
  cudaError_t e = prepare_pair<576>(&ok);
  if (e == cudaSuccess) e = prepare_pair<512>(&ok);
  if (e != cudaSuccess) return e;
  *ready = ok;
#endif
  return cudaSuccess;
}

cudaError_t launch_sm90pair(const kern::AttnParams &p, dim3 grid, cudaStream_t s) {
  if (p.D == 576)
    sm90::pair::sparse_attention_sm90pair_kernel<576><<<grid, sm90::pair::kThreads, sm90::pair::Smem<576>::kBytes, s>>>(p);
  else
    sm90::pair::sparse_attention_sm90pair_kernel<512><<<grid, sm90::pair::kThreads, sm90::pair::Smem<512>::kBytes, s>>>(p);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace spmla
