// indexer.cuh — lightning-indexer logits (ragged and paged), fused: FP8 q and k decoded into
// bf16 tiles in shared memory (exact: every E4M3 value is a bf16 value), S^T = K Q^T on the
// matrix policy (keys on M, heads on N), then relu * k_scale * weight and the sum over heads in
// registers. The [T, Hi, S] intermediate never reaches memory.
//
// The CUDA plugin runs indexer_fx_kernel (backends/cuda/indexer_fx.cuh: FP8 -> f16 fragments once
// per reuse, k kept in registers, persistent CTAs); this matrix-policy kernel is the portable path.
//
// CTA = (group of up to kIdxRows rows sharing the key source, chunk of kIdxChunk columns).
// Ragged: the rows are consecutive tokens (the key array is shared). Paged: the rows are the
// next_n tokens of one request (the same pages).
#pragma once
#include "compat.h"
#include "kv_layout_traits.h"
#include "params.h"

namespace spmla {
namespace kern {

constexpr int kIdxTile = 128;  // keys per tile (8 warps x 16)
constexpr int kIdxChunk = 2048;
constexpr int kIdxWarps = 8;
constexpr int kIdxThreads = kIdxWarps * SPMLA_WARP_SIZE;
constexpr int kIdxLd = 128 + 8;  // bf16 row pitch of the q and k tiles

struct IdxSmem {
  static constexpr int kOffQ = 0;  // [kIdxRows][64][kIdxLd] bf16
  static constexpr int kOffK = kOffQ + kIdxRows * kIdxMaxHi * kIdxLd * 2;
  static constexpr int kOffW = kOffK + kIdxTile * kIdxLd * 2;     // [kIdxRows][64] f32
  static constexpr int kOffKs = kOffW + kIdxRows * kIdxMaxHi * 4;  // [kIdxTile] f32 (NaN-free)
  static constexpr int kOffValid = kOffKs + kIdxTile * 4;          // [kIdxTile] int
  static constexpr int kOffRed = kOffValid + kIdxTile * 4;         // [kIdxWarps][16] f32
  static constexpr int kBytes = kOffRed + kIdxWarps * 16 * 4;
};

SPMLA_DEVICE void idx_row_range(const IndexerParams &p, int row, int &lo, int &hi) {
  if (p.paged) {
    const int b = row / p.next_n, i = row - b * p.next_n;
    const int64_t lim = (int64_t)p.context_lens[(int64_t)b * p.cl_stride] - p.next_n + i + 1;
    lo = 0;
    hi = (int)max((int64_t)0, min(lim, (int64_t)p.C));
  } else {
    const int64_t S = p.S;
    lo = max(p.k_start[(int64_t)row * p.ks_start_stride], 0);
    int64_t h = p.k_end[(int64_t)row * p.ks_end_stride];
    h = min(h, min(S, (int64_t)p.C));
    hi = (int)max(h, (int64_t)0);
  }
}

template <typename Mma>
__global__ void __launch_bounds__(kIdxThreads) indexer_logits_kernel(const IndexerParams p) {
  extern __shared__ __align__(16) uint8_t smem[];
  uint16_t *qs = reinterpret_cast<uint16_t *>(smem + IdxSmem::kOffQ);
  uint16_t *ks = reinterpret_cast<uint16_t *>(smem + IdxSmem::kOffK);
  float *ws = reinterpret_cast<float *>(smem + IdxSmem::kOffW);
  float *kscale = reinterpret_cast<float *>(smem + IdxSmem::kOffKs);
  int *kvalid = reinterpret_cast<int *>(smem + IdxSmem::kOffValid);
  float *red = reinterpret_cast<float *>(smem + IdxSmem::kOffRed);

  const int tid = threadIdx.x, warp = dev::warp_id(), lane = dev::lane_id();
  const int Hi = p.Hi, Di = p.Di;
  const int Hp = (Hi + 15) / 16 * 16;
  // rows of this CTA
  int row0, nrows;
  if (p.paged) {
    const int groups = (p.next_n + kIdxRows - 1) / kIdxRows;
    const int b = blockIdx.x / groups, g = blockIdx.x - b * groups;
    row0 = b * p.next_n + g * kIdxRows;
    nrows = min(kIdxRows, p.next_n - g * kIdxRows);
  } else {
    row0 = blockIdx.x * kIdxRows;
    nrows = min(kIdxRows, p.rows - row0);
  }
  const int c0 = blockIdx.y * kIdxChunk, c1 = min(p.C, c0 + kIdxChunk);
  int lo[kIdxRows], hi[kIdxRows];
  int ulo = c1, uhi = c0;
#pragma unroll
  for (int r = 0; r < kIdxRows; ++r) {
    lo[r] = 0;
    hi[r] = 0;
    if (r < nrows) {
      idx_row_range(p, row0 + r, lo[r], hi[r]);
      lo[r] = max(lo[r], c0);
      hi[r] = min(hi[r], c1);
      if (hi[r] > lo[r]) {
        ulo = min(ulo, lo[r]);
        uhi = max(uhi, hi[r]);
      }
      // -inf outside the row's range inside this chunk
      float *lrow = p.logits + (int64_t)(row0 + r) * p.logits_stride;
      for (int j = c0 + tid; j < c1; j += kIdxThreads)
        if (j < lo[r] || j >= hi[r]) lrow[j] = dev::neg_inf();
    }
  }
  if (uhi <= ulo) return;

  // q (decoded to bf16, zero rows to Hp) and weights (0 beyond Hi)
  for (int r = 0; r < nrows; ++r) {
    const uint8_t *qr = p.q + (int64_t)(row0 + r) * p.q_stride_row;
    for (int i = tid; i < Hp * (Di / 4); i += kIdxThreads) {
      const int h = i / (Di / 4), d = (i - h * (Di / 4)) * 4;
      uint32_t w = 0;
      if (h < Hi) w = *reinterpret_cast<const uint32_t *>(qr + (int64_t)h * p.q_stride_h + d);
      float f[4];
      dev::fp8x4_to_f32(w, p.flavor, f);
      uint32_t *dst = reinterpret_cast<uint32_t *>(qs + (r * kIdxMaxHi + h) * kIdxLd + d);
      dst[0] = dev::pack_bf16x2(f[0], f[1]);
      dst[1] = dev::pack_bf16x2(f[2], f[3]);
    }
    for (int h = tid; h < Hp; h += kIdxThreads)
      ws[r * kIdxMaxHi + h] = h < Hi ? p.weights[(int64_t)(row0 + r) * p.w_stride_row + (int64_t)h * p.w_stride_h] : 0.f;
  }
  __syncthreads();

  const int tile0 = ulo / kIdxTile * kIdxTile;
  for (int j0 = tile0; j0 < uhi; j0 += kIdxTile) {
    // ---- key tile: decode Di fp8 per key into bf16, scale, validity
    const int b = p.paged ? row0 / p.next_n : 0;
    for (int i = tid; i < kIdxTile * (Di / 4); i += kIdxThreads) {
      const int kk = i / (Di / 4), d = (i - kk * (Di / 4)) * 4;
      const int j = j0 + kk;
      const uint8_t *kp = nullptr;
      float sc = 0.f;
      if (j < uhi) {
        if (p.paged) {
          const int bs = p.cache.block_size;
          const int pi = j / bs;
          if (pi < p.max_pages) {
            const int64_t page = p.block_table[(int64_t)b * p.bt_stride + pi];
            if (page >= 0 && page < p.cache.num_pages) {
              const uint8_t *pb = p.cache.base + page * p.cache.page_stride;
              const int off = j - pi * bs;
              kp = pb + (int64_t)off * Di;  // KvIndexer (numerics/kv_layout_traits.h)
              sc = *reinterpret_cast<const float *>(pb + (int64_t)bs * Di + (int64_t)off * KvIndexer::kScaleRowBytes);
            }
          }
        } else {
          kp = p.k + (int64_t)j * p.k_stride;
          sc = p.k_scale[(int64_t)j * p.ks_stride];
        }
      }
      uint32_t w = kp ? *reinterpret_cast<const uint32_t *>(kp + d) : 0u;
      float f[4];
      dev::fp8x4_to_f32(w, p.flavor, f);
      uint32_t *dst = reinterpret_cast<uint32_t *>(ks + kk * kIdxLd + d);
      dst[0] = dev::pack_bf16x2(f[0], f[1]);
      dst[1] = dev::pack_bf16x2(f[2], f[3]);
      if (d == 0) {
        kscale[kk] = sc;
        kvalid[kk] = kp != nullptr;
      }
    }
    __syncthreads();
    // ---- per row: S^T (16 keys of this warp x Hp heads), relu * scale * weight, sum over heads
    for (int r = 0; r < nrows; ++r) {
      if (hi[r] <= j0 || lo[r] >= j0 + kIdxTile) continue;  // uniform across the block
      float acc[Mma::kRegsC];
#pragma unroll
      for (int i = 0; i < Mma::kRegsC; ++i) acc[i] = 0.f;
      const uint16_t *ka = ks + warp * 16 * kIdxLd;
      for (int n0 = 0; n0 < Hp; n0 += 16) {
        float c[Mma::kRegsC];
#pragma unroll
        for (int i = 0; i < Mma::kRegsC; ++i) c[i] = 0.f;
        const uint16_t *qb = qs + (r * kIdxMaxHi + n0) * kIdxLd;
        for (int kk = 0; kk < Di; kk += 16) {
          typename Mma::FragA a;
          typename Mma::FragB bb;
          Mma::load_a(a, ka + kk, kIdxLd);
          Mma::load_b_nk(bb, qb + kk, kIdxLd);
          Mma::mma(c, a, bb);
        }
#pragma unroll
        for (int i = 0; i < Mma::kRegsC; ++i) {
          const int key = warp * 16 + Mma::c_row(lane, i);
          const int h = n0 + Mma::c_col(lane, i);
          const float s = kscale[key] * c[i];
          acc[i] += ws[r * kIdxMaxHi + h] * (s > 0.f ? s : 0.f);
        }
      }
      // reduce over the lanes sharing a row, then over the lane's registers of the same row
      float *wred = red + warp * 16;
#pragma unroll
      for (int i = 0; i < Mma::kRegsC; ++i) acc[i] = dev::group_sum<Mma::kLanesPerRow>(acc[i]);
      const bool leader = (lane % Mma::kLanesPerRow) == 0;
      if (leader) {
#pragma unroll
        for (int i = 0; i < Mma::kRegsC; ++i) wred[Mma::c_row(lane, i)] = 0.f;
#pragma unroll
        for (int i = 0; i < Mma::kRegsC; ++i) wred[Mma::c_row(lane, i)] += acc[i];
#pragma unroll
        for (int i = 0; i < Mma::kRegsC; ++i) {
          const int key = warp * 16 + Mma::c_row(lane, i);
          const int j = j0 + key;
          if (j >= lo[r] && j < hi[r])
            p.logits[(int64_t)(row0 + r) * p.logits_stride + j] = kvalid[key] ? wred[Mma::c_row(lane, i)] : dev::neg_inf();
        }
      }
    }
    __syncthreads();
  }
}

}  // namespace kern
}  // namespace spmla
