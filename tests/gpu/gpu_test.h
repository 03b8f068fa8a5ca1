// gpu_test.h — helpers of the GPU tier: a GPU handle and a CPU handle, device buffers through the
// public API, poisoning, random inputs (fresh seed per run, printed on failure).
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kv_layout.h"
#include "numerics.h"
#include "spmla.h"

namespace gpu_test {

inline const char *backend_name() {
  const char *e = std::getenv("SPMLA_GPU_BACKEND");
  return (e && *e) ? e : "cuda";
}

inline void check(spmla_status_t st, const char *what) {
  INFO(what << ": " << spmla_status_string(st) << " " << spmla_last_error_message());
  REQUIRE(st == SPMLA_STATUS_SUCCESS);
}

struct Handles {
  spmla_handle_t gpu = nullptr, cpu = nullptr;
  Handles() {
    check(spmla_handle_create(backend_name(), 0, &gpu), "gpu handle");
    check(spmla_handle_create("cpu", 0, &cpu), "cpu handle");
  }
  ~Handles() {
    spmla_handle_destroy(gpu);
    spmla_handle_destroy(cpu);
  }
  static Handles &get() {
    static Handles h;
    return h;
  }
};
inline spmla_handle_t G() { return Handles::get().gpu; }
inline spmla_handle_t C() { return Handles::get().cpu; }

// A device buffer mirroring a host vector.
struct DevBuf {
  void *p = nullptr;
  size_t bytes = 0;
  DevBuf() = default;
  explicit DevBuf(size_t n) : bytes(n) {
    if (n) check(spmla_device_malloc(G(), n, &p), "device_malloc");
  }
  template <typename T>
  explicit DevBuf(const std::vector<T> &v) : DevBuf(v.size() * sizeof(T)) {
    upload(v);
  }
  DevBuf(const DevBuf &) = delete;
  DevBuf &operator=(const DevBuf &) = delete;
  DevBuf(DevBuf &&o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; }
  DevBuf &operator=(DevBuf &&o) noexcept {
    if (this != &o) {
      if (p) spmla_device_free(G(), p);
      p = o.p;
      bytes = o.bytes;
      o.p = nullptr;
    }
    return *this;
  }
  ~DevBuf() {
    if (p) spmla_device_free(G(), p);
  }
  template <typename T>
  void upload(const std::vector<T> &v) {
    REQUIRE(v.size() * sizeof(T) <= bytes);
    if (!v.empty()) check(spmla_memcpy(G(), p, v.data(), v.size() * sizeof(T), SPMLA_MEMCPY_HOST_TO_DEVICE, nullptr), "h2d");
  }
  template <typename T>
  std::vector<T> download(size_t n) const {
    std::vector<T> v(n);
    if (n) check(spmla_memcpy(G(), v.data(), p, n * sizeof(T), SPMLA_MEMCPY_DEVICE_TO_HOST, nullptr), "d2h");
    return v;
  }
  void poison(int byte = 0xff) {
    if (bytes) check(spmla_memset(G(), p, byte, bytes, nullptr), "memset");
  }
};

inline void sync() { check(spmla_stream_synchronize(G(), nullptr), "sync"); }

inline spmla_tensor_t tensor(const void *data, spmla_dtype_t dt, std::vector<int64_t> shape) {
  spmla_tensor_t t = SPMLA_TENSOR_INIT;
  t.data = const_cast<void *>(data);
  t.dtype = dt;
  t.ndim = (int32_t)shape.size();
  int64_t s = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    t.shape[d] = shape[d];
    t.strides[d] = s;
    s *= shape[d];
  }
  return t;
}

struct Rng {
  uint64_t seed;
  std::mt19937_64 g;
  Rng() : seed(std::random_device{}() ^ ((uint64_t)std::random_device{}() << 32)), g(seed) {}
  double uni() { return std::uniform_real_distribution<double>(0.0, 1.0)(g); }
  int64_t range(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi - 1)(g); }  // [lo, hi)
  float normal(float sd = 1.f) { return std::normal_distribution<float>(0.f, sd)(g); }
};

inline std::vector<uint16_t> random_bf16(Rng &r, size_t n, float sd) {
  std::vector<uint16_t> v(n);
  for (auto &x : v) x = spmla::f32_to_bf16(r.normal(sd));
  return v;
}

