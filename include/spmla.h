/*
 * spmla.h — the stable C ABI of spmla, the portable sparse-MLA library.
 *
 * One header, C99, no C++ types, nothing thrown across it. Everything a caller
 * can do goes through the functions declared here (or the same functions reached
 * through the versioned table returned by spmla_get_api, for engines that dlopen
 * the library and want a single dlsym).
 *
 * Conventions (libgit2 / zstd / cuBLASLt style):
 *  - names are spmla_<object>_<verb>; types spmla_<name>_t; enums carry explicit
 *    values that are never renumbered.
 *  - every function returns spmla_status_t (SPMLA_STATUS_SUCCESS = 0) unless it is
 *    a pure query; output parameters come last.
 *  - on failure a per-thread message naming the argument, the expectation and the
 *    value is available from spmla_last_error_message(), and nothing was written
 *    to the call's outputs.
 *  - transparent structs start with `size_t struct_size` and only ever grow at the
 *    end; initialise them with the matching *_INIT macro (which sets struct_size).
 *  - optional arguments are NULL pointers.
 *  - aliasing: the bytes an output spans (data .. data + extent of a tensor; the
 *    whole num_pages * page stride of an output cache) must not overlap the bytes of
 *    any other tensor or cache of the same call, input or output
 *    (SPMLA_STATUS_INVALID_ARGUMENT; no op works in place). Inputs may share memory
 *    with each other. The check is on byte ranges: two strided views interleaved in
 *    one buffer count as overlapping.
 *  - struct_size larger than this library's struct (a caller built against a newer
 *    header): accepted when every byte past the members known here is zero, else
 *    SPMLA_STATUS_ABI_MISMATCH; a struct_size above 64 KiB is INVALID_ARGUMENT.
 *    Smaller (an older header, down to the struct's 1.0 size): accepted; the members it
 *    does not cover take their *_INIT values (ABI 1.2: spmla_kv_cache_t grew).
 *  - tensor data pointers live on the handle's device (host memory for "cpu").
 *  - every run call takes a `void *stream` (cudaStream_t / hipStream_t; NULL = the
 *    default stream; ignored by the CPU backend, which runs synchronously).
 *
 * Threading:
 *  - the library-wide functions (version, status strings, backend and device
 *    enumeration, spmla_get_api, handle creation) are thread-safe.
 *  - a handle is used by one thread at a time; different handles may be used by
 *    different threads concurrently. A call that finds its handle in use by a call
 *    on another thread returns SPMLA_STATUS_HANDLE_BUSY (ABI 1.1) and does nothing
 *    (a cheap check, not a lock: use one handle per thread). Destroying a handle
 *    while another thread may still call it remains undefined.
 *  - descriptors (spmla_tensor_t, spmla_kv_cache_t, *_args_t) are plain data that
 *    the library only reads; they may be shared between threads.
 *  - the last-error message is per thread.
 *
 * Operations (see docs/SPEC.md, the operation contract):
 *   1 sparse_attention   (get_workspace_size -> plan -> run)
 *   2 indices_to_slots   3 window_indices
 *   4 indexer_logits     (ragged) and indexer_logits_paged
 *   5 topk_per_row       (get_workspace_size -> run)
 *   6 kv_cache_store     7 kv_cache_gather
 */
#ifndef SPMLA_H
#define SPMLA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/* Export macro and versions                                                  */
/* ------------------------------------------------------------------------- */
/* On Windows the library's own build defines SPMLA_BUILDING_LIBRARY (CMake target
 * `spmla`) and exports; every consumer imports. */
#if defined(_WIN32) && defined(SPMLA_BUILDING_LIBRARY)
#  define SPMLA_API __declspec(dllexport)
#elif defined(_WIN32)
#  define SPMLA_API __declspec(dllimport)
#elif defined(__GNUC__) || defined(__clang__)
#  define SPMLA_API __attribute__((visibility("default")))
#else
#  define SPMLA_API
#endif

#define SPMLA_VERSION_MAJOR 1
#define SPMLA_VERSION_MINOR 3
#define SPMLA_VERSION_PATCH 0
/* One number, comparable: major * 10000 + minor * 100 + patch (zstd style). */
#define SPMLA_VERSION_NUMBER \
  (SPMLA_VERSION_MAJOR * 10000 + SPMLA_VERSION_MINOR * 100 + SPMLA_VERSION_PATCH)
#define SPMLA_VERSION_STRING "1.3.0"

/* The ABI major is the SONAME (libspmla.so.1). A minor ABI bump only adds
 * functions, enum values or trailing struct members. */
#define SPMLA_ABI_VERSION_MAJOR 1
#define SPMLA_ABI_VERSION_MINOR 3

/** Run-time library version, SPMLA_VERSION_NUMBER of the loaded library. */
SPMLA_API unsigned spmla_version_number(void);
/** Run-time library version as "MAJOR.MINOR.PATCH". Never NULL. */
SPMLA_API const char *spmla_version_string(void);
/** Run-time ABI version of the loaded library: (major << 16) | minor. */
SPMLA_API uint32_t spmla_abi_version(void);

