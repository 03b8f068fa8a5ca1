// launchers.h — host-side entry points of the HIP plugin's kernels (one translation unit per
// attention configuration, so the build parallelises). Plain C++ types only: plugin.cpp is
// compiled by the host compiler. Each returns the launch's runtime error code (0 = success).
#pragma once
#include <stddef.h>

#include "../common/params.h"

namespace spmla {
namespace hip {

struct Dim3H {
  unsigned x, y, z;
};

enum class AttnKernel { kMfma, kPortable };

// Dynamic LDS of an attention kernel, and its grid's heads per CTA.
size_t attention_smem_bytes(AttnKernel k, int D);
int attention_heads_per_cta(AttnKernel k);
// Raises dynamic shared-memory limits where the vendor needs it (NVIDIA: above 48 KiB).
int kernels_prepare(size_t max_dynamic_shared);
int launch_attention_d576(AttnKernel k, const kern::AttnParams &p, int q_vec, Dim3H grid, void *stream);
int launch_attention_d512(AttnKernel k, const kern::AttnParams &p, int q_vec, Dim3H grid, void *stream);
int launch_attention_combine(const kern::AttnParams &p, void *stream);
int launch_attention_plan(void *ws, unsigned splits, unsigned T, unsigned H, void *stream);

int launch_indices_to_slots(const kern::IndicesToSlotsParams &p, void *stream);
int launch_window_indices(const kern::WindowParams &p, void *stream);
size_t indexer_smem_bytes();
int launch_indexer(const kern::IndexerParams &p, int groups, int warp_size, void *stream);
int launch_topk(const kern::TopkParams &p, void *stream);
int launch_kv_store(const kern::StoreParams &p, int vec, void *stream);
int launch_kv_gather(const kern::GatherParams &p, int vec, void *stream);

}  // namespace hip
}  // namespace spmla
