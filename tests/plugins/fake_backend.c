/* fake_backend.c — fake backend plugins for the loader tests, one source compiled once per
 * FAKE_KIND:
 *   FAKE_GOOD      a working backend ("fake") whose ops write recognisable values
 *   FAKE_BAD_ABI   table with ABI 2.0
 *   FAKE_NULL      spmla_backend_entry returns NULL
 *   FAKE_INIT_FAIL init() fails with a reason
 *   FAKE_NO_SYMBOL exports no spmla_backend_entry
 *   FAKE_SMALL     table struct_size too small
 *   FAKE_NO_DEV    init() succeeds with zero devices
 * Recognisable values of FAKE_GOOD: sparse_attention out = bf16 0x4049 (3.140625), lse = 42,
 * max_logits = 7; workspace 4096 bytes, plan writes a magic word that run checks; topk
 * indices = 5555; indices_to_slots slots = 7777; window_indices slots = 8888; gather out =
 * bf16 0x3F80 (1.0); indexer logits 3.0 (ragged) and 4.0 (paged). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spmla_backend.h"

#define FAKE_GOOD 1
#define FAKE_BAD_ABI 2
#define FAKE_NULL 3
#define FAKE_INIT_FAIL 4
#define FAKE_NO_SYMBOL 5
#define FAKE_SMALL 6
#define FAKE_NO_DEV 7

#ifndef FAKE_KIND
#error "define FAKE_KIND"
#endif

#define EXPORT __attribute__((visibility("default")))
#define WS_BYTES 4096u
#define WS_MAGIC 0x5EEDF00Du

static const spmla_backend_host_t *g_host;

static spmla_status_t fake_init(const spmla_backend_host_t *host, int32_t *device_count,
                                char *reason, size_t reason_size) {
  g_host = host;
#if FAKE_KIND == FAKE_INIT_FAIL
  (void)device_count;
  snprintf(reason, reason_size, "fake init failure: the flux capacitor is missing");
  return SPMLA_STATUS_BACKEND_UNAVAILABLE;
#elif FAKE_KIND == FAKE_NO_DEV
  (void)reason;
  (void)reason_size;
  *device_count = 0;
  return SPMLA_STATUS_SUCCESS;
#else
  (void)reason;
  (void)reason_size;
  *device_count = 2;
  return SPMLA_STATUS_SUCCESS;
#endif
}

static spmla_status_t fake_device_info(int32_t device, spmla_device_info_t *info) {
  snprintf(info->name, sizeof info->name, "fake device %d", (int)device);
  snprintf(info->arch, sizeof info->arch, "fake");
  info->total_memory_bytes = 1 << 20;
  info->multiprocessor_count = 1;
  info->warp_size = 1;
  return SPMLA_STATUS_SUCCESS;
}

static spmla_status_t fake_context_create(int32_t device, void **ctx) {
  int32_t *c = (int32_t *)malloc(sizeof *c);
  if (!c) return SPMLA_STATUS_OUT_OF_MEMORY;
  *c = device;
  *ctx = c;
  return SPMLA_STATUS_SUCCESS;
}
static void fake_context_destroy(void *ctx) { free(ctx); }

static spmla_status_t fake_malloc(void *ctx, size_t bytes, void **ptr) {
  (void)ctx;
  if (posix_memalign(ptr, 256, (bytes + 255) / 256 * 256 + 256) != 0) {
    *ptr = NULL;
    return SPMLA_STATUS_OUT_OF_MEMORY;
  }
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_free(void *ctx, void *ptr) {
  (void)ctx;
  free(ptr);
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_memcpy(void *ctx, void *dst, const void *src, size_t bytes,
                                  spmla_memcpy_kind_t kind, void *stream) {
  (void)ctx;
  (void)kind;
  (void)stream;
  memmove(dst, src, bytes);
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_memset(void *ctx, void *dst, int value, size_t bytes, void *stream) {
  (void)ctx;
  (void)stream;
  memset(dst, value, bytes);
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_sync(void *ctx, void *stream) {
  (void)ctx;
  (void)stream;
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_event_create(void *ctx, void **event) {
  (void)ctx;
  *event = malloc(8);
  return *event ? SPMLA_STATUS_SUCCESS : SPMLA_STATUS_OUT_OF_MEMORY;
}
static spmla_status_t fake_event_destroy(void *ctx, void *event) {
  (void)ctx;
  free(event);
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_event_record(void *ctx, void *event, void *stream) {
  (void)ctx;
  (void)event;
  (void)stream;
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_event_elapsed(void *ctx, void *a, void *b, float *ms) {
  (void)ctx;
  (void)a;
  (void)b;
  *ms = 1.5f;
  return SPMLA_STATUS_SUCCESS;
}

/* Fills every element of a validated tensor (rank <= 4) with the bytes of `value`. */
static void fill(const spmla_tensor_t *t, const void *value) {
  int64_t shape[4] = {1, 1, 1, 1}, strides[4] = {0, 0, 0, 0};
  size_t es;
  int off, d;
  int64_t i0, i1, i2, i3;
  if (!t || !t->data) return;
  es = t->dtype == SPMLA_DTYPE_BF16 ? 2 : t->dtype == SPMLA_DTYPE_INT64 ? 8 : 4;
  off = 4 - t->ndim;
  for (d = 0; d < t->ndim; ++d) {
    shape[off + d] = t->shape[d];
    strides[off + d] = t->strides[d];
  }
  for (i0 = 0; i0 < shape[0]; ++i0)
    for (i1 = 0; i1 < shape[1]; ++i1)
      for (i2 = 0; i2 < shape[2]; ++i2)
        for (i3 = 0; i3 < shape[3]; ++i3) {
          int64_t e = i0 * strides[0] + i1 * strides[1] + i2 * strides[2] + i3 * strides[3];
          memcpy((char *)t->data + e * (int64_t)es, value, es);
        }
}

