// cpu_kv.cpp — KV-cache row decoding, kv_cache_store and kv_cache_gather (docs/SPEC.md ops 6 and 7).
#include <algorithm>
#include <cmath>

#include "cpu/cpu_internal.h"

namespace spmla {
namespace cpu {

namespace {

inline uint16_t load_u16(const uint8_t *p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline float load_f32(const uint8_t *p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void store_u16(uint8_t *p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void store_f32(uint8_t *p, float v) { std::memcpy(p, &v, 4); }

// amax of |x| over n bf16 values given as fp32; NaN inputs are ignored by the comparison (a NaN
// value still encodes to the NaN code below).
inline float abs_max(const float *x, int n) {
  float m = 0.0f;
  for (int i = 0; i < n; ++i) {
    float a = std::fabs(x[i]);
    m = a > m ? a : m;
  }
  return m;
}

}  // namespace

void dequantize_row(const CacheView &cv, int64_t slot, float *dst) {
  const CacheGeometry &g = cv.g;
  const uint8_t *page = cv.page(slot);
  const int64_t off = cv.offset(slot);
  const int D = g.dim;
  switch (g.layout) {
    case SPMLA_KV_LAYOUT_BF16: {
      const uint8_t *row = page + off * 2 * D;
      for (int i = 0; i < D; ++i) dst[i] = bf16_to_f32(load_u16(row + 2 * i));
      break;
    }
    case SPMLA_KV_LAYOUT_FP8_PER_TENSOR: {
      const uint8_t *row = page + off * D;
      const float s = g.scale;
      for (int i = 0; i < D; ++i) dst[i] = cv.fp8[row[i]] * s;
      break;
    }
    case SPMLA_KV_LAYOUT_V32_FP8: {
      using L = V32Layout;
      const uint8_t *row = page + off * L::kTokenBytes;
      for (int t = 0; t < L::kScales; ++t) {
        const float s = load_f32(row + L::kScaleOffset + 4 * t);
        for (int i = t * L::kTile; i < (t + 1) * L::kTile; ++i) dst[i] = cv.fp8[row[i]] * s;
      }
      for (int i = 0; i < L::kRope; ++i)
        dst[L::kNope + i] = bf16_to_f32(load_u16(row + L::kRopeOffset + 2 * i));
      break;
    }
    case SPMLA_KV_LAYOUT_V4_FP8: {
      using L = V4Layout;
      const uint8_t *row = page + off * L::kDataBytes;
      const uint8_t *scales = page + int64_t(g.block_size) * L::kDataBytes + off * L::kScaleBytes;
      const float *ue = fp8_tables().ue8m0;
      for (int t = 0; t < L::kScales; ++t) {
        const float s = ue[scales[t]];
        for (int i = t * L::kTile; i < (t + 1) * L::kTile; ++i) dst[i] = cv.fp8[row[i]] * s;
      }
      for (int i = 0; i < L::kRope; ++i)
        dst[L::kNope + i] = bf16_to_f32(load_u16(row + L::kRopeOffset + 2 * i));
      break;
    }
    case SPMLA_KV_LAYOUT_INDEXER_FP8: {
      const uint8_t *row = page + off * D;
      const float s = load_f32(page + int64_t(g.block_size) * D + off * 4);
      for (int i = 0; i < D; ++i) dst[i] = cv.fp8[row[i]] * s;
      break;
    }
    default:
      for (int i = 0; i < D; ++i) dst[i] = 0.0f;
      break;
  }
}

// Quantizes and writes one row x[0, D) (fp32 copies of bf16 values, raw bf16 bits in xb) into
// slot `slot` of the cache.
static void store_row(const CacheView &cv, int64_t slot, const float *x, const uint16_t *xb) {
  const CacheGeometry &g = cv.g;
  uint8_t *page = cv.page(slot);
  const int64_t off = cv.offset(slot);
  const int D = g.dim;
  const Fp8Kind kind = kind_of(g.flavor);
  switch (g.layout) {
    case SPMLA_KV_LAYOUT_BF16: {
      uint8_t *row = page + off * 2 * D;
      for (int i = 0; i < D; ++i) store_u16(row + 2 * i, xb[i]);
      break;
    }
    case SPMLA_KV_LAYOUT_FP8_PER_TENSOR: {
      // fp8 = RNE(x / scale), the division in fp32.
      uint8_t *row = page + off * D;
      for (int i = 0; i < D; ++i) row[i] = f32_to_fp8_e4m3(x[i] / g.scale, kind);
      break;
    }
    case SPMLA_KV_LAYOUT_V32_FP8: {
      using L = V32Layout;
      uint8_t *row = page + off * L::kTokenBytes;
      for (int t = 0; t < L::kScales; ++t) {
        const float *xt = x + t * L::kTile;
        const float scale = exp2_int(tile_scale_exponent(abs_max(xt, L::kTile), kind));
        for (int i = 0; i < L::kTile; ++i)
          row[t * L::kTile + i] = f32_to_fp8_e4m3(xt[i] / scale, kind);  // exact division
        store_f32(row + L::kScaleOffset + 4 * t, scale);
      }
      for (int i = 0; i < L::kRope; ++i) store_u16(row + L::kRopeOffset + 2 * i, xb[L::kNope + i]);
      break;
    }
    case SPMLA_KV_LAYOUT_V4_FP8: {
      using L = V4Layout;
      uint8_t *row = page + off * L::kDataBytes;
      uint8_t *scales = page + int64_t(g.block_size) * L::kDataBytes + off * L::kScaleBytes;
      for (int t = 0; t < L::kScales; ++t) {
        const float *xt = x + t * L::kTile;
        const int k = tile_scale_exponent(abs_max(xt, L::kTile), kind);
        const float scale = exp2_int(k);
        for (int i = 0; i < L::kTile; ++i)
          row[t * L::kTile + i] = f32_to_fp8_e4m3(xt[i] / scale, kind);
        scales[t] = ue8m0_from_exponent(k);
      }
      scales[L::kScales] = 0;  // the pad byte of the scale row
      for (int i = 0; i < L::kRope; ++i) store_u16(row + L::kRopeOffset + 2 * i, xb[L::kNope + i]);
      // The page's tail padding (packed page bytes beyond block_size * 584) is set to 0.
      const int64_t used = int64_t(g.block_size) * L::kTokenBytes;
      const int64_t packed = packed_page_bytes(g.layout, D, g.block_size);
      if (packed > used) std::memset(page + used, 0, static_cast<size_t>(packed - used));
      break;
    }
    case SPMLA_KV_LAYOUT_INDEXER_FP8: {
      // One fp32 scale per token: scale = max(amax, 1e-4) / fp8_max (vLLM's
      // indexer_k_quant_and_cache guard: the 1e-4 floor applies to amax, before the division, so
      // an all-zero row gets scale 1e-4/fp8_max and zero bytes). fp8 = RNE(x / scale), the
      // division in fp32. The scale is not rounded to a power of two (SPEC: amax / fp8_max).
      uint8_t *row = page + off * D;
      float amax = abs_max(x, D);
      if (!(amax > 1e-4f)) amax = 1e-4f;
      const float scale = amax / fp8_max_finite(kind);
      for (int i = 0; i < D; ++i) row[i] = f32_to_fp8_e4m3(x[i] / scale, kind);
      store_f32(page + int64_t(g.block_size) * D + off * 4, scale);
      break;
    }
    default:
      break;
  }
}

spmla_status_t kv_cache_store(Context &ctx, const spmla_kv_cache_store_args_t &a) {
  (void)ctx;
  const CacheView cv(*a.cache);
  const spmla_tensor_t *kv = a.kv;
  const spmla_tensor_t *sm = a.slot_mapping;
  const int64_t N = kv->shape[0];
  const int D = cv.g.dim;
  std::vector<float> x(static_cast<size_t>(D));
  std::vector<uint16_t> xb(static_cast<size_t>(D));
  // Serial, in row order: when two rows name the same slot the later row wins, exactly as a
  // sequential loop would (a GPU backend must resolve duplicates the same way or document it).
  for (int64_t n = 0; n < N; ++n) {
    const int64_t slot = sm->dtype == SPMLA_DTYPE_INT64 ? *at<const int64_t>(sm, n)
                                                        : int64_t(*at<const int32_t>(sm, n));
    if (!cv.valid(slot)) continue;  // negative or >= num_pages * block_size: skipped
    const uint16_t *src = at<const uint16_t>(kv, n, 0);
    for (int i = 0; i < D; ++i) {
      xb[static_cast<size_t>(i)] = src[i];
      x[static_cast<size_t>(i)] = bf16_to_f32(src[i]);
    }
    store_row(cv, slot, x.data(), xb.data());
  }
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t kv_cache_gather(Context &ctx, const spmla_kv_cache_gather_args_t &a) {
  const CacheView cv(*a.cache);
  const spmla_tensor_t *slots = a.slots;
  const spmla_tensor_t *out = a.out;
  const int64_t N = slots->shape[0];
  const int D = cv.g.dim;
  const int64_t grain = 16;
  const int64_t nchunks = (N + grain - 1) / grain;
  if (ctx.pool.size() > 1 && nchunks > 1) {
    for (auto &w : ctx.worker_scratch) w.resize(static_cast<size_t>(D));
  } else {
    ctx.worker_scratch[0].resize(static_cast<size_t>(D));
  }
  ctx.pool.parallel_for(N, grain, [&](int64_t b, int64_t e, int worker) {
    float *row = ctx.worker_scratch[static_cast<size_t>(worker)].data();
    for (int64_t n = b; n < e; ++n) {
      const int64_t slot = *at<const int32_t>(slots, n);
      uint16_t *dst = at<uint16_t>(out, n, 0);
      if (!cv.valid(slot)) {
        for (int i = 0; i < D; ++i) dst[i] = 0;
        continue;
      }
      dequantize_row(cv, slot, row);
      for (int i = 0; i < D; ++i) dst[i] = f32_to_bf16(row[i]);
    }
  });
  return SPMLA_STATUS_SUCCESS;
}

}  // namespace cpu
}  // namespace spmla
