// attention.cuh — sparse MLA attention: one tile algorithm for every layout, both FP8 flavors,
// prefill and decode, written against a matrix-multiply policy (see backends/cuda/mma_policy_sm80.cuh).
//
// CTA = (query token t, block of 64 heads, split s). The heads are the M dimension, the selected
// key rows the N dimension. Each tile of 32 index-list entries is gathered (asynchronous copies
// of the raw cache bytes, valid slots only), dequantized once into a bf16 tile in shared memory,
// then Q K^T (16 x 16 per warp) -> online softmax (through shared memory) -> P V (16 heads x 256
// value dims per warp). The raw bytes of the next tile are in flight while the current tile
// computes. Split-K: the plan picks the number of splits from the shapes; each split handles a
// contiguous share of the token's valid list and writes normalized partials, merged by combine.
#pragma once
#include "cache_access.cuh"
#include "compat.h"
#include "params.h"

namespace spmla {
namespace kern {

constexpr int kAttnWarps = 8;
constexpr int kAttnThreads = kAttnWarps * SPMLA_WARP_SIZE;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int D>
struct AttnSmem {
  static constexpr int kLdQ = D + 8;  // bf16 elements (row pitch = odd multiple of 16 B)
  static constexpr int kLdK = D + 8;
  static constexpr int kRaw = 1168;          // raw staging bytes per row (>= 2*576 + 16)
  static constexpr int kLdS = kAttnBN + 4;   // fp32 scores
  static constexpr int kLdP = 2 * kLdS;      // bf16 probabilities, written over the score row
  static constexpr int kOffQ = 0;
  static constexpr int kOffK = kOffQ + kAttnBM * kLdQ * 2;
  static constexpr int kOffRaw = kOffK + kAttnBN * kLdK * 2;
  static constexpr int kOffS = kOffRaw + kAttnBN * kRaw;
  static constexpr int kOffStats = kOffS + kAttnBM * kLdS * 4;  // m, l, alpha: 3 x BM floats
  static constexpr int kOffInfo = kOffStats + 3 * kAttnBM * 4;  // 2 x BN x {data, aux} int64
  static constexpr int kOffSrc = kOffInfo + 2 * kAttnBN * 16;   // 2 x BN int32
  static constexpr int kOffCs = kOffSrc + 2 * kAttnBN * 4;     // 2 x BN fp32 column scales
  static constexpr int kBytes = kOffCs + 2 * kAttnBN * 4;
  // A staged row holds the widest data row the kernel copies (bf16 of D = 576 and a V32 row),
  // and a V4 data row with its scale row right behind it.
  static_assert(kRaw >= 2 * 576 + 16 && kRaw >= KvV32::kDataRowBytes &&
                    kRaw >= KvV4::kDataRowBytes + KvV4::kScaleRowBytes && kRaw >= KvV41Fp8Token::kTokenBytes &&
                    kRaw >= KvV41Fp4Token::kTokenBytes,
                "kRaw too small for a layout's row");
};

struct TokenRange {
  int end0, end1;  // valid prefix lengths of the main and extra lists
  int begin, stop;  // this split's share of [0, end0 + end1)
};

// The split's share of the concatenated valid prefixes of the main and extra lists, in whole
// tiles of BN entries (the kernel's tile width).
template <int BN = kAttnBN>
SPMLA_DEVICE TokenRange token_range(const AttnParams &p, int t, int split) {
  TokenRange r;
  int e0 = p.K[0];
  if (p.len[0]) e0 = min(max(p.len[0][(int64_t)t * p.len_stride[0]], 0), p.K[0]);
  int e1 = p.K[1];
  if (e1 > 0 && p.len[1]) e1 = min(max(p.len[1][(int64_t)t * p.len_stride[1]], 0), p.K[1]);
  r.end0 = e0;
  r.end1 = e1;
  const int L = e0 + e1;
  int chunk = (L + p.num_splits - 1) / p.num_splits;
  chunk = (chunk + BN - 1) / BN * BN;
  r.begin = min(L, split * chunk);
  r.stop = min(L, r.begin + chunk);
  return r;
}

// Final statistics of output row h (< H) from its running maximum m (log2 units) and sum l: lse
// and the max logit in natural-log units (an empty row: lse -inf in a split's partial, +inf in
// the output) and f, the factor of the row's accumulators: 1 / l (0 for an empty row), in an
// unsplit output times the sink's share 1 / (1 + exp(sink - lse)). Shared by every kernel.
struct AttnRowStats {
  float lse, mxl, f;
};
SPMLA_DEVICE AttnRowStats attn_row_stats(const AttnParams &p, int h, float m, float l) {
  AttnRowStats r;
  if (l > 0.f) {
    r.lse = (m + log2f(l)) * kLn2;
    r.f = 1.f / l;
  } else {
    r.lse = p.num_splits > 1 ? dev::neg_inf() : dev::pos_inf();
    r.f = 0.f;
  }
  r.mxl = m == dev::neg_inf() ? m : m * kLn2;
  if (p.num_splits == 1 && p.sink && l > 0.f) r.f *= 1.f / (1.f + expf(p.sink[(int64_t)h * p.sink_stride] - r.lse));
  return r;
}
// The row's lse and max logit into the output (or the split's partials).
SPMLA_DEVICE void attn_row_write_stats(const AttnParams &p, int t, int h, int split, const AttnRowStats &r) {
  if (p.num_splits > 1) {
    const int64_t pi = ((int64_t)split * p.T + t) * p.H + h;
    p.part_lse[pi] = r.lse;
    p.part_max[pi] = r.mxl;
  } else {
    p.lse[(int64_t)t * p.lse_stride_t + (int64_t)h * p.lse_stride_h] = r.lse;
    if (p.max_logits) p.max_logits[(int64_t)t * p.ml_stride_t + (int64_t)h * p.ml_stride_h] = r.mxl;
  }
}

// Fills the slot information of one tile of BN entries (threads 0..BN-1).
// FP8_PER_TENSOR rows are staged unscaled (fp8 values are exact in bf16) and the tensor scale is
// applied per key column instead: to the logits and to P before P V (exact, no bf16 rounding of
// fp8 * scale). Other layouts have column scale 1.
template <int BN = kAttnBN>
SPMLA_DEVICE void attn_tile_info(const AttnParams &p, int t, const TokenRange &r, int tile_begin,
                                 int64_t *info, int32_t *src, float *colscale) {
  const int j = threadIdx.x;
  if (j >= BN) return;
  const int v = tile_begin + j;
  int s = -1;
  int64_t d = 0, a = 0;
  if (v < r.stop) {
    const int which = v < r.end0 ? 0 : 1;
    const int pos = which == 0 ? v : v - r.end0;
    const int32_t slot = p.idx[which][(int64_t)t * p.idx_stride[which] + pos];
    const CacheDesc &c = p.src[which];
    if (slot >= 0 && (int64_t)slot < c.num_slots()) {
      SlotOffsets o = slot_offsets(c, slot);
      d = o.data;
      a = o.aux;
      s = which;
    }
  }
  info[2 * j] = d;
  info[2 * j + 1] = a;
  src[j] = s;
  colscale[j] = (s >= 0 && p.src[s].layout == kFP8PerTensor) ? p.src[s].scale : 1.f;
}

template <int D>
SPMLA_DEVICE void attn_issue_copies(const AttnParams &p, uint8_t *raw, const int64_t *info,
                                    const int32_t *src) {
  using S = AttnSmem<D>;
  constexpr int kChunks = (2 * D) / 16;  // max 16-byte chunks per row (bf16 rows)
  for (int i = threadIdx.x; i < kAttnBN * kChunks; i += kAttnThreads) {
    const int r = i / kChunks, c = i - (i / kChunks) * kChunks;
    const int s = src[r];
    if (s < 0) continue;
    const CacheDesc &cd = p.src[s];
    if (c * 16 >= row_data_bytes(cd, D)) continue;
    dev::async_copy16(raw + r * S::kRaw + c * 16, cd.base + info[2 * r] + c * 16);
  }
  // Separate scale rows (V4, page-blocked V41) land right after the row's data bytes.
  if (threadIdx.x < kAttnBN) {
    const int r = threadIdx.x;
    const int s = src[r];
    if (s >= 0 && p.src[s].layout == kV4) {
      dev::async_copy8(raw + r * S::kRaw + KvV4::kDataRowBytes, p.src[s].base + info[2 * r + 1]);
    } else if (s >= 0 && scale_row_bytes(p.src[s]) > 0) {
      const CacheDesc &cd = p.src[s];
      for (int c = 0; c < scale_row_bytes(cd); c += 16)
        dev::async_copy16(raw + r * S::kRaw + v41_data_bytes(cd.layout) + c, cd.base + info[2 * r + 1] + c);
    }
  }
  dev::async_commit();
}

template <int D>
SPMLA_DEVICE void attn_dequant_tile(const AttnParams &p, const uint8_t *raw, const int32_t *src,
                                    uint16_t *ks) {
  using S = AttnSmem<D>;
  constexpr int kGroups = D / 8;
  for (int i = threadIdx.x; i < kAttnBN * kGroups; i += kAttnThreads) {
    const int r = i / kGroups, g = i - (i / kGroups) * kGroups;
    const int s = src[r];
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (s >= 0) {
      const uint8_t *row = raw + r * S::kRaw;
      v = dequant8(p.src[s], row, row + staged_scales_offset(p.src[s]), g * 8, /*tensor_scale=*/false);
    }
    dev::st16(ks + r * S::kLdK + g * 8, v);
  }
}

template <int D, typename Mma>
__global__ void __launch_bounds__(kAttnThreads, 1) sparse_attention_kernel(const AttnParams p, int q_vec16) {
  using S = AttnSmem<D>;
  extern __shared__ __align__(16) uint8_t smem[];
  uint16_t *qs = reinterpret_cast<uint16_t *>(smem + S::kOffQ);
  uint16_t *ks = reinterpret_cast<uint16_t *>(smem + S::kOffK);
  uint8_t *raw = smem + S::kOffRaw;
  float *ss = reinterpret_cast<float *>(smem + S::kOffS);
  uint16_t *ps = reinterpret_cast<uint16_t *>(smem + S::kOffS);
  float *row_m = reinterpret_cast<float *>(smem + S::kOffStats);
  float *row_l = row_m + kAttnBM;
  float *row_a = row_l + kAttnBM;
  int64_t *info = reinterpret_cast<int64_t *>(smem + S::kOffInfo);
  int32_t *srcs = reinterpret_cast<int32_t *>(smem + S::kOffSrc);
  float *colsc = reinterpret_cast<float *>(smem + S::kOffCs);

  const int tid = threadIdx.x;
  const int warp = dev::warp_id(), lane = dev::lane_id();
  const int t = blockIdx.x, h0 = blockIdx.y * kAttnBM, split = blockIdx.z;

  // ---- Q rows h0 .. h0+63 (zero rows past H)
  const uint16_t *qt = p.q + (int64_t)t * p.q_stride_t;
  if (q_vec16) {
    for (int i = tid; i < kAttnBM * (D / 8); i += kAttnThreads) {
      const int r = i / (D / 8), g = i - r * (D / 8);
      uint4 v = make_uint4(0u, 0u, 0u, 0u);
      if (h0 + r < p.H) v = dev::ld16(qt + (int64_t)(h0 + r) * p.q_stride_h + g * 8);
      dev::st16(qs + r * S::kLdQ + g * 8, v);
    }
  } else {
    for (int i = tid; i < kAttnBM * D; i += kAttnThreads) {
      const int r = i / D, e = i - r * D;
      qs[r * S::kLdQ + e] = (h0 + r < p.H) ? qt[(int64_t)(h0 + r) * p.q_stride_h + e] : (uint16_t)0;
    }
  }
  if (tid < kAttnBM) {
    row_m[tid] = dev::neg_inf();
    row_l[tid] = 0.f;
  }

  const TokenRange range = token_range(p, t, split);
  const int ntiles = (range.stop - range.begin + kAttnBN - 1) / kAttnBN;
  const float sl2 = p.scale * kLog2e;

  const int rg = warp & 3;   // row group (16 heads)
  const int half = warp >> 2;  // QK: key half; PV: value-dim half
  float o[16][Mma::kRegsC];
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int i = 0; i < Mma::kRegsC; ++i) o[j][i] = 0.f;

