// batch_invariance.h — the SPMLA_OPTION_BATCH_INVARIANT harness shared by the CPU tier
// (tests/test_batch_invariance.cpp, handle "cpu") and the GPU tier
// (tests/gpu/test_gpu_batch_invariance.cpp, the GPU handle against the CPU reference).
//
// A "probe" token (its q, index lists, lengths; for the indexer its q, weights and key range) is
// placed at some position of batches of T = 1, 7, 128 tokens whose other tokens ("fillers") are
// random: their q, their index lists (with -1 and out-of-range slots), their lengths, and for the
// indexer their key ranges and the number of keys after the probe's. Every run goes through the
// public API on one handle, with buffers from spmla_device_malloc (host memory on "cpu"), outputs
// poisoned (0xff: NaN) before the run. The probe's bytes of every output must be the same in
// every batch.
//
// Plain spmla.h + numerics.h + Catch2 (no test_support.h), so that both tiers include it.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "numerics.h"
#include "spmla.h"

namespace binv {

inline void ok(spmla_status_t st, const char *what) {
  INFO(what << ": " << spmla_status_string(st) << " " << spmla_last_error_message());
  REQUIRE(st == SPMLA_STATUS_SUCCESS);
}

// Sets SPMLA_OPTION_BATCH_INVARIANT on a handle and checks that it reads back.
inline void set_batch_invariant(spmla_handle_t h, int64_t v) {
  ok(spmla_handle_set_option(h, SPMLA_OPTION_BATCH_INVARIANT, v), "set_option");
  int64_t got = -1;
  ok(spmla_handle_get_option(h, SPMLA_OPTION_BATCH_INVARIANT, &got), "get_option");
  REQUIRE(got == v);
}

// Memory of a handle's device (spmla_device_malloc; host memory on "cpu").
struct Buf {
  spmla_handle_t h = nullptr;
  void *p = nullptr;
  size_t bytes = 0;
  Buf(spmla_handle_t h_, size_t n) : h(h_), bytes(n) {
    if (n) ok(spmla_device_malloc(h, n, &p), "device_malloc");
  }
  template <class T>
  Buf(spmla_handle_t h_, const std::vector<T> &v) : Buf(h_, v.size() * sizeof(T)) {
    if (bytes) ok(spmla_memcpy(h, p, v.data(), bytes, SPMLA_MEMCPY_HOST_TO_DEVICE, nullptr), "h2d");
  }
  Buf(const Buf &) = delete;
  Buf &operator=(const Buf &) = delete;
  ~Buf() {
    if (p) spmla_device_free(h, p);
  }
  void poison() {
    if (bytes) ok(spmla_memset(h, p, 0xff, bytes, nullptr), "memset");
  }
  template <class T>
  std::vector<T> get() const {
    std::vector<T> v(bytes / sizeof(T));
    if (bytes) ok(spmla_memcpy(h, v.data(), p, bytes, SPMLA_MEMCPY_DEVICE_TO_HOST, nullptr), "d2h");
    return v;
  }
};

inline spmla_tensor_t tensor(const void *data, spmla_dtype_t dt, std::vector<int64_t> shape) {
  spmla_tensor_t t = SPMLA_TENSOR_INIT;
  t.data = const_cast<void *>(data);
  t.dtype = dt;
  t.ndim = (int32_t)shape.size();
  int64_t s = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    t.shape[d] = shape[(size_t)d];
    t.strides[d] = s;
    s *= shape[(size_t)d];
  }
  return t;
}

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  int64_t range(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi - 1)(g); }  // [lo, hi)
  float normal(float sd = 1.f) { return std::normal_distribution<float>(0.f, sd)(g); }
  float uni(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g); }
};

// The positions of the probe in the batches: first, middle, near the end.
inline int64_t probe_position(int64_t T) { return T == 1 ? 0 : T < 16 ? T / 2 : T - 28; }

// A batch plan: its size and the seed of its fillers.
struct BatchPlan {
  int64_t T;
  uint64_t filler_seed;
  int64_t extra_keys;  // indexer: keys after the probe's S0 (other requests' keys)
};
// 1, 7, 7 with other fillers (other lengths, index lists, key ranges) and more keys, 128.
inline std::vector<BatchPlan> default_plans() {
  return {{1, 11, 0}, {7, 22, 96}, {7, 33, 301}, {128, 44, 1000}};
}

