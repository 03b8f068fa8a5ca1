// test_validation.cpp — every failure path of every entry point returns the exact status, a
// message naming the function and the argument, and leaves the outputs untouched.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "fixture_support.h"
#include "spmla.h"

using namespace fixtures;

namespace {

enum class Scope { All, RunOnly };

// Applies `mutate` to a fresh fixture and checks every entry point of the op. With
// Scope::RunOnly (data-pointer rules), the workspace query must instead succeed.
void expect_fail(const Factory &factory, const std::function<void(Fixture &)> &mutate,
                 spmla_status_t want, const std::string &arg, Scope scope = Scope::All,
                 const std::string &also = "") {
  auto fx = make(factory);
  mutate(*fx);
  for (auto &c : fx->calls()) {
    fx->poison_outputs();
    spmla_clear_last_error();
    const spmla_status_t st = c.f(cpu_handle());
    const std::string msg = spmla_last_error_message();
    INFO(c.fn << " / " << arg << ": " << spmla_status_string(st) << ": " << msg);
    if (c.query && scope == Scope::RunOnly) {
      CHECK(st == SPMLA_STATUS_SUCCESS);
      continue;
    }
    CHECK(st == want);
    CHECK(msg.find(c.fn + ": ") == 0);
    CHECK(msg.find(arg) != std::string::npos);
    if (!also.empty()) CHECK(msg.find(also) != std::string::npos);
    CHECK(fx->outputs_untouched());
  }
}

bool accepted(spmla_status_t st) {
  // Validation passed: the backend ran (or said it cannot do this valid request).
  return st == SPMLA_STATUS_SUCCESS || st == SPMLA_STATUS_UNSUPPORTED;
}

void expect_ok(const Factory &factory, const std::function<void(Fixture &)> &mutate) {
  auto fx = make(factory);
  mutate(*fx);
  for (auto &c : fx->calls()) {
    spmla_clear_last_error();
    const spmla_status_t st = c.f(cpu_handle());
    INFO(c.fn << ": " << spmla_status_string(st) << ": " << spmla_last_error_message());
    CHECK(accepted(st));
  }
}

std::string dimname(const char *t, int d) {
  return std::string(t) + ".shape[" + std::to_string(d) + "]";
}
std::string stridename(const char *t, int d) {
  return std::string(t) + ".strides[" + std::to_string(d) + "]";
}

// The generic tensor rules applied to argument `name` of the fixture.
void generic_tensor_cases(const Factory &f, const TensorArg &ta) {
  const std::string n = ta.name;
  const spmla_tensor_t &t0 = *ta.t;
  const int nd = t0.ndim;
  const int64_t es = static_cast<int64_t>(spmla_dtype_size(t0.dtype));
  auto on = [n](Fixture &fx) { return fx.find(n)->t; };
  SECTION(n + " rules") {
    if (ta.required)
      expect_fail(f, [&](Fixture &fx) {
        // Clear the args member that points at the tensor: find it by value.
        spmla_tensor_t *t = on(fx);
        // Every args struct stores const spmla_tensor_t* members; scan the struct for it.
        auto *bytes = reinterpret_cast<unsigned char *>(fx.struct_size());
        for (size_t off = 0; off + sizeof(void *) <= fx.args_size(); off += sizeof(void *)) {
          const spmla_tensor_t *p;
          std::memcpy(&p, bytes + off, sizeof p);
          if (p == t) {
            const spmla_tensor_t *z = nullptr;
            std::memcpy(bytes + off, &z, sizeof z);
          }
        }
      }, SPMLA_STATUS_INVALID_ARGUMENT, n + ": expected a tensor");
    expect_fail(f, [&](Fixture &fx) { on(fx)->struct_size = 8; }, SPMLA_STATUS_INVALID_ARGUMENT,
                n + "->struct_size");
    expect_fail(f, [&](Fixture &fx) { on(fx)->dtype = SPMLA_DTYPE_UE8M0; },
                SPMLA_STATUS_INVALID_ARGUMENT, n + ".dtype");
    expect_fail(f, [&](Fixture &fx) { on(fx)->dtype = static_cast<spmla_dtype_t>(77); },
                SPMLA_STATUS_INVALID_ARGUMENT, n + ".dtype");
    expect_fail(f, [&](Fixture &fx) { on(fx)->ndim = nd + 1; }, SPMLA_STATUS_INVALID_ARGUMENT,
                n + ".ndim");
    expect_fail(f, [&](Fixture &fx) { on(fx)->ndim = -1; }, SPMLA_STATUS_INVALID_ARGUMENT,
                n + ".ndim");
    expect_fail(f, [&](Fixture &fx) { on(fx)->shape[0] = -1; }, SPMLA_STATUS_INVALID_ARGUMENT,
                dimname(ta.name, 0));
    expect_fail(f, [&](Fixture &fx) { on(fx)->shape[nd - 1] = int64_t(1) << 31; },
                SPMLA_STATUS_SIZE_OVERFLOW, dimname(ta.name, nd - 1));
    expect_fail(f, [&](Fixture &fx) { on(fx)->strides[0] = -1; }, SPMLA_STATUS_INVALID_ARGUMENT,
                stridename(ta.name, 0));
    if (t0.shape[nd - 1] > 1)
      expect_fail(f, [&](Fixture &fx) { on(fx)->strides[nd - 1] = 2; },
                  SPMLA_STATUS_INVALID_ARGUMENT, stridename(ta.name, nd - 1), Scope::All,
                  "innermost");
    if (nd >= 2)
      expect_fail(f, [&](Fixture &fx) {
        on(fx)->shape[0] = std::max<int64_t>(on(fx)->shape[0], 3);
        on(fx)->strides[0] = std::numeric_limits<int64_t>::max() / 2 + 16;
      }, SPMLA_STATUS_SIZE_OVERFLOW, stridename(ta.name, 0));
    // Data-pointer rules (skipped by workspace queries).
    expect_fail(f, [&](Fixture &fx) { on(fx)->data = nullptr; }, SPMLA_STATUS_INVALID_ARGUMENT,
                n + ".data", Scope::RunOnly);
    if (es > 1)
      expect_fail(f, [&](Fixture &fx) {
        on(fx)->data = static_cast<unsigned char *>(on(fx)->data) + 1;
      }, SPMLA_STATUS_MISALIGNED, n + ".data", Scope::RunOnly);
    if (ta.align16) {
      expect_fail(f, [&](Fixture &fx) {
        on(fx)->data = static_cast<unsigned char *>(on(fx)->data) + (es == 1 ? 8 : 2 * es);
      }, SPMLA_STATUS_MISALIGNED, n + ".data", Scope::RunOnly, "16-byte");
      expect_fail(f, [&](Fixture &fx) { on(fx)->strides[0] += 1; }, SPMLA_STATUS_MISALIGNED,
                  stridename(ta.name, 0));
    }
    int64_t bytes = es;
    for (int d = 0; d < nd; ++d) bytes *= t0.shape[d];
    if (bytes >= 16)  // the highest 16-aligned address leaves 15 bytes before the wrap
      expect_fail(f, [&](Fixture &fx) {
        on(fx)->data = reinterpret_cast<void *>(~uintptr_t(15));
      }, SPMLA_STATUS_SIZE_OVERFLOW, n + ".data", Scope::RunOnly);
    if (ta.output && nd >= 2) {
      // Rows overlapping each other: an output must not alias itself.
      expect_fail(f, [&](Fixture &fx) { on(fx)->strides[0] = 0; },
                  SPMLA_STATUS_INVALID_ARGUMENT, stridename(ta.name, 0), Scope::All, "overlap");
      if (nd == 3)
        expect_fail(f, [&](Fixture &fx) { on(fx)->strides[0] = on(fx)->strides[1]; },
                    SPMLA_STATUS_INVALID_ARGUMENT, stridename(ta.name, 0), Scope::All, "overlap");
    }
  }
}

void generic_cache_cases(const Factory &f, const std::string &n, bool attention) {
  auto on = [n](Fixture &fx) { return fx.find_cache(n); };
  const auto INV = SPMLA_STATUS_INVALID_ARGUMENT;
  SECTION(n + " cache rules") {
    expect_fail(f, [&](Fixture &fx) { on(fx)->struct_size = 8; }, INV, n + "->struct_size");
    expect_fail(f, [&](Fixture &fx) { on(fx)->layout = SPMLA_KV_LAYOUT_INVALID; }, INV,
                n + ".layout");
    expect_fail(f, [&](Fixture &fx) { on(fx)->layout = static_cast<spmla_kv_layout_t>(99); },
                INV, n + ".layout");
    expect_fail(f, [&](Fixture &fx) { on(fx)->fp8_flavor = static_cast<spmla_fp8_flavor_t>(7); },
                INV, n + ".fp8_flavor");
    expect_fail(f, [&](Fixture &fx) { on(fx)->head_dim = 100; }, INV, n + ".head_dim");
    expect_fail(f, [&](Fixture &fx) { on(fx)->block_size = 0; }, INV, n + ".block_size");
    expect_fail(f, [&](Fixture &fx) { on(fx)->block_size = (1 << 20) + 1; }, INV,
                n + ".block_size");
    expect_fail(f, [&](Fixture &fx) { on(fx)->num_pages = -1; }, INV, n + ".num_pages");
    expect_fail(f, [&](Fixture &fx) { on(fx)->page_stride_bytes = 16; }, INV,
                n + ".page_stride_bytes");
    expect_fail(f, [&](Fixture &fx) {
      size_t pb = 0;
      spmla_kv_cache_page_bytes(on(fx), &pb);
      on(fx)->page_stride_bytes = static_cast<int64_t>(pb) + 8;
    }, INV, n + ".page_stride_bytes");
    expect_fail(f, [&](Fixture &fx) { on(fx)->num_pages = std::numeric_limits<int64_t>::max() / 4; },
                SPMLA_STATUS_SIZE_OVERFLOW, n + ".num_pages");
    expect_fail(f, [&](Fixture &fx) { on(fx)->data = nullptr; }, INV, n + ".data", Scope::RunOnly);
    expect_fail(f, [&](Fixture &fx) {
      on(fx)->data = static_cast<unsigned char *>(on(fx)->data) + 8;
    }, SPMLA_STATUS_MISALIGNED, n + ".data", Scope::RunOnly);
    expect_fail(f, [&](Fixture &fx) {
      on(fx)->data = reinterpret_cast<void *>(~uintptr_t(15));
    }, SPMLA_STATUS_SIZE_OVERFLOW, n + ".data", Scope::RunOnly);
    if (attention) {
      // Flavor / layout combinations on an attention cache (head_dim 576 or 512 kept).
      expect_fail(f, [&](Fixture &fx) { on(fx)->fp8_flavor = SPMLA_FP8_E4M3FN; }, INV,
                  n + ".fp8_flavor", Scope::All, "NONE");
      expect_fail(f, [&](Fixture &fx) {
        on(fx)->layout = SPMLA_KV_LAYOUT_FP8_PER_TENSOR;
        on(fx)->fp8_flavor = SPMLA_FP8_NONE;
      }, INV, n + ".fp8_flavor", Scope::All, "E4M3FN or E4M3FNUZ");
      for (float bad : {0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN(),
                        std::numeric_limits<float>::infinity()})
        expect_fail(f, [&](Fixture &fx) {
          on(fx)->layout = SPMLA_KV_LAYOUT_FP8_PER_TENSOR;
          on(fx)->fp8_flavor = SPMLA_FP8_E4M3FNUZ;
          on(fx)->scale = bad;
        }, INV, n + ".scale");
      expect_fail(f, [&](Fixture &fx) {
        on(fx)->layout = SPMLA_KV_LAYOUT_INDEXER_FP8;
        on(fx)->fp8_flavor = SPMLA_FP8_E4M3FN;
        on(fx)->head_dim = 64;
      }, INV, n + ".layout", Scope::All, "INDEXER_FP8");
    }
  }
}

void generic_call_cases(const Factory &f) {
  SECTION("handle and args") {
    auto fx = make(f);
    std::vector<Call> nulls;
    fx->null_args_calls(nulls);
    for (auto &c : nulls) {
      fx->poison_outputs();
      INFO(c.fn);
      CHECK(c.f(cpu_handle()) == SPMLA_STATUS_INVALID_ARGUMENT);
      const std::string msg = spmla_last_error_message();
      CHECK(msg.find(c.fn + ": args: expected") == 0);
      CHECK(fx->outputs_untouched());
    }
    for (auto &c : fx->calls()) {
      fx->poison_outputs();
      INFO(c.fn);
      CHECK(c.f(nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);
      CHECK(std::string(spmla_last_error_message()).find(c.fn + ": handle: expected") == 0);
      CHECK(fx->outputs_untouched());
    }
    const size_t good = *fx->struct_size();
    for (size_t bad : {size_t(0), size_t(8), good - 1}) {
      *fx->struct_size() = bad;
      for (auto &c : fx->calls()) {
        fx->poison_outputs();
        INFO(c.fn << " struct_size " << bad);
        CHECK(c.f(cpu_handle()) == SPMLA_STATUS_INVALID_ARGUMENT);
        CHECK(std::string(spmla_last_error_message()).find("args->struct_size") != std::string::npos);
        CHECK(fx->outputs_untouched());
      }
    }
    // A newer caller's bigger struct (zero tail accepted, non-zero tail ABI_MISMATCH, absurd
    // sizes refused): tests/test_struct_size.cpp.
  }
}

void run_all_generic(const std::string &name, const Factory &f) {
  auto probe = f();
  SECTION(name + ": baseline is valid") { expect_ok(f, [](Fixture &) {}); }
  generic_call_cases(f);
  for (const auto &ta : probe->tensors) generic_tensor_cases(f, ta);
  for (const auto &ca : probe->caches)
    generic_cache_cases(f, ca.name, std::string(probe->op()).find("sparse") == 0);
}

const auto INV = SPMLA_STATUS_INVALID_ARGUMENT;

template <class F>
Factory fac() {
  return [] { return std::unique_ptr<Fixture>(new F); };
}
template <class F>
F &as(Fixture &fx) {
  return static_cast<F &>(fx);
}

}  // namespace

TEST_CASE("validation: generic rules of sparse_attention", "[validation]") {
  run_all_generic("sparse_attention", fac<SparseAttention>());
}
TEST_CASE("validation: generic rules of indices_to_slots", "[validation]") {
  run_all_generic("indices_to_slots", fac<IndicesToSlots>());
}
TEST_CASE("validation: generic rules of window_indices", "[validation]") {
  run_all_generic("window_indices", fac<WindowIndices>());
}
TEST_CASE("validation: generic rules of indexer_logits", "[validation]") {
  run_all_generic("indexer_logits", fac<IndexerLogits>());
}
TEST_CASE("validation: generic rules of indexer_logits_paged", "[validation]") {
  run_all_generic("indexer_logits_paged", fac<IndexerLogitsPaged>());
}
TEST_CASE("validation: generic rules of topk_per_row", "[validation]") {
  run_all_generic("topk_per_row", fac<TopkPerRow>());
  run_all_generic("topk_per_row_paged", fac<TopkPaged>());
}
TEST_CASE("validation: generic rules of kv_cache_store", "[validation]") {
  run_all_generic("kv_cache_store", fac<KvCacheStore>());
}
TEST_CASE("validation: generic rules of kv_cache_gather", "[validation]") {
  run_all_generic("kv_cache_gather", fac<KvCacheGather>());
}

TEST_CASE("validation: sparse_attention shapes and combinations", "[validation]") {
  auto f = fac<SparseAttention>();
  using S = SparseAttention;
  auto A = [](Fixture &fx) -> spmla_sparse_attention_args_t & { return as<S>(fx).a; };
  auto T = [](Fixture &fx, const char *n) { return fx.find(n)->t; };
  expect_fail(f, [&](Fixture &fx) { T(fx, "q")->shape[1] = 0; }, INV, "q.shape[1] (H)");
  expect_fail(f, [&](Fixture &fx) { T(fx, "q")->shape[1] = 129; }, INV, "q.shape[1] (H)", Scope::All,
              "1..128");
  expect_fail(f, [&](Fixture &fx) { T(fx, "q")->shape[2] = 512; }, INV, "q.shape[2]", Scope::All,
              "kv.head_dim");
  expect_fail(f, [&](Fixture &fx) { T(fx, "indices")->shape[0] = 1; }, INV, "indices.shape[0]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "indices")->shape[1] = 0; }, INV, "indices.shape[1] (K)");
  expect_fail(f, [&](Fixture &fx) { T(fx, "lengths")->shape[0] = 3; }, INV, "lengths.shape[0]");
  expect_fail(f, [&](Fixture &fx) { A(fx).extra_kv = nullptr; }, INV, "extra_indices",
              Scope::All, "no extra_kv");
  expect_fail(f, [&](Fixture &fx) {
    A(fx).extra_kv = nullptr;
    A(fx).extra_indices = nullptr;
  }, INV, "extra_lengths", Scope::All, "no extra_kv");
  expect_fail(f, [&](Fixture &fx) { A(fx).extra_indices = nullptr; }, INV, "extra_indices",
              Scope::All, "extra_kv is given");
  expect_fail(f, [&](Fixture &fx) { fx.find_cache("extra_kv")->head_dim = 512; }, INV,
              "extra_kv.head_dim");
  expect_fail(f, [&](Fixture &fx) { T(fx, "extra_indices")->shape[1] = 0; }, INV,
              "extra_indices.shape[1] (K2)");
  expect_fail(f, [&](Fixture &fx) { T(fx, "extra_indices")->shape[0] = 1; }, INV,
              "extra_indices.shape[0]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "extra_lengths")->shape[0] = 1; }, INV,
              "extra_lengths.shape[0]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "attn_sink")->shape[0] = 3; }, INV, "attn_sink.shape[0]");
  expect_fail(f, [&](Fixture &fx) { A(fx).scale = std::nanf(""); }, INV, "args->scale");
  expect_fail(f, [&](Fixture &fx) { A(fx).scale = INFINITY; }, INV, "args->scale");
  expect_fail(f, [&](Fixture &fx) { T(fx, "out")->shape[2] = 256; }, INV, "out.shape[2]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "out")->shape[1] = 3; }, INV, "out.shape[1]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "out")->shape[0] = 1; }, INV, "out.shape[0]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "lse")->shape[0] = 1; }, INV, "lse.shape[0]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "lse")->shape[1] = 3; }, INV, "lse.shape[1]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "max_logits")->shape[1] = 2; }, INV,
              "max_logits.shape[1]");
  expect_fail(f, [&](Fixture &fx) { A(fx).kv = nullptr; }, INV, "kv: expected a KV cache");
  // Valid variations: optional arguments absent, a negative scale, every attention layout.
  expect_ok(f, [&](Fixture &fx) {
    A(fx).lengths = nullptr;
    A(fx).extra_kv = nullptr;
    A(fx).extra_indices = nullptr;
    A(fx).extra_lengths = nullptr;
    A(fx).attn_sink = nullptr;
    A(fx).max_logits = nullptr;
    A(fx).scale = 0.125f;
  });
  expect_ok(f, [&](Fixture &fx) {
    // Same bytes reinterpreted as a V32_FP8 cache (656 B/token < 2*576 B/token).
    auto *c = fx.find_cache("kv");
    c->layout = SPMLA_KV_LAYOUT_V32_FP8;
    c->fp8_flavor = SPMLA_FP8_E4M3FN;
    c->head_dim = 0;
    auto *e = fx.find_cache("extra_kv");
    e->layout = SPMLA_KV_LAYOUT_FP8_PER_TENSOR;
    e->fp8_flavor = SPMLA_FP8_E4M3FNUZ;
    e->scale = 0.5f;
  });
  // Empty token set (T = 0) is valid, with NULL data everywhere it has no elements.
  expect_ok(f, [&](Fixture &fx) {
    for (const char *n : {"q", "indices", "lengths", "extra_indices", "extra_lengths", "out",
                          "lse", "max_logits"}) {
      T(fx, n)->shape[0] = 0;
      T(fx, n)->data = nullptr;
    }
  });
  // Query without any data pointers.
  {
    auto fx = make(f);
    for (auto &t : fx->tensors) t.t->data = nullptr;
    for (auto &c : fx->caches) c.c->data = nullptr;
    size_t ws = kSizeSentinel;
    CHECK(spmla_sparse_attention_get_workspace_size(cpu_handle(), &as<S>(*fx).a, &ws) ==
          SPMLA_STATUS_SUCCESS);
    CHECK(ws != kSizeSentinel);
    CHECK(spmla_sparse_attention_get_workspace_size(cpu_handle(), &as<S>(*fx).a, nullptr) == INV);
    CHECK(std::string(spmla_last_error_message()).find("workspace_bytes") != std::string::npos);
  }
  // Strided (padded) q and out views are valid; a size-1 inner dim may have any stride.
  expect_ok(f, [&](Fixture &fx) {
    T(fx, "q")->shape[0] = 1;
    T(fx, "q")->strides[0] = 2 * 4 * 576;
    T(fx, "out")->shape[1] = 4;
    T(fx, "out")->shape[0] = 1;
    for (const char *n : {"indices", "lengths", "extra_indices", "extra_lengths", "lse", "max_logits"})
      T(fx, n)->shape[0] = 1;
    T(fx, "out")->strides[0] = 2 * 4 * 512;
  });
}