  if (ntiles > 0) {
    attn_tile_info(p, t, range, range.begin, info, srcs, colsc);
    dev::block_sync();
    attn_issue_copies<D>(p, raw, info, srcs);
    dev::async_wait_all();
  }
  dev::block_sync();

  constexpr int kCpt = kAttnBM * kAttnBN / kAttnThreads;  // softmax columns per thread
  constexpr int kTpr = kAttnBN / kCpt;                     // threads per row

  for (int it = 0; it < ntiles; ++it) {
    const int buf = it & 1;
    int32_t *src_cur = srcs + buf * kAttnBN;
    const float *cs_cur = colsc + buf * kAttnBN;
    int64_t *info_nxt = info + (buf ^ 1) * 2 * kAttnBN;
    int32_t *src_nxt = srcs + (buf ^ 1) * kAttnBN;
    attn_dequant_tile<D>(p, raw, src_cur, ks);
    const bool more = it + 1 < ntiles;
    if (more)
      attn_tile_info(p, t, range, range.begin + (it + 1) * kAttnBN, info_nxt, src_nxt, colsc + (buf ^ 1) * kAttnBN);
    dev::block_sync();
    if (more) attn_issue_copies<D>(p, raw, info_nxt, src_nxt);

    // ---- S = Q K^T for rows rg*16.., keys half*16..
    {
      // Two independent accumulator chains (even / odd k steps) halve the mma dependency chain.
      float sacc[Mma::kRegsC], sacc2[Mma::kRegsC];
#pragma unroll
      for (int i = 0; i < Mma::kRegsC; ++i) sacc[i] = sacc2[i] = 0.f;
      const uint16_t *qa = qs + rg * 16 * S::kLdQ;
      const uint16_t *kb = ks + half * 16 * S::kLdK;
#pragma unroll 2
      for (int kk = 0; kk < D / 16; kk += 2) {
        typename Mma::FragA a0, a1;
        typename Mma::FragB b0, b1;
        Mma::load_a(a0, qa + kk * 16, S::kLdQ);
        Mma::load_b_nk(b0, kb + kk * 16, S::kLdK);
        Mma::load_a(a1, qa + kk * 16 + 16, S::kLdQ);
        Mma::load_b_nk(b1, kb + kk * 16 + 16, S::kLdK);
        Mma::mma(sacc, a0, b0);
        Mma::mma(sacc2, a1, b1);
      }
#pragma unroll
      for (int i = 0; i < Mma::kRegsC; ++i) sacc[i] += sacc2[i];
#pragma unroll
      for (int i = 0; i < Mma::kRegsC; ++i) {
        const int row = rg * 16 + Mma::c_row(lane, i);
        const int col = half * 16 + Mma::c_col(lane, i);
        ss[row * S::kLdS + col] = src_cur[col] >= 0 ? sacc[i] * cs_cur[col] * sl2 : dev::neg_inf();
      }
    }
    dev::block_sync();

    // ---- online softmax: row = tid / kTpr, columns (tid % kTpr) * kCpt ..
    {
      const int row = tid / kTpr, c0 = (tid % kTpr) * kCpt;
      float v[kCpt];
#pragma unroll
      for (int i = 0; i < kCpt; ++i) v[i] = ss[row * S::kLdS + c0 + i];
      float mx = v[0];
#pragma unroll
      for (int i = 1; i < kCpt; ++i) mx = fmaxf(mx, v[i]);
      mx = dev::group_max<kTpr>(mx);
      const float m_old = row_m[row];
      const float m_new = fmaxf(m_old, mx);
      const bool none = m_new == dev::neg_inf();
      const float alpha = none ? 1.f : exp2f(m_old - m_new);
      float sum = 0.f;
      uint32_t pk[kCpt / 2];
#pragma unroll
      for (int i = 0; i < kCpt; i += 2) {
        const float p0 = (v[i] == dev::neg_inf()) ? 0.f : exp2f(v[i] - m_new);
        const float p1 = (v[i + 1] == dev::neg_inf()) ? 0.f : exp2f(v[i + 1] - m_new);
        sum += p0 + p1;
        pk[i / 2] = dev::pack_bf16x2(p0 * cs_cur[c0 + i], p1 * cs_cur[c0 + i + 1]);
      }
      sum = dev::group_sum<kTpr>(sum);
      // Every lane of the row group has read its scores before P overwrites them.
      dev::warp_sync();
      uint32_t *prow = reinterpret_cast<uint32_t *>(ps + row * S::kLdP + c0);
#pragma unroll
      for (int i = 0; i < kCpt / 2; ++i) prow[i] = pk[i];
      if ((tid % kTpr) == 0) {
        row_m[row] = m_new;
        row_l[row] = row_l[row] * alpha + sum;
        row_a[row] = alpha;
      }
    }
    dev::block_sync();

    // ---- O = alpha * O + P V for rows rg*16.., value dims half*256..
    {
#pragma unroll
      for (int i = 0; i < Mma::kRegsC; ++i) {
        const float a = row_a[rg * 16 + Mma::c_row(lane, i)];
#pragma unroll
        for (int j = 0; j < 16; ++j) o[j][i] *= a;
      }
      const uint16_t *pa = ps + rg * 16 * S::kLdP;
#pragma unroll
      for (int kk = 0; kk < kAttnBN / 16; ++kk) {
        typename Mma::FragA a;
        Mma::load_a(a, pa + kk * 16, S::kLdP);
        const uint16_t *vb = ks + kk * 16 * S::kLdK + half * 256;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
          typename Mma::FragB b;
          Mma::load_b_kn(b, vb + j * 16, S::kLdK);
          Mma::mma(o[j], a, b);
        }
      }
    }
    if (more) dev::async_wait_all();
    dev::block_sync();
  }

