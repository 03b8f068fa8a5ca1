// kv_ops.cuh — indices_to_slots, window_indices, kv_cache_store and kv_cache_gather.
#pragma once
#include "cache_access.cuh"
#include "compat.h"
#include "params.h"

namespace spmla {
namespace kern {

// ------------------------------------------------------------------ indices_to_slots / window
SPMLA_DEVICE int32_t slot_of(const int32_t *bt, int64_t bt_stride, int max_pages, int64_t req,
                             int64_t p, int32_t bs) {
  if (p < 0) return -1;
  const int64_t pi = p / bs;
  if (pi >= max_pages) return -1;
  const int64_t page = bt[req * bt_stride + pi];
  if (page < 0) return -1;
  const int64_t slot = page * bs + p % bs;
  if (slot > 2147483647LL) return -1;
  return (int32_t)slot;
}

// One block (of kThreads) per token: slots and the token's count.
template <int kThreads>
__global__ void __launch_bounds__(kThreads) indices_to_slots_kernel(const IndicesToSlotsParams p) {
  __shared__ int warp_counts[kThreads / SPMLA_WARP_SIZE];
  const int t = blockIdx.x;
  const int64_t req = p.token_to_req[(int64_t)t * p.ttr_stride];
  bool valid = req >= 0 && req < p.R;
  if (p.token_valid && p.token_valid[(int64_t)t * p.tv_stride] == 0) valid = false;
  int cnt = 0;
  for (int k = threadIdx.x; k < p.K; k += kThreads) {
    const int32_t s = valid ? slot_of(p.block_table, p.bt_stride, p.max_pages, req,
                                      p.positions[(int64_t)t * p.pos_stride + k], p.block_size)
                            : -1;
    p.slots[(int64_t)t * p.slots_stride + k] = s;
    cnt += s >= 0;
  }
  cnt = dev::group_sum_int<SPMLA_WARP_SIZE>(cnt);
  if (dev::lane_id() == 0) warp_counts[dev::warp_id()] = cnt;
  __syncthreads();
  if (threadIdx.x == 0) {
    int tot = 0;
    for (int w = 0; w < kThreads / SPMLA_WARP_SIZE; ++w) tot += warp_counts[w];
    p.lengths[(int64_t)t * p.len_stride] = tot;
  }
}

// Exclusive prefix sum of the lengths into indptr (one block; loops over T).
template <int kThreads>
__global__ void __launch_bounds__(kThreads) ragged_indptr_kernel(const IndicesToSlotsParams p) {
  __shared__ int warp_sums[kThreads / SPMLA_WARP_SIZE];
  __shared__ int carry;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  const int lane = dev::lane_id(), warp = dev::warp_id();
  for (int base = 0; base < p.T; base += kThreads) {
    const int t = base + threadIdx.x;
    const int v = t < p.T ? p.lengths[(int64_t)t * p.len_stride] : 0;
    int x = v;  // inclusive warp scan
#pragma unroll
    for (int d = 1; d < SPMLA_WARP_SIZE; d <<= 1) {
      const int y = dev::shfl_up(x, d);
      if (lane >= d) x += y;
    }
    if (lane == SPMLA_WARP_SIZE - 1) warp_sums[warp] = x;
    __syncthreads();
    int before = carry;
    for (int w = 0; w < warp; ++w) before += warp_sums[w];
    if (t < p.T) p.indptr[(int64_t)t * p.indptr_stride] = before + x - v;
    __syncthreads();
    if (threadIdx.x == kThreads - 1) carry = before + x;
    __syncthreads();
  }
  if (threadIdx.x == 0) p.indptr[(int64_t)p.T * p.indptr_stride] = carry;
}

// Packs each token's valid slots in list order (one warp-sized group per token, ballot-free).
template <int kThreads>
__global__ void __launch_bounds__(kThreads) ragged_pack_kernel(const IndicesToSlotsParams p) {
  __shared__ int warp_sums[kThreads / SPMLA_WARP_SIZE];
  __shared__ int carry;
  const int t = blockIdx.x;
  const int lane = dev::lane_id(), warp = dev::warp_id();
  if (threadIdx.x == 0) carry = p.indptr[(int64_t)t * p.indptr_stride];
  __syncthreads();
  for (int base = 0; base < p.K; base += kThreads) {
    const int k = base + threadIdx.x;
    const int32_t s = k < p.K ? p.slots[(int64_t)t * p.slots_stride + k] : -1;
    const int v = s >= 0;
    int x = v;
#pragma unroll
    for (int d = 1; d < SPMLA_WARP_SIZE; d <<= 1) {
      const int y = dev::shfl_up(x, d);
      if (lane >= d) x += y;
    }
    if (lane == SPMLA_WARP_SIZE - 1) warp_sums[warp] = x;
    __syncthreads();
    int before = carry;
    for (int w = 0; w < warp; ++w) before += warp_sums[w];
    if (v) p.ragged[(int64_t)(before + x - 1) * p.ragged_stride] = s;
    __syncthreads();
    if (threadIdx.x == kThreads - 1) carry = before + x;
    __syncthreads();
  }
}

__global__ void window_indices_kernel(const WindowParams p) {
  const int t = blockIdx.x;
  const int64_t pos = p.positions[(int64_t)t * p.pos_stride];
  const int64_t req = p.token_to_req[(int64_t)t * p.ttr_stride];
  int64_t lo = 0, hi = 0;
  if (pos >= 0 && req >= 0 && req < p.R) {
    hi = (pos + 1) / p.ratio;
    lo = hi - p.W > 0 ? hi - p.W : 0;
  }
  for (int k = threadIdx.x; k < p.W; k += blockDim.x) {
    const int64_t q = lo + k;
    p.slots[(int64_t)t * p.slots_stride + k] =
        q < hi ? slot_of(p.block_table, p.bt_stride, p.max_pages, req, q, p.block_size) : -1;
  }
  if (threadIdx.x == 0) p.lengths[(int64_t)t * p.len_stride] = (int32_t)(hi - lo);
}

// ------------------------------------------------------------------ kv_cache_store
// Rows are stored in parallel: when two rows of one call name the same slot, which row's bytes
// end up in the slot is unspecified on the GPU (the CPU reference keeps the later row). Callers
// (vLLM-style slot mappings) never repeat a slot within one store.
//
// Shape: a group of G lanes per row (G = 32; INDEXER_FP8: Di/8, so no lane idles); a lane owns
// chunks of 8 consecutive values at 8*lane + 8*G*i (one 16-byte load each, coalesced across the
// group). A tile (V32 128, V4 64, indexer Di) is an aligned run of lanes, its amax a group_max.
// Groups walk rows with a grid stride and issue the next row's loads (and its slot) before
// quantizing the current row, so two rows per group are in flight and the slot lookup is off the
// critical path. Any grid is correct (the HIP launcher's one block per kStoreRowsPerBlock rows too).
// Arithmetic: the power-of-two tile scales quantize as x * 2^-k (the exact quotient, no division)
// and fp8_encode below is a short exact encoder (equal to numerics.h for every fp32 input). On
// CUDA sm_89+ E4M3FN is encoded by the hardware conversion instead (quant8: the software encoder,
// some 15 integer instructions per value, made the store issue-bound on the integer pipe:
// 0.73 ms for 1M V32 rows on the H200, 0.57 ms with the hardware encode).
constexpr int kStoreRowThreads = 32;
constexpr int kStoreRowsPerBlock = 8;
constexpr int kStoreThreads = kStoreRowThreads * kStoreRowsPerBlock;
constexpr int kStoreRowsPerGroup = 4;  // rows per group per launch (the CUDA launcher's grid)
// V32_FP8: 16 (H200, 1M rows: 0.560 ms against 0.571 ms at 4; INDEXER_FP8 lost 7 % at 16).
constexpr int kStoreRowsPerGroupV32 = 16;

// FP8 E4M3 code of q (RNE, saturating to max finite, NaN -> NaN code) with the sign of `sign_of`
// (the unscaled input: x / scale keeps x's sign, and a NaN keeps its sign through the reference's
// host division, while GPU arithmetic would return the canonical NaN). Bit-identical to
// ::spmla::f32_to_fp8_e4m3 for every fp32 q (checked exhaustively over all 2^32 inputs, both
// flavors): the normal range rounds the fp32 pattern to 3 mantissa bits (a carry into the
// exponent is the right answer, beyond the range saturates by the min), the subnormal range is
// rounded by one fp32 add of 2^(21-bias), whose ulp is the FP8 subnormal step.
template <bool kFnuz>
SPMLA_DEVICE uint32_t fp8_encode(float q, float sign_of) {
  constexpr int kBias = kFnuz ? 8 : 7;
  constexpr uint32_t kMaxCode = kFnuz ? 0x7Fu : 0x7Eu;
  constexpr uint32_t kMinNormal = (uint32_t)(127 + 1 - kBias) << 23;  // 2^(1-bias)
  constexpr uint32_t kMagic = (uint32_t)(127 + 21 - kBias) << 23;     // 2^(21-bias)
  const uint32_t a = dev::f32_as_u32(q) & 0x7FFFFFFFu;
  uint32_t cn = ((a + 0x7FFFFu + ((a >> 20) & 1u)) >> 20) - ((uint32_t)(127 - kBias) << 3);
  cn = cn < kMaxCode ? cn : kMaxCode;
  const uint32_t cs = dev::f32_as_u32(__fadd_rn(dev::u32_as_f32(a), dev::u32_as_f32(kMagic))) - kMagic;
  uint32_t code = a < kMinNormal ? cs : cn;
  const bool neg = (dev::f32_as_u32(sign_of) >> 31) != 0;
  if (kFnuz) {
    code = (neg && code != 0u) ? (code | 0x80u) : code;  // no -0 in FNUZ
    return a > 0x7F800000u ? 0x80u : code;
  }
  code = a > 0x7F800000u ? 0x7Fu : code;
  return neg ? (code | 0x80u) : code;
}

SPMLA_DEVICE void unpack_bf16x8(const uint4 v, float *x) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    x[2 * i] = dev::u32_as_f32(w[i] << 16);
    x[2 * i + 1] = dev::u32_as_f32(w[i] & 0xffff0000u);
  }
}

