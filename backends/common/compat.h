// compat.h — the one place where the shared kernel tree (backends/common/) meets a vendor.
//
// The kernels in backends/common/ use only the names defined here (SPMLA_*, spmla::dev::*), never
// CUDA or HIP spellings directly, so the same source compiles with nvcc (CUDA plugin, and the
// HIP-on-NVIDIA build) and with clang for AMD (HIP plugin). Rules for shared code:
//   - the warp size is the compile-time constant SPMLA_WARP_SIZE (32 NVIDIA, 64 CDNA and the
//     emulated CDNA build, 32 RDNA);
//     no code may assume 32: derive lane masks, warps per block and reductions from it;
//   - shuffles take a width <= SPMLA_WARP_SIZE and never a 32-bit lane mask argument;
//   - FP8 decode/encode is done in software (bit manipulation, exact for both E4M3FN and
//     E4M3FNUZ); a vendor may provide a faster hardware decode under SPMLA_HW_FP8_E4M3FN.
#pragma once

#include <stdint.h>

#if defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__) || defined(SPMLA_VENDOR_HIP)
// ------------------------------------------------------------------------------- HIP (AMD)
#  include <hip/hip_runtime.h>
#  include <hip/hip_bf16.h>
#  define SPMLA_VENDOR_HIP 1
#  if defined(__AMDGCN_WAVEFRONT_SIZE)
#    define SPMLA_WARP_SIZE __AMDGCN_WAVEFRONT_SIZE
#  else
#    define SPMLA_WARP_SIZE 64
#  endif
typedef hipStream_t spmla_stream_t;
// Target features of a device pass (none in the host pass):
// CDNA matrix cores (v_mfma_*), wave64.
#  if defined(__gfx90a__) || defined(__gfx940__) || defined(__gfx941__) || defined(__gfx942__) || defined(__gfx950__)
#    define SPMLA_AMD_MFMA 1
#  endif
// CDNA4 (gfx950): v_mfma_f32_16x16x32_bf16 and 160 KiB of LDS (the cdna4 attention kernel).
#  if defined(__gfx950__)
#    define SPMLA_AMD_MFMA_GFX950 1
#  endif
// Hardware FP8 -> f32 conversion (v_cvt_pk_f32_fp8): E4M3FNUZ (flavor 2) on gfx940-942, OCP
// E4M3FN (flavor 1) on gfx950.
#  if defined(__gfx940__) || defined(__gfx941__) || defined(__gfx942__)
#    define SPMLA_AMD_HW_FP8_FLAVOR 2
#  elif defined(__gfx950__)
#    define SPMLA_AMD_HW_FP8_FLAVOR 1
#  endif
#else
// ------------------------------------------------------------------------------- CUDA
#  include <cuda_runtime.h>
#  include <cuda_bf16.h>
#  include <cuda_fp16.h>
#  define SPMLA_VENDOR_CUDA 1
#  if defined(SPMLA_HIP_EMULATE)
// HIP-on-NVIDIA emulating a CDNA target (wave64, MFMA, its FP8 converts and LDS limit): the
// AMD-only kernels compile and run here with AMD semantics (backends/hip/emu/, docs/ROCM.md).
#    include "hip/emu/cdna_emu.cuh"
#  else
#    define SPMLA_WARP_SIZE 32
#  endif
typedef cudaStream_t spmla_stream_t;
#  if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#    define SPMLA_HAS_CP_ASYNC 1
#  endif
#endif

#include "numerics.h"  // numerics/numerics.h, on every kernel target's include path

// clang's ext_vector_type (the CDNA builtins' operand types); an nvcc-compilable aggregate in the
// emulated build, which nvcc's front end lacks.
#if defined(SPMLA_HIP_EMULATE)
#  define SPMLA_EXT_VECTOR_TYPEDEF(T, N, name) typedef ::spmla::emu::ext_vector<T, N> name
#else
#  define SPMLA_EXT_VECTOR_TYPEDEF(T, N, name) typedef T name __attribute__((ext_vector_type(N)))
#endif

#define SPMLA_DEVICE __device__ __forceinline__
#define SPMLA_HOST_DEVICE __host__ __device__ __forceinline__
#define SPMLA_GLOBAL __global__

