// tensor_view.h — zero-copy views of Python arrays as spmla tensors and caches.
//
// A TensorView takes any object that speaks DLPack (__dlpack__ / __dlpack_device__) or the
// buffer protocol, keeps the exporter alive (the DLPack capsule or the Py_buffer) and fills an
// spmla_tensor_t that points at the same memory. Nothing is copied. Every malformed input
// raises spmla.InvalidArgumentError naming the argument; nothing here may crash.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>

#include "spmla.h"

namespace spmla_py {

namespace py = pybind11;

// Raises the spmla exception class for `status` (spmla._errors.error_class) with `message`.
[[noreturn]] void raise_status(int status, const std::string &message);
[[noreturn]] inline void raise_invalid(const std::string &message) {
  raise_status(SPMLA_STATUS_INVALID_ARGUMENT, message);
}

// dtype override meaning "any element type: only the bytes matter" (cache pages).
constexpr int kAnyDtype = -1;

class TensorView {
 public:
  // obj: the array; name: the argument name used in messages; dtype: spmla_dtype_t to read the
  // elements as (0 = the exported dtype; otherwise a raw integer view of the same element size
  // is reinterpreted); stream: the DLPack stream argument handed to a non-CPU producer
  // (None or int); writable: the call writes through this view.
  TensorView(py::handle obj, std::string name, int dtype, py::object stream, bool writable);
  // A view of a plain torch tensor (torch.Tensor or nn.Parameter, strided, on the CPU or a CUDA /
  // ROCm device) read from its own attributes (data_ptr, shape, stride, dtype): no DLPack export,
  // so no stream argument either; the caller uses it where DLPack's stream handshake would be a
  // no-op (the host, or torch's current stream). Returns nullptr for anything else (the caller
  // then takes the DLPack path, which gives the full messages).
  static std::unique_ptr<TensorView> from_torch(py::handle obj, std::string name, int dtype,
                                                bool writable);
  ~TensorView() = default;
  TensorView(const TensorView &) = delete;
  TensorView &operator=(const TensorView &) = delete;

  const spmla_tensor_t *tensor() const { return &t_; }
  const std::string &name() const { return name_; }
  int32_t device_type() const { return device_type_; }
  int32_t device_id() const { return device_id_; }
  bool readonly() const { return readonly_; }
  int64_t itemsize() const { return itemsize_; }
  const std::string &source_dtype() const { return source_dtype_; }
  int64_t numel() const;
  bool is_contiguous() const;  // C order, compact
  // Bytes from data to one past the last element; requires non-negative strides.
  int64_t span_bytes() const;
  py::tuple shape() const;
  py::tuple strides() const;
  uintptr_t data_ptr() const { return reinterpret_cast<uintptr_t>(t_.data); }
  // Reads the elements as `d` (the caller checked that the sizes match).
  void retag(spmla_dtype_t d) { t_.dtype = d; }
  // Views dimensions 0 and 1 as one ([b, s, ...] -> [b*s, ...]) when the strides allow it
  // without a copy; returns false (and changes nothing) otherwise.
  bool merge_leading() {
    if (t_.ndim < 2) return false;
    const int64_t n0 = t_.shape[0], n1 = t_.shape[1];
    int64_t stride;
    if (n1 == 1) stride = t_.strides[0];
    else if (n0 == 1 || t_.strides[0] == n1 * t_.strides[1]) stride = t_.strides[1];
    else return false;
    t_.shape[0] = n0 * n1;
    t_.strides[0] = stride;
    for (int i = 1; i + 1 < t_.ndim; ++i) {
      t_.shape[i] = t_.shape[i + 1];
      t_.strides[i] = t_.strides[i + 1];
    }
    t_.ndim -= 1;
    return true;
  }

 private:
  void from_dlpack(py::handle obj, py::object stream, bool writable);
  void from_buffer(py::handle obj, bool writable);
  explicit TensorView(std::string name) : name_(std::move(name)) {}
  void finish();  // size checks common to every source
  void set_dtype(int code_kind, int bits, int override_dtype);

  // Releases the Py_buffer also when the constructor throws half-way (members are destroyed
  // then, the destructor of the class is not run).
  struct BufferHolder {
    Py_buffer view{};
    bool held = false;
    BufferHolder() = default;
    BufferHolder(const BufferHolder &) = delete;
    BufferHolder &operator=(const BufferHolder &) = delete;
    ~BufferHolder() {
      if (held) PyBuffer_Release(&view);
    }
  };

  std::string name_;
  py::object keep_;  // capsule or buffer exporter
  BufferHolder buffer_holder_;
  Py_buffer &buffer_ = buffer_holder_.view;
  bool &has_buffer_ = buffer_holder_.held;
  spmla_tensor_t t_ = SPMLA_TENSOR_INIT;
  int32_t device_type_ = 1;
  int32_t device_id_ = 0;
  bool readonly_ = false;
  int64_t itemsize_ = 0;
  std::string source_dtype_;
  int override_ = 0;
};

// A KV cache: a TensorView over the page memory plus the layout descriptor. Validates that the
// pages the descriptor addresses lie inside the array.
class CacheView {
 public:
  CacheView(py::object data, int layout, int fp8_flavor, int head_dim, int64_t num_pages,
            int block_size, int64_t page_stride_bytes, float scale, int arrangement = 0);
  const spmla_kv_cache_t *cache() const { return &c_; }
  const TensorView &data() const { return *view_; }
  int64_t num_pages() const { return c_.num_pages; }
  int64_t page_stride_bytes() const { return stride_; }
  int64_t page_bytes() const { return page_bytes_; }

 private:
  py::object data_;  // keeps the TensorView alive
  TensorView *view_ = nullptr;
  spmla_kv_cache_t c_ = SPMLA_KV_CACHE_INIT;
  int64_t stride_ = 0;
  int64_t page_bytes_ = 0;
};

}  // namespace spmla_py
