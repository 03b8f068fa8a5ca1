// attention_hip.cuh — sparse MLA attention for the HIP plugin, within 64 KiB of LDS.
//
// The shared kernel (backends/common/attention.cuh) stages Q, the raw cache bytes and the bf16
// tile in shared memory (~157 KiB for D = 576): fine for Hopper, above gfx942's and RDNA's 64 KiB
// of LDS per workgroup. This file keeps the shared pieces (AttnParams, token_range, attn_tile_info,
// dequant8, the split-K combine and the plan kernel) and reorganises the tile loop for AMD:
//
//  cdna/MFMA (gfx90a, gfx942, gfx950; wave64): CTA = 4 waves = 64 heads x one split. Each wave owns
//    16 heads: its Q rows live in registers as MFMA A fragments (D/16 of them), the dequantized key
//    tile (32 keys x D bf16) is the only large LDS buffer (~37 KiB). S = Q K^T and O += P V are
//    v_mfma_f32_16x16x16_bf16; the online softmax runs in registers (the C layout gives each lane
//    4 rows, reduced across 16 lanes); P goes through a small per-wave LDS tile to become an A
//    operand. O (16 heads x 512) is 32 C tiles = 128 accumulators per lane. LDS ~43 KiB.
//  portable (RDNA wave32, HIP-on-NVIDIA, any warp size): CTA = 256 threads = 16 heads; Q and the key
//    tile in LDS, scores one dot product per thread, softmax one thread per head, P V with two value
//    dims x 16 heads of accumulators per thread. No shuffles, no MMA. LDS ~58 KiB for D = 576.
//
// Both read the cache bytes straight from global memory (no async copies on AMD) and convert FP8
// with the device's hardware instruction when the cache's flavor is the one the device converts
// natively (gfx942: E4M3FNUZ, gfx950: E4M3FN), in software otherwise: same numbers either way.
#pragma once
#include "../common/attention.cuh"
#include "../common/cache_access.cuh"
#include "../common/compat.h"
#include "../common/params.h"
#include "mma_policy_amd.h"

