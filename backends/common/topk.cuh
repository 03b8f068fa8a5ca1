// topk.cuh — topk_per_row: radix select, deterministic.
//
// One block per row. Values map to 32-bit keys ordered like the reference's total order
// (NaN lowest and all NaNs equal, -0 == +0). Three histogram passes (11/11/10 bits) find the
// k-th largest key T exactly; then every key > T is selected and the (k - #greater) keys == T
// with the smallest columns. A final pass in column order with a block-wide scan writes the
// selected columns ascending, relative to the row start. Ties therefore go to the smaller column,
// and the result does not depend on thread timing.
#pragma once
#include "compat.h"
#include "params.h"

namespace spmla {
namespace kern {

constexpr int kTopkThreads = 1024;
constexpr int kTopkBins = 2048;

SPMLA_DEVICE uint32_t topk_key(float v) {
  uint32_t u = dev::f32_as_u32(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0u;  // NaN: below everything
  if ((u & 0x7fffffffu) == 0u) u = 0u;              // -0 == +0
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

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

// Block-wide exclusive scan of one int per thread; returns the exclusive prefix, sets total.
SPMLA_DEVICE int block_exclusive_scan(int v, int *warp_buf, int &total) {
  constexpr int kWarps = kTopkThreads / SPMLA_WARP_SIZE;
  const int lane = dev::lane_id(), warp = dev::warp_id();
  int x = v;
#pragma unroll
  for (int d = 1; d < SPMLA_WARP_SIZE; d <<= 1) {
    const int y = dev::shfl_up(x, d);
    if (lane >= d) x += y;
  }
  if (lane == SPMLA_WARP_SIZE - 1) warp_buf[warp] = x;
  __syncthreads();
  if (warp == 0) {
    int w = lane < kWarps ? warp_buf[lane] : 0;
    int z = w;
#pragma unroll
    for (int d = 1; d < SPMLA_WARP_SIZE; d <<= 1) {
      const int y = dev::shfl_up(z, d);
      if (lane >= d) z += y;
    }
    if (lane < kWarps) warp_buf[lane] = z - w;  // exclusive warp offsets
    if (lane == kWarps - 1) warp_buf[kWarps] = z;
  }
  __syncthreads();
  const int res = warp_buf[warp] + x - v;
  total = warp_buf[kWarps];
  __syncthreads();
  return res;
}

__global__ void __launch_bounds__(kTopkThreads) topk_per_row_kernel(const TopkParams p) {
  __shared__ int hist[kTopkBins];
  __shared__ int warp_buf[kTopkThreads / SPMLA_WARP_SIZE + 1];
  __shared__ uint32_t sel_bin;
  __shared__ int sel_remaining;
  const int r = blockIdx.x;
  const int tid = threadIdx.x;
  int64_t s, e;
  topk_row_range(p, r, s, e);
  const int len = e > s ? (int)(e - s) : 0;
  const int k = p.k;
  int32_t *out = p.out + (int64_t)r * p.out_stride;
  const float *row = p.logits + (int64_t)r * p.row_stride + s;
  if (len <= k) {
    for (int i = tid; i < k; i += kTopkThreads) out[i] = i < len ? i : -1;
    return;
  }
  // ---- radix select of the k-th largest key
  uint32_t prefix = 0, mask = 0;
  int remaining = k;
  const int shifts[3] = {21, 10, 0};
  const int widths[3] = {11, 11, 10};
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = shifts[pass];
    const uint32_t bmask = (1u << widths[pass]) - 1u;
    for (int i = tid; i < kTopkBins; i += kTopkThreads) hist[i] = 0;
    __syncthreads();
    for (int i = tid; i < len; i += kTopkThreads) {
      const uint32_t key = topk_key(row[i]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & bmask], 1);
    }
    __syncthreads();
    // Suffix counts from the top bin: thread j owns bins [2j, 2j+1] counted from the top.
    constexpr int kPer = kTopkBins / kTopkThreads;
    int local[kPer];
    int lsum = 0;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int bin = (int)bmask - (tid * kPer + i);  // descending
      local[i] = bin >= 0 ? hist[bin] : 0;
      lsum += local[i];
    }
    int total;
    int above = block_exclusive_scan(lsum, warp_buf, total);  // count in bins above my first
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int bin = (int)bmask - (tid * kPer + i);
      if (bin >= 0 && above < remaining && above + local[i] >= remaining) {
        sel_bin = (uint32_t)bin;
        sel_remaining = remaining - above;
      }
      above += local[i];
    }
    __syncthreads();
    prefix |= sel_bin << shift;
    mask |= bmask << shift;
    remaining = sel_remaining;
    __syncthreads();
  }
  const uint32_t thr = prefix;
  const int need_eq = remaining;  // keys == thr to take (smallest columns)
  // ---- ordered compaction: thread tid owns columns [tid*E, min(len, (tid+1)*E))
  const int E = (len + kTopkThreads - 1) / kTopkThreads;
  const int c0 = min(len, tid * E), c1 = min(len, c0 + E);
  int gt = 0, eq = 0;
  for (int i = c0; i < c1; ++i) {
    const uint32_t key = topk_key(row[i]);
    gt += key > thr;
    eq += key == thr;
  }
  int tot;
  const int eq_before = block_exclusive_scan(eq, warp_buf, tot);
  const int take_eq = max(0, min(eq, need_eq - eq_before));
  const int pos0 = block_exclusive_scan(gt + take_eq, warp_buf, tot);
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

}  // namespace kern
}  // namespace spmla
