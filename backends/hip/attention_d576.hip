// Explicit instantiation: sparse attention, D_qk = 576 (MFMA kernel for CDNA, portable kernel).
#include "attention_hip.cuh"
#include "launch_status.h"
#include "launchers.h"

namespace spmla {
namespace hip {

int launch_attention_d576(AttnKernel k, const kern::AttnParams &p, int q_vec, Dim3H g, void *stream) {
  const dim3 grid(g.x, g.y, g.z);
  if (k == AttnKernel::kMfma)
    sparse_attention_mfma_kernel<576><<<grid, kMfmaThreads, MfmaSmem<576>::kBytes, as_stream(stream)>>>(p, q_vec);
  else
    sparse_attention_portable_kernel<576><<<grid, kPortThreads, PortSmem<576>::kBytes, as_stream(stream)>>>(p);
  return launch_status();
}

int attention_prepare_d576(size_t max_dynamic_shared) {
  const Api *a = api();
  if (!a) return 3;
  int e = 0;
  if (PortSmem<576>::kBytes <= max_dynamic_shared)
    e = a->FuncSetMaxDynamicShared(reinterpret_cast<const void *>(&sparse_attention_portable_kernel<576>),
                                   PortSmem<576>::kBytes);
  if (e == 0 && MfmaSmem<576>::kBytes <= max_dynamic_shared)
    e = a->FuncSetMaxDynamicShared(reinterpret_cast<const void *>(&sparse_attention_mfma_kernel<576>),
                                   MfmaSmem<576>::kBytes);
  return e;
}

}  // namespace hip
}  // namespace spmla
