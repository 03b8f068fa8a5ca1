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

// One token of layout T (numerics/kv_layout_traits.h): kElem values at the data offset (fp8 times
// their tile's scale, or bf16), then the bf16 RoPE part. Every layout goes through here.
template <class T>
static void dequantize_token(const CacheView &cv, const uint8_t *page, int64_t off, float *dst) {
  const CacheGeometry &g = cv.g;
  const int64_t D = g.dim, bs = g.block_size;
  const uint8_t *row = T::data_addr(page, off, bs, D) + T::kDataOffset;
  const int64_t nope = T::nope(D), tile = T::tile(D);
  if (T::kElem == KvElem::kBF16) {
    for (int64_t i = 0; i < nope; ++i) dst[i] = bf16_to_f32(load_u16(row + 2 * i));
  } else if (T::kElem == KvElem::kFP4) {
    // E2M1 codes, element i in byte i/2 (even i: low nibble), times the tile's E4M3FN scale;
    // the product is exact in fp32 (2 x 4 significant bits).
    const uint8_t *scales = T::scale_addr(page, off, bs, D);
    const float *e4m3 = fp8_tables().fn;
    float fp4[16];
    for (int c = 0; c < 16; ++c) fp4[c] = fp4_e2m1_to_f32(static_cast<uint8_t>(c));
    for (int64_t t = 0; t * tile < nope; ++t) {
      const float s = e4m3[scales[t]];
      for (int64_t i = t * tile; i < (t + 1) * tile; ++i)
        dst[i] = fp4[(row[i >> 1] >> ((i & 1) * 4)) & 0xF] * s;
    }
  } else {
    const uint8_t *scales = T::scale_addr(page, off, bs, D);
    const float *ue = fp8_tables().ue8m0;
    for (int64_t t = 0; t * tile < nope; ++t) {
      float s = 1.0f;
      if (T::kScalePlace == KvScalePlace::kDescriptor) s = g.scale;
      else if (T::kScaleType == KvScaleType::kF32) s = load_f32(scales + 4 * t);
      else if (T::kScaleType == KvScaleType::kUE8M0) s = ue[scales[t]];
      for (int64_t i = t * tile; i < (t + 1) * tile; ++i) dst[i] = cv.fp8[row[i]] * s;
    }
  }
  const uint8_t *rope = T::data_addr(page, off, bs, D) + T::rope_offset(D);
  for (int64_t i = 0; i < T::rope(D); ++i) dst[nope + i] = bf16_to_f32(load_u16(rope + 2 * i));
}

void dequantize_row(const CacheView &cv, int64_t slot, float *dst) {
  const CacheGeometry &g = cv.g;
  const uint8_t *page = cv.page(slot);
  const int64_t off = cv.offset(slot);
  switch (g.layout) {
    case SPMLA_KV_LAYOUT_BF16: dequantize_token<KvBF16>(cv, page, off, dst); break;
    case SPMLA_KV_LAYOUT_FP8_PER_TENSOR: dequantize_token<KvFP8PerTensor>(cv, page, off, dst); break;
    case SPMLA_KV_LAYOUT_V32_FP8: dequantize_token<KvV32>(cv, page, off, dst); break;
    case SPMLA_KV_LAYOUT_V4_FP8: dequantize_token<KvV4>(cv, page, off, dst); break;
    case SPMLA_KV_LAYOUT_INDEXER_FP8: dequantize_token<KvIndexer>(cv, page, off, dst); break;
    case SPMLA_KV_LAYOUT_V41_FP8:
      if (g.arrangement == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED) dequantize_token<KvV41Fp8Blocked>(cv, page, off, dst);
      else dequantize_token<KvV41Fp8Token>(cv, page, off, dst);
      break;
    case SPMLA_KV_LAYOUT_V41_FP4:
      if (g.arrangement == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED) dequantize_token<KvV41Fp4Blocked>(cv, page, off, dst);
      else dequantize_token<KvV41Fp4Token>(cv, page, off, dst);
      break;
    default:
      for (int i = 0; i < g.dim; ++i) dst[i] = 0.0f;
      break;
  }
}

// Writes one row of a tiled FP8 layout T (per-tile power-of-two scales, SPEC "KV cache layouts":
// V32_FP8, V4_FP8): fp8 values, their scales where T places them (fp32 or UE8M0; a page-tail
// scale row's pad bytes set to 0), the bf16 RoPE part unchanged, and the page's tail padding
// (packed page bytes beyond block_size token bytes) set to 0.
template <class T>
static void store_tiled_fp8(const CacheView &cv, uint8_t *page, int64_t off, const float *x,
                            const uint16_t *xb) {
  const CacheGeometry &g = cv.g;
  const int64_t D = g.dim, bs = g.block_size;
  const Fp8Kind kind = kind_of(g.flavor);
  uint8_t *row = T::data_addr(page, off, bs, D) + T::kDataOffset;
  uint8_t *scales = T::scale_addr(page, off, bs, D);
  const int64_t nope = T::nope(D), tile = T::tile(D);
  for (int64_t t = 0; t * tile < nope; ++t) {
    const float *xt = x + t * tile;
    const int k = tile_scale_exponent(abs_max(xt, static_cast<int>(tile)), kind);
    const float scale = exp2_int(k);
    for (int64_t i = 0; i < tile; ++i)
      row[t * tile + i] = f32_to_fp8_e4m3(xt[i] / scale, kind);  // exact division
    if (T::kScaleType == KvScaleType::kF32) store_f32(scales + 4 * t, scale);
    else scales[t] = ue8m0_from_exponent(k);
  }
  if (T::kScalePlace == KvScalePlace::kPageTail) {
    const int64_t sb = T::kScaleType == KvScaleType::kF32 ? 4 : 1;
    for (int64_t b = T::kScales * sb; b < T::scale_row_bytes(D); ++b) scales[b] = 0;  // pad
  }
  uint8_t *rope = T::data_addr(page, off, bs, D) + T::rope_offset(D);
  for (int64_t i = 0; i < T::rope(D); ++i) store_u16(rope + 2 * i, xb[nope + i]);
  const int64_t used = bs * T::token_bytes(D);
  const int64_t packed = T::packed_page_bytes(D, bs);
  if (packed > used) std::memset(page + used, 0, static_cast<size_t>(packed - used));
}

