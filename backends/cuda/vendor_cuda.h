// vendor_cuda.h — the CUDA plugin's kernels as the vendor side of the host layer
// (common/host/gpu_kernels.h): its per-device state and the entry points of its translation
// units (one per attention kernel family, so the build parallelises). Each returns a cudaError_t.
#pragma once
#include <cuda_runtime.h>

#include "common/host/gpu_kernels.h"
#include "common/params.h"

namespace spmla {
namespace cuda {

// Launches `kernel` with one launch attribute (cluster dimensions, programmatic dependence).
template <typename... Params, typename... Args>
cudaError_t launch_with(const cudaLaunchAttribute &attr, void (*kernel)(Params...), dim3 grid, dim3 block,
                        size_t smem, cudaStream_t s, Args... args) {
  cudaLaunchAttribute attrs[1] = {attr};
  cudaLaunchConfig_t lc = {};
  lc.gridDim = grid;
  lc.blockDim = block;
  lc.dynamicSmemBytes = smem;
  lc.stream = s;
  lc.attrs = attrs;
  lc.numAttrs = 1;
  return cudaLaunchKernelEx(&lc, kernel, args...);
}

// topk: the fast kernel configurations' shared memory per block (0: that configuration is not
// used here), and whether a fast kernel may start as the programmatic dependent of its sample
// kernel (sm_90+ code).
constexpr int kTopkFastConfigs = 2;
struct TopkLaunchState {
  size_t fast_smem[kTopkFastConfigs] = {};
  bool dependent_launch = false;
};

// sm80/: the mma.sync kernel (sm_80+, ~157 KiB of shared memory for D 576).
// One translation unit per head dim (sm80/attention_sm80_d576.cu, _d512.cu).
cudaError_t sm80_prepare_d576();
cudaError_t sm80_prepare_d512();
cudaError_t launch_sm80_d576(const kern::AttnParams &p, int q_vec16, dim3 grid, cudaStream_t s);
cudaError_t launch_sm80_d512(const kern::AttnParams &p, int q_vec16, dim3 grid, cudaStream_t s);
// attention_portable.cu: the portable kernel of common/attention_portable.cuh.
size_t portable_smem_bytes(int D);
cudaError_t portable_prepare(int D);
cudaError_t launch_portable(const kern::AttnParams &p, dim3 grid, cudaStream_t s);
// sm90/: the Hopper kernels (sm_90a code, one layout read by every source: BF16, V32 at D 576,
// V4 / V41 at D 512): two consumer warpgroups ("sm90"), the experimental warp-specialized kernel
// ("sm90ws", built only with SPMLA_CUDA_SM90_WS), the pair schedule ("sm90pair") and the
// two-warpgroup kernel in clusters of a token's two head blocks sharing the FP8 dequantization
// ("sm90c2": V32 and V41 sources, an even number of head blocks), and the pair schedule in the
// same clusters ("sm90pairc2", the same sources and heads).
enum class Sm90Kernel { kTwoWg = 0, kWs = 1, kPair = 2, kC2 = 3, kPairC2 = 4 };
// null when sm90c2 and sm90pairc2 read these sources and heads, else the reason (after
// sm90_sources_unsupported).
const char *sm90c2_unsupported(int D, int H, int layout0, int layout1);
// null when the sm90 kernels read these sources (layout1 = 0: no extra source), else the reason.
const char *sm90_sources_unsupported(int D, int layout0, int flavor0, int layout1, int flavor1);
bool sm90_built(Sm90Kernel k);
size_t sm90_smem_bytes(int D);
// *ready: the kernel's instantiations are prepared and the device loaded their sm_90a code.
cudaError_t sm90_prepare(Sm90Kernel k, bool *ready);
cudaError_t launch_sm90(const kern::AttnParams &p, Sm90Kernel k, dim3 grid, cudaStream_t s);

}  // namespace cuda

namespace gpu {
struct VendorState {
  bool sm90[5] = {};      // [Sm90Kernel]: prepared, sm_90a code loaded
  bool sm80[2] = {};      // [D == 576]: the shared-memory limit is raised
  bool portable[2] = {};  // [D == 576]
  cuda::TopkLaunchState topk;
  bool combine_dependent = false;  // the combine launches as the attention kernel's programmatic dependent
};
}  // namespace gpu
}  // namespace spmla
