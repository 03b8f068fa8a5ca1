// module.cpp — spmla._spmla, the pybind11 extension over the spmla C ABI.
//
// The extension is deliberately thin: it turns Python arrays into spmla tensors (TensorView,
// CacheView), calls the C functions with the GIL released and turns a failed status into the
// matching spmla exception carrying the C message. Policy (which backend, which stream, how
// outputs are allocated) lives in the pure-Python package.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "spmla.h"
#include "tensor_view.h"

namespace spmla_py {

[[noreturn]] void raise_status(int status, const std::string &message) {
  py::object errors = py::module_::import("spmla._errors");
  py::object cls = errors.attr("error_class")(status);
  py::object exc = cls(message, status);
  PyErr_SetObject(cls.ptr(), exc.ptr());
  throw py::error_already_set();
}

namespace {

void check_plain(spmla_status_t st) {
  if (st == SPMLA_STATUS_SUCCESS) return;
  std::string msg = spmla_last_error_message();
  raise_status(st, msg.empty() ? spmla_status_string(st) : msg);
}

// A handle plus the lock that keeps it to one thread at a time (the C rule).
class Handle {
 public:
  Handle(const std::string &backend, int device) {
    spmla_handle_t h = nullptr;
    spmla_status_t st;
    std::string msg;
    {
      py::gil_scoped_release release;
      st = spmla_handle_create(backend.empty() ? nullptr : backend.c_str(), device, &h);
      if (st != SPMLA_STATUS_SUCCESS) msg = spmla_last_error_message();
    }
    if (st != SPMLA_STATUS_SUCCESS) raise_status(st, msg.empty() ? spmla_status_string(st) : msg);
    h_ = h;
    const char *name = spmla_handle_backend_name(h_);
    backend_ = name ? name : "";
    int32_t dev = 0;
    check_plain(spmla_handle_device(h_, &dev));
    device_ = dev;
  }
  ~Handle() { close(); }
  Handle(const Handle &) = delete;
  Handle &operator=(const Handle &) = delete;

  void close() {
    std::lock_guard<std::mutex> lock(mu_);
    if (h_) {
      spmla_handle_destroy(h_);
      h_ = nullptr;
    }
  }
  bool closed() const { return h_ == nullptr; }
  const std::string &backend() const { return backend_; }
  int device() const { return device_; }

  // Runs f(handle) with the GIL released and the handle locked; raises on failure.
  template <class F>
  void call(F &&f) {
    spmla_status_t st = SPMLA_STATUS_SUCCESS;
    std::string msg;
    bool was_closed = false;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mu_);
      if (!h_) {
        was_closed = true;
      } else {
        st = f(h_);
        if (st != SPMLA_STATUS_SUCCESS) msg = spmla_last_error_message();
      }
    }
    if (was_closed) raise_invalid("the spmla handle is closed");
    if (st != SPMLA_STATUS_SUCCESS) raise_status(st, msg.empty() ? spmla_status_string(st) : msg);
  }

 private:
  spmla_handle_t h_ = nullptr;
  std::string backend_;
  int device_ = 0;
  std::mutex mu_;
};

const spmla_tensor_t *T(const TensorView *v) { return v ? v->tensor() : nullptr; }
const spmla_kv_cache_t *C(const CacheView *c) { return c ? c->cache() : nullptr; }
void *S(uintptr_t stream) { return reinterpret_cast<void *>(stream); }

// Workspace memory: a contiguous array of any dtype, used as bytes.
struct Workspace {
  void *ptr = nullptr;
  size_t bytes = 0;
};
Workspace workspace_of(const TensorView *ws) {
  Workspace w;
  if (!ws) return w;
  if (!ws->is_contiguous()) raise_invalid("argument 'workspace': must be contiguous");
  if (ws->readonly()) raise_invalid("argument 'workspace': the array is read-only");
  w.ptr = ws->tensor()->data;
  w.bytes = static_cast<size_t>(ws->numel() * ws->itemsize());
  if (w.bytes == 0) w.ptr = nullptr;
  return w;
}

spmla_sparse_attention_args_t attention_args(const TensorView *q, const CacheView *kv,
                                             const TensorView *indices, const TensorView *lengths,
                                             const CacheView *extra_kv,
                                             const TensorView *extra_indices,
                                             const TensorView *extra_lengths,
                                             const TensorView *attn_sink, float scale,
                                             const TensorView *out, const TensorView *lse,
                                             const TensorView *max_logits) {
  spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
  a.q = T(q);
  a.kv = C(kv);
  a.indices = T(indices);
  a.lengths = T(lengths);
  a.extra_kv = C(extra_kv);
  a.extra_indices = T(extra_indices);
  a.extra_lengths = T(extra_lengths);
  a.attn_sink = T(attn_sink);
  a.scale = scale;
  a.out = T(out);
  a.lse = T(lse);
  a.max_logits = T(max_logits);
  return a;
}