/* ------------------------------------------------------------------------- */
/* Status and errors                                                          */
/* ------------------------------------------------------------------------- */
typedef enum spmla_status {
  SPMLA_STATUS_SUCCESS = 0,
  SPMLA_STATUS_INVALID_ARGUMENT = 1,    /* null pointer, dtype, rank, shape, stride, value */
  SPMLA_STATUS_UNSUPPORTED = 2,         /* valid request this backend/device cannot do */
  SPMLA_STATUS_BACKEND_UNAVAILABLE = 3, /* backend not found, not loadable, no device */
  SPMLA_STATUS_OUT_OF_MEMORY = 4,       /* host or device allocation failed */
  SPMLA_STATUS_WORKSPACE_TOO_SMALL = 5, /* workspace smaller than the query said */
  SPMLA_STATUS_MISALIGNED = 6,          /* pointer or stride violates alignment */
  SPMLA_STATUS_SIZE_OVERFLOW = 7,       /* sizes overflow 64-bit / index range */
  SPMLA_STATUS_DEVICE_ERROR = 8,        /* the vendor runtime reported an error */
  SPMLA_STATUS_ABI_MISMATCH = 9,        /* plugin or caller ABI version mismatch */
  SPMLA_STATUS_INTERNAL = 10,           /* a bug in spmla: please report it */
  SPMLA_STATUS_HANDLE_BUSY = 11         /* (ABI 1.1) the handle is in use by a call on another
                                           thread; nothing was done. A handle serves one
                                           thread at a time: use one handle per thread. */
} spmla_status_t;

/** Static name of a status ("SPMLA_STATUS_INVALID_ARGUMENT"); unknown values
 *  give "SPMLA_STATUS_UNKNOWN". Never NULL. */
SPMLA_API const char *spmla_status_string(spmla_status_t status);
/** The message of the last failed call on this thread ("" if none). Valid until
 *  the next spmla call on this thread. Never NULL. */
SPMLA_API const char *spmla_last_error_message(void);
/** Clears this thread's last-error message. */
SPMLA_API void spmla_clear_last_error(void);

/* ------------------------------------------------------------------------- */
/* Data types and tensors                                                     */
/* ------------------------------------------------------------------------- */
typedef enum spmla_dtype {
  SPMLA_DTYPE_INVALID = 0,
  SPMLA_DTYPE_BF16 = 1,
  SPMLA_DTYPE_FP16 = 2,
  SPMLA_DTYPE_FP32 = 3,
  SPMLA_DTYPE_INT32 = 4,
  SPMLA_DTYPE_INT64 = 5,
  SPMLA_DTYPE_UINT8 = 6,
  SPMLA_DTYPE_FP8_E4M3FN = 7,   /* OCP E4M3: bias 7, max 448, NaN S.1111.111 */
  SPMLA_DTYPE_FP8_E4M3FNUZ = 8, /* gfx942: bias 8, max 240, NaN 0x80 only */
  SPMLA_DTYPE_UE8M0 = 9         /* scale 2^(e-127), 0xFF NaN */
} spmla_dtype_t;

/** Bytes per element of a dtype, 0 for an unknown value. */
SPMLA_API size_t spmla_dtype_size(spmla_dtype_t dtype);
/** Static name of a dtype ("bf16", "fp8_e4m3fn", ...), "invalid" if unknown. */
SPMLA_API const char *spmla_dtype_name(spmla_dtype_t dtype);

#define SPMLA_MAX_DIMS 8

/** A strided view of memory. Strides are in elements; the innermost dimension
 *  must have stride 1 unless the operation says otherwise. A tensor with zero
 *  elements may have data == NULL. */
typedef struct spmla_tensor {
  size_t struct_size; /* = sizeof(spmla_tensor_t) via SPMLA_TENSOR_INIT */
  void *data;
  spmla_dtype_t dtype;
  int32_t ndim; /* 0 .. SPMLA_MAX_DIMS */
  int64_t shape[SPMLA_MAX_DIMS];
  int64_t strides[SPMLA_MAX_DIMS];
} spmla_tensor_t;

#define SPMLA_TENSOR_INIT                                      \
  {                                                            \
    sizeof(spmla_tensor_t), NULL, SPMLA_DTYPE_INVALID, 0, {0}, \
    { 0 }                                                      \
  }

/** Fills t as a contiguous (row-major) tensor of `ndim` dims. Returns
 *  INVALID_ARGUMENT for ndim outside 0..SPMLA_MAX_DIMS or a negative size. */
SPMLA_API spmla_status_t spmla_tensor_make_contiguous(spmla_tensor_t *t, void *data,
                                                      spmla_dtype_t dtype, int32_t ndim,
                                                      const int64_t *shape);

/* ------------------------------------------------------------------------- */
/* KV caches                                                                  */
/* ------------------------------------------------------------------------- */
typedef enum spmla_kv_layout {
  SPMLA_KV_LAYOUT_INVALID = 0,
  SPMLA_KV_LAYOUT_BF16 = 1,           /* D bf16 per token */
  SPMLA_KV_LAYOUT_FP8_PER_TENSOR = 2, /* D fp8 per token, one fp32 scale (kv.scale) */
  SPMLA_KV_LAYOUT_V32_FP8 = 3,        /* DeepSeek-V3.2 "fp8_ds_mla": 656 B/token, D 576 */
  SPMLA_KV_LAYOUT_V4_FP8 = 4,         /* DeepSeek-V4: 576 B data + 8 B scales, D 512 */
  SPMLA_KV_LAYOUT_INDEXER_FP8 = 5,    /* lightning-indexer cache: per page block_size*D
                                         fp8 bytes, then block_size fp32 scales */
  SPMLA_KV_LAYOUT_V41_FP8 = 6,        /* (ABI 1.2) DeepSeek-V4.1: 512 E4M3 values (all dims) +
                                         16 UE8M0 scales (one per 32) = 528 B/token, D 512;
                                         needs an explicit arrangement */
  SPMLA_KV_LAYOUT_V41_FP4 = 7         /* (ABI 1.2) DeepSeek-V4.1: 256 B of E2M1 codes (element i
                                         in byte i/2, even i low nibble) + 32 E4M3FN scales (one
                                         per 16) = 288 B/token, D 512; fp8_flavor E4M3FN (the
                                         scales'); needs an explicit arrangement */
} spmla_kv_layout_t;

