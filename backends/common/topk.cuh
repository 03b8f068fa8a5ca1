// topk.cuh — topk_per_row: radix select, deterministic.
//
// Values map to 32-bit keys ordered like the reference's total order (NaN lowest and all NaNs
// equal, -0 == +0). Both kernels find the k-th largest key T exactly with histogram passes (the
// portable kernel: 11/11/10 bits of the key; the fast kernel: see below), select every key > T
// and the (k - #greater) keys == T with the smallest columns, and write the selected columns
// ascending, relative to the row start, from a block-wide scan. Ties therefore go to the smaller
// column, and the result does not depend on thread timing.
//
// Two kernels, one block per row:
//  - topk_per_row_kernel (portable; HIP, and CUDA when the fast plan does not fit): the three
//    passes and an ordered compaction pass all read the row from global memory.
//  - topk_per_row_fast_kernel (CUDA plan from launch_topk; ~75 KiB of shared memory at 3 blocks
//    per SM): reads the row ONCE, with 16-byte loads, and keeps only the candidates, the values
//    >= a lower bound `lo`, as (bits, column) pairs in shared memory. `lo` comes from a strided
//    sample of the row (4 * SV values per thread) such that 1.5-2 k keys are expected above
//    it; when the row fits the list, lo = 0. The histogram passes then run over the candidates
//    alone: the digits are those of key - (smallest candidate key), as many bits as the
//    candidates' range needs (for normal data the first 11-bit pass already leaves a few keys),
//    and a last bin of at most a warp's width of keys is ranked by one warp instead of more
//    passes. The selection is marked in a per-row bitmap, and the output is a scan over the
//    bitmap (ascending columns by construction; the keys == T are taken lowest columns first).
//    If the sample misjudged the row (fewer than k candidates, or more than the list holds) the
//    block falls back to the global-memory passes of the portable kernel for that row: slower,
//    same result.
//  - topk_sample_kernel, before the fast kernel's split configuration (kSplit; the first one):
//    a sample of NS vectors per row, one warp per row, whose `lo` the fast kernel then reads
//    from out[r][0]. The fast kernel is launched as its programmatic dependent (sm_90): it
//    issues its first loads while the sample kernel finishes, and waits only before that read.
// Why the split: with the sample inside the block, every block waited on scattered loads and
// barriers before its stream could start (split: 0.2589 against 0.2848 ms on the H200).
// Why 160 sample places and the dependent launch: half the sampler's scattered loads for ~18 %
// more candidates, and no gap between the kernels (0.2561 -> 0.2375 ms together).
// Measurements, what the time goes to, and the variants not kept: docs/KERNEL-NOTES.md (topk).
#pragma once
#include "compat.h"
#include "params.h"

