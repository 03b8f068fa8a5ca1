// launch_status.h — the launch error of the last <<<>>> in the vendor's runtime, as an int.
#pragma once
#include "../common/compat.h"
#include "hip_api.h"

namespace spmla {
namespace hip {
#if defined(SPMLA_VENDOR_HIP)
inline int launch_status() {
  const Api *a = api();
  return a ? a->GetLastError() : 3 /* hipErrorNotInitialized */;
}
#else
inline int launch_status() { return (int)cudaGetLastError(); }
#endif
inline spmla_stream_t as_stream(void *s) { return static_cast<spmla_stream_t>(s); }
}  // namespace hip
}  // namespace spmla
