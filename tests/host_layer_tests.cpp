// host_layer_tests.cpp — the one host layer of the GPU plugins (backends/common/host/plugin_host.cpp)
// in the CPU tier: linked with a simulated vendor (tests/plugins/hostsim_vendor.cpp) into the
// backend "hostsim", whose launchers record the kernel parameters instead of computing. Checks the
// attention schedule (split count, workspace layout), the variant choice (device, shapes,
// SPMLA_ATTENTION_VARIANT), that plan launches nothing, the marshalling of every
// operation, the errors, and SPMLA_LOG. Numbers are the GPU tier's job (tests/gpu/).
//
// Its own executable: the registry is built once per process, and SPMLA_BACKEND_PATH must name
// the test plugins before that.
#define CATCH_CONFIG_RUNNER
#include <dlfcn.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "plugins/hostsim_journal.h"
#include "test_support.h"

namespace {

using tst::Bytes;
using tst::tensor;

hostsim::Journal *journal() {
  static hostsim::Journal *j = [] {
    const std::string path = std::string(SPMLA_TEST_PLUGIN_DIR) + "/libspmla_backend_hostsim.so";
    void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
    REQUIRE(h);  // loaded by libspmla when the first hostsim handle was created
    auto fn = reinterpret_cast<hostsim::Journal *(*)()>(dlsym(h, "hostsim_journal"));
    REQUIRE(fn);
    return fn();
  }();
  return j;
}
void reset_journal() { journal()->count = 0; }

// Environment set for one scope (restored after).
struct Env {
  std::string name, old;
  bool had;
  Env(const char *n, const char *v) : name(n) {
    const char *o = std::getenv(n);
    had = o != nullptr;
    if (had) old = o;
    setenv(n, v, 1);
  }
  ~Env() {
    if (had)
      setenv(name.c_str(), old.c_str(), 1);
    else
      unsetenv(name.c_str());
  }
};

struct Handle {
  spmla_handle_t h = nullptr;
  Handle() {
    const spmla_status_t st = spmla_handle_create("hostsim", 0, &h);
    INFO(spmla_last_error_message());
    REQUIRE(st == SPMLA_STATUS_SUCCESS);
  }
  ~Handle() { spmla_handle_destroy(h); }
  operator spmla_handle_t() const { return h; }
};

size_t align256(size_t x) { return (x + 255) / 256 * 256; }

// A decode-like attention call over host buffers (hostsim's "device" memory is host memory).
struct AttnCall {
  int64_t T, H, D, K, K2;
  int64_t q_stride_h;  // elements between heads of Q (D when packed)
  Bytes qb, cb, xb, ib, xib, ob, lb;
  spmla_tensor_t q, idx, xidx, out, lse;
  spmla_kv_cache_t kv, extra;
  spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;

