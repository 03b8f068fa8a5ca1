// tensor_view.cpp — DLPack and buffer-protocol import for the spmla extension.
#include "tensor_view.h"

#include <cstring>
#include <limits>

#include "dlpack_abi.h"

namespace spmla_py {

namespace {

// Element kinds a source can export, independent of spmla's dtype list.
enum Kind { kKindInt, kKindUInt, kKindFloat, kKindBfloat, kKindBool, kKindFp8Fn, kKindFp8Fnuz,
            kKindE8m0, kKindOther };

std::string kind_name(int kind, int bits) {
  switch (kind) {
    case kKindInt: return "int" + std::to_string(bits);
    case kKindUInt: return "uint" + std::to_string(bits);
    case kKindFloat: return "float" + std::to_string(bits);
    case kKindBfloat: return bits == 16 ? "bfloat16" : "bfloat" + std::to_string(bits);
    case kKindBool: return "bool";
    case kKindFp8Fn: return "float8_e4m3fn";
    case kKindFp8Fnuz: return "float8_e4m3fnuz";
    case kKindE8m0: return "float8_e8m0fnu";
    default: return "an unsupported type (" + std::to_string(bits) + " bits)";
  }
}

spmla_dtype_t kind_to_dtype(int kind, int bits) {
  switch (kind) {
    case kKindInt:
      if (bits == 32) return SPMLA_DTYPE_INT32;
      if (bits == 64) return SPMLA_DTYPE_INT64;
      return SPMLA_DTYPE_INVALID;
    case kKindUInt:
    case kKindBool:
      return bits == 8 ? SPMLA_DTYPE_UINT8 : SPMLA_DTYPE_INVALID;
    case kKindFloat:
      if (bits == 16) return SPMLA_DTYPE_FP16;
      if (bits == 32) return SPMLA_DTYPE_FP32;
      return SPMLA_DTYPE_INVALID;
    case kKindBfloat: return bits == 16 ? SPMLA_DTYPE_BF16 : SPMLA_DTYPE_INVALID;
    case kKindFp8Fn: return bits == 8 ? SPMLA_DTYPE_FP8_E4M3FN : SPMLA_DTYPE_INVALID;
    case kKindFp8Fnuz: return bits == 8 ? SPMLA_DTYPE_FP8_E4M3FNUZ : SPMLA_DTYPE_INVALID;
    case kKindE8m0: return bits == 8 ? SPMLA_DTYPE_UE8M0 : SPMLA_DTYPE_INVALID;
    default: return SPMLA_DTYPE_INVALID;
  }
}

int dlpack_kind(uint8_t code) {
  switch (code) {
    case dlpack::kInt: return kKindInt;
    case dlpack::kUInt: return kKindUInt;
    case dlpack::kFloat: return kKindFloat;
    case dlpack::kBfloat: return kKindBfloat;
    case dlpack::kBool: return kKindBool;
    case dlpack::kFloat8_e4m3fn: return kKindFp8Fn;
    case dlpack::kFloat8_e4m3fnuz: return kKindFp8Fnuz;
    case dlpack::kFloat8_e8m0fnu: return kKindE8m0;
    default: return kKindOther;
  }
}

// The text of the pending Python exception (and clears it).
std::string fetch_error_text() {
  if (!PyErr_Occurred()) return "unknown error";
  py::error_already_set e;
  return e.what();
}

bool is_host_device(int32_t t) {
  return t == dlpack::kCPU || t == dlpack::kCUDAHost || t == dlpack::kROCMHost;
}

}  // namespace

TensorView::TensorView(py::handle obj, std::string name, int dtype, py::object stream,
                       bool writable)
    : name_(std::move(name)) {
  if (dtype != 0 && dtype != kAnyDtype && spmla_dtype_size(static_cast<spmla_dtype_t>(dtype)) == 0) {
    raise_invalid("argument '" + name_ + "': dtype override " + std::to_string(dtype) +
                  " is not an spmla dtype");
  }
  override_ = dtype;  // consumed by set_dtype
  if (py::hasattr(obj, "__dlpack__")) {
    from_dlpack(obj, std::move(stream), writable);
  } else if (PyObject_CheckBuffer(obj.ptr())) {
    from_buffer(obj, writable);
  } else {
    raise_invalid("argument '" + name_ +
                  "': expected an array that supports DLPack (__dlpack__) or the buffer "
                  "protocol, got " +
                  std::string(Py_TYPE(obj.ptr())->tp_name));
  }
  if (writable && readonly_) {
    raise_invalid("argument '" + name_ + "': the array is read-only but the call writes to it");
  }
  // An empty tensor has no memory layout to speak of: give it compact strides, so the
  // producer's conventions for empty arrays (some export 0 strides) do not matter.
  if (numel() == 0) {
    int64_t running = 1;
    for (int i = t_.ndim - 1; i >= 0; --i) {
      t_.strides[i] = running;
      running *= t_.shape[i] > 0 ? t_.shape[i] : 1;
    }
  }
}

void TensorView::set_dtype(int kind, int bits, int override_dtype) {
  source_dtype_ = kind_name(kind, bits);
  if (bits <= 0 || bits % 8 != 0) {
    raise_invalid("argument '" + name_ + "': elements of " + std::to_string(bits) +
                  " bits are not supported (whole bytes only)");
  }
  itemsize_ = bits / 8;
  spmla_dtype_t mapped = kind_to_dtype(kind, bits);
  if (override_dtype == kAnyDtype) {
    // Raw memory (a cache's pages): any element type, read as bytes.
    t_.dtype = mapped;
    return;
  }
  if (override_dtype != 0) {
    auto want = static_cast<spmla_dtype_t>(override_dtype);
    const bool raw = kind == kKindInt || kind == kKindUInt || kind == kKindBool;
    if (mapped == want) {
      t_.dtype = want;
      return;
    }
    if (raw && static_cast<size_t>(itemsize_) == spmla_dtype_size(want)) {
      t_.dtype = want;
      return;
    }
    raise_invalid("argument '" + name_ + "': cannot read elements of dtype " + source_dtype_ +
                  " as " + spmla_dtype_name(want) + " (dtype= reinterprets a uint8/int8 or " +
                  "uint16/int16 view whose element size matches)");
  }
  if (mapped == SPMLA_DTYPE_INVALID) {
    std::string hint;
    if ((kind == kKindUInt || kind == kKindInt) && bits == 16)
      hint = "; if these are bf16 bit patterns pass dtype='bf16'";
    else if (kind == kKindInt && bits == 8)
      hint = "; if these are fp8 bytes pass dtype='fp8_e4m3fn' or 'fp8_e4m3fnuz'";
    raise_invalid("argument '" + name_ + "': dtype " + source_dtype_ +
                  " has no spmla equivalent (spmla reads bf16, fp16, fp32, int32, int64, uint8, "
                  "fp8_e4m3fn, fp8_e4m3fnuz, ue8m0)" + hint);
  }
  t_.dtype = mapped;
}

void TensorView::from_dlpack(py::handle obj, py::object stream, bool writable) {
  int32_t dev_type = dlpack::kCPU;
  int32_t dev_id = 0;
  try {
    py::object dev = obj.attr("__dlpack_device__")();
    py::tuple tup = dev.cast<py::tuple>();
    if (tup.size() != 2) throw py::value_error("expected a 2-tuple");
    dev_type = tup[0].cast<int32_t>();
    dev_id = tup[1].cast<int32_t>();
  } catch (py::error_already_set &e) {
    raise_invalid("argument '" + name_ + "': __dlpack_device__() failed: " + e.what());
  } catch (std::exception &e) {
    raise_invalid("argument '" + name_ + "': __dlpack_device__() did not return "
                  "(device_type, device_id): " + e.what());
  }
  // Host memory takes no stream (producers such as numpy reject one).
  py::object st = is_host_device(dev_type) ? py::none() : stream;
  py::object cap;
  try {
    try {
      cap = obj.attr("__dlpack__")(py::arg("stream") = st,
                                   py::arg("max_version") =
                                       py::make_tuple(dlpack::kMaxMajor, dlpack::kMaxMinor));
    } catch (py::error_already_set &e) {
      if (!e.matches(PyExc_TypeError)) throw;
      // A producer older than DLPack 1.0 knows no max_version.
      if (st.is_none()) {
        try {
          cap = obj.attr("__dlpack__")();
        } catch (py::error_already_set &e2) {
          if (!e2.matches(PyExc_TypeError)) throw;
          cap = obj.attr("__dlpack__")(py::arg("stream") = st);
        }
      } else {
        cap = obj.attr("__dlpack__")(py::arg("stream") = st);
      }
    }
  } catch (py::error_already_set &e) {
    raise_invalid("argument '" + name_ + "': the array could not be exported through DLPack: " +
                  e.what());
  }
  keep_ = cap;  // never renamed: the producer's capsule destructor frees the tensor
  const dlpack::Tensor *dl = nullptr;
  if (PyCapsule_IsValid(cap.ptr(), dlpack::kCapsuleNameVersioned)) {
    auto *mt = static_cast<dlpack::ManagedTensorVersioned *>(
        PyCapsule_GetPointer(cap.ptr(), dlpack::kCapsuleNameVersioned));
    if (mt == nullptr) raise_invalid("argument '" + name_ + "': " + fetch_error_text());
    if (mt->version.major != dlpack::kMaxMajor) {
      raise_invalid("argument '" + name_ + "': DLPack version " +
                    std::to_string(mt->version.major) + "." + std::to_string(mt->version.minor) +
                    " is not supported (major 1 expected)");
    }
    readonly_ = (mt->flags & dlpack::kFlagReadOnly) != 0;
    if (writable && (mt->flags & dlpack::kFlagIsCopied) != 0) {
      raise_invalid("argument '" + name_ +
                    "': the producer exported a copy, so results written to it would be lost");
    }
    dl = &mt->dl_tensor;
  } else if (PyCapsule_IsValid(cap.ptr(), dlpack::kCapsuleName)) {
    auto *mt = static_cast<dlpack::ManagedTensor *>(
        PyCapsule_GetPointer(cap.ptr(), dlpack::kCapsuleName));
    if (mt == nullptr) raise_invalid("argument '" + name_ + "': " + fetch_error_text());
    dl = &mt->dl_tensor;
  } else {
    raise_invalid("argument '" + name_ +
                  "': __dlpack__() did not return an unconsumed DLPack capsule");
  }
  device_type_ = dl->device.device_type;
  device_id_ = dl->device.device_id;
  if (device_type_ != dev_type || device_id_ != dev_id) {
    raise_invalid("argument '" + name_ + "': __dlpack_device__() and the exported tensor disagree "
                  "on the device");
  }
  if (dl->dtype.lanes != 1) {
    raise_invalid("argument '" + name_ + "': vector dtypes (lanes = " +
                  std::to_string(dl->dtype.lanes) + ") are not supported");
  }
  if (dl->ndim < 0 || dl->ndim > SPMLA_MAX_DIMS) {
    raise_invalid("argument '" + name_ + "': " + std::to_string(dl->ndim) +
                  " dimensions given, at most " + std::to_string(SPMLA_MAX_DIMS) + " supported");
  }
  set_dtype(dlpack_kind(dl->dtype.code), dl->dtype.bits, override_);
  t_.ndim = dl->ndim;
  if (dl->ndim > 0 && dl->shape == nullptr) {
    raise_invalid("argument '" + name_ + "': DLPack tensor without a shape");
  }
  for (int i = 0; i < dl->ndim; ++i) {
    if (dl->shape[i] < 0) {
      raise_invalid("argument '" + name_ + "': negative extent in the DLPack shape");
    }
    t_.shape[i] = dl->shape[i];
  }
  // NULL strides mean compact row-major (DLPack < 1.2).
  int64_t running = 1;
  for (int i = dl->ndim - 1; i >= 0; --i) {
    t_.strides[i] = dl->strides ? dl->strides[i] : running;
    running *= t_.shape[i] > 0 ? t_.shape[i] : 1;
  }
  t_.data = dl->data ? static_cast<char *>(dl->data) + dl->byte_offset : nullptr;
}

void TensorView::from_buffer(py::handle obj, bool writable) {
  int flags = PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
  bool ok = PyObject_GetBuffer(obj.ptr(), &buffer_, flags) == 0;
  if (!ok && writable) {
    // Say "read-only" when that is why the writable export failed.
    PyErr_Clear();
    Py_buffer probe;
    if (PyObject_GetBuffer(obj.ptr(), &probe, PyBUF_STRIDES | PyBUF_FORMAT) == 0) {
      const bool ro = probe.readonly != 0;
      PyBuffer_Release(&probe);
      if (ro) {
        raise_invalid("argument '" + name_ + "': the array is read-only but the call writes to it");
      }
    }
    PyErr_Clear();
    ok = PyObject_GetBuffer(obj.ptr(), &buffer_, flags) == 0;  // the exporter's own complaint
  }
  if (!ok) {
    raise_invalid("argument '" + name_ + "': the buffer could not be exported: " +
                  fetch_error_text());
  }
  has_buffer_ = true;
  keep_ = py::reinterpret_borrow<py::object>(obj);
  readonly_ = buffer_.readonly != 0;
  device_type_ = dlpack::kCPU;
  device_id_ = 0;
  if (buffer_.ndim < 0 || buffer_.ndim > SPMLA_MAX_DIMS) {
    raise_invalid("argument '" + name_ + "': " + std::to_string(buffer_.ndim) +
                  " dimensions given, at most " + std::to_string(SPMLA_MAX_DIMS) + " supported");
  }
  // Format: an optional byte-order character, then one struct-module type code.
  std::string fmt = buffer_.format ? buffer_.format : "B";
  size_t pos = 0;
  if (!fmt.empty() && (fmt[0] == '@' || fmt[0] == '=' || fmt[0] == '<' || fmt[0] == '>' ||
                       fmt[0] == '!')) {
    const uint16_t probe = 1;
    const bool little = *reinterpret_cast<const uint8_t *>(&probe) == 1;
    if ((fmt[0] == '>' || fmt[0] == '!') && little && buffer_.itemsize > 1) {
      raise_invalid("argument '" + name_ + "': big-endian data is not supported");
    }
    if (fmt[0] == '<' && !little && buffer_.itemsize > 1) {
      raise_invalid("argument '" + name_ + "': little-endian data on a big-endian host");
    }
    pos = 1;
  }
  int kind = kKindOther;
  if (fmt.size() == pos + 1) {
    switch (fmt[pos]) {
      case 'b': case 'h': case 'i': case 'l': case 'q': case 'n': kind = kKindInt; break;
      case 'B': case 'H': case 'I': case 'L': case 'Q': case 'N': case 'c': kind = kKindUInt; break;
      case 'e': case 'f': case 'd': kind = kKindFloat; break;
      case '?': kind = kKindBool; break;
      default: kind = kKindOther;
    }
  }
  if (kind == kKindOther) {
    raise_invalid("argument '" + name_ + "': buffer format '" + fmt + "' is not supported");
  }
  set_dtype(kind, static_cast<int>(buffer_.itemsize * 8), override_);
  t_.ndim = buffer_.ndim;
  for (int i = 0; i < buffer_.ndim; ++i) {
    t_.shape[i] = buffer_.shape ? buffer_.shape[i] : buffer_.len / buffer_.itemsize;
    int64_t sb = buffer_.strides ? buffer_.strides[i] : 0;
    if (!buffer_.strides) {
      int64_t s = buffer_.itemsize;
      for (int j = i + 1; j < buffer_.ndim; ++j) s *= buffer_.shape[j];
      sb = s;
    }
    if (sb % buffer_.itemsize != 0) {
      raise_invalid("argument '" + name_ + "': stride of " + std::to_string(sb) +
                    " bytes in dimension " + std::to_string(i) +
                    " is not a multiple of the element size");
    }
    t_.strides[i] = sb / buffer_.itemsize;
  }
  t_.data = buffer_.buf;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int i = 0; i < t_.ndim; ++i) n *= t_.shape[i];
  return n;
}

