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
 *
 * Lifetimes: the Handle is move-only (one user-facing owner), but the C handle under it is
 * shared with every DeviceBuffer, Workspace, Event and Plan made through it and destroyed
 * after the last of them, so those may outlive the Handle. Their constructors that take a
 * raw spmla_handle_t borrow it instead (the caller keeps it alive). A moved-from object of
 * this header throws spmla::Error (SPMLA_STATUS_INVALID_ARGUMENT) when used.
 */
#ifndef SPMLA_HPP
#define SPMLA_HPP

#include <spmla.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
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

/** A KV-cache descriptor: `num_pages` pages of `block_size` tokens at `data`. The V41 layouts
 *  need an `arrangement` (PER_TOKEN or PAGE_BLOCKED; see kv_cache_v41); DEFAULT for the others. */
inline spmla_kv_cache_t kv_cache(void *data, spmla_kv_layout_t layout, spmla_fp8_flavor_t flavor,
                                 int32_t head_dim, int64_t num_pages, int32_t block_size,
                                 int64_t page_stride_bytes = 0, float scale = 1.0f,
                                 spmla_kv_arrangement_t arrangement = SPMLA_KV_ARRANGEMENT_DEFAULT) {
  spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
  c.data = data;
  c.layout = layout;
  c.fp8_flavor = flavor;
  c.head_dim = head_dim;
  c.num_pages = num_pages;
  c.block_size = block_size;
  c.page_stride_bytes = page_stride_bytes;
  c.scale = scale;
  c.arrangement = arrangement;
  return c;
}

/** (ABI 1.2) A DeepSeek-V4.1 cache descriptor: `layout` SPMLA_KV_LAYOUT_V41_FP8 or _V41_FP4
 *  (D 512) in `arrangement` (PER_TOKEN: FlashMLA from 2026-09-30; PAGE_BLOCKED: 2026-09-10). */
inline spmla_kv_cache_t kv_cache_v41(void *data, spmla_kv_layout_t layout,
                                     spmla_kv_arrangement_t arrangement, int64_t num_pages,
                                     int32_t block_size, int64_t page_stride_bytes = 0,
                                     spmla_fp8_flavor_t flavor = SPMLA_FP8_E4M3FN) {
  return kv_cache(data, layout, flavor, 512, num_pages, block_size, page_stride_bytes, 1.0f,
                  arrangement);
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
class Plan;

namespace detail {
/** Shared ownership of a C handle: the Handle and every object made through it hold one, and
 *  the last of them to go calls spmla_handle_destroy. */
using handle_ref = std::shared_ptr<spmla_handle_s>;

inline handle_ref adopt_handle(spmla_handle_t h) {
  // If the control block cannot be allocated, shared_ptr calls the deleter before it throws
  // std::bad_alloc, so the C handle is not leaked.
  return handle_ref(h, [](spmla_handle_t p) noexcept { spmla_handle_destroy(p); });
}

/** The error a moved-from object gives when it is used ("fn: arg: expected ..., got ..."). */
[[noreturn]] inline void throw_moved_from(const char *fn, const char *arg, const char *type) {
  throw Error(SPMLA_STATUS_INVALID_ARGUMENT,
              std::string(fn) + ": " + arg + ": expected a live " + type + ", got a moved-from (or empty) " +
                  type);
}
}  // namespace detail

/** Device memory of a handle (host memory on "cpu"), freed on destruction. Move-only.
 *  One made by Handle::alloc keeps the C handle alive, so it may outlive its Handle. */
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  /** Borrows `h` (not owned): the caller keeps that C handle alive until this buffer is
   *  destroyed. Prefer Handle::alloc, which shares ownership instead. */
  DeviceBuffer(spmla_handle_t h, size_t bytes) : h_(h), bytes_(bytes) {
    check(spmla_device_malloc(h_, bytes_, &ptr_));
  }
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer &&o) noexcept
      : owner_(std::move(o.owner_)),
        h_(std::exchange(o.h_, nullptr)),
        ptr_(std::exchange(o.ptr_, nullptr)),
        bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer &operator=(DeviceBuffer &&o) noexcept {
    if (this != &o) {
      reset();
      owner_ = std::move(o.owner_);
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
    range("spmla::DeviceBuffer::copy_from_host", offset, bytes);
    check(spmla_memcpy(h_, static_cast<char *>(ptr_) + offset, src, bytes,
                       SPMLA_MEMCPY_HOST_TO_DEVICE, nullptr));
    check(spmla_stream_synchronize(h_, nullptr));
  }
  /** Copies bytes at `offset` out to host memory and waits for the copy. */
  void copy_to_host(void *dst, size_t bytes, size_t offset = 0) const {
    range("spmla::DeviceBuffer::copy_to_host", offset, bytes);
    check(spmla_memcpy(h_, dst, static_cast<const char *>(ptr_) + offset, bytes,
                       SPMLA_MEMCPY_DEVICE_TO_HOST, nullptr));
    check(spmla_stream_synchronize(h_, nullptr));
  }

 private:
  friend class Handle;
  friend class Workspace;
  DeviceBuffer(detail::handle_ref owner, size_t bytes)
      : owner_(std::move(owner)), h_(owner_.get()), bytes_(bytes) {
    check(spmla_device_malloc(h_, bytes_, &ptr_));
  }
  void range(const char *fn, size_t offset, size_t bytes) const {
    if (!h_) detail::throw_moved_from(fn, "buffer", "spmla::DeviceBuffer");
    if (offset > bytes_ || bytes > bytes_ - offset)
      throw Error(SPMLA_STATUS_INVALID_ARGUMENT,
                  std::string(fn) + ": bytes: expected at most " +
                      std::to_string(offset > bytes_ ? 0 : bytes_ - offset) + " (a copy of " +
                      std::to_string(bytes) + " bytes at offset " + std::to_string(offset) +
                      " must fit the " + std::to_string(bytes_) + "-byte buffer), got " +
                      std::to_string(bytes));
  }
  void reset() noexcept {
    if (ptr_) spmla_device_free(h_, ptr_);  // before the C handle may go with owner_
    ptr_ = nullptr;
    bytes_ = 0;
    h_ = nullptr;
    owner_.reset();
  }
  detail::handle_ref owner_;  // empty for a borrowing buffer
  spmla_handle_t h_ = nullptr;
  void *ptr_ = nullptr;
  size_t bytes_ = 0;
};

