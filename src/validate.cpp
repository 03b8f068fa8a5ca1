// validate.cpp — argument validation of every public entry point.
//
// VALIDATION RULES (checked by the core before any backend is called; a call that fails
// any of them returns the status in brackets, sets a message
// "spmla_<fn>: <argument>: expected <x>, got <y>" and writes nothing to its outputs).
//
// Calls
//  - handle non-NULL [INVALID_ARGUMENT] and not in use by a call on another thread
//    [HANDLE_BUSY, api.cpp]; args non-NULL; output pointers of queries (workspace_bytes,
//    count, info, ...) non-NULL [INVALID_ARGUMENT].
//  - struct_size of every caller struct (args, tensors, caches; check_struct_size, the
//    struct_size rule of docs/ABI.md): >= sizeof(the struct of this release) [INVALID_ARGUMENT,
//    message names "<arg>->struct_size"]; <= 64 KiB [INVALID_ARGUMENT, the tail is not read];
//    every byte past sizeof zero [ABI_MISMATCH, message names the struct type and offset].
//
// Tensors (spmla_tensor_t), in this order
//  - required tensors non-NULL, optional ones may be NULL [INVALID_ARGUMENT];
//  - the struct_size rule above;
//  - dtype exactly one of those the argument allows; ndim exactly the argument's rank;
//  - every shape[d] in [0, 2^31); every stride >= 0;
//  - innermost stride == 1, except that a size-1 innermost dim may have any stride;
//  - the element count and the byte extent (1 + sum (shape[d]-1)*stride[d]) * elemsize fit
//    in 64 bits, and data + extent does not wrap the address space [SIZE_OVERFLOW];
//  - data == NULL only if the tensor has zero elements [INVALID_ARGUMENT];
//  - data aligned to the element size; q, out, the kv input of kv_cache_store, the out of
//    kv_cache_gather and indexer q/k 16-byte aligned, and for those every outer stride (of a
//    dim with size > 1) times the element size a multiple of 16 [MISALIGNED];
//  - outputs do not overlap themselves, in row-major order: for every dim d of size > 1,
//    strides[d] >= 1 + sum_{e>d} (shape[e]-1)*strides[e] (for a contiguous inner block this
//    is strides[d] >= strides[d+1]*shape[d+1]) [INVALID_ARGUMENT];
//  - aliasing (after every per-tensor rule of the op): the byte range of each output
//    ([data, data + extent); an output cache's num_pages * page stride) is disjoint from the
//    range of every other tensor and cache of the call [INVALID_ARGUMENT, names both];
//  - workspace-size queries never touch memory: they skip the data-pointer rules (NULL,
//    pointer alignment, address wrap) and check everything else.
//
// KV caches (spmla_kv_cache_t)
//  - the struct_size rule above, with the 1.0 size (64) as the least: the ABI 1.2 members
//    (arrangement, reserved1) absent from a 64-byte struct read as DEFAULT and 0; reserved1
//    non-zero [ABI_MISMATCH]; layout is one of BF16, FP8_PER_TENSOR, V32_FP8, V4_FP8,
//    INDEXER_FP8, V41_FP8, V41_FP4; arrangement DEFAULT, PER_TOKEN or PAGE_BLOCKED, and
//    PER_TOKEN / PAGE_BLOCKED (not DEFAULT) for V41_FP8 / V41_FP4, DEFAULT or the layout's
//    own one for the others (V4_FP8, INDEXER_FP8 page-blocked; the rest per token);
//    BF16 requires fp8_flavor NONE, V41_FP4 E4M3FN (its scales), every other FP8 layout
//    (INDEXER_FP8 included) E4M3FN or E4M3FNUZ [INVALID_ARGUMENT];
//  - head_dim: V32_FP8 0 or 576; V4_FP8, V41_FP8, V41_FP4 0 or 512; BF16 and FP8_PER_TENSOR
//    512 or 576; INDEXER_FP8 64 or 128; block_size in 1 .. 2^20; num_pages >= 0;
//  - page_stride_bytes 0 (packed, spmla_kv_cache_page_bytes) or >= the packed page size and a
//    multiple of 16 [INVALID_ARGUMENT];
//  - num_pages * page stride fits in 64 bits and data + that does not wrap [SIZE_OVERFLOW];
//  - data NULL only if num_pages == 0 [INVALID_ARGUMENT]; data 16-byte aligned [MISALIGNED];
//  - FP8_PER_TENSOR: scale finite and > 0 [INVALID_ARGUMENT].
//
// Operations (T, H, K, ... are read from the first tensor that carries them)
//  sparse_attention: q [T,H,D] bf16, H 1..128; kv required, layout not INDEXER_FP8, D == its
//    head_dim; indices [T,K] int32, K >= 1; lengths optional [T] int32; extra_kv optional,
//    same rules and the same D, and then extra_indices [T,K2] int32 (K2 >= 1) is required
//    and extra_lengths optional [T] int32; extra_indices/extra_lengths without extra_kv are
//    an error; attn_sink optional [H] fp32; scale finite (0 = 1/sqrt(D)); out [T,H,512]
//    bf16; lse [T,H] fp32; max_logits optional [T,H] fp32.
//  plan/run of ops with a workspace: workspace_bytes >= the backend's query for the same
//    args [WORKSPACE_TOO_SMALL]; workspace NULL only if workspace_bytes == 0
//    [INVALID_ARGUMENT]; workspace 16-byte aligned [MISALIGNED].
//  indices_to_slots: positions [T,K] int32; token_to_req [T] int32; block_table [R,P] int32;
//    block_size >= 1; token_valid optional [T] uint8; slots [T,K] int32; lengths [T] int32;
//    indptr and ragged_slots both or neither: indptr [T+1] int32, ragged_slots [M] int32
//    with M >= T*K.
//  window_indices: positions [T] int32; token_to_req [T] int32; block_table [R,P] int32;
//    block_size >= 1; ratio >= 1; slots [T,W] int32 with W >= 1; lengths [T] int32.
//  indexer_logits: q [T,Hi,Di] fp8_e4m3fn or fp8_e4m3fnuz, Hi 1..64, Di 64 or 128;
//    k [S,Di] of q's dtype; k_scale [S] fp32; weights [T,Hi] fp32; k_start, k_end [T] int32;
//    logits [T,S] fp32 (row stride free).
//  indexer_logits_paged: q [B,N,Hi,Di] fp8, Hi 1..64, Di 64 or 128; cache INDEXER_FP8 with
//    head_dim Di; q's dtype must match the cache's fp8_flavor (E4M3FN <-> fp8_e4m3fn,
//    E4M3FNUZ <-> fp8_e4m3fnuz); block_table [B,P] int32; context_lens [B] int32;
//    weights [B*N,Hi] fp32; logits [B*N,C] fp32 (row stride free).
//  topk_per_row: logits [R,C] fp32 (row stride free); row_starts, row_ends optional [R]
//    int32; next_n >= 1; context_lens optional [R/next_n] int32 with R % next_n == 0, not
//    together with row_starts/row_ends; indices [R,k] int32 with k >= 1.
//  kv_cache_store: kv [N,D] bf16 with D == the cache's head_dim (any layout, INDEXER_FP8
//    included); slot_mapping [N] int32 or int64; the cache is the output.
//  kv_cache_gather: cache (any layout); slots [N] int32; out [N,D] bf16, D == head_dim.
#include "validate.h"

