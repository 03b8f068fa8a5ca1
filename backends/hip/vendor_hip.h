// vendor_hip.h — the HIP plugin's kernels as the vendor side of the host layer
// (common/host/gpu_kernels.h): its per-device state and the entry points of its translation units
// (one per attention head dim, so the build parallelises). Plain C++: the AMD build compiles the
// host layer in clang's host-only pass. Each launcher returns the runtime's error code.
#pragma once
#include <stddef.h>

#include "common/host/gpu_kernels.h"
#include "common/params.h"

namespace spmla {
namespace hip {

// The launch error of the last <<<>>>, from the vendor's runtime.
int launch_status();

// attention_d576.hip, attention_d512.hip: the CDNA3 MFMA kernel (cdna3/), the CDNA4 one (cdna4/,
// gfx950 only) and the portable kernel.
size_t mfma_smem_bytes(int D);
size_t mfma950_smem_bytes(int D);
size_t portable_smem_bytes(int D);
int attention_prepare_d576(size_t max_dynamic_shared);
int attention_prepare_d512(size_t max_dynamic_shared);
int launch_mfma_d576(const kern::AttnParams &p, int q_vec, gpu::Dim3 grid, void *stream);
int launch_mfma_d512(const kern::AttnParams &p, int q_vec, gpu::Dim3 grid, void *stream);
int launch_mfma950_d576(const kern::AttnParams &p, int q_vec, gpu::Dim3 grid, void *stream);
int launch_mfma950_d512(const kern::AttnParams &p, int q_vec, gpu::Dim3 grid, void *stream);
int launch_portable_d576(const kern::AttnParams &p, gpu::Dim3 grid, void *stream);
int launch_portable_d512(const kern::AttnParams &p, gpu::Dim3 grid, void *stream);

}  // namespace hip

namespace gpu {
struct VendorState {
  bool mfma = false;  // a CDNA device (wave64, matrix cores) whose code object holds the MFMA kernels
  bool mfma950 = false;  // gfx950 (CDNA4): v_mfma_f32_16x16x32_bf16 and 160 KiB of LDS (variant mfma950)
};
}  // namespace gpu
}  // namespace spmla
