// attention_mfma950.cuh — sparse MLA attention for CDNA4 (gfx950, MI350X/MI355X; wave64), the
// attention variant `mfma950`. What it takes from CDNA4 over the CDNA3 kernel (cdna3/attention_mfma.cuh):
//   - v_mfma_f32_16x16x32_bf16: K = 32 per instruction, eight bf16 per lane and operand (16-byte
//     operands), the same issue cost as CDNA4's 16x16x16 form (16 cycles each; AMD's CDNA4 MFMA
//     table), so half the MFMA issue time per FLOP; bf16 operands, fp32 accumulation as SPEC asks;
//   - the 160 KiB LDS: a 64-key tile (64 x (D + 8) bf16 = 73 KiB for D 576; ~84 KiB in all, more
//     than gfx942's 64 KiB), which halves, per key, the block barriers, the tile bookkeeping, the
//     softmax's cross-lane reductions and the rescaling of the 128 accumulators per lane; and a
//     P tile of all 64 heads in LDS, which lets the four waves split P V by value dims.
//
// CTA = 4 waves = 64 heads x one split, tile = 64 keys.
//   Q K^T: wave w owns heads 16w..16w+15; its Q rows live in registers as A fragments (D/32 of
//     them, 8 bf16 each); B fragments are 16-byte LDS reads of the key tile. Four 16x16 score tiles.
//   Online softmax in registers for the wave's 16 heads (the C layout gives each lane 4 rows,
//     reduced across 16 lanes); P (x column scale, bf16) and the rescale factor alpha of every
//     row go to LDS.
//   P V: wave w owns value dims 128w..128w+127 of all 64 heads (4 head tiles x 8 dim tiles = 32 C
//     tiles = 128 accumulators per lane, as in the CDNA3 kernel): each value element of the tile
//     is read from LDS by one wave only (the CDNA3 kernel's four waves each read all 512 dims), and
//     one B fragment serves four MFMAs (the four head tiles).
// Key-tile rows are (D + 8) bf16 apart (16-byte aligned for the ds_read_b128 of Q K^T; 292 dwords
// = 4 banks mod 32, so eight consecutive rows are bank-disjoint) plus 16 bf16 after every 8 rows:
// P V reads a column of 8 keys per lane group and the four lane groups start 8 rows apart; the
// extra 8 dwords per 8 rows put them on different banks. Every vector access is naturally aligned.
// Not used: FP8 MFMA (v_mfma_f32_16x16x32_fp8_fp8 / the scaled f8f6f4 forms): P and the bf16 RoPE
// part would have to be quantized to E4M3 (3 mantissa bits against bf16's 8: relative error 2^-4
// per product, against SPEC's bf16-operand tolerance), and Q too; see docs/ROCM.md.
// Off gfx950 (and in every other pass) the kernel compiles to an empty body.
#pragma once
#include "common/attention_portable.cuh"
#include "hip/mma_policy_amd.h"

