// params.h — plain parameter structs between the host dispatch layer and the shared kernels
// (FlashMLA params.h style): raw pointers, element strides, resolved sizes. No handles, no
// library types beyond fixed-width integers, so CUDA and HIP hosts fill them the same way.
#pragma once
#include <stdint.h>
// Kernel sources (nvcc, hipcc/clang -x hip) see the vendor layer; a plain host compiler (the host
// layer on AMD, the host-layer test plugin) needs only the structs.
#if defined(__CUDACC__) || defined(__HIPCC__)
#include "compat.h"
#define SPMLA_PARAMS_HD __host__ __device__
#else
#define SPMLA_PARAMS_HD
#endif

namespace spmla {
namespace kern {

// Tile constants the host dispatch needs too (grid shapes, workspace sizes).
constexpr int kAttnBM = 64;  // heads per attention CTA
constexpr int kAttnBN = 32;  // list entries per attention tile
constexpr int kDV = 512;     // value width
// Indexer rows per CTA. The HIP build sets 1 (-DSPMLA_IDX_ROWS=1): four rows of q tiles need
// ~106 KiB of shared memory, above the 64 KiB of LDS of gfx942 and RDNA.
#ifndef SPMLA_IDX_ROWS
#define SPMLA_IDX_ROWS 4
#endif
constexpr int kIdxRows = SPMLA_IDX_ROWS;
constexpr int kIdxMaxHi = 64;

enum Layout : int32_t { kBF16 = 1, kFP8PerTensor = 2, kV32 = 3, kV4 = 4, kIndexer = 5, kV41FP8 = 6, kV41FP4 = 7 };

// A resolved paged KV cache (one KV head).
struct CacheDesc {
  const uint8_t *base = nullptr;  // page 0
  int64_t num_pages = 0;
  int64_t page_stride = 0;  // bytes
  int32_t block_size = 1;
  int32_t layout = 0;  // Layout
  int32_t flavor = 0;  // 1 E4M3FN, 2 E4M3FNUZ, 0 none
  int32_t dim = 0;     // head dim D
  float scale = 1.f;   // FP8_PER_TENSOR
  int32_t blocked = 0; // V41: 1 page-blocked (data rows, then scale rows), 0 per token
  // Filled by the host (cache_desc) for kernels that turn many slots into row addresses:
  // flat_row > 0 when pages hold only rows and lie back to back (page_stride = block_size *
  // row bytes: BF16, FP8_PER_TENSOR, V32_FP8), so slot s's row is at base + s * flat_row without
  // a page split; slot_limit = min(num_slots, 2^31) (slot ids are int32, so a 32-bit compare).
  int32_t flat_row = 0;
  uint32_t slot_limit = 0;
  SPMLA_PARAMS_HD int64_t num_slots() const { return num_pages * (int64_t)block_size; }
};

// Sparse attention over one or two sources.
struct AttnParams {
  const uint16_t *q;  // bf16 [T, H, D]
  int64_t q_stride_t, q_stride_h;
  int32_t T, H, D;  // D = D_qk (512 or 576)
  CacheDesc src[2];  // main, extra
  const int32_t *idx[2];  // [T, K_s] slot ids
  int64_t idx_stride[2];
  int32_t K[2];           // list widths (K[1] = 0 when no extra source)
  const int32_t *len[2];  // optional [T]
  int64_t len_stride[2];
  const float *sink;  // optional [H]
  int64_t sink_stride;
  float scale;          // softmax scale
  uint16_t *out;        // bf16 [T, H, 512]
  int64_t out_stride_t, out_stride_h;
  float *lse;  // [T, H]
  int64_t lse_stride_t, lse_stride_h;
  float *max_logits;  // optional [T, H]
  int64_t ml_stride_t, ml_stride_h;
  // Split-K (num_splits > 1): partial results in the workspace, merged by the combine kernel.
  int32_t num_splits;
  float *part_o;    // [splits, T, H, 512] (normalized by the split's own sum)
  float *part_lse;  // [splits, T, H]  (natural log; -inf when the split saw nothing)
  float *part_max;  // [splits, T, H]
};

struct IndicesToSlotsParams {
  const int32_t *positions;
  int64_t pos_stride;
  const int32_t *token_to_req;
  int64_t ttr_stride;
  const int32_t *block_table;
  int64_t bt_stride;
  int32_t R, max_pages, block_size, T, K;
  const uint8_t *token_valid;
  int64_t tv_stride;
  int32_t *slots;
  int64_t slots_stride;
  int32_t *lengths;
  int64_t len_stride;
  int32_t *indptr;  // optional
  int64_t indptr_stride;
  int32_t *ragged;  // optional
  int64_t ragged_stride;
};

struct WindowParams {
  const int32_t *positions;
  int64_t pos_stride;
  const int32_t *token_to_req;
  int64_t ttr_stride;
  const int32_t *block_table;
  int64_t bt_stride;
  int32_t R, max_pages, block_size, T, W, ratio;
  int32_t *slots;
  int64_t slots_stride;
  int32_t *lengths;
  int64_t len_stride;
};

// Lightning indexer logits. Ragged (k/k_scale arrays) or paged (INDEXER_FP8 cache).
struct IndexerParams {
  const uint8_t *q;  // fp8 [rows, Hi, Di] (paged: [B, N, Hi, Di] flattened to rows = B*N)
  int64_t q_stride_row, q_stride_h;
  int32_t rows, Hi, Di, flavor;
  const float *weights;  // [rows, Hi]
  int64_t w_stride_row, w_stride_h;
  float *logits;  // [rows, C]
  int64_t logits_stride;
  int32_t C;
  // ragged
  const uint8_t *k;  // [S, Di]
  int64_t k_stride;
  const float *k_scale;
  int64_t ks_stride;
  int64_t S;  // number of keys
  const int32_t *k_start, *k_end;
  int64_t ks_start_stride, ks_end_stride;
  // paged
  int32_t paged;  // 0 ragged, 1 paged
  int32_t next_n;  // N
  CacheDesc cache;
  const int32_t *block_table;
  int64_t bt_stride;
  int32_t max_pages;
  const int32_t *context_lens;
  int64_t cl_stride;
};

struct TopkParams {
  const float *logits;
  int64_t row_stride;
  int32_t R, C, k;
  const int32_t *row_starts, *row_ends, *context_lens;
  int64_t rs_stride, re_stride, cl_stride;
  int32_t next_n;
  int32_t *out;
  int64_t out_stride;
};

struct StoreParams {
  const uint16_t *kv;  // bf16 [N, D]
  int64_t kv_stride;
  const void *slots;
  int32_t slots_is64;
  int64_t slots_stride;
  int32_t N;
  CacheDesc cache;
};

struct GatherParams {
  CacheDesc cache;
  const int32_t *slots;
  int64_t slots_stride;
  int32_t N;
  uint16_t *out;
  int64_t out_stride;
};

}  // namespace kern
}  // namespace spmla