py::dict backend_dict(const spmla_backend_info_t &bi) {
  py::dict d;
  d["name"] = bi.name ? bi.name : "";
  d["available"] = bi.available != 0;
  d["reason"] = bi.reason ? bi.reason : "";
  d["device_count"] = bi.device_count;
  d["library"] = bi.library ? bi.library : "";
  return d;
}


// ------------------------------------------------------------------------------------------------
// The fast call path of SparseAttentionPlan.run: everything a decode layer's call needs beyond its
// own tensors (handle, planned lengths, workspace, the planned shapes and cache geometry) is held
// here from plan time, and each call converts its tensors once (one DLPack export or buffer view
// each) and calls spmla_sparse_attention_run, all in one trip into C++.
bool host_type(int32_t t) { return t == 1 || t == 3 || t == 11; }

struct CacheSpec {
  bool present = false;
  int layout = 0, flavor = 0, head_dim = 0, block_size = 0;
  int64_t num_pages_arg = -1, stride_arg = -1;  // as the KVCache gave them (-1: from the array)
  float scale = 1.0f;
  int arrangement = 0;  // spmla_kv_arrangement_t (V41: per token or page-blocked)
  int64_t num_pages = 0, stride = 0;  // resolved at plan time: every layer's cache must match
};

struct Shape {
  bool present = false;
  int ndim = 0;
  int64_t dims[SPMLA_MAX_DIMS] = {};
  int dtype = 0;
  void set(const TensorView *v) {
    present = v != nullptr;
    if (!v) return;
    ndim = v->tensor()->ndim;
    for (int i = 0; i < ndim; ++i) dims[i] = v->tensor()->shape[i];
    dtype = v->tensor()->dtype;
  }
  bool same(const TensorView &v, bool check_dtype) const {
    const spmla_tensor_t *t = v.tensor();
    if (t->ndim != ndim || (check_dtype && t->dtype != dtype)) return false;
    for (int i = 0; i < ndim; ++i)
      if (t->shape[i] != dims[i]) return false;
    return true;
  }
  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + (ndim == 1 ? ",)" : ")");
  }
};

std::string shape_str(const TensorView &v) {
  Shape s;
  s.set(&v);
  return s.str();
}

class AttentionRunner {
 public:
  AttentionRunner(py::object handle, py::object q, py::object kv, py::object indices,
                  py::object lengths, py::object extra_kv, py::object extra_indices,
                  py::object extra_lengths, py::object attn_sink, float scale, bool max_logits,
                  py::object workspace, int q_dtype)
      : handle_obj_(std::move(handle)),
        lengths_(std::move(lengths)),
        extra_lengths_(std::move(extra_lengths)),
        sink_(std::move(attn_sink)),
        workspace_(std::move(workspace)),
        scale_(scale),
        max_logits_(max_logits),
        q_dtype_(q_dtype) {
    h_ = handle_obj_.cast<Handle *>();
    const TensorView *qv = q.cast<const TensorView *>();
    device_type_ = qv->device_type();
    device_id_ = qv->device_id();
    q_.set(qv);
    indices_.set(indices.cast<const TensorView *>());
    extra_indices_.set(extra_indices.is_none() ? nullptr
                                               : extra_indices.cast<const TensorView *>());
    sink_shape_.set(sink_.is_none() ? nullptr : sink_.cast<const TensorView *>());
    spec(kv, main_);
    spec(extra_kv, extra_);
    ws_ = workspace_of(workspace_.is_none() ? nullptr : workspace_.cast<const TensorView *>());
  }

  // Planned cache geometry from a KVCache's arguments (layout, ...) and its resolved view.
  void set_cache_args(bool extra, int layout, int flavor, int head_dim, int block_size,
                      int64_t num_pages_arg, int64_t stride_arg, float scale, int arrangement) {
    CacheSpec &c = extra ? extra_ : main_;
    c.layout = layout; c.flavor = flavor; c.head_dim = head_dim; c.block_size = block_size;
    c.num_pages_arg = num_pages_arg; c.stride_arg = stride_arg; c.scale = scale;
    c.arrangement = arrangement;
  }

  // One layer. Returns nothing: out / lse / max_logits are written.
  void run(py::handle q, py::handle kv, py::handle indices, py::handle extra_kv,
           py::handle extra_indices, py::handle attn_sink, py::handle out, py::handle lse,
           py::handle max_logits, uintptr_t stream, py::object dl_stream, bool torch_direct) {
    torch_direct_ = torch_direct || dl_stream.is_none();
    call(q, kv, indices, extra_kv, extra_indices, attn_sink, out, lse, max_logits, stream,
         std::move(dl_stream), 0, nullptr);
  }

