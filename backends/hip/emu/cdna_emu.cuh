// cdna_emu.cuh — CDNA execution-model emulation for the HIP-on-NVIDIA build (SPMLA_HIP_EMULATE=942
// or 950, CMake -DSPMLA_HIP_EMULATE=gfx942|gfx950 with SPMLA_HIP_ON_NVIDIA=ON). Included by
// backends/common/compat.h only in that build, so the kernels written for CDNA (the MFMA attention
// kernel of backends/hip/cdna3/, the MFMA indexer policy of backends/hip/mma_policy_amd.h) compile
// with nvcc and run on an NVIDIA GPU with AMD semantics:
//   - SPMLA_WARP_SIZE is 64 (host and device passes): a wavefront is two NVIDIA warps, lanes
//     0-31 and 32-63 of the linear thread id's group of 64;
//   - cross-lane operations that stay inside one NVIDIA warp (shuffles of width <= 32 whose AMD
//     source lane lies in the same half-wave) use the native shuffle with the source lane computed
//     by HIP's formula; every other one goes through a per-wavefront shared-memory exchange
//     (ds_bpermute semantics: source lane = index mod 64) between two per-wavefront barriers
//     (bar.sync 1+wave, 64; the 16th wavefront of a 1024-thread block: pair_barrier);
//   - __builtin_amdgcn_mfma_f32_16x16x16bf16_1k and (gfx950 only) __builtin_amdgcn_mfma_f32_16x16x32_bf16:
//     operands exchanged through shared memory per wavefront in AMD's lane layout, fp32
//     accumulation (an fma chain in k order);
//   - __builtin_amdgcn_cvt_pk_f32_fp8: E4M3FNUZ on gfx942, OCP E4M3FN on gfx950;
//   - the target's LDS limit (64 KiB gfx942, 160 KiB gfx950): the runtime table reports it as the
//     device's shared memory per block and refuses more (backends/cuda/runtime_cuda.cu), and an
//     emulated MFMA traps when the kernel's dynamic shared memory exceeds it;
//   - SPMLA_AMD_MFMA and SPMLA_AMD_HW_FP8_FLAVOR as clang defines them for the target.
// Not modelled: timing, LDS bank conflicts, instruction scheduling and MFMA pipeline hazards, the
// hardware's internal summation order inside one MFMA (here: c + a0 b0 + ... + a15 b15, each an
// fp32 fma), denormal flushing modes, exec-mask effects of cross-lane operations issued by a part
// of a wavefront (an exchange needs both halves: a shuffle of width 64 inside a branch taken by
// one half-wave hangs here, where the hardware would read stale lanes). See docs/ROCM.md.
#pragma once

#include <stdint.h>

#if !defined(SPMLA_HIP_EMULATE)
#  error "cdna_emu.cuh: only for the emulated HIP-on-NVIDIA build (SPMLA_HIP_EMULATE=942 or 950)"
#endif
#if !defined(__CUDACC__)
#  error "cdna_emu.cuh: compiled by nvcc only"
#endif

#if SPMLA_HIP_EMULATE == 942
#  define SPMLA_EMU_ARCH "gfx942"
#  define SPMLA_EMU_LDS_BYTES 65536
#  define SPMLA_AMD_HW_FP8_FLAVOR 2  // v_cvt_pk_f32_fp8 decodes E4M3FNUZ on gfx940-942
#elif SPMLA_HIP_EMULATE == 950
#  define SPMLA_EMU_ARCH "gfx950"
#  define SPMLA_EMU_LDS_BYTES 163840
#  define SPMLA_AMD_HW_FP8_FLAVOR 1  // OCP E4M3FN on gfx950
#  define SPMLA_AMD_MFMA_GFX950 1    // CDNA4's v_mfma_f32_16x16x32_bf16 (compat.h: __gfx950__)
#else
#  error "SPMLA_HIP_EMULATE must be 942 or 950"
#endif
#define SPMLA_WARP_SIZE 64
#define SPMLA_AMD_MFMA 1
#define SPMLA_EMU_MAX_WAVES 16  // 1024 threads per block