/** (ABI 1.2) How a page arranges its tokens' bytes (docs/SPEC.md "V4.1 cache layouts"). Never
 *  guessed from sizes: the V41 layouts exist in both arrangements and must name theirs. */
typedef enum spmla_kv_arrangement {
  SPMLA_KV_ARRANGEMENT_DEFAULT = 0,     /* the layout's one arrangement: every layout before
                                           V41 (BF16, FP8_PER_TENSOR, V32_FP8 per token; V4_FP8,
                                           INDEXER_FP8 page-blocked). Refused for V41 layouts. */
  SPMLA_KV_ARRANGEMENT_PER_TOKEN = 1,   /* each token's data bytes then its scale bytes,
                                           contiguous; page = block_size * bytes/token
                                           (FlashMLA from 2026-09-30) */
  SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED = 2 /* per page block_size data rows, then block_size scale
                                           rows; V41 pages rounded up to a multiple of 512 B
                                           (FlashMLA of 2026-09-10) */
} spmla_kv_arrangement_t;

typedef enum spmla_fp8_flavor {
  SPMLA_FP8_NONE = 0,     /* only for SPMLA_KV_LAYOUT_BF16 */
  SPMLA_FP8_E4M3FN = 1,   /* OCP (NVIDIA, gfx950) */
  SPMLA_FP8_E4M3FNUZ = 2  /* gfx942 */
} spmla_fp8_flavor_t;

/** A paged KV cache: num_pages pages of block_size tokens; slot id
 *  = page * block_size + offset. The flavour of FP8 layouts is always explicit:
 *  it is never guessed from the device. */
typedef struct spmla_kv_cache {
  size_t struct_size; /* via SPMLA_KV_CACHE_INIT */
  void *data;         /* first byte of page 0; 16-byte aligned */
  spmla_kv_layout_t layout;
  spmla_fp8_flavor_t fp8_flavor;
  int32_t head_dim;          /* D: 576 or 512 (V32_FP8 576, V4_FP8 512; 0 = the layout's
                                own); for INDEXER_FP8 the indexer Di (64 or 128) */
  int64_t num_pages;
  int32_t block_size;        /* tokens per page, >= 1 */
  int64_t page_stride_bytes; /* 0 = packed (spmla_kv_cache_page_bytes); else >= that, multiple of 16 */
  float scale;               /* FP8_PER_TENSOR only: dequantized = fp8 * scale (> 0, finite) */
  /* ---- ABI 1.0 ends here (struct_size 64 on LP64); members below are read only when
   *      struct_size covers them, else they take the values of SPMLA_KV_CACHE_INIT. ---- */
  int32_t reserved0;         /* (ABI 1.2) the 1.0 struct's trailing padding made explicit:
                                never read (an older caller's bytes here are undefined) */
  spmla_kv_arrangement_t arrangement; /* (ABI 1.2) DEFAULT for the pre-V41 layouts; PER_TOKEN
                                or PAGE_BLOCKED, required, for V41_FP8 / V41_FP4 */
  int32_t reserved1;         /* (ABI 1.2) explicit padding: must be 0 (a later minor may give
                                it a meaning; non-zero is SPMLA_STATUS_ABI_MISMATCH here) */
} spmla_kv_cache_t;

#define SPMLA_KV_CACHE_INIT                                                               \
  { sizeof(spmla_kv_cache_t), NULL, SPMLA_KV_LAYOUT_INVALID, SPMLA_FP8_NONE, 0, 0, 0, 0, 1.0f, \
    0, SPMLA_KV_ARRANGEMENT_DEFAULT, 0 }

/** Bytes one page of this layout needs when packed (page_stride_bytes = 0):
 *  BF16 2·D·bs; FP8_PER_TENSOR D·bs; V32_FP8 656·bs; V4_FP8 584·bs rounded up to a
 *  multiple of 576; INDEXER_FP8 (D + 4)·bs; V41_FP8 528·bs and V41_FP4 288·bs (per token) or
 *  the same rounded up to a multiple of 512 (page-blocked). Validates the descriptor (data
 *  may be NULL). */
SPMLA_API spmla_status_t spmla_kv_cache_page_bytes(const spmla_kv_cache_t *cache, size_t *bytes);
/** Total bytes the cache spans: page stride · num_pages (validates like above). */
SPMLA_API spmla_status_t spmla_kv_cache_size_bytes(const spmla_kv_cache_t *cache, size_t *bytes);

/* ------------------------------------------------------------------------- */
/* Backends, devices, handles                                                 */
/* ------------------------------------------------------------------------- */
/** Backends are named: "cpu" (built in, always available), "cuda", "hip", or a
 *  third-party plugin's name. Plugins are libspmla_backend_<name>.so, searched in
 *  the directories of SPMLA_BACKEND_PATH (':'-separated) then in libspmla's own
 *  directory. The registry is built on first use, thread-safely. */