namespace spmla {
namespace hip {

constexpr int kMfma950Waves = 4;
constexpr int kMfma950Threads = kMfma950Waves * 64;
constexpr int kMfma950BN = 64;  // keys per tile

template <int D>
struct Mfma950Smem {
  static constexpr int kBN = kMfma950BN;
  static constexpr int kLdK = D + 8;    // bf16; rows 16-byte aligned, pitch = 4 banks mod 32
  static constexpr int kGroupPad = 16;  // bf16 after every 8 key rows (P V's lane groups: other banks)
  static constexpr int kLdP = kBN + 8;  // bf16; 16-byte aligned rows
  static constexpr int kOffK = 0;
  static constexpr int kOffP = kOffK + (kBN * kLdK + (kBN / 8) * kGroupPad) * 2;
  static constexpr int kOffRow = kOffP + kern::kAttnBM * kLdP * 2;  // per head row: alpha, then the final factor
  static constexpr int kOffInfo = kOffRow + kern::kAttnBM * 4;
  static constexpr int kOffSrc = kOffInfo + kBN * 16;
  static constexpr int kOffCs = kOffSrc + kBN * 4;
  static constexpr int kBytes = kOffCs + kBN * 4;
  static_assert(kLdK % 8 == 0 && kLdP % 8 == 0 && kOffP % 16 == 0 && kOffInfo % 8 == 0, "aligned rows");
  static_assert(kBytes <= 163840, "LDS budget (gfx950: 160 KiB)");
  // Key row r of the tile, in bf16 from the tile's start.
  static SPMLA_HOST_DEVICE int row(int r) { return r * kLdK + (r >> 3) * kGroupPad; }
};

template <int D>
__global__ void __launch_bounds__(kMfma950Threads, 1) sparse_attention_mfma950_kernel(const kern::AttnParams p, int q_vec) {
#if defined(SPMLA_AMD_MFMA_GFX950)
  // Operand types of v_mfma_f32_16x16x32_bf16: clang declares it on <8 x __bf16> (V8y); the
  // emulation on eight shorts. Fragments are built from bf16 bit patterns (uint16_t) either way.
  SPMLA_EXT_VECTOR_TYPEDEF(short, 8, s16x8_t);
#if defined(SPMLA_VENDOR_HIP)
  typedef __bf16 bf16x8_t __attribute__((ext_vector_type(8)));
#define SPMLA_BF16X8(v) __builtin_bit_cast(bf16x8_t, (v))
#else
  typedef s16x8_t bf16x8_t;
#define SPMLA_BF16X8(v) (v)
#endif
  using S = Mfma950Smem<D>;
  constexpr int BN = kMfma950BN;
  constexpr int KS = D / 32;                         // k steps of Q K^T
  constexpr int kMT = kern::kAttnBM / 16;                  // head tiles of P V (4)
  constexpr int kNT = kern::kDV / 16 / kMfma950Waves;      // value-dim tiles per wave (8)
  static_assert(D % 32 == 0 && BN % 32 == 0, "shapes");
  extern __shared__ __align__(16) uint8_t smem[];
  uint16_t *ks = reinterpret_cast<uint16_t *>(smem + S::kOffK);
  uint16_t *ps = reinterpret_cast<uint16_t *>(smem + S::kOffP);
  float *rowv = reinterpret_cast<float *>(smem + S::kOffRow);
  int64_t *info = reinterpret_cast<int64_t *>(smem + S::kOffInfo);
  int32_t *srcs = reinterpret_cast<int32_t *>(smem + S::kOffSrc);
  float *colsc = reinterpret_cast<float *>(smem + S::kOffCs);

  const int lane = threadIdx.x & 63, wave = threadIdx.x >> 6;
  const int t = blockIdx.x, h0 = blockIdx.y * kern::kAttnBM, split = blockIdx.z;
  const int hw = h0 + wave * 16;  // this wave's first head (Q K^T, softmax)
  const int quad = lane >> 4, col = lane & 15;

  // Q fragments: lane holds head hw + col, dims kk*32 + 8*quad .. +7.
  bf16x8_t qa[KS];
  {
    const int h = hw + col;
    const uint16_t *qr = p.q + (int64_t)t * p.q_stride_t + (int64_t)h * p.q_stride_h + 8 * quad;
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      if (h < p.H && q_vec) {
        qa[kk] = *reinterpret_cast<const bf16x8_t *>(qr + kk * 32);
      } else {
        s16x8_t v;
#pragma unroll
        for (int e = 0; e < 8; ++e) v[e] = h < p.H ? (short)qr[kk * 32 + e] : (short)0;
        qa[kk] = SPMLA_BF16X8(v);
      }
    }
  }

  // Softmax state of rows 4*quad + j of this wave's heads (replicated over the quad's 16 lanes).
  float m[4], l[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    m[j] = dev::neg_inf();
    l[j] = 0.f;
  }
  // O: head tile mt (heads h0 + 16 mt + 4 quad + j), value dims 128 wave + 16 n + col.
  f32x4_t o[kMT][kNT];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int n = 0; n < kNT; ++n) o[mt][n] = f32x4_t{0.f, 0.f, 0.f, 0.f};

  const kern::TokenRange range = kern::token_range<BN>(p, t, split);
  const int ntiles = (range.stop - range.begin + BN - 1) / BN;
  const float sl2 = p.scale * kern::kLog2e;
  uint16_t *pw = ps + wave * 16 * S::kLdP;  // this wave's 16 P rows

