// cpu_internal.h — shared pieces of the CPU reference backend: the per-handle context, strided
// tensor access, and KV-cache row decoding.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "kv_layout.h"
#include "numerics.h"
#include "spmla_backend.h"
#include "cpu/thread_pool.h"

namespace spmla {
namespace cpu {

// One per handle. A handle is used by one thread at a time, so the scratch buffers need no lock;
// they grow on demand and are reused by later calls.
struct Context {
  explicit Context(int threads) : pool(threads), worker_scratch(static_cast<size_t>(threads)) {}
  ThreadPool pool;
  std::vector<float> shared_scratch;                  // e.g. one token's dequantized key rows
  std::vector<std::vector<float>> worker_scratch;     // one per pool thread
  // SPMLA_OPTION_BATCH_INVARIANT (ABI 1.3). Recorded only: every CPU operation computes each
  // token's (row's) result in one task, in a fixed order, from that token's inputs alone, with
  // or without it (thread_pool.h); tests/test_batch_invariance.cpp checks it.
  int64_t batch_invariant = 0;
};

// Records a message as the calling thread's last error (through the core's host table).
void set_error(const char *message);

// ---------------------------------------------------------------------------------------------
// Strided tensor access (strides are in elements; the core has validated shapes and dtypes).
// ---------------------------------------------------------------------------------------------
template <class T>
inline T *at(const spmla_tensor_t *t, int64_t i0) {
  return static_cast<T *>(t->data) + i0 * t->strides[0];
}
template <class T>
inline T *at(const spmla_tensor_t *t, int64_t i0, int64_t i1) {
  return static_cast<T *>(t->data) + i0 * t->strides[0] + i1 * t->strides[1];
}
template <class T>
inline T *at(const spmla_tensor_t *t, int64_t i0, int64_t i1, int64_t i2) {
  return static_cast<T *>(t->data) + i0 * t->strides[0] + i1 * t->strides[1] + i2 * t->strides[2];
}
template <class T>
inline T *at(const spmla_tensor_t *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
  return static_cast<T *>(t->data) + i0 * t->strides[0] + i1 * t->strides[1] +
         i2 * t->strides[2] + i3 * t->strides[3];
}

// ---------------------------------------------------------------------------------------------
// FP8 decode tables (built once from numerics.h's formula).
// ---------------------------------------------------------------------------------------------
struct Fp8Tables {
  float fn[256];
  float fnuz[256];
  float ue8m0[256];
};
const Fp8Tables &fp8_tables();

inline Fp8Kind kind_of(spmla_fp8_flavor_t f) {
  return f == SPMLA_FP8_E4M3FNUZ ? Fp8Kind::E4M3FNUZ : Fp8Kind::E4M3FN;
}
inline Fp8Kind kind_of_dtype(spmla_dtype_t d) {
  return d == SPMLA_DTYPE_FP8_E4M3FNUZ ? Fp8Kind::E4M3FNUZ : Fp8Kind::E4M3FN;
}
inline const float *fp8_table(Fp8Kind k) {
  return k == Fp8Kind::E4M3FNUZ ? fp8_tables().fnuz : fp8_tables().fn;
}

// ---------------------------------------------------------------------------------------------
// KV-cache rows
// ---------------------------------------------------------------------------------------------
// A validated cache plus the derived numbers needed to find a slot's bytes.
struct CacheView {
  CacheGeometry g;
  const float *fp8 = nullptr;  // decode table of the cache's flavor (FP8 layouts)
  explicit CacheView(const spmla_kv_cache_t &c) : g(resolve_geometry(c)) {
    if (g.layout != SPMLA_KV_LAYOUT_BF16) fp8 = fp8_table(kind_of(g.flavor));
  }
  int64_t num_slots() const { return g.num_slots(); }
  bool valid(int64_t slot) const { return slot >= 0 && slot < g.num_slots(); }
  uint8_t *page(int64_t slot) const { return g.base + (slot / g.block_size) * g.page_stride; }
  int64_t offset(int64_t slot) const { return slot % g.block_size; }
};

// Dequantizes all D values of a valid slot into dst[0, D) as fp32:
//  BF16: the values; FP8_PER_TENSOR: fp8 * scale; V32: 512 fp8 * scale[i/128] then 64 bf16 RoPE;
//  V4: 448 fp8 * 2^(ue8m0[i/64]-127) then 64 bf16 RoPE; INDEXER_FP8: fp8 * per-token fp32 scale;
//  V41_FP8: 512 fp8 * 2^(ue8m0[i/32]-127); V41_FP4: 512 e2m1 * e4m3fn[i/16] (either arrangement).
// The product fp8 * scale is rounded to fp32 once (exact for the power-of-two scales).
void dequantize_row(const CacheView &cv, int64_t slot, float *dst);

// ---------------------------------------------------------------------------------------------
// The operations (arguments validated by the core).
// ---------------------------------------------------------------------------------------------
spmla_status_t sparse_attention(Context &ctx, const spmla_sparse_attention_args_t &a);
spmla_status_t indices_to_slots(Context &ctx, const spmla_indices_to_slots_args_t &a);
spmla_status_t window_indices(Context &ctx, const spmla_window_indices_args_t &a);
spmla_status_t indexer_logits(Context &ctx, const spmla_indexer_logits_args_t &a);
spmla_status_t indexer_logits_paged(Context &ctx, const spmla_indexer_logits_paged_args_t &a);
spmla_status_t topk_per_row(Context &ctx, const spmla_topk_per_row_args_t &a);
spmla_status_t kv_cache_store(Context &ctx, const spmla_kv_cache_store_args_t &a);
spmla_status_t kv_cache_gather(Context &ctx, const spmla_kv_cache_gather_args_t &a);

// Small vector kernels written so that g++ -O2/-O3 vectorises them without fast-math: 16
// independent partial sums (one per lane), reduced in a fixed order at the end. n % 16 == 0.
inline float dot16(const float *__restrict a, const float *__restrict b, int64_t n) {
  float acc[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t d = 0; d < n; d += 16)
    for (int l = 0; l < 16; ++l) acc[l] += a[d + l] * b[d + l];
  for (int l = 0; l < 8; ++l) acc[l] += acc[l + 8];
  for (int l = 0; l < 4; ++l) acc[l] += acc[l + 4];
  return (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

inline void axpy(float *__restrict y, float a, const float *__restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace cpu
}  // namespace spmla