inline float qnan() { return std::numeric_limits<float>::quiet_NaN(); }
inline float inf() { return std::numeric_limits<float>::infinity(); }

template <typename T>
inline std::vector<T> poisoned(size_t n) {
  std::vector<T> v(n);
  memset(v.data(), 0xff, n * sizeof(T));
  return v;
}

// SPMLA_GPU_TESTS_QUICK=1 (scripts/gpu-check's compute-sanitizer runs): every op still runs, on
// fewer and smaller cases.
inline bool quick() { return std::getenv("SPMLA_GPU_TESTS_QUICK") != nullptr; }

// Random FP8 bytes that are finite numbers (no NaN codes).
inline std::vector<uint8_t> random_fp8(Rng &r, size_t n, bool fnuz, float sd) {
  std::vector<uint8_t> v(n);
  for (auto &b : v) b = spmla::f32_to_fp8_e4m3(r.normal(sd), fnuz ? spmla::Fp8Kind::E4M3FNUZ : spmla::Fp8Kind::E4M3FN);
  return v;
}

// Bit-identical results (GPU against the CPU reference).
template <typename T>
void require_equal(const std::vector<T> &g, const std::vector<T> &r, const std::string &what) {
  REQUIRE(g.size() == r.size());
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < g.size(); ++i)
    if (memcmp(&g[i], &r[i], sizeof(T)) != 0) {
      if (!bad) first = i;
      ++bad;
    }
  INFO(what << ": " << bad << " of " << g.size() << " differ, first at " << first);
  CHECK(bad == 0);
}

// One op on the CPU reference (gpu false) or the GPU: its workspace queried, allocated on the side
// that runs it, then the run. ws and run are the op's spmla_*_get_workspace_size and spmla_*_run.
template <typename Args, typename WsFn, typename RunFn>
inline void run_op(bool gpu, const Args &a, WsFn ws, RunFn run, const char *what) {
  const spmla_handle_t h = gpu ? G() : C();
  size_t wsb = 0;
  check(ws(h, &a, &wsb), "ws");
  DevBuf dws(gpu ? wsb : 0);
  std::vector<uint8_t> hws(wsb + 16);
  check(run(h, &a, gpu ? dws.p : hws.data(), wsb, nullptr), what);
}

// Indexer logits [rows, C] within SPEC's tolerance: relative 1e-3 of the row's largest finite
// magnitude; infinities (masked columns) exact.
inline void compare_logits(const std::vector<float> &g, const std::vector<float> &ref, int rows, int C,
                           const std::string &what) {
  size_t bad = 0, first = 0;
  for (int r = 0; r < rows; ++r) {
    double scale = 1e-30;
    for (int j = 0; j < C; ++j) {
      const float v = ref[(size_t)r * C + j];
      if (std::isfinite(v)) scale = std::max(scale, (double)std::fabs(v));
    }
    for (int j = 0; j < C; ++j) {
      const size_t i = (size_t)r * C + j;
      const float a = g[i], b = ref[i];
      bool ok;
      if (std::isinf(b)) ok = a == b;
      else ok = std::isfinite(a) && std::fabs((double)a - b) <= 1e-3 * scale;
      if (!ok) {
        if (!bad) first = i;
        ++bad;
      }
    }
  }
  INFO(what << ": " << bad << " bad of " << g.size() << ", first " << first << " (row " << first / (size_t)C << " col "
            << first % (size_t)C << ")"
            << (bad ? " got " + std::to_string(g[first]) + " ref " + std::to_string(ref[first]) : std::string()));
  CHECK(bad == 0);
}