  // The same call, then the C function alone `repeat` times on the converted arguments (GIL
  // released): nanoseconds per C call. For bench_overhead.py: the C-ABI cost beside Python's.
  double time_c(py::handle q, py::handle kv, py::handle indices, py::handle extra_kv,
                py::handle extra_indices, py::handle attn_sink, py::handle out, py::handle lse,
                py::handle max_logits, int repeat) {
    double ns = 0;
    torch_direct_ = true;
    call(q, kv, indices, extra_kv, extra_indices, attn_sink, out, lse, max_logits, 0,
         py::none(), repeat, &ns);
    return ns;
  }

 private:
  void spec(const py::object &kv, CacheSpec &c) {
    if (kv.is_none()) return;
    const CacheView *cv = kv.cast<const CacheView *>();
    c.present = true;
    c.num_pages = cv->num_pages();
    c.stride = cv->page_stride_bytes();
    const spmla_kv_cache_t *d = cv->cache();
    c.layout = d->layout; c.flavor = d->fp8_flavor; c.head_dim = d->head_dim;
    c.block_size = d->block_size; c.scale = d->scale; c.arrangement = d->arrangement;
  }

  // A view of x (numpy's ml_dtypes arrays and torch's float8 tensors go through the package's
  // normalize(): DLPack cannot carry their element types).
  // rank > 0: a tensor of rank + 1 is viewed with its two leading dimensions merged (FlashMLA's
  // [b, s_q, ...] tensors as spmla's [T, ...]); one whose strides do not allow that is refused.
  std::unique_ptr<TensorView> view(py::handle x, const char *name, int override_dtype,
                                   bool writable, const py::object &dl_stream, int rank = 0) {
    auto v = view_as_is(x, name, override_dtype, writable, dl_stream);
    if (v && rank > 0 && v->tensor()->ndim == rank + 1 && !v->merge_leading()) {
      raise_invalid(std::string("argument '") + name + "': shape " + shape_str(*v) +
                    " cannot be viewed as [" + "dim0 * dim1, ...] without a copy (strides " +
                    py::str(v->strides()).cast<std::string>() + ")");
    }
    return v;
  }

  std::unique_ptr<TensorView> view_as_is(py::handle x, const char *name, int override_dtype,
                                         bool writable, const py::object &dl_stream) {
    if (x.is_none()) return nullptr;
    std::unique_ptr<TensorView> v;
    // Leaked on purpose: module-lifetime references, never destroyed after the interpreter.
    static py::handle ndarray = py::object(py::module_::import("numpy").attr("ndarray")).release();
    static py::handle normalize =
        py::object(py::module_::import("spmla._runtime").attr("normalize")).release();
    static py::handle void_kind = py::str("V").release();
    bool extended = false;  // an ml_dtypes element type (bfloat16, float8_*): kind 'V'
    if (Py_TYPE(x.ptr()) == reinterpret_cast<PyTypeObject *>(ndarray.ptr())) {
      py::object kind = x.attr("dtype").attr("kind");
      extended = kind.equal(void_kind);
    }
    auto normalized = [&] {
      py::tuple n = normalize(x, py::none());
      int ov = n[1].cast<int>();
      if (override_dtype != 0) ov = override_dtype;
      return std::make_unique<TensorView>(n[0], name, ov, dl_stream, writable);
    };
    if (torch_direct_) v = TensorView::from_torch(x, name, override_dtype, writable);
    if (v) {
    } else if (extended) {
      v = normalized();
    } else {
      try {
        v = std::make_unique<TensorView>(x, name, override_dtype, dl_stream, writable);
      } catch (py::error_already_set &) {  // e.g. a torch float8 tensor, an spmla.typed(...)
        v = normalized();
      }
    }
    const bool ok = device_type_ == v->device_type() && device_id_ == v->device_id();
    if (!ok && !(host_type(device_type_) && host_type(v->device_type()))) {
      raise_invalid(std::string("argument '") + name + "': tensor on another device than the "
                    "plan's (device type " + std::to_string(v->device_type()) + ":" +
                    std::to_string(v->device_id()) + ", planned " + std::to_string(device_type_) +
                    ":" + std::to_string(device_id_) + ")");
    }
    return v;
  }

  py::object cache_view(py::handle data, const char *name, const CacheSpec &c,
                        const py::object &dl_stream) {
    std::unique_ptr<TensorView> v = view_as_is(data, name, kAnyDtype, false, dl_stream);
    py::object tv = py::cast(v.release(), py::return_value_policy::take_ownership);
    py::object cv = py::cast(new CacheView(tv, c.layout, c.flavor, c.head_dim, c.num_pages_arg,
                                           c.block_size, c.stride_arg, c.scale, c.arrangement),
                             py::return_value_policy::take_ownership);
    const CacheView *p = cv.cast<const CacheView *>();
    if (p->num_pages() != c.num_pages || p->page_stride_bytes() != c.stride) {
      raise_invalid(std::string("argument '") + name + "': " + std::to_string(p->num_pages()) +
                    " pages " + std::to_string(p->page_stride_bytes()) + " bytes apart differ "
                    "from the plan's " + std::to_string(c.num_pages) + " pages " +
                    std::to_string(c.stride) + " bytes apart; build a new SparseAttentionPlan");
    }
    return cv;
  }