namespace spmla {
namespace emu {

// clang's ext_vector_type as nvcc can compile it: an aggregate with the vector's size and alignment
// (brace initialisation, subscripting, 8/16-byte loads through reinterpret_cast).
template <typename T, int N>
struct alignas(sizeof(T) * N) ext_vector {
  T v[N];
  __host__ __device__ __forceinline__ T &operator[](int i) { return v[i]; }
  __host__ __device__ __forceinline__ const T &operator[](int i) const { return v[i]; }
};
typedef ext_vector<short, 4> bf16x4;
typedef ext_vector<short, 8> bf16x8;
typedef ext_vector<float, 4> f32x4;
typedef ext_vector<float, 2> f32x2;

// The lane arithmetic below is __host__ __device__ so that the host can run exactly this code
// (tests/gpu/cdna_emu_host_check.cu); only the exchanges and barriers are device-only.
#define SPMLA_EMU_HD __host__ __device__ __forceinline__
SPMLA_EMU_HD float as_f32(uint32_t u) {
  union {
    uint32_t u;
    float f;
  } x;
  x.u = u;
  return x.f;
}
SPMLA_EMU_HD uint32_t as_u32(float f) {
  union {
    uint32_t u;
    float f;
  } x;
  x.f = f;
  return x.u;
}

// HIP's __shfl* on wave64 (hip/amd_detail/amd_warp_functions.h): the source lane of lane `self`.
SPMLA_EMU_HD int shfl_src(int self, int src, int width) { return (src & (width - 1)) + (self & ~(width - 1)); }
SPMLA_EMU_HD int shfl_up_src(int self, int delta, int width) {
  const int index = self - delta;
  return index < (self & ~(width - 1)) ? self : index;
}
SPMLA_EMU_HD int shfl_down_src(int self, int delta, int width) {
  return (int)((self & (width - 1)) + delta) >= width ? self : self + delta;
}
SPMLA_EMU_HD int shfl_xor_src(int self, int mask, int width) {
  const int index = self ^ mask;
  return index >= ((self + width) & ~(width - 1)) ? self : index;
}

// MFMA operand staging: a lane's four bf16 as two words, and element j of them as fp32.
SPMLA_EMU_HD uint2 pack4(const bf16x4 &a) {
  return make_uint2((uint32_t)(uint16_t)a[0] | ((uint32_t)(uint16_t)a[1] << 16),
                    (uint32_t)(uint16_t)a[2] | ((uint32_t)(uint16_t)a[3] << 16));
}
SPMLA_EMU_HD float elem4(uint2 w, int j) {
  const uint32_t x = (j & 2) ? w.y : w.x;
  return as_f32((((j & 1) ? x >> 16 : x) & 0xffffu) << 16);
}
// v_mfma_f32_16x16x16_bf16 (gfx90a "_1k", gfx942, gfx950), D = A B + C, 16x16 tiles of one
// wavefront. Lane l = 16 q + c (q = l / 16, c = l % 16) holds
//   a[j] = A[c][4q + j],  b[j] = B[4q + j][c],  c[j], d[j] = C, D[4q + j][c]   (j = 0..3).
// Lane l's result from the wavefront's staged operands s[0..63] = pack4(a of lane 0..63),
// s[64..127] = pack4(b of lane 0..63).
SPMLA_EMU_HD f32x4 mfma_16x16x16_lane(const uint2 *s, int l, const f32x4 &c) {
  const int q = l >> 4, col = l & 15;
  float bc[16];  // column col of B: B[k][col] sits in lane col + 16 (k / 4), element k % 4
#pragma unroll
  for (int k = 0; k < 16; ++k) bc[k] = elem4(s[64 + col + 16 * (k >> 2)], k & 3);
  f32x4 d;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int row = 4 * q + j;  // A[row][k] sits in lane row + 16 (k / 4), element k % 4
    float acc = c[j];
#pragma unroll
    for (int k = 0; k < 16; ++k) acc = fmaf(elem4(s[row + 16 * (k >> 2)], k & 3), bc[k], acc);
    d[j] = acc;
  }
  return d;
}

// v_mfma_f32_16x16x32_bf16 (gfx950 only), D = A B + C, A 16x32, B 32x16, C/D 16x16. Lane
// l = 16 q + c holds eight bf16 of each operand (four VGPRs, two per VGPR, low half first):
//   a[j] = A[c][8q + j],  b[j] = B[8q + j][c]   (j = 0..7),  c[j], d[j] = C, D[4q + j][c] (j = 0..3)
// (AMD's CK: WarpGemmAttributeMfmaImplBf16Bf16F32M16N16K32, kAMLane 16 x kABKLane 4 x kABKPerLane
// 8; the matrix instruction calculator prints the same lane pattern for CDNA3's 16x16x32 FP8 form;
// docs/ROCM.md cites the sources). Staged operands: s[0..63] = A of lane 0..63, s[64..127] = B.
SPMLA_EMU_HD uint4 pack8(const bf16x8 &a) {
  return make_uint4((uint32_t)(uint16_t)a[0] | ((uint32_t)(uint16_t)a[1] << 16),
                    (uint32_t)(uint16_t)a[2] | ((uint32_t)(uint16_t)a[3] << 16),
                    (uint32_t)(uint16_t)a[4] | ((uint32_t)(uint16_t)a[5] << 16),
                    (uint32_t)(uint16_t)a[6] | ((uint32_t)(uint16_t)a[7] << 16));
}
SPMLA_EMU_HD float elem8(uint4 w, int j) {
  const uint32_t x = j < 2 ? w.x : j < 4 ? w.y : j < 6 ? w.z : w.w;
  return as_f32((((j & 1) ? x >> 16 : x) & 0xffffu) << 16);
}
SPMLA_EMU_HD f32x4 mfma_16x16x32_lane(const uint4 *s, int l, const f32x4 &c) {
  const int q = l >> 4, col = l & 15;
  float bc[32];  // column col of B: B[k][col] sits in lane col + 16 (k / 8), element k % 8
#pragma unroll
  for (int k = 0; k < 32; ++k) bc[k] = elem8(s[64 + col + 16 * (k >> 3)], k & 7);
  f32x4 d;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int row = 4 * q + j;  // A[row][k] sits in lane row + 16 (k / 8), element k % 8
    float acc = c[j];
#pragma unroll
    for (int k = 0; k < 32; ++k) acc = fmaf(elem8(s[row + 16 * (k >> 3)], k & 7), bc[k], acc);
    d[j] = acc;
  }
  return d;
}

