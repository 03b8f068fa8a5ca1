// kv_layout_traits.h — byte geometry of the KV-cache layouts (docs/SPEC.md "KV cache layouts"),
// described once, header-only.
//
// Usable from C++17 host code and from CUDA / HIP code (host and device): everything is constexpr
// or SPMLA_HD, only <cstdint> and the C enum of include/spmla.h. Consumers: src/kv_layout.h
// (validation, the C API's page sizes, the CPU reference), backends/common/cache_access.cuh (the
// kernels' enum is tied to spmla_kv_layout_t there) and through it the attention, store and gather
// kernels, the sm90 fast path and the HIP kernels.
//
// One entry per layout, KvLayout<SPMLA_KV_LAYOUT_...>:
//   kName                the C enum's name without SPMLA_KV_LAYOUT_ (messages)
//   kFixedDim            D the layout implies (0: head_dim decides, one of kDimA / kDimB)
//   kDimA, kDimB         the head dims a descriptor may name (besides 0 when kFixedDim != 0)
//   kElem                element type of the data part (fp8, bf16, or fp4 E2M1 two per byte); a new
//                        element type needs a codec (numerics.h) besides an entry here
//   kDataOffset          byte offset of the first data element in the token's data row
//   nope(d)              values of type kElem at kDataOffset (quantized ones for FP8 layouts)
//   rope(d), rope_offset(d)
//                        bf16 RoPE values after them and their byte offset in the data row
//                        (0 values: no RoPE part)
//   tile(d)              values per scale (kTile, kTileLog2 where it is fixed) (FP8_PER_TENSOR: the whole cache shares one scale)
//   kScaleType           none, fp32, UE8M0 (one byte, 2^(e-127)) or E4M3 (one E4M3FN byte; V41_FP4)
//   kScalePlace          none, descriptor (spmla_kv_cache_t.scale), inline (inside each token's
//                        data row at kScaleOffset) or page tail (block_size scale rows of
//                        kScaleRowBytes after the page's block_size data rows)
//   kScales              scales per token (page tail / inline)
//   data_row_bytes(d)    stride of the data rows in a page (inline scales and RoPE included)
//   scale_row_bytes(d)   stride of the page-tail scale rows (pad included; 0 otherwise)
//   kPageAlign           packed page bytes are rounded up to a multiple of this
//   token_bytes(d), packed_page_bytes(d, bs)
//   data_addr(page, off, bs, d), scale_addr(page, off, bs, d)
//                        a token's data row and (first) scale from the page base (a pointer or a
//                        byte offset), the token's offset in the page and the block size
//
// tools/spmla/cache_reader.h keeps its own copy of the geometry on purpose (an independent checker).
#pragma once

#include <cstdint>

#include "spmla.h"

#ifndef SPMLA_HD
#if defined(__CUDACC__) || defined(__HIPCC__)
#define SPMLA_HD __host__ __device__ __forceinline__
#else
#define SPMLA_HD inline
#endif
#endif

