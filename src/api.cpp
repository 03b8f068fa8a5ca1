// api.cpp — every function of spmla.h: argument checks (src/validate), then the backend.
// Plain C entry points; no exception crosses them (std::bad_alloc -> OUT_OF_MEMORY, anything
// else -> INTERNAL). A failed call sets the thread's last error and writes no output.
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "error.h"
#include "registry.h"
#include "spmla.h"
#include "spmla_backend.h"
#include "validate.h"

struct spmla_handle_s {
  const spmla::BackendEntry *backend;
  const spmla_backend_table_t *table;
  void *ctx;
  int32_t device;
  // Set while a call is using the handle (HandleUse below): a handle serves one thread at a
  // time, and a second call arriving meanwhile gets SPMLA_STATUS_HANDLE_BUSY instead of racing.
  std::atomic<bool> in_use{false};
  // Handle options (ABI 1.3, spmla_option_t): the values the backend was last told; defaults 0.
  int64_t batch_invariant = 0;
};

namespace spmla {
namespace {

using Table = spmla_backend_table_t;
const spmla_status_t OK = SPMLA_STATUS_SUCCESS;
const spmla_status_t INVALID = SPMLA_STATUS_INVALID_ARGUMENT;

#define SPMLA_TRY(expr)                          \
  do {                                           \
    spmla_status_t _st = (expr);                 \
    if (_st != SPMLA_STATUS_SUCCESS) return _st; \
  } while (0)

template <class F>
spmla_status_t guard(const char *fn, F &&f) noexcept {
  try {
    return f();
  } catch (const std::bad_alloc &) {
    return fail_msg(SPMLA_STATUS_OUT_OF_MEMORY, fn, "out of host memory");
  } catch (const std::exception &e) {
    return fail_msg(SPMLA_STATUS_INTERNAL, fn,
                    std::string("internal error (please report): ") + e.what());
  } catch (...) {
    return fail_msg(SPMLA_STATUS_INTERNAL, fn, "internal error (please report): unknown exception");
  }
}

spmla_status_t null_arg(const char *fn, const char *name, const char *what) {
  return fail(INVALID, fn, name, what, "NULL");
}

spmla_status_t check_handle(const char *fn, spmla_handle_t h) {
  if (!h) return null_arg(fn, "handle", "a handle from spmla_handle_create");
  return OK;
}

// Marks a handle in use for the duration of one call (RAII). acquire() fails with HANDLE_BUSY
// when another call (another thread: the API never re-enters itself) holds the handle. The
// exchange (acquire) / store (release) pair orders one caller's use of the handle's context
// before the next caller's, so serial use from several threads is clean under TSan too.
class HandleUse {
 public:
  HandleUse() = default;
  HandleUse(const HandleUse &) = delete;
  HandleUse &operator=(const HandleUse &) = delete;
  ~HandleUse() {
    if (h_) h_->in_use.store(false, std::memory_order_release);
  }
  spmla_status_t acquire(const char *fn, spmla_handle_t h) {
    SPMLA_TRY(check_handle(fn, h));
    if (h->in_use.exchange(true, std::memory_order_acquire))
      return fail(SPMLA_STATUS_HANDLE_BUSY, fn, "handle",
                  "a handle no other thread is using", "one in use by another call");
    h_ = h;
    return OK;
  }
  // The handle is about to be deleted: nothing to clear.
  void release_for_destroy() { h_ = nullptr; }

