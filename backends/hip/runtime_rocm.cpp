// runtime_rocm.cpp — loads the ROCm HIP runtime at run time and forwards to it (the runtime table of
// common/host/gpu_runtime.h).
//
// Plain C++: no HIP header is included, the few HIP types that cross are re-declared with the
// same layout (dim3 = three uint32, streams and events are pointers, hipError_t is an int enum).
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "common/host/gpu_runtime.h"

namespace {

struct Dim3 {
  uint32_t x, y, z;
};
using hipStream = void *;

// ------------------------------------------------------------------ registration records
// The plugin's static constructors register its code objects while it is being dlopen'ed,
// before init() has loaded the runtime: record them (zero-initialised PODs, so they exist
// before any constructor runs) and replay them into the runtime once it is loaded.
constexpr int kMaxBins = 64;
constexpr int kMaxFuncs = 512;
struct FatBin {
  const void *data;
  void **real;  // the runtime's handle once replayed
};
struct Func {
  int bin;
  const void *host;
  char *device_name;
  const char *name;
  unsigned thread_limit;
};
FatBin g_bins[kMaxBins];
Func g_funcs[kMaxFuncs];
int g_nbins, g_nfuncs;
bool g_overflow;

// ------------------------------------------------------------------ the real runtime
struct Real {
  void **(*RegisterFatBinary)(const void *);
  void (*RegisterFunction)(void **, const void *, char *, const char *, unsigned, void *, void *, Dim3 *,
                           Dim3 *, int *);
  int (*PushCallConfiguration)(Dim3, Dim3, size_t, hipStream);
  int (*PopCallConfiguration)(Dim3 *, Dim3 *, size_t *, hipStream *);
  int (*LaunchKernel)(const void *, Dim3, Dim3, void **, size_t, hipStream);
  int (*GetDeviceCount)(int *);
  int (*SetDevice)(int);
  int (*GetDevice)(int *);
  int (*DeviceGetAttribute)(int *, int, int);
  int (*DeviceTotalMem)(size_t *, int);
  int (*DeviceGetName)(char *, int, int);
  int (*GetDeviceProperties)(void *, int);
  int (*Malloc)(void **, size_t);
  int (*Free)(void *);
  int (*MemcpyAsync)(void *, const void *, size_t, int, hipStream);
  int (*MemsetAsync)(void *, int, size_t, hipStream);
  int (*StreamSynchronize)(hipStream);
  int (*EventCreate)(void **);
  int (*EventDestroy)(void *);
  int (*EventRecord)(void *, hipStream);
  int (*EventSynchronize)(void *);
  int (*EventElapsedTime)(float *, void *, void *);
  int (*GetLastError)();
  const char *(*GetErrorName)(int);
  const char *(*GetErrorString)(int);
  int (*FuncSetAttribute)(const void *, int, int);
  int (*RuntimeGetVersion)(int *);
};
Real g_real;
bool g_loaded;  // g_real is filled and the registrations are replayed

// hipDeviceAttribute_t values (stable since ROCm 5.0: CUDA-compatible range from 0, AMD range
// from 10000) and hipFuncAttributeMaxDynamicSharedMemorySize.
constexpr int kAttrMultiprocessorCount = 63;
constexpr int kAttrMaxSharedMemoryPerBlock = 74;
constexpr int kAttrSharedMemPerBlockOptin = 75;
constexpr int kAttrWarpSize = 87;
constexpr int kFuncAttrMaxDynamicShared = 8;
constexpr int kErrNotInitialized = 3;  // hipErrorNotInitialized

int attr(int *v, spmla::gpu::Attr a, int dev) {
  using spmla::gpu::Attr;
  const int code = a == Attr::kMultiprocessorCount ? kAttrMultiprocessorCount
                   : a == Attr::kWarpSize          ? kAttrWarpSize
                   : a == Attr::kMaxSharedPerBlock ? kAttrMaxSharedMemoryPerBlock
                                                   : kAttrSharedMemPerBlockOptin;
  const int e = g_real.DeviceGetAttribute(v, code, dev);
  // Optin is "CUDA only" on ROCm: fall back to the plain per-block limit.
  if ((e != 0 || *v <= 0) && a == Attr::kSharedPerBlockOptin)
    return g_real.DeviceGetAttribute(v, kAttrMaxSharedMemoryPerBlock, dev);
  return e;
}

// hipDeviceProp_t changed layout between ROCm 5 and 6 (hipGetDevicePropertiesR0600); rather
// than depend on either, read the struct into a large zeroed buffer and find gcnArchName
// ("gfx942:sramecc+:xnack-") by content.
int arch(char *out, size_t n, int dev) {
  if (!g_real.GetDeviceProperties) return kErrNotInitialized;
  static thread_local unsigned char buf[16384];
  memset(buf, 0, sizeof buf);
  const int e = g_real.GetDeviceProperties(buf, dev);
  if (e != 0) return e;
  for (size_t i = 0; i + 4 < sizeof buf; ++i) {
    if ((i == 0 || buf[i - 1] == 0) && buf[i] == 'g' && buf[i + 1] == 'f' && buf[i + 2] == 'x' &&
        buf[i + 3] >= '0' && buf[i + 3] <= '9') {
      size_t k = 0;
      while (i + k < sizeof buf && k + 1 < n && buf[i + k] && buf[i + k] != ':') {
        out[k] = (char)buf[i + k];
        ++k;
      }
      out[k] = 0;
      return 0;
    }
  }
  snprintf(out, n, "gfx?");
  return 0;
}
int memcpy_async(void *d, const void *s, size_t b, int kind, void *st) { return g_real.MemcpyAsync(d, s, b, kind, st); }
int func_set_max_dyn_shared(const void *f, int bytes) {
  // ROCm allows dynamic LDS up to the device limit without it; a refusal is not an error.
  if (g_real.FuncSetAttribute) (void)g_real.FuncSetAttribute(f, kFuncAttrMaxDynamicShared, bytes);
  return 0;
}

template <typename F>
bool sym(void *lib, const char *name, F &fn, std::string *missing) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn && missing) *missing += std::string(missing->empty() ? "" : ", ") + name;
  return fn != nullptr;
}

}  // namespace

