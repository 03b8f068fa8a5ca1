// attention_portable.cuh — sparse MLA attention that runs on any GPU: any warp size (32 or 64), no
// shuffles, no matrix instructions, within 64 KiB of shared memory (LDS). The fallback variant of
// every plugin (CUDA and HIP), and the tile helpers the vendor fast paths beside it share.
//
// CTA = 256 threads = 16 heads x one split; Q and the dequantized key tile (32 keys x D bf16) in
// shared memory, scores one dot product per thread, softmax one thread per head, P V with two
// value dims x 16 heads of accumulators per thread. LDS ~58 KiB for D = 576.
// Cache bytes are read straight from global memory and FP8 is converted with the device's
// hardware instruction where the cache's flavor is the one the device converts natively (gfx942:
// E4M3FNUZ, gfx950: E4M3FN), in exact software otherwise: same numbers either way.
#pragma once
#include "attention.cuh"
#include "cache_access.cuh"
#include "compat.h"
#include "params.h"

namespace spmla {
namespace kern {

// ------------------------------------------------------------------ dequantization
// Elements [e0, e0 + 8) of a row as 8 bf16. Hardware FP8 decode where the flavor matches the
// device's native one (FP8_PER_TENSOR, the NoPE parts of V32_FP8 and V4_FP8, V41_FP8); everything
// else is the shared (exact, software) dequant8.
SPMLA_DEVICE uint4 dequant8_native(const CacheDesc &c, const uint8_t *row, const uint8_t *aux, int e0) {
#if defined(SPMLA_AMD_HW_FP8_FLAVOR)
  // V41_FP8: all 512 values E4M3, one UE8M0 scale per 32 at aux (dequant8's decode, in hardware).
  const bool fp8 = c.layout == kFP8PerTensor || (c.layout == kV32 && e0 < KvV32::kNope) ||
                   (c.layout == kV4 && e0 < KvV4::kNope) || c.layout == kV41FP8;
  if (fp8 && c.flavor == SPMLA_AMD_HW_FP8_FLAVOR) {
    float scale;
    if (c.layout == kFP8PerTensor)
      scale = 1.f;  // applied per key column by the caller
    else if (c.layout == kV32)
      scale = *reinterpret_cast<const float *>(row + KvV32::kScaleOffset + 4 * (e0 >> KvV32::kTileLog2));
    else if (c.layout == kV41FP8)
      scale = dev::ue8m0_to_f32(aux[e0 >> KvV41F8T::kTileLog2]);
    else
      scale = dev::ue8m0_to_f32(aux[e0 >> KvV4::kTileLog2]);
    const uint2 w = *reinterpret_cast<const uint2 *>(row + e0);
    SPMLA_EXT_VECTOR_TYPEDEF(float, 2, f2);
    const f2 a = __builtin_amdgcn_cvt_pk_f32_fp8((int)w.x, false);
    const f2 b = __builtin_amdgcn_cvt_pk_f32_fp8((int)w.x, true);
    const f2 cc = __builtin_amdgcn_cvt_pk_f32_fp8((int)w.y, false);
    const f2 d = __builtin_amdgcn_cvt_pk_f32_fp8((int)w.y, true);
    uint4 r;
    r.x = dev::pack_bf16x2(a[0] * scale, a[1] * scale);
    r.y = dev::pack_bf16x2(b[0] * scale, b[1] * scale);
    r.z = dev::pack_bf16x2(cc[0] * scale, cc[1] * scale);
    r.w = dev::pack_bf16x2(d[0] * scale, d[1] * scale);
    return r;
  }
#endif
  if (c.layout == kFP8PerTensor) {  // unscaled: the caller applies the tensor scale
    const uint2 w = *reinterpret_cast<const uint2 *>(row + e0);
    float f[8];
    dev::fp8x4_to_f32(w.x, c.flavor, f);
    dev::fp8x4_to_f32(w.y, c.flavor, f + 4);
    return make_uint4(dev::pack_bf16x2(f[0], f[1]), dev::pack_bf16x2(f[2], f[3]), dev::pack_bf16x2(f[4], f[5]),
                      dev::pack_bf16x2(f[6], f[7]));
  }
  return dequant8(c, row, aux, e0);
}

// Dequantizes the tile's rows (slot info from attn_tile_info) from global memory into ks, whose
// rows are kLd bf16 apart. A pitch that keeps rows 16-byte aligned gets 16-byte stores; an 8-byte
// aligned one (the MFMA kernel's D + 4, chosen for conflict-free 8-byte reads) gets two 8-byte
// stores: a 16-byte access to an address that is only 8-byte aligned is undefined (NVIDIA traps
// on it, AMD LDS only tolerates it in its unaligned mode).
template <int D, int kThreads, int kLd>
SPMLA_DEVICE void dequant_tile_global(const AttnParams &p, const int64_t *info, const int32_t *src, uint16_t *ks) {
  static_assert(kLd % 4 == 0, "tile rows must be at least 8-byte aligned");
  constexpr int kGroups = D / 8;
  for (int i = threadIdx.x; i < kAttnBN * kGroups; i += kThreads) {
    const int r = i / kGroups, g = i - r * kGroups;
    const int s = src[r];
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (s >= 0) {
      const CacheDesc &c = p.src[s];
      v = dequant8_native(c, c.base + info[2 * r], c.base + info[2 * r + 1], g * 8);
    }
    uint16_t *dst = ks + r * kLd + g * 8;
    if constexpr (kLd % 8 == 0) {
      dev::st16(dst, v);
    } else {
      reinterpret_cast<uint2 *>(dst)[0] = make_uint2(v.x, v.y);
      reinterpret_cast<uint2 *>(dst)[1] = make_uint2(v.z, v.w);
    }
  }
}

// Final per-row results: writes lse / max_logits (or the split's partials) and returns the factor
// that scales the row's accumulators.
SPMLA_DEVICE float attn_row_finish(const AttnParams &p, int t, int h, int split, float m, float l) {
  const AttnRowStats rs = attn_row_stats(p, h, m, l);
  attn_row_write_stats(p, t, h, split, rs);
  return rs.f;
}

SPMLA_DEVICE void attn_store_out(const AttnParams &p, int t, int h, int split, int dim, float v) {
  if (p.num_splits > 1)
    p.part_o[(((int64_t)split * p.T + t) * p.H + h) * kDV + dim] = v;
  else
    p.out[(int64_t)t * p.out_stride_t + (int64_t)h * p.out_stride_h + dim] = dev::f32_to_bf16(v);
}

// ================================================================== portable: any warp size
constexpr int kPortThreads = 256;
constexpr int kPortBM = 16;  // heads per CTA

template <int D>
struct PortSmem {
  static constexpr int kLdQ = D + 8;
  static constexpr int kLdK = D + 8;
  static constexpr int kOffQ = 0;
  static constexpr int kOffK = kOffQ + kPortBM * kLdQ * 2;
  static constexpr int kOffS = kOffK + kAttnBN * kLdK * 2;       // [16][32] f32 scores / probabilities
  static constexpr int kOffStats = kOffS + kPortBM * kAttnBN * 4;  // m, l, alpha
  static constexpr int kOffInfo = kOffStats + 3 * kPortBM * 4;
  static constexpr int kOffSrc = kOffInfo + kAttnBN * 16;
  static constexpr int kOffCs = kOffSrc + kAttnBN * 4;
  static constexpr int kBytes = kOffCs + kAttnBN * 4;
  static_assert(kBytes <= 65536, "LDS budget (64 KiB)");
};

template <int D>
__global__ void __launch_bounds__(kPortThreads) sparse_attention_portable_kernel(const AttnParams p) {
  using S = PortSmem<D>;
  extern __shared__ __align__(16) uint8_t smem[];
  uint16_t *qs = reinterpret_cast<uint16_t *>(smem + S::kOffQ);
  uint16_t *ks = reinterpret_cast<uint16_t *>(smem + S::kOffK);
  float *ss = reinterpret_cast<float *>(smem + S::kOffS);
  float *row_m = reinterpret_cast<float *>(smem + S::kOffStats);
  float *row_l = row_m + kPortBM;
  float *row_a = row_l + kPortBM;
  int64_t *info = reinterpret_cast<int64_t *>(smem + S::kOffInfo);
  int32_t *srcs = reinterpret_cast<int32_t *>(smem + S::kOffSrc);
  float *colsc = reinterpret_cast<float *>(smem + S::kOffCs);

  const int tid = threadIdx.x;
  const int t = blockIdx.x, h0 = blockIdx.y * kPortBM, split = blockIdx.z;
  const uint16_t *qt = p.q + (int64_t)t * p.q_stride_t;
  for (int i = tid; i < kPortBM * D; i += kPortThreads) {
    const int r = i / D, e = i - r * D;
    qs[r * S::kLdQ + e] = (h0 + r < p.H) ? qt[(int64_t)(h0 + r) * p.q_stride_h + e] : (uint16_t)0;
  }
  if (tid < kPortBM) {
    row_m[tid] = dev::neg_inf();
    row_l[tid] = 0.f;
  }
  const int d0 = 2 * tid;  // this thread's two value dims
  float acc[kPortBM][2];
#pragma unroll
  for (int r = 0; r < kPortBM; ++r) acc[r][0] = acc[r][1] = 0.f;

  const TokenRange range = token_range(p, t, split);
  const int ntiles = (range.stop - range.begin + kAttnBN - 1) / kAttnBN;
  const float sl2 = p.scale * kLog2e;
  for (int it = 0; it < ntiles; ++it) {
    attn_tile_info(p, t, range, range.begin + it * kAttnBN, info, srcs, colsc);
    __syncthreads();
    dequant_tile_global<D, kPortThreads, S::kLdK>(p, info, srcs, ks);
    __syncthreads();
    // scores: 16 x 32 dot products, two per thread
    for (int i = tid; i < kPortBM * kAttnBN; i += kPortThreads) {
      const int r = i / kAttnBN, j = i - r * kAttnBN;
      float s = dev::neg_inf();
      if (srcs[j] >= 0) {
        const uint32_t *qa = reinterpret_cast<const uint32_t *>(qs + r * S::kLdQ);
        const uint32_t *kb = reinterpret_cast<const uint32_t *>(ks + j * S::kLdK);
        float a0 = 0.f, a1 = 0.f;
        for (int e = 0; e < D / 2; ++e) {
          const uint32_t x = qa[e], y = kb[e];
          a0 = fmaf(dev::bf16_to_f32((uint16_t)(x & 0xffffu)), dev::bf16_to_f32((uint16_t)(y & 0xffffu)), a0);
          a1 = fmaf(dev::bf16_to_f32((uint16_t)(x >> 16)), dev::bf16_to_f32((uint16_t)(y >> 16)), a1);
        }
        s = (a0 + a1) * colsc[j] * sl2;
      }
      ss[r * kAttnBN + j] = s;
    }
    __syncthreads();
    // softmax: one thread per head row
    if (tid < kPortBM) {
      float *sr = ss + tid * kAttnBN;
      float mx = dev::neg_inf();
      for (int j = 0; j < kAttnBN; ++j) mx = fmaxf(mx, sr[j]);
      const float m_old = row_m[tid], m_new = fmaxf(m_old, mx);
      const float alpha = m_new == dev::neg_inf() ? 1.f : exp2f(m_old - m_new);
      float sum = 0.f;
      for (int j = 0; j < kAttnBN; ++j) {
        // P is rounded to bf16 like the MMA paths' P operand
        const float e = sr[j] == dev::neg_inf() ? 0.f : exp2f(sr[j] - m_new);
        sum += e;
        sr[j] = dev::bf16_to_f32(dev::f32_to_bf16(e * colsc[j]));  // P (times the column scale) as bf16
      }
      row_m[tid] = m_new;
      row_l[tid] = row_l[tid] * alpha + sum;
      row_a[tid] = alpha;
    }
    __syncthreads();
    // O = alpha * O + P V
#pragma unroll
    for (int r = 0; r < kPortBM; ++r) {
      const float a = row_a[r];
      acc[r][0] *= a;
      acc[r][1] *= a;
    }
    for (int j = 0; j < kAttnBN; ++j) {
      if (srcs[j] < 0) continue;
      const uint32_t v = *reinterpret_cast<const uint32_t *>(ks + j * S::kLdK + d0);
      const float v0 = dev::bf16_to_f32((uint16_t)(v & 0xffffu)), v1 = dev::bf16_to_f32((uint16_t)(v >> 16));
#pragma unroll
      for (int r = 0; r < kPortBM; ++r) {
        const float pr = ss[r * kAttnBN + j];
        acc[r][0] = fmaf(pr, v0, acc[r][0]);
        acc[r][1] = fmaf(pr, v1, acc[r][1]);
      }
    }
    __syncthreads();
  }
  // epilogue: factors per row (thread r writes the row's lse), then every thread its two dims
  float *row_f = row_a;
  if (tid < kPortBM) {
    const int h = h0 + tid;
    row_f[tid] = h < p.H ? attn_row_finish(p, t, h, split, row_m[tid], row_l[tid]) : 0.f;
  }
  __syncthreads();
#pragma unroll
  for (int r = 0; r < kPortBM; ++r) {
    const int h = h0 + r;
    if (h >= p.H) break;
    attn_store_out(p, t, h, split, d0, acc[r][0] * row_f[r]);
    attn_store_out(p, t, h, split, d0 + 1, acc[r][1] * row_f[r]);
  }
}

}  // namespace kern
}  // namespace spmla
