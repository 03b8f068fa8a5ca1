// cache_access.cuh — byte geometry of the KV-cache layouts on the device side (mirrors
// src/kv_layout.h) and per-group dequantization of one token row into bf16.
#pragma once
#include "compat.h"
#include "params.h"

namespace spmla {
namespace kern {

// Bytes of one token's main data row as the kernels copy it (V4: the 576-byte data row; its
// 8-byte scale row is separate).
SPMLA_HOST_DEVICE int row_data_bytes(int layout, int dim) {
  switch (layout) {
    case kBF16: return 2 * dim;
    case kFP8PerTensor: return dim;
    case kV32: return 656;
    case kV4: return 576;
    default: return dim;  // indexer: Di fp8 bytes
  }
}

// Byte offsets (from the cache base) of slot = page * bs + off.
struct SlotOffsets {
  int64_t data;
  int64_t aux;  // V4: scale row; INDEXER: fp32 scale; else unused
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

SPMLA_DEVICE SlotOffsets slot_offsets(const CacheDesc &c, int64_t slot) {
  int64_t page, off;
  split_slot(slot, c.block_size, page, off);
  const int64_t pbase = page * c.page_stride;
  SlotOffsets o;
  o.aux = 0;
  switch (c.layout) {
    case kBF16: o.data = pbase + off * 2 * c.dim; break;
    case kFP8PerTensor: o.data = pbase + off * c.dim; break;
    case kV32: o.data = pbase + off * 656; break;
    case kV4:
      o.data = pbase + off * 576;
      o.aux = pbase + (int64_t)c.block_size * 576 + off * 8;
      break;
    default:  // INDEXER_FP8
      o.data = pbase + off * c.dim;
      o.aux = pbase + (int64_t)c.block_size * c.dim + off * 4;
      break;
  }
  return o;
}

// Dequantizes elements [e0, e0 + 8) of a token row into 8 bf16 (as a uint4). `row` points to
// the row's data bytes, `aux` to its V4 scale row (may alias inside a staged copy).
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
    if (e0 >= 512) return *reinterpret_cast<const uint4 *>(row + 528 + 2 * (e0 - 512));
    bytes = row + e0;
    scale = *reinterpret_cast<const float *>(row + 512 + 4 * (e0 >> 7));
  } else if (c.layout == kV4) {
    if (e0 >= 448) return *reinterpret_cast<const uint4 *>(row + 448 + 2 * (e0 - 448));
    bytes = row + e0;
    scale = dev::ue8m0_to_f32(aux[e0 >> 6]);
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
