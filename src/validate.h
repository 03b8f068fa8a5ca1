// validate.h — argument validation of every public entry point (see validate.cpp for the rules).
// A backend only ever receives descriptors that passed these checks.
#pragma once
#include <cstddef>
#include <string>

#include "kv_layout.h"
#include "spmla.h"

namespace spmla {

// `fn` is the public function name used in messages ("spmla_sparse_attention_run").
// `check_data` is false for workspace-size queries, which never touch tensor memory: data
// pointers (NULL, alignment, address overflow) are then not checked, everything else is.

// The struct_size rule of docs/ABI.md for a caller's struct `p` of C type `type` (argument
// `arg`, library size `own`, initialised by macro `init`): smaller than `min_size` (the x.0
// size; 0 = `own`, a struct that has not grown) is INVALID_ARGUMENT; larger is accepted only when every byte past `own` is zero (else
// ABI_MISMATCH naming the struct and the offset), and never above 64 KiB (INVALID_ARGUMENT,
// the tail is not read). `read_tail` false (output structs, filled only up to `own`) skips
// the tail rules.
spmla_status_t check_struct_size(const char *fn, const std::string &arg, const char *type,
                                 const void *p, size_t struct_size, size_t own, const char *init,
                                 bool read_tail = true, size_t min_size = 0);

// One tensor: the generic rules (struct_size, dtype, rank, shape range, strides, extent,
// alignment, no self-overlap for outputs). NULL is accepted iff !required.
struct TensorRule {
  const char *name;
  bool required;
  bool output;
  int ndim;
  spmla_dtype_t dtypes[2];  // allowed dtypes (second may be INVALID = unused)
  bool align16;             // data 16-byte aligned, outer strides x elemsize multiples of 16
};
spmla_status_t validate_tensor(const char *fn, const spmla_tensor_t *t, const TensorRule &rule,
                               bool check_data);

// A cache descriptor; on success fills *geom (resolved head dim and page stride).
spmla_status_t validate_cache(const char *fn, const char *name, const spmla_kv_cache_t *c,
                              bool check_data, CacheGeometry *geom);

spmla_status_t validate_sparse_attention(const char *fn, const spmla_sparse_attention_args_t *a,
                                         bool check_data);
spmla_status_t validate_indices_to_slots(const char *fn, const spmla_indices_to_slots_args_t *a);
spmla_status_t validate_window_indices(const char *fn, const spmla_window_indices_args_t *a);
spmla_status_t validate_indexer_logits(const char *fn, const spmla_indexer_logits_args_t *a,
                                       bool check_data);
spmla_status_t validate_indexer_logits_paged(const char *fn,
                                             const spmla_indexer_logits_paged_args_t *a,
                                             bool check_data);
spmla_status_t validate_topk_per_row(const char *fn, const spmla_topk_per_row_args_t *a,
                                     bool check_data);
spmla_status_t validate_kv_cache_store(const char *fn, const spmla_kv_cache_store_args_t *a);
spmla_status_t validate_kv_cache_gather(const char *fn, const spmla_kv_cache_gather_args_t *a);

// plan/run: the caller's workspace against the backend's query (`required`).
spmla_status_t validate_workspace(const char *fn, const void *workspace, size_t workspace_bytes,
                                  size_t required);

}  // namespace spmla