typedef struct spmla_backend_info {
  size_t struct_size;  /* via SPMLA_BACKEND_INFO_INIT */
  const char *name;    /* static for the library's lifetime */
  int32_t available;   /* 1 if handles can be created on it */
  const char *reason;  /* why not available ("" if available) */
  int32_t device_count;
  const char *library; /* path of the plugin ("" for built-in) */
} spmla_backend_info_t;

#define SPMLA_BACKEND_INFO_INIT { sizeof(spmla_backend_info_t), NULL, 0, NULL, 0, NULL }

typedef struct spmla_device_info {
  size_t struct_size; /* via SPMLA_DEVICE_INFO_INIT */
  char name[128];     /* "NVIDIA H200", "AMD Instinct MI300X", "x86_64 (2 threads)" */
  char arch[32];      /* "sm_90", "gfx942", "cpu" */
  int64_t total_memory_bytes;
  int32_t multiprocessor_count; /* SMs / CUs / CPU threads */
  int32_t warp_size;            /* 32 NVIDIA, 64 CDNA, 1 CPU */
  int32_t fp8_e4m3fn_native;    /* 1 if the device converts OCP FP8 in hardware */
  int32_t fp8_e4m3fnuz_native;  /* 1 if the device converts FNUZ FP8 in hardware */
} spmla_device_info_t;

#define SPMLA_DEVICE_INFO_INIT { sizeof(spmla_device_info_t), {0}, {0}, 0, 0, 0, 0, 0 }

/** Number of known backends (built-in and every plugin found or expected). */
SPMLA_API spmla_status_t spmla_backend_count(int32_t *count);
/** Information about backend `index` (0 .. count-1). */
SPMLA_API spmla_status_t spmla_backend_get_info(int32_t index, spmla_backend_info_t *info);
/** Information about device `device` of the named backend. */
SPMLA_API spmla_status_t spmla_device_get_info(const char *backend, int32_t device,
                                               spmla_device_info_t *info);

typedef struct spmla_handle_s *spmla_handle_t;

/** Creates a handle on (backend, device). backend NULL or "auto" picks the best
 *  available: cuda, then hip, then cpu. */
SPMLA_API spmla_status_t spmla_handle_create(const char *backend, int32_t device,
                                             spmla_handle_t *handle);
/** Destroys a handle (NULL is a no-op). Work already queued on a stream is not waited for. */
SPMLA_API spmla_status_t spmla_handle_destroy(spmla_handle_t handle);
/** Name of the handle's backend ("cpu", "cuda", ...); NULL for a NULL handle. */
SPMLA_API const char *spmla_handle_backend_name(spmla_handle_t handle);
/** Device ordinal of the handle. */
SPMLA_API spmla_status_t spmla_handle_device(spmla_handle_t handle, int32_t *device);

/** (ABI 1.3) Options of a handle (libgit2 / zstd style: one setter and one getter, an enum of
 *  options, an int64 value each). Values are explicit and never renumbered; an option a library
 *  does not know is SPMLA_STATUS_INVALID_ARGUMENT. A new handle has every option at its default. */
typedef enum spmla_option {
  /* 0 (default, speed first) or 1. With 1, the result of every operation for a token (a row) is
   * bit-identical whatever the other tokens of the call are: batch size, their lengths, their
   * index lists. No split count, tile order or reduction order depends on them (docs/SPEC.md
   * "Batch invariance"): sparse_attention's split-K count and each token's split boundaries
   * follow from the index-list widths and the token's own lengths only, its kernel variant from
   * the shapes without T, and the split combine runs in split order. Costs speed where split-K
   * used to fill the GPU (small batches); measure it with `spmla bench --batch-invariant`. The
   * CPU backend is batch-invariant either way. A backend that cannot honour 1 refuses it with
   * SPMLA_STATUS_UNSUPPORTED. */
  SPMLA_OPTION_BATCH_INVARIANT = 1
} spmla_option_t;

/** Sets an option of the handle for its later calls (plans made before keep their schedule: plan
 *  again after changing an option). Unknown option or a value outside the option's range:
 *  INVALID_ARGUMENT (nothing changes); a backend that cannot honour the value: UNSUPPORTED;
 *  the handle in use by another thread: HANDLE_BUSY. */
SPMLA_API spmla_status_t spmla_handle_set_option(spmla_handle_t handle, spmla_option_t option,
                                                 int64_t value);
/** The current value of an option of the handle (its default if never set). */
SPMLA_API spmla_status_t spmla_handle_get_option(spmla_handle_t handle, spmla_option_t option,
                                                 int64_t *value);

/* Device memory and timing helpers, so that C tools, tests and bindings can drive
 * any backend without linking its runtime. On "cpu" these are malloc/memcpy. */
typedef enum spmla_memcpy_kind {
  SPMLA_MEMCPY_HOST_TO_DEVICE = 1,
  SPMLA_MEMCPY_DEVICE_TO_HOST = 2,
  SPMLA_MEMCPY_DEVICE_TO_DEVICE = 3
} spmla_memcpy_kind_t;