SPMLA_DEVICE float amax8(const float *x) {
  float m = 0.f;
#pragma unroll
  for (int i = 0; i < 8; ++i) m = fmaxf(m, fabsf(x[i]));  // fmaxf ignores NaN, like the reference
  return m;
}
// 1 if any of the 8 values is a NaN or an infinity (V41_FP4: the tile's scale becomes NaN).
SPMLA_DEVICE float nonfinite8(const float *x) {
  bool any = false;
#pragma unroll
  for (int i = 0; i < 8; ++i) any = any || !(fabsf(x[i]) <= 3.402823466e38f);
  return any ? 1.f : 0.f;
}
// 8 values as E2M1 codes of x / scale (IEEE division, as the reference), element i in bits 4i.
SPMLA_DEVICE uint32_t quant_fp4x8(const float *x, float scale) {
  uint32_t w = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) w |= (uint32_t)::spmla::f32_to_fp4_e2m1(x[i] / scale) << (4 * i);
  return w;
}
// Lane l gets the low bytes of v held by lanes (l & ~3) .. (l & ~3) + 3, packed little-endian
// (within groups of 32 lanes; every lane must call it).
SPMLA_DEVICE uint32_t gather4_bytes(uint32_t v, int lane) {
  const int b = lane & ~3;
  const uint32_t v0 = dev::shfl(v, b, 32), v1 = dev::shfl(v, b + 1, 32);
  const uint32_t v2 = dev::shfl(v, b + 2, 32), v3 = dev::shfl(v, b + 3, 32);
  return (v0 & 0xFFu) | ((v1 & 0xFFu) << 8) | ((v2 & 0xFFu) << 16) | ((v3 & 0xFFu) << 24);
}