namespace spmla {
namespace kern {

constexpr int kTopkThreads = 1024;
constexpr int kTopkBins = 2048;

SPMLA_DEVICE uint32_t topk_key_bits(uint32_t u) {
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0u;  // NaN: below everything
  if ((u & 0x7fffffffu) == 0u) u = 0u;              // -0 == +0
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
SPMLA_DEVICE uint32_t topk_key(float v) { return topk_key_bits(dev::f32_as_u32(v)); }

SPMLA_DEVICE void topk_row_range(const TopkParams &p, int r, int64_t &s, int64_t &e) {
  s = 0;
  e = p.C;
  if (p.context_lens) {
    const int nn = p.next_n >= 1 ? p.next_n : 1;
    e = (int64_t)p.context_lens[(int64_t)(r / nn) * p.cl_stride] - nn + r % nn + 1;
  } else {
    if (p.row_starts) s = p.row_starts[(int64_t)r * p.rs_stride];
    if (p.row_ends) e = p.row_ends[(int64_t)r * p.re_stride];
  }
  if (s < 0) s = 0;
  if (e > p.C) e = p.C;
}

// Block-wide exclusive scan of one int per thread (NT threads); sets total. One barrier: a caller
// that reuses `wbuf` (NT / warp size ints) must have another barrier in between.
template <int NT>
SPMLA_DEVICE int topk_block_scan(int v, int *wbuf, int &total) {
  constexpr int kWarps = NT / SPMLA_WARP_SIZE;
  const int lane = dev::lane_id(), warp = dev::warp_id();
  int x = v;
#pragma unroll
  for (int d = 1; d < SPMLA_WARP_SIZE; d <<= 1) {
    const int y = dev::shfl_up(x, d);
    if (lane >= d) x += y;
  }
  if (lane == SPMLA_WARP_SIZE - 1) wbuf[warp] = x;
  __syncthreads();
  int before = 0, tot = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const int t = wbuf[w];
    before += w < warp ? t : 0;
    tot += t;
  }
  total = tot;
  return before + x - v;
}

// The same for two ints per thread at once (one barrier): exclusive prefixes of a and b, with the
// per-warp sums in wa and wb (NT / warp size ints each).
template <int NT>
SPMLA_DEVICE int2 topk_block_scan2(int a, int b, int *wa, int *wb) {
  constexpr int kWarps = NT / SPMLA_WARP_SIZE;
  const int lane = dev::lane_id(), warp = dev::warp_id();
  int x = a, y = b;
#pragma unroll
  for (int d = 1; d < SPMLA_WARP_SIZE; d <<= 1) {
    const int xs = dev::shfl_up(x, d), ys = dev::shfl_up(y, d);
    if (lane >= d) x += xs, y += ys;
  }
  if (lane == SPMLA_WARP_SIZE - 1) wa[warp] = x, wb[warp] = y;
  __syncthreads();
  int xb = 0, yb = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    xb += w < warp ? wa[w] : 0;
    yb += w < warp ? wb[w] : 0;
  }
  return make_int2(xb + x - a, yb + y - b);
}

// The bin of hist[0, nbins) at which the count from the top bin down first reaches `remaining`;
// `rem` becomes what is still to take inside that bin (and, kCount, `*cnt` the bin's count: res
// then holds 3 ints). Returns -1 (rem = remaining) when the histogram holds fewer (kCount: the
// caller must know it holds at least `remaining`; no check then). Two barriers;
// hist is only read before the first, so the caller may clear it right after, and the next call
// may reuse wbuf and res.
template <int NT, bool kCount = false>
SPMLA_DEVICE int topk_select_bin(const int *hist, int nbins, int remaining, int *wbuf, int *res, int &rem,
                                 int *cnt = nullptr) {
  constexpr int kPer = (kTopkBins + NT - 1) / NT;
  const int tid = threadIdx.x;
  int local[kPer];
  int lsum = 0;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int bin = nbins - 1 - (tid * kPer + i);  // descending
    local[i] = bin >= 0 ? hist[bin] : 0;
    lsum += local[i];
  }
  int total;
  int above = topk_block_scan<NT>(lsum, wbuf, total);  // count in the bins above my first
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int bin = nbins - 1 - (tid * kPer + i);
    if (bin >= 0 && above < remaining && above + local[i] >= remaining) {
      res[0] = bin;
      res[1] = remaining - above;
      if (kCount) res[2] = local[i];
    }
    above += local[i];
  }
  __syncthreads();
  if (!kCount && total < remaining) {  // (kCount callers know the histogram holds `remaining`)
    rem = remaining;
    return -1;
  }
  rem = res[1];
  if (kCount) *cnt = res[2];
  return res[0];
}

// The portable row: three radix passes over the row in global memory, then an ordered compaction
// pass (thread t owns a contiguous run of columns). hist: kTopkBins ints, wbuf: NT / warp size
// ints, res: 2 ints, all shared. Requires len > k.
template <int NT>
SPMLA_DEVICE void topk_row_global(const float *row, int len, int k, int32_t *out, int *hist, int *wbuf, int *res) {
  const int tid = threadIdx.x;
  uint32_t prefix = 0, mask = 0;
  int remaining = k;
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = pass == 0 ? 21 : pass == 1 ? 10 : 0;  // 11, 11, 10 bits
    const uint32_t bmask = pass == 2 ? 1023u : 2047u;
    for (int i = tid; i < kTopkBins; i += NT) hist[i] = 0;
    __syncthreads();
    for (int i = tid; i < len; i += NT) {
      const uint32_t key = topk_key(row[i]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & bmask], 1);
    }
    __syncthreads();
    int rem;
    const int bin = topk_select_bin<NT>(hist, (int)bmask + 1, remaining, wbuf, res, rem);
    prefix |= (uint32_t)bin << shift;
    mask |= bmask << shift;
    remaining = rem;
  }
  const uint32_t thr = prefix;
  const int need_eq = remaining;  // keys == thr to take (smallest columns)
  const int E = (len + NT - 1) / NT;
  const int c0 = min(len, tid * E), c1 = min(len, c0 + E);
  int gt = 0, eq = 0;
  for (int i = c0; i < c1; ++i) {
    const uint32_t key = topk_key(row[i]);
    gt += key > thr;
    eq += key == thr;
  }
  int tot;
  const int eq_before = topk_block_scan<NT>(eq, wbuf, tot);
  const int take_eq = max(0, min(eq, need_eq - eq_before));
  __syncthreads();  // wbuf reuse
  const int pos0 = topk_block_scan<NT>(gt + take_eq, wbuf, tot);
  int pos = pos0, eq_seen = 0;
  for (int i = c0; i < c1; ++i) {
    const uint32_t key = topk_key(row[i]);
    bool take = key > thr;
    if (key == thr) {
      take = eq_seen < take_eq;
      ++eq_seen;
    }
    if (take) out[pos++] = i;
  }
}