namespace spmla {
namespace hip {

using kern::AttnParams;
using kern::CacheDesc;
using kern::kAttnBM;
using kern::kAttnBN;
using kern::kDV;

// ------------------------------------------------------------------ dequantization
// Elements [e0, e0 + 8) of a row as 8 bf16. Hardware FP8 decode where the flavor matches the
// device's native one; everything else is the shared (exact, software) dequant8.
SPMLA_DEVICE uint4 dequant8_amd(const CacheDesc &c, const uint8_t *row, const uint8_t *aux, int e0) {
#if defined(SPMLA_AMD_HW_FP8_FLAVOR)
  const bool fp8 = c.layout == kern::kFP8PerTensor || (c.layout == kern::kV32 && e0 < KvV32::kNope) ||
                   (c.layout == kern::kV4 && e0 < KvV4::kNope);
  if (fp8 && c.flavor == SPMLA_AMD_HW_FP8_FLAVOR) {
    float scale;
    if (c.layout == kern::kFP8PerTensor)
      scale = 1.f;  // applied per key column by the caller
    else if (c.layout == kern::kV32)
      scale = *reinterpret_cast<const float *>(row + KvV32::kScaleOffset + 4 * (e0 >> KvV32::kTileLog2));
    else
      scale = dev::ue8m0_to_f32(aux[e0 >> KvV4::kTileLog2]);
    const uint2 w = *reinterpret_cast<const uint2 *>(row + e0);
    typedef float f2 __attribute__((ext_vector_type(2)));
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
  if (c.layout == kern::kFP8PerTensor) {  // unscaled: the caller applies the tensor scale
    const uint2 w = *reinterpret_cast<const uint2 *>(row + e0);
    float f[8];
    dev::fp8x4_to_f32(w.x, c.flavor, f);
    dev::fp8x4_to_f32(w.y, c.flavor, f + 4);
    return make_uint4(dev::pack_bf16x2(f[0], f[1]), dev::pack_bf16x2(f[2], f[3]), dev::pack_bf16x2(f[4], f[5]),
                      dev::pack_bf16x2(f[6], f[7]));
  }
  return kern::dequant8(c, row, aux, e0);
}

// Slot information of one tile (threads 0..BN-1): byte offsets, source (-1 = no key) and the
// key's column scale. FP8_PER_TENSOR rows are dequantized unscaled (every fp8 value is exact in
// bf16) and the tensor scale is applied per key column, to the logits and to P before P V, so
// no bf16 rounding of fp8 * scale happens; other layouts have column scale 1.
SPMLA_DEVICE void hip_tile_info(const AttnParams &p, int t, const kern::TokenRange &r, int tile_begin, int64_t *info,
                                int32_t *src, float *colscale) {
  const int j = threadIdx.x;
  if (j >= kAttnBN) return;
  const int v = tile_begin + j;
  int s = -1;
  int64_t d = 0, a = 0;
  if (v < r.stop) {
    const int which = v < r.end0 ? 0 : 1;
    const int pos = which == 0 ? v : v - r.end0;
    const int32_t slot = p.idx[which][(int64_t)t * p.idx_stride[which] + pos];
    const CacheDesc &c = p.src[which];
    if (slot >= 0 && (int64_t)slot < c.num_slots()) {
      const kern::SlotOffsets o = kern::slot_offsets(c, slot);
      d = o.data;
      a = o.aux;
      s = which;
    }
  }
  info[2 * j] = d;
  info[2 * j + 1] = a;
  src[j] = s;
  colscale[j] = (s >= 0 && p.src[s].layout == kern::kFP8PerTensor) ? p.src[s].scale : 1.f;
}

// Dequantizes the tile's rows (slot info from hip_tile_info) from global memory into ks.
template <int D, int kThreads>
SPMLA_DEVICE void dequant_tile_global(const AttnParams &p, const int64_t *info, const int32_t *src, uint16_t *ks,
                                      int ld) {
  constexpr int kGroups = D / 8;
  for (int i = threadIdx.x; i < kAttnBN * kGroups; i += kThreads) {
    const int r = i / kGroups, g = i - r * kGroups;
    const int s = src[r];
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (s >= 0) {
      const CacheDesc &c = p.src[s];
      v = dequant8_amd(c, c.base + info[2 * r], c.base + info[2 * r + 1], g * 8);
    }
    dev::st16(ks + r * ld + g * 8, v);
  }
}

// Final per-row results: writes lse / max_logits (or the split's partials) and returns the factor
// that scales the row's accumulators.
SPMLA_DEVICE float attn_row_finish(const AttnParams &p, int t, int h, int split, float m, float l) {
  const kern::AttnRowStats rs = kern::attn_row_stats(p, h, m, l);
  kern::attn_row_write_stats(p, t, h, split, rs);
  return rs.f;
}

SPMLA_DEVICE void attn_store_out(const AttnParams &p, int t, int h, int split, int dim, float v) {
  if (p.num_splits > 1)
    p.part_o[(((int64_t)split * p.T + t) * p.H + h) * kDV + dim] = v;
  else
    p.out[(int64_t)t * p.out_stride_t + (int64_t)h * p.out_stride_h + dim] = dev::f32_to_bf16(v);
}

// ================================================================== CDNA: MFMA, wave64
constexpr int kMfmaWaves = 4;
constexpr int kMfmaThreads = kMfmaWaves * 64;

template <int D>
struct MfmaSmem {
  static constexpr int kLdK = D + 4;      // bf16; 8-byte aligned rows, odd dword pitch / 2
  static constexpr int kLdP = kAttnBN + 4;  // bf16
  static constexpr int kOffK = 0;
  static constexpr int kOffP = kOffK + kAttnBN * kLdK * 2;
  static constexpr int kOffInfo = kOffP + kAttnBM * kLdP * 2;
  static constexpr int kOffSrc = kOffInfo + kAttnBN * 16;
  static constexpr int kOffCs = kOffSrc + kAttnBN * 4;
  static constexpr int kBytes = kOffCs + kAttnBN * 4;
  static_assert(kBytes <= 65536, "LDS budget (gfx942: 64 KiB)");
};

template <int D>
__global__ void __launch_bounds__(kMfmaThreads, 1) sparse_attention_mfma_kernel(const AttnParams p, int q_vec) {
#if defined(SPMLA_AMD_MFMA)
  using S = MfmaSmem<D>;
  constexpr int KS = D / 16;  // k steps of Q K^T
  extern __shared__ __align__(16) uint8_t smem[];
  uint16_t *ks = reinterpret_cast<uint16_t *>(smem + S::kOffK);
  uint16_t *ps = reinterpret_cast<uint16_t *>(smem + S::kOffP);
  int64_t *info = reinterpret_cast<int64_t *>(smem + S::kOffInfo);
  int32_t *srcs = reinterpret_cast<int32_t *>(smem + S::kOffSrc);
  float *colsc = reinterpret_cast<float *>(smem + S::kOffCs);

  const int lane = threadIdx.x & 63, wave = threadIdx.x >> 6;
  const int t = blockIdx.x, h0 = blockIdx.y * kAttnBM, split = blockIdx.z;
  const int hw = h0 + wave * 16;  // this wave's first head
  const int quad = lane >> 4, col = lane & 15;

  // Q fragments: lane holds head hw + col, dims kk*16 + 4*quad .. +3.
  bf16x4_t qa[KS];
  {
    const int h = hw + col;
    const uint16_t *qr = p.q + (int64_t)t * p.q_stride_t + (int64_t)h * p.q_stride_h + 4 * quad;
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      if (h < p.H) {
        if (q_vec) {
          qa[kk] = *reinterpret_cast<const bf16x4_t *>(qr + kk * 16);
        } else {
          qa[kk] = bf16x4_t{(short)qr[kk * 16], (short)qr[kk * 16 + 1], (short)qr[kk * 16 + 2], (short)qr[kk * 16 + 3]};
        }
      } else {
        qa[kk] = bf16x4_t{0, 0, 0, 0};
      }
    }
  }

  // Row state for rows 4*quad + j of this wave (replicated over the 16 lanes of the quad).
  float m[4], l[4];
  f32x4_t o[kDV / 16];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    m[j] = dev::neg_inf();
    l[j] = 0.f;
  }
#pragma unroll
  for (int n = 0; n < kDV / 16; ++n) o[n] = f32x4_t{0.f, 0.f, 0.f, 0.f};