// 8 values -> 8 FP8 bytes (software encoder). inv: q = x * inv (exact for a power-of-two scale:
// inv = 2^-k, or 0 for the infinite scale 2^128, where x * 0 and x / inf agree); otherwise
// q = x / div (fp32, RNE).
template <bool kFnuz, bool kPow2>
SPMLA_DEVICE uint2 quant8_sw(const float *x, float s) {
  uint32_t w[2] = {0u, 0u};
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float q = kPow2 ? x[i] * s : x[i] / s;
    w[i >> 2] |= fp8_encode<kFnuz>(q, x[i]) << (8 * (i & 3));
  }
  return make_uint2(w[0], w[1]);
}

// Hardware E4M3FN encode (CUDA sm_89+): cvt.rn.satfinite.e4m3x2.f32 rounds to nearest even and
// saturates to +-448, the reference's rule for every non-NaN input. Its NaN codes (0x7F / 0xFF:
// a NaN input, or anything else the hardware might map to NaN) are not trusted: such a chunk is
// re-encoded by the software encoder, which gives the reference's signed NaN. No non-NaN result
// of satfinite is 0x7F/0xFF, so the test is exact. Checked on the H200 against numerics.h over
// all 2^32 fp32 inputs (tools/checks/fp8_encode_exhaustive.cu: 0 mismatches).
#if defined(SPMLA_VENDOR_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
#  define SPMLA_HW_FP8_ENCODE 1
#endif
#if defined(SPMLA_HW_FP8_ENCODE)
// 4 fp32 -> 4 E4M3FN bytes, a in the lowest byte.
SPMLA_DEVICE uint32_t cvt_e4m3fn_x4(float a, float b, float c, float d) {
  uint32_t r;
  asm("{\n .reg .b16 lo, hi;\n cvt.rn.satfinite.e4m3x2.f32 lo, %2, %1;\n"
      " cvt.rn.satfinite.e4m3x2.f32 hi, %4, %3;\n mov.b32 %0, {lo, hi};\n}\n"
      : "=r"(r)
      : "f"(a), "f"(b), "f"(c), "f"(d));
  return r;
}
// Nonzero iff some byte of w or v is a NaN code of E4M3FN (low 7 bits all ones).
SPMLA_DEVICE uint32_t has_fn_nan_code(uint32_t w, uint32_t v) {
  return (((w & 0x7F7F7F7Fu) + 0x01010101u) | ((v & 0x7F7F7F7Fu) + 0x01010101u)) & 0x80808080u;
}
#endif

