// cdna_emu_instr.cu — device side of the CDNA instruction tests (see cdna_emu_instr.h). Compiled
// only in the emulated HIP-on-NVIDIA build (SPMLA_HIP_EMULATE), through the same compat header as
// the kernels, so the instructions run exactly as the kernels call them.
#include <cuda_runtime.h>

#include "cdna_emu_instr.h"
#include "common/compat.h"

#if !defined(SPMLA_HIP_EMULATE)
#  error "cdna_emu_instr.cu is for the emulated HIP-on-NVIDIA build"
#endif
static_assert(SPMLA_WARP_SIZE == 64, "wave64 in the emulated build");
#if !defined(SPMLA_AMD_MFMA)
#  error "SPMLA_AMD_MFMA must be defined in the emulated build"
#endif

namespace {

SPMLA_EXT_VECTOR_TYPEDEF(short, 4, bf16x4_t);
SPMLA_EXT_VECTOR_TYPEDEF(float, 4, f32x4_t);
SPMLA_EXT_VECTOR_TYPEDEF(float, 2, f32x2_t);

__global__ void mfma_kernel(const uint16_t *a, const uint16_t *b, const float *c, float *d) {
  const int l = threadIdx.x & 63, w = blockIdx.x * (blockDim.x / 64) + (threadIdx.x >> 6);
  const int64_t o = ((int64_t)w * 64 + l) * 4;
  const bf16x4_t av = {(short)a[o], (short)a[o + 1], (short)a[o + 2], (short)a[o + 3]};
  const bf16x4_t bv = {(short)b[o], (short)b[o + 1], (short)b[o + 2], (short)b[o + 3]};
  f32x4_t cv = {c[o], c[o + 1], c[o + 2], c[o + 3]};
  cv = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(av, bv, cv, 0, 0, 0);
  for (int j = 0; j < 4; ++j) d[o + j] = cv[j];
}

#if SPMLA_HIP_EMULATE == 950
SPMLA_EXT_VECTOR_TYPEDEF(short, 8, bf16x8_t);
__global__ void mfma_x32_kernel(const uint16_t *a, const uint16_t *b, const float *c, float *d) {
  const int l = threadIdx.x & 63, w = blockIdx.x * (blockDim.x / 64) + (threadIdx.x >> 6);
  const int64_t o8 = ((int64_t)w * 64 + l) * 8, o4 = ((int64_t)w * 64 + l) * 4;
  bf16x8_t av, bv;
  for (int e = 0; e < 8; ++e) {
    av[e] = (short)a[o8 + e];
    bv[e] = (short)b[o8 + e];
  }
  f32x4_t cv = {c[o4], c[o4 + 1], c[o4 + 2], c[o4 + 3]};
  cv = __builtin_amdgcn_mfma_f32_16x16x32_bf16(av, bv, cv, 0, 0, 0);
  for (int j = 0; j < 4; ++j) d[o4 + j] = cv[j];
}
#endif

__global__ void cvt_kernel(int n, const uint32_t *src, float *out) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const f32x2_t lo = __builtin_amdgcn_cvt_pk_f32_fp8((int)src[i], false);
    const f32x2_t hi = __builtin_amdgcn_cvt_pk_f32_fp8((int)src[i], true);
    out[4 * i] = lo[0];
    out[4 * i + 1] = lo[1];
    out[4 * i + 2] = hi[0];
    out[4 * i + 3] = hi[1];
  }
}

template <typename T>
__global__ void shfl_kernel(int op, int width, const int *args, const uint64_t *in, uint64_t *out) {
  const int t = threadIdx.x;
  const T v = (T)in[t];
  T r;
  switch (op) {
    case 0: r = spmla::dev::shfl(v, args[t], width); break;
    case 1: r = spmla::dev::shfl_up(v, args[0], width); break;
    case 2: r = spmla::emu::shfl_down(v, args[0], width); break;
    case 3: r = spmla::dev::shfl_xor(v, args[0], width); break;
    default: r = spmla::emu::readlane(v, args[0]); break;
  }
  out[t] = (uint64_t)r;
}

// Wavefronts doing different numbers of exchanges between block barriers (as topk's does when
// some wavefronts have candidates and others not): wavefront w first swaps its halves w % 3 times
// (xor 32, width 64), then out = shfl_xor(value, 1, 64).
__global__ void uneven_kernel(const uint64_t *in, uint64_t *out) {
  uint32_t v = (uint32_t)in[threadIdx.x];
  const int rounds = (threadIdx.x >> 6) % 3;
  for (int i = 0; i < rounds; ++i) v = spmla::dev::shfl_xor(v, 32, 64);
  out[threadIdx.x] = spmla::dev::shfl_xor(v, 1, 64);
}

__global__ void ballot_kernel(const uint8_t *pred, uint64_t *out) {
  const uint64_t m = spmla::emu::ballot(pred[threadIdx.x] != 0);
  if ((threadIdx.x & 63) == 0) out[threadIdx.x >> 6] = m;
}

__global__ void warp_size_kernel(int *out) { *out = SPMLA_WARP_SIZE; }

template <typename T>
int to_device(T **d, const T *h, size_t n) {
  cudaError_t e = cudaMalloc(d, n * sizeof(T));
  if (e == cudaSuccess && h) e = cudaMemcpy(*d, h, n * sizeof(T), cudaMemcpyHostToDevice);
  return (int)e;
}

}  // namespace