  void expect(const Shape &s, const TensorView *v, const char *name, bool check_dtype) {
    if (!s.present && !v) return;
    if (!s.present || !v) {
      raise_invalid(std::string("argument '") + name + "': " + (v ? "given" : "absent") +
                    " but the plan was built " + (v ? "without" : "with") + " it");
    }
    if (!s.same(*v, check_dtype)) {
      raise_invalid(std::string("argument '") + name + "': shape " + shape_str(*v) +
                    (check_dtype ? " / dtype " + std::to_string(v->tensor()->dtype) : "") +
                    " differs from the plan's " + s.str() +
                    (check_dtype ? " / dtype " + std::to_string(s.dtype) : "") +
                    "; build a new SparseAttentionPlan for these shapes");
    }
  }

  void call(py::handle q, py::handle kv, py::handle indices, py::handle extra_kv,
            py::handle extra_indices, py::handle attn_sink, py::handle out, py::handle lse,
            py::handle max_logits, uintptr_t stream, py::object dl_stream, int repeat,
            double *ns) {
    if (q.is_none() || kv.is_none() || indices.is_none())
      raise_invalid("SparseAttentionPlan.run: q, kv_cache and indices are required");
    if (out.is_none() || lse.is_none())
      raise_invalid("SparseAttentionPlan.run: the fast path needs out= and lse=");
    if (max_logits_ != !max_logits.is_none()) {
      raise_invalid(max_logits_ ? "argument 'max_logits': the plan returns max_logits: pass it"
                                : "argument 'max_logits': the plan was built without "
                                  "return_max_logits=True");
    }
    if (extra_.present != !extra_kv.is_none())
      raise_invalid(extra_.present ? "argument 'extra_kv_cache': the plan has an extra cache"
                                   : "argument 'extra_kv_cache': the plan has no extra cache");
    auto qv = view(q, "q", q_dtype_, false, dl_stream, q_.ndim);
    expect(q_, qv.get(), "q", true);
    py::object kvc = cache_view(kv, "kv_cache", main_, dl_stream);
    auto iv = view(indices, "indices", 0, false, dl_stream, indices_.ndim);
    expect(indices_, iv.get(), "indices", false);
    py::object xkvc;
    if (extra_.present) xkvc = cache_view(extra_kv, "extra_kv_cache", extra_, dl_stream);
    auto xiv = view(extra_indices, "extra_indices", 0, false, dl_stream, extra_indices_.ndim);
    expect(extra_indices_, xiv.get(), "extra_indices", false);
    std::unique_ptr<TensorView> sv;
    const TensorView *sink = nullptr;
    if (!attn_sink.is_none()) {
      sv = view(attn_sink, "attn_sink", 0, false, dl_stream);
      sink = sv.get();
    } else if (!sink_.is_none()) {
      sink = sink_.cast<const TensorView *>();
    }
    expect(sink_shape_, sink, "attn_sink", false);
    // A 16-bit integer out holds bf16 bits (numpy without ml_dtypes); any other dtype goes to
    // the C library as it is, which names what it expected.
    auto ov = view(out, "out", kAnyDtype, true, dl_stream, 3);
    if (ov->tensor()->dtype == SPMLA_DTYPE_INVALID && ov->itemsize() == 2) ov->retag(SPMLA_DTYPE_BF16);
    auto lv = view(lse, "lse", 0, true, dl_stream, 2);
    auto mv = view(max_logits, "max_logits", 0, true, dl_stream, 2);
    const TensorView *len = lengths_.is_none() ? nullptr : lengths_.cast<const TensorView *>();
    const TensorView *xlen =
        extra_lengths_.is_none() ? nullptr : extra_lengths_.cast<const TensorView *>();
    auto a = attention_args(qv.get(), kvc.cast<const CacheView *>(), iv.get(), len,
                            extra_.present ? xkvc.cast<const CacheView *>() : nullptr, xiv.get(),
                            xlen, sink, scale_, ov.get(), lv.get(), mv.get());
    const Workspace w = ws_;
    h_->call([&](spmla_handle_t hh) {
      spmla_status_t st = spmla_sparse_attention_run(hh, &a, w.ptr, w.bytes, S(stream));
      if (st != SPMLA_STATUS_SUCCESS || repeat <= 0) return st;
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < repeat && st == SPMLA_STATUS_SUCCESS; ++i)
        st = spmla_sparse_attention_run(hh, &a, w.ptr, w.bytes, S(stream));
      auto t1 = std::chrono::steady_clock::now();
      *ns = std::chrono::duration<double, std::nano>(t1 - t0).count() / repeat;
      return st;
    });
  }

  py::object handle_obj_;
  Handle *h_ = nullptr;
  py::object lengths_, extra_lengths_, sink_, workspace_;
  float scale_;
  bool max_logits_;
  int q_dtype_;
  int32_t device_type_ = 1, device_id_ = 0;
  Shape q_, indices_, extra_indices_, sink_shape_;
  CacheSpec main_, extra_;
  Workspace ws_;
  bool torch_direct_ = false;  // torch tensors may skip DLPack (host, or torch's current stream)
};

}  // namespace
}  // namespace spmla_py