TEST_CASE("validation: workspace arguments", "[validation]") {
  // The CPU backend needs no workspace; WORKSPACE_TOO_SMALL against a real requirement is
  // proven with the fake plugin in test_registry ("dispatch").
  for (auto &entry : all_fixtures()) {
    if (entry.first.find("sparse") == std::string::npos &&
        entry.first.find("indexer") == std::string::npos &&
        entry.first.find("topk") == std::string::npos)
      continue;
    SECTION(entry.first) {
      expect_fail(entry.second, [](Fixture &fx) {
        fx.ws_bytes = 64;
        fx.ws_null = true;
      }, SPMLA_STATUS_INVALID_ARGUMENT, "workspace: expected non-NULL", Scope::RunOnly);
      expect_fail(entry.second, [](Fixture &fx) {
        fx.ws_bytes = 64;
        fx.ws_offset = 4;
      }, SPMLA_STATUS_MISALIGNED, "workspace: expected 16-byte", Scope::RunOnly);
      // NULL with size 0 is fine when the backend needs none.
      auto fx = make(entry.second);
      if (fx->ws_bytes == 0) {
        expect_ok(entry.second, [](Fixture &f) {
          f.ws_null = true;
          f.ws_bytes = 0;
        });
      } else {
        expect_fail(entry.second, [](Fixture &f) { f.ws_bytes -= 1; },
                    SPMLA_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes", Scope::RunOnly);
      }
    }
  }
}

TEST_CASE("validation: indices_to_slots and window_indices specifics", "[validation]") {
  auto f = fac<IndicesToSlots>();
  auto A = [](Fixture &fx) -> spmla_indices_to_slots_args_t & { return as<IndicesToSlots>(fx).a; };
  auto T = [](Fixture &fx, const char *n) { return fx.find(n)->t; };
  expect_fail(f, [&](Fixture &fx) { A(fx).block_size = 0; }, INV, "args->block_size");
  expect_fail(f, [&](Fixture &fx) { A(fx).block_size = -4; }, INV, "args->block_size");
  expect_fail(f, [&](Fixture &fx) { T(fx, "token_to_req")->shape[0] = 2; }, INV,
              "token_to_req.shape[0]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "token_valid")->shape[0] = 4; }, INV,
              "token_valid.shape[0]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "slots")->shape[1] = 3; }, INV, "slots.shape[1]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "slots")->shape[0] = 2; }, INV, "slots.shape[0]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "lengths")->shape[0] = 2; }, INV, "lengths.shape[0]");
  expect_fail(f, [&](Fixture &fx) { A(fx).ragged_slots = nullptr; }, INV, "ragged_slots",
              Scope::All, "both or neither");
  expect_fail(f, [&](Fixture &fx) { A(fx).indptr = nullptr; }, INV, "indptr", Scope::All,
              "both or neither");
  expect_fail(f, [&](Fixture &fx) { T(fx, "indptr")->shape[0] = 3; }, INV, "indptr.shape[0]",
              Scope::All, "T + 1");
  expect_fail(f, [&](Fixture &fx) { T(fx, "ragged_slots")->shape[0] = 11; }, INV,
              "ragged_slots.shape[0]", Scope::All, ">= 12");
  expect_ok(f, [&](Fixture &fx) {
    A(fx).indptr = nullptr;
    A(fx).ragged_slots = nullptr;
    A(fx).token_valid = nullptr;
  });

  auto w = fac<WindowIndices>();
  auto W = [](Fixture &fx) -> spmla_window_indices_args_t & { return as<WindowIndices>(fx).a; };
  expect_fail(w, [&](Fixture &fx) { W(fx).ratio = 0; }, INV, "args->ratio");
  expect_fail(w, [&](Fixture &fx) { W(fx).block_size = 0; }, INV, "args->block_size");
  expect_fail(w, [&](Fixture &fx) { T(fx, "slots")->shape[1] = 0; }, INV, "slots.shape[1] (W)");
  expect_fail(w, [&](Fixture &fx) { T(fx, "slots")->shape[0] = 2; }, INV, "slots.shape[0]");
  expect_fail(w, [&](Fixture &fx) { T(fx, "lengths")->shape[0] = 4; }, INV, "lengths.shape[0]");
  expect_fail(w, [&](Fixture &fx) { T(fx, "token_to_req")->shape[0] = 4; }, INV,
              "token_to_req.shape[0]");
  expect_ok(w, [&](Fixture &fx) { W(fx).ratio = 128; });
}

