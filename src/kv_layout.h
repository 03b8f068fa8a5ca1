// kv_layout.h — byte geometry of the KV-cache layouts (docs/SPEC.md "KV cache layouts").
// Shared by validation, the CPU reference and the tools, so the numbers live in one place.
#pragma once
#include <cstddef>
#include <cstdint>

#include "spmla.h"

namespace spmla {

// DeepSeek-V3.2 "fp8_ds_mla": [0,512) fp8 NoPE | [512,528) 4 fp32 scales | [528,656) 64 bf16 RoPE.
struct V32Layout {
  static constexpr int kDim = 576;       // D_qk
  static constexpr int kNope = 512;      // fp8 values
  static constexpr int kRope = 64;       // bf16 values
  static constexpr int kTile = 128;      // NoPE values per scale
  static constexpr int kScales = 4;      // fp32 scales
  static constexpr int kScaleOffset = 512;
  static constexpr int kRopeOffset = 528;
  static constexpr int kTokenBytes = 656;
};

// DeepSeek-V4: per page, block_size data rows of 576 B = [448 fp8 NoPE | 64 bf16 RoPE], then
// block_size scale rows of 8 B = [7 UE8M0 scales | 1 pad]; page rounded up to a multiple of 576.
struct V4Layout {
  static constexpr int kDim = 512;
  static constexpr int kNope = 448;
  static constexpr int kRope = 64;
  static constexpr int kTile = 64;
  static constexpr int kScales = 7;
  static constexpr int kDataBytes = 576;   // per token data row
  static constexpr int kScaleBytes = 8;    // per token scale row
  static constexpr int kRopeOffset = 448;  // within the data row
  static constexpr int kTokenBytes = 584;  // data + scale bytes
};

inline constexpr int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Head dim a layout implies (0 = any of the allowed ones).
inline int32_t layout_fixed_dim(spmla_kv_layout_t l) {
  switch (l) {
    case SPMLA_KV_LAYOUT_V32_FP8: return V32Layout::kDim;
    case SPMLA_KV_LAYOUT_V4_FP8: return V4Layout::kDim;
    default: return 0;
  }
}

// Packed page bytes of a layout for head dim d and block size bs; -1 for an unknown layout.
// Callers validate bs and d first (bs <= 2^24 and d <= 4096 keep this far from overflow).
inline int64_t packed_page_bytes(spmla_kv_layout_t l, int64_t d, int64_t bs) {
  switch (l) {
    case SPMLA_KV_LAYOUT_BF16: return 2 * d * bs;
    case SPMLA_KV_LAYOUT_FP8_PER_TENSOR: return d * bs;
    case SPMLA_KV_LAYOUT_V32_FP8: return V32Layout::kTokenBytes * bs;
    case SPMLA_KV_LAYOUT_V4_FP8: return round_up(V4Layout::kTokenBytes * bs, V4Layout::kDataBytes);
    case SPMLA_KV_LAYOUT_INDEXER_FP8: return (d + 4) * bs;
    default: return -1;
  }
}

// The resolved geometry of a validated cache descriptor.
struct CacheGeometry {
  spmla_kv_layout_t layout;
  spmla_fp8_flavor_t flavor;
  int32_t dim;          // D (head_dim resolved)
  int32_t block_size;
  int64_t num_pages;
  int64_t page_stride;  // bytes
  float scale;          // FP8_PER_TENSOR
  uint8_t *base;
  int64_t num_slots() const { return num_pages * block_size; }
};

inline CacheGeometry resolve_geometry(const spmla_kv_cache_t &c) {
  CacheGeometry g;
  g.layout = c.layout;
  g.flavor = c.fp8_flavor;
  g.dim = c.head_dim ? c.head_dim : layout_fixed_dim(c.layout);
  g.block_size = c.block_size;
  g.num_pages = c.num_pages;
  g.page_stride = c.page_stride_bytes ? c.page_stride_bytes : packed_page_bytes(c.layout, g.dim, c.block_size);
  g.scale = c.scale;
  g.base = static_cast<uint8_t *>(c.data);
  return g;
}

}  // namespace spmla