namespace cdna_emu_test {

int emulated_target() { return SPMLA_HIP_EMULATE; }

int device_warp_size() {
  int *d = nullptr, h = 0;
  int e = to_device<int>(&d, nullptr, 1);
  if (!e) warp_size_kernel<<<1, 1>>>(d);
  if (!e) e = (int)cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost);
  cudaFree(d);
  return e ? -e : h;
}

int run_mfma(int waves, int threads, const uint16_t *a, const uint16_t *b, const float *c, float *d) {
  const size_t n = (size_t)waves * 256;
  uint16_t *da = nullptr, *db = nullptr;
  float *dc = nullptr, *dd = nullptr;
  int e = to_device(&da, a, n);
  if (!e) e = to_device(&db, b, n);
  if (!e) e = to_device(&dc, c, n);
  if (!e) e = to_device<float>(&dd, nullptr, n);
  if (!e) {
    mfma_kernel<<<waves * 64 / threads, threads>>>(da, db, dc, dd);
    e = (int)cudaGetLastError();
  }
  if (!e) e = (int)cudaMemcpy(d, dd, n * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  cudaFree(dd);
  return e;
}

int run_mfma_x32(int waves, int threads, const uint16_t *a, const uint16_t *b, const float *c, float *d) {
#if SPMLA_HIP_EMULATE == 950
  const size_t n8 = (size_t)waves * 512, n4 = (size_t)waves * 256;
  uint16_t *da = nullptr, *db = nullptr;
  float *dc = nullptr, *dd = nullptr;
  int e = to_device(&da, a, n8);
  if (!e) e = to_device(&db, b, n8);
  if (!e) e = to_device(&dc, c, n4);
  if (!e) e = to_device<float>(&dd, nullptr, n4);
  if (!e) {
    mfma_x32_kernel<<<waves * 64 / threads, threads>>>(da, db, dc, dd);
    e = (int)cudaGetLastError();
  }
  if (!e) e = (int)cudaMemcpy(d, dd, n4 * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  cudaFree(dd);
  return e;
#else
  (void)waves, (void)threads, (void)a, (void)b, (void)c, (void)d;
  return -1;  // v_mfma_f32_16x16x32_bf16 is gfx950-only
#endif
}

int run_cvt(int n, const uint32_t *src, float *out) {
  uint32_t *ds = nullptr;
  float *dout = nullptr;
  int e = to_device(&ds, src, (size_t)n);
  if (!e) e = to_device<float>(&dout, nullptr, (size_t)n * 4);
  if (!e) {
    cvt_kernel<<<256, 256>>>(n, ds, dout);
    e = (int)cudaGetLastError();
  }
  if (!e) e = (int)cudaMemcpy(out, dout, (size_t)n * 4 * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(ds);
  cudaFree(dout);
  return e;
}

int run_shfl(int op, int width, int threads, const int *args, const uint64_t *in, uint64_t *out, bool wide) {
  int *da = nullptr;
  uint64_t *di = nullptr, *dout = nullptr;
  int e = to_device(&da, args, (size_t)threads);
  if (!e) e = to_device(&di, in, (size_t)threads);
  if (!e) e = to_device<uint64_t>(&dout, nullptr, (size_t)threads);
  if (!e) {
    if (wide)
      shfl_kernel<uint64_t><<<1, threads>>>(op, width, da, di, dout);
    else
      shfl_kernel<uint32_t><<<1, threads>>>(op, width, da, di, dout);
    e = (int)cudaGetLastError();
  }
  if (!e) e = (int)cudaMemcpy(out, dout, (size_t)threads * sizeof(uint64_t), cudaMemcpyDeviceToHost);
  cudaFree(da);
  cudaFree(di);
  cudaFree(dout);
  return e;
}

int run_uneven(int threads, const uint64_t *in, uint64_t *out) {
  uint64_t *di = nullptr, *dout = nullptr;
  int e = to_device(&di, in, (size_t)threads);
  if (!e) e = to_device<uint64_t>(&dout, nullptr, (size_t)threads);
  if (!e) {
    uneven_kernel<<<1, threads>>>(di, dout);
    e = (int)cudaGetLastError();
  }
  if (!e) e = (int)cudaMemcpy(out, dout, (size_t)threads * sizeof(uint64_t), cudaMemcpyDeviceToHost);
  cudaFree(di);
  cudaFree(dout);
  return e;
}

int run_ballot(int threads, const uint8_t *pred, uint64_t *out) {
  uint8_t *dp = nullptr;
  uint64_t *dout = nullptr;
  const int waves = (threads + 63) / 64;
  int e = to_device(&dp, pred, (size_t)threads);
  if (!e) e = to_device<uint64_t>(&dout, nullptr, (size_t)waves);
  if (!e) {
    ballot_kernel<<<1, threads>>>(dp, dout);
    e = (int)cudaGetLastError();
  }
  if (!e) e = (int)cudaMemcpy(out, dout, (size_t)waves * sizeof(uint64_t), cudaMemcpyDeviceToHost);
  cudaFree(dp);
  cudaFree(dout);
  return e;
}

}  // namespace cdna_emu_test
