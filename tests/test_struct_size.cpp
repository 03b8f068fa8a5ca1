// test_struct_size.cpp — the struct_size rule of docs/ABI.md for every transparent struct: a
// struct larger than the library's (a caller built against a newer header) is accepted when
// every byte past the library's members is zero, refused with SPMLA_STATUS_ABI_MISMATCH naming
// the struct and the offset otherwise, and an absurd struct_size (SIZE_MAX, > 64 KiB) is refused
// without reading the tail. Output structs are filled only up to the library's size.
//
// The larger structs live in heap buffers exactly as large as their struct_size, so under
// AddressSanitizer any read past struct_size (or any read of the tail of a SIZE_MAX struct)
// is a reported heap overflow.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fixture_support.h"
#include "spmla.h"

using namespace fixtures;

namespace {

constexpr size_t kExtra = 40;  // bytes a "newer header" adds at the end

// A heap copy of `src` (`own` bytes) followed by `extra` zero bytes, 16-byte aligned, whose
// allocation ends exactly at own + extra.
struct Bigger {
  std::unique_ptr<unsigned char[]> mem;
  unsigned char *p;
  size_t n;
  Bigger(const void *src, size_t own, size_t extra) : n(own + extra) {
    mem.reset(new unsigned char[n]);
    p = mem.get();
    std::memset(p, 0, n);
    std::memcpy(p, src, own);
    size_t ss = n;
    std::memcpy(p, &ss, sizeof ss);  // struct_size is the first member of every struct
  }
  void set_size(size_t s) { std::memcpy(p, &s, sizeof s); }
};

// Replaces every pointer-sized member of the args struct equal to `from` by `to`.
void redirect(Fixture &fx, const void *from, const void *to) {
  auto *bytes = reinterpret_cast<unsigned char *>(fx.struct_size());
  int hits = 0;
  for (size_t off = 0; off + sizeof(void *) <= fx.args_size(); off += sizeof(void *)) {
    const void *p;
    std::memcpy(&p, bytes + off, sizeof p);
    if (p == from) {
      std::memcpy(bytes + off, &to, sizeof to);
      ++hits;
    }
  }
  REQUIRE(hits == 1);
}

bool has(const std::string &s, const std::string &sub) { return s.find(sub) != std::string::npos; }

// Runs every call of the fixture: zero tail accepted; a non-zero byte at own + 13 gives
// ABI_MISMATCH naming `type` and the offset; SIZE_MAX and 64 KiB + 1 are INVALID_ARGUMENT.
void check_rule(Fixture &fx, Bigger &big, size_t own, const std::string &arg,
                const std::string &type) {
  for (auto &c : fx.calls()) {
    INFO(fx.op() << " " << c.fn << " " << arg);
    big.set_size(big.n);
    spmla_clear_last_error();
    spmla_status_t st = c.f(cpu_handle());
    INFO("zero tail: " << spmla_status_string(st) << ": " << spmla_last_error_message());
    CHECK(st == SPMLA_STATUS_SUCCESS);

    big.p[own + 13] = 0x5A;
    fx.poison_outputs();
    st = c.f(cpu_handle());
    std::string msg = spmla_last_error_message();
    INFO("non-zero tail: " << msg);
    CHECK(st == SPMLA_STATUS_ABI_MISMATCH);
    CHECK(msg.find(c.fn + ": " + arg + " (" + type + "): expected zero bytes from offset " +
                   std::to_string(own)) == 0);
    CHECK(has(msg, "got a non-zero byte at offset " + std::to_string(own + 13)));
    CHECK(fx.outputs_untouched());
    big.p[own + 13] = 0;

    for (size_t absurd : {SIZE_MAX, size_t(64 * 1024 + 1)}) {
      big.set_size(absurd);
      fx.poison_outputs();
      st = c.f(cpu_handle());
      msg = spmla_last_error_message();
      INFO("struct_size " << absurd << ": " << msg);
      CHECK(st == SPMLA_STATUS_INVALID_ARGUMENT);
      CHECK(msg.find(c.fn + ": " + arg + "->struct_size: expected") == 0);
      CHECK(has(msg, "got " + std::to_string(absurd)));
      CHECK(fx.outputs_untouched());
    }
    big.set_size(big.n);
  }
}

const char *args_type(const std::string &op) {
  if (op == "sparse_attention") return "spmla_sparse_attention_args_t";
  if (op == "indices_to_slots") return "spmla_indices_to_slots_args_t";
  if (op == "window_indices") return "spmla_window_indices_args_t";
  if (op == "indexer_logits") return "spmla_indexer_logits_args_t";
  if (op == "indexer_logits_paged") return "spmla_indexer_logits_paged_args_t";
  if (op.rfind("topk_per_row", 0) == 0) return "spmla_topk_per_row_args_t";
  if (op == "kv_cache_store") return "spmla_kv_cache_store_args_t";
  if (op == "kv_cache_gather") return "spmla_kv_cache_gather_args_t";
  return "?";
}

// The fixtures' calls go through their member `a`; a grown copy of it is passed to the same
// public function directly.
spmla_status_t call_on(Fixture &fx, const std::string &fn, const void *args) {
  spmla_handle_t h = cpu_handle();
  void *ws = fx.ws_ptr();
  const size_t wb = fx.ws_bytes;
  size_t out = 0;
#define ARGS(T) static_cast<const T *>(args)
  if (fn == "spmla_sparse_attention_get_workspace_size")
    return spmla_sparse_attention_get_workspace_size(h, ARGS(spmla_sparse_attention_args_t), &out);
  if (fn == "spmla_sparse_attention_plan")
    return spmla_sparse_attention_plan(h, ARGS(spmla_sparse_attention_args_t), ws, wb, nullptr);
  if (fn == "spmla_sparse_attention_run")
    return spmla_sparse_attention_run(h, ARGS(spmla_sparse_attention_args_t), ws, wb, nullptr);
  if (fn == "spmla_indices_to_slots_run")
    return spmla_indices_to_slots_run(h, ARGS(spmla_indices_to_slots_args_t), nullptr);
  if (fn == "spmla_window_indices_run")
    return spmla_window_indices_run(h, ARGS(spmla_window_indices_args_t), nullptr);
  if (fn == "spmla_indexer_logits_get_workspace_size")
    return spmla_indexer_logits_get_workspace_size(h, ARGS(spmla_indexer_logits_args_t), &out);
  if (fn == "spmla_indexer_logits_run")
    return spmla_indexer_logits_run(h, ARGS(spmla_indexer_logits_args_t), ws, wb, nullptr);
  if (fn == "spmla_indexer_logits_paged_get_workspace_size")
    return spmla_indexer_logits_paged_get_workspace_size(
        h, ARGS(spmla_indexer_logits_paged_args_t), &out);
  if (fn == "spmla_indexer_logits_paged_run")
    return spmla_indexer_logits_paged_run(h, ARGS(spmla_indexer_logits_paged_args_t), ws, wb,
                                          nullptr);
  if (fn == "spmla_topk_per_row_get_workspace_size")
    return spmla_topk_per_row_get_workspace_size(h, ARGS(spmla_topk_per_row_args_t), &out);
  if (fn == "spmla_topk_per_row_run")
    return spmla_topk_per_row_run(h, ARGS(spmla_topk_per_row_args_t), ws, wb, nullptr);
  if (fn == "spmla_kv_cache_store_run")
    return spmla_kv_cache_store_run(h, ARGS(spmla_kv_cache_store_args_t), nullptr);
  if (fn == "spmla_kv_cache_gather_run")
    return spmla_kv_cache_gather_run(h, ARGS(spmla_kv_cache_gather_args_t), nullptr);
#undef ARGS
  FAIL("unknown call " << fn);
  return SPMLA_STATUS_INTERNAL;
}

}  // namespace

