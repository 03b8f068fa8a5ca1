// cache_access.cuh — the kernels' access to the KV-cache layouts (geometry from
// numerics/kv_layout_traits.h, the one description shared with the host) and per-group
// dequantization of one token row into bf16.
#pragma once
#include "compat.h"
#include "kv_layout_traits.h"
#include "params.h"

namespace spmla {
namespace kern {

// The kernels' layout enum is the C enum's values.
static_assert((int)kBF16 == (int)SPMLA_KV_LAYOUT_BF16 && (int)kFP8PerTensor == (int)SPMLA_KV_LAYOUT_FP8_PER_TENSOR &&
                  (int)kV32 == (int)SPMLA_KV_LAYOUT_V32_FP8 && (int)kV4 == (int)SPMLA_KV_LAYOUT_V4_FP8 &&
                  (int)kIndexer == (int)SPMLA_KV_LAYOUT_INDEXER_FP8 && (int)kV41FP8 == (int)SPMLA_KV_LAYOUT_V41_FP8 &&
                  (int)kV41FP4 == (int)SPMLA_KV_LAYOUT_V41_FP4,
              "kern::Layout must equal spmla_kv_layout_t");
static_assert((int)kV41FP4 == (int)kKvLayoutLast, "a new layout needs its kern::Layout value and kernel paths");

// V41 geometries (numerics/kv_layout_traits.h): the same per-token bytes, two arrangements.
using KvV41F8T = KvV41Fp8Token;
using KvV41F8B = KvV41Fp8Blocked;
using KvV41F4T = KvV41Fp4Token;
using KvV41F4B = KvV41Fp4Blocked;
static_assert(KvV41F8T::kDataBytesPerToken == 512 && KvV41F8T::kTokenBytes == 528 && KvV41F8T::kTile == 32 &&
                  KvV41F4T::kDataBytesPerToken == 256 && KvV41F4T::kTokenBytes == 288 && KvV41F4T::kTile == 16,
              "the V41 constants below");

// Bytes of a V41 token's data part (its scales follow: inline in a per-token row, or in a
// page-tail scale row).
SPMLA_HOST_DEVICE int v41_data_bytes(int layout) { return layout == kV41FP4 ? 256 : 512; }
SPMLA_HOST_DEVICE int v41_scale_bytes(int layout) { return layout == kV41FP4 ? 32 : 16; }

// Bytes of one token's main data row as the kernels copy it (V4 and page-blocked V41: the data
// row; the scale row is separate; per-token V41: data and scales, one row).
SPMLA_HOST_DEVICE int row_data_bytes(const CacheDesc &c, int dim) {
  switch (c.layout) {
    case kBF16: return 2 * dim;
    case kFP8PerTensor: return dim;
    case kV32: return KvV32::kDataRowBytes;
    case kV4: return KvV4::kDataRowBytes;
    case kV41FP8:
    case kV41FP4: return v41_data_bytes(c.layout) + (c.blocked ? 0 : v41_scale_bytes(c.layout));
    default: return dim;  // indexer: Di fp8 bytes (KvIndexer::data_row_bytes)
  }
}
// Where a staged row (data bytes, then any separate scale row) keeps its scales: V4 after its
// 576-byte data row, V41 after its data bytes (inline in a per-token row, copied there when
// page-blocked); unused by the other layouts.
SPMLA_HOST_DEVICE int staged_scales_offset(const CacheDesc &c) {
  return (c.layout == kV41FP8 || c.layout == kV41FP4) ? v41_data_bytes(c.layout) : KvV4::kDataRowBytes;
}
// Bytes of a token's separate scale row (V4, page-blocked V41), 0 where the scales are inline.
SPMLA_HOST_DEVICE int scale_row_bytes(const CacheDesc &c) {
  if (c.layout == kV4) return KvV4::kScaleRowBytes;
  if ((c.layout == kV41FP8 || c.layout == kV41FP4) && c.blocked) return v41_scale_bytes(c.layout);
  return 0;
}

// Byte offsets (from the cache base) of slot = page * bs + off.
struct SlotOffsets {
  int64_t data;
  int64_t aux;  // V4, V41: scale row (per-token V41: right after the data); INDEXER: fp32 scale
};

// slot -> (page, offset) without a 64-bit division where possible (power-of-two block sizes:
// shifts; slots below 2^32: a 32-bit division).
SPMLA_DEVICE void split_slot(int64_t slot, int32_t bs, int64_t &page, int64_t &off) {
  const uint32_t b = (uint32_t)bs;
  if ((b & (b - 1u)) == 0u) {
    const int sh = __ffs((int)b) - 1;
    page = slot >> sh;
    off = slot & (int64_t)(b - 1u);
  } else if ((uint64_t)slot <= 0xffffffffull) {
    const uint32_t s = (uint32_t)slot, pg = s / b;
    page = pg;
    off = s - pg * b;
  } else {
    page = slot / bs;
    off = slot - page * bs;
  }
}

// The address arithmetic of KvLayout<>::data_addr / scale_addr spelled out with the entries'
// constants: calling those helpers here changed the generated PTX (block order), which could not
// be tested on a GPU when the traits came in; the formulas are the same.
// kV41 = false: a caller that never sees a V41 cache (the sm90 kernels) leaves their cases out.
// slot_offsets_as: the same for a given layout (a constant where the caller's instantiation fixes
// it, so the switch folds away: the Hopper producers compute eight row addresses per key pair).
template <bool kV41 = true>
SPMLA_DEVICE SlotOffsets slot_offsets_as(const CacheDesc &c, int64_t slot, int layout) {
  int64_t page, off;
  split_slot(slot, c.block_size, page, off);
  const int64_t pbase = page * c.page_stride;
  SlotOffsets o;
  o.aux = 0;
  switch (layout) {
    case kBF16: o.data = pbase + off * 2 * c.dim; break;
    case kFP8PerTensor: o.data = pbase + off * c.dim; break;
    case kV32: o.data = pbase + off * KvV32::kDataRowBytes; break;
    case kV4:
      o.data = pbase + off * KvV4::kDataRowBytes;
      o.aux = pbase + (int64_t)c.block_size * KvV4::kDataRowBytes + off * KvV4::kScaleRowBytes;
      break;
    case kV41FP8:
    case kV41FP4:
      if constexpr (kV41) {
        const int64_t db = v41_data_bytes(c.layout), sb = v41_scale_bytes(c.layout);
        if (c.blocked) {
          o.data = pbase + off * db;
          o.aux = pbase + (int64_t)c.block_size * db + off * sb;
        } else {
          o.data = pbase + off * (db + sb);
          o.aux = o.data + db;
        }
        break;
      }
      [[fallthrough]];
    default:  // INDEXER_FP8
      o.data = pbase + off * c.dim;
      o.aux = pbase + (int64_t)c.block_size * c.dim + off * KvIndexer::kScaleRowBytes;
      break;
  }
  return o;
}
template <bool kV41 = true>
SPMLA_DEVICE SlotOffsets slot_offsets(const CacheDesc &c, int64_t slot) {
  return slot_offsets_as<kV41>(c, slot, c.layout);
}
// slot_offsets' formulas are the entries' (page base 1000, offset 3, block size 64, D 128).
static_assert(KvV32::data_addr(int64_t(1000), int64_t(3), 64, 576) == 1000 + 3 * KvV32::kDataRowBytes, "V32");
static_assert(KvV4::data_addr(int64_t(1000), int64_t(3), 64, 512) == 1000 + 3 * KvV4::kDataRowBytes &&
                  KvV4::scale_addr(int64_t(1000), int64_t(3), 64, 512) ==
                      1000 + 64 * KvV4::kDataRowBytes + 3 * KvV4::kScaleRowBytes,
              "V4");
static_assert(KvBF16::data_addr(int64_t(1000), int64_t(3), 64, 128) == 1000 + 3 * 2 * 128 &&
                  KvFP8PerTensor::data_addr(int64_t(1000), int64_t(3), 64, 128) == 1000 + 3 * 128 &&
                  KvIndexer::data_addr(int64_t(1000), int64_t(3), 64, 128) == 1000 + 3 * 128 &&
                  KvIndexer::scale_addr(int64_t(1000), int64_t(3), 64, 128) ==
                      1000 + 64 * 128 + 3 * KvIndexer::kScaleRowBytes,
              "BF16, FP8_PER_TENSOR, INDEXER_FP8");
static_assert(KvV41F8T::data_addr(int64_t(1000), int64_t(3), 64, 512) == 1000 + 3 * 528 &&
                  KvV41F8T::scale_addr(int64_t(1000), int64_t(3), 64, 512) == 1000 + 3 * 528 + 512 &&
                  KvV41F8B::data_addr(int64_t(1000), int64_t(3), 64, 512) == 1000 + 3 * 512 &&
                  KvV41F8B::scale_addr(int64_t(1000), int64_t(3), 64, 512) == 1000 + 64 * 512 + 3 * 16 &&
                  KvV41F4T::data_addr(int64_t(1000), int64_t(3), 64, 512) == 1000 + 3 * 288 &&
                  KvV41F4T::scale_addr(int64_t(1000), int64_t(3), 64, 512) == 1000 + 3 * 288 + 256 &&
                  KvV41F4B::data_addr(int64_t(1000), int64_t(3), 64, 512) == 1000 + 3 * 256 &&
                  KvV41F4B::scale_addr(int64_t(1000), int64_t(3), 64, 512) == 1000 + 64 * 256 + 3 * 32,
              "V41_FP8, V41_FP4 in both arrangements");

// Dequantizes elements [e0, e0 + 8) of a token row into 8 bf16 (as a uint4). `row` points to
// the row's data bytes, `aux` to its V4 / V41 scales (may alias inside a staged copy).
// tensor_scale = false leaves FP8_PER_TENSOR values unscaled (the caller applies the scale).
SPMLA_DEVICE uint4 dequant8(const CacheDesc &c, const uint8_t *row, const uint8_t *aux, int e0,
                            bool tensor_scale = true) {
  uint4 r;
  if (c.layout == kBF16) {
    return *reinterpret_cast<const uint4 *>(row + 2 * e0);
  }
  const uint8_t *bytes;
  float scale;
  if (c.layout == kFP8PerTensor) {
    bytes = row + e0;
    scale = tensor_scale ? c.scale : 1.f;
  } else if (c.layout == kV32) {
    using T = KvV32;
    if (e0 >= T::kNope) return *reinterpret_cast<const uint4 *>(row + T::kRopeOffset + 2 * (e0 - T::kNope));
    bytes = row + e0;
    scale = *reinterpret_cast<const float *>(row + T::kScaleOffset + 4 * (e0 >> T::kTileLog2));
  } else if (c.layout == kV4) {
    using T = KvV4;
    if (e0 >= T::kNope) return *reinterpret_cast<const uint4 *>(row + T::kRopeOffset + 2 * (e0 - T::kNope));
    bytes = row + e0;
    scale = dev::ue8m0_to_f32(aux[e0 >> T::kTileLog2]);
  } else if (c.layout == kV41FP8) {  // 8 values of one tile of 32
    bytes = row + e0;
    scale = dev::ue8m0_to_f32(aux[e0 >> KvV41F8T::kTileLog2]);
  } else if (c.layout == kV41FP4) {  // 8 E2M1 codes (4 bytes) of one tile of 16; products exact in bf16
    const uint32_t w = *reinterpret_cast<const uint32_t *>(row + (e0 >> 1));
    const float sc = ::spmla::fp8_e4m3_to_f32(aux[e0 >> KvV41F4T::kTileLog2], ::spmla::Fp8Kind::E4M3FN);
    float f[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = ::spmla::fp4_e2m1_to_f32((uint8_t)((w >> (4 * i)) & 0xFu)) * sc;
    r.x = dev::pack_bf16x2(f[0], f[1]);
    r.y = dev::pack_bf16x2(f[2], f[3]);
    r.z = dev::pack_bf16x2(f[4], f[5]);
    r.w = dev::pack_bf16x2(f[6], f[7]);
    return r;
  } else {  // INDEXER_FP8: one fp32 scale per token
    bytes = row + e0;
    scale = *reinterpret_cast<const float *>(aux);
  }
  const uint2 w = *reinterpret_cast<const uint2 *>(bytes);
  float f[8];
  dev::fp8x4_to_f32(w.x, c.flavor, f);
  dev::fp8x4_to_f32(w.y, c.flavor, f + 4);
  r.x = dev::pack_bf16x2(f[0] * scale, f[1] * scale);
  r.y = dev::pack_bf16x2(f[2] * scale, f[3] * scale);
  r.z = dev::pack_bf16x2(f[4] * scale, f[5] * scale);
  r.w = dev::pack_bf16x2(f[6] * scale, f[7] * scale);
  return r;
}

}  // namespace kern
}  // namespace spmla
