// module.cpp — spmla._spmla, the pybind11 extension over the spmla C ABI.
//
// The extension is deliberately thin: it turns Python arrays into spmla tensors (TensorView,
// CacheView), calls the C functions with the GIL released and turns a failed status into the
// matching spmla exception carrying the C message. Policy (which backend, which stream, how
// outputs are allocated) lives in the pure-Python package.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

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
      .def_property_readonly("device", &Handle::device);

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