  // ---- epilogue: per-row factors, lse, max logits
  float *row_f = row_a;  // reuse: final factor per row
  if (tid < kAttnBM) {
    const int h = h0 + tid;
    float f = 0.f;  // rows past H are never stored
    if (h < p.H) {
      const AttnRowStats rs = attn_row_stats(p, h, row_m[tid], row_l[tid]);
      attn_row_write_stats(p, t, h, split, rs);
      f = rs.f;
    }
    row_f[tid] = f;
  }
  dev::block_sync();
#pragma unroll
  for (int i = 0; i < Mma::kRegsC; ++i) {
    const int r = rg * 16 + Mma::c_row(lane, i);
    const int h = h0 + r;
    if (h >= p.H) continue;
    const float f = row_f[r];
    if (p.num_splits > 1) {
      float *dst = p.part_o + (((int64_t)split * p.T + t) * p.H + h) * kDV + half * 256;
#pragma unroll
      for (int j = 0; j < 16; ++j) dst[j * 16 + Mma::c_col(lane, i)] = o[j][i] * f;
    } else {
      uint16_t *dst = p.out + (int64_t)t * p.out_stride_t + (int64_t)h * p.out_stride_h + half * 256;
#pragma unroll
      for (int j = 0; j < 16; ++j) dst[j * 16 + Mma::c_col(lane, i)] = dev::f32_to_bf16(o[j][i] * f);
    }
  }
}