// How quant8 forms q: kQMul q = x * s (s = 2^-k, exact); kQDiv q = x / s; kQRcp q = x / s through
// r = 1 / s (hardware path below; the software path divides).
constexpr int kQMul = 0, kQDiv = 1, kQRcp = 2;

// 8 values -> 8 FP8 bytes, equal to quant8_sw. `r` (kQRcp only): the correctly rounded 1 / s
// (__frcp_rn). On the hardware path kQRcp forms the quotient as q0 = x * r, then
// q = q0 + (x - q0 * s) * r (two FMAs) with x's sign: with r correctly rounded and q0 within an
// ulp of x / s this is the correctly rounded x / s wherever nothing overflows or underflows
// (Markstein); an overflow ends in a NaN (inf - inf), which the NaN-code test sends to the
// software path, and an underflow is far below the smallest FP8 subnormal, where only the sign
// matters (x's, also for a zero quotient). Checked on the H200 against x / s for every bf16 x and
// every indexer scale max(amax, 1e-4) / 448 with amax a bf16 value or inf (the only scales the
// INDEXER_FP8 store forms; tools/checks/fp8_encode_exhaustive.cu): equal wherever the quotient is
// not NaN; NaN quotients go to the software path (x's sign, as before).
template <bool kFnuz, int kQ>
SPMLA_DEVICE uint2 quant8(const float *x, float s, float r = 0.f) {
  constexpr bool kPow2 = kQ == kQMul;
#if defined(SPMLA_HW_FP8_ENCODE)
  if constexpr (!kFnuz) {
    float q[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if constexpr (kQ == kQMul) {
        q[i] = __fmul_rn(x[i], s);
      } else if constexpr (kQ == kQDiv) {
        q[i] = __fdiv_rn(x[i], s);
      } else {
        // copysign: x / s has x's sign, also where it is zero (x = -0: the FMAs give +0)
        const float q0 = __fmul_rn(x[i], r);
        q[i] = copysignf(__fmaf_rn(__fmaf_rn(-q0, s, x[i]), r, q0), x[i]);
      }
    }
    const uint32_t w0 = cvt_e4m3fn_x4(q[0], q[1], q[2], q[3]), w1 = cvt_e4m3fn_x4(q[4], q[5], q[6], q[7]);
    if (has_fn_nan_code(w0, w1)) return quant8_sw<kFnuz, kPow2>(x, s);
    return make_uint2(w0, w1);
  }
#endif
  (void)r;
  return quant8_sw<kFnuz, kPow2>(x, s);
}
// quant8's r for kQRcp (only the hardware path reads it).
SPMLA_DEVICE float quant8_rcp(float s) {
#if defined(SPMLA_HW_FP8_ENCODE)
  return __frcp_rn(s);
#else
  (void)s;
  return 0.f;
#endif
}

// 1 / 2^k for the reference's scale exponents (k >= -13 here; 2^-k exact, subnormal included;
// k = 128 is the infinite scale of an infinite amax).
SPMLA_DEVICE float inv_pow2(int k) { return k >= 128 ? 0.f : ::spmla::exp2_int(-k); }


template <int kChunks>
struct StoreRow {
  uint4 v[kChunks];
  int64_t slot;  // -1: nothing to store (no row, negative or out-of-range slot)
};

