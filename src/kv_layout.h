// kv_layout.h — host-side view of the KV-cache layouts (docs/SPEC.md "KV cache layouts"):
// page sizes and the resolved geometry of a descriptor, for validation, the C API and the CPU
// reference. The layouts themselves are described once, in numerics/kv_layout_traits.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kv_layout_traits.h"
#include "spmla.h"

namespace spmla {

inline constexpr int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Head dim a layout implies (0 = any of the allowed ones).
inline int32_t layout_fixed_dim(spmla_kv_layout_t l) { return kv_layout_info(l, 0).fixed_dim; }

// Packed page bytes of a layout for head dim d and block size bs (and, for the V41 layouts, the
// arrangement); -1 for an unknown layout. Callers validate bs and d first (bs <= 2^24 and
// d <= 4096 keep this far from overflow).
inline int64_t packed_page_bytes(spmla_kv_layout_t l, int64_t d, int64_t bs,
                                 int32_t arrangement = SPMLA_KV_ARRANGEMENT_DEFAULT) {
  return kv_packed_page_bytes(l, d, bs, arrangement);
}

// The ABI 1.0 size of spmla_kv_cache_t (its sizeof then: `float scale` at offset 56 plus the
// trailing padding that ABI 1.2 names reserved0). A caller built against an older header passes
// this struct_size; the members from `arrangement` on are then absent.
constexpr size_t kKvCacheSizeV1_0 = offsetof(spmla_kv_cache_t, arrangement);
static_assert(sizeof(void *) != 8 || kKvCacheSizeV1_0 == 64, "spmla_kv_cache_t of ABI 1.0 is 64 bytes");

// A full-size copy of a caller's cache descriptor: the bytes its struct_size covers (a 1.0
// caller's 64), the *_INIT values for the members it lacks, reserved0 cleared (never read),
// struct_size = sizeof. The core hands backends only such copies, so a backend may read every
// member of its header without reading past a smaller caller struct.
inline spmla_kv_cache_t normalized_cache(const spmla_kv_cache_t &c) {
  spmla_kv_cache_t n = SPMLA_KV_CACHE_INIT;
  const size_t have = c.struct_size < sizeof n ? c.struct_size : sizeof n;
  // validation refused anything smaller than the 1.0 struct
  std::memcpy(static_cast<void *>(&n), &c, have < kKvCacheSizeV1_0 ? kKvCacheSizeV1_0 : have);
  n.struct_size = sizeof n;
  n.reserved0 = 0;
  if (have < offsetof(spmla_kv_cache_t, arrangement) + sizeof n.arrangement)
    n.arrangement = SPMLA_KV_ARRANGEMENT_DEFAULT;
  if (have < offsetof(spmla_kv_cache_t, reserved1) + sizeof n.reserved1) n.reserved1 = 0;
  return n;
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
  int32_t arrangement;  // spmla_kv_arrangement_t as given (DEFAULT for the pre-V41 layouts)
  uint8_t *base;
  int64_t num_slots() const { return num_pages * block_size; }
};

// `in`: a caller's descriptor that passed validate_cache (any struct_size it accepts).
inline CacheGeometry resolve_geometry(const spmla_kv_cache_t &in) {
  const spmla_kv_cache_t c = normalized_cache(in);
  CacheGeometry g;
  g.layout = c.layout;
  g.flavor = c.fp8_flavor;
  g.dim = c.head_dim ? c.head_dim : layout_fixed_dim(c.layout);
  g.block_size = c.block_size;
  g.num_pages = c.num_pages;
  g.arrangement = static_cast<int32_t>(c.arrangement);
  g.page_stride = c.page_stride_bytes ? c.page_stride_bytes
                                      : packed_page_bytes(c.layout, g.dim, c.block_size, g.arrangement);
  g.scale = c.scale;
  g.base = static_cast<uint8_t *>(c.data);
  return g;
}

}  // namespace spmla