/** Allocates `bytes` of device memory (256-byte aligned). */
SPMLA_API spmla_status_t spmla_device_malloc(spmla_handle_t handle, size_t bytes, void **ptr);
/** Frees memory from spmla_device_malloc (NULL is a no-op). */
SPMLA_API spmla_status_t spmla_device_free(spmla_handle_t handle, void *ptr);
/** Copies bytes between host and device, ordered on `stream`. */
SPMLA_API spmla_status_t spmla_memcpy(spmla_handle_t handle, void *dst, const void *src,
                                      size_t bytes, spmla_memcpy_kind_t kind, void *stream);
/** Fills `bytes` of device memory with the byte `value` on `stream`. */
SPMLA_API spmla_status_t spmla_memset(spmla_handle_t handle, void *dst, int value, size_t bytes,
                                      void *stream);
/** Waits for all work queued on `stream`. */
SPMLA_API spmla_status_t spmla_stream_synchronize(spmla_handle_t handle, void *stream);

typedef struct spmla_event_s *spmla_event_t;
SPMLA_API spmla_status_t spmla_event_create(spmla_handle_t handle, spmla_event_t *event);
SPMLA_API spmla_status_t spmla_event_destroy(spmla_handle_t handle, spmla_event_t event);
SPMLA_API spmla_status_t spmla_event_record(spmla_handle_t handle, spmla_event_t event,
                                            void *stream);
/** Milliseconds between two recorded events (waits for `end`). */
SPMLA_API spmla_status_t spmla_event_elapsed_ms(spmla_handle_t handle, spmla_event_t start,
                                                spmla_event_t end, float *ms);

/* ------------------------------------------------------------------------- */
/* 1. sparse_attention                                                        */
/* ------------------------------------------------------------------------- */
/** For token t and head h, attends the valid entries of indices[t, :lengths[t]]
 *  in `kv` and of extra_indices[t, :extra_lengths[t]] in `extra_kv`:
 *    logit = scale · <q[t,h,:], Kdeq[0:D_qk]>,  lse = log Σ exp(logit),
 *    out = Σ exp(logit - lse) · Vdeq[0:512], times 1/(1 + exp(sink[h] - lse)).
 *  Empty sets give out = 0, lse = +inf, max_logits = -inf. The sink follows IEEE
 *  arithmetic: +inf gives out = +0, -inf no change, NaN gives out = NaN (for tokens
 *  with at least one key; lse is reported without the sink). */
typedef struct spmla_sparse_attention_args {
  size_t struct_size;                  /* via SPMLA_SPARSE_ATTENTION_ARGS_INIT */
  const spmla_tensor_t *q;             /* [T, H, D_qk] bf16, H 1..128 */
  const spmla_kv_cache_t *kv;          /* main source, head_dim D_qk */
  const spmla_tensor_t *indices;       /* [T, K] int32 slot ids, K >= 1 */
  const spmla_tensor_t *lengths;       /* optional [T] int32: list positions < lengths[t] count */
  const spmla_kv_cache_t *extra_kv;    /* optional second source (sliding window) */
  const spmla_tensor_t *extra_indices; /* [T, K2] int32, required with extra_kv */
  const spmla_tensor_t *extra_lengths; /* optional [T] int32 */
  const spmla_tensor_t *attn_sink;     /* optional [H] fp32 */
  float scale;                         /* softmax scale; 0 = 1/sqrt(D_qk) */
  const spmla_tensor_t *out;           /* [T, H, 512] bf16 */
  const spmla_tensor_t *lse;           /* [T, H] fp32 */
  const spmla_tensor_t *max_logits;    /* optional [T, H] fp32 */
} spmla_sparse_attention_args_t;

#define SPMLA_SPARSE_ATTENTION_ARGS_INIT \
  { sizeof(spmla_sparse_attention_args_t), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0.0f, NULL, NULL, NULL }

/** Workspace bytes that plan and run need for these shapes (host-only, reads no
 *  device data; the tensors' data pointers are not used). */
SPMLA_API spmla_status_t spmla_sparse_attention_get_workspace_size(
    spmla_handle_t handle, const spmla_sparse_attention_args_t *args, size_t *workspace_bytes);
/** Fixes the schedule (e.g. split-K over the index list) of later runs with the same
 *  shapes, the same lengths tensors and the same contents of those lengths, and leaves
 *  in the workspace whatever device state that schedule needs. Graph-capturable. Call
 *  it before the first run of a shape: a backend may keep a schedule that depends on
 *  the lengths' contents there. (The 1.x GPU backends derive the schedule from the
 *  shapes and the device alone, recompute the same one in run and launch nothing
 *  here; the CPU backend needs no schedule.) */
SPMLA_API spmla_status_t spmla_sparse_attention_plan(spmla_handle_t handle,
                                                     const spmla_sparse_attention_args_t *args,
                                                     void *workspace, size_t workspace_bytes,
                                                     void *stream);
/** Runs attention with the schedule of a previous plan; the workspace is the plan's,
 *  and its contents between plan and run belong to the library. Graph-capturable. */
SPMLA_API spmla_status_t spmla_sparse_attention_run(spmla_handle_t handle,
                                                    const spmla_sparse_attention_args_t *args,
                                                    void *workspace, size_t workspace_bytes,
                                                    void *stream);