// A T-sized store into the cache bytes.
template <typename T>
SPMLA_DEVICE void st_cache(void *p, const T &v) {
  *reinterpret_cast<T *>(p) = v;
}
// 8 FP8 bytes to a row that may be only 4-byte aligned (INDEXER_FP8 pages of (Di + 4) * bs bytes).
SPMLA_DEVICE void st_cache8(uint8_t *p, uint2 v, bool a8) {
  if (a8) {
    st_cache(p, v);
  } else {
    st_cache(p, v.x);
    st_cache(p + 4, v.y);
  }
}

template <int G, int kChunks>
SPMLA_DEVICE StoreRow<kChunks> store_load(const StoreParams &p, int64_t n, int lane, int vec) {
  StoreRow<kChunks> r;
  r.slot = -1;
  const bool act = n < p.N;
  if (act) {
    r.slot = p.slots_is64 ? reinterpret_cast<const int64_t *>(p.slots)[n * p.slots_stride]
                          : (int64_t) reinterpret_cast<const int32_t *>(p.slots)[n * p.slots_stride];
  }
  const uint16_t *src = p.kv + (act ? n : 0) * p.kv_stride;
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const int e = 8 * lane + 8 * G * i;
    r.v[i] = make_uint4(0u, 0u, 0u, 0u);
    if (act && e < p.cache.dim) {
      if (vec) {
        r.v[i] = dev::ld16(src + e);
      } else {
        uint32_t w[4];
        for (int j = 0; j < 4; ++j) w[j] = (uint32_t)src[e + 2 * j] | ((uint32_t)src[e + 2 * j + 1] << 16);
        r.v[i] = make_uint4(w[0], w[1], w[2], w[3]);
      }
    }
  }
  return r;
}

