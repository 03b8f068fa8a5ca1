// gpu_runtime.h — the GPU runtime as the host layer (plugin_host.cpp) sees it: a table of
// functions filled at run time, one implementation per vendor runtime.
//
// ROCm (backends/hip/runtime_rocm.cpp): libamdhip64 is dlopen'ed at init (libamdhip64.so, .so.7, .so.6,
// .so.5 in turn) and every function is resolved with dlsym, so the plugin links no ROCm soname
// and one build serves ROCm 5, 6 and 7. The compiler-generated kernel registration and launch
// calls (__hipRegisterFatBinary, __hipPushCallConfiguration, hipLaunchKernel, ...) are defined
// inside the plugin as forwarders: registrations made by the static constructors before the
// runtime is loaded are recorded and replayed once it is.
// CUDA (backends/cuda/runtime_cuda.cu): the same table filled from the static CUDA runtime; used
// by the CUDA plugin and by the HIP-on-NVIDIA build of the HIP plugin.
//
// Only plain C types cross this table (no vendor headers), so the host layer is ordinary C++.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <string>

namespace spmla {
namespace gpu {

using Err = int;  // hipError_t / cudaError_t: 0 = success
constexpr Err kSuccess = 0;
constexpr Err kErrOutOfMemory = 2;  // hipErrorOutOfMemory == cudaErrorMemoryAllocation == 2

// Device attributes the plugin asks for (the table maps them to the vendor's enum).
enum class Attr { kMultiprocessorCount, kWarpSize, kMaxSharedPerBlock, kSharedPerBlockOptin };

struct Runtime {
  const char *vendor;   // "ROCm", "CUDA" or "CUDA (HIP-on-NVIDIA)"
  char library[256];    // the runtime library that was loaded
  int runtime_version;  // hipRuntimeGetVersion / cudaRuntimeGetVersion

  Err (*GetDeviceCount)(int *);
  Err (*SetDevice)(int);
  Err (*GetDevice)(int *);
  Err (*DeviceGetAttribute)(int *, Attr, int);
  Err (*DeviceTotalMem)(size_t *, int);
  Err (*DeviceGetName)(char *, int, int);
  // Writes the architecture name ("gfx942", "sm_90") of a device.
  Err (*DeviceArch)(char *, size_t, int);
  Err (*Malloc)(void **, size_t);
  Err (*Free)(void *);
  Err (*MemcpyAsync)(void *, const void *, size_t, int /*1 H2D, 2 D2H, 3 D2D*/, void *);
  Err (*MemsetAsync)(void *, int, size_t, void *);
  Err (*StreamSynchronize)(void *);
  Err (*EventCreate)(void **);
  Err (*EventDestroy)(void *);
  Err (*EventRecord)(void *, void *);
  Err (*EventSynchronize)(void *);
  Err (*EventElapsedTime)(float *, void *, void *);
  Err (*GetLastError)();
  const char *(*GetErrorName)(Err);
  const char *(*GetErrorString)(Err);
  // Raises a kernel's dynamic shared-memory limit (a no-op where the vendor needs none).
  Err (*FuncSetMaxDynamicShared)(const void *, int);
};

// Loads the runtime once (thread-safe; runtime_load.cpp); on failure returns null and says why.
const Runtime *runtime_load(std::string *why);
// The vendor's part: fills the table from its runtime or says why it cannot (called once).
bool runtime_fill(Runtime *rt, std::string *why);
// The loaded table (null before a successful runtime_load).
const Runtime *runtime();

}  // namespace gpu
}  // namespace spmla
