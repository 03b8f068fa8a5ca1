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
// 32 threads per row (shuffle width 32 <= any warp size), 8 rows per block. Each thread owns 16
// consecutive NoPE values; tiles (V32 128, V4 64, indexer Di) are aligned groups of threads.
constexpr int kStoreRowThreads = 32;
constexpr int kStoreRowsPerBlock = 8;

SPMLA_DEVICE void load16_bf16(const uint16_t *src, bool vec, float *x, uint16_t *xb) {
  if (vec) {
    const uint4 a = dev::ld16(src), b = dev::ld16(src + 8);
    const uint32_t w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      xb[2 * i] = (uint16_t)(w[i] & 0xffffu);
      xb[2 * i + 1] = (uint16_t)(w[i] >> 16);
    }
  } else {
#pragma unroll
    for (int i = 0; i < 16; ++i) xb[i] = src[i];
  }
#pragma unroll
  for (int i = 0; i < 16; ++i) x[i] = dev::bf16_to_f32(xb[i]);
}

template <int kGroup>
SPMLA_DEVICE float tile_amax(const float *x) {
  float m = 0.f;
#pragma unroll
  for (int i = 0; i < 16; ++i) m = fmaxf(m, fabsf(x[i]));  // fmaxf ignores NaN, like the reference
  return dev::group_max<kGroup>(m);
}

// x / scale; pow2 = scale is a power of two 2^-126..2^126, where x * (1 / scale) is the same
// exact quotient without a division.
SPMLA_DEVICE void quant16(const float *x, float scale, int flavor, uint8_t *dst, bool pow2 = false) {
  uint32_t w[4];
  const float inv = 1.f / scale;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    w[i] = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float q = pow2 ? x[4 * i + j] * inv : x[4 * i + j] / scale;
      w[i] |= dev::f32_to_fp8(q, flavor) << (8 * j);
    }
  }
  *reinterpret_cast<uint4 *>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
}