// indexer_logits (ragged) on the CPU reference and on the GPU from the same host inputs; the
// GPU's logits (poisoned before the run) against the reference's.
inline void check_indexer_ragged(const std::vector<uint8_t> &q, const std::vector<uint8_t> &k,
                                 const std::vector<float> &ks, const std::vector<float> &w,
                                 const std::vector<int32_t> &st, const std::vector<int32_t> &en, int T, int S,
                                 int Hi, int Di, bool fnuz, const std::string &what) {
  DevBuf dq(q), dk(k), dks(ks), dw(w), dst(st), den(en), dout((size_t)T * S * 4);
  dout.poison();
  auto hout = poisoned<float>((size_t)T * S);
  const spmla_dtype_t dt = fnuz ? SPMLA_DTYPE_FP8_E4M3FNUZ : SPMLA_DTYPE_FP8_E4M3FN;
  for (bool gpu : {false, true}) {
    spmla_tensor_t a1 = tensor(gpu ? dq.p : q.data(), dt, {T, Hi, Di});
    spmla_tensor_t a2 = tensor(gpu ? dk.p : k.data(), dt, {S, Di});
    spmla_tensor_t a3 = tensor(gpu ? dks.p : ks.data(), SPMLA_DTYPE_FP32, {S});
    spmla_tensor_t a4 = tensor(gpu ? dw.p : w.data(), SPMLA_DTYPE_FP32, {T, Hi});
    spmla_tensor_t a5 = tensor(gpu ? dst.p : st.data(), SPMLA_DTYPE_INT32, {T});
    spmla_tensor_t a6 = tensor(gpu ? den.p : en.data(), SPMLA_DTYPE_INT32, {T});
    spmla_tensor_t o = tensor(gpu ? dout.p : hout.data(), SPMLA_DTYPE_FP32, {T, S});
    spmla_indexer_logits_args_t a = SPMLA_INDEXER_LOGITS_ARGS_INIT;
    a.q = &a1, a.k = &a2, a.k_scale = &a3, a.weights = &a4, a.k_start = &a5, a.k_end = &a6, a.logits = &o;
    run_op(gpu, a, spmla_indexer_logits_get_workspace_size, spmla_indexer_logits_run, "indexer_logits");
  }
  sync();
  compare_logits(dout.download<float>(hout.size()), hout, T, S, what);
}

// An INDEXER_FP8 cache of `pages` pages filled by the CPU reference's store from random bf16 rows.
struct IndexerCache {
  spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
  std::vector<uint8_t> bytes;
};
inline IndexerCache indexer_cache(Rng &r, int pages, int bs, int Di, bool fnuz) {
  IndexerCache ic;
  ic.c.layout = SPMLA_KV_LAYOUT_INDEXER_FP8;
  ic.c.fp8_flavor = fnuz ? SPMLA_FP8_E4M3FNUZ : SPMLA_FP8_E4M3FN;
  ic.c.head_dim = Di;
  ic.c.num_pages = pages;
  ic.c.block_size = bs;
  size_t pb = 0;
  check(spmla_kv_cache_page_bytes(&ic.c, &pb), "page bytes");
  ic.bytes.resize(pb * pages);
  std::vector<uint16_t> kv = random_bf16(r, (size_t)pages * bs * Di, 1.0f);
  std::vector<int32_t> sm((size_t)pages * bs);
  for (size_t i = 0; i < sm.size(); ++i) sm[i] = (int32_t)i;
  ic.c.data = ic.bytes.data();
  spmla_tensor_t tkv = tensor(kv.data(), SPMLA_DTYPE_BF16, {(int64_t)sm.size(), Di});
  spmla_tensor_t tsm = tensor(sm.data(), SPMLA_DTYPE_INT32, {(int64_t)sm.size()});
  spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
  a.kv = &tkv, a.slot_mapping = &tsm, a.cache = &ic.c;
  check(spmla_kv_cache_store_run(C(), &a, nullptr), "cpu indexer store");
  return ic;
}