TEST_CASE("abi: struct_size rule for every args struct", "[abi][validation]") {
  for (auto &entry : all_fixtures()) {
    auto fx = make(entry.second);
    const size_t own = fx->args_size();
    const std::string type = args_type(fx->op());
    Bigger big(fx->struct_size(), own, kExtra);
    for (auto &c : fx->calls()) {
      INFO(entry.first << " " << c.fn);
      big.set_size(big.n);
      spmla_status_t st = call_on(*fx, c.fn, big.p);
      INFO(spmla_last_error_message());
      CHECK(st == SPMLA_STATUS_SUCCESS);

      big.p[own + kExtra - 1] = 1;
      fx->poison_outputs();
      st = call_on(*fx, c.fn, big.p);
      std::string msg = spmla_last_error_message();
      INFO(msg);
      CHECK(st == SPMLA_STATUS_ABI_MISMATCH);
      CHECK(msg == c.fn + ": args (" + type + "): expected zero bytes from offset " +
                       std::to_string(own) + " to struct_size " + std::to_string(own + kExtra) +
                       " (members of a newer spmla.h, which this libspmla " +
                       SPMLA_VERSION_STRING + " cannot honour), got a non-zero byte at offset " +
                       std::to_string(own + kExtra - 1));
      CHECK(fx->outputs_untouched());
      big.p[own + kExtra - 1] = 0;

      for (size_t absurd : {SIZE_MAX, size_t(64 * 1024 + 1)}) {
        big.set_size(absurd);
        st = call_on(*fx, c.fn, big.p);
        msg = spmla_last_error_message();
        INFO(msg);
        CHECK(st == SPMLA_STATUS_INVALID_ARGUMENT);
        CHECK(msg.find(c.fn + ": args->struct_size: expected " + std::to_string(own) +
                       " .. 65536") == 0);
      }
      big.set_size(own - 1);
      CHECK(call_on(*fx, c.fn, big.p) == SPMLA_STATUS_INVALID_ARGUMENT);
      CHECK(has(spmla_last_error_message(), "args->struct_size: expected >= " + std::to_string(own)));
    }
  }
}