/** Scratch memory that grows to what each call queries and is kept for the next. Move-only.
 *  One made by Handle::workspace keeps the C handle alive, so it may outlive its Handle. */
class Workspace {
 public:
  /** Borrows `h` (not owned): the caller keeps that C handle alive until this workspace is
   *  destroyed. Prefer Handle::workspace, which shares ownership instead. */
  explicit Workspace(spmla_handle_t h) : h_(h) {}
  Workspace(Workspace &&o) noexcept
      : owner_(std::move(o.owner_)), h_(std::exchange(o.h_, nullptr)), buf_(std::move(o.buf_)) {}
  Workspace &operator=(Workspace &&o) noexcept {
    if (this != &o) {
      buf_ = std::move(o.buf_);
      h_ = std::exchange(o.h_, nullptr);
      owner_ = std::move(o.owner_);
    }
    return *this;
  }
  Workspace(const Workspace &) = delete;
  Workspace &operator=(const Workspace &) = delete;

  /** Makes sure at least `bytes` are held. */
  void reserve(size_t bytes) { reserve("spmla::Workspace::reserve", bytes); }
  void *data() const noexcept { return buf_.data(); }
  size_t size() const noexcept { return buf_.size(); }
  /** The C handle (NULL once moved from). */
  spmla_handle_t handle() const noexcept { return h_; }

 private:
  friend class Handle;
  friend class Plan;
  explicit Workspace(detail::handle_ref owner) : owner_(std::move(owner)), h_(owner_.get()) {}
  void reserve(const char *fn, size_t bytes) {
    if (!h_) detail::throw_moved_from(fn, "workspace", "spmla::Workspace");
    if (bytes > buf_.size()) {
      buf_ = DeviceBuffer();
      buf_ = owner_ ? DeviceBuffer(owner_, bytes) : DeviceBuffer(h_, bytes);
    }
  }
  detail::handle_ref owner_;  // empty for a borrowing workspace
  spmla_handle_t h_ = nullptr;
  DeviceBuffer buf_;
};

/** A timing event, destroyed with it. Move-only.
 *  One made by Handle::event keeps the C handle alive, so it may outlive its Handle. */
class Event {
 public:
  /** Borrows `h` (not owned): the caller keeps that C handle alive until this event is
   *  destroyed. Prefer Handle::event, which shares ownership instead. */
  explicit Event(spmla_handle_t h) : h_(h) { check(spmla_event_create(h_, &e_)); }
  ~Event() { reset(); }
  Event(Event &&o) noexcept
      : owner_(std::move(o.owner_)), h_(std::exchange(o.h_, nullptr)), e_(std::exchange(o.e_, nullptr)) {}
  Event &operator=(Event &&o) noexcept {
    if (this != &o) {
      reset();
      owner_ = std::move(o.owner_);
      h_ = std::exchange(o.h_, nullptr);
      e_ = std::exchange(o.e_, nullptr);
    }
    return *this;
  }
  Event(const Event &) = delete;
  Event &operator=(const Event &) = delete;