// indexer_logits_paged on the CPU reference and on the GPU (the cache copied to the device); the
// GPU's logits (poisoned before the run) against the reference's.
inline void check_indexer_paged(const IndexerCache &ic, const std::vector<int32_t> &bt, const std::vector<int32_t> &cl,
                                const std::vector<uint8_t> &q, const std::vector<float> &w, int B, int N, int Hi,
                                int Di, int max_pages, int Cc, bool fnuz, const std::string &what) {
  DevBuf dc(ic.bytes), dbt(bt), dcl(cl), dq(q), dw(w), dout((size_t)B * N * Cc * 4);
  dout.poison();
  auto hout = poisoned<float>((size_t)B * N * Cc);
  for (bool gpu : {false, true}) {
    spmla_kv_cache_t cc = ic.c;
    cc.data = gpu ? dc.p : const_cast<uint8_t *>(ic.bytes.data());
    spmla_tensor_t a1 = tensor(gpu ? dq.p : q.data(), fnuz ? SPMLA_DTYPE_FP8_E4M3FNUZ : SPMLA_DTYPE_FP8_E4M3FN, {B, N, Hi, Di});
    spmla_tensor_t a2 = tensor(gpu ? dbt.p : bt.data(), SPMLA_DTYPE_INT32, {B, max_pages});
    spmla_tensor_t a3 = tensor(gpu ? dcl.p : cl.data(), SPMLA_DTYPE_INT32, {B});
    spmla_tensor_t a4 = tensor(gpu ? dw.p : w.data(), SPMLA_DTYPE_FP32, {B * N, Hi});
    spmla_tensor_t o = tensor(gpu ? dout.p : hout.data(), SPMLA_DTYPE_FP32, {B * N, Cc});
    spmla_indexer_logits_paged_args_t a = SPMLA_INDEXER_LOGITS_PAGED_ARGS_INIT;
    a.q = &a1, a.cache = &cc, a.block_table = &a2, a.context_lens = &a3, a.weights = &a4, a.logits = &o;
    run_op(gpu, a, spmla_indexer_logits_paged_get_workspace_size, spmla_indexer_logits_paged_run, "paged");
  }
  sync();
  compare_logits(dout.download<float>(hout.size()), hout, B * N, Cc, what);
}

// kv_cache_store on the CPU reference and on the GPU into copies of the same initial cache bytes
// (the bytes bit-identical afterwards), then kv_cache_gather of the listed slots `gs` (invalid
// ones too) from the stored caches: rows bit-identical, except that any NaN equals any NaN (the
// sign/payload of a NaN times a scale is not portable between CPU and GPU arithmetic).
template <typename Slot>
void check_store_gather(const spmla_kv_cache_t &c, const std::vector<uint8_t> &cache, const std::vector<uint16_t> &kv,
                        const std::vector<Slot> &sm, int D, const std::vector<int32_t> &gs) {
  static_assert(sizeof(Slot) == 4 || sizeof(Slot) == 8, "int32 or int64 slot ids");
  const int N = (int)sm.size(), M = (int)gs.size();
  const spmla_dtype_t sdt = sizeof(Slot) == 8 ? SPMLA_DTYPE_INT64 : SPMLA_DTYPE_INT32;
  DevBuf dcache(cache), dkv(kv), dsm(sm);
  std::vector<uint8_t> hcache = cache;
  for (bool gpu : {false, true}) {
    spmla_kv_cache_t cc = c;
    cc.data = gpu ? dcache.p : hcache.data();
    spmla_tensor_t a1 = tensor(gpu ? dkv.p : kv.data(), SPMLA_DTYPE_BF16, {N, D});
    spmla_tensor_t a2 = tensor(gpu ? dsm.p : sm.data(), sdt, {N});
    spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
    a.kv = &a1, a.slot_mapping = &a2, a.cache = &cc;
    check(spmla_kv_cache_store_run(gpu ? G() : C(), &a, nullptr), "store");
  }
  sync();
  require_equal(dcache.download<uint8_t>(hcache.size()), hcache, "cache bytes after store");

  DevBuf dgs(gs), dgo((size_t)M * D * 2);
  dgo.poison();
  auto hgo = poisoned<uint16_t>((size_t)M * D);
  for (bool gpu : {false, true}) {
    spmla_kv_cache_t cc = c;
    cc.data = gpu ? dcache.p : hcache.data();
    spmla_tensor_t a1 = tensor(gpu ? dgs.p : gs.data(), SPMLA_DTYPE_INT32, {M});
    spmla_tensor_t o = tensor(gpu ? dgo.p : hgo.data(), SPMLA_DTYPE_BF16, {M, D});
    spmla_kv_cache_gather_args_t a = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
    a.cache = &cc, a.slots = &a1, a.out = &o;
    check(spmla_kv_cache_gather_run(gpu ? G() : C(), &a, nullptr), "gather");
  }
  sync();
  auto g = dgo.download<uint16_t>(hgo.size());
  size_t bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const bool gn = (g[i] & 0x7fff) > 0x7f80, rn = (hgo[i] & 0x7fff) > 0x7f80;
    if (gn != rn || (!gn && g[i] != hgo[i])) ++bad;
  }
  INFO("gathered rows: " << bad << " of " << g.size() << " differ");
  CHECK(bad == 0);
}

}  // namespace gpu_test
