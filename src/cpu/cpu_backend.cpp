// cpu_backend.cpp — the built-in CPU reference backend's function table ("cpu").
//
// One device; every "device" pointer is host memory; memcpy/memset are synchronous; events are
// std::chrono::steady_clock timestamps; the stream argument is ignored (everything has finished
// when a call returns). Each handle's context owns a thread pool of SPMLA_NUM_THREADS threads
// (read when the handle is created; default: hardware concurrency).
#include "cpu/cpu_backend.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "cpu/cpu_internal.h"

namespace spmla {
namespace cpu {
namespace {

const spmla_backend_host_t *g_host = nullptr;

struct Event {
  std::chrono::steady_clock::time_point t{};
  bool recorded = false;
};

Context *as_ctx(void *ctx) { return static_cast<Context *>(ctx); }

// Runs `f` and turns C++ exceptions (allocation of scratch space) into statuses.
template <class F>
spmla_status_t guarded(F &&f) {
  try {
    return f();
  } catch (const std::bad_alloc &) {
    set_error("cpu backend: out of host memory for scratch space");
    return SPMLA_STATUS_OUT_OF_MEMORY;
  } catch (...) {
    set_error("cpu backend: unexpected internal exception");
    return SPMLA_STATUS_INTERNAL;
  }
}

spmla_status_t cpu_init(const spmla_backend_host_t *host, int32_t *device_count, char *reason,
                        size_t reason_size) {
  g_host = host;
  if (device_count) *device_count = 1;
  if (reason && reason_size) reason[0] = '\0';
  (void)fp8_tables();  // build the decode tables once, thread-safely, up front
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t cpu_device_info(int32_t device, spmla_device_info_t *info) {
  if (device != 0 || !info) {
    set_error("cpu backend: device must be 0");
    return SPMLA_STATUS_INVALID_ARGUMENT;
  }
  const int threads = default_thread_count();
#if defined(__x86_64__)
  const char *isa = "x86_64";
#elif defined(__aarch64__)
  const char *isa = "aarch64";
#else
  const char *isa = "cpu";
#endif
  std::snprintf(info->name, sizeof info->name, "%s (%d threads)", isa, threads);
  std::snprintf(info->arch, sizeof info->arch, "cpu");
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGESIZE);
  info->total_memory_bytes =
      (pages > 0 && page_size > 0) ? static_cast<int64_t>(pages) * page_size : 0;
  info->multiprocessor_count = threads;
  info->warp_size = 1;
  info->fp8_e4m3fn_native = 0;  // software conversion (numerics.h), exact for both flavors
  info->fp8_e4m3fnuz_native = 0;
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t cpu_context_create(int32_t device, void **ctx) {
  if (device != 0 || !ctx) {
    set_error("cpu backend: device must be 0");
    return SPMLA_STATUS_INVALID_ARGUMENT;
  }
  return guarded([&] {
    *ctx = new Context(default_thread_count());
    return SPMLA_STATUS_SUCCESS;
  });
}

void cpu_context_destroy(void *ctx) { delete as_ctx(ctx); }

spmla_status_t cpu_malloc(void *, size_t bytes, void **ptr) {
  // 256-byte aligned; size rounded up to a multiple of 256 as aligned_alloc requires.
  size_t rounded = (bytes + 255) / 256 * 256;
  if (rounded < bytes) {
    set_error("cpu backend: malloc size overflows");
    return SPMLA_STATUS_SIZE_OVERFLOW;
  }
  if (rounded == 0) rounded = 256;
  void *p = std::aligned_alloc(256, rounded);
  if (!p) {
    set_error("cpu backend: host allocation failed");
    return SPMLA_STATUS_OUT_OF_MEMORY;
  }
  *ptr = p;
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t cpu_free(void *, void *ptr) {
  std::free(ptr);
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t cpu_memcpy(void *, void *dst, const void *src, size_t bytes, spmla_memcpy_kind_t,
                          void *) {
  if (bytes) std::memmove(dst, src, bytes);
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t cpu_memset(void *, void *dst, int value, size_t bytes, void *) {
  if (bytes) std::memset(dst, value, bytes);
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t cpu_stream_synchronize(void *, void *) { return SPMLA_STATUS_SUCCESS; }

spmla_status_t cpu_event_create(void *, void **event) {
  return guarded([&] {
    *event = new Event();
    return SPMLA_STATUS_SUCCESS;
  });
}

spmla_status_t cpu_event_destroy(void *, void *event) {
  delete static_cast<Event *>(event);
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t cpu_event_record(void *, void *event, void *) {
  auto *e = static_cast<Event *>(event);
  e->t = std::chrono::steady_clock::now();
  e->recorded = true;
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t cpu_event_elapsed_ms(void *, void *start, void *end, float *ms) {
  auto *a = static_cast<Event *>(start);
  auto *b = static_cast<Event *>(end);
  if (!a->recorded || !b->recorded) {
    set_error(!a->recorded
                  ? "spmla_event_elapsed_ms: start: expected an event recorded by "
                    "spmla_event_record, got one never recorded"
                  : "spmla_event_elapsed_ms: end: expected an event recorded by "
                    "spmla_event_record, got one never recorded");
    return SPMLA_STATUS_INVALID_ARGUMENT;
  }
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return SPMLA_STATUS_SUCCESS;
}

// The CPU needs no workspace: scratch lives in the handle's context. Plan has nothing to record
// (the CPU schedule is fixed: per token, parallel over head blocks).
spmla_status_t cpu_attn_workspace(void *, const spmla_sparse_attention_args_t *, size_t *bytes) {
  *bytes = 0;
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t cpu_attn_plan(void *, const spmla_sparse_attention_args_t *, void *, size_t,
                             void *) {
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t cpu_attn_run(void *ctx, const spmla_sparse_attention_args_t *a, void *, size_t,
                            void *) {
  return guarded([&] { return sparse_attention(*as_ctx(ctx), *a); });
}
spmla_status_t cpu_indices_to_slots(void *ctx, const spmla_indices_to_slots_args_t *a, void *) {
  return guarded([&] { return indices_to_slots(*as_ctx(ctx), *a); });
}
spmla_status_t cpu_window_indices(void *ctx, const spmla_window_indices_args_t *a, void *) {
  return guarded([&] { return window_indices(*as_ctx(ctx), *a); });
}
spmla_status_t cpu_indexer_workspace(void *, const spmla_indexer_logits_args_t *, size_t *bytes) {
  *bytes = 0;
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t cpu_indexer(void *ctx, const spmla_indexer_logits_args_t *a, void *, size_t,
                           void *) {
  return guarded([&] { return indexer_logits(*as_ctx(ctx), *a); });
}
spmla_status_t cpu_indexer_paged_workspace(void *, const spmla_indexer_logits_paged_args_t *,
                                           size_t *bytes) {
  *bytes = 0;
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t cpu_indexer_paged(void *ctx, const spmla_indexer_logits_paged_args_t *a, void *,
                                 size_t, void *) {
  return guarded([&] { return indexer_logits_paged(*as_ctx(ctx), *a); });
}
spmla_status_t cpu_topk_workspace(void *, const spmla_topk_per_row_args_t *, size_t *bytes) {
  *bytes = 0;
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t cpu_topk(void *ctx, const spmla_topk_per_row_args_t *a, void *, size_t, void *) {
  return guarded([&] { return topk_per_row(*as_ctx(ctx), *a); });
}
spmla_status_t cpu_store(void *ctx, const spmla_kv_cache_store_args_t *a, void *) {
  return guarded([&] { return kv_cache_store(*as_ctx(ctx), *a); });
}
spmla_status_t cpu_gather(void *ctx, const spmla_kv_cache_gather_args_t *a, void *) {
  return guarded([&] { return kv_cache_gather(*as_ctx(ctx), *a); });
}

// Handle options (plugin ABI 1.2): the core has checked option and range.
spmla_status_t cpu_set_option(void *ctx, int32_t option, int64_t value) {
  if (option == SPMLA_OPTION_BATCH_INVARIANT) {
    as_ctx(ctx)->batch_invariant = value;  // already batch-invariant: nothing changes
    return SPMLA_STATUS_SUCCESS;
  }
  set_error("cpu backend: unknown handle option");
  return SPMLA_STATUS_UNSUPPORTED;
}

const spmla_backend_table_t kTable = {
    sizeof(spmla_backend_table_t),
    SPMLA_BACKEND_ABI_VERSION,
    "cpu",
    cpu_init,
    cpu_device_info,
    cpu_context_create,
    cpu_context_destroy,
    cpu_malloc,
    cpu_free,
    cpu_memcpy,
    cpu_memset,
    cpu_stream_synchronize,
    cpu_event_create,
    cpu_event_destroy,
    cpu_event_record,
    cpu_event_elapsed_ms,
    cpu_attn_workspace,
    cpu_attn_plan,
    cpu_attn_run,
    cpu_indices_to_slots,
    cpu_window_indices,
    cpu_indexer_workspace,
    cpu_indexer,
    cpu_indexer_paged_workspace,
    cpu_indexer_paged,
    cpu_topk_workspace,
    cpu_topk,
    cpu_store,
    cpu_gather,
    kKvLayoutLastAbi,  // every layout of the ABI
    0,                 // reserved0
    cpu_set_option,
};

}  // namespace

void set_error(const char *message) {
  if (g_host && g_host->set_error) g_host->set_error(message);
}

const Fp8Tables &fp8_tables() {
  static const Fp8Tables tables = [] {
    Fp8Tables t;
    for (int b = 0; b < 256; ++b) {
      t.fn[b] = fp8_e4m3fn_to_f32(static_cast<uint8_t>(b));
      t.fnuz[b] = fp8_e4m3fnuz_to_f32(static_cast<uint8_t>(b));
      t.ue8m0[b] = ue8m0_to_f32(static_cast<uint8_t>(b));
    }
    return t;
  }();
  return tables;
}

}  // namespace cpu

const spmla_backend_table_t *cpu_backend_table() { return &cpu::kTable; }

}  // namespace spmla