// Bytes of [i0, i0 + n) of v, to compare.
template <class T>
std::vector<T> slice(const std::vector<T> &v, size_t i0, size_t n) {
  return std::vector<T>(v.begin() + (std::ptrdiff_t)i0, v.begin() + (std::ptrdiff_t)(i0 + n));
}
template <class T>
size_t differing(const std::vector<T> &a, const std::vector<T> &b) {
  REQUIRE(a.size() == b.size());
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(T)) != 0;
  return n;
}

// =============================================================================================
// sparse_attention
// =============================================================================================
struct AttnConfig {
  const char *name;
  spmla_kv_layout_t layout;        // main source
  spmla_kv_layout_t extra_layout;  // SPMLA_KV_LAYOUT_INVALID: none
  int64_t D, H, K, K2;
  bool sink, lengths;
  int32_t block_size;
  int64_t pages;  // per source
};

// Host bytes of one cache, written by the CPU reference's kv_cache_store from random bf16 rows
// (so that the GPU and the CPU read the same bytes).
struct HostCache {
  spmla_kv_cache_t desc = SPMLA_KV_CACHE_INIT;
  std::vector<uint8_t> bytes;
};
inline HostCache make_cache(spmla_handle_t cpu, spmla_kv_layout_t layout, int64_t D, int32_t bs, int64_t pages,
                            Rng &r) {
  HostCache c;
  c.desc.layout = layout;
  c.desc.fp8_flavor = layout == SPMLA_KV_LAYOUT_BF16 ? SPMLA_FP8_NONE : SPMLA_FP8_E4M3FN;
  c.desc.head_dim = (int32_t)D;
  c.desc.num_pages = pages;
  c.desc.block_size = bs;
  c.desc.scale = 0.01f;
  if (layout == SPMLA_KV_LAYOUT_V41_FP8 || layout == SPMLA_KV_LAYOUT_V41_FP4)
    c.desc.arrangement = SPMLA_KV_ARRANGEMENT_PER_TOKEN;
  size_t total = 0;
  ok(spmla_kv_cache_size_bytes(&c.desc, &total), "cache size");
  c.bytes.assign(total, 0);
  c.desc.data = c.bytes.data();
  const int64_t N = pages * bs;
  std::vector<uint16_t> kv((size_t)(N * D));
  for (auto &x : kv) x = spmla::f32_to_bf16(r.normal(1.f));
  std::vector<int32_t> slots((size_t)N);
  for (int64_t i = 0; i < N; ++i) slots[(size_t)i] = (int32_t)i;
  spmla_tensor_t tkv = tensor(kv.data(), SPMLA_DTYPE_BF16, {N, D});
  spmla_tensor_t tsl = tensor(slots.data(), SPMLA_DTYPE_INT32, {N});
  spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
  a.kv = &tkv;
  a.slot_mapping = &tsl;
  a.cache = &c.desc;
  ok(spmla_kv_cache_store_run(cpu, &a, nullptr), "kv_cache_store (cpu)");
  c.desc.data = nullptr;
  return c;
}

struct AttnInputs {
  HostCache main, extra;
  std::vector<float> sink;
};
inline AttnInputs make_attn_inputs(spmla_handle_t cpu, const AttnConfig &c, uint64_t seed) {
  Rng r(seed);
  AttnInputs in;
  in.main = make_cache(cpu, c.layout, c.D, c.block_size, c.pages, r);
  if (c.extra_layout != SPMLA_KV_LAYOUT_INVALID) in.extra = make_cache(cpu, c.extra_layout, c.D, c.block_size, c.pages, r);
  in.sink.resize((size_t)c.H);
  for (auto &x : in.sink) x = r.normal(2.f);
  return in;
}

// One token's inputs.
struct AttnToken {
  std::vector<uint16_t> q;  // [H, D]
  std::vector<int32_t> idx, xidx;
  int32_t len = 0, xlen = 0;
};
// A random list: valid slots with duplicates, -1 and out-of-range entries; lengths anywhere in
// [0, K] (the probe: most of its list).
inline AttnToken random_token(const AttnConfig &c, Rng &r, bool probe) {
  AttnToken t;
  t.q.resize((size_t)(c.H * c.D));
  for (auto &x : t.q) x = spmla::f32_to_bf16(r.normal(1.f));
  const int64_t slots = c.pages * c.block_size;
  auto list = [&](int64_t K, std::vector<int32_t> &v) {
    v.resize((size_t)K);
    for (auto &s : v) {
      const int64_t u = r.range(0, 100);
      s = u < 3 ? -1 : u < 5 ? (int32_t)(slots + r.range(0, 50)) : (int32_t)r.range(0, slots);
    }
  };
  list(c.K, t.idx);
  if (c.K2) list(c.K2, t.xidx);
  t.len = (int32_t)(probe ? c.K - c.K / 7 : r.range(0, c.K + 1));
  t.xlen = (int32_t)(probe ? c.K2 - c.K2 / 5 : r.range(0, c.K2 + 1));
  return t;
}