namespace spmla {

enum class KvElem : int32_t { kBF16 = 1, kFP8 = 2, kFP4 = 3 };  // kFP4: E2M1, two per byte
enum class KvScaleType : int32_t { kNone = 0, kF32 = 1, kUE8M0 = 2, kE4M3 = 3 };  // kE4M3: FN byte
enum class KvScalePlace : int32_t { kNone = 0, kDescriptor = 1, kInline = 2, kPageTail = 3 };

template <int L>
struct KvLayout;  // an entry per spmla_kv_layout_t value

// Address helpers shared by the entries (Derived: the entry; Base: pointer or integer offset).
template <class Derived>
struct KvLayoutAddr {
  static SPMLA_HD constexpr int64_t token_bytes(int64_t d) {
    return Derived::data_row_bytes(d) + Derived::scale_row_bytes(d);
  }
  static SPMLA_HD constexpr int64_t packed_page_bytes(int64_t d, int64_t bs) {
    return (token_bytes(d) * bs + Derived::kPageAlign - 1) / Derived::kPageAlign * Derived::kPageAlign;
  }
  template <class Base, class Off>
  static SPMLA_HD constexpr Base data_addr(Base page, Off off, int64_t bs, int64_t d) {
    (void)bs;
    return page + off * Derived::data_row_bytes(d);
  }
  // The token's first scale (page tail: its scale row). Layouts without per-token scales: the page.
  template <class Base, class Off>
  static SPMLA_HD constexpr Base scale_addr(Base page, Off off, int64_t bs, int64_t d) {
    if (Derived::kScalePlace == KvScalePlace::kInline)
      return page + off * Derived::data_row_bytes(d) + Derived::kScaleOffset;
    if (Derived::kScalePlace == KvScalePlace::kPageTail)
      return page + bs * Derived::data_row_bytes(d) + off * Derived::scale_row_bytes(d);
    return page;
  }
};

// D bf16 values.
template <>
struct KvLayout<SPMLA_KV_LAYOUT_BF16> : KvLayoutAddr<KvLayout<SPMLA_KV_LAYOUT_BF16>> {
  static constexpr const char *kName = "BF16";  // as in spmla_kv_layout_t and messages
  static constexpr int kFixedDim = 0, kDimA = 512, kDimB = 576;
  static constexpr KvElem kElem = KvElem::kBF16;
  static constexpr int kDataOffset = 0;
  static SPMLA_HD constexpr int64_t nope(int64_t d) { return d; }
  static SPMLA_HD constexpr int64_t rope(int64_t) { return 0; }
  static SPMLA_HD constexpr int64_t rope_offset(int64_t d) { return 2 * d; }
  static SPMLA_HD constexpr int64_t tile(int64_t d) { return d; }
  static constexpr KvScaleType kScaleType = KvScaleType::kNone;
  static constexpr KvScalePlace kScalePlace = KvScalePlace::kNone;
  static constexpr int kScales = 0, kScaleOffset = 0;
  static SPMLA_HD constexpr int64_t data_row_bytes(int64_t d) { return 2 * d; }
  static SPMLA_HD constexpr int64_t scale_row_bytes(int64_t) { return 0; }
  static constexpr int kPageAlign = 1;
};

// D fp8 values, one fp32 scale for the whole cache (the descriptor's).
template <>
struct KvLayout<SPMLA_KV_LAYOUT_FP8_PER_TENSOR> : KvLayoutAddr<KvLayout<SPMLA_KV_LAYOUT_FP8_PER_TENSOR>> {
  static constexpr const char *kName = "FP8_PER_TENSOR";  // as in spmla_kv_layout_t and messages
  static constexpr int kFixedDim = 0, kDimA = 512, kDimB = 576;
  static constexpr KvElem kElem = KvElem::kFP8;
  static constexpr int kDataOffset = 0;
  static SPMLA_HD constexpr int64_t nope(int64_t d) { return d; }
  static SPMLA_HD constexpr int64_t rope(int64_t) { return 0; }
  static SPMLA_HD constexpr int64_t rope_offset(int64_t d) { return d; }
  static SPMLA_HD constexpr int64_t tile(int64_t d) { return d; }
  static constexpr KvScaleType kScaleType = KvScaleType::kF32;
  static constexpr KvScalePlace kScalePlace = KvScalePlace::kDescriptor;
  static constexpr int kScales = 0, kScaleOffset = 0;
  static SPMLA_HD constexpr int64_t data_row_bytes(int64_t d) { return d; }
  static SPMLA_HD constexpr int64_t scale_row_bytes(int64_t) { return 0; }
  static constexpr int kPageAlign = 1;
};

// DeepSeek-V3.2 "fp8_ds_mla": [0,512) fp8 NoPE | [512,528) 4 fp32 scales | [528,656) 64 bf16 RoPE.
template <>
struct KvLayout<SPMLA_KV_LAYOUT_V32_FP8> : KvLayoutAddr<KvLayout<SPMLA_KV_LAYOUT_V32_FP8>> {
  static constexpr const char *kName = "V32_FP8";  // as in spmla_kv_layout_t and messages
  static constexpr int kFixedDim = 576, kDimA = 576, kDimB = 576;
  static constexpr KvElem kElem = KvElem::kFP8;
  static constexpr int kDataOffset = 0;
  static constexpr int kNope = 512, kRope = 64, kTile = 128, kTileLog2 = 7;
  static constexpr int kScales = kNope / kTile;                // 4
  static constexpr int kScaleOffset = kDataOffset + kNope;     // 512
  static constexpr int kRopeOffset = kScaleOffset + 4 * kScales;  // 528
  static constexpr int kDataRowBytes = kRopeOffset + 2 * kRope;   // 656
  static SPMLA_HD constexpr int64_t nope(int64_t) { return kNope; }
  static SPMLA_HD constexpr int64_t rope(int64_t) { return kRope; }
  static SPMLA_HD constexpr int64_t rope_offset(int64_t) { return kRopeOffset; }
  static SPMLA_HD constexpr int64_t tile(int64_t) { return kTile; }
  static constexpr KvScaleType kScaleType = KvScaleType::kF32;
  static constexpr KvScalePlace kScalePlace = KvScalePlace::kInline;
  static SPMLA_HD constexpr int64_t data_row_bytes(int64_t) { return kDataRowBytes; }
  static SPMLA_HD constexpr int64_t scale_row_bytes(int64_t) { return 0; }
  static constexpr int kPageAlign = 1;
};

// DeepSeek-V4: per page, block_size data rows of 576 B = [448 fp8 NoPE | 64 bf16 RoPE], then
// block_size scale rows of 8 B = [7 UE8M0 scales | 1 pad]; page rounded up to a multiple of 576.
template <>
struct KvLayout<SPMLA_KV_LAYOUT_V4_FP8> : KvLayoutAddr<KvLayout<SPMLA_KV_LAYOUT_V4_FP8>> {
  static constexpr const char *kName = "V4_FP8";  // as in spmla_kv_layout_t and messages
  static constexpr int kFixedDim = 512, kDimA = 512, kDimB = 512;
  static constexpr KvElem kElem = KvElem::kFP8;
  static constexpr int kDataOffset = 0;
  static constexpr int kNope = 448, kRope = 64, kTile = 64, kTileLog2 = 6;
  static constexpr int kScales = kNope / kTile;                  // 7
  static constexpr int kRopeOffset = kDataOffset + kNope;        // 448
  static constexpr int kDataRowBytes = kRopeOffset + 2 * kRope;  // 576
  static constexpr int kScaleOffset = 0;                         // in the scale row
  static constexpr int kScaleRowBytes = 8;                       // 7 scales + 1 pad byte
  static SPMLA_HD constexpr int64_t nope(int64_t) { return kNope; }
  static SPMLA_HD constexpr int64_t rope(int64_t) { return kRope; }
  static SPMLA_HD constexpr int64_t rope_offset(int64_t) { return kRopeOffset; }
  static SPMLA_HD constexpr int64_t tile(int64_t) { return kTile; }
  static constexpr KvScaleType kScaleType = KvScaleType::kUE8M0;
  static constexpr KvScalePlace kScalePlace = KvScalePlace::kPageTail;
  static SPMLA_HD constexpr int64_t data_row_bytes(int64_t) { return kDataRowBytes; }
  static SPMLA_HD constexpr int64_t scale_row_bytes(int64_t) { return kScaleRowBytes; }
  static constexpr int kPageAlign = kDataRowBytes;                          // 576
  static constexpr int kTokenBytes = kDataRowBytes + kScaleRowBytes;        // 584
};

// The indexer's K cache: per page, block_size rows of Di fp8, then block_size fp32 scales.
template <>
struct KvLayout<SPMLA_KV_LAYOUT_INDEXER_FP8> : KvLayoutAddr<KvLayout<SPMLA_KV_LAYOUT_INDEXER_FP8>> {
  static constexpr const char *kName = "INDEXER_FP8";  // as in spmla_kv_layout_t and messages
  static constexpr int kFixedDim = 0, kDimA = 64, kDimB = 128;
  static constexpr KvElem kElem = KvElem::kFP8;
  static constexpr int kDataOffset = 0;
  static SPMLA_HD constexpr int64_t nope(int64_t d) { return d; }
  static SPMLA_HD constexpr int64_t rope(int64_t) { return 0; }
  static SPMLA_HD constexpr int64_t rope_offset(int64_t d) { return d; }
  static SPMLA_HD constexpr int64_t tile(int64_t d) { return d; }
  static constexpr KvScaleType kScaleType = KvScaleType::kF32;
  static constexpr KvScalePlace kScalePlace = KvScalePlace::kPageTail;
  static constexpr int kScales = 1, kScaleOffset = 0, kScaleRowBytes = 4;
  static SPMLA_HD constexpr int64_t data_row_bytes(int64_t d) { return d; }
  static SPMLA_HD constexpr int64_t scale_row_bytes(int64_t) { return kScaleRowBytes; }
  static constexpr int kPageAlign = 1;
};

// DeepSeek-V4.1 (ABI 1.2): two layouts, each in two arrangements (spmla_kv_arrangement_t), so
// four geometries. The arrangement is a field of the descriptor, never guessed from sizes.
//   V41_FP8: 512 E4M3 values (all dims, no bf16 RoPE), tiles of 32, 16 UE8M0 scales: 528 B/token.
//   V41_FP4: 256 B of E2M1 codes (element i in byte i/2, even i in the low nibble), tiles of 16,
//            32 E4M3FN scales: 288 B/token.
// Per token (FlashMLA from 2026-09-30): the data bytes then the scale bytes, one row per token,
// no page padding. Page-blocked (FlashMLA of 2026-09-10): block_size data rows, then block_size
// scale rows, the page rounded up to a multiple of 512 B.
template <KvElem E, int kDataBytes, int kTileV, int kTileLog2V, int kScaleBytes, KvScaleType S, bool kBlocked>
struct KvV41Geometry : KvLayoutAddr<KvV41Geometry<E, kDataBytes, kTileV, kTileLog2V, kScaleBytes, S, kBlocked>> {
  static constexpr int kFixedDim = 512, kDimA = 512, kDimB = 512;
  static constexpr KvElem kElem = E;
  static constexpr int kDataOffset = 0;
  static constexpr int kValues = 512, kTile = kTileV, kTileLog2 = kTileLog2V;
  static constexpr int kScales = kValues / kTile;          // 16 (FP8) / 32 (FP4)
  static constexpr int kDataBytesPerToken = kDataBytes;    // 512 / 256
  static constexpr int kScaleBytesPerToken = kScaleBytes;  // 16 / 32 (one byte per scale)
  static constexpr int kTokenBytes = kDataBytes + kScaleBytes;  // 528 / 288
  static constexpr bool kPageBlocked = kBlocked;
  static SPMLA_HD constexpr int64_t nope(int64_t) { return kValues; }  // every value quantized
  static SPMLA_HD constexpr int64_t rope(int64_t) { return 0; }
  static SPMLA_HD constexpr int64_t rope_offset(int64_t) { return kDataBytes; }
  static SPMLA_HD constexpr int64_t tile(int64_t) { return kTile; }
  static constexpr KvScaleType kScaleType = S;
  static constexpr KvScalePlace kScalePlace = kBlocked ? KvScalePlace::kPageTail : KvScalePlace::kInline;
  static constexpr int kScaleOffset = kBlocked ? 0 : kDataBytes;  // in the scale row / data row
  static constexpr int kScaleRowBytes = kBlocked ? kScaleBytes : 0;
  static SPMLA_HD constexpr int64_t data_row_bytes(int64_t) { return kBlocked ? kDataBytes : kTokenBytes; }
  static SPMLA_HD constexpr int64_t scale_row_bytes(int64_t) { return kScaleRowBytes; }
  static constexpr int kPageAlign = kBlocked ? 512 : 1;
};
using KvV41Fp8Token = KvV41Geometry<KvElem::kFP8, 512, 32, 5, 16, KvScaleType::kUE8M0, false>;
using KvV41Fp8Blocked = KvV41Geometry<KvElem::kFP8, 512, 32, 5, 16, KvScaleType::kUE8M0, true>;
using KvV41Fp4Token = KvV41Geometry<KvElem::kFP4, 256, 16, 4, 32, KvScaleType::kE4M3, false>;
using KvV41Fp4Blocked = KvV41Geometry<KvElem::kFP4, 256, 16, 4, 32, KvScaleType::kE4M3, true>;

// KvLayout<V41_*> is the per-token geometry (the default one for code that names the layout
// alone); code that reads a V41 cache must pick the geometry of the descriptor's arrangement
// (kv_layout_info's third argument; the CPU reference's dequantize_row / store_row).
template <>
struct KvLayout<SPMLA_KV_LAYOUT_V41_FP8> : KvV41Fp8Token {
  static constexpr const char *kName = "V41_FP8";
};
template <>
struct KvLayout<SPMLA_KV_LAYOUT_V41_FP4> : KvV41Fp4Token {
  static constexpr const char *kName = "V41_FP4";
};

using KvBF16 = KvLayout<SPMLA_KV_LAYOUT_BF16>;
using KvFP8PerTensor = KvLayout<SPMLA_KV_LAYOUT_FP8_PER_TENSOR>;
using KvV32 = KvLayout<SPMLA_KV_LAYOUT_V32_FP8>;
using KvV4 = KvLayout<SPMLA_KV_LAYOUT_V4_FP8>;
using KvIndexer = KvLayout<SPMLA_KV_LAYOUT_INDEXER_FP8>;

// The layouts in order of their C enum values (a new layout: its entry, one line here, the enum).
constexpr int kKvLayoutFirst = SPMLA_KV_LAYOUT_BF16;
// kKvLayoutLast: the last layout the GPU kernel tree (backends/common) reads; its
// cache_access.cuh asserts kern::Layout's last value equals it, and the GPU plugins declare it
// in their table (spmla_backend_table_t.last_kv_layout).
constexpr int kKvLayoutLast = SPMLA_KV_LAYOUT_V41_FP4;
// The last layout of the C ABI: validation, names and sizes use this one.
constexpr int kKvLayoutLastAbi = SPMLA_KV_LAYOUT_V41_FP4;

// Runtime view of an entry (host code: validation, page sizes, the Python view).
struct KvLayoutInfo {
  bool known;
  const char *name;
  int32_t fixed_dim, dim_a, dim_b;
  KvElem elem;
  KvScaleType scale_type;
  KvScalePlace scale_place;
  int64_t data_row_bytes, scale_row_bytes, page_align;
  bool needs_arrangement;  // V41: the descriptor must name PER_TOKEN or PAGE_BLOCKED
  int32_t native_arrangement;  // pre-V41: the one arrangement (spmla_kv_arrangement_t) it has
};

template <class T>
SPMLA_HD constexpr KvLayoutInfo kv_layout_info_from(const char *name, int64_t d, bool needs_arr,
                                                    int32_t native) {
  return KvLayoutInfo{true,           name,                  T::kFixedDim,          T::kDimA,
                      T::kDimB,       T::kElem,              T::kScaleType,
                      T::kScalePlace, T::data_row_bytes(d),  T::scale_row_bytes(d),
                      T::kPageAlign,  needs_arr,             native};
}
template <int L>
SPMLA_HD constexpr KvLayoutInfo kv_layout_info_of(int64_t d) {
  using T = KvLayout<L>;
  return kv_layout_info_from<T>(T::kName, d, false,
                                T::kScalePlace == KvScalePlace::kPageTail ? SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED
                                                                          : SPMLA_KV_ARRANGEMENT_PER_TOKEN);
}

// d = 0 stands for the layout's fixed dim. `arrangement` (spmla_kv_arrangement_t) picks the
// geometry of the V41 layouts (DEFAULT gives their per-token one; validation refuses DEFAULT for
// them); the other layouts have one geometry and ignore it.
SPMLA_HD constexpr KvLayoutInfo kv_layout_info(int32_t layout, int64_t d,
                                               int32_t arrangement = SPMLA_KV_ARRANGEMENT_DEFAULT) {
  switch (layout) {
    case SPMLA_KV_LAYOUT_BF16: return kv_layout_info_of<SPMLA_KV_LAYOUT_BF16>(d);
    case SPMLA_KV_LAYOUT_FP8_PER_TENSOR: return kv_layout_info_of<SPMLA_KV_LAYOUT_FP8_PER_TENSOR>(d);
    case SPMLA_KV_LAYOUT_V32_FP8: return kv_layout_info_of<SPMLA_KV_LAYOUT_V32_FP8>(d);
    case SPMLA_KV_LAYOUT_V4_FP8: return kv_layout_info_of<SPMLA_KV_LAYOUT_V4_FP8>(d);
    case SPMLA_KV_LAYOUT_INDEXER_FP8: return kv_layout_info_of<SPMLA_KV_LAYOUT_INDEXER_FP8>(d);
    case SPMLA_KV_LAYOUT_V41_FP8:
      return arrangement == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED
                 ? kv_layout_info_from<KvV41Fp8Blocked>("V41_FP8", d, true, 0)
                 : kv_layout_info_from<KvV41Fp8Token>("V41_FP8", d, true, 0);
    case SPMLA_KV_LAYOUT_V41_FP4:
      return arrangement == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED
                 ? kv_layout_info_from<KvV41Fp4Blocked>("V41_FP4", d, true, 0)
                 : kv_layout_info_from<KvV41Fp4Token>("V41_FP4", d, true, 0);
    default:
      return KvLayoutInfo{false, nullptr, 0, 0, 0, KvElem::kBF16, KvScaleType::kNone, KvScalePlace::kNone, 0, 0, 1,
                          false, 0};
  }
}

// Packed page bytes for head dim d and block size bs (and the V41 layouts' arrangement); -1 for
// an unknown layout. Callers validate bs and d first (bs <= 2^24 and d <= 4096 keep this far
// from overflow).
SPMLA_HD constexpr int64_t kv_packed_page_bytes(int32_t layout, int64_t d, int64_t bs,
                                                int32_t arrangement = SPMLA_KV_ARRANGEMENT_DEFAULT) {
  const KvLayoutInfo i = kv_layout_info(layout, d, arrangement);
  if (!i.known) return -1;
  const int64_t used = (i.data_row_bytes + i.scale_row_bytes) * bs;
  return (used + i.page_align - 1) / i.page_align * i.page_align;
}

static_assert((1 << KvV32::kTileLog2) == KvV32::kTile && (1 << KvV4::kTileLog2) == KvV4::kTile, "tile");
static_assert(KvV32::kDataRowBytes == 656 && KvV32::kRopeOffset == 528, "SPEC: V32_FP8 token of 656 B");
static_assert(KvV4::kTokenBytes == 584 && KvV4::kDataRowBytes == 576, "SPEC: V4_FP8 token of 584 B");
static_assert(kv_packed_page_bytes(SPMLA_KV_LAYOUT_V4_FP8, 0, 64) == 37440, "V4_FP8 page rounding");
static_assert(kv_packed_page_bytes(SPMLA_KV_LAYOUT_INDEXER_FP8, 128, 64) == 132 * 64, "indexer page");
static_assert(KvV41Fp8Token::kTokenBytes == 528 && KvV41Fp4Token::kTokenBytes == 288, "SPEC: V4.1 tokens of 528 / 288 B");
static_assert(KvV41Fp8Token::kScales == 16 && KvV41Fp4Token::kScales == 32, "SPEC: V4.1 scales per token");
static_assert((1 << KvV41Fp8Token::kTileLog2) == 32 && (1 << KvV41Fp4Token::kTileLog2) == 16, "tile");
static_assert(kv_packed_page_bytes(SPMLA_KV_LAYOUT_V41_FP8, 0, 3, SPMLA_KV_ARRANGEMENT_PER_TOKEN) == 3 * 528, "V41_FP8 per token");
static_assert(kv_packed_page_bytes(SPMLA_KV_LAYOUT_V41_FP8, 0, 3, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED) == 2048, "V41_FP8 blocked: 1584 -> 2048");
static_assert(kv_packed_page_bytes(SPMLA_KV_LAYOUT_V41_FP4, 0, 64, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED) == 18432, "V41_FP4 blocked: 64*288 = 36*512");
static_assert(kv_packed_page_bytes(SPMLA_KV_LAYOUT_V41_FP4, 0, 5, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED) == 1536, "V41_FP4 blocked: 1440 -> 1536");
static_assert(KvV41Fp4Blocked::scale_addr(0, 2, 5, 512) == 5 * 256 + 2 * 32, "V41_FP4 blocked scale row");
static_assert(KvV41Fp8Token::scale_addr(0, 2, 5, 512) == 2 * 528 + 512, "V41_FP8 inline scales");

}  // namespace spmla