#include <cmath>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <string>

#include "error.h"

namespace spmla {
namespace {

constexpr int64_t kMaxDim = int64_t(1) << 31;      // shapes are < 2^31
constexpr int32_t kMaxBlockSize = int32_t(1) << 20;
constexpr size_t kMaxStructSize = size_t(64) << 10;  // struct_size cap (the tail is read)

const spmla_status_t OK = SPMLA_STATUS_SUCCESS;
const spmla_status_t INVALID = SPMLA_STATUS_INVALID_ARGUMENT;

#define SPMLA_TRY(expr)                          \
  do {                                           \
    spmla_status_t _st = (expr);                 \
    if (_st != SPMLA_STATUS_SUCCESS) return _st; \
  } while (0)

std::string field(const char *name, const char *member) { return std::string(name) + member; }
std::string dim_name(const char *name, int d) {
  return std::string(name) + ".shape[" + std::to_string(d) + "]";
}
std::string stride_name(const char *name, int d) {
  return std::string(name) + ".strides[" + std::to_string(d) + "]";
}

std::string dtypes_str(const TensorRule &r) {
  std::string s = dtype_str(r.dtypes[0]);
  if (r.dtypes[1] != SPMLA_DTYPE_INVALID) s += std::string(" or ") + dtype_str(r.dtypes[1]);
  return s;
}

// Rank of a tensor known to be valid (helpers below only use validated tensors).
int64_t dim(const spmla_tensor_t *t, int d) { return t->shape[d]; }

// shape[d] of `t` (argument `name`) must equal `value` (`what` explains where it comes from).
spmla_status_t dim_eq(const char *fn, const char *name, const spmla_tensor_t *t, int d,
                      int64_t value, const std::string &what) {
  if (t->shape[d] == value) return OK;
  return fail(INVALID, fn, dim_name(name, d), str(value) + " (" + what + ")", str(t->shape[d]));
}

spmla_status_t dim_range(const char *fn, const char *name, const spmla_tensor_t *t, int d,
                         int64_t lo, int64_t hi, const char *what) {
  if (t->shape[d] >= lo && t->shape[d] <= hi) return OK;
  return fail(INVALID, fn, dim_name(name, d) + " (" + what + ")",
              str(lo) + ".." + str(hi), str(t->shape[d]));
}

// Byte range [begin, end) a validated tensor spans (empty for zero elements or NULL data).
struct Span {
  const char *name;
  uintptr_t begin, end;
  bool output;
};

}  // namespace

spmla_status_t check_struct_size(const char *fn, const std::string &arg, const char *type,
                                 const void *p, size_t struct_size, size_t own,
                                 const char *init, bool read_tail, size_t min_size) {
  // The smallest size accepted is the struct's 1.0 size (`min_size`; 0: the struct has not grown,
  // so `own`). ABI 1.2: spmla_kv_cache_t grew from 64 to 72 bytes.
  const size_t least = min_size ? min_size : own;
  if (struct_size < least)
    return fail(INVALID, fn, arg + "->struct_size",
                ">= " + str(int64_t(least)) + " (" + init + ")",
                std::to_string(struct_size));
  if (!read_tail || struct_size <= own) return OK;
  if (struct_size > kMaxStructSize)
    return fail(INVALID, fn, arg + "->struct_size",
                str(int64_t(own)) + " .. " + str(int64_t(kMaxStructSize)) + " (" + init +
                    "; a " + type + " of a newer spmla.h is never that large)",
                std::to_string(struct_size));
  const unsigned char *b = static_cast<const unsigned char *>(p);
  for (size_t off = own; off < struct_size; ++off)
    if (b[off] != 0)
      return fail(SPMLA_STATUS_ABI_MISMATCH, fn, arg + " (" + type + ")",
                  "zero bytes from offset " + str(int64_t(own)) + " to struct_size " +
                      std::to_string(struct_size) + " (members of a newer spmla.h, which this " +
                      "libspmla " SPMLA_VERSION_STRING " cannot honour)",
                  "a non-zero byte at offset " + str(int64_t(off)));
  return OK;
}

namespace {

spmla_status_t absent(const char *fn, const char *name, const void *p, const char *why) {
  if (!p) return OK;
  return fail(INVALID, fn, name, std::string("NULL (") + why + ")", "a tensor");
}

}  // namespace

spmla_status_t validate_tensor(const char *fn, const spmla_tensor_t *t, const TensorRule &r,
                               bool check_data) {
  const char *n = r.name;
  if (!t) {
    if (!r.required) return OK;
    return fail(INVALID, fn, n, std::string("a tensor (") + dtypes_str(r) + ", rank " +
                                     std::to_string(r.ndim) + ")",
                "NULL");
  }
  SPMLA_TRY(check_struct_size(fn, n, "spmla_tensor_t", t, t->struct_size, sizeof(spmla_tensor_t),
                              "SPMLA_TENSOR_INIT"));
  const int64_t dt = enum_value(t->dtype);
  if (dt == SPMLA_DTYPE_INVALID || (dt != r.dtypes[0] && dt != r.dtypes[1]))
    return fail(INVALID, fn, field(n, ".dtype"), dtypes_str(r),
                std::string(dtype_str(dt)) + " (" + str(dt) + ")");
  if (t->ndim != r.ndim)
    return fail(INVALID, fn, field(n, ".ndim"), str(r.ndim), str(t->ndim));
  const int nd = r.ndim;
  for (int d = 0; d < nd; ++d)
    if (t->shape[d] < 0 || t->shape[d] >= kMaxDim)
      return fail(t->shape[d] < 0 ? INVALID : SPMLA_STATUS_SIZE_OVERFLOW, fn, dim_name(n, d),
                  "0 .. 2^31-1", str(t->shape[d]));
  for (int d = 0; d < nd; ++d)
    if (t->strides[d] < 0)
      return fail(INVALID, fn, stride_name(n, d), ">= 0", str(t->strides[d]));
  if (nd > 0 && t->shape[nd - 1] > 1 && t->strides[nd - 1] != 1)
    return fail(INVALID, fn, stride_name(n, nd - 1), "1 (innermost dim contiguous)",
                str(t->strides[nd - 1]));

  const int64_t esize = static_cast<int64_t>(spmla_dtype_size(t->dtype));
  int64_t numel = 1;
  for (int d = 0; d < nd; ++d)
    if (__builtin_mul_overflow(numel, t->shape[d], &numel))
      return fail(SPMLA_STATUS_SIZE_OVERFLOW, fn, field(n, ".shape"),
                  "an element count below 2^63", "an overflowing product");
  // Byte extent: (1 + sum (shape-1)*stride) * esize, checked for overflow.
  int64_t extent = 0;
  if (numel > 0) {
    extent = 1;
    for (int d = 0; d < nd; ++d) {
      int64_t term;
      if (__builtin_mul_overflow(t->shape[d] - 1, t->strides[d], &term) ||
          __builtin_add_overflow(extent, term, &extent))
        return fail(SPMLA_STATUS_SIZE_OVERFLOW, fn, stride_name(n, d),
                    "a byte extent below 2^63", str(t->strides[d]) + " (overflows)");
    }
    if (__builtin_mul_overflow(extent, esize, &extent))
      return fail(SPMLA_STATUS_SIZE_OVERFLOW, fn, field(n, ".strides"),
                  "a byte extent below 2^63", "an overflowing extent");
  }
  if (check_data) {
    if (!t->data && numel > 0)
      return fail(INVALID, fn, field(n, ".data"),
                  "non-NULL (" + str(numel) + " elements)", "NULL");
    if (t->data) {
      const uintptr_t p = reinterpret_cast<uintptr_t>(t->data);
      if (static_cast<uint64_t>(extent) > std::numeric_limits<uintptr_t>::max() - p)
        return fail(SPMLA_STATUS_SIZE_OVERFLOW, fn, field(n, ".data"),
                    "data + " + str(extent) + " bytes inside the address space", ptr_str(t->data));
      if (p % static_cast<uintptr_t>(esize) != 0)
        return fail(SPMLA_STATUS_MISALIGNED, fn, field(n, ".data"),
                    "alignment " + str(esize) + " (" + dtype_str(t->dtype) + ")",
                    ptr_str(t->data));
      if (r.align16 && p % 16 != 0)
        return fail(SPMLA_STATUS_MISALIGNED, fn, field(n, ".data"), "16-byte alignment",
                    ptr_str(t->data));
    }
  }
  if (r.align16) {
    for (int d = 0; d + 1 < nd; ++d)
      if (t->shape[d] > 1 && (t->strides[d] * esize) % 16 != 0)
        return fail(SPMLA_STATUS_MISALIGNED, fn, stride_name(n, d),
                    "a multiple of " + str(16 / esize) + " elements (16 bytes)",
                    str(t->strides[d]));
  }
  if (r.output && numel > 0) {
    // Row-major non-overlap: each dim of size > 1 steps past everything inside it.
    int64_t span = 1;  // 1 + sum_{e>d} (shape[e]-1)*stride[e], no overflow (extent fits)
    for (int d = nd - 1; d >= 0; --d) {
      if (d + 1 < nd) span += (t->shape[d + 1] - 1) * t->strides[d + 1];
      if (t->shape[d] > 1 && d + 1 < nd && t->strides[d] < span)
        return fail(INVALID, fn, stride_name(n, d),
                    ">= " + str(span) + " (an output must not overlap itself)",
                    str(t->strides[d]));
    }
  }
  return OK;
}

spmla_status_t validate_cache(const char *fn, const char *n, const spmla_kv_cache_t *c,
                              bool check_data, CacheGeometry *geom) {
  if (!c) return fail(INVALID, fn, n, "a KV cache descriptor", "NULL");
  SPMLA_TRY(check_struct_size(fn, n, "spmla_kv_cache_t", c, c->struct_size,
                              sizeof(spmla_kv_cache_t), "SPMLA_KV_CACHE_INIT", true,
                              kKvCacheSizeV1_0));
  // From here on the full-size view (the members an older caller's struct lacks at their
  // SPMLA_KV_CACHE_INIT values); `c` keeps pointing at the caller's bytes for nothing else.
  const spmla_kv_cache_t full = normalized_cache(*c);
  if (full.reserved1 != 0)
    return fail(SPMLA_STATUS_ABI_MISMATCH, fn, field(n, ".reserved1"),
                "0 (reserved in ABI " + str(SPMLA_ABI_VERSION_MAJOR) + "." +
                    str(SPMLA_ABI_VERSION_MINOR) + "; a newer spmla.h may use it, this libspmla " +
                    SPMLA_VERSION_STRING " cannot honour it)",
                str(full.reserved1));
  const int64_t Lv = enum_value(full.layout);
  if (Lv < kKvLayoutFirst || Lv > kKvLayoutLastAbi) {  // the layouts of numerics/kv_layout_traits.h
    std::string names;
    for (int l = kKvLayoutFirst; l <= kKvLayoutLastAbi; ++l)
      names += (l == kKvLayoutFirst ? "" : l == kKvLayoutLastAbi ? " or " : ", ") + layout_str(l);
    return fail(INVALID, fn, field(n, ".layout"), names, layout_str(Lv));
  }
  const spmla_kv_layout_t L = static_cast<spmla_kv_layout_t>(Lv);
  // The arrangement (ABI 1.2): V41 layouts exist in two and must name theirs; the others have
  // one, named DEFAULT or by its name.
  int32_t a32;  // an int32 whatever the enum's underlying type (a C caller may store -1)
  std::memcpy(&a32, &full.arrangement, sizeof a32);
  const int64_t A = a32;
  if (A < SPMLA_KV_ARRANGEMENT_DEFAULT || A > SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED)
    return fail(INVALID, fn, field(n, ".arrangement"), "DEFAULT (0), PER_TOKEN (1) or PAGE_BLOCKED (2)",
                arrangement_str(A));
  const KvLayoutInfo li = kv_layout_info(L, 0, static_cast<int32_t>(A));
  if (li.needs_arrangement) {
    if (A == SPMLA_KV_ARRANGEMENT_DEFAULT)
      return fail(INVALID, fn, field(n, ".arrangement"),
                  "PER_TOKEN or PAGE_BLOCKED (layout " + layout_str(L) +
                      " exists in both arrangements; name the one the cache was written in)",
                  c->struct_size < offsetof(spmla_kv_cache_t, arrangement) + sizeof(int32_t)
                      ? "DEFAULT (struct_size " + std::to_string(c->struct_size) +
                            " of an ABI 1.0/1.1 header has no arrangement member)"
                      : std::string("DEFAULT"));
  } else if (A != SPMLA_KV_ARRANGEMENT_DEFAULT && A != li.native_arrangement) {
    return fail(INVALID, fn, field(n, ".arrangement"),
                "DEFAULT or " + arrangement_str(li.native_arrangement) + " (layout " +
                    layout_str(L) + " has only that arrangement)",
                arrangement_str(A));
  }
  const int64_t F = enum_value(full.fp8_flavor);
  if (li.elem == KvElem::kBF16) {  // bf16 data: no FP8 flavor
    if (F != SPMLA_FP8_NONE)
      return fail(INVALID, fn, field(n, ".fp8_flavor"), "NONE (layout " + layout_str(L) + ")", flavor_str(F));
  } else if (li.elem == KvElem::kFP4) {  // E2M1 data, E4M3FN scales (SPEC: the 448 clamp)
    if (F != SPMLA_FP8_E4M3FN)
      return fail(INVALID, fn, field(n, ".fp8_flavor"),
                  "E4M3FN (layout " + layout_str(L) + ": its tile scales are E4M3FN bytes)", flavor_str(F));
  } else if (F != SPMLA_FP8_E4M3FN && F != SPMLA_FP8_E4M3FNUZ) {
    return fail(INVALID, fn, field(n, ".fp8_flavor"),
                "E4M3FN or E4M3FNUZ (layout " + layout_str(L) + ")", flavor_str(F));
  }
  // The head dims a layout allows (numerics/kv_layout_traits.h): 0 or its fixed D, else one of two.
  const int32_t hd = full.head_dim;
  const bool dim_ok = li.fixed_dim ? (hd == 0 || hd == li.fixed_dim) : (hd == li.dim_a || hd == li.dim_b);
  const std::string dims = li.fixed_dim ? "0 or " + str(li.fixed_dim) : str(li.dim_a) + " or " + str(li.dim_b);
  if (!dim_ok)
    return fail(INVALID, fn, field(n, ".head_dim"), dims + " (layout " + layout_str(L) + ")", str(hd));
  if (full.block_size < 1 || full.block_size > kMaxBlockSize)
    return fail(INVALID, fn, field(n, ".block_size"), "1 .. 2^20", str(full.block_size));
  if (full.num_pages < 0)
    return fail(INVALID, fn, field(n, ".num_pages"), ">= 0", str(full.num_pages));
  const int32_t D = hd ? hd : layout_fixed_dim(L);
  const int64_t packed = packed_page_bytes(L, D, full.block_size, static_cast<int32_t>(A));
  if (full.page_stride_bytes != 0 &&
      (full.page_stride_bytes < packed || full.page_stride_bytes % 16 != 0))
    return fail(INVALID, fn, field(n, ".page_stride_bytes"),
                "0 or >= " + str(packed) + " (packed page" +
                    (li.needs_arrangement ? " of " + layout_str(L) + ", " + arrangement_str(A) : std::string()) +
                    ") and a multiple of 16",
                str(full.page_stride_bytes));
  const int64_t stride = full.page_stride_bytes ? full.page_stride_bytes : packed;
  int64_t total;
  if (__builtin_mul_overflow(full.num_pages, stride, &total))
    return fail(SPMLA_STATUS_SIZE_OVERFLOW, fn, field(n, ".num_pages"),
                "num_pages * page stride (" + str(stride) + " B) below 2^63", str(full.num_pages));
  if (L == SPMLA_KV_LAYOUT_FP8_PER_TENSOR && !(std::isfinite(full.scale) && full.scale > 0.0f))
    return fail(INVALID, fn, field(n, ".scale"), "a finite value > 0 (FP8_PER_TENSOR)",
                str_float(full.scale));
  if (check_data) {
    if (!full.data && full.num_pages > 0)
      return fail(INVALID, fn, field(n, ".data"),
                  "non-NULL (" + str(full.num_pages) + " pages)", "NULL");
    if (full.data) {
      const uintptr_t p = reinterpret_cast<uintptr_t>(full.data);
      if (static_cast<uint64_t>(total) > std::numeric_limits<uintptr_t>::max() - p)
        return fail(SPMLA_STATUS_SIZE_OVERFLOW, fn, field(n, ".data"),
                    "data + " + str(total) + " bytes inside the address space", ptr_str(full.data));
      if (p % 16 != 0)
        return fail(SPMLA_STATUS_MISALIGNED, fn, field(n, ".data"), "16-byte alignment",
                    ptr_str(full.data));
    }
  }
  if (geom) *geom = resolve_geometry(*c);
  return OK;
}

// --------------------------------------------------------------------------------------------
// Operations
// --------------------------------------------------------------------------------------------
namespace {
constexpr spmla_dtype_t NONE = SPMLA_DTYPE_INVALID;
constexpr spmla_dtype_t BF16 = SPMLA_DTYPE_BF16;
constexpr spmla_dtype_t F32 = SPMLA_DTYPE_FP32;
constexpr spmla_dtype_t I32 = SPMLA_DTYPE_INT32;
constexpr spmla_dtype_t I64 = SPMLA_DTYPE_INT64;
constexpr spmla_dtype_t U8 = SPMLA_DTYPE_UINT8;
constexpr spmla_dtype_t FN = SPMLA_DTYPE_FP8_E4M3FN;
constexpr spmla_dtype_t FNUZ = SPMLA_DTYPE_FP8_E4M3FNUZ;

// Rule constructors: in(put), out(put), req(uired) / opt(ional).
TensorRule in_req(const char *n, int nd, spmla_dtype_t a, spmla_dtype_t b = NONE,
                  bool al16 = false) {
  return TensorRule{n, true, false, nd, {a, b}, al16};
}
TensorRule in_opt(const char *n, int nd, spmla_dtype_t a) {
  return TensorRule{n, false, false, nd, {a, NONE}, false};
}
TensorRule out_req(const char *n, int nd, spmla_dtype_t a, bool al16 = false) {
  return TensorRule{n, true, true, nd, {a, NONE}, al16};
}
TensorRule out_opt(const char *n, int nd, spmla_dtype_t a) {
  return TensorRule{n, false, true, nd, {a, NONE}, false};
}

// Names of the argument structs and their *_INIT macros, for messages.
#define SPMLA_ARGS_NAMES(T, INIT)                              \
  const char *args_type(const T *) { return #T; }              \
  const char *args_init(const T *) { return INIT; }
SPMLA_ARGS_NAMES(spmla_sparse_attention_args_t, "SPMLA_SPARSE_ATTENTION_ARGS_INIT")
SPMLA_ARGS_NAMES(spmla_indices_to_slots_args_t, "SPMLA_INDICES_TO_SLOTS_ARGS_INIT")
SPMLA_ARGS_NAMES(spmla_window_indices_args_t, "SPMLA_WINDOW_INDICES_ARGS_INIT")
SPMLA_ARGS_NAMES(spmla_indexer_logits_args_t, "SPMLA_INDEXER_LOGITS_ARGS_INIT")
SPMLA_ARGS_NAMES(spmla_indexer_logits_paged_args_t, "SPMLA_INDEXER_LOGITS_PAGED_ARGS_INIT")
SPMLA_ARGS_NAMES(spmla_topk_per_row_args_t, "SPMLA_TOPK_PER_ROW_ARGS_INIT")
SPMLA_ARGS_NAMES(spmla_kv_cache_store_args_t, "SPMLA_KV_CACHE_STORE_ARGS_INIT")
SPMLA_ARGS_NAMES(spmla_kv_cache_gather_args_t, "SPMLA_KV_CACHE_GATHER_ARGS_INIT")
#undef SPMLA_ARGS_NAMES

template <class A>
spmla_status_t args_header(const char *fn, const A *a) {
  if (!a) return fail(INVALID, fn, "args", "an argument struct", "NULL");
  return check_struct_size(fn, "args", args_type(a), a, a->struct_size, sizeof(A), args_init(a));
}
#define SPMLA_ARGS_HEADER(fn, a) SPMLA_TRY(args_header(fn, a))

// Aliasing: the byte range of a validated tensor / cache, and the rule that no output's range
// meets the range of any other tensor or cache of the call (inputs may share memory freely).
Span span(const char *name, const spmla_tensor_t *t, bool output) {
  Span s{name, 0, 0, output};
  if (!t || !t->data) return s;
  int64_t extent = 1;  // validated: no overflow
  for (int d = 0; d < t->ndim; ++d) {
    if (t->shape[d] == 0) return s;
    extent += (t->shape[d] - 1) * t->strides[d];
  }
  s.begin = reinterpret_cast<uintptr_t>(t->data);
  s.end = s.begin + static_cast<uintptr_t>(extent) * spmla_dtype_size(t->dtype);
  return s;
}
Span span(const char *name, const spmla_kv_cache_t *c, bool output) {
  Span s{name, 0, 0, output};
  if (!c || !c->data) return s;
  const CacheGeometry g = resolve_geometry(*c);
  s.begin = reinterpret_cast<uintptr_t>(c->data);
  s.end = s.begin + static_cast<uintptr_t>(g.num_pages * g.page_stride);
  return s;
}
std::string range_str(const Span &s) {
  return "[" + ptr_str(reinterpret_cast<const void *>(s.begin)) + ", " +
         ptr_str(reinterpret_cast<const void *>(s.end)) + ")";
}
spmla_status_t no_overlap(const char *fn, std::initializer_list<Span> spans) {
  for (const Span &o : spans) {
    if (!o.output || o.begin == o.end) continue;
    for (const Span &x : spans) {
      if (&x == &o || x.begin == x.end) continue;
      if (o.begin < x.end && x.begin < o.end)
        return fail(INVALID, fn, o.name,
                    std::string("memory disjoint from ") + x.name +
                        " (an output may not overlap any other tensor or cache of the call)",
                    "bytes " + range_str(o) + " overlapping " + x.name + "'s " + range_str(x));
    }
  }
  return OK;
}

spmla_status_t block_size_ok(const char *fn, int32_t bs) {
  if (bs >= 1) return OK;
  return fail(INVALID, fn, "args->block_size", ">= 1", str(bs));
}
}  // namespace

spmla_status_t validate_sparse_attention(const char *fn, const spmla_sparse_attention_args_t *a,
                                         bool cd) {
  SPMLA_ARGS_HEADER(fn, a);
  SPMLA_TRY(validate_tensor(fn, a->q, in_req("q", 3, BF16, NONE, true), cd));
  const int64_t T = dim(a->q, 0), H = dim(a->q, 1), D = dim(a->q, 2);
  SPMLA_TRY(dim_range(fn, "q", a->q, 1, 1, 128, "H"));
  CacheGeometry g{};
  SPMLA_TRY(validate_cache(fn, "kv", a->kv, cd, &g));
  if (g.layout == SPMLA_KV_LAYOUT_INDEXER_FP8)
    return fail(INVALID, fn, "kv.layout",
                "an attention layout (BF16, FP8_PER_TENSOR, V32_FP8, V4_FP8, V41_FP8, V41_FP4)",
                "INDEXER_FP8");
  if (D != g.dim) return dim_eq(fn, "q", a->q, 2, g.dim, "D_qk = kv.head_dim");
  SPMLA_TRY(validate_tensor(fn, a->indices, in_req("indices", 2, I32), cd));
  SPMLA_TRY(dim_eq(fn, "indices", a->indices, 0, T, "T = q.shape[0]"));
  SPMLA_TRY(dim_range(fn, "indices", a->indices, 1, 1, kMaxDim - 1, "K"));
  SPMLA_TRY(validate_tensor(fn, a->lengths, in_opt("lengths", 1, I32), cd));
  if (a->lengths) SPMLA_TRY(dim_eq(fn, "lengths", a->lengths, 0, T, "T = q.shape[0]"));
  if (a->extra_kv) {
    CacheGeometry ge{};
    SPMLA_TRY(validate_cache(fn, "extra_kv", a->extra_kv, cd, &ge));
    if (ge.layout == SPMLA_KV_LAYOUT_INDEXER_FP8)
      return fail(INVALID, fn, "extra_kv.layout",
                  "an attention layout (BF16, FP8_PER_TENSOR, V32_FP8, V4_FP8, V41_FP8, V41_FP4)",
                  "INDEXER_FP8");
    if (ge.dim != D)
      return fail(INVALID, fn, "extra_kv.head_dim", str(D) + " (D_qk = q.shape[2])",
                  str(ge.dim));
    if (!a->extra_indices)
      return fail(INVALID, fn, "extra_indices", "a tensor [T, K2] int32 (extra_kv is given)",
                  "NULL");
    SPMLA_TRY(validate_tensor(fn, a->extra_indices, in_req("extra_indices", 2, I32), cd));
    SPMLA_TRY(dim_eq(fn, "extra_indices", a->extra_indices, 0, T, "T = q.shape[0]"));
    SPMLA_TRY(dim_range(fn, "extra_indices", a->extra_indices, 1, 1, kMaxDim - 1, "K2"));
    SPMLA_TRY(validate_tensor(fn, a->extra_lengths, in_opt("extra_lengths", 1, I32), cd));
    if (a->extra_lengths)
      SPMLA_TRY(dim_eq(fn, "extra_lengths", a->extra_lengths, 0, T, "T = q.shape[0]"));
  } else {
    SPMLA_TRY(absent(fn, "extra_indices", a->extra_indices, "no extra_kv"));
    SPMLA_TRY(absent(fn, "extra_lengths", a->extra_lengths, "no extra_kv"));
  }
  SPMLA_TRY(validate_tensor(fn, a->attn_sink, in_opt("attn_sink", 1, F32), cd));
  if (a->attn_sink) SPMLA_TRY(dim_eq(fn, "attn_sink", a->attn_sink, 0, H, "H = q.shape[1]"));
  if (!std::isfinite(a->scale))
    return fail(INVALID, fn, "args->scale", "a finite value (0 = 1/sqrt(D_qk))",
                str_float(a->scale));
  SPMLA_TRY(validate_tensor(fn, a->out, out_req("out", 3, BF16, true), cd));
  SPMLA_TRY(dim_eq(fn, "out", a->out, 0, T, "T = q.shape[0]"));
  SPMLA_TRY(dim_eq(fn, "out", a->out, 1, H, "H = q.shape[1]"));
  SPMLA_TRY(dim_eq(fn, "out", a->out, 2, 512, "D_v"));
  SPMLA_TRY(validate_tensor(fn, a->lse, out_req("lse", 2, F32), cd));
  SPMLA_TRY(dim_eq(fn, "lse", a->lse, 0, T, "T = q.shape[0]"));
  SPMLA_TRY(dim_eq(fn, "lse", a->lse, 1, H, "H = q.shape[1]"));
  SPMLA_TRY(validate_tensor(fn, a->max_logits, out_opt("max_logits", 2, F32), cd));
  if (a->max_logits) {
    SPMLA_TRY(dim_eq(fn, "max_logits", a->max_logits, 0, T, "T = q.shape[0]"));
    SPMLA_TRY(dim_eq(fn, "max_logits", a->max_logits, 1, H, "H = q.shape[1]"));
  }
  if (cd)
    SPMLA_TRY(no_overlap(fn, {span("q", a->q, false), span("kv", a->kv, false),
                              span("indices", a->indices, false),
                              span("lengths", a->lengths, false),
                              span("extra_kv", a->extra_kv, false),
                              span("extra_indices", a->extra_indices, false),
                              span("extra_lengths", a->extra_lengths, false),
                              span("attn_sink", a->attn_sink, false), span("out", a->out, true),
                              span("lse", a->lse, true),
                              span("max_logits", a->max_logits, true)}));
  return OK;
}

spmla_status_t validate_indices_to_slots(const char *fn, const spmla_indices_to_slots_args_t *a) {
  SPMLA_ARGS_HEADER(fn, a);
  SPMLA_TRY(validate_tensor(fn, a->positions, in_req("positions", 2, I32), true));
  const int64_t T = dim(a->positions, 0), K = dim(a->positions, 1);
  SPMLA_TRY(validate_tensor(fn, a->token_to_req, in_req("token_to_req", 1, I32), true));
  SPMLA_TRY(dim_eq(fn, "token_to_req", a->token_to_req, 0, T, "T = positions.shape[0]"));
  SPMLA_TRY(validate_tensor(fn, a->block_table, in_req("block_table", 2, I32), true));
  SPMLA_TRY(block_size_ok(fn, a->block_size));
  SPMLA_TRY(validate_tensor(fn, a->token_valid, in_opt("token_valid", 1, U8), true));
  if (a->token_valid)
    SPMLA_TRY(dim_eq(fn, "token_valid", a->token_valid, 0, T, "T = positions.shape[0]"));
  SPMLA_TRY(validate_tensor(fn, a->slots, out_req("slots", 2, I32), true));
  SPMLA_TRY(dim_eq(fn, "slots", a->slots, 0, T, "T = positions.shape[0]"));
  SPMLA_TRY(dim_eq(fn, "slots", a->slots, 1, K, "K = positions.shape[1]"));
  SPMLA_TRY(validate_tensor(fn, a->lengths, out_req("lengths", 1, I32), true));
  SPMLA_TRY(dim_eq(fn, "lengths", a->lengths, 0, T, "T = positions.shape[0]"));
  if (!a->indptr != !a->ragged_slots) {
    const char *given = a->indptr ? "indptr" : "ragged_slots";
    const char *missing = a->indptr ? "ragged_slots" : "indptr";
    return fail(INVALID, fn, missing,
                std::string("a tensor (") + given + " is given; pass both or neither)", "NULL");
  }
  if (a->indptr) {
    SPMLA_TRY(validate_tensor(fn, a->indptr, out_req("indptr", 1, I32), true));
    SPMLA_TRY(dim_eq(fn, "indptr", a->indptr, 0, T + 1, "T + 1"));
    SPMLA_TRY(validate_tensor(fn, a->ragged_slots, out_req("ragged_slots", 1, I32), true));
    if (dim(a->ragged_slots, 0) < T * K)
      return fail(INVALID, fn, "ragged_slots.shape[0]", ">= " + str(T * K) + " (T * K)",
                  str(dim(a->ragged_slots, 0)));
  }
  SPMLA_TRY(no_overlap(fn, {span("positions", a->positions, false),
                            span("token_to_req", a->token_to_req, false),
                            span("block_table", a->block_table, false),
                            span("token_valid", a->token_valid, false),
                            span("slots", a->slots, true), span("lengths", a->lengths, true),
                            span("indptr", a->indptr, true),
                            span("ragged_slots", a->ragged_slots, true)}));
  return OK;
}

spmla_status_t validate_window_indices(const char *fn, const spmla_window_indices_args_t *a) {
  SPMLA_ARGS_HEADER(fn, a);
  SPMLA_TRY(validate_tensor(fn, a->positions, in_req("positions", 1, I32), true));
  const int64_t T = dim(a->positions, 0);
  SPMLA_TRY(validate_tensor(fn, a->token_to_req, in_req("token_to_req", 1, I32), true));
  SPMLA_TRY(dim_eq(fn, "token_to_req", a->token_to_req, 0, T, "T = positions.shape[0]"));
  SPMLA_TRY(validate_tensor(fn, a->block_table, in_req("block_table", 2, I32), true));
  SPMLA_TRY(block_size_ok(fn, a->block_size));
  if (a->ratio < 1) return fail(INVALID, fn, "args->ratio", ">= 1", str(a->ratio));
  SPMLA_TRY(validate_tensor(fn, a->slots, out_req("slots", 2, I32), true));
  SPMLA_TRY(dim_eq(fn, "slots", a->slots, 0, T, "T = positions.shape[0]"));
  SPMLA_TRY(dim_range(fn, "slots", a->slots, 1, 1, kMaxDim - 1, "W"));
  SPMLA_TRY(validate_tensor(fn, a->lengths, out_req("lengths", 1, I32), true));
  SPMLA_TRY(dim_eq(fn, "lengths", a->lengths, 0, T, "T = positions.shape[0]"));
  SPMLA_TRY(no_overlap(fn, {span("positions", a->positions, false),
                            span("token_to_req", a->token_to_req, false),
                            span("block_table", a->block_table, false),
                            span("slots", a->slots, true), span("lengths", a->lengths, true)}));
  return OK;
}

spmla_status_t validate_indexer_logits(const char *fn, const spmla_indexer_logits_args_t *a,
                                       bool cd) {
  SPMLA_ARGS_HEADER(fn, a);
  SPMLA_TRY(validate_tensor(fn, a->q, in_req("q", 3, FN, FNUZ, true), cd));
  const int64_t T = dim(a->q, 0), Hi = dim(a->q, 1), Di = dim(a->q, 2);
  SPMLA_TRY(dim_range(fn, "q", a->q, 1, 1, 64, "Hi"));
  if (Di != 64 && Di != 128) return fail(INVALID, fn, "q.shape[2] (Di)", "64 or 128", str(Di));
  SPMLA_TRY(validate_tensor(fn, a->k, in_req("k", 2, a->q->dtype, NONE, true), cd));
  const int64_t S = dim(a->k, 0);
  SPMLA_TRY(dim_eq(fn, "k", a->k, 1, Di, "Di = q.shape[2]"));
  SPMLA_TRY(validate_tensor(fn, a->k_scale, in_req("k_scale", 1, F32), cd));
  SPMLA_TRY(dim_eq(fn, "k_scale", a->k_scale, 0, S, "S = k.shape[0]"));
  SPMLA_TRY(validate_tensor(fn, a->weights, in_req("weights", 2, F32), cd));
  SPMLA_TRY(dim_eq(fn, "weights", a->weights, 0, T, "T = q.shape[0]"));
  SPMLA_TRY(dim_eq(fn, "weights", a->weights, 1, Hi, "Hi = q.shape[1]"));
  SPMLA_TRY(validate_tensor(fn, a->k_start, in_req("k_start", 1, I32), cd));
  SPMLA_TRY(dim_eq(fn, "k_start", a->k_start, 0, T, "T = q.shape[0]"));
  SPMLA_TRY(validate_tensor(fn, a->k_end, in_req("k_end", 1, I32), cd));
  SPMLA_TRY(dim_eq(fn, "k_end", a->k_end, 0, T, "T = q.shape[0]"));
  SPMLA_TRY(validate_tensor(fn, a->logits, out_req("logits", 2, F32), cd));
  SPMLA_TRY(dim_eq(fn, "logits", a->logits, 0, T, "T = q.shape[0]"));
  SPMLA_TRY(dim_eq(fn, "logits", a->logits, 1, S, "S = k.shape[0]"));
  if (cd)
    SPMLA_TRY(no_overlap(fn, {span("q", a->q, false), span("k", a->k, false),
                              span("k_scale", a->k_scale, false),
                              span("weights", a->weights, false),
                              span("k_start", a->k_start, false), span("k_end", a->k_end, false),
                              span("logits", a->logits, true)}));
  return OK;
}

spmla_status_t validate_indexer_logits_paged(const char *fn,
                                             const spmla_indexer_logits_paged_args_t *a,
                                             bool cd) {
  SPMLA_ARGS_HEADER(fn, a);
  SPMLA_TRY(validate_tensor(fn, a->q, in_req("q", 4, FN, FNUZ, true), cd));
  const int64_t B = dim(a->q, 0), N = dim(a->q, 1), Hi = dim(a->q, 2), Di = dim(a->q, 3);
  SPMLA_TRY(dim_range(fn, "q", a->q, 2, 1, 64, "Hi"));
  if (Di != 64 && Di != 128) return fail(INVALID, fn, "q.shape[3] (Di)", "64 or 128", str(Di));
  CacheGeometry g{};
  SPMLA_TRY(validate_cache(fn, "cache", a->cache, cd, &g));
  if (g.layout != SPMLA_KV_LAYOUT_INDEXER_FP8)
    return fail(INVALID, fn, "cache.layout", "INDEXER_FP8", layout_str(g.layout));
  const spmla_dtype_t want = g.flavor == SPMLA_FP8_E4M3FN ? FN : FNUZ;
  if (enum_value(a->q->dtype) != want)
    return fail(INVALID, fn, "q.dtype",
                std::string(dtype_str(want)) + " (cache.fp8_flavor is " + flavor_str(g.flavor) +
                    "; FP8 flavors must match)",
                dtype_str(enum_value(a->q->dtype)));
  if (g.dim != Di)
    return fail(INVALID, fn, "cache.head_dim", str(Di) + " (Di = q.shape[3])", str(g.dim));
  SPMLA_TRY(validate_tensor(fn, a->block_table, in_req("block_table", 2, I32), cd));
  SPMLA_TRY(dim_eq(fn, "block_table", a->block_table, 0, B, "B = q.shape[0]"));
  SPMLA_TRY(validate_tensor(fn, a->context_lens, in_req("context_lens", 1, I32), cd));
  SPMLA_TRY(dim_eq(fn, "context_lens", a->context_lens, 0, B, "B = q.shape[0]"));
  SPMLA_TRY(validate_tensor(fn, a->weights, in_req("weights", 2, F32), cd));
  SPMLA_TRY(dim_eq(fn, "weights", a->weights, 0, B * N, "B * N = q.shape[0] * q.shape[1]"));
  SPMLA_TRY(dim_eq(fn, "weights", a->weights, 1, Hi, "Hi = q.shape[2]"));
  SPMLA_TRY(validate_tensor(fn, a->logits, out_req("logits", 2, F32), cd));
  SPMLA_TRY(dim_eq(fn, "logits", a->logits, 0, B * N, "B * N = q.shape[0] * q.shape[1]"));
  if (cd)
    SPMLA_TRY(no_overlap(fn, {span("q", a->q, false), span("cache", a->cache, false),
                              span("block_table", a->block_table, false),
                              span("context_lens", a->context_lens, false),
                              span("weights", a->weights, false),
                              span("logits", a->logits, true)}));
  return OK;
}

spmla_status_t validate_topk_per_row(const char *fn, const spmla_topk_per_row_args_t *a,
                                     bool cd) {
  SPMLA_ARGS_HEADER(fn, a);
  SPMLA_TRY(validate_tensor(fn, a->logits, in_req("logits", 2, F32), cd));
  const int64_t R = dim(a->logits, 0);
  SPMLA_TRY(validate_tensor(fn, a->row_starts, in_opt("row_starts", 1, I32), cd));
  if (a->row_starts) SPMLA_TRY(dim_eq(fn, "row_starts", a->row_starts, 0, R, "R = logits.shape[0]"));
  SPMLA_TRY(validate_tensor(fn, a->row_ends, in_opt("row_ends", 1, I32), cd));
  if (a->row_ends) SPMLA_TRY(dim_eq(fn, "row_ends", a->row_ends, 0, R, "R = logits.shape[0]"));
  if (a->next_n < 1) return fail(INVALID, fn, "args->next_n", ">= 1", str(a->next_n));
  if (a->context_lens) {
    if (a->row_starts || a->row_ends)
      return fail(INVALID, fn, "context_lens",
                  std::string("NULL (") + (a->row_starts ? "row_starts" : "row_ends") +
                      " is given; the paged rule and explicit ranges exclude each other)",
                  "a tensor");
    if (R % a->next_n != 0)
      return fail(INVALID, fn, "logits.shape[0] (R)",
                  "a multiple of next_n = " + str(a->next_n), str(R));
    SPMLA_TRY(validate_tensor(fn, a->context_lens, in_req("context_lens", 1, I32), cd));
    SPMLA_TRY(dim_eq(fn, "context_lens", a->context_lens, 0, R / a->next_n,
                     "R / next_n = logits.shape[0] / " + str(a->next_n)));
  }
  SPMLA_TRY(validate_tensor(fn, a->indices, out_req("indices", 2, I32), cd));
  SPMLA_TRY(dim_eq(fn, "indices", a->indices, 0, R, "R = logits.shape[0]"));
  SPMLA_TRY(dim_range(fn, "indices", a->indices, 1, 1, kMaxDim - 1, "k"));
  if (cd)
    SPMLA_TRY(no_overlap(fn, {span("logits", a->logits, false),
                              span("row_starts", a->row_starts, false),
                              span("row_ends", a->row_ends, false),
                              span("context_lens", a->context_lens, false),
                              span("indices", a->indices, true)}));
  return OK;
}

spmla_status_t validate_kv_cache_store(const char *fn, const spmla_kv_cache_store_args_t *a) {
  SPMLA_ARGS_HEADER(fn, a);
  CacheGeometry g{};
  SPMLA_TRY(validate_cache(fn, "cache", a->cache, true, &g));
  SPMLA_TRY(validate_tensor(fn, a->kv, in_req("kv", 2, BF16, NONE, true), true));
  const int64_t N = dim(a->kv, 0);
  SPMLA_TRY(dim_eq(fn, "kv", a->kv, 1, g.dim, "D = cache.head_dim"));
  SPMLA_TRY(validate_tensor(fn, a->slot_mapping, in_req("slot_mapping", 1, I32, I64), true));
  SPMLA_TRY(dim_eq(fn, "slot_mapping", a->slot_mapping, 0, N, "N = kv.shape[0]"));
  SPMLA_TRY(no_overlap(fn, {span("kv", a->kv, false),
                            span("slot_mapping", a->slot_mapping, false),
                            span("cache", a->cache, true)}));
  return OK;
}

spmla_status_t validate_kv_cache_gather(const char *fn, const spmla_kv_cache_gather_args_t *a) {
  SPMLA_ARGS_HEADER(fn, a);
  CacheGeometry g{};
  SPMLA_TRY(validate_cache(fn, "cache", a->cache, true, &g));
  SPMLA_TRY(validate_tensor(fn, a->slots, in_req("slots", 1, I32), true));
  const int64_t N = dim(a->slots, 0);
  SPMLA_TRY(validate_tensor(fn, a->out, out_req("out", 2, BF16, true), true));
  SPMLA_TRY(dim_eq(fn, "out", a->out, 0, N, "N = slots.shape[0]"));
  SPMLA_TRY(dim_eq(fn, "out", a->out, 1, g.dim, "D = cache.head_dim"));
  SPMLA_TRY(no_overlap(fn, {span("cache", a->cache, false), span("slots", a->slots, false),
                            span("out", a->out, true)}));
  return OK;
}

spmla_status_t validate_workspace(const char *fn, const void *ws, size_t bytes, size_t required) {
  if (bytes < required)
    return fail(SPMLA_STATUS_WORKSPACE_TOO_SMALL, fn, "workspace_bytes",
                ">= " + std::to_string(required) + " (the backend's workspace query)",
                std::to_string(bytes));
  if (!ws && bytes > 0)
    return fail(INVALID, fn, "workspace",
                "non-NULL (workspace_bytes = " + std::to_string(bytes) + ")", "NULL");
  if (ws && reinterpret_cast<uintptr_t>(ws) % 16 != 0)
    return fail(SPMLA_STATUS_MISALIGNED, fn, "workspace", "16-byte alignment", ptr_str(ws));
  return OK;
}

}  // namespace spmla