namespace spmla {
namespace dev {

constexpr int kWarpSize = SPMLA_WARP_SIZE;

// ------------------------------------------------------------------------------- threads
SPMLA_DEVICE int lane_id() { return (int)(threadIdx.x % kWarpSize); }
SPMLA_DEVICE int warp_id() { return (int)(threadIdx.x / kWarpSize); }
SPMLA_DEVICE void block_sync() { __syncthreads(); }

// Shuffle among `width` consecutive lanes (width a power of two <= warp size).
template <typename T>
SPMLA_DEVICE T shfl_xor(T v, int mask, int width = kWarpSize) {
#if defined(SPMLA_VENDOR_HIP)
  return __shfl_xor(v, mask, width);
#elif defined(SPMLA_HIP_EMULATE)
  return ::spmla::emu::shfl_xor(v, mask, width);
#else
  return __shfl_xor_sync(0xffffffffu, v, mask, width);
#endif
}
template <typename T>
SPMLA_DEVICE T shfl_up(T v, int delta, int width = kWarpSize) {
#if defined(SPMLA_VENDOR_HIP)
  return __shfl_up(v, delta, width);
#elif defined(SPMLA_HIP_EMULATE)
  return ::spmla::emu::shfl_up(v, delta, width);
#else
  return __shfl_up_sync(0xffffffffu, v, delta, width);
#endif
}
template <typename T>
SPMLA_DEVICE T shfl(T v, int src, int width = kWarpSize) {
#if defined(SPMLA_VENDOR_HIP)
  return __shfl(v, src, width);
#elif defined(SPMLA_HIP_EMULATE)
  return ::spmla::emu::shfl(v, src, width);
#else
  return __shfl_sync(0xffffffffu, v, src, width);
#endif
}

// Reductions over groups of `width` consecutive lanes.
template <int width>
SPMLA_DEVICE float group_max(float v) {
#pragma unroll
  for (int m = width / 2; m >= 1; m >>= 1) v = fmaxf(v, shfl_xor(v, m, width));
  return v;
}
template <int width>
SPMLA_DEVICE float group_sum(float v) {
#pragma unroll
  for (int m = width / 2; m >= 1; m >>= 1) v += shfl_xor(v, m, width);
  return v;
}
template <int width>
SPMLA_DEVICE int group_sum_int(int v) {
#pragma unroll
  for (int m = width / 2; m >= 1; m >>= 1) v += shfl_xor(v, m, width);
  return v;
}

// ------------------------------------------------------------------------------- bit casts
SPMLA_DEVICE float u32_as_f32(uint32_t u) { return __uint_as_float(u); }
SPMLA_DEVICE uint32_t f32_as_u32(float f) { return __float_as_uint(f); }

// ------------------------------------------------------------------------------- bf16
// bf16 is handled as raw uint16_t in shared code (no vendor bf16 type in structs).
SPMLA_DEVICE float bf16_to_f32(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }
// Round to nearest even; NaN stays (quiet) NaN.
SPMLA_DEVICE uint16_t f32_to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
// Two floats -> packed bf16 (RNE). Hardware on sm_80+ (a NaN becomes the canonical bf16 NaN there;
// every non-NaN value rounds identically to f32_to_bf16).
SPMLA_DEVICE uint32_t pack_bf16x2(float lo, float hi) {
#if defined(SPMLA_VENDOR_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
#else
  return (uint32_t)f32_to_bf16(lo) | ((uint32_t)f32_to_bf16(hi) << 16);
#endif
}

// Within-warp ordering of shared-memory accesses between lanes (after shuffles that already
// synchronised the lanes): CUDA __syncwarp; HIP wavefronts execute in lockstep.
SPMLA_DEVICE void warp_sync() {
#if defined(SPMLA_VENDOR_HIP) || defined(SPMLA_HIP_EMULATE)
  __builtin_amdgcn_wave_barrier();
#else
  __syncwarp();
#endif
}

// Programmatic dependent launch (CUDA, sm_90+): a kernel that its launcher marks with
// cudaLaunchAttributeProgrammaticStreamSerialization may start while the kernel before it in the
// stream still runs. That earlier kernel calls grid_launch_dependents() to let it be scheduled; the
// later one calls grid_dependency_wait() before it reads anything the earlier one writes (the wait
// returns once that grid has finished and its writes are visible). Both are no-ops elsewhere,
// where the launch serialises as usual.
SPMLA_DEVICE void grid_launch_dependents() {
#if defined(SPMLA_VENDOR_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
SPMLA_DEVICE void grid_dependency_wait() {
#if defined(SPMLA_VENDOR_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// ------------------------------------------------------------------------------- FP8
// flavor: 1 = E4M3FN (bias 7, NaN S.1111.111, max 448), 2 = E4M3FNUZ (bias 8, NaN 0x80, max 240).
// Exact software decode: normal codes become an fp32 bit pattern directly, subnormals are m * 2^-9
// (FN) or m * 2^-10 (FNUZ). No denormal fp32 is produced on the way (works with flush-to-zero).
SPMLA_DEVICE float fp8_to_f32(uint32_t b, int flavor) {
  const uint32_t e = (b >> 3) & 0xfu, m = b & 7u, s = (b & 0x80u) << 24;
  const bool fnuz = flavor == 2;
  const uint32_t bias_adj = fnuz ? 119u : 120u;  // 127 - bias
  float normal = __uint_as_float(s | ((e + bias_adj) << 23) | (m << 20));
  float sub = __uint_as_float(s | __float_as_uint((float)m * (fnuz ? 0.0009765625f : 0.001953125f)));
  float v = e ? normal : sub;
  const bool nan = fnuz ? (b == 0x80u) : ((b & 0x7fu) == 0x7fu);
  return nan ? __uint_as_float(0x7fc00000u) : v;
}
// Decode 4 packed fp8 codes (byte 0 = lowest). E4M3FN on sm_89+ uses the hardware conversion
// (cvt.rn.f16x2.e4m3x2, exact: every E4M3 value is an fp16 value); otherwise software.
SPMLA_DEVICE void fp8x4_to_f32(uint32_t w, int flavor, float out[4]) {
#if defined(SPMLA_VENDOR_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  if (flavor == 1) {
    uint32_t h01, h23;
    asm("{\n .reg .b16 lo, hi;\n mov.b32 {lo, hi}, %2;\n cvt.rn.f16x2.e4m3x2 %0, lo;\n"
        " cvt.rn.f16x2.e4m3x2 %1, hi;\n}\n"
        : "=r"(h01), "=r"(h23)
        : "r"(w));
    const float2 a = __half22float2(*reinterpret_cast<const __half2 *>(&h01));
    const float2 b = __half22float2(*reinterpret_cast<const __half2 *>(&h23));
    out[0] = a.x;
    out[1] = a.y;
    out[2] = b.x;
    out[3] = b.y;
    return;
  }
#endif
#pragma unroll
  for (int i = 0; i < 4; ++i) out[i] = fp8_to_f32((w >> (8 * i)) & 0xffu, flavor);
}

// Encode fp32 -> fp8 (RNE, saturating, NaN -> NaN code): the reference's own bit-exact integer
// routine from numerics/numerics.h (header-only, host/device), so the GPU store matches the CPU
// reference bit for bit by construction.
SPMLA_DEVICE uint32_t f32_to_fp8(float x, int flavor) {
  return ::spmla::f32_to_fp8_e4m3(x, flavor == 2 ? ::spmla::Fp8Kind::E4M3FNUZ : ::spmla::Fp8Kind::E4M3FN);
}

// Selects, not branches: unrolled dequantization loops stay straight-line code.
SPMLA_DEVICE float ue8m0_to_f32(uint32_t b) {
  const float v = b == 0u ? 5.877471754111438e-39f : __uint_as_float(b << 23);  // 0 -> 2^-127 (subnormal)
  return b == 0xffu ? __uint_as_float(0x7fc00000u) : v;
}

SPMLA_DEVICE float fp8_max(int flavor) { return flavor == 2 ? 240.0f : 448.0f; }

// ------------------------------------------------------------------------------- memory
// Asynchronous global->shared copies where the vendor has them (cp.async on sm_80+), plain
// loads and stores otherwise. `commit` groups what was issued; `wait_all` waits for it.
SPMLA_DEVICE void async_copy16(void *smem, const void *gmem) {
#if defined(SPMLA_HAS_CP_ASYNC)
  uint32_t s = (uint32_t)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
#else
  *reinterpret_cast<uint4 *>(smem) = *reinterpret_cast<const uint4 *>(gmem);
#endif
}
SPMLA_DEVICE void async_copy8(void *smem, const void *gmem) {
#if defined(SPMLA_HAS_CP_ASYNC)
  uint32_t s = (uint32_t)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(s), "l"(gmem));
#else
  *reinterpret_cast<uint2 *>(smem) = *reinterpret_cast<const uint2 *>(gmem);
#endif
}
SPMLA_DEVICE void async_commit() {
#if defined(SPMLA_HAS_CP_ASYNC)
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
SPMLA_DEVICE void async_wait_all() {
#if defined(SPMLA_HAS_CP_ASYNC)
  asm volatile("cp.async.wait_all;\n" ::);
#endif
}

SPMLA_DEVICE uint4 ld16(const void *p) { return *reinterpret_cast<const uint4 *>(p); }
SPMLA_DEVICE void st16(void *p, uint4 v) { *reinterpret_cast<uint4 *>(p) = v; }

// Cache hints where the vendor has them (plain accesses elsewhere): a load through the read-only
// path, streaming (evict-first) loads and stores of data used once, an L2 prefetch of one line.
SPMLA_DEVICE uint4 ld16_readonly(const uint4 *p) {
#if defined(SPMLA_VENDOR_CUDA)
  return __ldg(p);
#else
  return *p;
#endif
}
SPMLA_DEVICE uint4 ld16_stream(const uint4 *p) {
#if defined(SPMLA_VENDOR_CUDA)
  return __ldcs(p);
#else
  return *p;
#endif
}
template <typename T>
SPMLA_DEVICE void st_stream(T *p, const T &v) {
#if defined(SPMLA_VENDOR_CUDA)
  __stcs(p, v);
#else
  *p = v;
#endif
}
SPMLA_DEVICE void prefetch_l2(const void *p) {
#if defined(SPMLA_VENDOR_CUDA)
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#else
  (void)p;
#endif
}

SPMLA_DEVICE float pos_inf() { return __uint_as_float(0x7f800000u); }
SPMLA_DEVICE float neg_inf() { return __uint_as_float(0xff800000u); }

}  // namespace dev
}  // namespace spmla