// v_cvt_pk_f32_fp8 src, word_sel: bytes 2 word_sel and 2 word_sel + 1 of src, as the target's
// FP8 format (gfx942 E4M3FNUZ: bias 8, NaN 0x80, no infinity, no -0; gfx950 OCP E4M3FN: bias 7,
// NaN S.1111.111, no infinity). Exact: every code is an fp32 value. flavor as
// SPMLA_AMD_HW_FP8_FLAVOR (2 FNUZ, 1 FN).
SPMLA_EMU_HD float fp8_decode(uint32_t b, int flavor) {
  const uint32_t s = (b & 0x80u) << 24, e = (b >> 3) & 15u, m = b & 7u;
  if (flavor == 2 && b == 0x80u) return as_f32(0x7fc00000u);
  if (flavor != 2 && (b & 0x7fu) == 0x7fu) return as_f32(s | 0x7fc00000u);
  const int bias = flavor == 2 ? 8 : 7;
  // subnormal: m * 2^(1 - bias - 3); normal: (8 + m) * 2^(e - bias - 3)
  const float mag = e ? ldexpf((float)(8u + m), (int)e - bias - 3) : ldexpf((float)m, 1 - bias - 3);
  return as_f32(as_u32(mag) | s);
}
SPMLA_EMU_HD f32x2 cvt_pk_f32_fp8_flavor(int src, bool word_sel, int flavor) {
  const uint32_t w = (uint32_t)src >> (word_sel ? 16 : 0);
  f32x2 r;
  r[0] = fp8_decode(w & 0xffu, flavor);
  r[1] = fp8_decode((w >> 8) & 0xffu, flavor);
  return r;
}