// Quantizes and writes one row. Every lane of the group runs the shuffles (also for a row that is
// not stored); only the stores are predicated.
template <int L, int G, bool kFnuz, int kChunks>
SPMLA_DEVICE void store_one(const StoreParams &p, const StoreRow<kChunks> &r, int lane) {
  const CacheDesc &c = p.cache;
  const bool ok = r.slot >= 0 && r.slot < c.num_slots();
  uint8_t *base = const_cast<uint8_t *>(c.base);
  SlotOffsets o = {0, 0};
  if (ok) o = slot_offsets<L == kV41FP8 || L == kV41FP4>(c, r.slot);  // L is the cache's layout
  uint8_t *row = base + o.data;
  constexpr Fp8Kind kKind = kFnuz ? Fp8Kind::E4M3FNUZ : Fp8Kind::E4M3FN;
  float x[8];
  if constexpr (L == kBF16) {
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const int e = 8 * lane + 8 * G * i;
      if (ok && e < c.dim) st_cache(row + 2 * e, r.v[i]);
    }
  } else if constexpr (L == kFP8PerTensor) {
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const int e = 8 * lane + 8 * G * i;
      if (ok && e < c.dim) {
        unpack_bf16x8(r.v[i], x);
        st_cache(row + e, quant8<kFnuz, kQDiv>(x, c.scale));
      }
    }
  } else if constexpr (L == kV32) {
    // chunk 0: NoPE [8 lane, +8) (tiles 0, 1), chunk 1: NoPE 256 + 8 lane (tiles 2, 3),
    // chunk 2 (lanes < 8): RoPE 512 + 8 lane
    using T = KvV32;
    static_assert(T::kNope == 2 * 256 && T::kTile == 16 * 8 && T::kRope == 8 * 8, "the lane mapping above");
    float y[8];
    unpack_bf16x8(r.v[0], x);
    unpack_bf16x8(r.v[1], y);
    const float m0 = dev::group_max<16>(amax8(x)), m1 = dev::group_max<16>(amax8(y));
    const int k0 = ::spmla::tile_scale_exponent(m0, kKind), k1 = ::spmla::tile_scale_exponent(m1, kKind);
    const uint2 b0 = quant8<kFnuz, kQMul>(x, inv_pow2(k0)), b1 = quant8<kFnuz, kQMul>(y, inv_pow2(k1));
    const float s0 = ::spmla::exp2_int(k0), s1 = ::spmla::exp2_int(k1);
    const float s0b = dev::shfl(s0, 16, 32), s1b = dev::shfl(s1, 16, 32);  // tiles 1 and 3
    if (ok) {
      st_cache(row + 8 * lane, b0);
      st_cache(row + 256 + 8 * lane, b1);
      if (lane == 0)
        st_cache(row + T::kScaleOffset, make_uint4(dev::f32_as_u32(s0), dev::f32_as_u32(s0b), dev::f32_as_u32(s1),
                                               dev::f32_as_u32(s1b)));
      if (lane < 8) st_cache(row + T::kRopeOffset + 16 * lane, r.v[2]);
    }
  } else if constexpr (L == kV4) {
    // chunk 0: NoPE 8 lane (tiles 0..3); chunk 1: lanes < 24 NoPE 256 + 8 lane (tiles 4..6),
    // lanes >= 24 RoPE (values 448 + 8 (lane - 24), bytes 448 + 16 (lane - 24))
    using T = KvV4;
    static_assert(T::kNope == 256 + 24 * 8 && T::kTile == 8 * 8 && T::kRope == 8 * 8 && T::kScaleRowBytes == 8,
                  "the lane mapping above");
    float y[8];
    unpack_bf16x8(r.v[0], x);
    unpack_bf16x8(r.v[1], y);
    const float m0 = dev::group_max<8>(amax8(x)), m1 = dev::group_max<8>(amax8(y));
    const int k0 = ::spmla::tile_scale_exponent(m0, kKind), k1 = ::spmla::tile_scale_exponent(m1, kKind);
    const uint2 b0 = quant8<kFnuz, kQMul>(x, inv_pow2(k0));
    const uint32_t e0 = ::spmla::ue8m0_from_exponent(k0), e1 = ::spmla::ue8m0_from_exponent(k1);
    const uint32_t t1 = dev::shfl(e0, 8, 32), t2 = dev::shfl(e0, 16, 32), t3 = dev::shfl(e0, 24, 32);
    const uint32_t t5 = dev::shfl(e1, 8, 32), t6 = dev::shfl(e1, 16, 32);
    if (lane < 24) {
      const uint2 b1 = quant8<kFnuz, kQMul>(y, inv_pow2(k1));
      if (ok) st_cache(row + 256 + 8 * lane, b1);
    } else if (ok) {
      st_cache(row + T::kRopeOffset + 16 * (lane - 24), r.v[1]);
    }
    if (ok) {
      st_cache(row + 8 * lane, b0);
      if (lane == 0)
        st_cache(base + o.aux, make_uint2(e0 | (t1 << 8) | (t2 << 16) | (t3 << 24), e1 | (t5 << 8) | (t6 << 16)));
      // The page's tail padding beyond block_size * 584 is zeroed (as the reference does);
      // both ends are multiples of 8 bytes.
      const int64_t used = (int64_t)c.block_size * T::kTokenBytes;
      const int64_t packed = (used + T::kPageAlign - 1) / T::kPageAlign * T::kPageAlign;
      int64_t page, off;
      split_slot(r.slot, c.block_size, page, off);
      uint8_t *pg = base + page * c.page_stride;
      for (int64_t b = used + 8 * lane; b < packed; b += 8 * G) st_cache(pg + b, make_uint2(0u, 0u));
    }
  } else if constexpr (L == kV41FP8 || L == kV41FP4) {
    // chunk 0: values [8 lane, +8), chunk 1: values 256 + 8 lane. V41_FP8: tiles of 32 (4 lanes),
    // UE8M0 scales as for V4; V41_FP4: tiles of 16 (2 lanes), E4M3FN scale
    // e4m3(clamp(amax / 6, 2^-9, 448)) (NaN for a tile holding a NaN or inf), codes
    // e2m1(x / scale) two per byte, even element low. The scales go to o.aux (after the data in
    // a per-token row, or the page's scale row).
    constexpr bool kFp4 = L == kV41FP4;
    constexpr int kLanesPerTile = kFp4 ? 2 : 4;
    static_assert(KvV41F8T::kTile == 4 * 8 && KvV41F4T::kTile == 2 * 8 && 512 == 2 * 32 * 8, "the lane mapping above");
    float y[8];
    unpack_bf16x8(r.v[0], x);
    unpack_bf16x8(r.v[1], y);
    const float m0 = dev::group_max<kLanesPerTile>(amax8(x)), m1 = dev::group_max<kLanesPerTile>(amax8(y));
    uint32_t sc0, sc1;  // this lane's tile scale bytes (chunks 0 and 1)
    if constexpr (kFp4) {
      const float n0 = dev::group_max<kLanesPerTile>(nonfinite8(x)), n1 = dev::group_max<kLanesPerTile>(nonfinite8(y));
      sc0 = ::spmla::fp4_tile_scale_e4m3(m0, n0 > 0.f);
      sc1 = ::spmla::fp4_tile_scale_e4m3(m1, n1 > 0.f);
      const uint32_t w0 = quant_fp4x8(x, ::spmla::fp8_e4m3_to_f32((uint8_t)sc0, Fp8Kind::E4M3FN));
      const uint32_t w1 = quant_fp4x8(y, ::spmla::fp8_e4m3_to_f32((uint8_t)sc1, Fp8Kind::E4M3FN));
      if (ok) {
        st_cache(row + 4 * lane, w0);
        st_cache(row + 128 + 4 * lane, w1);
      }
    } else {
      const int k0 = ::spmla::tile_scale_exponent(m0, kKind), k1 = ::spmla::tile_scale_exponent(m1, kKind);
      const uint2 b0 = quant8<kFnuz, kQMul>(x, inv_pow2(k0)), b1 = quant8<kFnuz, kQMul>(y, inv_pow2(k1));
      sc0 = ::spmla::ue8m0_from_exponent(k0);
      sc1 = ::spmla::ue8m0_from_exponent(k1);
      if (ok) {
        st_cache(row + 8 * lane, b0);
        st_cache(row + 256 + 8 * lane, b1);
      }
    }
    // Tile t's scale is lane t * kLanesPerTile's: lanes 0 .. kTiles-1 take one each, then lanes
    // 4q gather four of them into a word (every lane runs the shuffles).
    constexpr int kTiles = 32 / kLanesPerTile;  // per chunk: 8 (FP8) or 16 (FP4)
    const uint32_t a0 = dev::shfl(sc0, kLanesPerTile * (lane % kTiles), 32);
    const uint32_t a1 = dev::shfl(sc1, kLanesPerTile * (lane % kTiles), 32);
    const uint32_t word0 = gather4_bytes(a0, lane), word1 = gather4_bytes(a1, lane);
    if (ok && lane % 4 == 0 && lane < kTiles) {
      st_cache(base + o.aux + lane, word0);
      st_cache(base + o.aux + kTiles + lane, word1);
    }
    if (c.blocked && ok) {
      // The page's tail padding beyond block_size tokens up to the multiple of 512 is zeroed (as
      // the reference does); both ends are multiples of 16 bytes.
      const int64_t used = (int64_t)c.block_size * (kFp4 ? KvV41F4T::kTokenBytes : KvV41F8T::kTokenBytes);
      const int64_t packed = (used + 511) / 512 * 512;
      int64_t page, off;
      split_slot(r.slot, c.block_size, page, off);
      uint8_t *pg = base + page * c.page_stride;
      for (int64_t b = used + 16 * lane; b < packed; b += 16 * G) st_cache(pg + b, make_uint4(0u, 0u, 0u, 0u));
    }
  } else {  // INDEXER_FP8: G = Di / 8 lanes, one chunk each; scale = max(amax, 1e-4) / fp8_max
    unpack_bf16x8(r.v[0], x);
    float amax = dev::group_max<G>(amax8(x));
    if (!(amax > 1e-4f)) amax = 1e-4f;
    const float scale = amax / ::spmla::fp8_max_finite(kKind);
    const uint2 b = quant8<kFnuz, kQRcp>(x, scale, quant8_rcp(scale));
    if (ok) {
      // rows are 8-byte aligned iff the page stride is ((Di + 4) * bs packed: bs % 2 == 0)
      st_cache8(row + 8 * lane, b, (c.page_stride & 7) == 0);
      if (lane == 0) st_cache(base + o.aux, scale);
    }
  }
}

