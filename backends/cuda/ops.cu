// The other kernels' launchers (small, one translation unit).
#include "../common/attention.cuh"
#include "../common/indexer.cuh"
#include "../common/kv_ops.cuh"
#include "../common/topk.cuh"
#include "launchers.h"
#include "mma_policy_sm80.cuh"

namespace spmla {
namespace cuda {

cudaError_t attention_prepare_d576();
cudaError_t attention_prepare_d512();

size_t attention_smem_bytes(int D) {
  return D == 576 ? kern::AttnSmem<576>::kBytes : kern::AttnSmem<512>::kBytes;
}
cudaError_t attention_prepare(int D) { return D == 576 ? attention_prepare_d576() : attention_prepare_d512(); }

cudaError_t launch_attention_combine(const kern::AttnParams &p, cudaStream_t s) {
  kern::sparse_attention_combine_kernel<<<dim3(p.T, p.H), 128, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_attention_plan(void *ws, unsigned splits, unsigned T, unsigned H, cudaStream_t s) {
  kern::AttnPlanHeader h{0x4c504d53u /* "SMPL" */, splits, T, H};
  kern::sparse_attention_plan_kernel<<<1, 32, 0, s>>>(static_cast<kern::AttnPlanHeader *>(ws), h);
  return cudaGetLastError();
}

cudaError_t launch_indices_to_slots(const kern::IndicesToSlotsParams &p, cudaStream_t s) {
  if (p.T == 0) return cudaSuccess;
  kern::indices_to_slots_kernel<256><<<p.T, 256, 0, s>>>(p);
  if (p.indptr && p.ragged) {
    kern::ragged_indptr_kernel<1024><<<1, 1024, 0, s>>>(p);
    kern::ragged_pack_kernel<256><<<p.T, 256, 0, s>>>(p);
  }
  return cudaGetLastError();
}

cudaError_t launch_window_indices(const kern::WindowParams &p, cudaStream_t s) {
  if (p.T == 0) return cudaSuccess;
  kern::window_indices_kernel<<<p.T, 128, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t indexer_prepare() {
  return cudaFuncSetAttribute(kern::indexer_logits_kernel<MmaPolicySm80>,
                              cudaFuncAttributeMaxDynamicSharedMemorySize, kern::IdxSmem::kBytes);
}

cudaError_t launch_indexer(const kern::IndexerParams &p, int groups, cudaStream_t s) {
  if (groups == 0 || p.C == 0) return cudaSuccess;
  dim3 grid(groups, (p.C + kern::kIdxChunk - 1) / kern::kIdxChunk);
  kern::indexer_logits_kernel<MmaPolicySm80><<<grid, kern::kIdxThreads, kern::IdxSmem::kBytes, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_topk(const kern::TopkParams &p, cudaStream_t s) {
  if (p.R == 0) return cudaSuccess;
  kern::topk_per_row_kernel<<<p.R, kern::kTopkThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_kv_store(const kern::StoreParams &p, int vec, cudaStream_t s) {
  if (p.N == 0) return cudaSuccess;
  const int blocks = (p.N + kern::kStoreRowsPerBlock - 1) / kern::kStoreRowsPerBlock;
  kern::kv_store_kernel<<<blocks, kern::kStoreRowThreads * kern::kStoreRowsPerBlock, 0, s>>>(p, vec);
  return cudaGetLastError();
}

cudaError_t launch_kv_gather(const kern::GatherParams &p, int vec, cudaStream_t s) {
  if (p.N == 0) return cudaSuccess;
  kern::kv_gather_kernel<<<(p.N + 7) / 8, 256, 0, s>>>(p, vec);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace spmla