// ------------------------------------------------------------------ wavefronts
__device__ __forceinline__ int linear_tid() {
  return (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
}
__device__ __forceinline__ int lane() { return linear_tid() & 63; }
__device__ __forceinline__ int wave() { return linear_tid() >> 6; }

// The 16th wavefront of a 1024-thread block has no named barrier left (ids 1..15 serve wavefronts
// 0..14; 0 is __syncthreads). Its two warps meet through two words of shared memory instead, each
// owned by one warp: (tag << 24) | phase, phase = that warp's arrivals in this block. Shared memory
// starts with garbage, so a word counts only if its tag is this block's (40 bits of a hash of
// %gridid, the context's launch number, and the block index): a stale word from an earlier block
// reads as phase 0. A warp arrives by publishing phase + 1 and waits until its partner's phase
// reaches it (the partner can be at most one phase ahead).
__device__ __forceinline__ volatile unsigned long long *pair_slots() {
  __shared__ unsigned long long s[2];
  return s;
}
__device__ __forceinline__ unsigned long long block_tag() {
  unsigned long long g;
  asm volatile("mov.u64 %0, %%gridid;" : "=l"(g));
  const unsigned long long b =
      blockIdx.x + (unsigned long long)gridDim.x * (blockIdx.y + (unsigned long long)gridDim.y * blockIdx.z);
  unsigned long long h = g * 0x9E3779B97F4A7C15ull ^ (b + 1) * 0xC2B2AE3D27D4EB4Full;
  h ^= h >> 29;
  return (h >> 24) & 0xffffffffffull;  // 40 bits
}
__device__ inline __noinline__ void pair_barrier(int half) {  // cold: out of line
  volatile unsigned long long *slot = pair_slots();
  const unsigned long long tag = block_tag();
  __syncwarp();
  const unsigned long long mine = slot[half];
  const unsigned ph = (((mine >> 24) == tag ? (unsigned)mine : 0u) + 1u) & 0xffffffu;
  __threadfence_block();  // this warp's exchange writes before its arrival
  __syncwarp();
  if ((linear_tid() & 31) == 0) {
    __threadfence_block();
    slot[half] = (tag << 24) | ph;
  }
  for (;;) {
    const unsigned long long o = slot[half ^ 1];
    if ((o >> 24) == tag && ((((unsigned)o - ph) & 0xffffffu) < 0x800000u)) break;
  }
  __threadfence_block();  // the partner's exchange writes before this warp's reads
  __syncwarp();
}

// Barrier of this thread's wavefront (both warps; a partial last wavefront counts its warps):
// named barrier 1 + w for wavefronts w = 0..14, pair_barrier for the 16th.
__device__ __forceinline__ void wave_barrier() {
  const int n = (int)(blockDim.x * blockDim.y * blockDim.z), w = wave();
  int cnt = n - 64 * w;
  if (cnt > 64) cnt = 64;
  if (w >= 15) {
    if (cnt > 32)
      pair_barrier((linear_tid() >> 5) & 1);
    else
      __syncwarp();  // a one-warp wavefront
    return;
  }
  cnt = (cnt + 31) & ~31;
  __syncwarp();
  asm volatile("bar.sync %0, %1;" ::"r"(1 + w), "r"(cnt) : "memory");
}

// Shared-memory exchange areas, one per block (a static __shared__ of a non-template function is
// one object per kernel that uses it).
__device__ __forceinline__ uint32_t *xchg_scratch() {
  __shared__ uint32_t s[SPMLA_EMU_MAX_WAVES * 64];
  return s;
}
__device__ __forceinline__ uint2 *mfma_scratch() {
  __shared__ uint2 s[SPMLA_EMU_MAX_WAVES * 128];
  return s;
}
__device__ __forceinline__ uint4 *mfma_scratch_x8() {  // 16x16x32: eight bf16 per lane and operand
  __shared__ uint4 s[SPMLA_EMU_MAX_WAVES * 128];
  return s;
}

// ds_bpermute_b32: every lane of the wavefront offers v; lane l receives the value of lane
// index mod 64 (the hardware uses address bits [7:2]).
__device__ __forceinline__ uint32_t bpermute(uint32_t v, int index) {
  uint32_t *b = xchg_scratch() + 64 * wave();
  wave_barrier();  // the previous exchange's reads are done
  b[lane()] = v;
  wave_barrier();
  return b[index & 63];
}

template <typename T>
__device__ __forceinline__ T permute_any(T v, int index, bool native) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "32- or 64-bit shuffles");
  union U {
    T t;
    uint32_t w[sizeof(T) / 4];
  } u;
  u.t = v;
#pragma unroll
  for (int i = 0; i < (int)(sizeof(T) / 4); ++i)
    u.w[i] = native ? __shfl_sync(0xffffffffu, u.w[i], index & 31) : bpermute(u.w[i], index);
  return u.t;
}