template <int L, int G, bool kFnuz>
SPMLA_DEVICE void store_rows(const StoreParams &p, int vec) {
  constexpr int kChunks = (L == kV4 || L == kV41FP8 || L == kV41FP4) ? 2 : L == kIndexer ? 1 : 3;
  constexpr int kRowsPerWarp = SPMLA_WARP_SIZE / G;
  const int warps_per_block = (int)blockDim.x / SPMLA_WARP_SIZE;
  const int lane = dev::lane_id() % G, sub = dev::lane_id() / G;
  const int64_t stride = (int64_t)gridDim.x * warps_per_block * kRowsPerWarp;
  int64_t base = ((int64_t)blockIdx.x * warps_per_block + dev::warp_id()) * kRowsPerWarp;
  if (base >= p.N) return;  // whole warps leave together (the shuffles need every lane)
  StoreRow<kChunks> cur = store_load<G, kChunks>(p, base + sub, lane, vec);
  for (; base < p.N; base += stride) {
    const StoreRow<kChunks> nxt = store_load<G, kChunks>(p, base + stride + sub, lane, vec);
    store_one<L, G, kFnuz, kChunks>(p, cur, lane);
    cur = nxt;
  }
}

// One layout / flavor per kernel (the CUDA launcher's choice: each gets its own register count).
// (Timed on the H200 and not kept: deeper row prefetch, streaming loads or stores, and other
// rows-per-group counts; docs/benchmarks-history.md lists the times.)
template <int L, int G, bool kFnuz>
__global__ void __launch_bounds__(kStoreThreads, 1) kv_store_layout_kernel(const StoreParams p, int vec) {
  store_rows<L, G, kFnuz>(p, vec);
}