  void record(void *stream = nullptr) {
    live("spmla::Event::record", "event");
    check(spmla_event_record(h_, e_, stream));
  }
  /** Milliseconds from this event to `end` (waits for `end`). */
  float elapsed_ms(const Event &end) const {
    static const char fn[] = "spmla::Event::elapsed_ms";
    live(fn, "event");
    end.live(fn, "end");
    if (end.h_ != h_)
      throw Error(SPMLA_STATUS_INVALID_ARGUMENT,
                  std::string(fn) + ": end: expected an event of this event's handle, got one of another handle");
    float ms = 0.0f;
    check(spmla_event_elapsed_ms(h_, e_, end.e_, &ms));
    return ms;
  }
  spmla_event_t get() const noexcept { return e_; }

 private:
  friend class Handle;
  explicit Event(detail::handle_ref owner) : owner_(std::move(owner)), h_(owner_.get()) {
    check(spmla_event_create(h_, &e_));
  }
  void live(const char *fn, const char *arg) const {
    if (!e_) detail::throw_moved_from(fn, arg, "spmla::Event");
  }
  void reset() noexcept {
    if (e_) spmla_event_destroy(h_, e_);  // before the C handle may go with owner_
    e_ = nullptr;
    h_ = nullptr;
    owner_.reset();
  }
  detail::handle_ref owner_;  // empty for a borrowing event
  spmla_handle_t h_ = nullptr;
  spmla_event_t e_ = nullptr;
};

/** A handle on one device of one backend ("cpu", "cuda", "hip", a plugin, or "auto").
 *  Move-only; used by one thread at a time.
 *
 *  Ownership: the C handle is shared by the Handle and every DeviceBuffer, Workspace, Event
 *  and Plan made through it, and spmla_handle_destroy runs when the last of them is
 *  destroyed; so any of them may outlive the Handle (and stays usable). The threading rule
 *  covers them all: the C handle and everything made through it are used by one thread at a
 *  time. A moved-from Handle (and any other moved-from object of this header) throws
 *  spmla::Error (SPMLA_STATUS_INVALID_ARGUMENT) when used; get() then returns NULL. */
class Handle {
 public:
  explicit Handle(const char *backend = "auto", int32_t device = 0) {
    spmla_handle_t h = nullptr;
    check(spmla_handle_create(backend, device, &h));
    ref_ = detail::adopt_handle(h);
  }
  Handle(Handle &&o) noexcept = default;             // leaves o empty (shared_ptr's move)
  Handle &operator=(Handle &&o) noexcept = default;  // the old C handle lives on in its objects
  Handle(const Handle &) = delete;
  Handle &operator=(const Handle &) = delete;

  /** The C handle (NULL once moved from). */
  spmla_handle_t get() const noexcept { return ref_.get(); }
  std::string backend_name() const {
    const char *n = spmla_handle_backend_name(raw("spmla::Handle::backend_name"));
    return n ? n : "";
  }
  int32_t device() const {
    int32_t d = 0;
    check(spmla_handle_device(raw("spmla::Handle::device"), &d));
    return d;
  }

  /** Handle options (ABI 1.3, spmla_handle_set_option): for the handle's later calls; a Plan
   *  made before keeps its schedule (replan it). */
  void set_option(spmla_option_t option, int64_t value) {
    check(spmla_handle_set_option(raw("spmla::Handle::set_option"), option, value));
  }
  int64_t option(spmla_option_t option) const {
    int64_t v = 0;
    check(spmla_handle_get_option(raw("spmla::Handle::option"), option, &v));
    return v;
  }
  /** SPMLA_OPTION_BATCH_INVARIANT: a token's results do not depend on the other tokens of a call. */
  void set_batch_invariant(bool on) { set_option(SPMLA_OPTION_BATCH_INVARIANT, on ? 1 : 0); }
  bool batch_invariant() const { return option(SPMLA_OPTION_BATCH_INVARIANT) != 0; }

  DeviceBuffer alloc(size_t bytes) const { return DeviceBuffer(ref("spmla::Handle::alloc"), bytes); }
  Workspace workspace() const { return Workspace(ref("spmla::Handle::workspace")); }
  Event event() const { return Event(ref("spmla::Handle::event")); }
  void synchronize(void *stream = nullptr) const {
    check(spmla_stream_synchronize(raw("spmla::Handle::synchronize"), stream));
  }

