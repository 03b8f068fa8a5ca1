/*
 * spmla_backend.h — the plugin ABI: what a backend library implements.
 *
 * A backend is a shared library named libspmla_backend_<name>.so that exports one
 * C symbol, spmla_backend_entry, returning a static table of functions. The core
 * (libspmla) loads it with dlopen, checks the table's ABI major and struct_size,
 * and calls only the members that struct_size covers. The built-in CPU reference
 * backend fills the same table.
 *
 * The core validates every argument before it calls a backend: a backend receives
 * only descriptors that passed src/validate (shapes agree, dtypes right, strides
 * sane, no overflow). It still owns the device-side rules (slot ids out of range
 * are "no key", lengths beyond K are clipped).
 *
 * Errors: a backend returns a status and, for a failure, calls host->set_error
 * with a message; the core stores it as the calling thread's last error.
 */
#ifndef SPMLA_BACKEND_H
#define SPMLA_BACKEND_H

#include "spmla.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SPMLA_BACKEND_ABI_MAJOR 1
#define SPMLA_BACKEND_ABI_MINOR 2
#define SPMLA_BACKEND_ABI_VERSION ((SPMLA_BACKEND_ABI_MAJOR << 16) | SPMLA_BACKEND_ABI_MINOR)

/** What the core offers a backend. */
typedef struct spmla_backend_host {
  size_t struct_size;
  uint32_t abi_version;
  /* Records `message` as the calling thread's last error. */
  void (*set_error)(const char *message);
} spmla_backend_host_t;

typedef struct spmla_backend_table {
  size_t struct_size;   /* sizeof the plugin's table; the core calls only what it covers */
  uint32_t abi_version; /* SPMLA_BACKEND_ABI_VERSION the plugin was built against */
  const char *name;     /* "cuda", "hip", ... */

  /* Initialises the backend's runtime (e.g. dlopens libcudart / libamdhip64) and
   * counts devices. On failure it returns BACKEND_UNAVAILABLE and writes a
   * human-readable reason ("no CUDA driver: libcuda.so.1 not found"). Called once. */
  spmla_status_t (*init)(const spmla_backend_host_t *host, int32_t *device_count, char *reason,
                         size_t reason_size);
  spmla_status_t (*device_info)(int32_t device, spmla_device_info_t *info);

  /* A context per handle: device selection, cached properties, scratch. */
  spmla_status_t (*context_create)(int32_t device, void **ctx);
  void (*context_destroy)(void *ctx);

  /* Memory, streams and timing (see the public helpers of the same names). */
  spmla_status_t (*malloc_fn)(void *ctx, size_t bytes, void **ptr);
  spmla_status_t (*free_fn)(void *ctx, void *ptr);
  spmla_status_t (*memcpy_fn)(void *ctx, void *dst, const void *src, size_t bytes,
                              spmla_memcpy_kind_t kind, void *stream);
  spmla_status_t (*memset_fn)(void *ctx, void *dst, int value, size_t bytes, void *stream);
  spmla_status_t (*stream_synchronize)(void *ctx, void *stream);
  spmla_status_t (*event_create)(void *ctx, void **event);
  spmla_status_t (*event_destroy)(void *ctx, void *event);
  spmla_status_t (*event_record)(void *ctx, void *event, void *stream);
  spmla_status_t (*event_elapsed_ms)(void *ctx, void *start, void *end, float *ms);

  /* Operations: arguments already validated by the core. */
  spmla_status_t (*sparse_attention_workspace)(void *ctx, const spmla_sparse_attention_args_t *a,
                                               size_t *bytes);
  spmla_status_t (*sparse_attention_plan)(void *ctx, const spmla_sparse_attention_args_t *a,
                                          void *ws, size_t ws_bytes, void *stream);
  spmla_status_t (*sparse_attention_run)(void *ctx, const spmla_sparse_attention_args_t *a,
                                         void *ws, size_t ws_bytes, void *stream);
  spmla_status_t (*indices_to_slots)(void *ctx, const spmla_indices_to_slots_args_t *a,
                                     void *stream);
  spmla_status_t (*window_indices)(void *ctx, const spmla_window_indices_args_t *a, void *stream);
  spmla_status_t (*indexer_logits_workspace)(void *ctx, const spmla_indexer_logits_args_t *a,
                                             size_t *bytes);
  spmla_status_t (*indexer_logits)(void *ctx, const spmla_indexer_logits_args_t *a, void *ws,
                                   size_t ws_bytes, void *stream);
  spmla_status_t (*indexer_logits_paged_workspace)(void *ctx,
                                                   const spmla_indexer_logits_paged_args_t *a,
                                                   size_t *bytes);
  spmla_status_t (*indexer_logits_paged)(void *ctx, const spmla_indexer_logits_paged_args_t *a,
                                         void *ws, size_t ws_bytes, void *stream);
  spmla_status_t (*topk_per_row_workspace)(void *ctx, const spmla_topk_per_row_args_t *a,
                                           size_t *bytes);
  spmla_status_t (*topk_per_row)(void *ctx, const spmla_topk_per_row_args_t *a, void *ws,
                                 size_t ws_bytes, void *stream);
  spmla_status_t (*kv_cache_store)(void *ctx, const spmla_kv_cache_store_args_t *a, void *stream);
  spmla_status_t (*kv_cache_gather)(void *ctx, const spmla_kv_cache_gather_args_t *a,
                                    void *stream);

  /* ---- plugin ABI 1.1 (read only when struct_size covers it) ---- */
  /* The last spmla_kv_layout_t value the plugin's kernels read (its operations receive
   * caches of the layouts up to it; the core refuses the others with UNSUPPORTED before
   * calling). 0, or a table without this member, serves up to SPMLA_KV_LAYOUT_INDEXER_FP8
   * (the 1.0 layouts): a plugin that does not say reads no later layout. */
  int32_t last_kv_layout;

  /* ---- plugin ABI 1.2 (read only when struct_size covers it) ---- */
  int32_t reserved0; /* explicit padding after last_kv_layout: 0 */
  /* Sets a handle option (spmla_option_t; the core has checked the option and its range) on
   * the context, for its later calls. Return UNSUPPORTED (with a message) for an option or value
   * the backend cannot honour. NULL, or a table too small to hold it (plugin ABI 1.0 / 1.1),
   * means the backend knows no option: the core accepts only the defaults there (setting
   * SPMLA_OPTION_BATCH_INVARIANT to 1 is UNSUPPORTED without calling the plugin). */
  spmla_status_t (*context_set_option)(void *ctx, int32_t option, int64_t value);
} spmla_backend_table_t;

/** The one symbol a plugin exports. `host_abi` is the core's
 *  SPMLA_BACKEND_ABI_VERSION; a plugin may return NULL if it cannot serve it. */
typedef const spmla_backend_table_t *(*spmla_backend_entry_fn)(uint32_t host_abi);

#define SPMLA_BACKEND_ENTRY_SYMBOL "spmla_backend_entry"

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SPMLA_BACKEND_H */