 private:
  spmla_handle_t h_ = nullptr;
};
// Checks the handle and holds it for the rest of the enclosing scope.
#define SPMLA_USE_HANDLE(fn, h) \
  HandleUse _handle_use;        \
  SPMLA_TRY(_handle_use.acquire(fn, h))

// The backend implements member `m` (inside its struct_size, non-NULL), else UNSUPPORTED.
template <class M>
spmla_status_t require(const char *fn, spmla_handle_t h, M Table::*m, const char *member) {
  if (table_has(h->table, m)) return OK;
  return fail_msg(SPMLA_STATUS_UNSUPPORTED, fn,
                  "backend '" + h->backend->name + "' does not implement " + member);
}
#define SPMLA_REQUIRE(fn, h, member) \
  SPMLA_TRY(require(fn, h, &spmla_backend_table_t::member, #member))

// Runs a backend call; a failure without a message gets a generic one.
template <class F>
spmla_status_t call_backend(const char *fn, const std::string &backend, F &&f) {
  const uint64_t gen = error_generation();
  const spmla_status_t st = f();
  if (st != OK && error_generation() == gen)
    fail_msg(st, fn, "backend '" + backend + "' failed with " + spmla_status_string(st));
  return st;
}
// The backend's message of a call that just failed, for wrapping into the core's form.
std::string backend_said(const char *fn, spmla_handle_t h) {
  std::string m = last_error();
  const std::string prefix = std::string(fn) + ": ";
  if (m.compare(0, prefix.size(), prefix) == 0) m.erase(0, prefix.size());
  return "backend '" + h->backend->name + "': " + m;
}

#define SPMLA_CALL(fn, h, member, ...) \
  call_backend(fn, (h)->backend->name, [&] { return (h)->table->member(__VA_ARGS__); })

// Resolves a backend name (NULL / "auto" = first available of cuda, hip, cpu) to an
// available registry entry.
spmla_status_t resolve_backend(const char *fn, const char *name, const BackendEntry **out) {
  if (!name || std::strcmp(name, "auto") == 0) {
    for (const char *n : {"cuda", "hip", "cpu"}) {
      const BackendEntry *b = find_backend(n);
      if (b && b->available) {
        *out = b;
        return OK;
      }
    }
    return fail_msg(SPMLA_STATUS_BACKEND_UNAVAILABLE, fn,
                    "backend \"auto\": no backend of cuda, hip, cpu is available");
  }
  const BackendEntry *b = find_backend(name);
  if (!b)
    return fail(SPMLA_STATUS_BACKEND_UNAVAILABLE, fn, "backend",
                "one of " + known_backend_names() + " or \"auto\"",
                std::string("\"") + name + "\" (unknown backend)");
  if (!b->available)
    return fail_msg(SPMLA_STATUS_BACKEND_UNAVAILABLE, fn,
                    "backend '" + b->name + "' is unavailable: " + b->reason);
  *out = b;
  return OK;
}

spmla_status_t check_device(const char *fn, const BackendEntry *b, int32_t device) {
  if (device >= 0 && device < b->device_count) return OK;
  return fail(INVALID, fn, "device",
              "0 .. " + std::to_string(b->device_count - 1) + " (backend '" + b->name + "' has " +
                  std::to_string(b->device_count) + " device(s))",
              std::to_string(device));
}

// ---------------------------------------------------------------------------------------------
// What a backend receives: the caller's args with every cache descriptor replaced by a full-size
// copy (normalized_cache, src/kv_layout.h), so that a backend reads every member of its header
// (ABI 1.2: arrangement) even when the caller's struct is of an older, smaller header.
// ---------------------------------------------------------------------------------------------
template <class A>
class Prepared {  // ops without a cache: the caller's args as they are
 public:
  explicit Prepared(const A *a) : a_(a) {}
  const A *get() const { return a_; }
  const spmla_kv_cache_t *cache(int) const { return nullptr; }

 private:
  const A *a_;
};

template <class A>
class PreparedWithCaches {
 public:
  const A *get() const { return &a_; }
  const spmla_kv_cache_t *cache(int i) const { return ptr_[i]; }

 protected:
  explicit PreparedWithCaches(const A *a) : a_(*a) { a_.struct_size = sizeof(A); }
  const spmla_kv_cache_t *copy(int i, const spmla_kv_cache_t *c) {
    if (!c) return nullptr;
    caches_[i] = normalized_cache(*c);
    return ptr_[i] = &caches_[i];
  }
  A a_;

 private:
  spmla_kv_cache_t caches_[2];
  const spmla_kv_cache_t *ptr_[2] = {nullptr, nullptr};
};

template <>
class Prepared<spmla_sparse_attention_args_t>
    : public PreparedWithCaches<spmla_sparse_attention_args_t> {
 public:
  explicit Prepared(const spmla_sparse_attention_args_t *a) : PreparedWithCaches(a) {
    a_.kv = copy(0, a->kv);
    a_.extra_kv = copy(1, a->extra_kv);
  }
};
template <>
class Prepared<spmla_indexer_logits_paged_args_t>
    : public PreparedWithCaches<spmla_indexer_logits_paged_args_t> {
 public:
  explicit Prepared(const spmla_indexer_logits_paged_args_t *a) : PreparedWithCaches(a) {
    a_.cache = copy(0, a->cache);
  }
};
template <>
class Prepared<spmla_kv_cache_store_args_t> : public PreparedWithCaches<spmla_kv_cache_store_args_t> {
 public:
  explicit Prepared(const spmla_kv_cache_store_args_t *a) : PreparedWithCaches(a) {
    a_.cache = copy(0, a->cache);
  }
};
template <>
class Prepared<spmla_kv_cache_gather_args_t>
    : public PreparedWithCaches<spmla_kv_cache_gather_args_t> {
 public:
  explicit Prepared(const spmla_kv_cache_gather_args_t *a) : PreparedWithCaches(a) {
    a_.cache = copy(0, a->cache);
  }
};

// =============================================================================================
// LAYOUTS THE BACKENDS SERVE — the one place that keeps a valid cache layout from a backend
// without kernels for it. The built-in CPU reference serves every layout of the ABI. A plugin
// serves the layouts up to its table's last_kv_layout (plugin ABI 1.1); a table without that
// member (an older plugin) or with 0 serves the 1.0 layouts, up to INDEXER_FP8: it would read the bytes of
// a later layout (V41_FP8, V41_FP4) as another one, so those are refused with
// SPMLA_STATUS_UNSUPPORTED before the plugin is called.
// =============================================================================================
int32_t last_layout_served(const spmla_backend_table_t *t) {
  constexpr size_t need = offsetof(spmla_backend_table_t, last_kv_layout) + sizeof(int32_t);
  if (!t || t->struct_size < need || t->last_kv_layout < SPMLA_KV_LAYOUT_INDEXER_FP8) return SPMLA_KV_LAYOUT_INDEXER_FP8;
  return t->last_kv_layout;
}

spmla_status_t backend_serves_layouts(const char *fn, spmla_handle_t h, const spmla_kv_cache_t *c0,
                                      const spmla_kv_cache_t *c1) {
  if (h->backend->name == "cpu") return OK;  // built in (a reserved name): the CPU reference serves every layout
  const int32_t last = last_layout_served(h->backend->table);
  for (const spmla_kv_cache_t *c : {c0, c1}) {
    if (!c) continue;
    const int64_t l = enum_value(c->layout);
    if (l > last)
      return fail_msg(SPMLA_STATUS_UNSUPPORTED, fn,
                      "layout " + layout_str(l) + " is not served by the " + h->backend->name +
                          " backend (its kernels read the layouts up to " + layout_str(last) +
                          "; the cpu backend serves every layout)");
  }
  return OK;
}
template <class P>
spmla_status_t serves(const char *fn, spmla_handle_t h, const P &p) {
  return backend_serves_layouts(fn, h, p.cache(0), p.cache(1));
}

// ---------------------------------------------------------------------------------------------
// Handle options (ABI 1.3). The core checks the option and its range, keeps the value for
// spmla_handle_get_option and tells the backend (plugin ABI 1.2 context_set_option). A backend
// without that member knows no option: only the defaults are accepted there.
// ---------------------------------------------------------------------------------------------
struct OptionInfo {
  const char *name;
  int64_t min, max, dflt;
  int64_t spmla_handle_s::*field;
};
const OptionInfo *option_info(int64_t option) {
  static const OptionInfo batch_invariant{"SPMLA_OPTION_BATCH_INVARIANT", 0, 1, 0,
                                          &spmla_handle_s::batch_invariant};
  switch (option) {
    case SPMLA_OPTION_BATCH_INVARIANT: return &batch_invariant;
  }
  return nullptr;
}
// The option's entry, or INVALID_ARGUMENT naming the unknown value.
spmla_status_t find_option(const char *fn, spmla_option_t option, const OptionInfo **out) {
  const int64_t o = enum_value(option);
  *out = option_info(o);
  if (*out) return OK;
  return fail(INVALID, fn, "option", "a spmla_option_t this library knows (SPMLA_OPTION_BATCH_INVARIANT = 1)",
              std::to_string(o) + " (unknown option)");
}

}  // namespace
}  // namespace spmla

using namespace spmla;

extern "C" {

// ---------------------------------------------------------------------------------------------
// Versions, status, dtypes
// ---------------------------------------------------------------------------------------------
SPMLA_API unsigned spmla_version_number(void) { return SPMLA_VERSION_NUMBER; }
SPMLA_API const char *spmla_version_string(void) { return SPMLA_VERSION_STRING; }
SPMLA_API uint32_t spmla_abi_version(void) {
  return (uint32_t(SPMLA_ABI_VERSION_MAJOR) << 16) | uint32_t(SPMLA_ABI_VERSION_MINOR);
}

SPMLA_API const char *spmla_status_string(spmla_status_t status) {
  switch (enum_value(status)) {
    case SPMLA_STATUS_SUCCESS: return "SPMLA_STATUS_SUCCESS";
    case SPMLA_STATUS_INVALID_ARGUMENT: return "SPMLA_STATUS_INVALID_ARGUMENT";
    case SPMLA_STATUS_UNSUPPORTED: return "SPMLA_STATUS_UNSUPPORTED";
    case SPMLA_STATUS_BACKEND_UNAVAILABLE: return "SPMLA_STATUS_BACKEND_UNAVAILABLE";
    case SPMLA_STATUS_OUT_OF_MEMORY: return "SPMLA_STATUS_OUT_OF_MEMORY";
    case SPMLA_STATUS_WORKSPACE_TOO_SMALL: return "SPMLA_STATUS_WORKSPACE_TOO_SMALL";
    case SPMLA_STATUS_MISALIGNED: return "SPMLA_STATUS_MISALIGNED";
    case SPMLA_STATUS_SIZE_OVERFLOW: return "SPMLA_STATUS_SIZE_OVERFLOW";
    case SPMLA_STATUS_DEVICE_ERROR: return "SPMLA_STATUS_DEVICE_ERROR";
    case SPMLA_STATUS_ABI_MISMATCH: return "SPMLA_STATUS_ABI_MISMATCH";
    case SPMLA_STATUS_INTERNAL: return "SPMLA_STATUS_INTERNAL";
    case SPMLA_STATUS_HANDLE_BUSY: return "SPMLA_STATUS_HANDLE_BUSY";
  }
  return "SPMLA_STATUS_UNKNOWN";
}

SPMLA_API const char *spmla_last_error_message(void) { return spmla::last_error(); }
SPMLA_API void spmla_clear_last_error(void) { spmla::clear_error(); }

SPMLA_API size_t spmla_dtype_size(spmla_dtype_t dtype) {
  switch (enum_value(dtype)) {
    case SPMLA_DTYPE_BF16:
    case SPMLA_DTYPE_FP16: return 2;
    case SPMLA_DTYPE_FP32:
    case SPMLA_DTYPE_INT32: return 4;
    case SPMLA_DTYPE_INT64: return 8;
    case SPMLA_DTYPE_UINT8:
    case SPMLA_DTYPE_FP8_E4M3FN:
    case SPMLA_DTYPE_FP8_E4M3FNUZ:
    case SPMLA_DTYPE_UE8M0: return 1;
    case SPMLA_DTYPE_INVALID: break;
  }
  return 0;
}

SPMLA_API const char *spmla_dtype_name(spmla_dtype_t dtype) {
  switch (enum_value(dtype)) {
    case SPMLA_DTYPE_BF16: return "bf16";
    case SPMLA_DTYPE_FP16: return "fp16";
    case SPMLA_DTYPE_FP32: return "fp32";
    case SPMLA_DTYPE_INT32: return "int32";
    case SPMLA_DTYPE_INT64: return "int64";
    case SPMLA_DTYPE_UINT8: return "uint8";
    case SPMLA_DTYPE_FP8_E4M3FN: return "fp8_e4m3fn";
    case SPMLA_DTYPE_FP8_E4M3FNUZ: return "fp8_e4m3fnuz";
    case SPMLA_DTYPE_UE8M0: return "ue8m0";
    case SPMLA_DTYPE_INVALID: break;
  }
  return "invalid";
}

SPMLA_API spmla_status_t spmla_tensor_make_contiguous(spmla_tensor_t *t, void *data,
                                                      spmla_dtype_t dtype, int32_t ndim,
                                                      const int64_t *shape) {
  static const char fn[] = "spmla_tensor_make_contiguous";
  return guard(fn, [&]() -> spmla_status_t {
    if (!t) return null_arg(fn, "t", "a tensor to fill");
    if (ndim < 0 || ndim > SPMLA_MAX_DIMS)
      return fail(INVALID, fn, "ndim", "0 .. " + std::to_string(SPMLA_MAX_DIMS),
                  std::to_string(ndim));
    if (ndim > 0 && !shape) return null_arg(fn, "shape", "an array of ndim sizes");
    for (int d = 0; d < ndim; ++d)
      if (shape[d] < 0)
        return fail(INVALID, fn, "shape[" + std::to_string(d) + "]", ">= 0",
                    std::to_string(shape[d]));
    spmla_tensor_t r;
    std::memset(&r, 0, sizeof r);
    r.struct_size = sizeof(spmla_tensor_t);
    r.data = data;
    r.dtype = dtype;
    r.ndim = ndim;
    int64_t stride = 1;
    for (int d = ndim - 1; d >= 0; --d) {
      r.shape[d] = shape[d];
      r.strides[d] = stride;
      if (__builtin_mul_overflow(stride, shape[d], &stride))
        return fail(SPMLA_STATUS_SIZE_OVERFLOW, fn, "shape", "an element count below 2^63",
                    "an overflowing product");
    }
    *t = r;
    return OK;
  });
}

// ---------------------------------------------------------------------------------------------
// KV cache geometry
// ---------------------------------------------------------------------------------------------
SPMLA_API spmla_status_t spmla_kv_cache_page_bytes(const spmla_kv_cache_t *cache, size_t *bytes) {
  static const char fn[] = "spmla_kv_cache_page_bytes";
  return guard(fn, [&]() -> spmla_status_t {
    CacheGeometry g{};
    SPMLA_TRY(validate_cache(fn, "cache", cache, false, &g));
    if (!bytes) return null_arg(fn, "bytes", "a size_t to write");
    *bytes = static_cast<size_t>(packed_page_bytes(g.layout, g.dim, g.block_size, g.arrangement));
    return OK;
  });
}

SPMLA_API spmla_status_t spmla_kv_cache_size_bytes(const spmla_kv_cache_t *cache, size_t *bytes) {
  static const char fn[] = "spmla_kv_cache_size_bytes";
  return guard(fn, [&]() -> spmla_status_t {
    CacheGeometry g{};
    SPMLA_TRY(validate_cache(fn, "cache", cache, false, &g));
    if (!bytes) return null_arg(fn, "bytes", "a size_t to write");
    *bytes = static_cast<size_t>(g.page_stride) * static_cast<size_t>(g.num_pages);
    return OK;
  });
}

// ---------------------------------------------------------------------------------------------
// Backends, devices, handles
// ---------------------------------------------------------------------------------------------
SPMLA_API spmla_status_t spmla_backend_count(int32_t *count) {
  static const char fn[] = "spmla_backend_count";
  return guard(fn, [&]() -> spmla_status_t {
    if (!count) return null_arg(fn, "count", "an int32_t to write");
    *count = static_cast<int32_t>(registry().size());
    return OK;
  });
}

SPMLA_API spmla_status_t spmla_backend_get_info(int32_t index, spmla_backend_info_t *info) {
  static const char fn[] = "spmla_backend_get_info";
  return guard(fn, [&]() -> spmla_status_t {
    const auto &reg = registry();
    if (index < 0 || static_cast<size_t>(index) >= reg.size())
      return fail(INVALID, fn, "index", "0 .. " + std::to_string(int64_t(reg.size()) - 1),
                  std::to_string(index));
    if (!info) return null_arg(fn, "info", "a spmla_backend_info_t (SPMLA_BACKEND_INFO_INIT)");
    // An output struct: a larger one (newer header) is filled up to this library's size.
    SPMLA_TRY(check_struct_size(fn, "info", "spmla_backend_info_t", info, info->struct_size,
                                sizeof(spmla_backend_info_t), "SPMLA_BACKEND_INFO_INIT", false));
    const BackendEntry &b = reg[static_cast<size_t>(index)];
    info->name = b.name.c_str();
    info->available = b.available ? 1 : 0;
    info->reason = b.reason.c_str();
    info->device_count = b.device_count;
    info->library = b.library.c_str();
    return OK;
  });
}

SPMLA_API spmla_status_t spmla_device_get_info(const char *backend, int32_t device,
                                               spmla_device_info_t *info) {
  static const char fn[] = "spmla_device_get_info";
  return guard(fn, [&]() -> spmla_status_t {
    const BackendEntry *b = nullptr;
    SPMLA_TRY(resolve_backend(fn, backend, &b));
    SPMLA_TRY(check_device(fn, b, device));
    if (!info) return null_arg(fn, "info", "a spmla_device_info_t (SPMLA_DEVICE_INFO_INIT)");
    SPMLA_TRY(check_struct_size(fn, "info", "spmla_device_info_t", info, info->struct_size,
                                sizeof(spmla_device_info_t), "SPMLA_DEVICE_INFO_INIT", false));
    spmla_device_info_t local = SPMLA_DEVICE_INFO_INIT;
    const spmla_status_t st =
        call_backend(fn, b->name, [&] { return b->table->device_info(device, &local); });
    if (st != OK) return st;
    // Filled up to min(struct_size, sizeof) = sizeof; the caller's struct_size is kept.
    local.struct_size = info->struct_size;
    local.name[sizeof local.name - 1] = '\0';
    local.arch[sizeof local.arch - 1] = '\0';
    std::memcpy(info, &local, sizeof local);
    return OK;
  });
}

SPMLA_API spmla_status_t spmla_handle_create(const char *backend, int32_t device,
                                             spmla_handle_t *handle) {
  static const char fn[] = "spmla_handle_create";
  return guard(fn, [&]() -> spmla_status_t {
    if (!handle) return null_arg(fn, "handle", "a spmla_handle_t to write");
    const BackendEntry *b = nullptr;
    SPMLA_TRY(resolve_backend(fn, backend, &b));
    SPMLA_TRY(check_device(fn, b, device));
    auto *h = new spmla_handle_s{b, b->table, nullptr, device};
    void *ctx = nullptr;
    const spmla_status_t st =
        call_backend(fn, b->name, [&] { return b->table->context_create(device, &ctx); });
    if (st != OK) {
      delete h;
      return st;
    }
    h->ctx = ctx;
    *handle = h;
    return OK;
  });
}

SPMLA_API spmla_status_t spmla_handle_destroy(spmla_handle_t handle) {
  static const char fn[] = "spmla_handle_destroy";
  return guard(fn, [&]() -> spmla_status_t {
    if (!handle) return OK;
    SPMLA_USE_HANDLE(fn, handle);  // not while another thread's call is using it
    _handle_use.release_for_destroy();
    handle->table->context_destroy(handle->ctx);
    delete handle;
    return OK;
  });
}

SPMLA_API const char *spmla_handle_backend_name(spmla_handle_t handle) {
  return handle ? handle->backend->name.c_str() : nullptr;
}

SPMLA_API spmla_status_t spmla_handle_device(spmla_handle_t handle, int32_t *device) {
  static const char fn[] = "spmla_handle_device";
  return guard(fn, [&]() -> spmla_status_t {
    SPMLA_USE_HANDLE(fn, handle);
    if (!device) return null_arg(fn, "device", "an int32_t to write");
    *device = handle->device;
    return OK;
  });
}

SPMLA_API spmla_status_t spmla_handle_set_option(spmla_handle_t handle, spmla_option_t option,
                                                 int64_t value) {
  static const char fn[] = "spmla_handle_set_option";
  return guard(fn, [&]() -> spmla_status_t {
    SPMLA_USE_HANDLE(fn, handle);
    const OptionInfo *info = nullptr;
    SPMLA_TRY(find_option(fn, option, &info));
    if (value < info->min || value > info->max)
      return fail(INVALID, fn, "value",
                  std::to_string(info->min) + " .. " + std::to_string(info->max) + " for " + info->name,
                  std::to_string(value));
    if (table_has(handle->table, &spmla_backend_table_t::context_set_option)) {
      SPMLA_TRY(SPMLA_CALL(fn, handle, context_set_option, handle->ctx,
                           static_cast<int32_t>(enum_value(option)), value));
    } else if (value != info->dflt) {
      return fail_msg(SPMLA_STATUS_UNSUPPORTED, fn,
                      "backend '" + handle->backend->name + "' does not implement context_set_option (plugin ABI " +
                          "1.2): it cannot honour " + info->name + " = " + std::to_string(value));
    }
    handle->*(info->field) = value;
    return OK;
  });
}

SPMLA_API spmla_status_t spmla_handle_get_option(spmla_handle_t handle, spmla_option_t option,
                                                 int64_t *value) {
  static const char fn[] = "spmla_handle_get_option";
  return guard(fn, [&]() -> spmla_status_t {
    SPMLA_USE_HANDLE(fn, handle);
    const OptionInfo *info = nullptr;
    SPMLA_TRY(find_option(fn, option, &info));
    if (!value) return null_arg(fn, "value", "an int64_t to write");
    *value = handle->*(info->field);
    return OK;
  });
}

// ---------------------------------------------------------------------------------------------
// Memory, streams, events
// ---------------------------------------------------------------------------------------------
SPMLA_API spmla_status_t spmla_device_malloc(spmla_handle_t handle, size_t bytes, void **ptr) {
  static const char fn[] = "spmla_device_malloc";
  return guard(fn, [&]() -> spmla_status_t {
    SPMLA_USE_HANDLE(fn, handle);
    if (!ptr) return null_arg(fn, "ptr", "a void* to write");
    SPMLA_REQUIRE(fn, handle, malloc_fn);
    // Sizes are rounded up to a multiple of 256 (the alignment): refuse what cannot be.
    constexpr size_t kMaxBytes = std::numeric_limits<size_t>::max() / 2;
    if (bytes > kMaxBytes)
      return fail(SPMLA_STATUS_SIZE_OVERFLOW, fn, "bytes",
                  "at most " + std::to_string(kMaxBytes) + " (half the address space)",
                  std::to_string(bytes));
    void *p = nullptr;
    const spmla_status_t st = SPMLA_CALL(fn, handle, malloc_fn, handle->ctx, bytes, &p);
    if (st == SPMLA_STATUS_OUT_OF_MEMORY || st == SPMLA_STATUS_SIZE_OVERFLOW)
      return fail(st, fn, "bytes",
                  st == SPMLA_STATUS_OUT_OF_MEMORY
                      ? "a size the device can allocate"
                      : "a size the backend can allocate",
                  std::to_string(bytes) + " (" + backend_said(fn, handle) + ")");
    if (st != OK) return st;
    *ptr = p;
    return OK;
  });
}

SPMLA_API spmla_status_t spmla_device_free(spmla_handle_t handle, void *ptr) {
  static const char fn[] = "spmla_device_free";
  return guard(fn, [&]() -> spmla_status_t {
    SPMLA_USE_HANDLE(fn, handle);
    if (!ptr) return OK;
    SPMLA_REQUIRE(fn, handle, free_fn);
    return SPMLA_CALL(fn, handle, free_fn, handle->ctx, ptr);
  });
}

SPMLA_API spmla_status_t spmla_memcpy(spmla_handle_t handle, void *dst, const void *src,
                                      size_t bytes, spmla_memcpy_kind_t kind, void *stream) {
  static const char fn[] = "spmla_memcpy";
  return guard(fn, [&]() -> spmla_status_t {
    SPMLA_USE_HANDLE(fn, handle);
    const int64_t k = enum_value(kind);
    if (k != SPMLA_MEMCPY_HOST_TO_DEVICE && k != SPMLA_MEMCPY_DEVICE_TO_HOST &&
        k != SPMLA_MEMCPY_DEVICE_TO_DEVICE)
      return fail(INVALID, fn, "kind", "HOST_TO_DEVICE (1), DEVICE_TO_HOST (2) or DEVICE_TO_DEVICE (3)",
                  std::to_string(k));
    if (bytes == 0) return OK;
    if (!dst) return null_arg(fn, "dst", "a destination pointer");
    if (!src) return null_arg(fn, "src", "a source pointer");
    SPMLA_REQUIRE(fn, handle, memcpy_fn);
    return SPMLA_CALL(fn, handle, memcpy_fn, handle->ctx, dst, src, bytes, kind, stream);
  });
}

SPMLA_API spmla_status_t spmla_memset(spmla_handle_t handle, void *dst, int value, size_t bytes,
                                      void *stream) {
  static const char fn[] = "spmla_memset";
  return guard(fn, [&]() -> spmla_status_t {
    SPMLA_USE_HANDLE(fn, handle);
    if (bytes == 0) return OK;
    if (!dst) return null_arg(fn, "dst", "a destination pointer");
    SPMLA_REQUIRE(fn, handle, memset_fn);
    return SPMLA_CALL(fn, handle, memset_fn, handle->ctx, dst, value, bytes, stream);
  });
}

SPMLA_API spmla_status_t spmla_stream_synchronize(spmla_handle_t handle, void *stream) {
  static const char fn[] = "spmla_stream_synchronize";
  return guard(fn, [&]() -> spmla_status_t {
    SPMLA_USE_HANDLE(fn, handle);
    SPMLA_REQUIRE(fn, handle, stream_synchronize);
    return SPMLA_CALL(fn, handle, stream_synchronize, handle->ctx, stream);
  });
}

SPMLA_API spmla_status_t spmla_event_create(spmla_handle_t handle, spmla_event_t *event) {
  static const char fn[] = "spmla_event_create";
  return guard(fn, [&]() -> spmla_status_t {
    SPMLA_USE_HANDLE(fn, handle);
    if (!event) return null_arg(fn, "event", "a spmla_event_t to write");
    SPMLA_REQUIRE(fn, handle, event_create);
    void *ev = nullptr;
    SPMLA_TRY(SPMLA_CALL(fn, handle, event_create, handle->ctx, &ev));
    *event = static_cast<spmla_event_t>(ev);
    return OK;
  });
}

SPMLA_API spmla_status_t spmla_event_destroy(spmla_handle_t handle, spmla_event_t event) {
  static const char fn[] = "spmla_event_destroy";
  return guard(fn, [&]() -> spmla_status_t {
    SPMLA_USE_HANDLE(fn, handle);
    if (!event) return OK;
    SPMLA_REQUIRE(fn, handle, event_destroy);
    return SPMLA_CALL(fn, handle, event_destroy, handle->ctx, static_cast<void *>(event));
  });
}

SPMLA_API spmla_status_t spmla_event_record(spmla_handle_t handle, spmla_event_t event,
                                            void *stream) {
  static const char fn[] = "spmla_event_record";
  return guard(fn, [&]() -> spmla_status_t {
    SPMLA_USE_HANDLE(fn, handle);
    if (!event) return null_arg(fn, "event", "an event from spmla_event_create");
    SPMLA_REQUIRE(fn, handle, event_record);
    return SPMLA_CALL(fn, handle, event_record, handle->ctx, static_cast<void *>(event), stream);
  });
}

SPMLA_API spmla_status_t spmla_event_elapsed_ms(spmla_handle_t handle, spmla_event_t start,
                                                spmla_event_t end, float *ms) {
  static const char fn[] = "spmla_event_elapsed_ms";
  return guard(fn, [&]() -> spmla_status_t {
    SPMLA_USE_HANDLE(fn, handle);
    if (!start) return null_arg(fn, "start", "an event from spmla_event_create");
    if (!end) return null_arg(fn, "end", "an event from spmla_event_create");
    if (!ms) return null_arg(fn, "ms", "a float to write");
    SPMLA_REQUIRE(fn, handle, event_elapsed_ms);
    float v = 0.0f;
    const spmla_status_t st = SPMLA_CALL(fn, handle, event_elapsed_ms, handle->ctx,
                                         static_cast<void *>(start), static_cast<void *>(end), &v);
    if (st != OK) {
      // The CPU backend names the event itself; a plugin's own message is wrapped.
      if (std::strncmp(last_error(), "spmla_event_elapsed_ms: ", 24) == 0) return st;
      return fail(st, fn, "start, end",
                  "events recorded by spmla_event_record whose work has completed",
                  "events the backend refused (" + backend_said(fn, handle) + ")");
    }
    *ms = v;
    return OK;
  });
}

// ---------------------------------------------------------------------------------------------
// Operations: validate -> (workspace query) -> backend
// ---------------------------------------------------------------------------------------------

// A workspace query through the backend's optional member (absent = no workspace).
#define SPMLA_WORKSPACE_QUERY(fn, h, member, args, out)                             \
  do {                                                                              \
    *(out) = 0;                                                                     \
    if (table_has((h)->table, &spmla_backend_table_t::member))                      \
      SPMLA_TRY(SPMLA_CALL(fn, h, member, (h)->ctx, args, out));                    \
  } while (0)

// After validation: the backend's view of the args (full-size cache copies) and the check that
// the backend serves the caches' layouts ("LAYOUTS THE BACKENDS SERVE" above).
#define SPMLA_PREPARE(fn, handle, args)                                                    \
  const Prepared<std::remove_cv_t<std::remove_pointer_t<decltype(args)>>> prepared(args); \
  SPMLA_TRY(serves(fn, handle, prepared))

#define SPMLA_GET_WORKSPACE_SIZE(fn, validate_call, member)                          \
  return guard(fn, [&]() -> spmla_status_t {                                        \
    SPMLA_USE_HANDLE(fn, handle);                                         \
    SPMLA_TRY(validate_call);                                                       \
    if (!workspace_bytes) return null_arg(fn, "workspace_bytes", "a size_t to write"); \
    SPMLA_PREPARE(fn, handle, args);                                                \
    size_t need = 0;                                                                \
    SPMLA_WORKSPACE_QUERY(fn, handle, member, prepared.get(), &need);               \
    *workspace_bytes = need;                                                        \
    return OK;                                                                      \
  })

#define SPMLA_RUN_WITH_WORKSPACE(fn, validate_call, ws_member, member)                      \
  return guard(fn, [&]() -> spmla_status_t {                                                \
    SPMLA_USE_HANDLE(fn, handle);                                                 \
    SPMLA_TRY(validate_call);                                                               \
    SPMLA_REQUIRE(fn, handle, member);                                                      \
    SPMLA_PREPARE(fn, handle, args);                                                        \
    size_t need = 0;                                                                        \
    SPMLA_WORKSPACE_QUERY(fn, handle, ws_member, prepared.get(), &need);                    \
    SPMLA_TRY(validate_workspace(fn, workspace, workspace_bytes, need));                    \
    return SPMLA_CALL(fn, handle, member, handle->ctx, prepared.get(), workspace,           \
                      workspace_bytes, stream);                                             \
  })

#define SPMLA_RUN(fn, validate_call, member)                                     \
  return guard(fn, [&]() -> spmla_status_t {                                     \
    SPMLA_USE_HANDLE(fn, handle);                                      \
    SPMLA_TRY(validate_call);                                                    \
    SPMLA_REQUIRE(fn, handle, member);                                           \
    SPMLA_PREPARE(fn, handle, args);                                             \
    return SPMLA_CALL(fn, handle, member, handle->ctx, prepared.get(), stream);  \
  })

SPMLA_API spmla_status_t spmla_sparse_attention_get_workspace_size(
    spmla_handle_t handle, const spmla_sparse_attention_args_t *args, size_t *workspace_bytes) {
  static const char fn[] = "spmla_sparse_attention_get_workspace_size";
  SPMLA_GET_WORKSPACE_SIZE(fn, validate_sparse_attention(fn, args, false),
                           sparse_attention_workspace);
}

SPMLA_API spmla_status_t spmla_sparse_attention_plan(spmla_handle_t handle,
                                                     const spmla_sparse_attention_args_t *args,
                                                     void *workspace, size_t workspace_bytes,
                                                     void *stream) {
  static const char fn[] = "spmla_sparse_attention_plan";
  SPMLA_RUN_WITH_WORKSPACE(fn, validate_sparse_attention(fn, args, true),
                           sparse_attention_workspace, sparse_attention_plan);
}

SPMLA_API spmla_status_t spmla_sparse_attention_run(spmla_handle_t handle,
                                                    const spmla_sparse_attention_args_t *args,
                                                    void *workspace, size_t workspace_bytes,
                                                    void *stream) {
  static const char fn[] = "spmla_sparse_attention_run";
  SPMLA_RUN_WITH_WORKSPACE(fn, validate_sparse_attention(fn, args, true),
                           sparse_attention_workspace, sparse_attention_run);
}

SPMLA_API spmla_status_t spmla_indices_to_slots_run(spmla_handle_t handle,
                                                    const spmla_indices_to_slots_args_t *args,
                                                    void *stream) {
  static const char fn[] = "spmla_indices_to_slots_run";
  SPMLA_RUN(fn, validate_indices_to_slots(fn, args), indices_to_slots);
}

SPMLA_API spmla_status_t spmla_window_indices_run(spmla_handle_t handle,
                                                  const spmla_window_indices_args_t *args,
                                                  void *stream) {
  static const char fn[] = "spmla_window_indices_run";
  SPMLA_RUN(fn, validate_window_indices(fn, args), window_indices);
}

SPMLA_API spmla_status_t spmla_indexer_logits_get_workspace_size(
    spmla_handle_t handle, const spmla_indexer_logits_args_t *args, size_t *workspace_bytes) {
  static const char fn[] = "spmla_indexer_logits_get_workspace_size";
  SPMLA_GET_WORKSPACE_SIZE(fn, validate_indexer_logits(fn, args, false),
                           indexer_logits_workspace);
}

SPMLA_API spmla_status_t spmla_indexer_logits_run(spmla_handle_t handle,
                                                  const spmla_indexer_logits_args_t *args,
                                                  void *workspace, size_t workspace_bytes,
                                                  void *stream) {
  static const char fn[] = "spmla_indexer_logits_run";
  SPMLA_RUN_WITH_WORKSPACE(fn, validate_indexer_logits(fn, args, true), indexer_logits_workspace,
                           indexer_logits);
}

SPMLA_API spmla_status_t spmla_indexer_logits_paged_get_workspace_size(
    spmla_handle_t handle, const spmla_indexer_logits_paged_args_t *args,
    size_t *workspace_bytes) {
  static const char fn[] = "spmla_indexer_logits_paged_get_workspace_size";
  SPMLA_GET_WORKSPACE_SIZE(fn, validate_indexer_logits_paged(fn, args, false),
                           indexer_logits_paged_workspace);
}

SPMLA_API spmla_status_t spmla_indexer_logits_paged_run(
    spmla_handle_t handle, const spmla_indexer_logits_paged_args_t *args, void *workspace,
    size_t workspace_bytes, void *stream) {
  static const char fn[] = "spmla_indexer_logits_paged_run";
  SPMLA_RUN_WITH_WORKSPACE(fn, validate_indexer_logits_paged(fn, args, true),
                           indexer_logits_paged_workspace, indexer_logits_paged);
}

SPMLA_API spmla_status_t spmla_topk_per_row_get_workspace_size(
    spmla_handle_t handle, const spmla_topk_per_row_args_t *args, size_t *workspace_bytes) {
  static const char fn[] = "spmla_topk_per_row_get_workspace_size";
  SPMLA_GET_WORKSPACE_SIZE(fn, validate_topk_per_row(fn, args, false), topk_per_row_workspace);
}

SPMLA_API spmla_status_t spmla_topk_per_row_run(spmla_handle_t handle,
                                                const spmla_topk_per_row_args_t *args,
                                                void *workspace, size_t workspace_bytes,
                                                void *stream) {
  static const char fn[] = "spmla_topk_per_row_run";
  SPMLA_RUN_WITH_WORKSPACE(fn, validate_topk_per_row(fn, args, true), topk_per_row_workspace,
                           topk_per_row);
}

SPMLA_API spmla_status_t spmla_kv_cache_store_run(spmla_handle_t handle,
                                                  const spmla_kv_cache_store_args_t *args,
                                                  void *stream) {
  static const char fn[] = "spmla_kv_cache_store_run";
  SPMLA_RUN(fn, validate_kv_cache_store(fn, args), kv_cache_store);
}

SPMLA_API spmla_status_t spmla_kv_cache_gather_run(spmla_handle_t handle,
                                                   const spmla_kv_cache_gather_args_t *args,
                                                   void *stream) {
  static const char fn[] = "spmla_kv_cache_gather_run";
  SPMLA_RUN(fn, validate_kv_cache_gather(fn, args), kv_cache_gather);
}

// ---------------------------------------------------------------------------------------------
// The function table
// ---------------------------------------------------------------------------------------------
static const spmla_api_t k_api = {
    sizeof(spmla_api_t),
    (uint32_t(SPMLA_ABI_VERSION_MAJOR) << 16) | uint32_t(SPMLA_ABI_VERSION_MINOR),
    spmla_version_number,
    spmla_version_string,
    spmla_abi_version,
    spmla_status_string,
    spmla_last_error_message,
    spmla_clear_last_error,
    spmla_dtype_size,
    spmla_dtype_name,
    spmla_tensor_make_contiguous,
    spmla_kv_cache_page_bytes,
    spmla_kv_cache_size_bytes,
    spmla_backend_count,
    spmla_backend_get_info,
    spmla_device_get_info,
    spmla_handle_create,
    spmla_handle_destroy,
    spmla_handle_backend_name,
    spmla_handle_device,
    spmla_device_malloc,
    spmla_device_free,
    spmla_memcpy,
    spmla_memset,
    spmla_stream_synchronize,
    spmla_event_create,
    spmla_event_destroy,
    spmla_event_record,
    spmla_event_elapsed_ms,
    spmla_sparse_attention_get_workspace_size,
    spmla_sparse_attention_plan,
    spmla_sparse_attention_run,
    spmla_indices_to_slots_run,
    spmla_window_indices_run,
    spmla_indexer_logits_get_workspace_size,
    spmla_indexer_logits_run,
    spmla_indexer_logits_paged_get_workspace_size,
    spmla_indexer_logits_paged_run,
    spmla_topk_per_row_get_workspace_size,
    spmla_topk_per_row_run,
    spmla_kv_cache_store_run,
    spmla_kv_cache_gather_run,
    spmla_handle_set_option,
    spmla_handle_get_option,
};

SPMLA_API const spmla_api_t *spmla_get_api(uint32_t abi_major) {
  if (abi_major != SPMLA_ABI_VERSION_MAJOR) {
    try {
      set_error("spmla_get_api: abi_major: expected " + std::to_string(SPMLA_ABI_VERSION_MAJOR) +
                " (this libspmla is ABI " + std::to_string(SPMLA_ABI_VERSION_MAJOR) + "." +
                std::to_string(SPMLA_ABI_VERSION_MINOR) + "), got " + std::to_string(abi_major));
    } catch (...) {
    }
    return nullptr;
  }
  return &k_api;
}

}  // extern "C"