// Writes one row of the V41_FP4 layout T (either arrangement), SPEC "V4.1 cache layouts": per
// tile of 16, scale = e4m3_rne(clamp(amax / 6, 2^-9, 448)) (NaN byte 0x7F for a tile holding a
// NaN or an inf), codes = e2m1_rne_satfinite(x / float(scale)) (the division in fp32), two per
// byte with the even element in the low nibble; a page-blocked page's tail padding set to 0.
template <class T>
static void store_fp4(const CacheView &cv, uint8_t *page, int64_t off, const float *x) {
  const CacheGeometry &g = cv.g;
  const int64_t D = g.dim, bs = g.block_size;
  uint8_t *row = T::data_addr(page, off, bs, D) + T::kDataOffset;
  uint8_t *scales = T::scale_addr(page, off, bs, D);
  const float *e4m3 = fp8_tables().fn;
  for (int64_t t = 0; t < T::kScales; ++t) {
    const float *xt = x + t * T::kTile;
    float amax = 0.0f;
    bool nonfinite = false;
    for (int i = 0; i < T::kTile; ++i) {
      const float a = std::fabs(xt[i]);
      nonfinite = nonfinite || !std::isfinite(a);
      amax = a > amax ? a : amax;
    }
    const uint8_t sb = fp4_tile_scale_e4m3(amax, nonfinite);
    scales[t] = sb;
    const float s = e4m3[sb];
    for (int i = 0; i < T::kTile; i += 2) {
      const uint8_t lo = f32_to_fp4_e2m1(xt[i] / s), hi = f32_to_fp4_e2m1(xt[i + 1] / s);
      row[(t * T::kTile + i) >> 1] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
  const int64_t used = bs * T::token_bytes(D);
  const int64_t packed = T::packed_page_bytes(D, bs);
  if (packed > used) std::memset(page + used, 0, static_cast<size_t>(packed - used));
}

// Quantizes and writes one row x[0, D) (fp32 copies of bf16 values, raw bf16 bits in xb) into
// slot `slot` of the cache.
static void store_row(const CacheView &cv, int64_t slot, const float *x, const uint16_t *xb) {
  const CacheGeometry &g = cv.g;
  uint8_t *page = cv.page(slot);
  const int64_t off = cv.offset(slot);
  const int D = g.dim;
  const int64_t bs = g.block_size;
  const Fp8Kind kind = kind_of(g.flavor);
  switch (g.layout) {
    case SPMLA_KV_LAYOUT_BF16: {
      uint8_t *row = KvBF16::data_addr(page, off, bs, D);
      for (int i = 0; i < D; ++i) store_u16(row + 2 * i, xb[i]);
      break;
    }
    case SPMLA_KV_LAYOUT_FP8_PER_TENSOR: {
      // fp8 = RNE(x / scale), the division in fp32.
      uint8_t *row = KvFP8PerTensor::data_addr(page, off, bs, D);
      for (int i = 0; i < D; ++i) row[i] = f32_to_fp8_e4m3(x[i] / g.scale, kind);
      break;
    }
    case SPMLA_KV_LAYOUT_V32_FP8: store_tiled_fp8<KvV32>(cv, page, off, x, xb); break;
    case SPMLA_KV_LAYOUT_V4_FP8: store_tiled_fp8<KvV4>(cv, page, off, x, xb); break;
    case SPMLA_KV_LAYOUT_V41_FP8:  // all 512 values fp8, tiles of 32, UE8M0: the V4 rule
      if (g.arrangement == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED) store_tiled_fp8<KvV41Fp8Blocked>(cv, page, off, x, xb);
      else store_tiled_fp8<KvV41Fp8Token>(cv, page, off, x, xb);
      break;
    case SPMLA_KV_LAYOUT_V41_FP4:
      if (g.arrangement == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED) store_fp4<KvV41Fp4Blocked>(cv, page, off, x);
      else store_fp4<KvV41Fp4Token>(cv, page, off, x);
      break;
    case SPMLA_KV_LAYOUT_INDEXER_FP8: {
      // One fp32 scale per token: scale = max(amax, 1e-4) / fp8_max (vLLM's
      // indexer_k_quant_and_cache guard: the 1e-4 floor applies to amax, before the division, so
      // an all-zero row gets scale 1e-4/fp8_max and zero bytes). fp8 = RNE(x / scale), the
      // division in fp32. The scale is not rounded to a power of two (SPEC: amax / fp8_max).
      uint8_t *row = KvIndexer::data_addr(page, off, bs, D);
      float amax = abs_max(x, D);
      if (!(amax > 1e-4f)) amax = 1e-4f;
      const float scale = amax / fp8_max_finite(kind);
      for (int i = 0; i < D; ++i) row[i] = f32_to_fp8_e4m3(x[i] / scale, kind);
      store_f32(KvIndexer::scale_addr(page, off, bs, D), scale);
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