static spmla_status_t fake_sa_ws(void *ctx, const spmla_sparse_attention_args_t *a,
                                 size_t *bytes) {
  (void)ctx;
  (void)a;
  *bytes = WS_BYTES;
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_sa_plan(void *ctx, const spmla_sparse_attention_args_t *a, void *ws,
                                   size_t ws_bytes, void *stream) {
  uint32_t magic = WS_MAGIC;
  (void)ctx;
  (void)a;
  (void)ws_bytes;
  (void)stream;
  memcpy(ws, &magic, sizeof magic);
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_sa_run(void *ctx, const spmla_sparse_attention_args_t *a, void *ws,
                                  size_t ws_bytes, void *stream) {
  uint32_t magic;
  uint16_t o = 0x4049;
  float lse = 42.0f, ml = 7.0f;
  (void)ctx;
  (void)ws_bytes;
  (void)stream;
  memcpy(&magic, ws, sizeof magic);
  if (magic != WS_MAGIC) {
    g_host->set_error("fake: sparse_attention_run without a plan in the workspace");
    return SPMLA_STATUS_INVALID_ARGUMENT;
  }
  fill(a->out, &o);
  fill(a->lse, &lse);
  if (a->max_logits) fill(a->max_logits, &ml);
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_i2s(void *ctx, const spmla_indices_to_slots_args_t *a, void *stream) {
  int32_t v = 7777, k = (int32_t)a->positions->shape[1];
  (void)ctx;
  (void)stream;
  fill(a->slots, &v);
  fill(a->lengths, &k);
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_win(void *ctx, const spmla_window_indices_args_t *a, void *stream) {
  int32_t v = 8888, z = 0;
  (void)ctx;
  (void)stream;
  fill(a->slots, &v);
  fill(a->lengths, &z);
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_il(void *ctx, const spmla_indexer_logits_args_t *a, void *ws,
                              size_t wsb, void *stream) {
  float v = 3.0f;
  (void)ctx;
  (void)ws;
  (void)wsb;
  (void)stream;
  fill(a->logits, &v);
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_ilp(void *ctx, const spmla_indexer_logits_paged_args_t *a, void *ws,
                               size_t wsb, void *stream) {
  float v = 4.0f;
  (void)ctx;
  (void)ws;
  (void)wsb;
  (void)stream;
  fill(a->logits, &v);
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_topk(void *ctx, const spmla_topk_per_row_args_t *a, void *ws,
                                size_t wsb, void *stream) {
  int32_t v = 5555;
  (void)ctx;
  (void)ws;
  (void)wsb;
  (void)stream;
  fill(a->indices, &v);
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_store(void *ctx, const spmla_kv_cache_store_args_t *a, void *stream) {
  (void)ctx;
  (void)a;
  (void)stream;
  return SPMLA_STATUS_SUCCESS;
}
static spmla_status_t fake_gather(void *ctx, const spmla_kv_cache_gather_args_t *a,
                                  void *stream) {
  uint16_t one = 0x3F80;
  (void)ctx;
  (void)stream;
  fill(a->out, &one);
  return SPMLA_STATUS_SUCCESS;
}

static const spmla_backend_table_t k_table = {
#if FAKE_KIND == FAKE_SMALL
    16,
#else
    sizeof(spmla_backend_table_t),
#endif
#if FAKE_KIND == FAKE_BAD_ABI
    (2u << 16) | 0u,
#else
    SPMLA_BACKEND_ABI_VERSION,
#endif
    FAKE_NAME,
    fake_init,
    fake_device_info,
    fake_context_create,
    fake_context_destroy,
    fake_malloc,
    fake_free,
    fake_memcpy,
    fake_memset,
    fake_sync,
    fake_event_create,
    fake_event_destroy,
    fake_event_record,
    fake_event_elapsed,
    fake_sa_ws,
    fake_sa_plan,
    fake_sa_run,
    fake_i2s,
    fake_win,
    NULL, /* indexer_logits_workspace: none (no workspace) */
    fake_il,
    NULL,
    fake_ilp,
    NULL,
    fake_topk,
    fake_store,
    fake_gather,
};

#if FAKE_KIND == FAKE_NO_SYMBOL
EXPORT const spmla_backend_table_t *spmla_backend_entry_misspelled(uint32_t host_abi) {
  (void)host_abi;
  return &k_table;
}
#else
EXPORT const spmla_backend_table_t *spmla_backend_entry(uint32_t host_abi) {
#if FAKE_KIND == FAKE_NULL
  (void)host_abi;
  return NULL;
#else
  if ((host_abi >> 16) != SPMLA_BACKEND_ABI_MAJOR) return NULL;
  return &k_table;
#endif
}
#endif
