// runtime_cuda.cu — the runtime table (common/host/gpu_runtime.h) filled from the CUDA runtime.
// Used by the CUDA plugin and by the "HIP-on-NVIDIA" build of the HIP plugin (its host code and
// kernels compiled by nvcc through backends/common/compat.h, run on an NVIDIA GPU as backend
// "hip"). The CUDA runtime is linked statically; the driver is looked for first so that a machine
// without one gets a reason instead of a crash.
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdio.h>

#include "common/host/gpu_runtime.h"

namespace {

int count(int *n) { return (int)cudaGetDeviceCount(n); }
int set_dev(int d) { return (int)cudaSetDevice(d); }
int get_dev(int *d) { return (int)cudaGetDevice(d); }
#if defined(SPMLA_HIP_EMULATE)
// The emulated CDNA target (backends/hip/emu/cdna_emu.cuh): its name, wave64 and its LDS per
// workgroup, so that the host layer selects what it would select on that AMD device.
#  if SPMLA_HIP_EMULATE == 942
constexpr const char *kEmuArch = "gfx942";
constexpr int kEmuLds = 65536;
#  elif SPMLA_HIP_EMULATE == 950
constexpr const char *kEmuArch = "gfx950";
constexpr int kEmuLds = 163840;
#  else
#    error "SPMLA_HIP_EMULATE must be 942 or 950"
#  endif
#endif
int attr(int *v, spmla::gpu::Attr a, int dev) {
  using spmla::gpu::Attr;
  const cudaDeviceAttr c = a == Attr::kMultiprocessorCount ? cudaDevAttrMultiProcessorCount
                           : a == Attr::kWarpSize          ? cudaDevAttrWarpSize
                           : a == Attr::kMaxSharedPerBlock ? cudaDevAttrMaxSharedMemoryPerBlock
                                                           : cudaDevAttrMaxSharedMemoryPerBlockOptin;
  const cudaError_t e = cudaDeviceGetAttribute(v, c, dev);
#if defined(SPMLA_HIP_EMULATE)
  if (e == cudaSuccess && a == Attr::kWarpSize) *v = 64;
  if (e == cudaSuccess && (a == Attr::kMaxSharedPerBlock || a == Attr::kSharedPerBlockOptin) && *v > kEmuLds) *v = kEmuLds;
#endif
  return (int)e;
}
int total_mem(size_t *b, int dev) {
  cudaDeviceProp p;
  const cudaError_t e = cudaGetDeviceProperties(&p, dev);
  if (e == cudaSuccess) *b = p.totalGlobalMem;
  return (int)e;
}
int dev_name(char *out, int n, int dev) {
  cudaDeviceProp p;
  const cudaError_t e = cudaGetDeviceProperties(&p, dev);
#if defined(SPMLA_HIP_EMULATE)
  if (e == cudaSuccess) snprintf(out, (size_t)n, "%s (emulating %s)", p.name, kEmuArch);
#else
  if (e == cudaSuccess) snprintf(out, (size_t)n, "%s", p.name);
#endif
  return (int)e;
}
int dev_arch(char *out, size_t n, int dev) {
  int ma = 0, mi = 0;
  cudaError_t e = cudaDeviceGetAttribute(&ma, cudaDevAttrComputeCapabilityMajor, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&mi, cudaDevAttrComputeCapabilityMinor, dev);
#if defined(SPMLA_HIP_EMULATE)
  if (e == cudaSuccess) snprintf(out, n, "%s", kEmuArch);
#else
  if (e == cudaSuccess) snprintf(out, n, "sm_%d%d", ma, mi);
#endif
  return (int)e;
}
int mal(void **p, size_t b) { return (int)cudaMalloc(p, b); }
int fre(void *p) { return (int)cudaFree(p); }
int cpy(void *d, const void *s, size_t b, int kind, void *st) {
  return (int)cudaMemcpyAsync(d, s, b, (cudaMemcpyKind)kind, (cudaStream_t)st);
}
int set(void *d, int v, size_t b, void *st) { return (int)cudaMemsetAsync(d, v, b, (cudaStream_t)st); }
int ssync(void *st) { return (int)cudaStreamSynchronize((cudaStream_t)st); }
int ev_create(void **e) { return (int)cudaEventCreate(reinterpret_cast<cudaEvent_t *>(e)); }
int ev_destroy(void *e) { return (int)cudaEventDestroy((cudaEvent_t)e); }
int ev_record(void *e, void *st) { return (int)cudaEventRecord((cudaEvent_t)e, (cudaStream_t)st); }
int ev_sync(void *e) { return (int)cudaEventSynchronize((cudaEvent_t)e); }
int ev_elapsed(float *ms, void *a, void *b) { return (int)cudaEventElapsedTime(ms, (cudaEvent_t)a, (cudaEvent_t)b); }
int last() { return (int)cudaGetLastError(); }
const char *ename(int e) { return cudaGetErrorName((cudaError_t)e); }
const char *estr(int e) { return cudaGetErrorString((cudaError_t)e); }
int func_smem(const void *f, int bytes) {
#if defined(SPMLA_HIP_EMULATE)
  if (bytes > kEmuLds) return (int)cudaErrorInvalidValue;  // beyond the emulated target's LDS
#endif
  return (int)cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

}  // namespace

namespace spmla {
namespace gpu {

bool runtime_fill(Runtime *rt, std::string *why) {
  void *drv = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!drv) {
    const char *e = dlerror();
    *why = std::string("no CUDA driver: libcuda.so.1 not found (") + (e ? e : "dlopen failed") + ")";
    return false;
  }
  Runtime &a = *rt;
#if defined(SPMLA_HIP_EMULATE) && SPMLA_HIP_EMULATE == 942
  a.vendor = "CUDA (HIP-on-NVIDIA, emulating CDNA gfx942)";
#elif defined(SPMLA_HIP_EMULATE)
  a.vendor = "CUDA (HIP-on-NVIDIA, emulating CDNA gfx950)";
#elif defined(SPMLA_HIP_ON_NVIDIA)
  a.vendor = "CUDA (HIP-on-NVIDIA)";
#else
  a.vendor = "CUDA";
#endif
  snprintf(a.library, sizeof a.library, "static CUDA runtime + libcuda.so.1");
  cudaRuntimeGetVersion(&a.runtime_version);
  a.GetDeviceCount = count;
  a.SetDevice = set_dev;
  a.GetDevice = get_dev;
  a.DeviceGetAttribute = attr;
  a.DeviceTotalMem = total_mem;
  a.DeviceGetName = dev_name;
  a.DeviceArch = dev_arch;
  a.Malloc = mal;
  a.Free = fre;
  a.MemcpyAsync = cpy;
  a.MemsetAsync = set;
  a.StreamSynchronize = ssync;
  a.EventCreate = ev_create;
  a.EventDestroy = ev_destroy;
  a.EventRecord = ev_record;
  a.EventSynchronize = ev_sync;
  a.EventElapsedTime = ev_elapsed;
  a.GetLastError = last;
  a.GetErrorName = ename;
  a.GetErrorString = estr;
  a.FuncSetMaxDynamicShared = func_smem;
  return true;
}

}  // namespace gpu
}  // namespace spmla