namespace spmla {
namespace gpu {

bool runtime_fill(Runtime *rt, std::string *why) {
  const char *override_lib = getenv("SPMLA_HIP_RUNTIME");
  const char *candidates[] = {override_lib, "libamdhip64.so", "libamdhip64.so.7", "libamdhip64.so.6",
                              "libamdhip64.so.5"};
  void *lib = nullptr;
  std::string errors;
  for (const char *c : candidates) {
    if (!c || !*c) continue;
    lib = dlopen(c, RTLD_NOW | RTLD_LOCAL);
    if (lib) break;
    const char *e = dlerror();
    if (errors.empty()) errors = e ? e : c;
  }
  if (!lib) {
    *why = "no HIP runtime: libamdhip64.so (.7/.6/.5) not found (" + errors + ")";
    return false;
  }
  std::string missing;
  Real &r = g_real;
  sym(lib, "__hipRegisterFatBinary", r.RegisterFatBinary, &missing);
  sym(lib, "__hipRegisterFunction", r.RegisterFunction, &missing);
  sym(lib, "__hipPushCallConfiguration", r.PushCallConfiguration, &missing);
  sym(lib, "__hipPopCallConfiguration", r.PopCallConfiguration, &missing);
  sym(lib, "hipLaunchKernel", r.LaunchKernel, &missing);
  sym(lib, "hipGetDeviceCount", r.GetDeviceCount, &missing);
  sym(lib, "hipSetDevice", r.SetDevice, &missing);
  sym(lib, "hipGetDevice", r.GetDevice, &missing);
  sym(lib, "hipDeviceGetAttribute", r.DeviceGetAttribute, &missing);
  sym(lib, "hipDeviceTotalMem", r.DeviceTotalMem, &missing);
  sym(lib, "hipDeviceGetName", r.DeviceGetName, &missing);
  if (!sym(lib, "hipGetDevicePropertiesR0600", r.GetDeviceProperties, nullptr))
    sym(lib, "hipGetDeviceProperties", r.GetDeviceProperties, &missing);
  sym(lib, "hipMalloc", r.Malloc, &missing);
  sym(lib, "hipFree", r.Free, &missing);
  sym(lib, "hipMemcpyAsync", r.MemcpyAsync, &missing);
  sym(lib, "hipMemsetAsync", r.MemsetAsync, &missing);
  sym(lib, "hipStreamSynchronize", r.StreamSynchronize, &missing);
  sym(lib, "hipEventCreate", r.EventCreate, &missing);
  sym(lib, "hipEventDestroy", r.EventDestroy, &missing);
  sym(lib, "hipEventRecord", r.EventRecord, &missing);
  sym(lib, "hipEventSynchronize", r.EventSynchronize, &missing);
  sym(lib, "hipEventElapsedTime", r.EventElapsedTime, &missing);
  sym(lib, "hipGetLastError", r.GetLastError, &missing);
  sym(lib, "hipGetErrorName", r.GetErrorName, &missing);
  sym(lib, "hipGetErrorString", r.GetErrorString, &missing);
  sym(lib, "hipFuncSetAttribute", r.FuncSetAttribute, nullptr);  // optional
  sym(lib, "hipRuntimeGetVersion", r.RuntimeGetVersion, nullptr);
  if (!missing.empty()) {
    *why = "HIP runtime too old or incomplete: missing " + missing;
    dlclose(lib);
    memset(&g_real, 0, sizeof g_real);
    return false;
  }
  if (g_overflow) {
    *why = "internal: too many kernel registrations for the HIP shim";
    return false;
  }
  // Replay the registrations recorded while the plugin was being loaded.
  for (int b = 0; b < g_nbins; ++b) g_bins[b].real = r.RegisterFatBinary(g_bins[b].data);
  for (int f = 0; f < g_nfuncs; ++f) {
    const Func &fn = g_funcs[f];
    r.RegisterFunction(g_bins[fn.bin].real, fn.host, fn.device_name, fn.name, fn.thread_limit, nullptr, nullptr,
                       nullptr, nullptr, nullptr);
  }

  Runtime &a = *rt;
  a.vendor = "ROCm";
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(r.Malloc), &info) && info.dli_fname)
    snprintf(a.library, sizeof a.library, "%s", info.dli_fname);
  a.runtime_version = 0;
  if (r.RuntimeGetVersion) r.RuntimeGetVersion(&a.runtime_version);
  a.GetDeviceCount = r.GetDeviceCount;
  a.SetDevice = r.SetDevice;
  a.GetDevice = r.GetDevice;
  a.DeviceGetAttribute = attr;
  a.DeviceTotalMem = r.DeviceTotalMem;
  a.DeviceGetName = r.DeviceGetName;
  a.DeviceArch = arch;
  a.Malloc = r.Malloc;
  a.Free = r.Free;
  a.MemcpyAsync = memcpy_async;
  a.MemsetAsync = r.MemsetAsync;
  a.StreamSynchronize = r.StreamSynchronize;
  a.EventCreate = r.EventCreate;
  a.EventDestroy = r.EventDestroy;
  a.EventRecord = r.EventRecord;
  a.EventSynchronize = r.EventSynchronize;
  a.EventElapsedTime = r.EventElapsedTime;
  a.GetLastError = r.GetLastError;
  a.GetErrorName = r.GetErrorName;
  a.GetErrorString = r.GetErrorString;
  a.FuncSetMaxDynamicShared = func_set_max_dyn_shared;
  g_loaded = true;
  return true;
}

}  // namespace gpu
}  // namespace spmla