  // --- operations ----------------------------------------------------------------------
  size_t sparse_attention_workspace_size(const spmla_sparse_attention_args_t &a) const {
    size_t n = 0;
    check(spmla_sparse_attention_get_workspace_size(
        raw("spmla::Handle::sparse_attention_workspace_size"), &a, &n));
    return n;
  }
  void indices_to_slots(const spmla_indices_to_slots_args_t &a, void *stream = nullptr) const {
    check(spmla_indices_to_slots_run(raw("spmla::Handle::indices_to_slots"), &a, stream));
  }
  void window_indices(const spmla_window_indices_args_t &a, void *stream = nullptr) const {
    check(spmla_window_indices_run(raw("spmla::Handle::window_indices"), &a, stream));
  }
  void indexer_logits(const spmla_indexer_logits_args_t &a, Workspace &ws,
                      void *stream = nullptr) const {
    static const char fn[] = "spmla::Handle::indexer_logits";
    spmla_handle_t h = same(fn, ws);
    size_t n = 0;
    check(spmla_indexer_logits_get_workspace_size(h, &a, &n));
    ws.reserve(fn, n);
    check(spmla_indexer_logits_run(h, &a, ws.data(), ws.size(), stream));
  }
  void indexer_logits_paged(const spmla_indexer_logits_paged_args_t &a, Workspace &ws,
                            void *stream = nullptr) const {
    static const char fn[] = "spmla::Handle::indexer_logits_paged";
    spmla_handle_t h = same(fn, ws);
    size_t n = 0;
    check(spmla_indexer_logits_paged_get_workspace_size(h, &a, &n));
    ws.reserve(fn, n);
    check(spmla_indexer_logits_paged_run(h, &a, ws.data(), ws.size(), stream));
  }
  void topk_per_row(const spmla_topk_per_row_args_t &a, Workspace &ws,
                    void *stream = nullptr) const {
    static const char fn[] = "spmla::Handle::topk_per_row";
    spmla_handle_t h = same(fn, ws);
    size_t n = 0;
    check(spmla_topk_per_row_get_workspace_size(h, &a, &n));
    ws.reserve(fn, n);
    check(spmla_topk_per_row_run(h, &a, ws.data(), ws.size(), stream));
  }
  void kv_cache_store(const spmla_kv_cache_store_args_t &a, void *stream = nullptr) const {
    check(spmla_kv_cache_store_run(raw("spmla::Handle::kv_cache_store"), &a, stream));
  }
  void kv_cache_gather(const spmla_kv_cache_gather_args_t &a, void *stream = nullptr) const {
    check(spmla_kv_cache_gather_run(raw("spmla::Handle::kv_cache_gather"), &a, stream));
  }

 private:
  friend class Plan;
  // The C handle, or spmla::Error naming `fn` if this Handle was moved from.
  spmla_handle_t raw(const char *fn) const {
    if (!ref_) detail::throw_moved_from(fn, "handle", "spmla::Handle");
    return ref_.get();
  }
  const detail::handle_ref &ref(const char *fn) const {
    raw(fn);
    return ref_;
  }
  spmla_handle_t same(const char *fn, const Workspace &ws) const {
    spmla_handle_t h = raw(fn);
    if (!ws.handle()) detail::throw_moved_from(fn, "workspace", "spmla::Workspace");
    if (ws.handle() != h)
      throw Error(SPMLA_STATUS_INVALID_ARGUMENT,
                  std::string(fn) +
                      ": workspace: expected a workspace of this handle, got one of another handle");
    return h;
  }
  detail::handle_ref ref_;  // empty once moved from
};

/** A sparse-attention plan: its workspace (freed on destruction) and the schedule the
 *  plan step wrote there. Valid for runs with the shapes, lengths tensors and lengths
 *  contents it was planned with; call replan() when they change. Move-only; keeps the C
 *  handle alive, so it may outlive its Handle. */
class Plan {
 public:
  Plan(const Handle &h, const spmla_sparse_attention_args_t &a, void *stream = nullptr)
      : ws_(h.ref("spmla::Plan")) {
    replan(a, stream);
  }
  Plan(Plan &&) noexcept = default;  // leaves the source's workspace moved from
  Plan &operator=(Plan &&) noexcept = default;
  Plan(const Plan &) = delete;
  Plan &operator=(const Plan &) = delete;

  /** Plans again (growing the workspace if needed). */
  void replan(const spmla_sparse_attention_args_t &a, void *stream = nullptr) {
    static const char fn[] = "spmla::Plan::replan";
    spmla_handle_t h = live(fn);
    size_t n = 0;
    check(spmla_sparse_attention_get_workspace_size(h, &a, &n));
    ws_.reserve(fn, n);
    check(spmla_sparse_attention_plan(h, &a, ws_.data(), ws_.size(), stream));
  }
  /** Runs attention with the planned schedule. */
  void run(const spmla_sparse_attention_args_t &a, void *stream = nullptr) const {
    check(spmla_sparse_attention_run(live("spmla::Plan::run"), &a, ws_.data(), ws_.size(), stream));
  }
  size_t workspace_bytes() const noexcept { return ws_.size(); }

 private:
  spmla_handle_t live(const char *fn) const {
    if (!ws_.handle()) detail::throw_moved_from(fn, "plan", "spmla::Plan");
    return ws_.handle();
  }
  Workspace ws_;
};

}  // namespace spmla

#endif /* SPMLA_HPP */
