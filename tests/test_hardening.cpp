// test_hardening.cpp — the 1.0 hardening fixes: one handle used from two threads
// (SPMLA_STATUS_HANDLE_BUSY), outputs that alias other arguments, the messages of
// spmla_device_malloc / spmla_event_elapsed_ms, what a NaN sink does, the CPU backend's thread
// count under a CPU affinity mask, and cache page strides.
#include <catch2/catch.hpp>

#include <sched.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "fixture_support.h"
#include "spmla.h"

using namespace fixtures;

namespace {

bool has(const std::string &s, const std::string &sub) { return s.find(sub) != std::string::npos; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// (4) one handle, two threads
// ---------------------------------------------------------------------------------------------
TEST_CASE("abi: one handle used from two threads returns HANDLE_BUSY", "[abi][threads]") {
  CHECK(SPMLA_STATUS_HANDLE_BUSY == 11);
  CHECK(std::string(spmla_status_string(SPMLA_STATUS_HANDLE_BUSY)) == "SPMLA_STATUS_HANDLE_BUSY");

  spmla_handle_t h = nullptr;
  REQUIRE(spmla_handle_create("cpu", 0, &h) == SPMLA_STATUS_SUCCESS);
  constexpr size_t kBytes = size_t(1) << 20;
  void *buf[2] = {nullptr, nullptr};
  for (auto &b : buf) REQUIRE(spmla_device_malloc(h, kBytes, &b) == SPMLA_STATUS_SUCCESS);

  std::atomic<int> busy{0}, other{0}, ok{0};
  std::atomic<bool> stop{false};
  std::vector<std::string> busy_msgs(2), other_msgs(2);
  auto worker = [&](int id) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (int i = 0; !stop.load(); ++i) {
      spmla_status_t st;
      const char *fn;
      switch (i % 3) {
        case 0:
          fn = "spmla_memset";
          st = spmla_memset(h, buf[id], id + i, kBytes, nullptr);
          break;
        case 1: {
          fn = "spmla_handle_device";
          int32_t dev = -1;
          st = spmla_handle_device(h, &dev);
          if (st == SPMLA_STATUS_SUCCESS && dev != 0) st = SPMLA_STATUS_INTERNAL;
          break;
        }
        default:
          fn = "spmla_memcpy";
          st = spmla_memcpy(h, buf[id], buf[id], 4096, SPMLA_MEMCPY_DEVICE_TO_DEVICE, nullptr);
          break;
      }
      if (st == SPMLA_STATUS_SUCCESS) {
        ++ok;
      } else if (st == SPMLA_STATUS_HANDLE_BUSY) {
        if (busy++ == 0)
          busy_msgs[id] = std::string(fn) + "|" + spmla_last_error_message();
      } else {
        ++other;
        other_msgs[id] = std::string(fn) + "|" + spmla_status_string(st) + ": " +
                         spmla_last_error_message();
      }
      // Enough evidence: both threads ran and calls collided many times.
      if ((busy.load() >= 50 && i >= 200) || std::chrono::steady_clock::now() > until) break;
    }
    stop = true;
  };
  std::thread t0(worker, 0), t1(worker, 1);
  t0.join();
  t1.join();
  INFO("ok " << ok.load() << " busy " << busy.load() << " other " << other.load() << ": "
             << other_msgs[0] << " / " << other_msgs[1]);
  CHECK(other.load() == 0);
  CHECK(busy.load() > 0);
  CHECK(ok.load() > 0);
  for (const auto &m : busy_msgs) {
    if (m.empty()) continue;
    const std::string fn = m.substr(0, m.find('|'));
    CHECK(m.substr(m.find('|') + 1) ==
          fn + ": handle: expected a handle no other thread is using, got one in use by another call");
  }

  // Used serially afterwards (from any thread), the handle still works.
  std::thread([&] {
    CHECK(spmla_memset(h, buf[0], 0x3C, kBytes, nullptr) == SPMLA_STATUS_SUCCESS);
  }).join();
  CHECK(static_cast<unsigned char *>(buf[0])[kBytes - 1] == 0x3C);
  auto fx = make(all_fixtures()[0].second);  // sparse attention on the handle
  for (auto &c : fx->calls()) {
    INFO(c.fn << ": " << spmla_last_error_message());
    CHECK(c.f(h) == SPMLA_STATUS_SUCCESS);
  }
  for (auto &b : buf) CHECK(spmla_device_free(h, b) == SPMLA_STATUS_SUCCESS);
  CHECK(spmla_handle_destroy(h) == SPMLA_STATUS_SUCCESS);
}

TEST_CASE("abi: two threads, one handle each, never see HANDLE_BUSY", "[abi][threads]") {
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&] {
      spmla_handle_t h = nullptr;
      if (spmla_handle_create("cpu", 0, &h) != SPMLA_STATUS_SUCCESS) {
        ++bad;
        return;
      }
      void *p = nullptr;
      if (spmla_device_malloc(h, 65536, &p) != SPMLA_STATUS_SUCCESS) ++bad;
      for (int k = 0; k < 300; ++k)
        if (spmla_memset(h, p, k, 65536, nullptr) != SPMLA_STATUS_SUCCESS) ++bad;
      if (spmla_device_free(h, p) != SPMLA_STATUS_SUCCESS) ++bad;
      if (spmla_handle_destroy(h) != SPMLA_STATUS_SUCCESS) ++bad;
    });
  for (auto &t : ts) t.join();
  CHECK(bad.load() == 0);
}

