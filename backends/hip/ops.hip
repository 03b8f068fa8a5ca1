// The other kernels' launchers (small, one translation unit): the shared kernels of
// backends/common/, the indexer on the AMD matrix policy (MFMA on CDNA, portable elsewhere).
#include "../common/attention.cuh"
#include "../common/indexer.cuh"
#include "../common/kv_ops.cuh"
#include "../common/topk.cuh"
#include "attention_hip.cuh"
#include "launch_status.h"
#include "launchers.h"
#include "mma_policy_amd.h"

namespace spmla {
namespace hip {

int attention_prepare_d576(size_t max_dynamic_shared);
int attention_prepare_d512(size_t max_dynamic_shared);

size_t attention_smem_bytes(AttnKernel k, int D) {
  if (k == AttnKernel::kMfma) return D == 576 ? MfmaSmem<576>::kBytes : MfmaSmem<512>::kBytes;
  return D == 576 ? PortSmem<576>::kBytes : PortSmem<512>::kBytes;
}
int attention_heads_per_cta(AttnKernel k) { return k == AttnKernel::kMfma ? kern::kAttnBM : kPortBM; }
size_t indexer_smem_bytes() { return kern::IdxSmem::kBytes; }

int kernels_prepare(size_t max_dynamic_shared) {
  int e = attention_prepare_d576(max_dynamic_shared);
  if (e == 0) e = attention_prepare_d512(max_dynamic_shared);
  if (e == 0 && kern::IdxSmem::kBytes <= max_dynamic_shared)
    e = api()->FuncSetMaxDynamicShared(reinterpret_cast<const void *>(&kern::indexer_logits_kernel<MmaPolicyAmd>),
                                       kern::IdxSmem::kBytes);
  return e;
}

int launch_attention_combine(const kern::AttnParams &p, void *s) {
  kern::sparse_attention_combine_kernel<<<dim3(p.T, p.H), 128, 0, as_stream(s)>>>(p);
  return launch_status();
}

int launch_attention_plan(void *ws, unsigned splits, unsigned T, unsigned H, void *s) {
  kern::AttnPlanHeader h{0x4c504d53u /* "SMPL" */, splits, T, H};
  kern::sparse_attention_plan_kernel<<<1, 64, 0, as_stream(s)>>>(static_cast<kern::AttnPlanHeader *>(ws), h);
  return launch_status();
}

int launch_indices_to_slots(const kern::IndicesToSlotsParams &p, void *s) {
  if (p.T == 0) return 0;
  kern::indices_to_slots_kernel<256><<<p.T, 256, 0, as_stream(s)>>>(p);
  if (p.indptr && p.ragged) {
    kern::ragged_indptr_kernel<1024><<<1, 1024, 0, as_stream(s)>>>(p);
    kern::ragged_pack_kernel<256><<<p.T, 256, 0, as_stream(s)>>>(p);
  }
  return launch_status();
}

int launch_window_indices(const kern::WindowParams &p, void *s) {
  if (p.T == 0) return 0;
  kern::window_indices_kernel<<<p.T, 128, 0, as_stream(s)>>>(p);
  return launch_status();
}

// kIdxThreads is 8 warps of the *device's* warp size (the host pass of a multi-target HIP
// compile cannot know it): the caller passes the device's warp size.
int launch_indexer(const kern::IndexerParams &p, int groups, int warp_size, void *s) {
  if (groups == 0 || p.C == 0) return 0;
  dim3 grid(groups, (p.C + kern::kIdxChunk - 1) / kern::kIdxChunk);
  kern::indexer_logits_kernel<MmaPolicyAmd><<<grid, kern::kIdxWarps * warp_size, kern::IdxSmem::kBytes, as_stream(s)>>>(p);
  return launch_status();
}

int launch_topk(const kern::TopkParams &p, void *s) {
  if (p.R == 0) return 0;
  kern::topk_per_row_kernel<<<p.R, kern::kTopkThreads, 0, as_stream(s)>>>(p);
  return launch_status();
}

int launch_kv_store(const kern::StoreParams &p, int vec, void *s) {
  if (p.N == 0) return 0;
  const int blocks = (p.N + kern::kStoreRowsPerBlock - 1) / kern::kStoreRowsPerBlock;
  kern::kv_store_kernel<<<blocks, kern::kStoreRowThreads * kern::kStoreRowsPerBlock, 0, as_stream(s)>>>(p, vec);
  return launch_status();
}

int launch_kv_gather(const kern::GatherParams &p, int vec, void *s) {
  if (p.N == 0) return 0;
  kern::kv_gather_kernel<<<(p.N + 7) / 8, 256, 0, as_stream(s)>>>(p, vec);
  return launch_status();
}

}  // namespace hip
}  // namespace spmla