struct AttnOut {
  std::vector<uint16_t> out;  // [T, H, 512]
  std::vector<float> lse, ml; // [T, H]
  size_t workspace = 0;
};

// Runs one batch on handle h: the probe at probe_position(T), fillers from plan.filler_seed.
inline AttnOut run_attention(spmla_handle_t h, const AttnConfig &c, const AttnInputs &in, const AttnToken &probe,
                             const BatchPlan &plan) {
  const int64_t T = plan.T, H = c.H, D = c.D, pos = probe_position(T);
  Rng r(plan.filler_seed);
  std::vector<uint16_t> q((size_t)(T * H * D));
  std::vector<int32_t> idx((size_t)(T * c.K)), xidx((size_t)(T * std::max<int64_t>(c.K2, 1))), len((size_t)T),
      xlen((size_t)T);
  for (int64_t t = 0; t < T; ++t) {
    const AttnToken tok = t == pos ? probe : random_token(c, r, false);
    std::copy(tok.q.begin(), tok.q.end(), q.begin() + t * H * D);
    std::copy(tok.idx.begin(), tok.idx.end(), idx.begin() + t * c.K);
    if (c.K2) std::copy(tok.xidx.begin(), tok.xidx.end(), xidx.begin() + t * c.K2);
    len[(size_t)t] = tok.len;
    xlen[(size_t)t] = tok.xlen;
  }
  Buf dmain(h, in.main.bytes), dextra(h, in.extra.bytes), dq(h, q), didx(h, idx), dxidx(h, xidx), dlen(h, len),
      dxlen(h, xlen), dsink(h, in.sink);
  Buf dout(h, (size_t)(T * H * 512 * 2)), dlse(h, (size_t)(T * H * 4)), dml(h, (size_t)(T * H * 4));
  dout.poison();
  dlse.poison();
  dml.poison();
  spmla_kv_cache_t kv = in.main.desc, xkv = in.extra.desc;
  kv.data = dmain.p;
  xkv.data = dextra.p;
  spmla_tensor_t tq = tensor(dq.p, SPMLA_DTYPE_BF16, {T, H, D});
  spmla_tensor_t ti = tensor(didx.p, SPMLA_DTYPE_INT32, {T, c.K});
  spmla_tensor_t tl = tensor(dlen.p, SPMLA_DTYPE_INT32, {T});
  spmla_tensor_t txi = tensor(dxidx.p, SPMLA_DTYPE_INT32, {T, c.K2});
  spmla_tensor_t txl = tensor(dxlen.p, SPMLA_DTYPE_INT32, {T});
  spmla_tensor_t ts = tensor(dsink.p, SPMLA_DTYPE_FP32, {H});
  spmla_tensor_t to = tensor(dout.p, SPMLA_DTYPE_BF16, {T, H, 512});
  spmla_tensor_t tlse = tensor(dlse.p, SPMLA_DTYPE_FP32, {T, H});
  spmla_tensor_t tml = tensor(dml.p, SPMLA_DTYPE_FP32, {T, H});
  spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
  a.q = &tq;
  a.kv = &kv;
  a.indices = &ti;
  a.lengths = c.lengths ? &tl : nullptr;
  if (c.extra_layout != SPMLA_KV_LAYOUT_INVALID) {
    a.extra_kv = &xkv;
    a.extra_indices = &txi;
    a.extra_lengths = c.lengths ? &txl : nullptr;
  }
  a.attn_sink = c.sink ? &ts : nullptr;
  a.out = &to;
  a.lse = &tlse;
  a.max_logits = &tml;
  AttnOut o;
  ok(spmla_sparse_attention_get_workspace_size(h, &a, &o.workspace), "attention workspace");
  Buf ws(h, o.workspace);
  ok(spmla_sparse_attention_plan(h, &a, ws.p, o.workspace, nullptr), "attention plan");
  ok(spmla_sparse_attention_run(h, &a, ws.p, o.workspace, nullptr), "attention run");
  ok(spmla_stream_synchronize(h, nullptr), "sync");
  o.out = dout.get<uint16_t>();
  o.lse = dlse.get<float>();
  o.ml = dml.get<float>();
  return o;
}