__global__ void __launch_bounds__(kTopkThreads) topk_per_row_kernel(const TopkParams p) {
  __shared__ int hist[kTopkBins];
  __shared__ int wbuf[kTopkThreads / SPMLA_WARP_SIZE];
  __shared__ int res[2];
  const int r = blockIdx.x;
  int64_t s, e;
  topk_row_range(p, r, s, e);
  const int len = e > s ? (int)(e - s) : 0;
  const int k = p.k;
  int32_t *out = p.out + (int64_t)r * p.out_stride;
  if (len <= k) {
    for (int i = threadIdx.x; i < k; i += kTopkThreads) out[i] = i < len ? i : -1;
    return;
  }
  topk_row_global<kTopkThreads>(p.logits + (int64_t)r * p.row_stride + s, len, k, out, hist, wbuf, res);
}

// ------------------------------------------------------------------------------- fast path
// Dynamic shared memory of the fast kernel, in 4-byte words: histA[2048] histB[2048] misc[96]
// sel[words] eq[words], then cand[cap] as (value bits, column) pairs, the bits replaced by keys
// after the stream. `words` covers C columns.
constexpr int kTopkFastMiscWords = 96;
SPMLA_HOST_DEVICE int topk_fast_words(int64_t C) { return (int)(((C + 31) / 32 + 3) & ~(int64_t)3); }
SPMLA_HOST_DEVICE size_t topk_fast_smem_bytes(int words, int cap) {
  return 4 * (size_t)(2 * kTopkBins + kTopkFastMiscWords + 2 * words) + 8 * (size_t)cap;
}
// misc: wbufA[32] wbufB[32] res[4] ncand kmin kmax nsmall
constexpr int kTopkMiscRes = 64, kTopkMiscNcand = 68, kTopkMiscKmin = 69, kTopkMiscKmax = 70, kTopkMiscSmall = 71;

// One iteration's U vectors of this thread: p[u * NT] while u * NT < left (zeros past the row).
template <int NT, int U>
SPMLA_DEVICE void topk_load_iter(const uint4 *p, int left, uint4 *v) {
#pragma unroll
  for (int u = 0; u < U; ++u) v[u] = u * NT < left ? dev::ld16_readonly(p + u * NT) : make_uint4(0u, 0u, 0u, 0u);
}

// L2 prefetch of one iteration (no registers held; a no-op where the vendor has none).
template <int NT, int U>
SPMLA_DEVICE void topk_prefetch_iter(const uint4 *p, int left) {
#pragma unroll
  for (int u = 0; u < U; ++u)
    if (u * NT < left) dev::prefetch_l2(p + u * NT);
}

// The smallest value whose key is >= lo, or a value below it (lo > 0): v >= topk_key_floor(lo)
// holds for every non-NaN v with topk_key(v) >= lo and is false for NaN.
SPMLA_DEVICE float topk_key_floor(uint32_t lo) {
  if (lo >= 0x80000000u) {  // +0 and above (+0 also admits -0: -0 >= +0)
    const uint32_t u = lo & 0x7fffffffu;
    return dev::u32_as_f32(u > 0x7f800000u ? 0x7f800000u : u);  // (NaN codes: +inf, a superset)
  }
  const uint32_t u = ~lo;                                       // a negative value
  return dev::u32_as_f32(u > 0xff800000u ? 0xff800000u : u);   // (NaN codes: -inf)
}

