// test_batch_invariance.cpp — handle options (ABI 1.3: spmla_handle_set_option / _get_option)
// and SPMLA_OPTION_BATCH_INVARIANT on the CPU backend: a token's (row's) outputs are
// bit-identical across batch sizes 1, 7 and 128 and when the other tokens' lengths, index lists
// and key ranges change (tests/batch_invariance.h), and the CPU's threading never changes a row's
// reduction order (1 thread against 3). The GPU side of the same harness is
// tests/gpu/test_gpu_batch_invariance.cpp; the GPU host layer's schedule under the option is
// checked in tests/host_layer_tests.cpp.
#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "batch_invariance.h"
#include "test_support.h"

namespace {

bool starts(const std::string &s, const std::string &p) { return s.compare(0, p.size(), p) == 0; }

}  // namespace

TEST_CASE("handle options: get, set, defaults, unknown option, bad value, bad handle", "[abi][options]") {
  tst::Handle h, other;
  int64_t v = -1;
  REQUIRE(spmla_handle_get_option(h, SPMLA_OPTION_BATCH_INVARIANT, &v) == SPMLA_STATUS_SUCCESS);
  CHECK(v == 0);  // the default: speed first
  CHECK(int(SPMLA_OPTION_BATCH_INVARIANT) == 1);

  REQUIRE(spmla_handle_set_option(h, SPMLA_OPTION_BATCH_INVARIANT, 1) == SPMLA_STATUS_SUCCESS);
  REQUIRE(spmla_handle_get_option(h, SPMLA_OPTION_BATCH_INVARIANT, &v) == SPMLA_STATUS_SUCCESS);
  CHECK(v == 1);
  // Per handle: another handle keeps its default.
  REQUIRE(spmla_handle_get_option(other, SPMLA_OPTION_BATCH_INVARIANT, &v) == SPMLA_STATUS_SUCCESS);
  CHECK(v == 0);

  // A value outside the option's range: INVALID_ARGUMENT, nothing changes.
  for (int64_t bad : {int64_t(2), int64_t(-1), INT64_MAX, INT64_MIN}) {
    INFO("value " << bad);
    CHECK(spmla_handle_set_option(h, SPMLA_OPTION_BATCH_INVARIANT, bad) == SPMLA_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(spmla_last_error_message()) ==
          "spmla_handle_set_option: value: expected 0 .. 1 for SPMLA_OPTION_BATCH_INVARIANT, got " +
              std::to_string(bad));
    REQUIRE(spmla_handle_get_option(h, SPMLA_OPTION_BATCH_INVARIANT, &v) == SPMLA_STATUS_SUCCESS);
    CHECK(v == 1);
  }

  // An option this library does not know.
  for (int bad : {0, 2, 99, -1}) {
    INFO("option " << bad);
    const auto o = static_cast<spmla_option_t>(bad);
    CHECK(spmla_handle_set_option(h, o, 0) == SPMLA_STATUS_INVALID_ARGUMENT);
    std::string m = spmla_last_error_message();
    CHECK(starts(m, "spmla_handle_set_option: option: expected a spmla_option_t this library knows"));
    // (-1 reads as the enum's unsigned underlying type, as for every enum of the ABI)
    const auto raw = static_cast<int64_t>(static_cast<std::underlying_type<spmla_option_t>::type>(o));
    CHECK(m.find("got " + std::to_string(raw) + " (unknown option)") != std::string::npos);
    v = 42;
    CHECK(spmla_handle_get_option(h, o, &v) == SPMLA_STATUS_INVALID_ARGUMENT);
    m = spmla_last_error_message();
    CHECK(starts(m, "spmla_handle_get_option: option: expected a spmla_option_t"));
    CHECK(v == 42);  // nothing written
  }

  // NULL handle, NULL output.
  CHECK(spmla_handle_set_option(nullptr, SPMLA_OPTION_BATCH_INVARIANT, 1) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(starts(spmla_last_error_message(), "spmla_handle_set_option: handle: expected a handle"));
  CHECK(spmla_handle_get_option(nullptr, SPMLA_OPTION_BATCH_INVARIANT, &v) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(starts(spmla_last_error_message(), "spmla_handle_get_option: handle: expected a handle"));
  CHECK(spmla_handle_get_option(h, SPMLA_OPTION_BATCH_INVARIANT, nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(std::string(spmla_last_error_message()) ==
        "spmla_handle_get_option: value: expected an int64_t to write, got NULL");

  // Through the function table (ABI 1.3 members at its end).
  const spmla_api_t *api = spmla_get_api(SPMLA_ABI_VERSION_MAJOR);
  REQUIRE(api);
  REQUIRE(api->struct_size >= offsetof(spmla_api_t, handle_get_option) + sizeof(api->handle_get_option));
  CHECK(api->handle_set_option(h, SPMLA_OPTION_BATCH_INVARIANT, 0) == SPMLA_STATUS_SUCCESS);
  CHECK(api->handle_get_option(h, SPMLA_OPTION_BATCH_INVARIANT, &v) == SPMLA_STATUS_SUCCESS);
  CHECK(v == 0);
}

TEST_CASE("handle options: setting an option while another thread uses the handle is HANDLE_BUSY",
          "[abi][options][threads]") {
  tst::Handle h;
  constexpr size_t kBytes = size_t(32) << 20;
  void *buf = nullptr;
  REQUIRE(spmla_device_malloc(h, kBytes, &buf) == SPMLA_STATUS_SUCCESS);
  std::atomic<bool> stop{false};
  std::thread user([&] {
    while (!stop.load()) spmla_memset(h, buf, 1, kBytes, nullptr);  // long calls holding the handle
  });
  int busy = 0, ok = 0, other = 0;
  std::string busy_msg;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (int i = 0; std::chrono::steady_clock::now() < until && (busy < 20 || ok < 1); ++i) {
    const spmla_status_t st = spmla_handle_set_option(h, SPMLA_OPTION_BATCH_INVARIANT, i & 1);
    if (st == SPMLA_STATUS_HANDLE_BUSY) {
      if (!busy++) busy_msg = spmla_last_error_message();
    } else if (st == SPMLA_STATUS_SUCCESS) {
      ++ok;
    } else {
      ++other;
    }
  }
  stop = true;
  user.join();
  CHECK(other == 0);
  CHECK(busy > 0);
  CHECK(busy_msg ==
        "spmla_handle_set_option: handle: expected a handle no other thread is using, got one in use by another call");
  // Used serially afterwards, the handle takes the option.
  REQUIRE(spmla_handle_set_option(h, SPMLA_OPTION_BATCH_INVARIANT, 1) == SPMLA_STATUS_SUCCESS);
  int64_t v = 0;
  REQUIRE(spmla_handle_get_option(h, SPMLA_OPTION_BATCH_INVARIANT, &v) == SPMLA_STATUS_SUCCESS);
  CHECK(v == 1);
  CHECK(spmla_device_free(h, buf) == SPMLA_STATUS_SUCCESS);
}

namespace {

// Small shapes for the CPU reference (it computes every token in full).
const binv::AttnConfig kCpuAttn[] = {
    {"V4 FP8 + V4 FP8 window, sink, lengths", SPMLA_KV_LAYOUT_V4_FP8, SPMLA_KV_LAYOUT_V4_FP8, 512, 8, 96, 40, true,
     true, 64, 6},
    {"V3.2 FP8, lengths", SPMLA_KV_LAYOUT_V32_FP8, SPMLA_KV_LAYOUT_INVALID, 576, 5, 130, 0, false, true, 16, 20},
    {"BF16 + V41_FP4 extra, sink, no lengths", SPMLA_KV_LAYOUT_BF16, SPMLA_KV_LAYOUT_V41_FP4, 512, 3, 33, 17, true,
     false, 7, 30},
};

}  // namespace

TEST_CASE("batch invariance (cpu): sparse_attention of a token is bit-identical across batches",
          "[batch_invariant]") {
  for (const binv::AttnConfig &c : kCpuAttn) {
    INFO(c.name);
    tst::Handle ref(1);
    const binv::AttnInputs in = binv::make_attn_inputs(ref, c, 2026);
    binv::Rng pr(77);
    const binv::AttnToken probe = binv::random_token(c, pr, true);
    tst::Handle h(2);
    binv::set_batch_invariant(h, 1);
    const auto plans = binv::default_plans();
    const binv::AttnOut first = binv::run_attention(h, c, in, probe, plans[0]);
    const binv::AttnProbe p0 = binv::probe_rows(c, first, plans[0].T);
    // Not a vacuous comparison: the probe attends keys (finite lse, non-zero output).
    size_t finite = 0, nonzero = 0;
    for (float x : p0.lse) finite += std::isfinite(x);
    for (uint16_t x : p0.out) nonzero += (x & 0x7fff) != 0 && (x & 0x7fff) < 0x7f80;
    CHECK(finite == (size_t)c.H);
    CHECK(nonzero > p0.out.size() / 2);
    for (size_t i = 1; i < plans.size(); ++i) {
      INFO("batch T " << plans[i].T << " fillers " << plans[i].filler_seed);
      const binv::AttnOut o = binv::run_attention(h, c, in, probe, plans[i]);
      CHECK(binv::probe_diff(p0, binv::probe_rows(c, o, plans[i].T)) == 0);
      // every row written (no poison left)
      size_t nan_lse = 0;
      for (float x : o.lse) nan_lse += std::isnan(x);
      CHECK(nan_lse == 0);
    }
    // The option off gives the same bits on the CPU (it is batch-invariant either way).
    binv::set_batch_invariant(h, 0);
    CHECK(binv::probe_diff(p0, binv::probe_rows(c, binv::run_attention(h, c, in, probe, plans[3]), plans[3].T)) == 0);
  }
}

TEST_CASE("batch invariance (cpu): the thread count never changes a token's reduction order", "[batch_invariant]") {
  // 1 thread against 3 on the 128-token batch: every output byte, not only the probe's.
  for (const binv::AttnConfig &c : kCpuAttn) {
    INFO(c.name);
    tst::Handle h1(1), h3(3);
    const binv::AttnInputs in = binv::make_attn_inputs(h1, c, 7);
    binv::Rng pr(8);
    const binv::AttnToken probe = binv::random_token(c, pr, true);
    const binv::BatchPlan plan{128, 99, 0};
    const binv::AttnOut a = binv::run_attention(h1, c, in, probe, plan), b = binv::run_attention(h3, c, in, probe, plan);
    CHECK(binv::differing(a.out, b.out) == 0);
    CHECK(binv::differing(a.lse, b.lse) == 0);
    CHECK(binv::differing(a.ml, b.ml) == 0);
  }
  const binv::IdxConfig ic{"Hi 16 Di 128", 16, 128, 500, 64};
  const binv::IdxInputs in = binv::make_idx_inputs(ic, 5);
  tst::Handle h1(1), h3(3);
  const binv::BatchPlan plan{128, 6, 200};
  const binv::IdxOut a = binv::run_indexer_topk(h1, ic, in, plan), b = binv::run_indexer_topk(h3, ic, in, plan);
  CHECK(binv::differing(a.logits, b.logits) == 0);
  CHECK(binv::differing(a.indices, b.indices) == 0);
}

TEST_CASE("batch invariance (cpu): indexer_logits and topk_per_row of a row are bit-identical across batches",
          "[batch_invariant]") {
  const binv::IdxConfig configs[] = {{"Hi 16 Di 128, k 64", 16, 128, 700, 64},
                                     {"Hi 8 Di 64, k above the range (-1 padding)", 8, 64, 300, 400}};
  for (const binv::IdxConfig &c : configs) {
    INFO(c.name);
    const binv::IdxInputs in = binv::make_idx_inputs(c, 31);
    tst::Handle h(2);
    binv::set_batch_invariant(h, 1);
    const auto plans = binv::default_plans();
    const binv::IdxProbeRows p0 = binv::probe_rows(c, binv::run_indexer_topk(h, c, in, plans[0]), plans[0].T);
    size_t finite = 0, selected = 0;
    for (float x : p0.logits) finite += std::isfinite(x);
    for (int32_t x : p0.indices) selected += x >= 0;
    CHECK(finite == (size_t)(in.probe.end - in.probe.start));
    CHECK(selected == (size_t)std::min<int64_t>(c.k, in.probe.end - in.probe.start));
    for (size_t i = 1; i < plans.size(); ++i) {
      INFO("batch T " << plans[i].T << " fillers " << plans[i].filler_seed << " keys +" << plans[i].extra_keys);
      CHECK(binv::probe_diff(p0, binv::probe_rows(c, binv::run_indexer_topk(h, c, in, plans[i]), plans[i].T)) == 0);
    }
  }
}