// ---------------------------------------------------------------------------------------------
// aliasing: no output may overlap any other tensor or cache of the call
// ---------------------------------------------------------------------------------------------
namespace {

struct Arg {
  std::string name;
  void **data;  // the descriptor's data member
  bool output;
  size_t bytes;  // of its (contiguous) buffer
};

std::vector<Arg> args_of(Fixture &fx) {
  std::vector<Arg> v;
  for (auto &t : fx.tensors) {
    size_t n = spmla_dtype_size(t.t->dtype);
    for (int d = 0; d < t.t->ndim; ++d) n *= static_cast<size_t>(t.t->shape[d]);
    v.push_back({t.name, &t.t->data, t.output, n});
  }
  for (auto &c : fx.caches) {
    // The cache that kv_cache_store writes is its output.
    const bool out = std::string(fx.op()) == "kv_cache_store";
    size_t n = 0;
    REQUIRE(spmla_kv_cache_size_bytes(c.c, &n) == SPMLA_STATUS_SUCCESS);
    v.push_back({c.name, &c.c->data, out, n});
  }
  return v;
}

}  // namespace

TEST_CASE("validation: an output overlapping another argument is refused", "[validation]") {
  int refused = 0, inputs_shared = 0;
  for (auto &entry : all_fixtures()) {
    auto probe = entry.second();
    const auto pargs = args_of(*probe);
    for (size_t i = 0; i < pargs.size(); ++i)
      for (size_t j = 0; j < pargs.size(); ++j) {
        if (i == j) continue;
        if (!pargs[i].output) continue;  // i is the output moved onto j (input or output)
        auto fx = make(entry.second);
        auto args = args_of(*fx);
        // Same start address, and a partial overlap (16 bytes in) of the other's range.
        for (size_t shift : {size_t(0), size_t(16)}) {
          // The moved output must start inside the other's bytes (else it would be a valid,
          // disjoint pointer into slack memory that the backend then writes).
          REQUIRE(args[j].bytes > 0);
          if (shift >= args[j].bytes) continue;
          *args[i].data = static_cast<unsigned char *>(*args[j].data) + shift;
          for (auto &c : fx->calls()) {
            if (c.query) continue;  // queries never look at data pointers
            fx->poison_outputs();
            spmla_clear_last_error();
            const spmla_status_t st = c.f(cpu_handle());
            const std::string msg = spmla_last_error_message();
            INFO(entry.first << " " << c.fn << ": " << args[i].name << " onto " << args[j].name
                             << " +" << shift << ": " << msg);
            // A shifted pointer may first break an alignment rule; either way it is refused
            // and nothing is written. With shift 0 it must be the overlap rule.
            if (shift == 0 || st == SPMLA_STATUS_INVALID_ARGUMENT) {
              CHECK(st == SPMLA_STATUS_INVALID_ARGUMENT);
              // Two overlapping outputs: the one listed first in the args struct is named.
              const bool names_i =
                  msg.find(c.fn + ": " + args[i].name + ": expected memory disjoint from ") == 0;
              const bool names_j =
                  args[j].output &&
                  msg.find(c.fn + ": " + args[j].name + ": expected memory disjoint from " +
                           args[i].name) == 0;
              CHECK((names_i || names_j));
              CHECK(has(msg, "an output may not overlap"));
            } else {
              CHECK(st == SPMLA_STATUS_MISALIGNED);
            }
            CHECK(fx->outputs_untouched());
            ++refused;
          }
        }
      }
  }
  CHECK(refused > 50);

  // Inputs sharing memory are fine: sparse attention with one tensor as both lengths and
  // extra_lengths.
  {
    auto fx = make(all_fixtures()[0].second);
    auto &a = static_cast<SparseAttention &>(*fx).a;
    a.extra_lengths = a.lengths;
    for (auto &c : fx->calls()) {
      INFO(c.fn << ": " << spmla_last_error_message());
      CHECK(c.f(cpu_handle()) == SPMLA_STATUS_SUCCESS);
      ++inputs_shared;
    }
  }
  CHECK(inputs_shared == 3);
}