// Where one row lies, and whether the fast kernel samples it.
struct TopkRowGeo {
  const float *row;
  const uint4 *row4;  // the 16-byte aligned part: columns [head, head + 4 * n4)
  int len, head, n4;
  bool sampled;
};
template <int NT, int SV>
SPMLA_DEVICE TopkRowGeo topk_row_geo(const TopkParams &p, int r, int cap) {
  TopkRowGeo g;
  int64_t s, e;
  topk_row_range(p, r, s, e);
  g.len = e > s ? (int)(e - s) : 0;
  g.row = p.logits + (int64_t)r * p.row_stride + s;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(g.row);
  g.head = (addr & 3u) ? g.len : min(g.len, (int)(((16u - (addr & 15u)) & 15u) >> 2));
  g.n4 = (g.len - g.head) >> 2;
  g.row4 = reinterpret_cast<const uint4 *>(g.row + g.head);
  g.sampled = g.len > p.k && g.len > cap && g.n4 >= NT * SV;
  return g;
}

// The sample: NT * SV vectors spread evenly over the row, vector i of them at sample_at(i) (the
// block reads i = thread + j * NT; the sample kernel, NS places of its own, calls it with
// NT * SV = NS and i = lane + j * warp size). ~k * ns / len of its ns keys lie above the k-th
// largest; the bound asks for 4 sigma (Poisson) more, `target` keys.
template <int NT, int SV>
SPMLA_DEVICE const uint4 *topk_sample_at(const TopkRowGeo &g, int64_t i) {
  return g.row4 + (int)(i * g.n4 / (NT * SV));
}
SPMLA_DEVICE int topk_sample_target(int k, int ns, int len) {
  const float expect = (float)k * (float)ns / (float)len;
  return (int)ceilf(expect + 4.0f * sqrtf(expect) + 4.0f);
}

// The first loads of a row: its sample (SV vectors per thread) into registers, its first PF
// iterations into L2.
template <int NT, int U, int SV, int PF>
SPMLA_DEVICE void topk_row_issue(const TopkRowGeo &g, uint4 *sv) {
  if (g.sampled) {
#pragma unroll
    for (int j = 0; j < SV; ++j) sv[j] = dev::ld16_readonly(topk_sample_at<NT, SV>(g, threadIdx.x + j * NT));
  }
#pragma unroll
  for (int i = 0; i < PF; ++i)
    topk_prefetch_iter<NT, U>(g.row4 + threadIdx.x + i * NT * U, g.n4 - (int)threadIdx.x - i * NT * U);
}
// ---- the sample, as its own kernel: one warp per row finds the row's lower bound `lo` before the
// fast kernel runs, and leaves it in out[r][0] (the fast kernel reads it first and overwrites the
// row last; outputs never overlap themselves). The same kind of places and target as the
// in-block sample, NS vectors per row; `lo` is 16 bits of key here (two 8-bit digits) instead of
// 22, which admits a few more candidates (a 1/128-octave bin) and costs a warp far less.
constexpr int kTopkSampleWarps = 8;
constexpr int kTopkSampleBins = 256;  // 8-bit digits: lo is the target-th largest key's top 16 bits

// The bin of the warp's histogram h[0, 256) at which the count from the top bin down first reaches
// `remaining` (-1 when it holds fewer); rem = what is still to take inside it. Warp-uniform.
SPMLA_DEVICE int topk_warp_select_bin(const int *h, int remaining, int &rem) {
  constexpr int kPer = kTopkSampleBins / SPMLA_WARP_SIZE;
  const int lane = dev::lane_id();
  int local[kPer], s = 0;
#pragma unroll
  for (int i = 0; i < kPer; ++i) s += local[i] = h[kTopkSampleBins - 1 - (lane * kPer + i)];  // descending
  int incl = s;
#pragma unroll
  for (int d = 1; d < SPMLA_WARP_SIZE; d <<= 1) {
    const int y = dev::shfl_up(incl, d);
    if (lane >= d) incl += y;
  }
  int above = incl - s, who = SPMLA_WARP_SIZE, bin = -1, left = remaining;
  if (above < remaining && incl >= remaining) {  // at most one lane
    who = lane;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      if (bin < 0 && above + local[i] >= remaining) bin = kTopkSampleBins - 1 - (lane * kPer + i), left = remaining - above;
      above += local[i];
    }
  }
#pragma unroll
  for (int d = SPMLA_WARP_SIZE / 2; d >= 1; d >>= 1) who = min(who, dev::shfl_xor(who, d));
  if (who == SPMLA_WARP_SIZE) {
    rem = remaining;
    return -1;
  }
  rem = dev::shfl(left, who);
  return dev::shfl(bin, who);
}