// ------------------------------------------------------------------ compiler-called entry points
// clang's HIP host code calls these; they are hidden (the plugin's version script exports only
// spmla_backend_entry), so the plugin's own calls bind here and never to a runtime's copies.
extern "C" {

void **__hipRegisterFatBinary(const void *data) {
  if (g_loaded) {
    if (g_nbins >= kMaxBins) return g_real.RegisterFatBinary(data);
  }
  if (g_nbins >= kMaxBins) {
    g_overflow = true;
    return nullptr;
  }
  FatBin &b = g_bins[g_nbins];
  b.data = data;
  b.real = g_loaded ? g_real.RegisterFatBinary(data) : nullptr;
  // The handle given back is the record's index + 1 (never dereferenced by the caller).
  return reinterpret_cast<void **>((uintptr_t)(++g_nbins));
}

void __hipRegisterFunction(void **modules, const void *host, char *device_name, const char *name,
                           unsigned thread_limit, void *, void *, Dim3 *, Dim3 *, int *) {
  const int bin = (int)(uintptr_t)modules - 1;
  if (bin < 0 || bin >= g_nbins) return;
  if (g_loaded) {
    g_real.RegisterFunction(g_bins[bin].real, host, device_name, name, thread_limit, nullptr, nullptr, nullptr,
                            nullptr, nullptr);
    return;
  }
  if (g_nfuncs >= kMaxFuncs) {
    g_overflow = true;
    return;
  }
  g_funcs[g_nfuncs++] = Func{bin, host, device_name, name, thread_limit};
}

// The runtime may already be gone at process exit: leave the code objects registered.
void __hipUnregisterFatBinary(void **) {}

int __hipPushCallConfiguration(Dim3 grid, Dim3 block, size_t shared, hipStream stream) {
  return g_loaded ? g_real.PushCallConfiguration(grid, block, shared, stream) : kErrNotInitialized;
}
int __hipPopCallConfiguration(Dim3 *grid, Dim3 *block, size_t *shared, hipStream *stream) {
  return g_loaded ? g_real.PopCallConfiguration(grid, block, shared, stream) : kErrNotInitialized;
}
int hipLaunchKernel(const void *f, Dim3 grid, Dim3 block, void **args, size_t shared, hipStream stream) {
  return g_loaded ? g_real.LaunchKernel(f, grid, block, args, shared, stream) : kErrNotInitialized;
}

}  // extern "C"
