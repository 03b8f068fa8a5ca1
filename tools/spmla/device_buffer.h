// device_buffer.h — memory, tensors and timing on any backend through the public helpers
// (spmla_device_malloc / spmla_memcpy / spmla_event_*), so the CLI drives cpu, cuda and hip
// handles alike without linking a vendor runtime.
#pragma once
#include <spmla.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <vector>

#include "check.h"

namespace spmla_cli {

// A handle that destroys itself.
class Handle {
 public:
  Handle(const char *backend, int32_t device) {
    check(spmla_handle_create(backend, device, &h_), "spmla_handle_create");
  }
  ~Handle() { spmla_handle_destroy(h_); }
  Handle(const Handle &) = delete;
  Handle &operator=(const Handle &) = delete;
  spmla_handle_t get() const { return h_; }
  operator spmla_handle_t() const { return h_; }
  const char *backend() const { return spmla_handle_backend_name(h_); }
  int32_t device() const {
    int32_t d = 0;
    check(spmla_handle_device(h_, &d), "spmla_handle_device");
    return d;
  }
  void sync() const { check(spmla_stream_synchronize(h_, nullptr), "spmla_stream_synchronize"); }

 private:
  spmla_handle_t h_ = nullptr;
};

// Device memory owned by one handle. Moves, never copies.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(spmla_handle_t h, size_t bytes) : h_(h), bytes_(bytes) {
    if (bytes) check(spmla_device_malloc(h, bytes, &ptr_), "spmla_device_malloc");
  }
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer &&o) noexcept { *this = std::move(o); }
  DeviceBuffer &operator=(DeviceBuffer &&o) noexcept {
    if (this != &o) {
      reset();
      std::swap(h_, o.h_);
      std::swap(ptr_, o.ptr_);
      std::swap(bytes_, o.bytes_);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;

  void reset() {
    if (ptr_) spmla_device_free(h_, ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void *data() const { return ptr_; }
  size_t bytes() const { return bytes_; }

  void upload(const void *src, size_t n, size_t offset = 0) {
    if (n) check(spmla_memcpy(h_, static_cast<char *>(ptr_) + offset, src, n,
                              SPMLA_MEMCPY_HOST_TO_DEVICE, nullptr), "spmla_memcpy (host to device)");
  }
  void download(void *dst, size_t n, size_t offset = 0) const {
    if (n) check(spmla_memcpy(h_, dst, static_cast<const char *>(ptr_) + offset, n,
                              SPMLA_MEMCPY_DEVICE_TO_HOST, nullptr), "spmla_memcpy (device to host)");
  }
  void fill(int byte) {
    if (bytes_) check(spmla_memset(h_, ptr_, byte, bytes_, nullptr), "spmla_memset");
  }
  template <class T>
  void upload(const std::vector<T> &v) { upload(v.data(), v.size() * sizeof(T)); }
  template <class T>
  std::vector<T> download_vec(size_t count, size_t offset_bytes = 0) const {
    std::vector<T> v(count);
    download(v.data(), count * sizeof(T), offset_bytes);
    return v;
  }

 private:
  spmla_handle_t h_ = nullptr;
  void *ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A device buffer together with the tensor descriptor that views it (contiguous).
struct DeviceTensor {
  DeviceBuffer buf;
  spmla_tensor_t t = SPMLA_TENSOR_INIT;

  DeviceTensor() = default;
  DeviceTensor(spmla_handle_t h, spmla_dtype_t dtype, std::initializer_list<int64_t> shape)
      : DeviceTensor(h, dtype, std::vector<int64_t>(shape)) {}
  DeviceTensor(spmla_handle_t h, spmla_dtype_t dtype, const std::vector<int64_t> &shape) {
    size_t n = 1;
    for (int64_t s : shape) n *= static_cast<size_t>(s);
    buf = DeviceBuffer(h, n * spmla_dtype_size(dtype));
    check(spmla_tensor_make_contiguous(&t, buf.data(), dtype, static_cast<int32_t>(shape.size()),
                                       shape.data()),
          "spmla_tensor_make_contiguous");
  }
  size_t numel() const {
    size_t n = 1;
    for (int i = 0; i < t.ndim; ++i) n *= static_cast<size_t>(t.shape[i]);
    return n;
  }
  const spmla_tensor_t *desc() const { return &t; }
  template <class T>
  void upload(const std::vector<T> &v) { buf.upload(v.data(), v.size() * sizeof(T)); }
  template <class T>
  std::vector<T> download() const { return buf.template download_vec<T>(buf.bytes() / sizeof(T)); }
};

// Events on the default stream; elapsed() waits for the end event.
class EventTimer {
 public:
  explicit EventTimer(spmla_handle_t h) : h_(h) {
    check(spmla_event_create(h, &start_), "spmla_event_create");
    check(spmla_event_create(h, &end_), "spmla_event_create");
  }
  ~EventTimer() {
    spmla_event_destroy(h_, start_);
    spmla_event_destroy(h_, end_);
  }
  EventTimer(const EventTimer &) = delete;
  EventTimer &operator=(const EventTimer &) = delete;
  void start() { check(spmla_event_record(h_, start_, nullptr), "spmla_event_record"); }
  void stop() { check(spmla_event_record(h_, end_, nullptr), "spmla_event_record"); }
  float elapsed_ms() {
    float ms = 0.f;
    check(spmla_event_elapsed_ms(h_, start_, end_, &ms), "spmla_event_elapsed_ms");
    return ms;
  }

 private:
  spmla_handle_t h_;
  spmla_event_t start_ = nullptr, end_ = nullptr;
};

}  // namespace spmla_cli
