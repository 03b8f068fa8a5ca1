/*
 * spmla.hpp — header-only C++17 wrapper of the spmla C ABI (spmla.h).
 *
 * RAII owners for handles, device buffers, workspaces, sparse-attention plans and
 * events; failures become spmla::Error (a std::runtime_error carrying the status and
 * the library's message). Exceptions exist only on this side: every C call returns a
 * status, this header turns it into a throw, and nothing is ever thrown through the
 * C ABI. Destructors never throw.
 *
 * The argument structs are the C ones (spmla_*_args_t, initialise them with their
 * *_INIT macros); this header adds helpers to build tensors and caches.
 *
 *   spmla::Handle h("cpu");
 *   spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
 *   ... fill a ...
 *   spmla::Plan plan(h, a);        // workspace query + allocation + plan
 *   for (int layer = 0; layer < 61; ++layer) plan.run(a);
 *
 * Threading follows spmla.h: a Handle (and what it owns) is used by one thread at a
 * time; different handles may be used concurrently.
 */
#ifndef SPMLA_HPP
#define SPMLA_HPP

#include <spmla.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace spmla {

/** A failed spmla call: the status and the message naming the argument at fault. */
class Error : public std::runtime_error {
 public:
  Error(spmla_status_t status, const std::string &message)
      : std::runtime_error(std::string(spmla_status_string(status)) +
                           (message.empty() ? std::string() : ": " + message)),
        status_(status),
        message_(message) {}
  /** The C status. */
  spmla_status_t status() const noexcept { return status_; }
  /** The library's message (without the status name). */
  const std::string &message() const noexcept { return message_; }

 private:
  spmla_status_t status_;
  std::string message_;
};

/** Throws spmla::Error with this thread's last message unless `status` is success. */
inline void check(spmla_status_t status) {
  if (status != SPMLA_STATUS_SUCCESS) throw Error(status, spmla_last_error_message());
}

/** Library version ("MAJOR.MINOR.PATCH") and ABI major of the loaded library. */
inline std::string version_string() { return spmla_version_string(); }
inline unsigned abi_major() { return static_cast<unsigned>(spmla_abi_version() >> 16); }

/** The dtype of a C++ element type (float, int32_t, int64_t, uint8_t). */
template <typename T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr spmla_dtype_t value = SPMLA_DTYPE_FP32;
};
template <>
struct dtype_of<int32_t> {
  static constexpr spmla_dtype_t value = SPMLA_DTYPE_INT32;
};
template <>
struct dtype_of<int64_t> {
  static constexpr spmla_dtype_t value = SPMLA_DTYPE_INT64;
};
template <>
struct dtype_of<uint8_t> {
  static constexpr spmla_dtype_t value = SPMLA_DTYPE_UINT8;
};

/** A contiguous (row-major) tensor descriptor over `data`. */
inline spmla_tensor_t tensor(const void *data, spmla_dtype_t dtype,
                             std::initializer_list<int64_t> shape) {
  spmla_tensor_t t = SPMLA_TENSOR_INIT;
  std::vector<int64_t> s(shape);
  check(spmla_tensor_make_contiguous(&t, const_cast<void *>(data), dtype,
                                     static_cast<int32_t>(s.size()), s.data()));
  return t;
}

/** A contiguous tensor whose dtype comes from the element type. */
template <typename T>
spmla_tensor_t tensor(const T *data, std::initializer_list<int64_t> shape) {
  return tensor(static_cast<const void *>(data), dtype_of<T>::value, shape);
}

/** A strided tensor descriptor (strides in elements). */
inline spmla_tensor_t tensor(const void *data, spmla_dtype_t dtype,
                             std::initializer_list<int64_t> shape,
                             std::initializer_list<int64_t> strides) {
  if (shape.size() != strides.size() || shape.size() > SPMLA_MAX_DIMS)
    throw Error(SPMLA_STATUS_INVALID_ARGUMENT,
                "spmla.hpp: tensor(): shape and strides must have the same rank <= 8");
  spmla_tensor_t t = tensor(data, dtype, shape);
  int i = 0;
  for (int64_t st : strides) t.strides[i++] = st;
  return t;
}

/** A KV-cache descriptor: `num_pages` pages of `block_size` tokens at `data`. */
inline spmla_kv_cache_t kv_cache(void *data, spmla_kv_layout_t layout, spmla_fp8_flavor_t flavor,
                                 int32_t head_dim, int64_t num_pages, int32_t block_size,
                                 int64_t page_stride_bytes = 0, float scale = 1.0f) {
  spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
  c.data = data;
  c.layout = layout;
  c.fp8_flavor = flavor;
  c.head_dim = head_dim;
  c.num_pages = num_pages;
  c.block_size = block_size;
  c.page_stride_bytes = page_stride_bytes;
  c.scale = scale;
  return c;
}