/* ------------------------------------------------------------------------- */
/* 2. indices_to_slots                                                        */
/* ------------------------------------------------------------------------- */
/** slots[t,k] = block_table[req][p / bs] * bs + p % bs for p = positions[t,k] >= 0,
 *  -1 for p < 0, for p beyond the table, for a negative table entry, and for
 *  every entry of an invalid token (token_valid[t] == 0 or token_to_req[t]
 *  outside [0, R)). lengths[t] = number of valid entries. The optional ragged
 *  form packs the valid entries in order: ragged_slots[indptr[t] .. indptr[t+1]). */
typedef struct spmla_indices_to_slots_args {
  size_t struct_size;                 /* via SPMLA_INDICES_TO_SLOTS_ARGS_INIT */
  const spmla_tensor_t *positions;    /* [T, K] int32, request-local positions, -1 = none */
  const spmla_tensor_t *token_to_req; /* [T] int32 */
  const spmla_tensor_t *block_table;  /* [R, max_pages] int32 */
  int32_t block_size;                 /* >= 1 */
  const spmla_tensor_t *token_valid;  /* optional [T] uint8 */
  const spmla_tensor_t *slots;        /* out [T, K] int32 */
  const spmla_tensor_t *lengths;      /* out [T] int32 */
  const spmla_tensor_t *indptr;       /* optional out [T + 1] int32 (with ragged_slots) */
  const spmla_tensor_t *ragged_slots; /* optional out [>= T*K] int32 (with indptr) */
} spmla_indices_to_slots_args_t;

#define SPMLA_INDICES_TO_SLOTS_ARGS_INIT \
  { sizeof(spmla_indices_to_slots_args_t), NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL }

SPMLA_API spmla_status_t spmla_indices_to_slots_run(spmla_handle_t handle,
                                                    const spmla_indices_to_slots_args_t *args,
                                                    void *stream);

/* ------------------------------------------------------------------------- */
/* 3. window_indices                                                          */
/* ------------------------------------------------------------------------- */
/** For each token: hi = (pos + 1) / ratio, lo = max(0, hi - W); slots[t, 0..hi-lo)
 *  are the slots of logical positions lo..hi-1 (ascending; -1 where the block
 *  table has no page), then -1; lengths[t] = hi - lo. A negative position or an
 *  invalid request gives an empty list. */
typedef struct spmla_window_indices_args {
  size_t struct_size;                 /* via SPMLA_WINDOW_INDICES_ARGS_INIT */
  const spmla_tensor_t *positions;    /* [T] int32 absolute position in the request */
  const spmla_tensor_t *token_to_req; /* [T] int32 */
  const spmla_tensor_t *block_table;  /* [R, max_pages] int32 */
  int32_t block_size;                 /* >= 1 */
  int32_t ratio;                      /* >= 1 (1: sliding window; 128: compressed tokens) */
  const spmla_tensor_t *slots;        /* out [T, W] int32, W >= 1 */
  const spmla_tensor_t *lengths;      /* out [T] int32 */
} spmla_window_indices_args_t;

#define SPMLA_WINDOW_INDICES_ARGS_INIT \
  { sizeof(spmla_window_indices_args_t), NULL, NULL, NULL, 0, 1, NULL, NULL }

SPMLA_API spmla_status_t spmla_window_indices_run(spmla_handle_t handle,
                                                  const spmla_window_indices_args_t *args,
                                                  void *stream);

/* ------------------------------------------------------------------------- */
/* 4. indexer_logits                                                          */
/* ------------------------------------------------------------------------- */
/** Ragged form: logits[t, j] = Σ_h weights[t,h] · relu(k_scale[j] · <q[t,h,:], k[j,:]>)
 *  for k_start[t] <= j < k_end[t], -inf elsewhere (every column of the row is
 *  written). q and k share one FP8 dtype (E4M3FN or E4M3FNUZ). */
typedef struct spmla_indexer_logits_args {
  size_t struct_size;            /* via SPMLA_INDEXER_LOGITS_ARGS_INIT */
  const spmla_tensor_t *q;       /* [T, Hi, Di] fp8, Hi 1..64, Di 64 or 128 */
  const spmla_tensor_t *k;       /* [S, Di] fp8 (same dtype as q) */
  const spmla_tensor_t *k_scale; /* [S] fp32 */
  const spmla_tensor_t *weights; /* [T, Hi] fp32 */
  const spmla_tensor_t *k_start; /* [T] int32 */
  const spmla_tensor_t *k_end;   /* [T] int32 */
  const spmla_tensor_t *logits;  /* out [T, S] fp32, row stride free */
} spmla_indexer_logits_args_t;

#define SPMLA_INDEXER_LOGITS_ARGS_INIT \
  { sizeof(spmla_indexer_logits_args_t), NULL, NULL, NULL, NULL, NULL, NULL, NULL }

SPMLA_API spmla_status_t spmla_indexer_logits_get_workspace_size(
    spmla_handle_t handle, const spmla_indexer_logits_args_t *args, size_t *workspace_bytes);
SPMLA_API spmla_status_t spmla_indexer_logits_run(spmla_handle_t handle,
                                                  const spmla_indexer_logits_args_t *args,
                                                  void *workspace, size_t workspace_bytes,
                                                  void *stream);

/** Paged (decode) form: row r = b*N + i scores logical positions
 *  j < context_lens[b] - N + i + 1 (and j < C) of request b, whose keys live in an
 *  INDEXER_FP8 cache through block_table; other columns are -inf. */