__global__ void __launch_bounds__(kStoreRowThreads *kStoreRowsPerBlock) kv_store_kernel(const StoreParams p, int vec) {
  const int lane = threadIdx.x % kStoreRowThreads;
  const int64_t n = (int64_t)blockIdx.x * kStoreRowsPerBlock + threadIdx.x / kStoreRowThreads;
  if (n >= p.N) return;  // whole 32-thread groups leave together
  const int64_t slot = p.slots_is64 ? reinterpret_cast<const int64_t *>(p.slots)[n * p.slots_stride]
                                    : (int64_t) reinterpret_cast<const int32_t *>(p.slots)[n * p.slots_stride];
  const CacheDesc &c = p.cache;
  if (slot < 0 || slot >= c.num_slots()) return;
  uint8_t *base = const_cast<uint8_t *>(c.base);
  const SlotOffsets o = slot_offsets(c, slot);
  uint8_t *row = base + o.data;
  const uint16_t *src = p.kv + n * p.kv_stride;
  const int D = c.dim;
  float x[16];
  uint16_t xb[16];
  switch (c.layout) {
    case kBF16: {
      for (int e = lane * 8; e < D; e += kStoreRowThreads * 8) {
        uint4 v;
        if (vec) v = dev::ld16(src + e);
        else {
          uint32_t w[4];
          for (int i = 0; i < 4; ++i) w[i] = (uint32_t)src[e + 2 * i] | ((uint32_t)src[e + 2 * i + 1] << 16);
          v = make_uint4(w[0], w[1], w[2], w[3]);
        }
        dev::st16(row + 2 * e, v);
      }
      break;
    }
    case kFP8PerTensor: {
      for (int e = lane * 16; e < D; e += kStoreRowThreads * 16) {
        load16_bf16(src + e, vec, x, xb);
        quant16(x, c.scale, c.flavor, row + e);
      }
      break;
    }
    case kV32: {
      load16_bf16(src + lane * 16, vec, x, xb);  // NoPE: 32 x 16 = 512
      const float amax = tile_amax<8>(x);
      const int k = ::spmla::tile_scale_exponent(amax, c.flavor == 2 ? Fp8Kind::E4M3FNUZ : Fp8Kind::E4M3FN);
      const float scale = ::spmla::exp2_int(k);
      quant16(x, scale, c.flavor, row + lane * 16, k >= -126 && k <= 126);
      if ((lane & 7) == 0) *reinterpret_cast<float *>(row + 512 + 4 * (lane >> 3)) = scale;
      if (lane < 8) {  // RoPE: 64 bf16 = 8 x 16 bytes
        const uint16_t *r = src + 512 + lane * 8;
        uint32_t w[4];
        for (int i = 0; i < 4; ++i) w[i] = (uint32_t)r[2 * i] | ((uint32_t)r[2 * i + 1] << 16);
        dev::st16(row + 528 + lane * 16, make_uint4(w[0], w[1], w[2], w[3]));
      }
      break;
    }
    case kV4: {
      uint8_t *srow = base + o.aux;
      if (lane < 28) {  // NoPE: 28 x 16 = 448, tiles of 64 = 4 threads
        load16_bf16(src + lane * 16, vec, x, xb);
      } else {
        for (int i = 0; i < 16; ++i) x[i] = 0.f;
      }
      const float amax = tile_amax<4>(x);
      const int k = ::spmla::tile_scale_exponent(amax, c.flavor == 2 ? Fp8Kind::E4M3FNUZ : Fp8Kind::E4M3FN);
      if (lane < 28) {
        quant16(x, ::spmla::exp2_int(k), c.flavor, row + lane * 16, k >= -126 && k <= 126);
        if ((lane & 3) == 0) srow[lane >> 2] = ::spmla::ue8m0_from_exponent(k);
      } else if (lane == 28) {
        srow[7] = 0;
      }
      if (lane < 8) {
        const uint16_t *r = src + 448 + lane * 8;
        uint32_t w[4];
        for (int i = 0; i < 4; ++i) w[i] = (uint32_t)r[2 * i] | ((uint32_t)r[2 * i + 1] << 16);
        dev::st16(row + 448 + lane * 16, make_uint4(w[0], w[1], w[2], w[3]));
      }
      // The page's tail padding beyond block_size * 584 is zeroed (as the reference does).
      const int64_t used = (int64_t)c.block_size * 584;
      const int64_t packed = (used + 575) / 576 * 576;
      uint8_t *page = base + (slot / c.block_size) * c.page_stride;
      for (int64_t b = used + lane; b < packed; b += kStoreRowThreads) page[b] = 0;
      break;
    }
    default: {  // INDEXER_FP8: Di in {64, 128}: Di/16 threads, one scale per token
      const bool act = lane * 16 < D;
      if (act) load16_bf16(src + lane * 16, vec, x, xb);
      else
        for (int i = 0; i < 16; ++i) x[i] = 0.f;
      float amax = 0.f;
      for (int i = 0; i < 16; ++i) amax = fmaxf(amax, fabsf(x[i]));
      amax = dev::group_max<kStoreRowThreads>(amax);
      if (!(amax > 1e-4f)) amax = 1e-4f;
      const float scale = amax / dev::fp8_max(c.flavor);
      if (act) quant16(x, scale, c.flavor, row + lane * 16);
      if (lane == 0) *reinterpret_cast<float *>(base + o.aux) = scale;
      break;
    }
  }
}

// ------------------------------------------------------------------ kv_cache_gather
__global__ void __launch_bounds__(256) kv_gather_kernel(const GatherParams p, int vec) {
  const int lane = threadIdx.x % 32;
  const int64_t n = (int64_t)blockIdx.x * 8 + threadIdx.x / 32;
  if (n >= p.N) return;
  const CacheDesc &c = p.cache;
  const int64_t slot = p.slots[n * p.slots_stride];
  const bool valid = slot >= 0 && slot < c.num_slots();
  const int D = c.dim;
  uint16_t *dst = p.out + n * p.out_stride;
  SlotOffsets o = {0, 0};
  if (valid) o = slot_offsets(c, slot);
  for (int e = lane * 8; e < D; e += 32 * 8) {
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (valid) v = dequant8(c, c.base + o.data, c.base + o.aux, e);
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