// All layouts in one kernel (the HIP launcher's).
__global__ void __launch_bounds__(kStoreThreads) kv_store_kernel(const StoreParams p, int vec) {
  const bool fnuz = p.cache.flavor == 2;
  switch (p.cache.layout) {
    case kBF16: store_rows<kBF16, 32, false>(p, vec); break;
    case kFP8PerTensor:
      if (fnuz) store_rows<kFP8PerTensor, 32, true>(p, vec);
      else store_rows<kFP8PerTensor, 32, false>(p, vec);
      break;
    case kV32:
      if (fnuz) store_rows<kV32, 32, true>(p, vec);
      else store_rows<kV32, 32, false>(p, vec);
      break;
    case kV4:
      if (fnuz) store_rows<kV4, 32, true>(p, vec);
      else store_rows<kV4, 32, false>(p, vec);
      break;
    case kV41FP8:
      if (fnuz) store_rows<kV41FP8, 32, true>(p, vec);
      else store_rows<kV41FP8, 32, false>(p, vec);
      break;
    case kV41FP4: store_rows<kV41FP4, 32, false>(p, vec); break;  // scales are E4M3FN
    default:  // INDEXER_FP8, Di 64 or 128
      if (p.cache.dim == 64) {
        if (fnuz) store_rows<kIndexer, 8, true>(p, vec);
        else store_rows<kIndexer, 8, false>(p, vec);
      } else {
        if (fnuz) store_rows<kIndexer, 16, true>(p, vec);
        else store_rows<kIndexer, 16, false>(p, vec);
      }
      break;
  }
}

// Lanes per stored / gathered row (the launchers size their grids with it).
SPMLA_HOST_DEVICE int kv_row_lanes(const CacheDesc &c) { return c.layout == kIndexer ? c.dim / 8 : 32; }

// ------------------------------------------------------------------ kv_cache_gather
// kv_row_lanes(c) lanes per row (INDEXER_FP8: Di/8, so no lane idles), 8 values per lane step.
__global__ void __launch_bounds__(256) kv_gather_kernel(const GatherParams p, int vec) {
  const CacheDesc &c = p.cache;
  const int G = kv_row_lanes(c);
  const int lane = (int)threadIdx.x % G;
  const int64_t n = (int64_t)blockIdx.x * ((int)blockDim.x / G) + (int)threadIdx.x / G;
  if (n >= p.N) return;
  const int64_t slot = p.slots[n * p.slots_stride];
  const bool valid = slot >= 0 && slot < c.num_slots();
  const int D = c.dim;
  uint16_t *dst = p.out + n * p.out_stride;
  SlotOffsets o = {0, 0};
  if (valid) o = slot_offsets(c, slot);
  for (int e = lane * 8; e < D; e += G * 8) {
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (valid && c.layout == kIndexer) {
      // INDEXER_FP8 rows are 4-byte aligned only ((Di + 4) * bs bytes per packed page)
      const uint32_t *w = reinterpret_cast<const uint32_t *>(c.base + o.data + e);
      const float scale = *reinterpret_cast<const float *>(c.base + o.aux);
      float f[8];
      dev::fp8x4_to_f32(w[0], c.flavor, f);
      dev::fp8x4_to_f32(w[1], c.flavor, f + 4);
      v = make_uint4(dev::pack_bf16x2(f[0] * scale, f[1] * scale), dev::pack_bf16x2(f[2] * scale, f[3] * scale),
                     dev::pack_bf16x2(f[4] * scale, f[5] * scale), dev::pack_bf16x2(f[6] * scale, f[7] * scale));
    } else if (valid) {
      v = dequant8(c, c.base + o.data, c.base + o.aux, e);
    }
    if (vec) dev::st16(dst + e, v);
    else {
      const uint32_t w[4] = {v.x, v.y, v.z, v.w};
      for (int i = 0; i < 4; ++i) {
        dst[e + 2 * i] = (uint16_t)(w[i] & 0xffffu);
        dst[e + 2 * i + 1] = (uint16_t)(w[i] >> 16);
      }
    }
  }
}

}  // namespace kern
}  // namespace spmla