TEST_CASE("validation: indexer_logits specifics and FP8 flavors", "[validation]") {
  auto f = fac<IndexerLogits>();
  auto T = [](Fixture &fx, const char *n) { return fx.find(n)->t; };
  expect_fail(f, [&](Fixture &fx) { T(fx, "q")->shape[1] = 65; }, INV, "q.shape[1] (Hi)");
  expect_fail(f, [&](Fixture &fx) { T(fx, "q")->shape[1] = 0; }, INV, "q.shape[1] (Hi)");
  expect_fail(f, [&](Fixture &fx) { T(fx, "q")->shape[2] = 96; }, INV, "q.shape[2] (Di)");
  expect_fail(f, [&](Fixture &fx) { T(fx, "q")->dtype = SPMLA_DTYPE_BF16; }, INV, "q.dtype",
              Scope::All, "fp8_e4m3fn or fp8_e4m3fnuz");
  expect_fail(f, [&](Fixture &fx) { T(fx, "k")->dtype = FNUZ; }, INV, "k.dtype", Scope::All,
              "fp8_e4m3fn");
  expect_fail(f, [&](Fixture &fx) { T(fx, "k")->shape[1] = 128; }, INV, "k.shape[1]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "k_scale")->shape[0] = 5; }, INV, "k_scale.shape[0]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "weights")->shape[1] = 3; }, INV, "weights.shape[1]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "weights")->shape[0] = 1; }, INV, "weights.shape[0]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "k_start")->shape[0] = 1; }, INV, "k_start.shape[0]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "k_end")->shape[0] = 3; }, INV, "k_end.shape[0]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "logits")->shape[1] = 5; }, INV, "logits.shape[1]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "logits")->shape[0] = 1; }, INV, "logits.shape[0]");
  // Both flavors are valid when q and k agree; the logits row stride is free.
  expect_ok(f, [&](Fixture &fx) {
    T(fx, "q")->dtype = FNUZ;
    T(fx, "k")->dtype = FNUZ;
    T(fx, "logits")->shape[0] = 1;
    T(fx, "logits")->strides[0] = 11;
    T(fx, "q")->shape[0] = 1;
    T(fx, "weights")->shape[0] = 1;
    T(fx, "k_start")->shape[0] = 1;
    T(fx, "k_end")->shape[0] = 1;
  });

  auto p = fac<IndexerLogitsPaged>();
  expect_fail(p, [&](Fixture &fx) { T(fx, "q")->dtype = FNUZ; }, INV, "q.dtype", Scope::All,
              "cache.fp8_flavor is E4M3FN");
  {
    // The message names both flavors.
    auto fx = make(p);
    T(*fx, "q")->dtype = FNUZ;
    CHECK(spmla_indexer_logits_paged_run(cpu_handle(), &as<IndexerLogitsPaged>(*fx).a, nullptr, 0,
                                         nullptr) == INV);
    const std::string msg = spmla_last_error_message();
    CHECK(msg.find("fp8_e4m3fnuz") != std::string::npos);
    CHECK(msg.find("E4M3FN") != std::string::npos);
  }
  expect_fail(p, [&](Fixture &fx) { fx.find_cache("cache")->fp8_flavor = SPMLA_FP8_E4M3FNUZ; },
              INV, "q.dtype", Scope::All, "E4M3FNUZ");
  expect_ok(p, [&](Fixture &fx) {
    fx.find_cache("cache")->fp8_flavor = SPMLA_FP8_E4M3FNUZ;
    T(fx, "q")->dtype = FNUZ;
  });
  expect_fail(p, [&](Fixture &fx) {
    auto *c = fx.find_cache("cache");
    c->layout = SPMLA_KV_LAYOUT_BF16;
    c->fp8_flavor = SPMLA_FP8_NONE;
    c->head_dim = 512;
    c->num_pages = 0;
  }, INV, "cache.layout", Scope::All, "INDEXER_FP8");
  expect_fail(p, [&](Fixture &fx) { fx.find_cache("cache")->fp8_flavor = SPMLA_FP8_NONE; }, INV,
              "cache.fp8_flavor");
  expect_fail(p, [&](Fixture &fx) { fx.find_cache("cache")->head_dim = 128; }, INV,
              "cache.head_dim", Scope::All, "Di");
  expect_fail(p, [&](Fixture &fx) { T(fx, "q")->shape[2] = 65; }, INV, "q.shape[2] (Hi)");
  expect_fail(p, [&](Fixture &fx) { T(fx, "q")->shape[3] = 32; }, INV, "q.shape[3] (Di)");
  expect_fail(p, [&](Fixture &fx) { T(fx, "block_table")->shape[0] = 1; }, INV,
              "block_table.shape[0]");
  expect_fail(p, [&](Fixture &fx) { T(fx, "context_lens")->shape[0] = 3; }, INV,
              "context_lens.shape[0]");
  expect_fail(p, [&](Fixture &fx) { T(fx, "weights")->shape[0] = 2; }, INV, "weights.shape[0]",
              Scope::All, "B * N");
  expect_fail(p, [&](Fixture &fx) { T(fx, "weights")->shape[1] = 2; }, INV, "weights.shape[1]");
  expect_fail(p, [&](Fixture &fx) { T(fx, "logits")->shape[0] = 3; }, INV, "logits.shape[0]");
}

