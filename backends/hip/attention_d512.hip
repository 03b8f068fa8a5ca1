// Explicit instantiation: sparse attention, D_qk = 512 (MFMA kernel for CDNA, portable kernel).
#include "attention_hip.cuh"
#include "launch_status.h"
#include "launchers.h"

namespace spmla {
namespace hip {

int launch_attention_d512(AttnKernel k, const kern::AttnParams &p, int q_vec, Dim3H g, void *stream) {
  const dim3 grid(g.x, g.y, g.z);
  if (k == AttnKernel::kMfma)
    sparse_attention_mfma_kernel<512><<<grid, kMfmaThreads, MfmaSmem<512>::kBytes, as_stream(stream)>>>(p, q_vec);
  else
    sparse_attention_portable_kernel<512><<<grid, kPortThreads, PortSmem<512>::kBytes, as_stream(stream)>>>(p);
  return launch_status();
}

int attention_prepare_d512(size_t max_dynamic_shared) {
  const Api *a = api();
  if (!a) return 3;
  int e = 0;
  if (PortSmem<512>::kBytes <= max_dynamic_shared)
    e = a->FuncSetMaxDynamicShared(reinterpret_cast<const void *>(&sparse_attention_portable_kernel<512>),
                                   PortSmem<512>::kBytes);
  if (e == 0 && MfmaSmem<512>::kBytes <= max_dynamic_shared)
    e = a->FuncSetMaxDynamicShared(reinterpret_cast<const void *>(&sparse_attention_mfma_kernel<512>),
                                   MfmaSmem<512>::kBytes);
  return e;
}

}  // namespace hip
}  // namespace spmla