// The probe's rows of a batch's outputs.
struct AttnProbe {
  std::vector<uint16_t> out;
  std::vector<float> lse, ml;
};
inline AttnProbe probe_rows(const AttnConfig &c, const AttnOut &o, int64_t T) {
  const size_t pos = (size_t)probe_position(T), H = (size_t)c.H;
  return {slice(o.out, pos * H * 512, H * 512), slice(o.lse, pos * H, H), slice(o.ml, pos * H, H)};
}
// Bytes of the probe rows that differ between two batches (0: bit-identical).
inline size_t probe_diff(const AttnProbe &a, const AttnProbe &b) {
  return differing(a.out, b.out) + differing(a.lse, b.lse) + differing(a.ml, b.ml);
}

// =============================================================================================
// indexer_logits (ragged) then topk_per_row over its rows' ranges
// =============================================================================================
struct IdxConfig {
  const char *name;
  int64_t Hi, Di, S0, k;
};

struct IdxProbe {
  std::vector<uint8_t> q;  // [Hi, Di]
  std::vector<float> w;    // [Hi]
  int32_t start = 0, end = 0;
};
inline uint8_t fp8(float x) { return spmla::f32_to_fp8_e4m3(x, spmla::Fp8Kind::E4M3FN); }

// The first S0 keys (the probe's request) are fixed by `seed`; the keys after them vary per batch.
struct IdxInputs {
  std::vector<uint8_t> k0;  // [S0, Di]
  std::vector<float> ks0;   // [S0]
  IdxProbe probe;
};
inline IdxInputs make_idx_inputs(const IdxConfig &c, uint64_t seed) {
  Rng r(seed);
  IdxInputs in;
  in.k0.resize((size_t)(c.S0 * c.Di));
  for (auto &b : in.k0) b = fp8(r.normal(2.f));
  in.ks0.resize((size_t)c.S0);
  for (auto &x : in.ks0) x = r.uni(0.001f, 0.02f);
  in.probe.q.resize((size_t)(c.Hi * c.Di));
  for (auto &b : in.probe.q) b = fp8(r.normal(2.f));
  in.probe.w.resize((size_t)c.Hi);
  for (auto &x : in.probe.w) x = r.uni(-1.f, 1.f);
  in.probe.start = 13;
  in.probe.end = (int32_t)(c.S0 - 7);
  return in;
}

// An op's workspace query, a workspace of that size on h's device, the run.
template <class Args, class WsFn, class RunFn>
void run_with_workspace(spmla_handle_t h, const Args &a, WsFn ws_fn, RunFn run_fn, const char *what) {
  size_t wsb = 0;
  ok(ws_fn(h, &a, &wsb), what);
  Buf ws(h, wsb);
  ok(run_fn(h, &a, ws.p, wsb, nullptr), what);
}

struct IdxOut {
  std::vector<float> logits;     // [T, S]
  std::vector<int32_t> indices;  // [T, k]
  std::vector<int32_t> starts, ends;
  int64_t S = 0;
};

