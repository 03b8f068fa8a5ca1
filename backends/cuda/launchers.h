// launchers.h — host-side entry points of the kernels (one translation unit per configuration,
// so the build parallelises). Each returns the launch's cudaError_t.
#pragma once
#include <cuda_runtime.h>

#include "../common/params.h"

namespace spmla {
namespace cuda {

// Dynamic shared memory of the attention kernel for D = 512 / 576.
size_t attention_smem_bytes(int D);
cudaError_t attention_prepare(int D);  // raises the kernel's dynamic shared-memory limit
cudaError_t launch_attention_d576(const kern::AttnParams &p, int q_vec16, dim3 grid, cudaStream_t s);
cudaError_t launch_attention_d512(const kern::AttnParams &p, int q_vec16, dim3 grid, cudaStream_t s);
// Hopper fast path (sm90/): usable when the plugin holds sm_90a code, the device is sm_90 and
// SPMLA_CUDA_ATTENTION is not "portable"; for sources of one layout: BF16, V32 (D 576), V4 (D 512).
enum class AttnSm90Mode { kOff, kTwoWarpgroups, kWarpSpecialized };
bool attention_sm90_layout_ok(int D, int layout);
cudaError_t attention_sm90_prepare(int cc, size_t smem_optin, AttnSm90Mode *mode);
cudaError_t launch_attention_sm90(const kern::AttnParams &p, int layout, AttnSm90Mode mode, dim3 grid, cudaStream_t s);
cudaError_t launch_attention_combine(const kern::AttnParams &p, cudaStream_t s);
cudaError_t launch_attention_plan(void *ws, unsigned splits, unsigned T, unsigned H, cudaStream_t s);

cudaError_t launch_indices_to_slots(const kern::IndicesToSlotsParams &p, cudaStream_t s);
cudaError_t launch_window_indices(const kern::WindowParams &p, cudaStream_t s);
cudaError_t indexer_prepare();
cudaError_t launch_indexer(const kern::IndexerParams &p, int sm_count, cudaStream_t s);
// topk: topk_prepare raises the fast kernel configurations' shared-memory limits and fills in
// the device's launch state: their per-block budgets (0: that configuration is not used), and
// whether a fast kernel may start as the programmatic dependent of its sample kernel (sm_90+).
constexpr int kTopkFastConfigs = 2;
struct TopkLaunchState {
  size_t fast_smem[kTopkFastConfigs] = {};
  bool dependent_launch = false;
};
cudaError_t topk_prepare(int device, TopkLaunchState *st);
cudaError_t launch_topk(const kern::TopkParams &p, const TopkLaunchState &st, cudaStream_t s);
cudaError_t launch_kv_store(const kern::StoreParams &p, int vec, cudaStream_t s);
cudaError_t launch_kv_gather(const kern::GatherParams &p, int vec, cudaStream_t s);

}  // namespace cuda
}  // namespace spmla