typedef struct spmla_indexer_logits_paged_args {
  size_t struct_size;                 /* via SPMLA_INDEXER_LOGITS_PAGED_ARGS_INIT */
  const spmla_tensor_t *q;            /* [B, N, Hi, Di] fp8 (dtype = cache flavour) */
  const spmla_kv_cache_t *cache;      /* layout INDEXER_FP8, head_dim Di */
  const spmla_tensor_t *block_table;  /* [B, max_pages] int32 */
  const spmla_tensor_t *context_lens; /* [B] int32 */
  const spmla_tensor_t *weights;      /* [B*N, Hi] fp32 */
  const spmla_tensor_t *logits;       /* out [B*N, C] fp32, row stride free */
} spmla_indexer_logits_paged_args_t;

#define SPMLA_INDEXER_LOGITS_PAGED_ARGS_INIT \
  { sizeof(spmla_indexer_logits_paged_args_t), NULL, NULL, NULL, NULL, NULL, NULL }

SPMLA_API spmla_status_t spmla_indexer_logits_paged_get_workspace_size(
    spmla_handle_t handle, const spmla_indexer_logits_paged_args_t *args, size_t *workspace_bytes);
SPMLA_API spmla_status_t spmla_indexer_logits_paged_run(
    spmla_handle_t handle, const spmla_indexer_logits_paged_args_t *args, void *workspace,
    size_t workspace_bytes, void *stream);

/* ------------------------------------------------------------------------- */
/* 5. topk_per_row                                                            */
/* ------------------------------------------------------------------------- */
/** Per row r, the k = indices.shape[1] largest values of logits[r, start_r:end_r)
 *  (ties toward the smaller column, NaN below every number), written as columns
 *  relative to start_r in ascending order; rows with fewer than k columns hold all
 *  of them, then -1. Range: [row_starts[r], row_ends[r]) when given (either may be
 *  absent: 0 / C); or, with context_lens and next_n, the paged decode rule
 *  [0, context_lens[r / next_n] - next_n + r % next_n + 1). Always clipped to [0, C).
 *  Deterministic on every backend. */
typedef struct spmla_topk_per_row_args {
  size_t struct_size;                 /* via SPMLA_TOPK_PER_ROW_ARGS_INIT */
  const spmla_tensor_t *logits;       /* [R, C] fp32, row stride free */
  const spmla_tensor_t *row_starts;   /* optional [R] int32 */
  const spmla_tensor_t *row_ends;     /* optional [R] int32 */
  const spmla_tensor_t *context_lens; /* optional [R / next_n] int32 (paged rule) */
  int32_t next_n;                     /* tokens per request for the paged rule (>= 1) */
  const spmla_tensor_t *indices;      /* out [R, k] int32 */
} spmla_topk_per_row_args_t;

#define SPMLA_TOPK_PER_ROW_ARGS_INIT \
  { sizeof(spmla_topk_per_row_args_t), NULL, NULL, NULL, NULL, 1, NULL }

SPMLA_API spmla_status_t spmla_topk_per_row_get_workspace_size(
    spmla_handle_t handle, const spmla_topk_per_row_args_t *args, size_t *workspace_bytes);
SPMLA_API spmla_status_t spmla_topk_per_row_run(spmla_handle_t handle,
                                                const spmla_topk_per_row_args_t *args,
                                                void *workspace, size_t workspace_bytes,
                                                void *stream);

/* ------------------------------------------------------------------------- */
/* 6. kv_cache_store   7. kv_cache_gather                                     */
/* ------------------------------------------------------------------------- */
/** Writes kv[n] into slot slot_mapping[n] of the cache in its layout (negative or
 *  out-of-range slots are skipped). FP8 layouts quantize per docs/SPEC.md; the
 *  INDEXER_FP8 layout stores fp8 bytes plus one fp32 scale amax/fp8_max per token. */
typedef struct spmla_kv_cache_store_args {
  size_t struct_size;                 /* via SPMLA_KV_CACHE_STORE_ARGS_INIT */
  const spmla_tensor_t *kv;           /* [N, D] bf16 (NoPE then RoPE) */
  const spmla_tensor_t *slot_mapping; /* [N] int32 or int64 */
  const spmla_kv_cache_t *cache;      /* destination, head_dim D */
} spmla_kv_cache_store_args_t;

#define SPMLA_KV_CACHE_STORE_ARGS_INIT { sizeof(spmla_kv_cache_store_args_t), NULL, NULL, NULL }

SPMLA_API spmla_status_t spmla_kv_cache_store_run(spmla_handle_t handle,
                                                  const spmla_kv_cache_store_args_t *args,
                                                  void *stream);

/** out[n] = dequantized row of slot slots[n] (all D values); invalid slots give
 *  zero rows. Reads only the listed slots. */
typedef struct spmla_kv_cache_gather_args {
  size_t struct_size;            /* via SPMLA_KV_CACHE_GATHER_ARGS_INIT */
  const spmla_kv_cache_t *cache; /* source */
  const spmla_tensor_t *slots;   /* [N] int32 */
  const spmla_tensor_t *out;     /* out [N, D] bf16 */
} spmla_kv_cache_gather_args_t;

#define SPMLA_KV_CACHE_GATHER_ARGS_INIT { sizeof(spmla_kv_cache_gather_args_t), NULL, NULL, NULL }

SPMLA_API spmla_status_t spmla_kv_cache_gather_run(spmla_handle_t handle,
                                                   const spmla_kv_cache_gather_args_t *args,
                                                   void *stream);