// Runs indexer_logits then topk_per_row (row ranges = the key ranges) on handle h. With
// `logits_in` (host [T, S]) top-k runs on those logits instead (the reference check of top-k).
inline IdxOut run_indexer_topk(spmla_handle_t h, const IdxConfig &c, const IdxInputs &in, const BatchPlan &plan,
                               const std::vector<float> *logits_in = nullptr) {
  const int64_t T = plan.T, Hi = c.Hi, Di = c.Di, S = c.S0 + plan.extra_keys, pos = probe_position(T);
  Rng r(plan.filler_seed);
  std::vector<uint8_t> k((size_t)(S * Di)), q((size_t)(T * Hi * Di));
  std::copy(in.k0.begin(), in.k0.end(), k.begin());
  for (size_t i = in.k0.size(); i < k.size(); ++i) k[i] = fp8(r.normal(2.f));
  std::vector<float> ks((size_t)S), w((size_t)(T * Hi));
  std::copy(in.ks0.begin(), in.ks0.end(), ks.begin());
  for (size_t i = in.ks0.size(); i < ks.size(); ++i) ks[i] = r.uni(0.001f, 0.02f);
  IdxOut o;
  o.S = S;
  o.starts.resize((size_t)T);
  o.ends.resize((size_t)T);
  for (int64_t t = 0; t < T; ++t) {
    if (t == pos) {
      std::copy(in.probe.q.begin(), in.probe.q.end(), q.begin() + t * Hi * Di);
      std::copy(in.probe.w.begin(), in.probe.w.end(), w.begin() + t * Hi);
      o.starts[(size_t)t] = in.probe.start;
      o.ends[(size_t)t] = in.probe.end;
      continue;
    }
    for (int64_t i = 0; i < Hi * Di; ++i) q[(size_t)(t * Hi * Di + i)] = fp8(r.normal(2.f));
    for (int64_t i = 0; i < Hi; ++i) w[(size_t)(t * Hi + i)] = r.uni(-1.f, 1.f);
    const int64_t a = r.range(0, S), b = r.range(a, S + 1);
    o.starts[(size_t)t] = (int32_t)a;
    o.ends[(size_t)t] = (int32_t)b;
  }
  Buf dk(h, k), dq(h, q), dks(h, ks), dw(h, w), dst(h, o.starts), den(h, o.ends);
  Buf dlog(h, (size_t)(T * S * 4)), didx(h, (size_t)(T * c.k * 4));
  spmla_tensor_t tlog = tensor(dlog.p, SPMLA_DTYPE_FP32, {T, S});
  spmla_tensor_t tst = tensor(dst.p, SPMLA_DTYPE_INT32, {T});
  spmla_tensor_t ten = tensor(den.p, SPMLA_DTYPE_INT32, {T});
  if (logits_in) {
    REQUIRE(logits_in->size() == (size_t)(T * S));
    ok(spmla_memcpy(h, dlog.p, logits_in->data(), dlog.bytes, SPMLA_MEMCPY_HOST_TO_DEVICE, nullptr), "h2d");
  } else {
    dlog.poison();
    spmla_tensor_t tq = tensor(dq.p, SPMLA_DTYPE_FP8_E4M3FN, {T, Hi, Di});
    spmla_tensor_t tk = tensor(dk.p, SPMLA_DTYPE_FP8_E4M3FN, {S, Di});
    spmla_tensor_t tks = tensor(dks.p, SPMLA_DTYPE_FP32, {S});
    spmla_tensor_t tw = tensor(dw.p, SPMLA_DTYPE_FP32, {T, Hi});
    spmla_indexer_logits_args_t a = SPMLA_INDEXER_LOGITS_ARGS_INIT;
    a.q = &tq;
    a.k = &tk;
    a.k_scale = &tks;
    a.weights = &tw;
    a.k_start = &tst;
    a.k_end = &ten;
    a.logits = &tlog;
    run_with_workspace(h, a, spmla_indexer_logits_get_workspace_size, spmla_indexer_logits_run, "indexer_logits");
  }
  didx.poison();
  spmla_tensor_t tidx = tensor(didx.p, SPMLA_DTYPE_INT32, {T, c.k});
  spmla_topk_per_row_args_t ta = SPMLA_TOPK_PER_ROW_ARGS_INIT;
  ta.logits = &tlog;
  ta.row_starts = &tst;
  ta.row_ends = &ten;
  ta.indices = &tidx;
  run_with_workspace(h, ta, spmla_topk_per_row_get_workspace_size, spmla_topk_per_row_run, "topk_per_row");
  ok(spmla_stream_synchronize(h, nullptr), "sync");
  o.logits = dlog.get<float>();
  o.indices = didx.get<int32_t>();
  return o;
}

// The probe's row: its logits over the probe request's S0 keys, and its top-k.
struct IdxProbeRows {
  std::vector<float> logits;
  std::vector<int32_t> indices;
};
inline IdxProbeRows probe_rows(const IdxConfig &c, const IdxOut &o, int64_t T) {
  const size_t pos = (size_t)probe_position(T);
  return {slice(o.logits, pos * (size_t)o.S, (size_t)c.S0), slice(o.indices, pos * (size_t)c.k, (size_t)c.k)};
}
inline size_t probe_diff(const IdxProbeRows &a, const IdxProbeRows &b) {
  return differing(a.logits, b.logits) + differing(a.indices, b.indices);
}

}  // namespace binv