  for (int it = 0; it < ntiles; ++it) {
    kern::attn_tile_info<BN>(p, t, range, range.begin + it * BN, info, srcs, colsc);
    __syncthreads();
    // Dequantize the tile (8 values per item, consecutive threads along a row: coalesced reads).
    constexpr int kGroups = D / 8;
    for (int i = threadIdx.x; i < BN * kGroups; i += kMfma950Threads) {
      const int r = i / kGroups, g = i - r * kGroups;
      const int s = srcs[r];
      uint4 v = make_uint4(0u, 0u, 0u, 0u);
      if (s >= 0) {
        const kern::CacheDesc &c = p.src[s];
        v = kern::dequant8_native(c, c.base + info[2 * r], c.base + info[2 * r + 1], g * 8);
      }
      dev::st16(ks + S::row(r) + g * 8, v);
    }
    __syncthreads();

    // ---- S = Q K^T: four 16x16 tiles (keys 16 g .. 16 g + 15)
    f32x4_t sc[4];
#pragma unroll
    for (int g = 0; g < 4; ++g) sc[g] = f32x4_t{0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int kk = 0; kk < KS; ++kk)
#pragma unroll
      for (int g = 0; g < 4; ++g) {
        const bf16x8_t b = *reinterpret_cast<const bf16x8_t *>(ks + S::row(16 * g + col) + kk * 32 + 8 * quad);
        sc[g] = __builtin_amdgcn_mfma_f32_16x16x32_bf16(qa[kk], b, sc[g], 0, 0, 0);
      }

    // ---- online softmax in registers (log2 domain); lane's columns: 16 g + col
    bool vld[4];
    float cs[4];
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      vld[g] = srcs[16 * g + col] >= 0;
      cs[g] = colsc[16 * g + col];
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float x[4], mx = dev::neg_inf();
#pragma unroll
      for (int g = 0; g < 4; ++g) {
        x[g] = vld[g] ? sc[g][j] * cs[g] * sl2 : dev::neg_inf();
        mx = fmaxf(mx, x[g]);
      }
      mx = dev::group_max<16>(mx);
      const float m_new = fmaxf(m[j], mx);
      const float alpha = m_new == dev::neg_inf() ? 1.f : exp2f(m[j] - m_new);
      float sum = 0.f;
#pragma unroll
      for (int g = 0; g < 4; ++g) {
        const float pg = x[g] == dev::neg_inf() ? 0.f : exp2f(x[g] - m_new);
        sum += pg;
        pw[(4 * quad + j) * S::kLdP + 16 * g + col] = dev::f32_to_bf16(pg * cs[g]);
      }
      l[j] = l[j] * alpha + dev::group_sum<16>(sum);
      m[j] = m_new;
      if (col == 0) rowv[wave * 16 + 4 * quad + j] = alpha;
    }
    __syncthreads();  // P and alpha of all 64 heads visible to every wave (K still in place)

    // ---- O = alpha O + P V: A = P (16 heads x 32 keys), B = 32 keys x 16 value dims
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
      float al[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) al[j] = rowv[16 * mt + 4 * quad + j];
#pragma unroll
      for (int n = 0; n < kNT; ++n)
#pragma unroll
        for (int j = 0; j < 4; ++j) o[mt][n][j] *= al[j];
    }
#pragma unroll
    for (int kb = 0; kb < BN / 32; ++kb) {
      bf16x8_t a[kMT];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
        a[mt] = *reinterpret_cast<const bf16x8_t *>(ps + (16 * mt + col) * S::kLdP + kb * 32 + 8 * quad);
      // keys kb*32 + 8 quad + e (one 8-row group: its rows are kLdK apart), dim 128 wave + 16 n + col
      const uint16_t *vb = ks + S::row(kb * 32 + 8 * quad) + 128 * wave + col;
#pragma unroll
      for (int n = 0; n < kNT; ++n) {
        const uint16_t *q = vb + 16 * n;
        s16x8_t bv;
#pragma unroll
        for (int e = 0; e < 8; ++e) bv[e] = (short)q[e * S::kLdK];
        const bf16x8_t b = SPMLA_BF16X8(bv);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) o[mt][n] = __builtin_amdgcn_mfma_f32_16x16x32_bf16(a[mt], b, o[mt][n], 0, 0, 0);
      }
    }
    __syncthreads();  // the next tile overwrites K, P, alpha and the slot info
  }

  // ---- epilogue: the owner wave of each row writes its statistics and factor, then every wave
  // stores its value dims of all 64 rows.
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int h = hw + 4 * quad + j;
    if (col == 0) rowv[wave * 16 + 4 * quad + j] = h < p.H ? kern::attn_row_finish(p, t, h, split, m[j], l[j]) : 0.f;
  }
  __syncthreads();
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int h = h0 + 16 * mt + 4 * quad + j;
      if (h >= p.H) continue;
      const float f = rowv[16 * mt + 4 * quad + j];
#pragma unroll
      for (int n = 0; n < kNT; ++n) kern::attn_store_out(p, t, h, split, 128 * wave + 16 * n + col, o[mt][n][j] * f);
    }
#undef SPMLA_BF16X8
#endif
}

}  // namespace hip
}  // namespace spmla