/* ------------------------------------------------------------------------- */
/* The function table, for engines that dlopen libspmla                       */
/* ------------------------------------------------------------------------- */
/** Every public function, in a table that only grows at the end. An engine does
 *  dlopen("libspmla.so.1"), dlsym("spmla_get_api"), then calls through it. */
typedef struct spmla_api {
  size_t struct_size;
  uint32_t abi_version; /* (major << 16) | minor of the library */
  unsigned (*version_number)(void);
  const char *(*version_string)(void);
  uint32_t (*abi_version_fn)(void);
  const char *(*status_string)(spmla_status_t);
  const char *(*last_error_message)(void);
  void (*clear_last_error)(void);
  size_t (*dtype_size)(spmla_dtype_t);
  const char *(*dtype_name)(spmla_dtype_t);
  spmla_status_t (*tensor_make_contiguous)(spmla_tensor_t *, void *, spmla_dtype_t, int32_t,
                                           const int64_t *);
  spmla_status_t (*kv_cache_page_bytes)(const spmla_kv_cache_t *, size_t *);
  spmla_status_t (*kv_cache_size_bytes)(const spmla_kv_cache_t *, size_t *);
  spmla_status_t (*backend_count)(int32_t *);
  spmla_status_t (*backend_get_info)(int32_t, spmla_backend_info_t *);
  spmla_status_t (*device_get_info)(const char *, int32_t, spmla_device_info_t *);
  spmla_status_t (*handle_create)(const char *, int32_t, spmla_handle_t *);
  spmla_status_t (*handle_destroy)(spmla_handle_t);
  const char *(*handle_backend_name)(spmla_handle_t);
  spmla_status_t (*handle_device)(spmla_handle_t, int32_t *);
  spmla_status_t (*device_malloc)(spmla_handle_t, size_t, void **);
  spmla_status_t (*device_free)(spmla_handle_t, void *);
  spmla_status_t (*memcpy_fn)(spmla_handle_t, void *, const void *, size_t, spmla_memcpy_kind_t,
                              void *);
  spmla_status_t (*memset_fn)(spmla_handle_t, void *, int, size_t, void *);
  spmla_status_t (*stream_synchronize)(spmla_handle_t, void *);
  spmla_status_t (*event_create)(spmla_handle_t, spmla_event_t *);
  spmla_status_t (*event_destroy)(spmla_handle_t, spmla_event_t);
  spmla_status_t (*event_record)(spmla_handle_t, spmla_event_t, void *);
  spmla_status_t (*event_elapsed_ms)(spmla_handle_t, spmla_event_t, spmla_event_t, float *);
  spmla_status_t (*sparse_attention_get_workspace_size)(spmla_handle_t,
                                                        const spmla_sparse_attention_args_t *,
                                                        size_t *);
  spmla_status_t (*sparse_attention_plan)(spmla_handle_t, const spmla_sparse_attention_args_t *,
                                          void *, size_t, void *);
  spmla_status_t (*sparse_attention_run)(spmla_handle_t, const spmla_sparse_attention_args_t *,
                                         void *, size_t, void *);
  spmla_status_t (*indices_to_slots_run)(spmla_handle_t, const spmla_indices_to_slots_args_t *,
                                         void *);
  spmla_status_t (*window_indices_run)(spmla_handle_t, const spmla_window_indices_args_t *,
                                       void *);
  spmla_status_t (*indexer_logits_get_workspace_size)(spmla_handle_t,
                                                      const spmla_indexer_logits_args_t *,
                                                      size_t *);
  spmla_status_t (*indexer_logits_run)(spmla_handle_t, const spmla_indexer_logits_args_t *,
                                       void *, size_t, void *);
  spmla_status_t (*indexer_logits_paged_get_workspace_size)(
      spmla_handle_t, const spmla_indexer_logits_paged_args_t *, size_t *);
  spmla_status_t (*indexer_logits_paged_run)(spmla_handle_t,
                                             const spmla_indexer_logits_paged_args_t *, void *,
                                             size_t, void *);
  spmla_status_t (*topk_per_row_get_workspace_size)(spmla_handle_t,
                                                    const spmla_topk_per_row_args_t *, size_t *);
  spmla_status_t (*topk_per_row_run)(spmla_handle_t, const spmla_topk_per_row_args_t *, void *,
                                     size_t, void *);
  spmla_status_t (*kv_cache_store_run)(spmla_handle_t, const spmla_kv_cache_store_args_t *,
                                       void *);
  spmla_status_t (*kv_cache_gather_run)(spmla_handle_t, const spmla_kv_cache_gather_args_t *,
                                        void *);
  /* ---- ABI 1.3 ---- */
  spmla_status_t (*handle_set_option)(spmla_handle_t, spmla_option_t, int64_t);
  spmla_status_t (*handle_get_option)(spmla_handle_t, spmla_option_t, int64_t *);
} spmla_api_t;

/** The function table of this library if `abi_major` equals its ABI major, else
 *  NULL (and the last-error message says which versions met). The table is
 *  static: never free it. */
SPMLA_API const spmla_api_t *spmla_get_api(uint32_t abi_major);

/** Signature of spmla_get_api, for dlsym callers. */
typedef const spmla_api_t *(*spmla_get_api_fn)(uint32_t abi_major);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SPMLA_H */
