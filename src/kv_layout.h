// kv_layout.h — host-side view of the KV-cache layouts (docs/SPEC.md "KV cache layouts"):
// page sizes and the resolved geometry of a descriptor, for validation, the C API and the CPU
// reference. The layouts themselves are described once, in numerics/kv_layout_traits.h.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kv_layout_traits.h"
#include "spmla.h"

namespace spmla {

inline constexpr int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Head dim a layout implies (0 = any of the allowed ones).
inline int32_t layout_fixed_dim(spmla_kv_layout_t l) { return kv_layout_info(l, 0).fixed_dim; }

// Packed page bytes of a layout for head dim d and block size bs; -1 for an unknown layout.
// Callers validate bs and d first (bs <= 2^24 and d <= 4096 keep this far from overflow).
inline int64_t packed_page_bytes(spmla_kv_layout_t l, int64_t d, int64_t bs) {
  return kv_packed_page_bytes(l, d, bs);
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