TEST_CASE("abi: struct_size rule for every tensor and cache argument", "[abi][validation]") {
  for (auto &entry : all_fixtures()) {
    auto probe = entry.second();
    for (size_t i = 0; i < probe->tensors.size(); ++i) {
      auto fx = make(entry.second);
      TensorArg &ta = fx->tensors[i];
      Bigger big(ta.t, sizeof(spmla_tensor_t), kExtra);
      redirect(*fx, ta.t, big.p);
      check_rule(*fx, big, sizeof(spmla_tensor_t), ta.name, "spmla_tensor_t");
    }
    for (size_t i = 0; i < probe->caches.size(); ++i) {
      auto fx = make(entry.second);
      CacheArg &ca = fx->caches[i];
      Bigger big(ca.c, sizeof(spmla_kv_cache_t), kExtra);
      redirect(*fx, ca.c, big.p);
      check_rule(*fx, big, sizeof(spmla_kv_cache_t), ca.name, "spmla_kv_cache_t");
    }
  }
  // The cache geometry queries apply the same rule.
  spmla_kv_cache_t kv = SPMLA_KV_CACHE_INIT;
  kv.layout = SPMLA_KV_LAYOUT_V32_FP8;
  kv.fp8_flavor = SPMLA_FP8_E4M3FN;
  kv.block_size = 64;
  kv.num_pages = 2;
  Bigger big(&kv, sizeof kv, kExtra);
  size_t bytes = 0;
  CHECK(spmla_kv_cache_size_bytes(reinterpret_cast<spmla_kv_cache_t *>(big.p), &bytes) ==
        SPMLA_STATUS_SUCCESS);
  CHECK(bytes == size_t(2 * 64 * 656));
  big.p[sizeof kv] = 7;
  CHECK(spmla_kv_cache_page_bytes(reinterpret_cast<spmla_kv_cache_t *>(big.p), &bytes) ==
        SPMLA_STATUS_ABI_MISMATCH);
  CHECK(has(spmla_last_error_message(),
            "spmla_kv_cache_page_bytes: cache (spmla_kv_cache_t): expected zero bytes from offset " +
                std::to_string(sizeof kv)));
  big.set_size(SIZE_MAX);
  CHECK(spmla_kv_cache_size_bytes(reinterpret_cast<spmla_kv_cache_t *>(big.p), &bytes) ==
        SPMLA_STATUS_INVALID_ARGUMENT);
}

TEST_CASE("abi: struct_size rule for the output structs", "[abi]") {
  // A newer caller's larger info struct: filled up to the library's size, the tail untouched,
  // the caller's struct_size kept; even an absurd struct_size is fine (the tail is never read).
  for (size_t extra : {size_t(kExtra), size_t(0)}) {
    std::vector<unsigned char> mem(sizeof(spmla_device_info_t) + extra + 8, 0xCD);
    spmla_device_info_t d0 = SPMLA_DEVICE_INFO_INIT;
    std::memcpy(mem.data(), &d0, sizeof d0);
    const size_t ss = sizeof d0 + extra;
    std::memcpy(mem.data(), &ss, sizeof ss);
    REQUIRE(spmla_device_get_info("cpu", 0, reinterpret_cast<spmla_device_info_t *>(mem.data())) ==
            SPMLA_STATUS_SUCCESS);
    spmla_device_info_t got;
    std::memcpy(&got, mem.data(), sizeof got);
    CHECK(got.struct_size == ss);
    CHECK(std::string(got.arch) == "cpu");
    CHECK(got.multiprocessor_count >= 1);
    for (size_t i = sizeof d0; i < mem.size(); ++i) CHECK(mem[i] == 0xCD);
  }
  {
    std::vector<unsigned char> mem(sizeof(spmla_backend_info_t) + kExtra, 0xCD);
    spmla_backend_info_t b0 = SPMLA_BACKEND_INFO_INIT;
    std::memcpy(mem.data(), &b0, sizeof b0);
    const size_t ss = SIZE_MAX;
    std::memcpy(mem.data(), &ss, sizeof ss);
    REQUIRE(spmla_backend_get_info(0, reinterpret_cast<spmla_backend_info_t *>(mem.data())) ==
            SPMLA_STATUS_SUCCESS);
    spmla_backend_info_t got;
    std::memcpy(&got, mem.data(), sizeof got);
    CHECK(got.struct_size == SIZE_MAX);
    CHECK(std::string(got.name) == "cpu");
    for (size_t i = sizeof b0; i < mem.size(); ++i) CHECK(mem[i] == 0xCD);
  }
}
