// Explicit instantiations and the host side of the Hopper attention fast paths: variant "sm90"
// (two consumer warpgroups), "sm90pair" (two consumer warpgroups on pairs of key tiles and a
// producer warpgroup that gathers, and for FP8 sources dequantizes) and, built only with
// SPMLA_CUDA_SM90_WS (off by default), the experimental warp-specialized "sm90ws", and "sm90c2"
// (the two-warpgroup kernel in clusters of two CTAs that share the FP8 dequantization; V32 and
// V41 sources only, sm90c2_unsupported). The others read the same sources (sm90_sources_unsupported).
#include <cstdlib>
#include <cstring>

#include "attention_sm90.cuh"
#include "attention_sm90_pair.cuh"
#include "cuda/vendor_cuda.h"

namespace spmla {
namespace cuda {

namespace {
// The kernels launched in clusters of a token's two head blocks (V32 and V41 sources only), and
// the pair schedule's two.
constexpr bool clustered(Sm90Kernel k) { return k == Sm90Kernel::kC2 || k == Sm90Kernel::kPairC2; }
constexpr bool paired(Sm90Kernel k) { return k == Sm90Kernel::kPair || k == Sm90Kernel::kPairC2; }
// The kernel, its shared memory and its block size, per Sm90Kernel.
template <int D, int Layout, int Flavor, Sm90Kernel K>
auto kernel_of() {
#if defined(SPMLA_CUDA_SM90_WS)
  if constexpr (K == Sm90Kernel::kWs) return sm90::sparse_attention_sm90_ws_kernel<D, Layout, Flavor>;
#endif
  if constexpr (K == Sm90Kernel::kPair) return sm90::pair::sparse_attention_sm90pair_kernel<D, Layout, Flavor>;
  else if constexpr (K == Sm90Kernel::kPairC2) return sm90::pair::sparse_attention_sm90pair_kernel<D, Layout, Flavor, 2>;
  else if constexpr (K == Sm90Kernel::kC2) return sm90::sparse_attention_sm90_kernel<D, Layout, Flavor, 2>;
  else return sm90::sparse_attention_sm90_kernel<D, Layout, Flavor>;
}
template <int D, int Layout, Sm90Kernel K>
constexpr size_t smem_of() {
  if constexpr (paired(K)) return sm90::pair::Smem<D, Layout != kern::kBF16>::kBytes;
  else return sm90::Smem<D>::kBytes;
}
template <Sm90Kernel K>
constexpr int threads_of() {
  return paired(K) ? sm90::pair::kThreads : K == Sm90Kernel::kWs ? sm90::kWsThreads : sm90::kThreads;
}
// One instantiation per (D, layout, FP8 flavor): the flavor is a template argument so that each
// kernel holds one FP8 decoder (the E4M3FNUZ software decoder inlined beside the hardware E4M3FN
// one made the kernel too large for the instruction cache). BF16 sources use flavor 0.
template <int D, int Layout, int Flavor, Sm90Kernel K>
cudaError_t launch_one(const kern::AttnParams &p, dim3 grid, cudaStream_t s) {
  if constexpr (clustered(K)) {
    // Clusters of two along x: a token's two head blocks (sm90::cta_coord, head block fastest).
    cudaLaunchAttribute attr = {};
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = 2;
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = 1;
    return launch_with(attr, kernel_of<D, Layout, Flavor, K>(), grid, dim3(threads_of<K>()), smem_of<D, Layout, K>(),
                       s, p);
  } else {
    kernel_of<D, Layout, Flavor, K>()<<<grid, threads_of<K>(), smem_of<D, Layout, K>(), s>>>(p);
    return cudaGetLastError();
  }
}
// The FP8 flavor the kernel decodes: the main source's, or for V41 sources the one of whichever
// holds V41_FP8 rows (V41_FP4 has none; sm90_sources_ok allows one FP8 flavor per call).
int fp8_flavor(const kern::AttnParams &p) {
  if (p.src[0].layout == kern::kV41FP4 && p.K[1] > 0 && p.src[1].layout == kern::kV41FP8) return p.src[1].flavor;
  return p.src[0].flavor;
}
template <int D, int Layout, Sm90Kernel K>
cudaError_t launch_layout(const kern::AttnParams &p, dim3 grid, cudaStream_t s) {
  if constexpr (Layout == kern::kBF16)
    return launch_one<D, Layout, 0, K>(p, grid, s);
  else
    return fp8_flavor(p) == 2 ? launch_one<D, Layout, 2, K>(p, grid, s) : launch_one<D, Layout, 1, K>(p, grid, s);
}
// Every (D, layout) the two-warpgroup, pair and ws kernels read.
template <Sm90Kernel K>
cudaError_t launch_every(const kern::AttnParams &p, dim3 grid, cudaStream_t s) {
  const int layout = p.src[0].layout;
  if (p.D == 576)
    return layout == kern::kV32 ? launch_layout<576, kern::kV32, K>(p, grid, s) : launch_layout<576, kern::kBF16, K>(p, grid, s);
  if (layout == kern::kV41FP8 || layout == kern::kV41FP4) return launch_layout<512, sm90::kV41, K>(p, grid, s);
  return layout == kern::kV4 ? launch_layout<512, kern::kV4, K>(p, grid, s) : launch_layout<512, kern::kBF16, K>(p, grid, s);
}
template <Sm90Kernel K>
cudaError_t launch_any(const kern::AttnParams &p, dim3 grid, cudaStream_t s) {
  const int layout = p.src[0].layout;
  if constexpr (clustered(K)) {  // V32 (D 576), V41 (D 512) only (sm90c2_unsupported)
    if (p.D == 576 && layout == kern::kV32) return launch_layout<576, kern::kV32, K>(p, grid, s);
    if (p.D == 512 && (layout == kern::kV41FP8 || layout == kern::kV41FP4))
      return launch_layout<512, sm90::kV41, K>(p, grid, s);
    return cudaErrorInvalidValue;
  } else {
    return launch_every<K>(p, grid, s);
  }
}
template <int D, int Layout, int Flavor, Sm90Kernel K>
cudaError_t prepare_one(bool *usable) {
  const auto k = kernel_of<D, Layout, Flavor, K>();
  cudaFuncAttributes fa;
  cudaError_t e = cudaFuncGetAttributes(&fa, k);
  if (e != cudaSuccess) return e;
  // The sm_90a machine code is the one the driver picked for this device (other passes hold an
  // empty body that must never run).
  if (fa.binaryVersion != 90) *usable = false;
  return cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_of<D, Layout, K>());
}
template <Sm90Kernel K>
cudaError_t prepare_every(bool *ok) {
  cudaError_t e = prepare_one<576, kern::kBF16, 0, K>(ok);
  if (e == cudaSuccess) e = prepare_one<576, kern::kV32, 1, K>(ok);
  if (e == cudaSuccess) e = prepare_one<576, kern::kV32, 2, K>(ok);
  if (e == cudaSuccess) e = prepare_one<512, kern::kBF16, 0, K>(ok);
  if (e == cudaSuccess) e = prepare_one<512, kern::kV4, 1, K>(ok);
  if (e == cudaSuccess) e = prepare_one<512, kern::kV4, 2, K>(ok);
  if (e == cudaSuccess) e = prepare_one<512, sm90::kV41, 1, K>(ok);
  if (e == cudaSuccess) e = prepare_one<512, sm90::kV41, 2, K>(ok);
  return e;
}
// The instantiations a kernel has (the clustered ones: V32 and V41 only).
template <Sm90Kernel K>
cudaError_t prepare_all(bool *ok) {
  if constexpr (clustered(K)) {
    cudaError_t e = prepare_one<576, kern::kV32, 1, K>(ok);
    if (e == cudaSuccess) e = prepare_one<576, kern::kV32, 2, K>(ok);
    if (e == cudaSuccess) e = prepare_one<512, sm90::kV41, 1, K>(ok);
    if (e == cudaSuccess) e = prepare_one<512, sm90::kV41, 2, K>(ok);
    return e;
  } else {
    return prepare_every<K>(ok);
  }
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

const char *sm90c2_unsupported(int D, int H, int layout0, int layout1) {
  const bool v32 = D == KvV32::kFixedDim && layout0 == kern::kV32 && (layout1 == 0 || layout1 == kern::kV32);
  const bool v41 = D == KvV4::kFixedDim && is_v41(layout0) && (layout1 == 0 || is_v41(layout1));
  if (!v32 && !v41) return "shares the dequantization of V32_FP8 (D 576) and V41 (D 512) sources only";
  if ((H + sm90::kBM - 1) / sm90::kBM % 2 != 0) return "pairs a token's head blocks: needs an even number (H 65-128)";
  return nullptr;
}

bool sm90_built(Sm90Kernel k) {
#if defined(SPMLA_CUDA_SM90_WS)
  (void)k;
  return true;
#else
  return k != Sm90Kernel::kWs;
#endif
}

size_t sm90_smem_bytes(int D) { return D == 576 ? sm90::Smem<576>::kBytes : sm90::Smem<512>::kBytes; }

cudaError_t sm90_prepare(Sm90Kernel k, bool *ready) {
  *ready = false;
#if defined(SPMLA_CUDA_HAS_SM90A)
  bool ok = true;
  cudaError_t e = cudaSuccess;
  switch (k) {
    case Sm90Kernel::kTwoWg: e = prepare_all<Sm90Kernel::kTwoWg>(&ok); break;
#if defined(SPMLA_CUDA_SM90_WS)
    case Sm90Kernel::kWs: e = prepare_all<Sm90Kernel::kWs>(&ok); break;
#endif
    case Sm90Kernel::kPair: e = prepare_all<Sm90Kernel::kPair>(&ok); break;
    case Sm90Kernel::kC2: e = prepare_all<Sm90Kernel::kC2>(&ok); break;
    case Sm90Kernel::kPairC2: e = prepare_all<Sm90Kernel::kPairC2>(&ok); break;
    default: return cudaSuccess;  // not built: stays unready
  }
  if (e != cudaSuccess) return e;
  *ready = ok;
#else
  (void)k;
#endif
  return cudaSuccess;
}

cudaError_t launch_sm90(const kern::AttnParams &p, Sm90Kernel k, dim3 grid, cudaStream_t s) {
  // (T, head blocks, splits) -> (T x head blocks, 1, splits), head block fastest (sm90::cta_coord).
  static_assert(kern::kAttnBM == sm90::kBM, "the host sizes the head blocks as the kernels do");
  if ((uint64_t)grid.x * grid.y > 0x7fffffffu) return cudaErrorInvalidConfiguration;
  grid = dim3(grid.x * grid.y, 1, grid.z);
  switch (k) {
#if defined(SPMLA_CUDA_SM90_WS)
    case Sm90Kernel::kWs: return launch_any<Sm90Kernel::kWs>(p, grid, s);
#endif
    case Sm90Kernel::kPair: return launch_any<Sm90Kernel::kPair>(p, grid, s);
    case Sm90Kernel::kC2: return launch_any<Sm90Kernel::kC2>(p, grid, s);
    case Sm90Kernel::kPairC2: return launch_any<Sm90Kernel::kPairC2>(p, grid, s);
    default: return launch_any<Sm90Kernel::kTwoWg>(p, grid, s);
  }
}

}  // namespace cuda
}  // namespace spmla