// NS: 16-byte vectors sampled per row, at most the fast kernel's NT * SV. The rows it samples are
// the fast kernel's: both need len > k and len > cap, and cap >= 4 * NT * SV + 8 leaves n4 >= NT *
// SV >= NS. (A bound that misjudges a row costs time, never the result: the fast kernel checks.)
template <int NS>
__global__ void __launch_bounds__(kTopkSampleWarps * SPMLA_WARP_SIZE) topk_sample_kernel(const TopkParams p, int cap) {
  constexpr int kVec = NS / SPMLA_WARP_SIZE;  // sample vectors per lane
  static_assert(NS % SPMLA_WARP_SIZE == 0, "whole warps");
  __shared__ int hist[kTopkSampleWarps][2][kTopkSampleBins];
  dev::grid_launch_dependents();  // the fast kernel may be scheduled now; it waits before reading lo
  const int warp = dev::warp_id(), lane = dev::lane_id();
  const int r = blockIdx.x * kTopkSampleWarps + warp;
  if (r >= p.R) return;  // (warp-level synchronisation only below)
  const TopkRowGeo g = topk_row_geo<NS, 1>(p, r, cap);
  if (!g.sampled) return;
  uint4 v[kVec];
#pragma unroll
  for (int j = 0; j < kVec; ++j) v[j] = dev::ld16_readonly(topk_sample_at<NS, 1>(g, lane + j * SPMLA_WARP_SIZE));
  int *h1 = hist[warp][0], *h2 = hist[warp][1];
  for (int i = lane; i < 2 * kTopkSampleBins; i += SPMLA_WARP_SIZE) h1[i] = 0;
  dev::warp_sync();
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    atomicAdd(&h1[topk_key_bits(v[j].x) >> 24], 1);
    atomicAdd(&h1[topk_key_bits(v[j].y) >> 24], 1);
    atomicAdd(&h1[topk_key_bits(v[j].z) >> 24], 1);
    atomicAdd(&h1[topk_key_bits(v[j].w) >> 24], 1);
  }
  dev::warp_sync();
  int rem;
  uint32_t lo = 0;
  const int b1 = topk_warp_select_bin(h1, topk_sample_target(p.k, 4 * NS, g.len), rem);
  if (b1 >= 0) {
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const uint32_t w[4] = {v[j].x, v[j].y, v[j].z, v[j].w};
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const uint32_t key = topk_key_bits(w[c]);
        if ((int)(key >> 24) == b1) atomicAdd(&h2[(key >> 16) & 255u], 1);
      }
    }
    dev::warp_sync();
    const int b2 = topk_warp_select_bin(h2, rem, rem);
    lo = ((uint32_t)b1 << 24) | ((uint32_t)b2 << 16);
  }
  if (lane == 0) p.out[(int64_t)r * p.out_stride] = (int32_t)lo;
}

