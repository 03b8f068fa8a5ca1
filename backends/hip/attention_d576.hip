// Explicit instantiation: sparse attention, D_qk = 576 (MFMA kernels for CDNA3 and CDNA4, portable kernel).
#include "cdna3/attention_mfma.cuh"
#include "cdna4/attention_mfma950.cuh"
#include "common/attention_portable.cuh"
#include "common/host/gpu_runtime.h"
#include "hip/vendor_hip.h"

namespace spmla {
namespace hip {

int launch_mfma_d576(const kern::AttnParams &p, int q_vec, gpu::Dim3 g, void *stream) {
  sparse_attention_mfma_kernel<576>
      <<<dim3(g.x, g.y, g.z), kMfmaThreads, MfmaSmem<576>::kBytes, static_cast<spmla_stream_t>(stream)>>>(p, q_vec);
  return launch_status();
}

int launch_mfma950_d576(const kern::AttnParams &p, int q_vec, gpu::Dim3 g, void *stream) {
  sparse_attention_mfma950_kernel<576><<<dim3(g.x, g.y, g.z), kMfma950Threads, Mfma950Smem<576>::kBytes,
                                         static_cast<spmla_stream_t>(stream)>>>(p, q_vec);
  return launch_status();
}

int launch_portable_d576(const kern::AttnParams &p, gpu::Dim3 g, void *stream) {
  kern::sparse_attention_portable_kernel<576><<<dim3(g.x, g.y, g.z), kern::kPortThreads, kern::PortSmem<576>::kBytes,
                                               static_cast<spmla_stream_t>(stream)>>>(p);
  return launch_status();
}

int attention_prepare_d576(size_t max_dynamic_shared) {
  const gpu::Runtime *rt = gpu::runtime();
  if (!rt) return 3;  // hipErrorNotInitialized
  int e = 0;
  if (kern::PortSmem<576>::kBytes <= max_dynamic_shared)
    e = rt->FuncSetMaxDynamicShared(reinterpret_cast<const void *>(&kern::sparse_attention_portable_kernel<576>),
                                    kern::PortSmem<576>::kBytes);
  if (e == 0 && MfmaSmem<576>::kBytes <= max_dynamic_shared)
    e = rt->FuncSetMaxDynamicShared(reinterpret_cast<const void *>(&sparse_attention_mfma_kernel<576>),
                                    MfmaSmem<576>::kBytes);
  // gfx950's kernel needs more than 64 KiB: set only where the device allows it (the variant's
  // unsupported() refuses it elsewhere).
  if (e == 0 && Mfma950Smem<576>::kBytes <= max_dynamic_shared)
    e = rt->FuncSetMaxDynamicShared(reinterpret_cast<const void *>(&sparse_attention_mfma950_kernel<576>),
                                    Mfma950Smem<576>::kBytes);
  return e;
}

}  // namespace hip
}  // namespace spmla