// HIP's __shfl* on wave64: the source lane (shfl_*_src above), then ds_bpermute. width is a power
// of two <= 64; the choice between the native path and the exchange depends only on warp-uniform
// arguments.
template <typename T>
__device__ __forceinline__ T shfl(T v, int src, int width) {
  return permute_any(v, shfl_src(lane(), src, width), width <= 32);
}
template <typename T>
__device__ __forceinline__ T shfl_up(T v, int delta, int width) {
  return permute_any(v, shfl_up_src(lane(), delta, width), width <= 32);
}
template <typename T>
__device__ __forceinline__ T shfl_down(T v, int delta, int width) {
  return permute_any(v, shfl_down_src(lane(), delta, width), width <= 32);
}
template <typename T>
__device__ __forceinline__ T shfl_xor(T v, int mask, int width) {
  return permute_any(v, shfl_xor_src(lane(), mask, width), width <= 32 && (unsigned)mask < 32u);
}
// v_readlane_b32 (lane a wave-uniform value).
template <typename T>
__device__ __forceinline__ T readlane(T v, int l) {
  return permute_any(v, l, false);
}
// __ballot / __activemask as 64-bit masks (bit l = lane l of the wavefront). Every lane of both
// halves must call it (the exchange needs the whole wavefront).
__device__ __forceinline__ uint64_t ballot(bool pred) {
  const uint32_t mine = __ballot_sync(__activemask(), pred);
  const int n = (int)(blockDim.x * blockDim.y * blockDim.z);
  const uint32_t lo = bpermute(mine, 0);
  const uint32_t hi = 64 * wave() + 32 < n ? bpermute(mine, 32) : 0u;  // a partial last wavefront
  return (uint64_t)lo | ((uint64_t)hi << 32);
}
__device__ __forceinline__ uint64_t activemask() { return ballot(true); }
// __builtin_amdgcn_wave_barrier: the wavefront's lanes in step (orders their LDS accesses).
__device__ __forceinline__ void wave_sync() { wave_barrier(); }

// ------------------------------------------------------------------ LDS limit
__device__ __forceinline__ void check_lds() {
  uint32_t dyn;
  asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn));
  if (dyn > (uint32_t)SPMLA_EMU_LDS_BYTES) __trap();
}

// ------------------------------------------------------------------ MFMA
// cbsz, abid and blgp (broadcast controls) must be 0, as the kernels use them.
__device__ __forceinline__ f32x4 mfma_f32_16x16x16bf16_1k(bf16x4 a, bf16x4 b, f32x4 c, int cbsz, int abid, int blgp) {
  if (cbsz | abid | blgp) __trap();
  check_lds();
  uint2 *s = mfma_scratch() + 128 * wave();
  const int l = lane();
  wave_barrier();  // the previous MFMA's reads are done
  s[l] = pack4(a);
  s[64 + l] = pack4(b);
  wave_barrier();
  return mfma_16x16x16_lane(s, l, c);
}

#if SPMLA_HIP_EMULATE == 950
// gfx950 only (clang: "needs target feature gfx950-insts"); the gfx942 emulation leaves it
// undefined, as clang does.
__device__ __forceinline__ f32x4 mfma_f32_16x16x32_bf16(bf16x8 a, bf16x8 b, f32x4 c, int cbsz, int abid, int blgp) {
  if (cbsz | abid | blgp) __trap();
  check_lds();
  uint4 *s = mfma_scratch_x8() + 128 * wave();
  const int l = lane();
  wave_barrier();  // the previous MFMA's reads are done
  s[l] = pack8(a);
  s[64 + l] = pack8(b);
  wave_barrier();
  return mfma_16x16x32_lane(s, l, c);
}
#endif

// ------------------------------------------------------------------ FP8 conversion
__device__ __forceinline__ f32x2 cvt_pk_f32_fp8(int src, bool word_sel) {
  return cvt_pk_f32_fp8_flavor(src, word_sel, SPMLA_AMD_HW_FP8_FLAVOR);
}

}  // namespace emu
}  // namespace spmla

// The AMD builtins the kernels call, by their clang names.
#define __builtin_amdgcn_mfma_f32_16x16x16bf16_1k ::spmla::emu::mfma_f32_16x16x16bf16_1k
#if SPMLA_HIP_EMULATE == 950
#  define __builtin_amdgcn_mfma_f32_16x16x32_bf16 ::spmla::emu::mfma_f32_16x16x32_bf16
#endif
#define __builtin_amdgcn_cvt_pk_f32_fp8 ::spmla::emu::cvt_pk_f32_fp8
#define __builtin_amdgcn_wave_barrier ::spmla::emu::wave_sync