// NT threads, MINB blocks per SM (the launcher sizes shared memory for it), U 16-byte loads per
// thread and iteration, SV sample vectors per thread, PF iterations prefetched into L2 ahead of
// the loads; one block per row. cap >= 4 * NT * SV + 8 when any row is longer than cap.
// kSplit: topk_sample_kernel ran just before with the same cap and leaves each sampled row's `lo`
// in out[r][0] (launched as its programmatic dependent, this kernel may start before that
// kernel has finished); otherwise the block takes the sample itself.
// (Measured no faster on the H200 and not kept: streaming loads, and an L2 prefetch of a later
// block's row once this block's row is read.)
template <int NT, int MINB, int U, int SV, int PF, bool kSplit>
__global__ void __launch_bounds__(NT, MINB) topk_per_row_fast_kernel(const TopkParams p, int words, int cap) {
  static_assert(NT % SPMLA_WARP_SIZE == 0 && NT / SPMLA_WARP_SIZE <= 32, "scan buffers hold 32 warps");
  constexpr int kStep = NT * U;  // vectors per iteration
  extern __shared__ uint4 topk_smem[];
  int *histA = reinterpret_cast<int *>(topk_smem);
  int *histB = histA + kTopkBins;
  int *misc = histB + kTopkBins;
  int *wbufA = misc, *wbufB = misc + 32, *res = misc + kTopkMiscRes;
  uint32_t *miscu = reinterpret_cast<uint32_t *>(misc);
  uint32_t *sel = reinterpret_cast<uint32_t *>(misc + kTopkFastMiscWords);
  uint32_t *eqm = sel + words;
  uint2 *cand = reinterpret_cast<uint2 *>(eqm + words);

  const int r = blockIdx.x, tid = threadIdx.x, lane = dev::lane_id(), warp = dev::warp_id();
  const int k = p.k;
  const TopkRowGeo g = topk_row_geo<NT, SV>(p, r, cap);
  const int len = g.len;
  int32_t *out = p.out + (int64_t)r * p.out_stride;
  if (len <= k) {
    for (int i = tid; i < k; i += NT) out[i] = i < len ? i : -1;
    return;
  }
  // kSplit: the row's bound comes from topk_sample_kernel (in out[0]). The first iteration's loads
  // go out first; the wait for the sample kernel comes before the one read of its output. (Rows
  // with len <= k returned above without waiting: the sample kernel never writes them.)
  // Otherwise the block samples the row itself first.
  uint32_t lo = 0;
  uint4 cur[U];
  [[maybe_unused]] uint4 sv[SV];
  if constexpr (kSplit) {
    topk_load_iter<NT, U>(g.row4 + tid, g.n4 - tid, cur);
#pragma unroll
    for (int i = 1; i < PF; ++i)
      topk_prefetch_iter<NT, U>(g.row4 + tid + i * kStep, g.n4 - tid - i * kStep);
    dev::grid_dependency_wait();
    lo = g.sampled ? (uint32_t)out[0] : 0u;
  } else {
    topk_row_issue<NT, U, SV, PF>(g, sv);
  }
  {  // histograms and bitmaps to zero (16-byte stores; 2 * words is a multiple of 4)
    uint4 *h4 = topk_smem;
    for (int i = tid; i < kTopkBins / 2; i += NT) h4[i] = make_uint4(0u, 0u, 0u, 0u);
    uint4 *b4 = reinterpret_cast<uint4 *>(sel);
    for (int i = tid; i < words / 2; i += NT) b4[i] = make_uint4(0u, 0u, 0u, 0u);
    if (tid == 0) {
      misc[kTopkMiscNcand] = 0;
      miscu[kTopkMiscKmin] = 0xffffffffu;
      miscu[kTopkMiscKmax] = 0u;
      misc[kTopkMiscSmall] = 0;
    }
  }
  __syncthreads();

  // ---- lower bound `lo` of the candidate keys: the target-th largest key of the sample, to 21 bits
  if (!kSplit && g.sampled) {  // block-uniform
    uint32_t sk[4 * SV];
#pragma unroll
    for (int j = 0; j < SV; ++j) {
      sk[4 * j + 0] = topk_key_bits(sv[j].x);
      sk[4 * j + 1] = topk_key_bits(sv[j].y);
      sk[4 * j + 2] = topk_key_bits(sv[j].z);
      sk[4 * j + 3] = topk_key_bits(sv[j].w);
    }
#pragma unroll
    for (int c = 0; c < 4 * SV; ++c) atomicAdd(&histA[sk[c] >> 21], 1);
    __syncthreads();
    int rem;
    const int b1 = topk_select_bin<NT>(histA, kTopkBins, topk_sample_target(k, 4 * NT * SV, len), wbufA, res, rem);
    if (b1 >= 0) {  // block-uniform
#pragma unroll
      for (int c = 0; c < 4 * SV; ++c)
        if ((int)(sk[c] >> 21) == b1) atomicAdd(&histB[(sk[c] >> 10) & 2047u], 1);
      __syncthreads();
      const int b2 = topk_select_bin<NT>(histB, kTopkBins, rem, wbufA, res, rem);
      lo = ((uint32_t)b1 << 21) | ((uint32_t)b2 << 10);
    }
    uint4 *h4 = topk_smem;  // read before the barriers; used again after the stream's barrier
    for (int i = tid; i < kTopkBins / 2; i += NT) h4[i] = make_uint4(0u, 0u, 0u, 0u);
  }
  // The stream compares values, not keys: {v >= vlo} holds every key >= lo and is closed upwards
  // in the key order (NaN lowest), which is all the selection below needs.
  const bool take_all = lo == 0u;
  const float vlo = topk_key_floor(lo);
  const int head = g.head, n4 = g.n4;
  const int iters = (n4 + kStep - 1) / kStep;
  if constexpr (!kSplit) topk_load_iter<NT, U>(g.row4 + tid, n4 - tid, cur);

  // ---- one pass over the row: keep (raw bits, column) of the values >= vlo
  const uint4 *src = g.row4 + tid;  // this thread's vectors of iteration it: src[u * NT], u * NT < left
  int left = n4 - tid;
  for (int it = 0; it < iters; ++it, src += kStep, left -= kStep) {
    // In flight: iteration it + 1 into registers, it + PF into L2 (block-uniform conditions).
    if (it + PF < iters) topk_prefetch_iter<NT, U>(src + PF * kStep, left - PF * kStep);
    uint4 nxt[U];
    if (it + 1 < iters) topk_load_iter<NT, U>(src + kStep, left - kStep, nxt);
    uint32_t m = 0;  // bit 4u + c: element (u, c) is a candidate
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const bool valid = u * NT < left;
      const uint32_t w[4] = {cur[u].x, cur[u].y, cur[u].z, cur[u].w};
#pragma unroll
      for (int c = 0; c < 4; ++c)
        m |= (valid && (take_all || dev::u32_as_f32(w[c]) >= vlo)) ? 1u << (4 * u + c) : 0u;
    }
    const int cnt = __popc(m);
    // Warp-level offsets: one shared atomic per warp and iteration.
    int incl = cnt;
#pragma unroll
    for (int d = 1; d < SPMLA_WARP_SIZE; d <<= 1) {
      const int y = dev::shfl_up(incl, d);
      if (lane >= d) incl += y;
    }
    const int wtot = dev::shfl(incl, SPMLA_WARP_SIZE - 1);
    if (wtot != 0) {  // warp-uniform
      int base = 0;
      if (lane == SPMLA_WARP_SIZE - 1) base = atomicAdd(&misc[kTopkMiscNcand], wtot);
      base = dev::shfl(base, SPMLA_WARP_SIZE - 1);
      int pos = base + incl - cnt;
      // kSplit: predicated stores, no per-value branch and no per-value `pos < cap`. A warp whose
      // candidates would pass the list's end stores none of them (warp-uniform test); its count
      // still lands in misc, so the row falls back below. Measured on the H200 (session 5): 2-4 %
      // faster than the branchy stores. The unsplit configuration keeps those: at its 64-register
      // cap the predicated form spills.
      if (!kSplit || base + wtot <= cap) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int col = head + 4 * (n4 - left + u * NT);
          const uint32_t w[4] = {cur[u].x, cur[u].y, cur[u].z, cur[u].w};
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            if constexpr (kSplit) {
              const uint32_t hit = (m >> (4 * u + c)) & 1u;
              if (hit) cand[pos] = make_uint2(w[c], (uint32_t)(col + c));
              pos += (int)hit;
            } else if (m & (1u << (4 * u + c))) {
              if (pos < cap) cand[pos] = make_uint2(w[c], (uint32_t)(col + c));
              ++pos;
            }
          }
        }
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) cur[u] = nxt[u];
  }
  const int tail0 = head + 4 * n4;
  const int nscalar = head + (len - tail0);
  for (int i = tid; i < nscalar; i += NT) {  // scalar head and tail
    const int c = i < head ? i : tail0 + (i - head);
    const float x = g.row[c];
    if (take_all || x >= vlo) {
      const int pos = atomicAdd(&misc[kTopkMiscNcand], 1);
      if (pos < cap) cand[pos] = make_uint2(dev::f32_as_u32(x), (uint32_t)c);
    }
  }
  __syncthreads();
  const int nc = misc[kTopkMiscNcand];
  if (nc > cap || nc < k) {  // the sample misjudged this row
    topk_row_global<NT>(g.row, len, k, out, histA, wbufA, res);
    return;
  }

  // ---- radix select over the candidates (all keys >= T are among them). The digits are those of
  // rel = key - base: base = the smallest candidate key and as many bits as the candidates' range
  // needs (for normal data the first 11-bit pass then already leaves few keys). Each pass counts
  // the candidates that match the digits found so far (rel >> sh == hiT) by their next digit; a
  // last bin of at most a warp's width of keys is ranked by one warp instead.
  uint32_t tkmin = 0xffffffffu, tkmax = 0u;
  for (int i = tid; i < nc; i += NT) {  // raw bits -> keys in place, and their range
    const uint32_t key = topk_key_bits(cand[i].x);
    cand[i].x = key;
    tkmin = min(tkmin, key);
    tkmax = max(tkmax, key);
  }