  const kern::TokenRange range = kern::token_range(p, t, split);
  const int ntiles = (range.stop - range.begin + kAttnBN - 1) / kAttnBN;
  const float sl2 = p.scale * kern::kLog2e;
  uint16_t *pw = ps + wave * 16 * S::kLdP;

  for (int it = 0; it < ntiles; ++it) {
    hip_tile_info(p, t, range, range.begin + it * kAttnBN, info, srcs, colsc);
    __syncthreads();
    dequant_tile_global<D, kMfmaThreads>(p, info, srcs, ks, S::kLdK);
    __syncthreads();

    // ---- S = Q K^T: two 16x16 tiles (keys 0-15, 16-31)
    f32x4_t s0 = {0.f, 0.f, 0.f, 0.f}, s1 = {0.f, 0.f, 0.f, 0.f};
    {
      const uint16_t *k0 = ks + col * S::kLdK + 4 * quad;
      const uint16_t *k1 = k0 + 16 * S::kLdK;
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        const bf16x4_t b0 = *reinterpret_cast<const bf16x4_t *>(k0 + kk * 16);
        const bf16x4_t b1 = *reinterpret_cast<const bf16x4_t *>(k1 + kk * 16);
        s0 = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(qa[kk], b0, s0, 0, 0, 0);
        s1 = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(qa[kk], b1, s1, 0, 0, 0);
      }
    }
    // ---- online softmax in registers (log2 domain); lane's columns: col and 16 + col
    const bool v0 = srcs[col] >= 0, v1 = srcs[16 + col] >= 0;
    const float cs0 = colsc[col], cs1 = colsc[16 + col];
    float alpha[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float a = v0 ? s0[j] * cs0 * sl2 : dev::neg_inf();
      const float b = v1 ? s1[j] * cs1 * sl2 : dev::neg_inf();
      const float mx = dev::group_max<16>(fmaxf(a, b));
      const float m_new = fmaxf(m[j], mx);
      alpha[j] = m_new == dev::neg_inf() ? 1.f : exp2f(m[j] - m_new);
      const float pa = a == dev::neg_inf() ? 0.f : exp2f(a - m_new);
      const float pb = b == dev::neg_inf() ? 0.f : exp2f(b - m_new);
      l[j] = l[j] * alpha[j] + dev::group_sum<16>(pa + pb);
      m[j] = m_new;
      pw[(4 * quad + j) * S::kLdP + col] = dev::f32_to_bf16(pa * cs0);
      pw[(4 * quad + j) * S::kLdP + 16 + col] = dev::f32_to_bf16(pb * cs1);
    }
#pragma unroll
    for (int n = 0; n < kDV / 16; ++n)
#pragma unroll
      for (int j = 0; j < 4; ++j) o[n][j] *= alpha[j];
    __syncthreads();  // P visible to the whole wave (and K still in place)

    // ---- O += P V: A = P (16 heads x 32 keys), B = value rows of the tile
#pragma unroll
    for (int kb = 0; kb < kAttnBN / 16; ++kb) {
      const bf16x4_t a = *reinterpret_cast<const bf16x4_t *>(pw + col * S::kLdP + kb * 16 + 4 * quad);
      const uint16_t *vb = ks + (kb * 16 + 4 * quad) * S::kLdK + col;
#pragma unroll
      for (int n = 0; n < kDV / 16; ++n) {
        const uint16_t *q = vb + n * 16;
        const bf16x4_t b = {(short)q[0], (short)q[S::kLdK], (short)q[2 * S::kLdK], (short)q[3 * S::kLdK]};
        o[n] = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(a, b, o[n], 0, 0, 0);
      }
    }
    __syncthreads();  // the next tile overwrites K, P and the slot info
  }

  // ---- epilogue: lane (quad, col) holds rows 4*quad + j, value dims n*16 + col
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int h = hw + 4 * quad + j;
    if (h >= p.H) continue;
    // lane col 0 writes the row's statistics; every lane needs its factor
    const float f = col == 0 ? attn_row_finish(p, t, h, split, m[j], l[j]) : kern::attn_row_stats(p, h, m[j], l[j]).f;
#pragma unroll
    for (int n = 0; n < kDV / 16; ++n) attn_store_out(p, t, h, split, n * 16 + col, o[n][j] * f);
  }
#endif
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

  const kern::TokenRange range = kern::token_range(p, t, split);
  const int ntiles = (range.stop - range.begin + kAttnBN - 1) / kAttnBN;
  const float sl2 = p.scale * kern::kLog2e;
  for (int it = 0; it < ntiles; ++it) {
    hip_tile_info(p, t, range, range.begin + it * kAttnBN, info, srcs, colsc);
    __syncthreads();
    dequant_tile_global<D, kPortThreads>(p, info, srcs, ks, S::kLdK);
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

}  // namespace hip
}  // namespace spmla
