// attention_mfma.cuh — sparse MLA attention on CDNA matrix cores (gfx90a, gfx942, gfx950; wave64),
// within 64 KiB of LDS (the shared Hopper/Ampere kernel of attention.cuh needs ~157 KiB).
//
// CTA = 4 waves = 64 heads x one split. Each wave owns 16 heads: its Q rows live in registers as
// MFMA A fragments (D/16 of them), the dequantized key tile (32 keys x D bf16) is the only large
// LDS buffer (~37 KiB). S = Q K^T and O += P V are v_mfma_f32_16x16x16_bf16; the online softmax
// runs in registers (the C layout gives each lane 4 rows, reduced across 16 lanes); P goes
// through a small per-wave LDS tile to become an A operand. O (16 heads x 512) is 32 C tiles =
// 128 accumulators per lane. LDS ~43 KiB. Tile gathering and FP8 conversion are the portable
// kernel's (common/attention_portable.cuh). Off CDNA the kernel compiles to an empty body.
#pragma once
#include "common/attention_portable.cuh"
#include "hip/mma_policy_amd.h"

namespace spmla {
namespace hip {

using kern::AttnParams;
using kern::CacheDesc;
using kern::kAttnBM;
using kern::kAttnBN;
using kern::kDV;
using kern::attn_row_finish;
using kern::attn_store_out;
using kern::dequant_tile_global;
using kern::dequant8_native;
using kern::attn_tile_info;

// ================================================================== CDNA: MFMA, wave64
constexpr int kMfmaWaves = 4;
constexpr int kMfmaThreads = kMfmaWaves * 64;

template <int D>
struct MfmaSmem {
  static constexpr int kLdK = D + 4;      // bf16; 8-byte aligned rows (not 16: see dequant_tile_global), odd dword pitch / 2
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
    attn_tile_info(p, t, range, range.begin + it * kAttnBN, info, srcs, colsc);
    __syncthreads();
    dequant_tile_global<D, kMfmaThreads, S::kLdK>(p, info, srcs, ks);
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

}  // namespace hip
}  // namespace spmla
