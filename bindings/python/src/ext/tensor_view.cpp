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
  finish();
}

void TensorView::finish() {
  // Sizes any producer may claim (a fake capsule, as_strided with stride 0): the element count
  // and the byte extent must fit in 64 bits before anything below multiplies them.
  {
    int64_t n = 1, extent = 0;
    bool overflow = false;
    for (int i = 0; i < t_.ndim && !overflow; ++i) {
      overflow = __builtin_mul_overflow(n, t_.shape[i], &n);
    }
    if (!overflow && n > 0) {
      extent = 1;
      for (int i = 0; i < t_.ndim && !overflow; ++i) {
        int64_t term = 0;
        const int64_t st = t_.strides[i] < 0 ? -t_.strides[i] : t_.strides[i];
        overflow = __builtin_mul_overflow(t_.shape[i] - 1, st, &term) ||
                   __builtin_add_overflow(extent, term, &extent);
      }
      overflow = overflow || __builtin_mul_overflow(extent, itemsize_, &extent);
    }
    if (overflow) {
      std::string shp;
      for (int i = 0; i < t_.ndim; ++i) shp += (i ? ", " : "") + std::to_string(t_.shape[i]);
      raise_status(SPMLA_STATUS_SIZE_OVERFLOW,
                   "argument '" + name_ + "': expected an element count and byte extent below "
                   "2^63, got shape (" + shp + ")");
    }
  }
  // An empty tensor has no memory layout to speak of: give it compact strides, so the
  // producer's conventions for empty arrays (some export 0 strides) do not matter.
  if (numel() == 0) {
    int64_t running = 1;
    for (int i = t_.ndim - 1; i >= 0; --i) {
      t_.strides[i] = running;
      if (__builtin_mul_overflow(running, t_.shape[i] > 0 ? t_.shape[i] : 1, &running))
        running = 1;  // an empty tensor's strides are never used for addressing
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
    if (__builtin_mul_overflow(running, t_.shape[i] > 0 ? t_.shape[i] : 1, &running)) {
      raise_status(SPMLA_STATUS_SIZE_OVERFLOW, "argument '" + name_ + "': expected a DLPack "
                   "shape whose element count is below 2^63, got an overflowing product");
    }
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


// ------------------------------------------------------------------------------------------------
// torch tensors without DLPack (the fast call path; see tensor_view.h).

namespace {

struct TorchTypes {
  bool ready = false;
  PyTypeObject *tensor = nullptr, *parameter = nullptr;
  PyObject *dtypes = nullptr;  // dict: torch dtype -> (kind, bits)
  PyObject *strided = nullptr;
  bool hip = false;
};

// Filled once torch has been imported by someone else (never imports torch itself).
TorchTypes *torch_types() {
  static TorchTypes t;
  if (t.ready) return &t;
  PyObject *mod = PyImport_GetModule(py::str("torch").ptr());
  if (!mod) {
    PyErr_Clear();
    return nullptr;
  }
  py::object torch = py::reinterpret_steal<py::object>(mod);
  try {
    t.tensor = reinterpret_cast<PyTypeObject *>(torch.attr("Tensor").ptr());
    t.parameter = reinterpret_cast<PyTypeObject *>(torch.attr("nn").attr("Parameter").ptr());
    Py_INCREF(t.tensor);
    Py_INCREF(t.parameter);
    py::dict d;
    const std::pair<const char *, std::pair<int, int>> names[] = {
        {"bfloat16", {kKindBfloat, 16}}, {"float16", {kKindFloat, 16}},
        {"float32", {kKindFloat, 32}},   {"float64", {kKindFloat, 64}},
        {"int8", {kKindInt, 8}},         {"int16", {kKindInt, 16}},
        {"int32", {kKindInt, 32}},       {"int64", {kKindInt, 64}},
        {"uint8", {kKindUInt, 8}},       {"uint16", {kKindUInt, 16}},
        {"uint32", {kKindUInt, 32}},     {"uint64", {kKindUInt, 64}},
        {"bool", {kKindBool, 8}},        {"float8_e4m3fn", {kKindFp8Fn, 8}},
        {"float8_e4m3fnuz", {kKindFp8Fnuz, 8}}, {"float8_e8m0fnu", {kKindE8m0, 8}}};
    for (const auto &n : names) {
      if (py::hasattr(torch, n.first)) d[torch.attr(n.first)] = py::make_tuple(n.second.first, n.second.second);
    }
    t.dtypes = d.release().ptr();
    t.strided = py::object(torch.attr("strided")).release().ptr();
    py::object hip = torch.attr("version").attr("hip");
    t.hip = !hip.is_none();
  } catch (py::error_already_set &) {
    return nullptr;  // an unusual torch: the DLPack path serves
  }
  t.ready = true;
  return &t;
}

}  // namespace

std::unique_ptr<TensorView> TensorView::from_torch(py::handle obj, std::string name, int dtype,
                                                   bool writable) {
  (void)writable;  // torch tensors are always writable
  PyTypeObject *type = Py_TYPE(obj.ptr());
  if (std::strcmp(type->tp_name, "Tensor") != 0 && std::strcmp(type->tp_name, "Parameter") != 0)
    return nullptr;
  TorchTypes *tt = torch_types();
  if (!tt || (type != tt->tensor && type != tt->parameter)) return nullptr;
  if (py::object(obj.attr("layout")).ptr() != tt->strided) return nullptr;
  int32_t dev_type;
  if (obj.attr("is_cpu").cast<bool>()) {
    dev_type = dlpack::kCPU;
  } else if (obj.attr("is_cuda").cast<bool>()) {
    dev_type = tt->hip ? dlpack::kROCM : dlpack::kCUDA;
  } else {
    return nullptr;  // meta, mps, xpu...: DLPack says what it can
  }
  PyObject *kb = PyDict_GetItem(tt->dtypes, obj.attr("dtype").ptr());
  if (!kb) return nullptr;
  if (dtype != 0 && dtype != kAnyDtype && spmla_dtype_size(static_cast<spmla_dtype_t>(dtype)) == 0)
    return nullptr;
  std::unique_ptr<TensorView> v(new TensorView(std::move(name)));
  v->override_ = dtype;
  py::tuple kind_bits = py::reinterpret_borrow<py::tuple>(kb);
  v->set_dtype(kind_bits[0].cast<int>(), kind_bits[1].cast<int>(), dtype);
  py::tuple shape = obj.attr("shape");
  py::tuple strides = obj.attr("stride")();
  const int nd = static_cast<int>(shape.size());
  if (nd > SPMLA_MAX_DIMS || static_cast<int>(strides.size()) != nd) return nullptr;
  v->t_.ndim = nd;
  for (int i = 0; i < nd; ++i) {
    v->t_.shape[i] = shape[i].cast<int64_t>();
    v->t_.strides[i] = strides[i].cast<int64_t>();
  }
  v->device_type_ = dev_type;
  v->device_id_ = dev_type == dlpack::kCPU ? 0 : obj.attr("get_device")().cast<int32_t>();
  v->t_.data = reinterpret_cast<void *>(obj.attr("data_ptr")().cast<uintptr_t>());
  v->readonly_ = false;
  v->keep_ = py::reinterpret_borrow<py::object>(obj);
  v->finish();
  return v;
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

namespace {

const char *layout_name(int layout) {
  switch (layout) {
    case SPMLA_KV_LAYOUT_BF16: return "bf16";
    case SPMLA_KV_LAYOUT_FP8_PER_TENSOR: return "fp8_per_tensor";
    case SPMLA_KV_LAYOUT_V32_FP8: return "v32_fp8";
    case SPMLA_KV_LAYOUT_V4_FP8: return "v4_fp8";
    case SPMLA_KV_LAYOUT_INDEXER_FP8: return "indexer_fp8";
    case SPMLA_KV_LAYOUT_V41_FP8: return "v41_fp8";
    case SPMLA_KV_LAYOUT_V41_FP4: return "v41_fp4";
    default: return "?";
  }
}

// Raises the status of a failed C geometry call with the library's message.
void check_c(spmla_status_t st) {
  if (st == SPMLA_STATUS_SUCCESS) return;
  std::string msg = spmla_last_error_message();
  raise_status(st, msg.empty() ? spmla_status_string(st) : msg);
}

}  // namespace

// THE RULE: every byte the C descriptor spans (spmla_kv_cache_size_bytes: page stride x
// num_pages) lies inside the array the caller handed over. Geometry comes from the C library
// (spmla_kv_cache_page_bytes / _size_bytes), never re-derived here: a V4_FP8 page is 584 x
// block_size bytes rounded up to a multiple of 576, and kv_cache_store writes the rounding too.
// The one exception is a 2-D view with gaps between its rows (data[:, :n] of a wider buffer):
// its page stride is the row stride (a padded stride, whose padding the library never touches)
// and each row must hold a whole packed page.
CacheView::CacheView(py::object data, int layout, int fp8_flavor, int head_dim, int64_t num_pages,
                     int block_size, int64_t page_stride_bytes, float scale, int arrangement)
    : data_(std::move(data)) {
  view_ = data_.cast<TensorView *>();
  const TensorView &v = *view_;
  const std::string fn = "spmla.KVCache: " + v.name();
  const spmla_tensor_t *t = v.tensor();
  // num_pages / page_stride_bytes: -1 = "from the array" (None in Python); anything else
  // negative, and an explicit stride of 0 (which the C ABI would read as "packed"), is refused.
  if (num_pages < -1) {
    raise_invalid(fn + ".num_pages: expected >= 0 (or None: as many as the array holds), got " +
                  std::to_string(num_pages));
  }
  if (page_stride_bytes == 0 || page_stride_bytes < -1) {
    raise_invalid(fn + ".page_stride_bytes: expected > 0 (or None: the array's first stride), "
                  "got " + std::to_string(page_stride_bytes));
  }
  if (t->ndim < 1) raise_invalid(fn + ": expected an array of at least one dimension, got a scalar");
  for (int i = 0; i < t->ndim; ++i) {
    if (t->shape[i] > 1 && t->strides[i] <= 0) {
      raise_invalid(fn + ".strides[" + std::to_string(i) + "]: expected > 0 (pages and their bytes "
                    "must not overlap: no broadcast or negative-stride views), got " +
                    std::to_string(t->strides[i] * v.itemsize()) + " bytes");
    }
  }
  const int64_t item = v.itemsize();
  // Bytes of one page-row (dims 1..) when those dims are compact.
  bool inner_compact = true;
  int64_t inner_elems = 1;
  for (int i = t->ndim - 1; i >= 1; --i) {
    if (t->shape[i] != 1 && t->strides[i] != inner_elems) inner_compact = false;
    if (__builtin_mul_overflow(inner_elems, t->shape[i], &inner_elems)) {
      raise_status(SPMLA_STATUS_SIZE_OVERFLOW, fn + ": expected a size that fits in 64 bits, got "
                   "an overflowing shape");
    }
  }
  int64_t inner_bytes = 0, total = 0, numel = 1;
  for (int i = 0; i < t->ndim; ++i) {
    if (__builtin_mul_overflow(numel, t->shape[i], &numel)) numel = -1;
    if (numel < 0) break;
  }
  if (numel < 0 || __builtin_mul_overflow(inner_elems, item, &inner_bytes) ||
      __builtin_mul_overflow(numel, item, &total)) {
    raise_status(SPMLA_STATUS_SIZE_OVERFLOW, fn + ": expected an array of fewer than 2^63 bytes, "
                 "got an overflowing shape");
  }
  const bool contiguous = v.is_contiguous();

  c_.data = t->data;
  c_.layout = static_cast<spmla_kv_layout_t>(layout);
  c_.fp8_flavor = static_cast<spmla_fp8_flavor_t>(fp8_flavor);
  c_.head_dim = head_dim;
  c_.block_size = block_size;
  c_.scale = scale;
  c_.arrangement = static_cast<spmla_kv_arrangement_t>(arrangement);
  // The packed page size validates the descriptor itself (layout, flavor, dims, block size).
  size_t packed = 0;
  c_.num_pages = 1;
  c_.page_stride_bytes = 0;
  check_c(spmla_kv_cache_page_bytes(&c_, &packed));
  page_bytes_ = static_cast<int64_t>(packed);
  const std::string page_what = "one packed " + std::string(layout_name(layout)) + " page of " +
                                std::to_string(block_size) + " tokens";

  // Resolve the page stride the array implies.
  int64_t stride = page_stride_bytes;  // -1 = from the array
  const bool gapped = t->ndim >= 2 && !contiguous;  // rows apart by more than their bytes
  if (t->ndim >= 2) {
    if (!inner_compact) {
      raise_invalid(fn + ": expected the bytes of one page (dimensions 1..) to be contiguous, got "
                    "strides " + py::str(v.strides()).cast<std::string>() + " (elements)");
    }
    const int64_t row_stride = t->shape[0] > 1 ? t->strides[0] * item : inner_bytes;
    if (stride < 0) {
      stride = row_stride;
    } else if (gapped && stride != row_stride) {
      raise_invalid(fn + ".page_stride_bytes: expected the array's page stride of " +
                    std::to_string(row_stride) + " bytes, got " + std::to_string(stride));
    }
    if (gapped && inner_bytes < page_bytes_) {
      raise_invalid(fn + ".shape: expected rows of at least " + std::to_string(page_bytes_) +
                    " bytes (" + page_what + "; the library writes all of it, V4_FP8's rounding "
                    "to a multiple of 576 (page-blocked V41: 512) included: hand over data[:, :" +
                    std::to_string(page_bytes_) + "] of the padded buffer), got rows of " +
                    std::to_string(inner_bytes) + " bytes");
    }
  } else if (!contiguous) {
    raise_invalid(fn + ": expected a contiguous one-dimensional buffer, got strides " +
                  py::str(v.strides()).cast<std::string>());
  }
  if (stride < 0) stride = page_bytes_;
  if (stride < page_bytes_) {
    raise_invalid(fn + ".page_stride_bytes: expected >= " + std::to_string(page_bytes_) + " (" +
                  page_what + "), got " + std::to_string(stride) +
                  (page_stride_bytes < 0 ? " (the array's first stride)" : ""));
  }
  // A stride equal to the packed page is "packed" (0): the C rules for explicit strides
  // (a multiple of 16) are for padded pages; let them judge an explicit one.
  c_.page_stride_bytes = stride == page_bytes_ ? 0 : stride;
  check_c(spmla_kv_cache_page_bytes(&c_, &packed));
  stride_ = stride;

  // How many pages the array holds, by the C library's span of the descriptor.
  auto span_of = [&](int64_t pages) -> int64_t {
    spmla_kv_cache_t c = c_;
    c.num_pages = pages;
    size_t size = 0;
    check_c(spmla_kv_cache_size_bytes(&c, &size));
    return static_cast<int64_t>(size);
  };
  // Bytes of the array the span must fit in: all of it, or for a gapped view its rows, each
  // padded to the stride (the gap is the padding of a padded stride).
  int64_t avail_pages = 0;
  std::string holds;
  if (gapped) {
    avail_pages = t->shape[0];
    holds = std::to_string(t->shape[0]) + " rows of " + std::to_string(inner_bytes) +
            " bytes, " + std::to_string(stride) + " apart";
  } else {
    avail_pages = total / stride;
    if (t->ndim >= 2 && page_stride_bytes < 0 && avail_pages > t->shape[0]) avail_pages = t->shape[0];
    holds = std::to_string(total) + " bytes";
  }
  if (num_pages < 0) {
    num_pages = avail_pages;
    if (num_pages == 0) {
      raise_invalid(fn + ": expected an array that holds at least one page of " +
                    std::to_string(stride) + " bytes (" + page_what + "), got " + holds);
    }
  } else if (num_pages > avail_pages) {
    raise_invalid(fn + ".num_pages: expected at most " + std::to_string(avail_pages) +
                  " (pages of " + std::to_string(stride) + " bytes that fit in the array: " +
                  holds + "), got " + std::to_string(num_pages) + "; they do not fit");
  }
  c_.num_pages = num_pages;
  const int64_t span = span_of(num_pages);  // validates the complete descriptor once more
  // The rule, checked on the C library's own number.
  int64_t limit = total;
  if (gapped && __builtin_mul_overflow(t->shape[0], stride, &limit)) limit = std::numeric_limits<int64_t>::max();
  if (span > limit) {
    raise_status(SPMLA_STATUS_INTERNAL, fn + ": the cache spans " + std::to_string(span) +
                 " bytes, more than the " + std::to_string(limit) + " the array holds");
  }
}

}  // namespace spmla_py