#pragma unroll
  for (int d = SPMLA_WARP_SIZE / 2; d >= 1; d >>= 1) {
    tkmin = min(tkmin, dev::shfl_xor(tkmin, d));
    tkmax = max(tkmax, dev::shfl_xor(tkmax, d));
  }
  if (lane == 0 && tkmin <= tkmax) {
    atomicMin(&miscu[kTopkMiscKmin], tkmin);
    atomicMax(&miscu[kTopkMiscKmax], tkmax);
  }
  __syncthreads();
  const uint32_t base = miscu[kTopkMiscKmin];
  const uint32_t diff = miscu[kTopkMiscKmax] - base;
  int sh = diff ? 32 - __clz((int)diff) : 0;
  uint32_t hiT = 0, T = 0;
  int remaining = k;
  int *hc = histB, *hn = histA;
  for (bool first = true;; first = false) {  // block-uniform
    const int width = min(11, sh), nsh = sh - width;
    const uint32_t wmask = (1u << width) - 1u;
    for (int i = tid; i < nc; i += NT) {
      const uint32_t rel = cand[i].x - base;
      if (first || (rel >> sh) == hiT) atomicAdd(&hc[(rel >> nsh) & wmask], 1);
    }
    __syncthreads();
    int rem, cnt;
    const int b = topk_select_bin<NT, true>(hc, kTopkBins, remaining, wbufA, res, rem, &cnt);  // holds it: nc >= k
    hiT = (hiT << width) | (uint32_t)b;
    remaining = rem;
    sh = nsh;
    if (sh == 0) {
      T = base + hiT;
      break;
    }
    if (cnt <= SPMLA_WARP_SIZE) {
      // The cnt candidates left: one warp ranks them (hn is zero and unused here).
      for (int i = tid; i < nc; i += NT) {
        const uint32_t key = cand[i].x;
        if (((key - base) >> sh) == hiT) hn[atomicAdd(&misc[kTopkMiscSmall], 1)] = (int)key;
      }
      __syncthreads();
      if (warp == 0) {
        const uint32_t key = lane < cnt ? (uint32_t)hn[lane] : 0u;
        int gt = 0, ge = 0;
        for (int j = 0; j < cnt; ++j) {
          const uint32_t o = dev::shfl(key, j);
          gt += o > key;
          ge += o >= key;
        }
        int who = (lane < cnt && gt < remaining && ge >= remaining) ? lane : SPMLA_WARP_SIZE;
#pragma unroll
        for (int d = SPMLA_WARP_SIZE / 2; d >= 1; d >>= 1) who = min(who, dev::shfl_xor(who, d));
        if (lane == who) {
          res[0] = (int)key;
          res[1] = remaining - gt;
        }
      }
      __syncthreads();
      T = (uint32_t)res[0];
      remaining = res[1];
      break;
    }
    if (sh > 11)  // hc is used again two passes on (read before select's barriers)
      for (int i = tid; i < kTopkBins; i += NT) hc[i] = 0;
    int *t = hc;
    hc = hn;
    hn = t;
  }
  const int need_eq = remaining;
  for (int i = tid; i < nc; i += NT) {
    const uint2 c = cand[i];
    if (c.x > T) atomicOr(&sel[c.y >> 5], 1u << (c.y & 31u));
    else if (c.x == T) atomicOr(&eqm[c.y >> 5], 1u << (c.y & 31u));
  }
  __syncthreads();

  // ---- output: thread t owns bitmap words [w0, w1); the keys == T go lowest columns first
  const int W = (len + 31) >> 5;
  const int wpt = (W + NT - 1) / NT;
  const int w0 = min(W, tid * wpt), w1 = min(W, w0 + wpt);
  int gtc = 0, eqc = 0;
  for (int w = w0; w < w1; ++w) gtc += __popc(sel[w]), eqc += __popc(eqm[w]);
  // One scan: the keys == T taken before this thread's words are min(eq before, need_eq).
  const int2 before = topk_block_scan2<NT>(gtc, eqc, wbufA, wbufB);
  int take = max(0, min(eqc, need_eq - before.y));
  int pos = before.x + min(before.y, need_eq);
  for (int w = w0; w < w1; ++w) {
    uint32_t m = sel[w], q = eqm[w];
    for (; take > 0 && q; --take) {
      m |= q & (0u - q);
      q &= q - 1u;
    }
    while (m) {
      out[pos++] = w * 32 + (__ffs((int)m) - 1);
      m &= m - 1u;
    }
  }
}

}  // namespace kern
}  // namespace spmla