TEST_CASE("validation: topk_per_row specifics", "[validation]") {
  auto f = fac<TopkPerRow>();
  auto A = [](Fixture &fx) -> spmla_topk_per_row_args_t & { return as<TopkPerRow>(fx).a; };
  auto T = [](Fixture &fx, const char *n) { return fx.find(n)->t; };
  expect_fail(f, [&](Fixture &fx) { A(fx).next_n = 0; }, INV, "args->next_n");
  expect_fail(f, [&](Fixture &fx) { T(fx, "row_starts")->shape[0] = 3; }, INV, "row_starts.shape[0]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "row_ends")->shape[0] = 5; }, INV, "row_ends.shape[0]");
  expect_fail(f, [&](Fixture &fx) { T(fx, "indices")->shape[1] = 0; }, INV, "indices.shape[1] (k)");
  expect_fail(f, [&](Fixture &fx) { T(fx, "indices")->shape[0] = 3; }, INV, "indices.shape[0]");
  expect_ok(f, [&](Fixture &fx) { A(fx).row_starts = nullptr; });
  expect_ok(f, [&](Fixture &fx) { A(fx).row_ends = nullptr; });
  expect_ok(f, [&](Fixture &fx) {
    T(fx, "logits")->shape[0] = 2;
    T(fx, "logits")->strides[0] = 20;  // row stride free
    for (const char *n : {"row_starts", "row_ends", "indices"}) T(fx, n)->shape[0] = 2;
  });

  auto p = fac<TopkPaged>();
  auto P = [](Fixture &fx) -> spmla_topk_per_row_args_t & { return as<TopkPaged>(fx).a; };
  expect_fail(p, [&](Fixture &fx) { P(fx).next_n = 3; }, INV, "logits.shape[0] (R)", Scope::All,
              "multiple of next_n");
  expect_fail(p, [&](Fixture &fx) { P(fx).next_n = 4; }, INV, "context_lens.shape[0]");
  expect_fail(p, [&](Fixture &fx) { P(fx).next_n = -1; }, INV, "args->next_n");
  expect_fail(p, [&](Fixture &fx) {
    static spmla_tensor_t starts;
    starts = *fx.find("context_lens")->t;
    starts.shape[0] = 4;
    P(fx).row_starts = &starts;
  }, INV, "context_lens", Scope::All, "row_starts");
  expect_fail(p, [&](Fixture &fx) {
    static spmla_tensor_t ends;
    ends = *fx.find("context_lens")->t;
    ends.shape[0] = 4;
    P(fx).row_ends = &ends;
  }, INV, "context_lens", Scope::All, "row_ends");
}

TEST_CASE("validation: kv_cache_store and kv_cache_gather specifics", "[validation]") {
  auto f = fac<KvCacheStore>();
  auto T = [](Fixture &fx, const char *n) { return fx.find(n)->t; };
  expect_fail(f, [&](Fixture &fx) { T(fx, "kv")->shape[1] = 512; }, INV, "kv.shape[1]",
              Scope::All, "cache.head_dim");
  expect_fail(f, [&](Fixture &fx) { T(fx, "slot_mapping")->dtype = F32; }, INV,
              "slot_mapping.dtype", Scope::All, "int32 or int64");
  expect_fail(f, [&](Fixture &fx) { T(fx, "slot_mapping")->shape[0] = 2; }, INV,
              "slot_mapping.shape[0]");
  expect_fail(f, [&](Fixture &fx) {
    as<KvCacheStore>(fx).a.cache = nullptr;
  }, INV, "cache: expected a KV cache");
  // Every layout is a valid destination, INDEXER_FP8 included (kv width = its Di), the V41
  // layouts in both arrangements.
  const auto DEF = SPMLA_KV_ARRANGEMENT_DEFAULT, TOK = SPMLA_KV_ARRANGEMENT_PER_TOKEN,
             BLK = SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED;
  for (auto cfg : {std::make_tuple(SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FN, 576, DEF),
                   std::make_tuple(SPMLA_KV_LAYOUT_V4_FP8, SPMLA_FP8_E4M3FNUZ, 512, DEF),
                   std::make_tuple(SPMLA_KV_LAYOUT_FP8_PER_TENSOR, SPMLA_FP8_E4M3FN, 512, DEF),
                   std::make_tuple(SPMLA_KV_LAYOUT_INDEXER_FP8, SPMLA_FP8_E4M3FN, 128, DEF),
                   std::make_tuple(SPMLA_KV_LAYOUT_INDEXER_FP8, SPMLA_FP8_E4M3FNUZ, 64, DEF),
                   std::make_tuple(SPMLA_KV_LAYOUT_V41_FP8, SPMLA_FP8_E4M3FNUZ, 512, TOK),
                   std::make_tuple(SPMLA_KV_LAYOUT_V41_FP8, SPMLA_FP8_E4M3FN, 512, BLK),
                   std::make_tuple(SPMLA_KV_LAYOUT_V41_FP4, SPMLA_FP8_E4M3FN, 512, TOK),
                   std::make_tuple(SPMLA_KV_LAYOUT_V41_FP4, SPMLA_FP8_E4M3FN, 512, BLK)}) {
    Factory g = [cfg] {
      return std::unique_ptr<Fixture>(
          new KvCacheStore(std::get<0>(cfg), std::get<1>(cfg), std::get<2>(cfg), std::get<3>(cfg)));
    };
    expect_ok(g, [](Fixture &) {});
    expect_ok(g, [](Fixture &fx) {
      // int64 slot ids are accepted too (reinterpret: 3 int64 need 24 bytes; buffer has 12+slack)
      auto *t = fx.find("slot_mapping")->t;
      t->dtype = I64;
      std::memset(t->data, 0xFF, 24);  // -1 everywhere: skip all rows
    });
  }

  auto g = fac<KvCacheGather>();
  expect_fail(g, [&](Fixture &fx) { T(fx, "out")->shape[1] = 256; }, INV, "out.shape[1]",
              Scope::All, "cache.head_dim");
  expect_fail(g, [&](Fixture &fx) { T(fx, "out")->shape[0] = 2; }, INV, "out.shape[0]");
  expect_fail(g, [&](Fixture &fx) { T(fx, "slots")->dtype = I64; }, INV, "slots.dtype");
  expect_ok(g, [&](Fixture &fx) {
    auto *c = fx.find_cache("cache");
    c->layout = SPMLA_KV_LAYOUT_V4_FP8;
    c->fp8_flavor = SPMLA_FP8_E4M3FN;
    c->head_dim = 0;
    c->num_pages = 1;
  });
}

TEST_CASE("validation: cache descriptors and their sizes", "[validation][abi]") {
  struct Case {
    spmla_kv_layout_t layout;
    spmla_fp8_flavor_t flavor;
    int32_t head_dim;
    bool ok;
    const char *arg;
  };
  const auto BF = SPMLA_KV_LAYOUT_BF16, PT = SPMLA_KV_LAYOUT_FP8_PER_TENSOR,
             V32 = SPMLA_KV_LAYOUT_V32_FP8, V4 = SPMLA_KV_LAYOUT_V4_FP8,
             IX = SPMLA_KV_LAYOUT_INDEXER_FP8;
  const auto NO = SPMLA_FP8_NONE, F = SPMLA_FP8_E4M3FN, U = SPMLA_FP8_E4M3FNUZ;
  const Case cases[] = {
      {BF, NO, 512, true, ""},           {BF, NO, 576, true, ""},
      {BF, NO, 0, false, "head_dim"},    {BF, F, 576, false, "fp8_flavor"},
      {BF, U, 512, false, "fp8_flavor"}, {PT, F, 512, true, ""},
      {PT, U, 576, true, ""},            {PT, NO, 576, false, "fp8_flavor"},
      {PT, F, 0, false, "head_dim"},     {V32, F, 0, true, ""},
      {V32, U, 576, true, ""},           {V32, F, 512, false, "head_dim"},
      {V32, NO, 576, false, "fp8_flavor"}, {V4, F, 0, true, ""},
      {V4, U, 512, true, ""},            {V4, F, 576, false, "head_dim"},
      {V4, NO, 0, false, "fp8_flavor"},  {IX, F, 64, true, ""},
      {IX, U, 128, true, ""},            {IX, F, 0, false, "head_dim"},
      {IX, F, 576, false, "head_dim"},   {IX, NO, 64, false, "fp8_flavor"},
  };
  for (const auto &c : cases) {
    spmla_kv_cache_t kv = SPMLA_KV_CACHE_INIT;
    kv.layout = c.layout;
    kv.fp8_flavor = c.flavor;
    kv.head_dim = c.head_dim;
    kv.block_size = 64;
    kv.num_pages = 3;
    size_t bytes = kSizeSentinel;
    const spmla_status_t st = spmla_kv_cache_page_bytes(&kv, &bytes);
    INFO(c.layout << "/" << c.flavor << "/" << c.head_dim << ": " << spmla_last_error_message());
    if (c.ok) {
      CHECK(st == SPMLA_STATUS_SUCCESS);
    } else {
      CHECK(st == INV);
      CHECK(bytes == kSizeSentinel);
      CHECK(std::string(spmla_last_error_message()).find(std::string("cache.") + c.arg) !=
            std::string::npos);
    }
  }
  auto page = [](spmla_kv_layout_t l, spmla_fp8_flavor_t fl, int32_t d, int32_t bs) {
    spmla_kv_cache_t kv = SPMLA_KV_CACHE_INIT;
    kv.layout = l;
    kv.fp8_flavor = fl;
    kv.head_dim = d;
    kv.block_size = bs;
    size_t b = 0;
    REQUIRE(spmla_kv_cache_page_bytes(&kv, &b) == SPMLA_STATUS_SUCCESS);
    return b;
  };
  for (int32_t bs : {1, 2, 53, 64, 256}) {
    CHECK(page(BF, NO, 576, bs) == size_t(2 * 576 * bs));
    CHECK(page(BF, NO, 512, bs) == size_t(2 * 512 * bs));
    CHECK(page(PT, F, 576, bs) == size_t(576 * bs));
    CHECK(page(V32, F, 0, bs) == size_t(656 * bs));
    CHECK(page(V4, U, 0, bs) == size_t((584 * bs + 575) / 576 * 576));
    CHECK(page(IX, F, 128, bs) == size_t(132 * bs));
    CHECK(page(IX, F, 64, bs) == size_t(68 * bs));
  }
  // Size with an explicit page stride; overflow; NULL arguments.
  spmla_kv_cache_t kv = SPMLA_KV_CACHE_INIT;
  kv.layout = V32;
  kv.fp8_flavor = F;
  kv.block_size = 64;
  kv.num_pages = 10;
  kv.page_stride_bytes = 656 * 64 + 48;
  size_t total = 0;
  CHECK(spmla_kv_cache_size_bytes(&kv, &total) == SPMLA_STATUS_SUCCESS);
  CHECK(total == size_t(10) * (656 * 64 + 48));
  kv.page_stride_bytes = 656 * 64 + 8;
  CHECK(spmla_kv_cache_size_bytes(&kv, &total) == INV);
  CHECK(std::string(spmla_last_error_message()).find("multiple of 16") != std::string::npos);
  kv.page_stride_bytes = 0;
  kv.num_pages = std::numeric_limits<int64_t>::max() / 1000;
  total = kSizeSentinel;
  CHECK(spmla_kv_cache_size_bytes(&kv, &total) == SPMLA_STATUS_SIZE_OVERFLOW);
  CHECK(total == kSizeSentinel);
  kv.num_pages = 0;
  CHECK(spmla_kv_cache_size_bytes(&kv, &total) == SPMLA_STATUS_SUCCESS);
  CHECK(total == 0);
  CHECK(spmla_kv_cache_size_bytes(&kv, nullptr) == INV);
  CHECK(spmla_kv_cache_page_bytes(nullptr, &total) == INV);
  CHECK(std::string(spmla_last_error_message()) ==
        "spmla_kv_cache_page_bytes: cache: expected a KV cache descriptor, got NULL");
}