using namespace spmla_py;

PYBIND11_MODULE(_spmla, m) {
  m.doc() = "spmla._spmla: the compiled binding of the spmla C ABI (use the spmla package).";

  // --- library --------------------------------------------------------------------------------
  m.def("version_string", [] { return std::string(spmla_version_string()); });
  m.def("version_number", [] { return spmla_version_number(); });
  m.def("abi_version", [] { return spmla_abi_version(); });
  m.attr("HEADER_VERSION") = SPMLA_VERSION_STRING;
  m.attr("HEADER_ABI_MAJOR") = SPMLA_ABI_VERSION_MAJOR;
  m.attr("MAX_DIMS") = SPMLA_MAX_DIMS;
  m.def("status_string", [](int s) {
    return std::string(spmla_status_string(static_cast<spmla_status_t>(s)));
  });
  m.def("dtype_name", [](int d) {
    return std::string(spmla_dtype_name(static_cast<spmla_dtype_t>(d)));
  });
  m.def("dtype_size", [](int d) { return spmla_dtype_size(static_cast<spmla_dtype_t>(d)); });
  m.def("backends", [] {
    int32_t n = 0;
    check_plain(spmla_backend_count(&n));
    py::list out;
    for (int32_t i = 0; i < n; ++i) {
      spmla_backend_info_t bi = SPMLA_BACKEND_INFO_INIT;
      check_plain(spmla_backend_get_info(i, &bi));
      out.append(backend_dict(bi));
    }
    return out;
  });
  m.def("device_info", [](const std::string &backend, int device) {
    spmla_device_info_t di = SPMLA_DEVICE_INFO_INIT;
    check_plain(spmla_device_get_info(backend.c_str(), device, &di));
    py::dict d;
    di.name[sizeof(di.name) - 1] = 0;
    di.arch[sizeof(di.arch) - 1] = 0;
    d["name"] = std::string(di.name);
    d["arch"] = std::string(di.arch);
    d["total_memory_bytes"] = di.total_memory_bytes;
    d["multiprocessor_count"] = di.multiprocessor_count;
    d["warp_size"] = di.warp_size;
    d["fp8_e4m3fn_native"] = di.fp8_e4m3fn_native != 0;
    d["fp8_e4m3fnuz_native"] = di.fp8_e4m3fnuz_native != 0;
    return d;
  });
  m.def(
      "page_bytes",
      [](int layout, int block_size, int head_dim, int fp8_flavor, int arrangement) {
        spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
        c.layout = static_cast<spmla_kv_layout_t>(layout);
        c.fp8_flavor = static_cast<spmla_fp8_flavor_t>(fp8_flavor);
        c.arrangement = static_cast<spmla_kv_arrangement_t>(arrangement);
        c.head_dim = head_dim;
        c.block_size = block_size;
        c.num_pages = 1;
        size_t bytes = 0;
        check_plain(spmla_kv_cache_page_bytes(&c, &bytes));
        return bytes;
      },
      py::arg("layout"), py::arg("block_size"), py::arg("head_dim"), py::arg("fp8_flavor"),
      py::arg("arrangement") = 0);

  // --- handle ---------------------------------------------------------------------------------
  py::class_<Handle>(m, "Handle")
      .def(py::init<const std::string &, int>(), py::arg("backend"), py::arg("device"))
      .def("close", &Handle::close)
      .def_property_readonly("closed", &Handle::closed)
      .def_property_readonly("backend", &Handle::backend)
      .def_property_readonly("device", &Handle::device)
      .def("set_option",
           [](Handle &h, int option, int64_t value) {
             h.call([&](spmla_handle_t c) {
               return spmla_handle_set_option(c, static_cast<spmla_option_t>(option), value);
             });
           },
           py::arg("option"), py::arg("value"))
      .def("get_option",
           [](Handle &h, int option) {
             int64_t v = 0;
             h.call([&](spmla_handle_t c) {
               return spmla_handle_get_option(c, static_cast<spmla_option_t>(option), &v);
             });
             return v;
           },
           py::arg("option"));

  // --- tensors --------------------------------------------------------------------------------
  py::class_<TensorView>(m, "Tensor")
      .def(py::init<py::handle, std::string, int, py::object, bool>(), py::arg("obj"),
           py::arg("name") = "tensor", py::arg("dtype") = 0, py::arg("stream") = py::none(),
           py::arg("writable") = false)
      .def_property_readonly("name", &TensorView::name)
      .def_property_readonly("shape", &TensorView::shape)
      .def_property_readonly("strides", &TensorView::strides)
      .def_property_readonly("dtype", [](const TensorView &v) { return int(v.tensor()->dtype); })
      .def_property_readonly("source_dtype", &TensorView::source_dtype)
      .def_property_readonly("device",
                             [](const TensorView &v) {
                               return py::make_tuple(v.device_type(), v.device_id());
                             })
      .def_property_readonly("data_ptr", &TensorView::data_ptr)
      .def_property_readonly("readonly", &TensorView::readonly)
      .def_property_readonly("itemsize", &TensorView::itemsize)
      .def_property_readonly("is_contiguous", &TensorView::is_contiguous)
      .def_property_readonly("nbytes",
                             [](const TensorView &v) { return v.numel() * v.itemsize(); });

  py::class_<CacheView>(m, "Cache")
      .def(py::init<py::object, int, int, int, int64_t, int, int64_t, float, int>(), py::arg("data"),
           py::arg("layout"), py::arg("fp8_flavor"), py::arg("head_dim"), py::arg("num_pages"),
           py::arg("block_size"), py::arg("page_stride_bytes"), py::arg("scale"),
           py::arg("arrangement") = 0)
      .def_property_readonly("num_pages", &CacheView::num_pages)
      .def_property_readonly("page_stride_bytes", &CacheView::page_stride_bytes)
      .def_property_readonly("page_bytes", &CacheView::page_bytes)
      .def_property_readonly("data", [](const CacheView &c) { return &c.data(); },
                             py::return_value_policy::reference_internal);

  // --- 1. sparse_attention --------------------------------------------------------------------
  using TV = const TensorView *;
  using CV = const CacheView *;
  m.def(
      "sparse_attention_workspace_size",
      [](Handle &h, TV q, CV kv, TV indices, TV lengths, CV extra_kv, TV extra_indices,
         TV extra_lengths, TV attn_sink, float scale, TV out, TV lse, TV max_logits) {
        auto a = attention_args(q, kv, indices, lengths, extra_kv, extra_indices, extra_lengths,
                                attn_sink, scale, out, lse, max_logits);
        size_t bytes = 0;
        h.call([&](spmla_handle_t hh) {
          return spmla_sparse_attention_get_workspace_size(hh, &a, &bytes);
        });
        return bytes;
      },
      py::arg("handle"), py::arg("q"), py::arg("kv"), py::arg("indices"), py::arg("lengths"),
      py::arg("extra_kv"), py::arg("extra_indices"), py::arg("extra_lengths"),
      py::arg("attn_sink"), py::arg("scale"), py::arg("out"), py::arg("lse"),
      py::arg("max_logits"));
  for (int run = 0; run < 2; ++run) {
    m.def(
        run ? "sparse_attention_run" : "sparse_attention_plan",
        [run](Handle &h, TV q, CV kv, TV indices, TV lengths, CV extra_kv, TV extra_indices,
              TV extra_lengths, TV attn_sink, float scale, TV out, TV lse, TV max_logits,
              TV workspace, uintptr_t stream) {
          auto a = attention_args(q, kv, indices, lengths, extra_kv, extra_indices,
                                  extra_lengths, attn_sink, scale, out, lse, max_logits);
          Workspace w = workspace_of(workspace);
          h.call([&](spmla_handle_t hh) {
            return run ? spmla_sparse_attention_run(hh, &a, w.ptr, w.bytes, S(stream))
                       : spmla_sparse_attention_plan(hh, &a, w.ptr, w.bytes, S(stream));
          });
        },
        py::arg("handle"), py::arg("q"), py::arg("kv"), py::arg("indices"), py::arg("lengths"),
        py::arg("extra_kv"), py::arg("extra_indices"), py::arg("extra_lengths"),
        py::arg("attn_sink"), py::arg("scale"), py::arg("out"), py::arg("lse"),
        py::arg("max_logits"), py::arg("workspace"), py::arg("stream"));
  }


  // --- fast path of SparseAttentionPlan.run ----------------------------------------------------
  py::class_<AttentionRunner>(m, "AttentionRunner")
      .def(py::init<py::object, py::object, py::object, py::object, py::object, py::object,
                    py::object, py::object, py::object, float, bool, py::object, int>(),
           py::arg("handle"), py::arg("q"), py::arg("kv"), py::arg("indices"), py::arg("lengths"),
           py::arg("extra_kv"), py::arg("extra_indices"), py::arg("extra_lengths"),
           py::arg("attn_sink"), py::arg("scale"), py::arg("max_logits"), py::arg("workspace"),
           py::arg("q_dtype"))
      .def("set_cache_args", &AttentionRunner::set_cache_args)
      .def("run", &AttentionRunner::run)
      .def("time_c", &AttentionRunner::time_c);

  // --- 2. indices_to_slots --------------------------------------------------------------------
  m.def(
      "indices_to_slots",
      [](Handle &h, TV positions, TV token_to_req, TV block_table, int block_size,
         TV token_valid, TV slots, TV lengths, TV indptr, TV ragged_slots, uintptr_t stream) {
        spmla_indices_to_slots_args_t a = SPMLA_INDICES_TO_SLOTS_ARGS_INIT;
        a.positions = T(positions);
        a.token_to_req = T(token_to_req);
        a.block_table = T(block_table);
        a.block_size = block_size;
        a.token_valid = T(token_valid);
        a.slots = T(slots);
        a.lengths = T(lengths);
        a.indptr = T(indptr);
        a.ragged_slots = T(ragged_slots);
        h.call([&](spmla_handle_t hh) { return spmla_indices_to_slots_run(hh, &a, S(stream)); });
      },
      py::arg("handle"), py::arg("positions"), py::arg("token_to_req"), py::arg("block_table"),
      py::arg("block_size"), py::arg("token_valid"), py::arg("slots"), py::arg("lengths"),
      py::arg("indptr"), py::arg("ragged_slots"), py::arg("stream"));

  // --- 3. window_indices ----------------------------------------------------------------------
  m.def(
      "window_indices",
      [](Handle &h, TV positions, TV token_to_req, TV block_table, int block_size, int ratio,
         TV slots, TV lengths, uintptr_t stream) {
        spmla_window_indices_args_t a = SPMLA_WINDOW_INDICES_ARGS_INIT;
        a.positions = T(positions);
        a.token_to_req = T(token_to_req);
        a.block_table = T(block_table);
        a.block_size = block_size;
        a.ratio = ratio;
        a.slots = T(slots);
        a.lengths = T(lengths);
        h.call([&](spmla_handle_t hh) { return spmla_window_indices_run(hh, &a, S(stream)); });
      },
      py::arg("handle"), py::arg("positions"), py::arg("token_to_req"), py::arg("block_table"),
      py::arg("block_size"), py::arg("ratio"), py::arg("slots"), py::arg("lengths"),
      py::arg("stream"));

  // --- 4. indexer_logits ----------------------------------------------------------------------
  m.def(
      "indexer_logits_workspace_size",
      [](Handle &h, TV q, TV k, TV k_scale, TV weights, TV k_start, TV k_end, TV logits) {
        spmla_indexer_logits_args_t a = SPMLA_INDEXER_LOGITS_ARGS_INIT;
        a.q = T(q); a.k = T(k); a.k_scale = T(k_scale); a.weights = T(weights);
        a.k_start = T(k_start); a.k_end = T(k_end); a.logits = T(logits);
        size_t bytes = 0;
        h.call([&](spmla_handle_t hh) {
          return spmla_indexer_logits_get_workspace_size(hh, &a, &bytes);
        });
        return bytes;
      },
      py::arg("handle"), py::arg("q"), py::arg("k"), py::arg("k_scale"), py::arg("weights"),
      py::arg("k_start"), py::arg("k_end"), py::arg("logits"));
  m.def(
      "indexer_logits",
      [](Handle &h, TV q, TV k, TV k_scale, TV weights, TV k_start, TV k_end, TV logits,
         TV workspace, uintptr_t stream) {
        spmla_indexer_logits_args_t a = SPMLA_INDEXER_LOGITS_ARGS_INIT;
        a.q = T(q); a.k = T(k); a.k_scale = T(k_scale); a.weights = T(weights);
        a.k_start = T(k_start); a.k_end = T(k_end); a.logits = T(logits);
        Workspace w = workspace_of(workspace);
        h.call([&](spmla_handle_t hh) {
          return spmla_indexer_logits_run(hh, &a, w.ptr, w.bytes, S(stream));
        });
      },
      py::arg("handle"), py::arg("q"), py::arg("k"), py::arg("k_scale"), py::arg("weights"),
      py::arg("k_start"), py::arg("k_end"), py::arg("logits"), py::arg("workspace"),
      py::arg("stream"));
  m.def(
      "indexer_logits_paged_workspace_size",
      [](Handle &h, TV q, CV cache, TV block_table, TV context_lens, TV weights, TV logits) {
        spmla_indexer_logits_paged_args_t a = SPMLA_INDEXER_LOGITS_PAGED_ARGS_INIT;
        a.q = T(q); a.cache = C(cache); a.block_table = T(block_table);
        a.context_lens = T(context_lens); a.weights = T(weights); a.logits = T(logits);
        size_t bytes = 0;
        h.call([&](spmla_handle_t hh) {
          return spmla_indexer_logits_paged_get_workspace_size(hh, &a, &bytes);
        });
        return bytes;
      },
      py::arg("handle"), py::arg("q"), py::arg("cache"), py::arg("block_table"),
      py::arg("context_lens"), py::arg("weights"), py::arg("logits"));
  m.def(
      "indexer_logits_paged",
      [](Handle &h, TV q, CV cache, TV block_table, TV context_lens, TV weights, TV logits,
         TV workspace, uintptr_t stream) {
        spmla_indexer_logits_paged_args_t a = SPMLA_INDEXER_LOGITS_PAGED_ARGS_INIT;
        a.q = T(q); a.cache = C(cache); a.block_table = T(block_table);
        a.context_lens = T(context_lens); a.weights = T(weights); a.logits = T(logits);
        Workspace w = workspace_of(workspace);
        h.call([&](spmla_handle_t hh) {
          return spmla_indexer_logits_paged_run(hh, &a, w.ptr, w.bytes, S(stream));
        });
      },
      py::arg("handle"), py::arg("q"), py::arg("cache"), py::arg("block_table"),
      py::arg("context_lens"), py::arg("weights"), py::arg("logits"), py::arg("workspace"),
      py::arg("stream"));

  // --- 5. topk_per_row ------------------------------------------------------------------------
  m.def(
      "topk_per_row_workspace_size",
      [](Handle &h, TV logits, TV row_starts, TV row_ends, TV context_lens, int next_n,
         TV indices) {
        spmla_topk_per_row_args_t a = SPMLA_TOPK_PER_ROW_ARGS_INIT;
        a.logits = T(logits); a.row_starts = T(row_starts); a.row_ends = T(row_ends);
        a.context_lens = T(context_lens); a.next_n = next_n; a.indices = T(indices);
        size_t bytes = 0;
        h.call([&](spmla_handle_t hh) {
          return spmla_topk_per_row_get_workspace_size(hh, &a, &bytes);
        });
        return bytes;
      },
      py::arg("handle"), py::arg("logits"), py::arg("row_starts"), py::arg("row_ends"),
      py::arg("context_lens"), py::arg("next_n"), py::arg("indices"));
  m.def(
      "topk_per_row",
      [](Handle &h, TV logits, TV row_starts, TV row_ends, TV context_lens, int next_n,
         TV indices, TV workspace, uintptr_t stream) {
        spmla_topk_per_row_args_t a = SPMLA_TOPK_PER_ROW_ARGS_INIT;
        a.logits = T(logits); a.row_starts = T(row_starts); a.row_ends = T(row_ends);
        a.context_lens = T(context_lens); a.next_n = next_n; a.indices = T(indices);
        Workspace w = workspace_of(workspace);
        h.call([&](spmla_handle_t hh) {
          return spmla_topk_per_row_run(hh, &a, w.ptr, w.bytes, S(stream));
        });
      },
      py::arg("handle"), py::arg("logits"), py::arg("row_starts"), py::arg("row_ends"),
      py::arg("context_lens"), py::arg("next_n"), py::arg("indices"), py::arg("workspace"),
      py::arg("stream"));

  // --- 6. kv_cache_store   7. kv_cache_gather -------------------------------------------------
  m.def(
      "kv_cache_store",
      [](Handle &h, TV kv, TV slot_mapping, CV cache, uintptr_t stream) {
        spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
        a.kv = T(kv); a.slot_mapping = T(slot_mapping); a.cache = C(cache);
        if (cache && cache->data().readonly()) {
          raise_invalid("argument '" + cache->data().name() +
                        "': the cache array is read-only but kv_cache_store writes to it");
        }
        h.call([&](spmla_handle_t hh) { return spmla_kv_cache_store_run(hh, &a, S(stream)); });
      },
      py::arg("handle"), py::arg("kv"), py::arg("slot_mapping"), py::arg("cache"),
      py::arg("stream"));
  m.def(
      "kv_cache_gather",
      [](Handle &h, CV cache, TV slots, TV out, uintptr_t stream) {
        spmla_kv_cache_gather_args_t a = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
        a.cache = C(cache); a.slots = T(slots); a.out = T(out);
        h.call([&](spmla_handle_t hh) { return spmla_kv_cache_gather_run(hh, &a, S(stream)); });
      },
      py::arg("handle"), py::arg("cache"), py::arg("slots"), py::arg("out"), py::arg("stream"));

  // --- memory helpers (tests and tools; engines use their framework's allocator) ---------------
  m.def(
      "stream_synchronize",
      [](Handle &h, uintptr_t stream) {
        h.call([&](spmla_handle_t hh) { return spmla_stream_synchronize(hh, S(stream)); });
      },
      py::arg("handle"), py::arg("stream"));
}