TEST_CASE("validation: lse and max_logits in one buffer: adjacent ok, overlapping refused",
          "[validation]") {
  auto fx = make(all_fixtures()[0].second);
  auto &sa = static_cast<SparseAttention &>(*fx);
  // One buffer of 2 x [T=2, H=4] fp32: lse then max_logits right after it.
  Buf *both = fx->buf(2 * 8 * sizeof(float), 1);
  spmla_tensor_t lse = *sa.a.lse, mx = *sa.a.max_logits;
  lse.data = both->p;
  mx.data = both->p + 8 * sizeof(float);
  sa.a.lse = &lse;
  sa.a.max_logits = &mx;
  auto run = [&] { return spmla_sparse_attention_run(cpu_handle(), &sa.a, fx->ws_ptr(), fx->ws_bytes, nullptr); };
  CHECK(run() == SPMLA_STATUS_SUCCESS);
  mx.data = both->p + 7 * sizeof(float);  // one element shared
  CHECK(run() == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(has(spmla_last_error_message(),
            "spmla_sparse_attention_run: lse: expected memory disjoint from max_logits"));
  mx.data = lse.data;  // the very same buffer
  CHECK(run() == SPMLA_STATUS_INVALID_ARGUMENT);
  // out overlapping q
  spmla_tensor_t out = *sa.a.out;
  out.data = const_cast<void *>(sa.a.q->data);
  sa.a.max_logits = nullptr;
  sa.a.lse = sa.find("lse")->t;
  sa.a.out = &out;
  CHECK(run() == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(has(spmla_last_error_message(), "spmla_sparse_attention_run: out: expected memory disjoint from q"));
}

// ---------------------------------------------------------------------------------------------
// (6) messages of spmla_device_malloc and spmla_event_elapsed_ms
// ---------------------------------------------------------------------------------------------
TEST_CASE("abi: device_malloc and event_elapsed_ms failures name the argument", "[abi]") {
  spmla_handle_t h = cpu_handle();
  void *p = reinterpret_cast<void *>(0x1234);
  spmla_clear_last_error();
  CHECK(spmla_device_malloc(h, SIZE_MAX, &p) == SPMLA_STATUS_SIZE_OVERFLOW);
  CHECK(std::string(spmla_last_error_message()) ==
        "spmla_device_malloc: bytes: expected at most " +
            std::to_string(std::numeric_limits<size_t>::max() / 2) +
            " (half the address space), got " + std::to_string(SIZE_MAX));
  CHECK(spmla_device_malloc(h, SIZE_MAX - 100, &p) == SPMLA_STATUS_SIZE_OVERFLOW);
  CHECK(p == reinterpret_cast<void *>(0x1234));  // nothing written

  spmla_event_t e0 = nullptr, e1 = nullptr;
  REQUIRE(spmla_event_create(h, &e0) == SPMLA_STATUS_SUCCESS);
  REQUIRE(spmla_event_create(h, &e1) == SPMLA_STATUS_SUCCESS);
  float ms = -7.0f;
  CHECK(spmla_event_elapsed_ms(h, e0, e1, &ms) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(std::string(spmla_last_error_message()) ==
        "spmla_event_elapsed_ms: start: expected an event recorded by spmla_event_record, got "
        "one never recorded");
  REQUIRE(spmla_event_record(h, e0, nullptr) == SPMLA_STATUS_SUCCESS);
  CHECK(spmla_event_elapsed_ms(h, e0, e1, &ms) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(std::string(spmla_last_error_message()) ==
        "spmla_event_elapsed_ms: end: expected an event recorded by spmla_event_record, got "
        "one never recorded");
  CHECK(ms == -7.0f);
  REQUIRE(spmla_event_record(h, e1, nullptr) == SPMLA_STATUS_SUCCESS);
  CHECK(spmla_event_elapsed_ms(h, e0, e1, &ms) == SPMLA_STATUS_SUCCESS);
  CHECK(ms >= 0.0f);
  spmla_event_destroy(h, e0);
  spmla_event_destroy(h, e1);
}

// ---------------------------------------------------------------------------------------------
// NaN sink (docs/SEMANTICS.md): out = NaN for a token with keys, lse unaffected; +inf -> +0;
// no keys -> out 0 whatever the sink.
// ---------------------------------------------------------------------------------------------
TEST_CASE("cpu attention: a NaN sink makes out NaN and leaves lse alone", "[cpu][attention]") {
  auto fx = make(all_fixtures()[0].second);
  auto &sa = static_cast<SparseAttention &>(*fx);
  // Reference run without a sink, then the sinks {NaN, +inf, -inf, 0} on heads 0..3.
  auto run = [&] {
    for (auto &c : fx->calls()) {
      INFO(c.fn << ": " << spmla_last_error_message());
      REQUIRE(c.f(cpu_handle()) == SPMLA_STATUS_SUCCESS);
    }
  };
  const spmla_tensor_t *sink = sa.a.attn_sink;
  sa.a.attn_sink = nullptr;
  run();
  const auto *out = static_cast<const uint16_t *>(sa.a.out->data);
  const auto *lse = static_cast<const float *>(sa.a.lse->data);
  std::vector<uint16_t> out0(out, out + 2 * 4 * 512);
  std::vector<float> lse0(lse, lse + 8);
  sa.a.attn_sink = sink;
  float *s = static_cast<float *>(sink->data);
  s[0] = std::numeric_limits<float>::quiet_NaN();
  s[1] = std::numeric_limits<float>::infinity();
  s[2] = -std::numeric_limits<float>::infinity();
  s[3] = std::numeric_limits<float>::quiet_NaN();
  run();
  auto bf_is_nan = [](uint16_t v) { return (v & 0x7F80) == 0x7F80 && (v & 0x007F) != 0; };
  for (int t = 0; t < 2; ++t)
    for (int h = 0; h < 4; ++h) {
      INFO("t " << t << " h " << h);
      CHECK(lse[t * 4 + h] == lse0[t * 4 + h]);  // lse is reported without the sink
      for (int d = 0; d < 512; ++d) {
        const uint16_t v = out[(t * 4 + h) * 512 + d];
        if (h == 0 || h == 3) CHECK(bf_is_nan(v));
        if (h == 1) CHECK(v == 0);                          // +inf: +0 exactly
        if (h == 2) CHECK(v == out0[(t * 4 + h) * 512 + d]);  // -inf: no effect
        if (!(h == 0 || h == 3) && bf_is_nan(v)) FAIL("NaN on head " << h);
      }
    }
}

// ---------------------------------------------------------------------------------------------
// (13a) the CPU backend's thread count follows the affinity mask
// ---------------------------------------------------------------------------------------------
TEST_CASE("cpu: thread count honours the CPU affinity mask", "[cpu]") {
  cpu_set_t saved;
  CPU_ZERO(&saved);
  REQUIRE(sched_getaffinity(0, sizeof saved, &saved) == 0);
  int first = -1;
  for (int c = 0; c < CPU_SETSIZE && first < 0; ++c)
    if (CPU_ISSET(c, &saved)) first = c;
  REQUIRE(first >= 0);
  const char *env = std::getenv("SPMLA_NUM_THREADS");
  const std::string saved_env = env ? env : "";
  unsetenv("SPMLA_NUM_THREADS");
  auto threads = [] {
    spmla_device_info_t d = SPMLA_DEVICE_INFO_INIT;
    REQUIRE(spmla_device_get_info("cpu", 0, &d) == SPMLA_STATUS_SUCCESS);
    return d.multiprocessor_count;
  };
  const int all = threads();
  CHECK(all == CPU_COUNT(&saved));  // the mask, not hardware_concurrency
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  REQUIRE(sched_setaffinity(0, sizeof one, &one) == 0);
  const int pinned = threads();
  setenv("SPMLA_NUM_THREADS", "3", 1);
  const int forced = threads();
  unsetenv("SPMLA_NUM_THREADS");
  REQUIRE(sched_setaffinity(0, sizeof saved, &saved) == 0);
  if (env) setenv("SPMLA_NUM_THREADS", saved_env.c_str(), 1);
  CHECK(pinned == 1);
  CHECK(forced == 3);  // SPMLA_NUM_THREADS still overrides
  if (std::thread::hardware_concurrency() > 1)
    INFO("hardware_concurrency " << std::thread::hardware_concurrency());
}

// ---------------------------------------------------------------------------------------------
// cache views: page_stride_bytes below the layout's page, V4_FP8 rounding, exact sizes
// ---------------------------------------------------------------------------------------------
TEST_CASE("validation: page_stride_bytes and exact cache sizes", "[validation]") {
  spmla_kv_cache_t kv = SPMLA_KV_CACHE_INIT;
  kv.layout = SPMLA_KV_LAYOUT_V4_FP8;
  kv.fp8_flavor = SPMLA_FP8_E4M3FN;
  kv.block_size = 1;
  kv.num_pages = 3;
  size_t page = 0, total = 0;
  REQUIRE(spmla_kv_cache_page_bytes(&kv, &page) == SPMLA_STATUS_SUCCESS);
  CHECK(page == 1152);  // 584 rounded up to a multiple of 576
  // 592 is >= 584 bytes of data and a multiple of 16, but below the rounded page: refused.
  for (int64_t bad : {int64_t(592), int64_t(1136), int64_t(16), int64_t(-16)}) {
    kv.page_stride_bytes = bad;
    CHECK(spmla_kv_cache_size_bytes(&kv, &total) == SPMLA_STATUS_INVALID_ARGUMENT);
    CHECK(has(spmla_last_error_message(),
              "spmla_kv_cache_size_bytes: cache.page_stride_bytes: expected 0 or >= 1152 "
              "(packed page) and a multiple of 16, got " + std::to_string(bad)));
  }
  kv.page_stride_bytes = 1152 + 16;
  REQUIRE(spmla_kv_cache_size_bytes(&kv, &total) == SPMLA_STATUS_SUCCESS);
  CHECK(total == size_t(3 * (1152 + 16)));
  // 64 tokens: 584 * 64 = 37376 = 64.9 * 576 -> 65 * 576 = 37440.
  kv.block_size = 64;
  kv.page_stride_bytes = 37376;
  CHECK(spmla_kv_cache_size_bytes(&kv, &total) == SPMLA_STATUS_INVALID_ARGUMENT);
  kv.page_stride_bytes = 0;
  REQUIRE(spmla_kv_cache_size_bytes(&kv, &total) == SPMLA_STATUS_SUCCESS);
  CHECK(total == size_t(3) * 37440);
  // Exact and overflow-checked: the largest page count that fits, and one more.
  kv.page_stride_bytes = 0;
  kv.num_pages = std::numeric_limits<int64_t>::max() / 37440;
  REQUIRE(spmla_kv_cache_size_bytes(&kv, &total) == SPMLA_STATUS_SUCCESS);
  CHECK(total == size_t(kv.num_pages) * 37440);
  kv.num_pages += 1;
  total = 77;
  CHECK(spmla_kv_cache_size_bytes(&kv, &total) == SPMLA_STATUS_SIZE_OVERFLOW);
  CHECK(total == 77);
}