/** Total bytes a cache descriptor spans (validates it). */
inline size_t kv_cache_size_bytes(const spmla_kv_cache_t &c) {
  size_t n = 0;
  check(spmla_kv_cache_size_bytes(&c, &n));
  return n;
}

/** Bytes of one packed page of a cache descriptor (validates it). */
inline size_t kv_cache_page_bytes(const spmla_kv_cache_t &c) {
  size_t n = 0;
  check(spmla_kv_cache_page_bytes(&c, &n));
  return n;
}

class Handle;

/** Device memory of a handle (host memory on "cpu"), freed on destruction. Move-only. */
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(spmla_handle_t h, size_t bytes) : h_(h), bytes_(bytes) {
    check(spmla_device_malloc(h_, bytes_, &ptr_));
  }
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer &&o) noexcept
      : h_(std::exchange(o.h_, nullptr)),
        ptr_(std::exchange(o.ptr_, nullptr)),
        bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer &operator=(DeviceBuffer &&o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;

  void *data() const noexcept { return ptr_; }
  size_t size() const noexcept { return bytes_; }

  /** Copies host bytes in at `offset` and waits for the copy. */
  void copy_from_host(const void *src, size_t bytes, size_t offset = 0) {
    range(offset, bytes);
    check(spmla_memcpy(h_, static_cast<char *>(ptr_) + offset, src, bytes,
                       SPMLA_MEMCPY_HOST_TO_DEVICE, nullptr));
    check(spmla_stream_synchronize(h_, nullptr));
  }
  /** Copies bytes at `offset` out to host memory and waits for the copy. */
  void copy_to_host(void *dst, size_t bytes, size_t offset = 0) const {
    range(offset, bytes);
    check(spmla_memcpy(h_, dst, static_cast<const char *>(ptr_) + offset, bytes,
                       SPMLA_MEMCPY_DEVICE_TO_HOST, nullptr));
    check(spmla_stream_synchronize(h_, nullptr));
  }

 private:
  void range(size_t offset, size_t bytes) const {
    if (offset > bytes_ || bytes > bytes_ - offset)
      throw Error(SPMLA_STATUS_INVALID_ARGUMENT,
                  "spmla.hpp: copy of " + std::to_string(bytes) + " bytes at offset " +
                      std::to_string(offset) + " exceeds the " + std::to_string(bytes_) +
                      "-byte buffer");
  }
  void reset() noexcept {
    if (ptr_) spmla_device_free(h_, ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  spmla_handle_t h_ = nullptr;
  void *ptr_ = nullptr;
  size_t bytes_ = 0;
};

/** Scratch memory that grows to what each call queries and is kept for the next. */
class Workspace {
 public:
  explicit Workspace(spmla_handle_t h) : h_(h) {}
  /** Makes sure at least `bytes` are held. */
  void reserve(size_t bytes) {
    if (bytes > buf_.size()) {
      buf_ = DeviceBuffer();
      buf_ = DeviceBuffer(h_, bytes);
    }
  }
  void *data() const noexcept { return buf_.data(); }
  size_t size() const noexcept { return buf_.size(); }
  spmla_handle_t handle() const noexcept { return h_; }

 private:
  spmla_handle_t h_;
  DeviceBuffer buf_;
};

/** A timing event, destroyed with it. Move-only. */
class Event {
 public:
  explicit Event(spmla_handle_t h) : h_(h) { check(spmla_event_create(h_, &e_)); }
  ~Event() {
    if (e_) spmla_event_destroy(h_, e_);
  }
  Event(Event &&o) noexcept : h_(o.h_), e_(std::exchange(o.e_, nullptr)) {}
  Event &operator=(Event &&o) noexcept {
    if (this != &o) {
      if (e_) spmla_event_destroy(h_, e_);
      h_ = o.h_;
      e_ = std::exchange(o.e_, nullptr);
    }
    return *this;
  }
  Event(const Event &) = delete;
  Event &operator=(const Event &) = delete;

  void record(void *stream = nullptr) { check(spmla_event_record(h_, e_, stream)); }
  /** Milliseconds from this event to `end` (waits for `end`). */
  float elapsed_ms(const Event &end) const {
    float ms = 0.0f;
    check(spmla_event_elapsed_ms(h_, e_, end.e_, &ms));
    return ms;
  }
  spmla_event_t get() const noexcept { return e_; }

 private:
  spmla_handle_t h_;
  spmla_event_t e_ = nullptr;
};

/** A handle on one device of one backend ("cpu", "cuda", "hip", a plugin, or "auto").
 *  Move-only; used by one thread at a time. */
class Handle {
 public:
  explicit Handle(const char *backend = "auto", int32_t device = 0) {
    check(spmla_handle_create(backend, device, &h_));
  }
  ~Handle() {
    if (h_) spmla_handle_destroy(h_);
  }
  Handle(Handle &&o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  Handle &operator=(Handle &&o) noexcept {
    if (this != &o) {
      if (h_) spmla_handle_destroy(h_);
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  Handle(const Handle &) = delete;
  Handle &operator=(const Handle &) = delete;

  spmla_handle_t get() const noexcept { return h_; }
  std::string backend_name() const { return spmla_handle_backend_name(h_); }
  int32_t device() const {
    int32_t d = 0;
    check(spmla_handle_device(h_, &d));
    return d;
  }

  DeviceBuffer alloc(size_t bytes) const { return DeviceBuffer(h_, bytes); }
  Workspace workspace() const { return Workspace(h_); }
  Event event() const { return Event(h_); }
  void synchronize(void *stream = nullptr) const { check(spmla_stream_synchronize(h_, stream)); }

  // --- operations ----------------------------------------------------------------------
  size_t sparse_attention_workspace_size(const spmla_sparse_attention_args_t &a) const {
    size_t n = 0;
    check(spmla_sparse_attention_get_workspace_size(h_, &a, &n));
    return n;
  }
  void indices_to_slots(const spmla_indices_to_slots_args_t &a, void *stream = nullptr) const {
    check(spmla_indices_to_slots_run(h_, &a, stream));
  }
  void window_indices(const spmla_window_indices_args_t &a, void *stream = nullptr) const {
    check(spmla_window_indices_run(h_, &a, stream));
  }
  void indexer_logits(const spmla_indexer_logits_args_t &a, Workspace &ws,
                      void *stream = nullptr) const {
    same(ws);
    size_t n = 0;
    check(spmla_indexer_logits_get_workspace_size(h_, &a, &n));
    ws.reserve(n);
    check(spmla_indexer_logits_run(h_, &a, ws.data(), ws.size(), stream));
  }
  void indexer_logits_paged(const spmla_indexer_logits_paged_args_t &a, Workspace &ws,
                            void *stream = nullptr) const {
    same(ws);
    size_t n = 0;
    check(spmla_indexer_logits_paged_get_workspace_size(h_, &a, &n));
    ws.reserve(n);
    check(spmla_indexer_logits_paged_run(h_, &a, ws.data(), ws.size(), stream));
  }
  void topk_per_row(const spmla_topk_per_row_args_t &a, Workspace &ws,
                    void *stream = nullptr) const {
    same(ws);
    size_t n = 0;
    check(spmla_topk_per_row_get_workspace_size(h_, &a, &n));
    ws.reserve(n);
    check(spmla_topk_per_row_run(h_, &a, ws.data(), ws.size(), stream));
  }
  void kv_cache_store(const spmla_kv_cache_store_args_t &a, void *stream = nullptr) const {
    check(spmla_kv_cache_store_run(h_, &a, stream));
  }
  void kv_cache_gather(const spmla_kv_cache_gather_args_t &a, void *stream = nullptr) const {
    check(spmla_kv_cache_gather_run(h_, &a, stream));
  }

 private:
  void same(const Workspace &ws) const {
    if (ws.handle() != h_)
      throw Error(SPMLA_STATUS_INVALID_ARGUMENT,
                  "spmla.hpp: the workspace belongs to another handle");
  }
  spmla_handle_t h_ = nullptr;
};

/** A sparse-attention plan: its workspace (freed on destruction) and the schedule the
 *  plan step wrote there. Valid for runs with the shapes, lengths tensors and lengths
 *  contents it was planned with; call replan() when they change. Move-only. */
class Plan {
 public:
  Plan(const Handle &h, const spmla_sparse_attention_args_t &a, void *stream = nullptr)
      : h_(h.get()), ws_(h.get()) {
    replan(a, stream);
  }
  /** Plans again (growing the workspace if needed). */
  void replan(const spmla_sparse_attention_args_t &a, void *stream = nullptr) {
    size_t n = 0;
    check(spmla_sparse_attention_get_workspace_size(h_, &a, &n));
    ws_.reserve(n);
    check(spmla_sparse_attention_plan(h_, &a, ws_.data(), ws_.size(), stream));
  }
  /** Runs attention with the planned schedule. */
  void run(const spmla_sparse_attention_args_t &a, void *stream = nullptr) const {
    check(spmla_sparse_attention_run(h_, &a, ws_.data(), ws_.size(), stream));
  }
  size_t workspace_bytes() const noexcept { return ws_.size(); }

 private:
  spmla_handle_t h_;
  Workspace ws_;
};

}  // namespace spmla

#endif /* SPMLA_HPP */