// Merges the splits' partials: one block of 128 threads per (token, head).
// Every load a thread makes is issued before any of them is used: the splits' (lse, max) pairs
// by one thread each into shared memory (num_splits <= 64), then each thread's 4 values of O from
// 4 splits at a time. Read in the loop that uses them, they cost one L2 round trip per split and
// pass, one after the other (sass_check.py --load-use listed 35 such loads in the old kernel). The
// arithmetic and its order are the old kernel's: sequential over the splits, in split order.
static __global__ void __launch_bounds__(128) sparse_attention_combine_kernel(const AttnParams p) {
  constexpr int kMaxSplits = 64;  // attn_schedule's bound
  __shared__ float s_lse[kMaxSplits], s_max[kMaxSplits];
  const int t = blockIdx.x, h = blockIdx.y;
  const int ns = p.num_splits;
  // Launched as the attention kernel's programmatic dependent (CUDA sm_90), it may start before
  // that grid ends: the partials are read only after it has (a no-op elsewhere).
  dev::grid_dependency_wait();
  if ((int)threadIdx.x < ns) {
    const int64_t pi = ((int64_t)threadIdx.x * p.T + t) * p.H + h;
    s_lse[threadIdx.x] = p.part_lse[pi];
    s_max[threadIdx.x] = p.part_max[pi];
  }
  dev::block_sync();
  float lmax = dev::neg_inf(), mxl = dev::neg_inf();
  for (int s = 0; s < ns; ++s) {
    lmax = fmaxf(lmax, s_lse[s]);
    mxl = fmaxf(mxl, s_max[s]);
  }
  float lse, sinkf = 1.f;
  const bool empty = lmax == dev::neg_inf();
  if (empty) {
    lse = dev::pos_inf();
  } else {
    float tot = 0.f;
    for (int s = 0; s < ns; ++s) tot += expf(s_lse[s] - lmax);
    lse = lmax + logf(tot);
    if (p.sink) sinkf = 1.f / (1.f + expf(p.sink[(int64_t)h * p.sink_stride] - lse));
  }
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  if (!empty) {
    constexpr int kAhead = 4;
    for (int s0 = 0; s0 < ns; s0 += kAhead) {
      float4 v[kAhead];
      bool has[kAhead];
#pragma unroll
      for (int k = 0; k < kAhead; ++k) {
        const int s = s0 + k;
        // A split without keys (lse -inf) may have left its O rows unwritten: not read.
        has[k] = s < ns && s_lse[s < ns ? s : 0] != dev::neg_inf();
        v[k] = has[k] ? reinterpret_cast<const float4 *>(p.part_o + (((int64_t)s * p.T + t) * p.H + h) * kDV)[threadIdx.x]
                      : make_float4(0.f, 0.f, 0.f, 0.f);
      }
#pragma unroll
      for (int k = 0; k < kAhead; ++k) {
        if (!has[k]) continue;
        const float w = expf(s_lse[s0 + k] - lse);
        acc[0] += w * v[k].x;
        acc[1] += w * v[k].y;
        acc[2] += w * v[k].z;
        acc[3] += w * v[k].w;
      }
    }
  }
  uint16_t *dst = p.out + (int64_t)t * p.out_stride_t + (int64_t)h * p.out_stride_h + threadIdx.x * 4;
#pragma unroll
  for (int i = 0; i < 4; ++i) dst[i] = dev::f32_to_bf16(acc[i] * sinkf);
  if (threadIdx.x == 0) {
    p.lse[(int64_t)t * p.lse_stride_t + (int64_t)h * p.lse_stride_h] = lse;
    if (p.max_logits) p.max_logits[(int64_t)t * p.ml_stride_t + (int64_t)h * p.ml_stride_h] = mxl;
  }
}

}  // namespace kern
}  // namespace spmla