  AttnCall(int64_t T_, int64_t H_, int64_t D_, int64_t K_, int64_t K2_ = 0,
           spmla_kv_layout_t extra_layout = SPMLA_KV_LAYOUT_BF16, int64_t q_stride_h_ = 0)
      : T(T_), H(H_), D(D_), K(K_), K2(K2_), q_stride_h(q_stride_h_ ? q_stride_h_ : D_),
        qb(2 * T_ * H_ * (q_stride_h_ ? q_stride_h_ : D_) + 64), cb(tst::page_bytes(SPMLA_KV_LAYOUT_BF16, D_, 64) * 4),
        xb(tst::page_bytes(extra_layout, D_, 64) * 4), ib(4 * T_ * K_), xib(4 * T_ * (K2_ ? K2_ : 1)),
        ob(2 * T_ * H_ * 512), lb(4 * T_ * H_) {
    q = tensor(qb.data(), SPMLA_DTYPE_BF16, {T, H, D}, {H * q_stride_h, q_stride_h, 1});
    kv = tst::cache(cb.data(), SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, (int32_t)D, 4, 64);
    extra = tst::cache(xb.data(), extra_layout, SPMLA_FP8_E4M3FN, (int32_t)D, 4, 64);
    idx = tensor(ib.data(), SPMLA_DTYPE_INT32, {T, K});
    xidx = tensor(xib.data(), SPMLA_DTYPE_INT32, {T, K2 ? K2 : 1});
    out = tensor(ob.data(), SPMLA_DTYPE_BF16, {T, H, 512});
    lse = tensor(lb.data(), SPMLA_DTYPE_FP32, {T, H});
    a.q = &q;
    a.kv = &kv;
    a.indices = &idx;
    if (K2) {
      a.extra_kv = &extra;
      a.extra_indices = &xidx;
    }
    a.out = &out;
    a.lse = &lse;
  }
};

// The workspace the schedule needs for `splits` (partials of splits x T x H rows), 0 without.
size_t expected_ws(int splits, int64_t T, int64_t H) {
  if (splits <= 1) return 0;
  const size_t rows = (size_t)splits * T * H;
  return align256(rows * 512 * 4) + 2 * align256(rows * 4);
}

struct Ran {
  spmla_status_t plan, run;
  size_t ws_bytes;
  Bytes ws;
  int plan_launches;
};
// Workspace query, plan, run; the journal holds run's launches afterwards.
Ran plan_and_run(spmla_handle_t h, AttnCall &c) {
  size_t ws = 0;
  {
    const spmla_status_t st = spmla_sparse_attention_get_workspace_size(h, &c.a, &ws);
    INFO(spmla_last_error_message());
    REQUIRE(st == SPMLA_STATUS_SUCCESS);
  }
  Ran r{SPMLA_STATUS_SUCCESS, SPMLA_STATUS_SUCCESS, ws, Bytes(ws + 16), 0};
  void *w = ws ? r.ws.data() : nullptr;
  reset_journal();
  r.plan = spmla_sparse_attention_plan(h, &c.a, w, ws, nullptr);
  r.plan_launches = journal()->count;
  reset_journal();
  r.run = spmla_sparse_attention_run(h, &c.a, w, ws, nullptr);
  return r;
}

const hostsim::Launch &launch(int i) {
  REQUIRE(journal()->count > i);
  return journal()->launches[i];
}

// The variant that ran call c (plan and run succeeded).
std::string variant_run(spmla_handle_t h, AttnCall &c) {
  const Ran r = plan_and_run(h, c);
  REQUIRE(r.run == SPMLA_STATUS_SUCCESS);
  return launch(0).variant;
}

// Reads what fd 2 receives while f runs.
template <typename F>
std::string capture_stderr(F f) {
  char path[] = "/tmp/spmla-hostsim-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  fflush(stderr);
  const int saved = dup(2);
  dup2(fd, 2);
  f();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  close(fd);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  unlink(path);
  return ss.str();
}

bool has(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("host layer: small grid is split for wave efficiency, partials laid out in the workspace", "[host]") {
  Handle h;  // 16 SMs
  AttnCall c(2, 64, 576, 512);
  // 2 CTAs of 64 heads on 16 SMs: the efficiency (2k / 16) grows with every split up to the cap
  // of K / (2 x 32) = 8 splits, which fill the device.
  Ran r = plan_and_run(h, c);
  CHECK(r.ws_bytes == expected_ws(8, 2, 64));
  CHECK(r.plan == SPMLA_STATUS_SUCCESS);
  CHECK(r.plan_launches == 0);  // the schedule is the shapes': plan launches nothing
  INFO(spmla_last_error_message());
  REQUIRE(r.run == SPMLA_STATUS_SUCCESS);
  REQUIRE(journal()->count == 2);
  const hostsim::Launch &l = launch(0);
  CHECK(std::string(l.what) == "attention");
  CHECK(std::string(l.variant) == "wide");
  CHECK(l.grid[0] == 2);
  CHECK(l.grid[1] == 1);
  CHECK(l.grid[2] == 8);
  CHECK(l.q_vec == 1);
  const spmla::kern::AttnParams &p = l.attn;
  CHECK(p.num_splits == 8);
  const size_t rows = 8 * 2 * 64;
  CHECK(reinterpret_cast<const uint8_t *>(p.part_o) == r.ws.data());
  CHECK(reinterpret_cast<const uint8_t *>(p.part_lse) == r.ws.data() + align256(rows * 512 * 4));
  CHECK(reinterpret_cast<const uint8_t *>(p.part_max) == r.ws.data() + align256(rows * 512 * 4) + align256(rows * 4));
  // Marshalling of the arguments.
  CHECK(p.q == c.q.data);
  CHECK(p.q_stride_t == 64 * 576);
  CHECK(p.q_stride_h == 576);
  CHECK(p.T == 2);
  CHECK(p.H == 64);
  CHECK(p.D == 576);
  CHECK(p.K[0] == 512);
  CHECK(p.K[1] == 0);
  CHECK(p.idx[0] == c.idx.data);
  CHECK(p.src[0].base == c.cb.data());
  CHECK(p.src[0].num_pages == 4);
  CHECK(p.src[0].block_size == 64);
  CHECK(p.src[0].layout == SPMLA_KV_LAYOUT_BF16);
  CHECK(p.src[0].page_stride == tst::page_bytes(SPMLA_KV_LAYOUT_BF16, 576, 64));
  CHECK(p.scale == Approx(1.0 / std::sqrt(576.0)).epsilon(1e-7));
  CHECK(p.out == c.out.data);
  CHECK(p.lse == c.lse.data);
  CHECK(p.max_logits == nullptr);
  CHECK(std::string(launch(1).what) == "combine");
  CHECK(launch(1).attn.num_splits == 8);
}

TEST_CASE("host layer: the split count is the smallest with the best wave efficiency", "[host]") {
  Handle h;
  // 6 CTAs on 16 SMs: 1 split fills 6/16 of a wave, 2 splits 12/16, 3 splits 18/32, ...,
  // 8 splits 48/48 (the first whole number of waves). A plain ceiling (16 / 6 -> 3) would leave
  // 14 SMs idle in the second wave.
  AttnCall c(6, 64, 576, 4096);
  Ran r = plan_and_run(h, c);
  REQUIRE(r.run == SPMLA_STATUS_SUCCESS);
  CHECK(launch(0).grid[2] == 8);
  CHECK(r.ws_bytes == expected_ws(8, 6, 64));
  // 5 CTAs: 16 splits = 80 CTAs = 5 waves exactly (efficiency 1 first reached there).
  AttnCall c5(5, 64, 576, 4096);
  Ran r5 = plan_and_run(h, c5);
  REQUIRE(r5.run == SPMLA_STATUS_SUCCESS);
  CHECK(launch(0).grid[2] == 16);
}

TEST_CASE("host layer: a grid that fills the device is not split and needs no workspace", "[host]") {
  Handle h;
  AttnCall c(200, 64, 576, 512);
  Ran r = plan_and_run(h, c);
  CHECK(r.ws_bytes == 0);
  REQUIRE(r.run == SPMLA_STATUS_SUCCESS);
  REQUIRE(journal()->count == 1);  // no combine
  CHECK(launch(0).attn.num_splits == 1);
  CHECK(launch(0).attn.part_o == nullptr);
  CHECK(launch(0).grid[2] == 1);
}

TEST_CASE("host layer: SPMLA_OPTION_BATCH_INVARIANT sizes the split count from K alone, never from T",
          "[host][batch_invariant]") {
  Handle h;  // 16 SMs
  int64_t v = -1;
  REQUIRE(spmla_handle_get_option(h, SPMLA_OPTION_BATCH_INVARIANT, &v) == SPMLA_STATUS_SUCCESS);
  CHECK(v == 0);
  // Without the option the count follows the grid: 1 token (1 CTA of 64 heads) is split 8 ways,
  // 128 tokens fill the device unsplit. That is what the option takes away.
  {
    AttnCall c1(1, 64, 576, 512), c128(128, 64, 576, 512);
    REQUIRE(plan_and_run(h, c1).run == SPMLA_STATUS_SUCCESS);
    CHECK(launch(0).attn.num_splits == 8);
    REQUIRE(plan_and_run(h, c128).run == SPMLA_STATUS_SUCCESS);
    CHECK(launch(0).attn.num_splits == 1);
  }
  {
    INFO(spmla_last_error_message());
    REQUIRE(spmla_handle_set_option(h, SPMLA_OPTION_BATCH_INVARIANT, 1) == SPMLA_STATUS_SUCCESS);
  }
  // One split per 2048 entries of K + K2 (plugin_host.cpp kBatchInvariantSplitKeys), whatever T;
  // the variant is the same for every T too.
  struct Case {
    int64_t H, D, K, K2;
    int splits;
  } cases[] = {{64, 576, 512, 0, 1},  {64, 576, 2048, 0, 1},   {128, 576, 2049, 0, 2}, {64, 512, 2048, 128, 2},
               {16, 512, 1024, 128, 1}, {64, 576, 4096, 128, 3}, {3, 576, 64 * 2048, 0, 64}};
  for (const Case &k : cases) {
    std::string variant;
    for (int64_t T : {1, 2, 7, 16, 128, 1000}) {
      if (T * (k.K + k.K2) > 50 * 1000 * 1000) continue;  // host buffers of the huge list
      INFO("H " << k.H << " D " << k.D << " K " << k.K << " + " << k.K2 << ", T " << T);
      AttnCall c(T, k.H, k.D, k.K, k.K2);
      Ran r = plan_and_run(h, c);
      INFO(spmla_last_error_message());
      REQUIRE(r.run == SPMLA_STATUS_SUCCESS);
      CHECK(r.ws_bytes == expected_ws(k.splits, T, k.H));
      CHECK(launch(0).attn.num_splits == k.splits);
      CHECK(launch(0).grid[2] == (unsigned)k.splits);
      CHECK(journal()->count == (k.splits > 1 ? 2 : 1));  // the combine (split order) when split
      if (variant.empty()) variant = launch(0).variant;
      CHECK(variant == launch(0).variant);
    }
  }
  // SPMLA_LOG says the schedule is the batch-invariant one.
  {
    Env log("SPMLA_LOG", "1");
    AttnCall c(3, 64, 576, 512);
    const std::string err = capture_stderr([&] {
      Handle hl;
      REQUIRE(spmla_handle_set_option(hl, SPMLA_OPTION_BATCH_INVARIANT, 1) == SPMLA_STATUS_SUCCESS);
      REQUIRE(plan_and_run(hl, c).run == SPMLA_STATUS_SUCCESS);
    });
    CHECK(has(err, "sparse_attention T 3 H 64 D 576 BF16 K 512: wide, 1 split, Q vector loads, batch-invariant"));
  }
  // A forced count is a constant: it stays under the option, for every T.
  {
    Env splits("SPMLA_ATTENTION_SPLITS", "5");
    Handle hf;
    REQUIRE(spmla_handle_set_option(hf, SPMLA_OPTION_BATCH_INVARIANT, 1) == SPMLA_STATUS_SUCCESS);
    for (int64_t T : {1, 128}) {
      AttnCall c(T, 64, 576, 2048);
      REQUIRE(plan_and_run(hf, c).run == SPMLA_STATUS_SUCCESS);
      CHECK(launch(0).attn.num_splits == 5);
    }
  }
  // Off again: the wave-filling schedule is back.
  REQUIRE(spmla_handle_set_option(h, SPMLA_OPTION_BATCH_INVARIANT, 0) == SPMLA_STATUS_SUCCESS);
  AttnCall c1(1, 64, 576, 512);
  REQUIRE(plan_and_run(h, c1).run == SPMLA_STATUS_SUCCESS);
  CHECK(launch(0).attn.num_splits == 8);
}

TEST_CASE("host layer: Q is vector-aligned by contract; the head dim narrows the choice", "[host]") {
  Handle h;
  SECTION("Q rows 4 elements apart are refused before any launch (the vector paths may rely on 8)") {
    AttnCall c(2, 64, 576, 512, 0, SPMLA_KV_LAYOUT_BF16, 580);
    size_t ws = 0;
    reset_journal();
    CHECK(spmla_sparse_attention_get_workspace_size(h, &c.a, &ws) == SPMLA_STATUS_MISALIGNED);
    CHECK(spmla_sparse_attention_run(h, &c.a, nullptr, 0, nullptr) == SPMLA_STATUS_MISALIGNED);
    CHECK(journal()->count == 0);
  }
  SECTION("D 512: 'mid' cannot, 'wide' can") {
    AttnCall c(2, 64, 512, 512);
    Ran r = plan_and_run(h, c);
    REQUIRE(r.run == SPMLA_STATUS_SUCCESS);
    CHECK(std::string(launch(0).variant) == "wide");
    CHECK(launch(0).attn.D == 512);
    CHECK(launch(0).attn.scale == Approx(1.0 / std::sqrt(512.0)).epsilon(1e-7));
  }
  SECTION("D 512 on a device too small for 'wide': 'any', 16 heads per CTA") {
    Env e("HOSTSIM_SMEM", "50000");
    Handle small;
    AttnCall c(2, 64, 512, 512);
    Ran r = plan_and_run(small, c);
    REQUIRE(r.run == SPMLA_STATUS_SUCCESS);
    CHECK(std::string(launch(0).variant) == "any");
    CHECK(launch(0).grid[1] == 4);  // 64 heads / 16
    CHECK(launch(0).grid[2] == 2);  // 8 CTAs a split on 16 SMs
    CHECK(r.ws_bytes == expected_ws(2, 2, 64));
  }
}

TEST_CASE("host layer: the sources' layouts narrow the choice", "[host]") {
  Handle h;
  AttnCall c(2, 64, 576, 256, 128, SPMLA_KV_LAYOUT_V32_FP8);
  Ran r = plan_and_run(h, c);
  REQUIRE(r.run == SPMLA_STATUS_SUCCESS);
  CHECK(std::string(launch(0).variant) == "mid");  // 'wide' needs one layout
  const spmla::kern::AttnParams &p = launch(0).attn;
  CHECK(p.K[0] == 256);
  CHECK(p.K[1] == 128);
  CHECK(p.src[1].layout == SPMLA_KV_LAYOUT_V32_FP8);
  CHECK(p.src[1].flavor == SPMLA_FP8_E4M3FN);
  CHECK(p.idx[1] == c.xidx.data);
  // (256 + 128) / 64 = 6 splits at most: 2 x 6 CTAs
  CHECK(p.num_splits == 6);
}

// CacheDesc.flat_row / slot_limit: the Hopper producers turn a slot into a row address by one
// multiply when pages are packed rows; anything else must keep the page split (flat_row 0).
TEST_CASE("host layer: packed row caches get flat row addressing, other caches the page split", "[host]") {
  Handle h;
  const auto src = [&](AttnCall &c, int i) {
    const Ran r = plan_and_run(h, c);
    INFO(spmla_last_error_message());
    REQUIRE(r.run == SPMLA_STATUS_SUCCESS);
    return launch(0).attn.src[i];
  };
  SECTION("BF16 main and V32_FP8 extra, both packed") {
    AttnCall c(2, 64, 576, 256, 128, SPMLA_KV_LAYOUT_V32_FP8);
    const spmla::kern::CacheDesc m = src(c, 0), x = src(c, 1);
    CHECK(m.flat_row == 2 * 576);
    CHECK(m.slot_limit == 4u * 64u);
    CHECK(x.flat_row == 656);
    CHECK(x.slot_limit == 4u * 64u);
  }
  SECTION("a padded page stride keeps the page split") {
    AttnCall c(2, 64, 576, 256);
    c.kv.page_stride_bytes = tst::page_bytes(SPMLA_KV_LAYOUT_BF16, 576, 64) + 16;
    const spmla::kern::CacheDesc m = src(c, 0);
    CHECK(m.flat_row == 0);
    CHECK(m.page_stride == 64 * 1152 + 16);
    CHECK(m.slot_limit == 4u * 64u);
  }
  SECTION("V4_FP8 (scale rows after the page's data rows) keeps the page split") {
    AttnCall c(2, 64, 512, 256, 128, SPMLA_KV_LAYOUT_V4_FP8);
    const spmla::kern::CacheDesc x = src(c, 1);
    CHECK(x.layout == SPMLA_KV_LAYOUT_V4_FP8);
    CHECK(x.flat_row == 0);
  }
  SECTION("slot ids are int32: the limit stops at 2^31 however many slots the cache has") {
    AttnCall c(2, 64, 576, 256);
    // 2^32 slots: a descriptor only (hostsim reads nothing), placed below the heap so that the
    // call's overlap check sees disjoint memory.
    c.kv.num_pages = int64_t(1) << 26;
    c.kv.data = reinterpret_cast<void *>(uintptr_t(1) << 44);
    const spmla::kern::CacheDesc m = src(c, 0);
    CHECK(m.slot_limit == 0x80000000u);
    CHECK(m.flat_row == 1152);
  }
}

TEST_CASE("host layer: SPMLA_ATTENTION_VARIANT and SPMLA_ATTENTION_SPLITS", "[host]") {
  SECTION("a forced variant runs where it can, and sizes the schedule") {
    Env e("SPMLA_ATTENTION_VARIANT", "any");
    Handle h;
    AttnCall c(2, 64, 576, 512);
    Ran r = plan_and_run(h, c);
    REQUIRE(r.run == SPMLA_STATUS_SUCCESS);
    CHECK(std::string(launch(0).variant) == "any");
    CHECK(launch(0).grid[1] == 4);
    // 8 CTAs per split on 16 SMs: 2 splits fill the device
    CHECK(launch(0).grid[2] == 2);
  }
  SECTION("a forced variant that cannot run the call leaves the normal choice") {
    Env e("SPMLA_ATTENTION_VARIANT", "mid");
    Handle h;
    AttnCall c(2, 64, 512, 512);  // 'mid' reads D 576 only
    Ran r = plan_and_run(h, c);
    REQUIRE(r.run == SPMLA_STATUS_SUCCESS);
    CHECK(std::string(launch(0).variant) == "wide");
  }
  SECTION("an unknown name changes nothing") {
    Env e("SPMLA_ATTENTION_VARIANT", "no-such-kernel");
    Handle h;
    AttnCall c(2, 64, 576, 512);
    Ran r = plan_and_run(h, c);
    REQUIRE(r.run == SPMLA_STATUS_SUCCESS);
    CHECK(std::string(launch(0).variant) == "wide");
  }
  SECTION("a forced split count, still at least one tile per split") {
    Env e("SPMLA_ATTENTION_SPLITS", "3");
    Handle h;
    AttnCall c(200, 64, 576, 512);
    Ran r = plan_and_run(h, c);
    CHECK(r.ws_bytes == expected_ws(3, 200, 64));
    REQUIRE(r.run == SPMLA_STATUS_SUCCESS);
    CHECK(launch(0).grid[2] == 3);
    AttnCall c2(2, 64, 576, 64);  // 2 tiles: at most 2 splits
    Ran r2 = plan_and_run(h, c2);
    REQUIRE(r2.run == SPMLA_STATUS_SUCCESS);
    CHECK(launch(0).grid[2] == 2);
  }
}

TEST_CASE("host layer: a variant runs by default only where it is preferred", "[host]") {
  // hostsim has 16 SMs; "big" (first in the table) is preferred at D 576 from 8 x 16 CTAs of 64
  // heads on, "wide" (next) everywhere it runs.
  Handle h;
  SECTION("a large D 576 grid: the preferred first variant") {
    AttnCall c(128, 64, 576, 512);
    CHECK(variant_run(h, c) == "big");
  }
  SECTION("one CTA short of 8 waves, or D 512: the next variant") {
    AttnCall c(127, 64, 576, 512), c512(256, 64, 512, 512);
    CHECK(variant_run(h, c) == "wide");
    CHECK(variant_run(h, c512) == "wide");
  }
  SECTION("SPMLA_ATTENTION_VARIANT forces a variant where it is not preferred") {
    Env e("SPMLA_ATTENTION_VARIANT", "big");
    Handle hf;
    AttnCall c(2, 64, 576, 512);
    CHECK(variant_run(hf, c) == "big");
  }
  SECTION("batch invariance sees T = 1, so the choice never follows the batch") {
    Handle hb;
    REQUIRE(spmla_handle_set_option(hb, SPMLA_OPTION_BATCH_INVARIANT, 1) == SPMLA_STATUS_SUCCESS);
    AttnCall c(128, 64, 576, 512);
    CHECK(variant_run(hb, c) == "wide");
  }
  SECTION("where no preferred variant runs, the first that runs does") {
    // A BF16 main + V32_FP8 extra call: 'big' and 'wide' need one layout, 'mid' runs it.
    AttnCall c(128, 64, 576, 256, 128, SPMLA_KV_LAYOUT_V32_FP8);
    CHECK(variant_run(h, c) == "mid");
  }
}

TEST_CASE("host layer: no variant for the device says why, for every variant", "[host]") {
  Env e("HOSTSIM_SMEM", "500");
  Handle h;
  AttnCall c(2, 64, 512, 512);
  size_t ws = 0;
  const spmla_status_t st = spmla_sparse_attention_get_workspace_size(h, &c.a, &ws);
  const std::string msg = spmla_last_error_message();
  CHECK(st == SPMLA_STATUS_UNSUPPORTED);
  INFO(msg);
  CHECK(has(msg, "hostsim backend: no attention kernel runs this call"));
  CHECK(has(msg, "big: needs 80000 B of shared memory"));
  CHECK(has(msg, "wide: needs 80000 B of shared memory"));
  CHECK(has(msg, "mid: reads D 576 only"));
  CHECK(has(msg, "any: needs 1000 B of shared memory"));
  reset_journal();
  CHECK(spmla_sparse_attention_run(h, &c.a, nullptr, 0, nullptr) == SPMLA_STATUS_UNSUPPORTED);
  CHECK(journal()->count == 0);
}

TEST_CASE("host layer: a failed launch is a device error naming the kernel", "[host]") {
  Handle h;
  AttnCall c(2, 64, 576, 512);
  Env e("HOSTSIM_FAIL", "attention");
  Ran r = plan_and_run(h, c);
  CHECK(r.run == SPMLA_STATUS_DEVICE_ERROR);
  const std::string msg = spmla_last_error_message();
  INFO(msg);
  CHECK(has(msg, "sparse_attention (wide) launch: simErrorIllegalAddress"));
  Env e2("HOSTSIM_FAIL", "combine");
  Ran r2 = plan_and_run(h, c);
  CHECK(r2.run == SPMLA_STATUS_DEVICE_ERROR);
  CHECK(has(spmla_last_error_message(), "sparse_attention combine launch"));
}

TEST_CASE("host layer: SPMLA_LOG names the device's variants and each call's choice", "[host]") {
  Env e("SPMLA_LOG", "1");
  std::string text = capture_stderr([] {
    Handle h;
    AttnCall c(2, 64, 576, 512);
    Ran r = plan_and_run(h, c);
    CHECK(r.run == SPMLA_STATUS_SUCCESS);
  });
  INFO(text);
  CHECK(has(text, "spmla[hostsim:0] sim_1, 16 SMs, warp 32, 100000 B shared/block"));
  CHECK(has(text, "attention D 512 variant mid      unavailable: reads D 576 only"));
  CHECK(has(text, "attention D 576 variant wide     available"));
  CHECK(has(text, "sparse_attention T 2 H 64 D 576 BF16 K 512: wide, 8 splits, Q vector loads"));
  Env off("SPMLA_LOG", "0");
  std::string quiet = capture_stderr([] {
    Handle h;
    AttnCall c(2, 64, 576, 512);
    plan_and_run(h, c);
  });
  CHECK(quiet.empty());
}

TEST_CASE("host layer: indexer, top-k, slots, store and gather are marshalled", "[host]") {
  Handle h;
  SECTION("indexer: the vendor's limit is an unsupported call; a call it takes is passed on") {
    const int64_t T = 3, S = 40, Di = 128;
    for (int64_t Hi : {48, 16}) {
      Bytes qb(T * Hi * Di), kb(S * Di), ksb(4 * S), wb(4 * T * Hi), stb(4 * T), enb(4 * T), lgb(4 * T * S);
      spmla_tensor_t q = tensor(qb.data(), SPMLA_DTYPE_FP8_E4M3FN, {T, Hi, Di});
      spmla_tensor_t k = tensor(kb.data(), SPMLA_DTYPE_FP8_E4M3FN, {S, Di});
      spmla_tensor_t ks = tensor(ksb.data(), SPMLA_DTYPE_FP32, {S});
      spmla_tensor_t w = tensor(wb.data(), SPMLA_DTYPE_FP32, {T, Hi});
      spmla_tensor_t st = tensor(stb.data(), SPMLA_DTYPE_INT32, {T});
      spmla_tensor_t en = tensor(enb.data(), SPMLA_DTYPE_INT32, {T});
      spmla_tensor_t lg = tensor(lgb.data(), SPMLA_DTYPE_FP32, {T, S});
      spmla_indexer_logits_args_t a = SPMLA_INDEXER_LOGITS_ARGS_INIT;
      a.q = &q;
      a.k = &k;
      a.k_scale = &ks;
      a.weights = &w;
      a.k_start = &st;
      a.k_end = &en;
      a.logits = &lg;
      reset_journal();
      const spmla_status_t s = spmla_indexer_logits_run(h, &a, nullptr, 0, nullptr);
      if (Hi == 48) {
        CHECK(s == SPMLA_STATUS_UNSUPPORTED);
        CHECK(has(spmla_last_error_message(), "hostsim's indexer takes at most 32 heads"));
        CHECK(journal()->count == 0);
      } else {
        INFO(spmla_last_error_message());
        REQUIRE(s == SPMLA_STATUS_SUCCESS);
        REQUIRE(journal()->count == 1);
        const spmla::kern::IndexerParams &p = launch(0).indexer;
        CHECK(p.rows == T);
        CHECK(p.Hi == Hi);
        CHECK(p.Di == Di);
        CHECK(p.C == S);
        CHECK(p.S == S);
        CHECK(p.flavor == 1);
        CHECK(p.paged == 0);
        CHECK(p.q == q.data);
        CHECK(p.logits == lg.data);
        CHECK(p.k_scale == ks.data);
      }
    }
  }
  SECTION("top-k") {
    const int64_t R = 5, C = 300, k = 17;
    Bytes lb(4 * R * C), ob(4 * R * k), eb(4 * R);
    spmla_tensor_t lg = tensor(lb.data(), SPMLA_DTYPE_FP32, {R, C});
    spmla_tensor_t out = tensor(ob.data(), SPMLA_DTYPE_INT32, {R, k});
    spmla_tensor_t ends = tensor(eb.data(), SPMLA_DTYPE_INT32, {R});
    spmla_topk_per_row_args_t a = SPMLA_TOPK_PER_ROW_ARGS_INIT;
    a.logits = &lg;
    a.indices = &out;
    a.row_ends = &ends;
    reset_journal();
    const spmla_status_t s = spmla_topk_per_row_run(h, &a, nullptr, 0, nullptr);
    INFO(spmla_last_error_message());
    REQUIRE(s == SPMLA_STATUS_SUCCESS);
    REQUIRE(journal()->count == 1);
    const spmla::kern::TopkParams &p = launch(0).topk;
    CHECK(p.R == R);
    CHECK(p.C == C);
    CHECK(p.k == k);
    CHECK(p.row_stride == C);
    CHECK(p.row_ends == ends.data);
    CHECK(p.row_starts == nullptr);
    CHECK(p.next_n == 1);
    CHECK(p.out == out.data);
  }
  SECTION("store and gather: strides and cache geometry passed on") {
    const int64_t N = 6, D = 576;
    Bytes cb(tst::page_bytes(SPMLA_KV_LAYOUT_V32_FP8, D, 16) * 3), kvb(2 * N * (D + 8)), sb(4 * N);
    spmla_kv_cache_t cache = tst::cache(cb.data(), SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FNUZ, (int32_t)D, 3, 16);
    spmla_tensor_t slots = tensor(sb.data(), SPMLA_DTYPE_INT32, {N});
    for (int64_t stride : {D, D + 8}) {
      spmla_tensor_t kv = tensor(kvb.data(), SPMLA_DTYPE_BF16, {N, D}, {stride, 1});
      spmla_kv_cache_store_args_t s = SPMLA_KV_CACHE_STORE_ARGS_INIT;
      s.kv = &kv;
      s.slot_mapping = &slots;
      s.cache = &cache;
      reset_journal();
      const spmla_status_t st = spmla_kv_cache_store_run(h, &s, nullptr);
      INFO(spmla_last_error_message());
      REQUIRE(st == SPMLA_STATUS_SUCCESS);
      REQUIRE(journal()->count == 1);
      const spmla::kern::StoreParams &p = launch(0).store;
      CHECK(launch(0).q_vec == 1);  // rows are 16-byte aligned by contract
      CHECK(p.N == N);
      CHECK(p.kv_stride == stride);
      CHECK(p.slots == slots.data);
      CHECK(p.slots_is64 == 0);
      CHECK(p.cache.layout == SPMLA_KV_LAYOUT_V32_FP8);
      CHECK(p.cache.flavor == SPMLA_FP8_E4M3FNUZ);
      CHECK(p.cache.num_pages == 3);
      CHECK(p.cache.page_stride == tst::page_bytes(SPMLA_KV_LAYOUT_V32_FP8, D, 16));
      spmla_kv_cache_gather_args_t g = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
      g.cache = &cache;
      g.slots = &slots;
      g.out = &kv;
      reset_journal();
      REQUIRE(spmla_kv_cache_gather_run(h, &g, nullptr) == SPMLA_STATUS_SUCCESS);
      REQUIRE(journal()->count == 1);
      CHECK(launch(0).q_vec == 1);
      CHECK(launch(0).gather.out_stride == stride);
      CHECK(launch(0).gather.N == N);
    }
  }
}

int main(int argc, char **argv) {
  // Before the registry is built: the test plugins' directory first.
  setenv("SPMLA_BACKEND_PATH", SPMLA_TEST_PLUGIN_DIR, 1);
  // 16 SMs: wave efficiencies of the small grids below are k / 8, with one best split count.
  setenv("HOSTSIM_SM_COUNT", "16", 1);
  unsetenv("SPMLA_LOG");
  unsetenv("SPMLA_ATTENTION_VARIANT");
  unsetenv("SPMLA_ATTENTION_SPLITS");
  return Catch::Session().run(argc, argv);
}