bool TensorView::is_contiguous() const {
  if (numel() == 0) return true;
  int64_t expect = 1;
  for (int i = t_.ndim - 1; i >= 0; --i) {
    if (t_.shape[i] != 1 && t_.strides[i] != expect) return false;
    expect *= t_.shape[i];
  }
  return true;
}

int64_t TensorView::span_bytes() const {
  if (numel() == 0) return 0;
  int64_t last = 0;
  for (int i = 0; i < t_.ndim; ++i) {
    if (t_.shape[i] > 1) {
      if (t_.strides[i] < 0) return -1;
      last += (t_.shape[i] - 1) * t_.strides[i];
    }
  }
  return (last + 1) * itemsize_;
}

py::tuple TensorView::shape() const {
  py::tuple r(t_.ndim);
  for (int i = 0; i < t_.ndim; ++i) r[i] = py::int_(t_.shape[i]);
  return r;
}

py::tuple TensorView::strides() const {
  py::tuple r(t_.ndim);
  for (int i = 0; i < t_.ndim; ++i) r[i] = py::int_(t_.strides[i]);
  return r;
}

// ---------------------------------------------------------------------------------------------
// CacheView

CacheView::CacheView(py::object data, int layout, int fp8_flavor, int head_dim, int64_t num_pages,
                     int block_size, int64_t page_stride_bytes, float scale)
    : data_(std::move(data)) {
  view_ = data_.cast<TensorView *>();
  const TensorView &v = *view_;
  const std::string &nm = v.name();
  const spmla_tensor_t *t = v.tensor();
  if (t->ndim < 1) raise_invalid("argument '" + nm + "': a cache needs at least one dimension");
  for (int i = 0; i < t->ndim; ++i) {
    if (t->shape[i] > 1 && t->strides[i] < 0) {
      raise_invalid("argument '" + nm + "': negative strides are not supported for a cache");
    }
  }
  const int64_t item = v.itemsize();
  // Bytes of one page-row (dims 1..) when those dims are compact.
  bool inner_compact = true;
  int64_t inner_elems = 1;
  for (int i = t->ndim - 1; i >= 1; --i) {
    if (t->shape[i] != 1 && t->strides[i] != inner_elems) inner_compact = false;
    inner_elems *= t->shape[i];
  }
  const bool contiguous = v.is_contiguous();
  const int64_t total = v.numel() * item;

  c_.data = t->data;
  c_.layout = static_cast<spmla_kv_layout_t>(layout);
  c_.fp8_flavor = static_cast<spmla_fp8_flavor_t>(fp8_flavor);
  c_.head_dim = head_dim;
  c_.block_size = block_size;
  c_.scale = scale;
  c_.num_pages = 0;
  c_.page_stride_bytes = 0;
  // Resolve the page stride the array implies.
  int64_t stride = page_stride_bytes;  // -1 = from the array
  if (t->ndim >= 2) {
    const int64_t row_stride = (t->shape[0] > 1 ? t->strides[0] : inner_elems) * item;
    if (!inner_compact) {
      raise_invalid("argument '" + nm + "': the bytes of one page (dimensions 1..) must be "
                    "contiguous");
    }
    if (stride < 0) {
      stride = row_stride;
    } else if (!contiguous && stride != row_stride) {
      raise_invalid("argument '" + nm + "': page_stride_bytes " + std::to_string(stride) +
                    " differs from the array's page stride of " + std::to_string(row_stride) +
                    " bytes");
    }
  } else if (!contiguous) {
    raise_invalid("argument '" + nm + "': a one-dimensional cache buffer must be contiguous");
  }
  // The packed page size validates the descriptor itself (layout, flavour, dims, block size).
  size_t packed = 0;
  c_.num_pages = 1;
  c_.page_stride_bytes = 0;
  spmla_status_t st = spmla_kv_cache_page_bytes(&c_, &packed);
  if (st != SPMLA_STATUS_SUCCESS) {
    std::string msg = spmla_last_error_message();
    raise_status(st, msg.empty() ? spmla_status_string(st) : msg);
  }
  page_bytes_ = static_cast<int64_t>(packed);
  // A stride equal to the packed page is "packed" (0): the C rules for explicit strides
  // (a multiple of 16) are for padded pages.
  c_.page_stride_bytes = (stride < 0 || stride == page_bytes_) ? 0 : stride;
  if (c_.page_stride_bytes != 0) {  // let the C rules judge an explicit stride first
    st = spmla_kv_cache_page_bytes(&c_, &packed);
    if (st != SPMLA_STATUS_SUCCESS) {
      std::string msg = spmla_last_error_message();
      raise_status(st, msg.empty() ? spmla_status_string(st) : msg);
    }
  }
  stride_ = c_.page_stride_bytes ? c_.page_stride_bytes : page_bytes_;
  stride = stride_;
  // Bytes of the last page that are actually addressed (a V4 page's tail padding is not).
  int64_t needed = page_bytes_;
  if (c_.layout == SPMLA_KV_LAYOUT_V4_FP8) needed = static_cast<int64_t>(584) * block_size;
  if (needed > page_bytes_) needed = page_bytes_;

  int64_t avail_pages = 0;
  if (t->ndim >= 2 && !contiguous) {
    // Strided pages: page p lives at p * stride, inner bytes each.
    const int64_t inner_bytes = inner_elems * item;
    if (needed > inner_bytes) {
      raise_invalid("argument '" + nm + "': a page holds " + std::to_string(inner_bytes) +
                    " bytes but the layout addresses " + std::to_string(needed) + " per page");
    }
    avail_pages = t->shape[0];
  } else {
    avail_pages = (stride > 0 && total >= needed) ? (total - needed) / stride + 1 : 0;
    if (t->ndim >= 2 && page_stride_bytes < 0 && num_pages < 0 && avail_pages > t->shape[0])
      avail_pages = t->shape[0];
  }
  if (num_pages < 0) {
    num_pages = avail_pages;
    if (num_pages == 0) {
      raise_invalid("argument '" + nm + "': the array (" + std::to_string(total) +
                    " bytes) does not hold one page of " + std::to_string(needed) + " bytes");
    }
  } else if (num_pages > avail_pages) {
    raise_invalid("argument '" + nm + "': num_pages " + std::to_string(num_pages) +
                  " pages of " + std::to_string(stride) + " bytes do not fit in the array (" +
                  std::to_string(avail_pages) + " fit)");
  }
  c_.num_pages = num_pages;
  // Validate the complete descriptor once more (page stride vs layout, alignment of data).
  size_t size = 0;
  st = spmla_kv_cache_size_bytes(&c_, &size);
  if (st != SPMLA_STATUS_SUCCESS) {
    std::string msg = spmla_last_error_message();
    raise_status(st, msg.empty() ? spmla_status_string(st) : msg);
  }
}

}  // namespace spmla_py
