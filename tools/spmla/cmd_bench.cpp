// spmla bench: times the operations with spmla events (warm-up, then the median of repeats) and
// compares each with a ceiling measured in the same run.
//
// Extending it: every benchmark is a Case {op, shape label, run}. The shape lists live in
// small_cases() (CPU-sized) and spec_cases() (docs/SPEC.md "Sizes to support and benchmark"); add a
// shape to a list, or a new op with a make_<op>_case() factory that sets up inputs, calls
// time_op() with one queued call of the op, and returns the FLOPs and bytes of one call.
// On a GPU every timed call starts from a cold L2: a 256 MiB scratch buffer (larger than the L2 of
// any current GPU) is overwritten before each call, outside the timed events, so repeats cannot
// hit data the previous call left there. The flush leaves the L2 full of dirty lines, which the
// timed call then writes back (--l2-flush none skips the flush, to see what it costs an op).
// The bf16 matmul ceiling is passed in (--peak-tflops; scripts/gpu-check measures it through torch
// in the same run).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <thread>

#include "check.h"
#include "cli.h"
#include "device_buffer.h"
#include "host_numerics.h"
#include "memory.h"

namespace spmla_cli {
namespace {

using nlohmann::json;

struct Env {
  Handle &h;
  const BenchOptions &o;
  DeviceBuffer *l2_flush = nullptr;  // GPU backends: overwritten before every timed call
};

struct Measurement {
  double time_ms = 0;
  double flops = 0;  // per call, 0 for memory-bound ops
  double bytes = 0;  // moved per call (read + write)
};

struct Case {
  std::string op;
  std::string shape;
  std::function<Measurement(Env &)> run;
  MemoryEstimate memory;  // what run() allocates (checked before any case runs)
};

// The arrangement the bench uses for a layout: per token for V41 (FlashMLA's current one), the
// layout's own otherwise.
spmla_kv_arrangement_t bench_arrangement(spmla_kv_layout_t layout) {
  return layout == SPMLA_KV_LAYOUT_V41_FP8 || layout == SPMLA_KV_LAYOUT_V41_FP4 ? SPMLA_KV_ARRANGEMENT_PER_TOKEN
                                                                               : SPMLA_KV_ARRANGEMENT_DEFAULT;
}

// Bytes of one cache page (a pure computation of the library: no handle, no allocation).
int64_t page_bytes(spmla_kv_layout_t layout, int dim, int block_size = 64) {
  spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
  c.layout = layout;
  c.arrangement = bench_arrangement(layout);
  c.fp8_flavor = layout == SPMLA_KV_LAYOUT_BF16 ? SPMLA_FP8_NONE : SPMLA_FP8_E4M3FN;
  c.head_dim = dim;
  c.num_pages = 1;
  c.block_size = block_size;
  size_t pb = 0;
  SPMLA_CHECK(spmla_kv_cache_page_bytes(&c, &pb));
  return int64_t(pb);
}

// Warm-up calls, then `repeats` calls each between two events; the median in ms.
double time_op(Env &e, const std::function<void()> &call) {
  for (int i = 0; i < e.o.warmup; ++i) call();
  e.h.sync();
  EventTimer timer(e.h);
  std::vector<double> ms;
  for (int r = 0; r < e.o.repeats; ++r) {
    if (e.l2_flush) SPMLA_CHECK(spmla_memset(e.h, e.l2_flush->data(), r & 0xff, e.l2_flush->bytes(), nullptr));
    timer.start();
    call();
    timer.stop();
    ms.push_back(timer.elapsed_ms());
  }
  return median(ms);
}

// --- random device data -------------------------------------------------------------------
std::vector<uint16_t> random_bf16(uint64_t seed, uint64_t stream, size_t n, double std = 1.0) {
  std::vector<uint16_t> v(n);
  Rng r(seed, stream, n);
  for (auto &x : v) x = f32_to_bf16(float(std * r.normal()));
  return v;
}
std::vector<uint8_t> random_fp8(uint64_t seed, uint64_t stream, size_t n, spmla_fp8_flavor_t f) {
  const Fp8Encoder enc(f);
  std::vector<uint8_t> v(n);
  Rng r(seed, stream, n);
  for (auto &x : v) x = enc.encode(r.normal());
  return v;
}
std::vector<float> random_f32(uint64_t seed, uint64_t stream, size_t n) {
  std::vector<float> v(n);
  Rng r(seed, stream, n);
  for (auto &x : v) x = float(r.normal());
  return v;
}
// A permutation of 0..n-1 (as slot ids).
std::vector<int32_t> shuffled(uint64_t seed, uint64_t stream, int64_t n) {
  std::vector<int32_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = int32_t(i);
  Rng r(seed, stream, 0);
  for (int64_t i = n - 1; i > 0; --i) std::swap(v[i], v[r.below(i + 1)]);
  return v;
}

const char *layout_name(spmla_kv_layout_t l) {
  switch (l) {
    case SPMLA_KV_LAYOUT_BF16: return "BF16";
    case SPMLA_KV_LAYOUT_FP8_PER_TENSOR: return "FP8_PER_TENSOR";
    case SPMLA_KV_LAYOUT_V32_FP8: return "V32_FP8";
    case SPMLA_KV_LAYOUT_V4_FP8: return "V4_FP8";
    case SPMLA_KV_LAYOUT_INDEXER_FP8: return "INDEXER_FP8";
    case SPMLA_KV_LAYOUT_V41_FP8: return "V41_FP8";
    case SPMLA_KV_LAYOUT_V41_FP4: return "V41_FP4";
    default: return "?";
  }
}

// A cache of `tokens` slots (block 64) filled by kv_cache_store from random bf16 rows (one chunk
// of random rows repeated, which is as good as fresh data for timing and quick for GPU-sized caches).
struct FilledCache {
  DeviceBuffer buf;
  spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
  double token_bytes() const {  // cache bytes per token (page bytes / block size)
    size_t pb = 0;
    SPMLA_CHECK(spmla_kv_cache_page_bytes(&c, &pb));
    return double(pb) / c.block_size;
  }
};
// What filled_cache() allocates (same sizes).
void estimate_filled_cache(MemoryEstimate &m, spmla_kv_layout_t layout, int dim, int64_t tokens, int block_size = 64) {
  m.device("cache", {(tokens + block_size - 1) / block_size, page_bytes(layout, dim, block_size)});
  const int64_t chunk = std::min<int64_t>(tokens, 32768);
  m.device("cache fill chunk", {chunk, int64_t(dim) * 2 + 4});
  m.host("cache fill chunk", {chunk, int64_t(dim) * 2 + 4});
}
std::unique_ptr<FilledCache> filled_cache(Env &e, spmla_kv_layout_t layout, int dim, int64_t tokens,
                                          int block_size = 64) {
  auto fc = std::make_unique<FilledCache>();
  fc->c.layout = layout;
  fc->c.arrangement = bench_arrangement(layout);
  fc->c.fp8_flavor = layout == SPMLA_KV_LAYOUT_BF16 ? SPMLA_FP8_NONE : SPMLA_FP8_E4M3FN;
  fc->c.head_dim = dim;
  fc->c.block_size = block_size;
  fc->c.num_pages = (tokens + block_size - 1) / block_size;
  size_t bytes = 0;
  SPMLA_CHECK(spmla_kv_cache_size_bytes(&fc->c, &bytes));
  fc->buf = DeviceBuffer(e.h, bytes);
  fc->c.data = fc->buf.data();
  const int64_t chunk = std::min<int64_t>(tokens, 32768);
  DeviceTensor kv(e.h, SPMLA_DTYPE_BF16, {chunk, dim}), slots(e.h, SPMLA_DTYPE_INT32, {chunk});
  kv.upload(random_bf16(e.o.seed, 100, size_t(chunk) * dim));  // one random chunk, stored everywhere
  for (int64_t t0 = 0; t0 < tokens; t0 += chunk) {
    const int64_t n = std::min(chunk, tokens - t0);
    std::vector<int32_t> s(n);
    for (int64_t i = 0; i < n; ++i) s[i] = int32_t(t0 + i);
    slots.buf.upload(s.data(), s.size() * 4);
    spmla_tensor_t kv_v = kv.t, sl_v = slots.t;
    kv_v.shape[0] = sl_v.shape[0] = n;
    spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
    a.kv = &kv_v;
    a.slot_mapping = &sl_v;
    a.cache = &fc->c;
    SPMLA_CHECK(spmla_kv_cache_store_run(e.h, &a, nullptr));
    e.h.sync();
  }
  return fc;
}

// --- sparse_attention ---------------------------------------------------------------------
struct AttnShape {
  const char *model;  // "v32" | "v4" | "v41" (V41_FP4 cache through the top-k list + V41_FP8 window)
  const char *phase;  // label only
  int64_t T;
  int H, K, W;
  int64_t S;  // KV tokens in the cache
  bool bf16_kv = false;  // a BF16 cache instead of the model's FP8 layout
};
// The layouts of a model's two sources (main: the top-k list; extra: the window).
spmla_kv_layout_t main_layout(const AttnShape &sh) {
  if (sh.bf16_kv) return SPMLA_KV_LAYOUT_BF16;
  if (std::strcmp(sh.model, "v41") == 0) return sh.W ? SPMLA_KV_LAYOUT_V41_FP4 : SPMLA_KV_LAYOUT_V41_FP8;
  return std::strcmp(sh.model, "v4") == 0 ? SPMLA_KV_LAYOUT_V4_FP8 : SPMLA_KV_LAYOUT_V32_FP8;
}
spmla_kv_layout_t window_layout(const AttnShape &sh) {
  return std::strcmp(sh.model, "v41") == 0 && !sh.bf16_kv ? SPMLA_KV_LAYOUT_V41_FP8 : main_layout(sh);
}
Case make_attention_case(AttnShape sh) {
  const bool v4 = std::strcmp(sh.model, "v4") == 0 || std::strcmp(sh.model, "v41") == 0;  // D 512, sink
  char label[160];
  std::snprintf(label, sizeof label, "%s %s T=%lld H=%d K=%d%s S_kv=%lld%s", sh.model, sh.phase, (long long)sh.T,
                sh.H, sh.K, sh.W ? ("+" + std::to_string(sh.W)).c_str() : "", (long long)sh.S,
                sh.bf16_kv ? " BF16" : "");
  MemoryEstimate mem;  // the sizes of the allocations below
  {
    const int64_t d = v4 ? 512 : 576;
    estimate_filled_cache(mem, main_layout(sh), int(d), sh.S);
    if (sh.W && window_layout(sh) != main_layout(sh)) estimate_filled_cache(mem, window_layout(sh), int(d), sh.S);
    mem.device("q", {sh.T, sh.H, d, 2});
    mem.host("q", {sh.T, sh.H, d, 2});
    mem.device("indices", {sh.T, sh.K + sh.W, 4});
    mem.host("indices", {sh.T, sh.K + sh.W, 4});
    mem.device("out, lse", {sh.T, sh.H, 512 * 2 + 4});
  }
  return {"sparse_attention", label, [sh, v4](Env &e) {
            const int d = v4 ? 512 : 576;
            auto cache = filled_cache(e, main_layout(sh), d, sh.S);
            // The window reads the same cache, or (V4.1) a cache of its own layout.
            std::unique_ptr<FilledCache> wcache;
            if (sh.W && window_layout(sh) != main_layout(sh)) wcache = filled_cache(e, window_layout(sh), d, sh.S);
            DeviceTensor q(e.h, SPMLA_DTYPE_BF16, {sh.T, sh.H, d});
            q.upload(random_bf16(e.o.seed, 1, size_t(sh.T) * sh.H * d));
            // Sorted random slot lists, like a top-k output; the window is a contiguous run.
            DeviceTensor idx(e.h, SPMLA_DTYPE_INT32, {sh.T, sh.K});
            std::vector<int32_t> ih(size_t(sh.T) * sh.K);
            Rng r(e.o.seed, 2, 0);
            for (int64_t t = 0; t < sh.T; ++t) {
              int32_t *row = &ih[size_t(t) * sh.K];
              for (int k = 0; k < sh.K; ++k) row[k] = int32_t(r.below(uint64_t(sh.S)));
              std::sort(row, row + sh.K);
            }
            idx.upload(ih);
            DeviceTensor widx, sink;
            if (sh.W) {
              widx = DeviceTensor(e.h, SPMLA_DTYPE_INT32, {sh.T, sh.W});
              std::vector<int32_t> wh(size_t(sh.T) * sh.W);
              for (int64_t t = 0; t < sh.T; ++t) {
                const int64_t start = int64_t(r.below(uint64_t(std::max<int64_t>(1, sh.S - sh.W))));
                for (int k = 0; k < sh.W; ++k) wh[size_t(t) * sh.W + k] = int32_t(std::min(start + k, sh.S - 1));
              }
              widx.upload(wh);
            }
            if (v4) {
              sink = DeviceTensor(e.h, SPMLA_DTYPE_FP32, {sh.H});
              sink.upload(random_f32(e.o.seed, 3, sh.H));
            }
            DeviceTensor out(e.h, SPMLA_DTYPE_BF16, {sh.T, sh.H, 512}), lse(e.h, SPMLA_DTYPE_FP32, {sh.T, sh.H});
            spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
            a.q = q.desc();
            a.kv = &cache->c;
            a.indices = idx.desc();
            if (sh.W) {
              a.extra_kv = wcache ? &wcache->c : &cache->c;
              a.extra_indices = widx.desc();
            }
            if (v4) a.attn_sink = sink.desc();
            a.out = out.desc();
            a.lse = lse.desc();
            size_t wsb = 0;
            SPMLA_CHECK(spmla_sparse_attention_get_workspace_size(e.h, &a, &wsb));
            DeviceBuffer ws(e.h, wsb);
            SPMLA_CHECK(spmla_sparse_attention_plan(e.h, &a, ws.data(), wsb, nullptr));
            Measurement m;
            m.time_ms = time_op(e, [&] { SPMLA_CHECK(spmla_sparse_attention_run(e.h, &a, ws.data(), wsb, nullptr)); });
            m.flops = 2.0 * double(sh.T) * sh.H * double(sh.K + sh.W) * (d + 512);
            return m;
          }, mem};
}

// --- topk_per_row -------------------------------------------------------------------------
struct TopkShape {
  int64_t R, C;
  int k;
  int corr = 0;  // > 0: runs of `corr` columns share an offset (sd 1), like locally correlated logits
};
Case make_topk_case(TopkShape sh) {
  char label[96];
  std::snprintf(label, sizeof label, "rows=%lld cols=%lld k=%d", (long long)sh.R, (long long)sh.C, sh.k);
  if (sh.corr > 0) std::snprintf(label + std::strlen(label), sizeof label - std::strlen(label), " corr=%d", sh.corr);
  MemoryEstimate mem;
  mem.device("logits", {sh.R, sh.C, 4});
  mem.host("logits", {sh.R, sh.C, 4});
  if (sh.corr > 0) mem.host("offsets", {sh.R, (sh.C + sh.corr - 1) / sh.corr, 4});
  mem.device("indices", {sh.R, sh.k, 4});
  return {"topk", label, [sh](Env &e) {
            DeviceTensor logits(e.h, SPMLA_DTYPE_FP32, {sh.R, sh.C}), idx(e.h, SPMLA_DTYPE_INT32, {sh.R, sh.k});
            std::vector<float> v = random_f32(e.o.seed, 4, size_t(sh.R) * sh.C);
            if (sh.corr > 0) {  // (a sampled bound that assumes independent values misjudges such rows more)
              const size_t runs_per_row = size_t((sh.C + sh.corr - 1) / sh.corr);
              const std::vector<float> off = random_f32(e.o.seed, 5, size_t(sh.R) * runs_per_row);
              for (int64_t r = 0; r < sh.R; ++r)
                for (int64_t c = 0; c < sh.C; ++c) v[size_t(r * sh.C + c)] += off[size_t(r) * runs_per_row + size_t(c / sh.corr)];
            }
            logits.upload(v);
            spmla_topk_per_row_args_t a = SPMLA_TOPK_PER_ROW_ARGS_INIT;
            a.logits = logits.desc();
            a.indices = idx.desc();
            size_t wsb = 0;
            SPMLA_CHECK(spmla_topk_per_row_get_workspace_size(e.h, &a, &wsb));
            DeviceBuffer ws(e.h, wsb);
            Measurement m;
            m.time_ms = time_op(e, [&] { SPMLA_CHECK(spmla_topk_per_row_run(e.h, &a, ws.data(), wsb, nullptr)); });
            m.bytes = double(sh.R) * sh.C * 4 + double(sh.R) * sh.k * 4;
            return m;
          }, mem};
}

// --- indexer_logits (ragged prefill form and paged decode form) --------------------------
struct IndexerShape {
  bool paged;
  int64_t B, N;  // ragged: T = B * N query rows over all S keys; paged: B requests x N tokens
  int Hi, Di;
  int64_t S;     // keys (ragged) or context per request (paged)
};
Case make_indexer_case(IndexerShape sh) {
  char label[128];
  if (sh.paged)
    std::snprintf(label, sizeof label, "paged B=%lld N=%lld Hi=%d Di=%d ctx=%lld", (long long)sh.B, (long long)sh.N,
                  sh.Hi, sh.Di, (long long)sh.S);
  else
    std::snprintf(label, sizeof label, "ragged T=%lld Hi=%d Di=%d S=%lld", (long long)(sh.B * sh.N), sh.Hi, sh.Di,
                  (long long)sh.S);
  MemoryEstimate mem;
  {
    const int64_t T = sh.B * sh.N;
    mem.device("weights", {T, sh.Hi, 4});
    mem.host("weights", {T, sh.Hi, 4});
    mem.device("logits", {T, sh.S, 4});
    mem.device("q", {T, sh.Hi, sh.Di});
    mem.host("q", {T, sh.Hi, sh.Di});
    if (sh.paged) {
      estimate_filled_cache(mem, SPMLA_KV_LAYOUT_INDEXER_FP8, sh.Di, sh.B * sh.S);
      mem.device("block table", {sh.B, (sh.S + 63) / 64 + 1, 4});
      mem.host("page permutation", {sh.B, (sh.S + 63) / 64 + 1, 4});
    } else {
      mem.device("keys", {sh.S, sh.Di + 4});
      mem.host("keys", {sh.S, sh.Di + 4});
      mem.device("ranges", {T, 8});
      mem.host("ranges", {T, 8});
    }
  }
  return {"indexer", label, [sh](Env &e) {
            const int64_t T = sh.B * sh.N;
            DeviceTensor w(e.h, SPMLA_DTYPE_FP32, {T, sh.Hi}), logits(e.h, SPMLA_DTYPE_FP32, {T, sh.S});
            w.upload(random_f32(e.o.seed, 5, size_t(T) * sh.Hi));
            Measurement m;
            m.flops = 2.0 * double(T) * double(sh.S) * sh.Hi * sh.Di;
            size_t wsb = 0;
            if (sh.paged) {
              auto cache = filled_cache(e, SPMLA_KV_LAYOUT_INDEXER_FP8, sh.Di, sh.B * sh.S);
              const int64_t pages_per_req = (sh.S + 63) / 64;
              DeviceTensor q(e.h, SPMLA_DTYPE_FP8_E4M3FN, {sh.B, sh.N, sh.Hi, sh.Di});
              q.upload(random_fp8(e.o.seed, 6, size_t(T) * sh.Hi * sh.Di, SPMLA_FP8_E4M3FN));
              DeviceTensor table(e.h, SPMLA_DTYPE_INT32, {sh.B, pages_per_req}), lens(e.h, SPMLA_DTYPE_INT32, {sh.B});
              std::vector<int32_t> perm = shuffled(e.o.seed, 7, cache->c.num_pages);
              perm.resize(size_t(sh.B * pages_per_req));
              table.upload(perm);
              lens.upload(std::vector<int32_t>(size_t(sh.B), int32_t(sh.S)));
              spmla_indexer_logits_paged_args_t a = SPMLA_INDEXER_LOGITS_PAGED_ARGS_INIT;
              a.q = q.desc();
              a.cache = &cache->c;
              a.block_table = table.desc();
              a.context_lens = lens.desc();
              a.weights = w.desc();
              a.logits = logits.desc();
              SPMLA_CHECK(spmla_indexer_logits_paged_get_workspace_size(e.h, &a, &wsb));
              DeviceBuffer ws(e.h, wsb);
              m.time_ms = time_op(e, [&] { SPMLA_CHECK(spmla_indexer_logits_paged_run(e.h, &a, ws.data(), wsb, nullptr)); });
            } else {
              DeviceTensor q(e.h, SPMLA_DTYPE_FP8_E4M3FN, {T, sh.Hi, sh.Di}), k(e.h, SPMLA_DTYPE_FP8_E4M3FN, {sh.S, sh.Di});
              DeviceTensor ks(e.h, SPMLA_DTYPE_FP32, {sh.S}), k0(e.h, SPMLA_DTYPE_INT32, {T}), k1(e.h, SPMLA_DTYPE_INT32, {T});
              q.upload(random_fp8(e.o.seed, 6, size_t(T) * sh.Hi * sh.Di, SPMLA_FP8_E4M3FN));
              k.upload(random_fp8(e.o.seed, 8, size_t(sh.S) * sh.Di, SPMLA_FP8_E4M3FN));
              std::vector<float> scales = random_f32(e.o.seed, 9, size_t(sh.S));
              for (float &x : scales) x = std::fabs(x) * 0.01f;
              ks.upload(scales);
              k0.upload(std::vector<int32_t>(size_t(T), 0));
              k1.upload(std::vector<int32_t>(size_t(T), int32_t(sh.S)));
              spmla_indexer_logits_args_t a = SPMLA_INDEXER_LOGITS_ARGS_INIT;
              a.q = q.desc();
              a.k = k.desc();
              a.k_scale = ks.desc();
              a.weights = w.desc();
              a.k_start = k0.desc();
              a.k_end = k1.desc();
              a.logits = logits.desc();
              SPMLA_CHECK(spmla_indexer_logits_get_workspace_size(e.h, &a, &wsb));
              DeviceBuffer ws(e.h, wsb);
              m.time_ms = time_op(e, [&] { SPMLA_CHECK(spmla_indexer_logits_run(e.h, &a, ws.data(), wsb, nullptr)); });
            }
            return m;
          }, mem};
}

// --- kv_cache_store and kv_cache_gather ---------------------------------------------------
struct CacheOpShape {
  spmla_kv_layout_t layout;
  int dim;
  int64_t N;  // rows stored / gathered (the cache holds N slots, visited in shuffled order)
};
std::string cache_label(const CacheOpShape &sh) {
  return std::string(layout_name(sh.layout)) + " D=" + std::to_string(sh.dim) + " N=" + std::to_string(sh.N);
}
MemoryEstimate estimate_cache_op(const CacheOpShape &sh) {  // store and gather allocate the same sizes
  MemoryEstimate mem;
  estimate_filled_cache(mem, sh.layout, sh.dim, sh.N);
  mem.device("rows", {sh.N, int64_t(sh.dim) * 2 + 4});
  mem.host("row chunk", {std::min<int64_t>(sh.N, 65536), int64_t(sh.dim) * 2});
  mem.host("slots", {sh.N, 4});
  return mem;
}
Case make_store_case(CacheOpShape sh) {
  return {"store", cache_label(sh), [sh](Env &e) {
            auto cache = filled_cache(e, sh.layout, sh.dim, sh.N);
            DeviceTensor kv(e.h, SPMLA_DTYPE_BF16, {sh.N, sh.dim}), slots(e.h, SPMLA_DTYPE_INT32, {sh.N});
            {  // one random chunk of rows repeated (host RNG time stays small for 1M-token cases)
              const int64_t chunk = std::min<int64_t>(sh.N, 65536);
              const std::vector<uint16_t> rows = random_bf16(e.o.seed, 10, size_t(chunk) * sh.dim);
              for (int64_t r0 = 0; r0 < sh.N; r0 += chunk)
                kv.buf.upload(rows.data(), size_t(std::min(chunk, sh.N - r0)) * sh.dim * 2, size_t(r0) * sh.dim * 2);
            }
            slots.upload(shuffled(e.o.seed, 11, sh.N));
            spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
            a.kv = kv.desc();
            a.slot_mapping = slots.desc();
            a.cache = &cache->c;
            Measurement m;
            m.time_ms = time_op(e, [&] { SPMLA_CHECK(spmla_kv_cache_store_run(e.h, &a, nullptr)); });
            m.bytes = double(sh.N) * (2.0 * sh.dim + 4 + cache->token_bytes());
            return m;
          }, estimate_cache_op(sh)};
}
Case make_gather_case(CacheOpShape sh) {
  return {"gather", cache_label(sh), [sh](Env &e) {
            auto cache = filled_cache(e, sh.layout, sh.dim, sh.N);
            DeviceTensor out(e.h, SPMLA_DTYPE_BF16, {sh.N, sh.dim}), slots(e.h, SPMLA_DTYPE_INT32, {sh.N});
            slots.upload(shuffled(e.o.seed, 12, sh.N));
            spmla_kv_cache_gather_args_t a = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
            a.cache = &cache->c;
            a.slots = slots.desc();
            a.out = out.desc();
            Measurement m;
            m.time_ms = time_op(e, [&] { SPMLA_CHECK(spmla_kv_cache_gather_run(e.h, &a, nullptr)); });
            m.bytes = double(sh.N) * (2.0 * sh.dim + 4 + cache->token_bytes());
            return m;
          }, estimate_cache_op(sh)};
}

// --- the shape tables ---------------------------------------------------------------------
// CPU-sized: every case runs in well under a second per call on 2 cores.
std::vector<Case> small_cases() {
  std::vector<Case> c;
  for (AttnShape s : {AttnShape{"v32", "decode", 4, 128, 2048, 0, 8192}, AttnShape{"v4", "decode", 4, 64, 512, 128, 8192},
                      AttnShape{"v41", "decode", 4, 64, 512, 128, 8192}, AttnShape{"v32", "prefill", 16, 128, 2048, 0, 4096}})
    c.push_back(make_attention_case(s));
  for (TopkShape s : {TopkShape{4, 4096, 2048}, TopkShape{64, 8192, 2048}, TopkShape{64, 4096, 512},
                      TopkShape{64, 8192, 2048, 64}})
    c.push_back(make_topk_case(s));
  for (IndexerShape s : {IndexerShape{true, 2, 2, 64, 128, 4096}, IndexerShape{false, 1, 16, 64, 128, 4096}})
    c.push_back(make_indexer_case(s));
  for (CacheOpShape s : {CacheOpShape{SPMLA_KV_LAYOUT_V32_FP8, 576, 8192}, CacheOpShape{SPMLA_KV_LAYOUT_V4_FP8, 512, 8192},
                         CacheOpShape{SPMLA_KV_LAYOUT_INDEXER_FP8, 128, 8192}, CacheOpShape{SPMLA_KV_LAYOUT_BF16, 576, 8192}}) {
    c.push_back(make_store_case(s));
    c.push_back(make_gather_case(s));
  }
  return c;
}

// docs/SPEC.md "Sizes to support and benchmark" (for GPU backends).
std::vector<Case> spec_cases() {
  std::vector<Case> c;
  for (int64_t b : {2, 32, 64, 128})  // V3.2 decode: 2 tokens per request (MTP), context 32K
    c.push_back(make_attention_case({"v32", "decode", 2 * b, 128, 2048, 0, b * 32768}));
  for (int64_t s : {8192, 32768, 131072})  // V3.2 prefill: T 4096, S_kv 8K..128K
    c.push_back(make_attention_case({"v32", "prefill", 4096, 128, 2048, 0, s}));
  // Prefill straight from a bf16 KV source (the prefill floor is stated for it).
  c.push_back(make_attention_case({"v32", "prefill", 4096, 128, 2048, 0, 32768, true}));
  for (int h : {64, 128})
    for (int k : {512, 1024}) {
      c.push_back(make_attention_case({"v4", "decode", 2 * 64, h, k, 128, 64 * 32768}));
      c.push_back(make_attention_case({"v4", "prefill", 4096, h, k, 128, 32768}));
    }
  // DeepSeek-V4.1: decode from the V41_FP4 compressed cache (top-k) + a 128-token V41_FP8 window
  // (compare with the V4 decode row of the same shape); prefill from V41_FP8 against a BF16 KV
  // source of the same D (512).
  for (int h : {64, 128}) c.push_back(make_attention_case({"v41", "decode", 2 * 64, h, 512, 128, 64 * 32768}));
  c.push_back(make_attention_case({"v41", "prefill", 4096, 128, 2048, 0, 32768}));
  c.push_back(make_attention_case({"v4", "prefill", 4096, 128, 2048, 0, 32768, true}));
  // (the corr row is not a docs/SPEC.md size: it shows what column-correlated logits cost the fast path)
  for (TopkShape s : {TopkShape{256, 32768, 2048}, TopkShape{4096, 32768, 2048}, TopkShape{4096, 32768, 1024},
                      TopkShape{4096, 32768, 512}, TopkShape{4096, 131072, 2048}, TopkShape{4096, 32768, 2048, 64}})
    c.push_back(make_topk_case(s));
  for (IndexerShape s : {IndexerShape{true, 64, 2, 64, 128, 32768}, IndexerShape{false, 1, 4096, 64, 128, 32768}})
    c.push_back(make_indexer_case(s));
  // The store/gather floors name 1M tokens (V32); the other layouts at 256K.
  for (CacheOpShape s : {CacheOpShape{SPMLA_KV_LAYOUT_V32_FP8, 576, 1048576}, CacheOpShape{SPMLA_KV_LAYOUT_V32_FP8, 576, 262144},
                         CacheOpShape{SPMLA_KV_LAYOUT_V4_FP8, 512, 262144}, CacheOpShape{SPMLA_KV_LAYOUT_INDEXER_FP8, 128, 262144},
                         CacheOpShape{SPMLA_KV_LAYOUT_V41_FP8, 512, 1048576}, CacheOpShape{SPMLA_KV_LAYOUT_V41_FP4, 512, 1048576}}) {
    c.push_back(make_store_case(s));
    c.push_back(make_gather_case(s));
  }
  return c;
}

// --- ceilings -----------------------------------------------------------------------------
// fp32 multiply-add rate of a plain dot-product loop on every hardware thread (the same compiler
// and flags as the CPU backend), in TFLOP/s. Independent accumulator lanes let the compiler
// vectorize without reassociating.
constexpr int kDotLanes = 32;
__attribute__((noinline)) void dot_lanes(const float *__restrict a, const float *__restrict b,
                                         float *__restrict acc, int n) {
  for (int i = 0; i < n; i += kDotLanes)
    for (int l = 0; l < kDotLanes; ++l) acc[l] += a[i + l] * b[i + l];
}
double measure_cpu_flops() {
  const int nt = std::max(1u, std::thread::hardware_concurrency());
  std::vector<double> rate(nt);
  std::vector<std::thread> th;
  for (int w = 0; w < nt; ++w)
    th.emplace_back([&rate, w] {
      constexpr int n = 2048;
      std::vector<float> a(n), b(n);
      for (int i = 0; i < n; ++i) a[i] = 1.0f + i * 1e-6f, b[i] = 1.0f - i * 1e-6f;
      float acc[kDotLanes] = {};
      dot_lanes(a.data(), b.data(), acc, n);  // warm-up
      Stopwatch sw;
      int64_t calls = 0;
      do {
        for (int it = 0; it < 256; ++it) dot_lanes(a.data(), b.data(), acc, n);
        calls += 256;
      } while (sw.ms() < 200);
      const double secs = sw.ms() * 1e-3;
      float s = 0;
      for (float x : acc) s += x;
      volatile float sink = s;
      (void)sink;
      rate[w] = 2.0 * n * double(calls) / secs;
    });
  for (auto &t : th) t.join();
  double total = 0;
  for (double r : rate) total += r;
  return total / 1e12;
}

// Host copy bandwidth on every hardware thread (read + write counted), GB/s.
double measure_cpu_copy_gbps() {
  const int nt = std::max(1u, std::thread::hardware_concurrency());
  const size_t bytes = size_t(128) << 20, part = bytes / nt;
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  double best = 0;
  for (int rep = 0; rep < 4; ++rep) {
    Stopwatch sw;
    std::vector<std::thread> th;
    for (int w = 0; w < nt; ++w)
      th.emplace_back([&, w] { std::memcpy(dst.data() + w * part, src.data() + w * part, part); });
    for (auto &t : th) t.join();
    best = std::max(best, 2.0 * double(part * nt) / (sw.ms() * 1e-3) / 1e9);
  }
  return best;
}

// Device-to-device copy bandwidth through spmla_memcpy (read + write counted), GB/s.
double measure_device_copy_gbps(Env &e) {
  const size_t bytes = size_t(1) << 30;
  DeviceBuffer a(e.h, bytes), b(e.h, bytes);
  a.fill(1);
  std::vector<double> ms;
  EventTimer timer(e.h);
  for (int r = 0; r < 1 + 5; ++r) {
    timer.start();
    SPMLA_CHECK(spmla_memcpy(e.h, b.data(), a.data(), bytes, SPMLA_MEMCPY_DEVICE_TO_DEVICE, nullptr));
    timer.stop();
    if (r) ms.push_back(timer.elapsed_ms());
  }
  return 2.0 * double(bytes) / (median(ms) * 1e-3) / 1e9;
}

json num_or_null(double v) { return v > 0 && std::isfinite(v) ? json(v) : json(nullptr); }

}  // namespace

int cmd_bench(const BenchOptions &o) {
  Handle h(o.backend.c_str(), o.device);
  const std::string backend = h.backend();
  spmla_device_info_t dev = SPMLA_DEVICE_INFO_INIT;
  SPMLA_CHECK(spmla_device_get_info(backend.c_str(), h.device(), &dev));
  Env env{h, o};
  const bool cpu = backend == "cpu";
  DeviceBuffer l2_flush;
  if (!cpu && o.l2_flush == "memset") {
    l2_flush = DeviceBuffer(h, size_t(256) << 20);
    env.l2_flush = &l2_flush;
  }
  const bool small = o.sizes == "small" || (o.sizes == "auto" && cpu);

  // The cases asked for (--op, --shape); none is an error, before any time is spent.
  // --shape: alternatives separated by '|', a case matches when its label contains any of them.
  std::vector<std::string> wanted;
  for (size_t b = 0, e; b <= o.shape.size(); b = e + 1) {
    e = o.shape.find('|', b);
    if (e == std::string::npos) e = o.shape.size();
    if (e > b) wanted.push_back(o.shape.substr(b, e - b));
  }
  auto shape_wanted = [&](const std::string &label) {
    if (wanted.empty()) return true;
    for (const std::string &w : wanted)
      if (label.find(w) != std::string::npos) return true;
    return false;
  };
  std::vector<Case> cases;
  for (Case &c : small ? small_cases() : spec_cases())
    if ((o.op == "all" || o.op == c.op) && shape_wanted(c.shape)) cases.push_back(std::move(c));
  if (cases.empty()) {
    std::fprintf(stderr, "spmla bench: no %s case matches --op %s --shape '%s'\n", small ? "small" : "spec",
                 o.op.c_str(), o.shape.c_str());
    return 2;
  }

  // Memory: every case the run will reach must fit (cases run one at a time and free what they
  // allocated), beside the L2-flush buffer; the ceilings' copy buffers (1 GiB x 2 on a GPU,
  // 128 MiB x 2 on the host) are freed before the first case.
  for (const Case &c : cases) {
    MemoryEstimate m = c.memory;
    if (env.l2_flush) m.device("L2 flush buffer", {int64_t(256) << 20});
    check_memory("spmla bench", "--sizes " + std::string(small ? "small" : "spec") + " --op " + c.op + " (case '" +
                     c.shape + "'; --shape selects cases)",
                 m, cpu || std::string(dev.arch) == "cpu", dev, true);
  }
  {
    MemoryEstimate m;
    if (!cpu && o.peak_gbps <= 0) m.device("copy-bandwidth buffers", {2, int64_t(1) << 30});
    if (cpu && o.peak_gbps <= 0) m.host("copy-bandwidth buffers", {2, int64_t(128) << 20});
    if (env.l2_flush) m.device("L2 flush buffer", {int64_t(256) << 20});
    check_memory("spmla bench", "--peak-gbps not given (measured)", m, cpu || std::string(dev.arch) == "cpu", dev, true);
  }

  // Ceilings, measured in this run unless given.
  double peak_tflops = o.peak_tflops, peak_gbps = o.peak_gbps;
  std::string tflops_src = "given (--peak-tflops)", gbps_src = "given (--peak-gbps)";
  if (peak_tflops <= 0) {
    if (cpu) {
      peak_tflops = measure_cpu_flops();
      tflops_src = "measured: fp32 dot-product loop on " + std::to_string(std::thread::hardware_concurrency()) + " threads";
    } else {
      peak_tflops = 0;
      tflops_src = "unknown: pass --peak-tflops (e.g. a measured dense bf16 matmul rate)";
    }
  }
  if (peak_gbps <= 0) {
    if (cpu) {
      peak_gbps = measure_cpu_copy_gbps();
      gbps_src = "measured: host memcpy on " + std::to_string(std::thread::hardware_concurrency()) + " threads, read+write";
    } else {
      peak_gbps = measure_device_copy_gbps(env);
      gbps_src = "measured: spmla_memcpy device to device, 1 GiB, read+write";
    }
  }

  if (!o.json) {
    std::printf("spmla bench: backend %s (device %d: %s), %s sizes, warm-up %d, median of %d\n", backend.c_str(),
                h.device(), dev.name, small ? "small" : "SPEC", o.warmup, o.repeats);
    std::printf("ceilings: %.4g TFLOP/s (%s); %.1f GB/s (%s)\n", peak_tflops, tflops_src.c_str(), peak_gbps,
                gbps_src.c_str());
    if (o.batch_invariant != "off")
      std::printf("batch invariance (SPMLA_OPTION_BATCH_INVARIANT): %s%s\n", o.batch_invariant.c_str(),
                  o.batch_invariant == "both" ? "; each case off, then on (cost = on time / off time)" : "");
    std::printf("%-17s %-48s %12s %10s %10s %8s%s\n", "op", "shape", "time_ms", "TFLOP/s", "GB/s", "ratio",
                o.batch_invariant == "off" ? "" : "  batch_inv     cost");
  }
  // The option's settings to run every case with (--batch-invariant): off, on, or off then on.
  std::vector<int64_t> modes;
  if (o.batch_invariant != "on") modes.push_back(0);
  if (o.batch_invariant != "off") modes.push_back(1);
  json rows = json::array();
  for (Case &c : cases) {
   double off_ms = 0;
   for (int64_t mode : modes) {
    SPMLA_CHECK(spmla_handle_set_option(h, SPMLA_OPTION_BATCH_INVARIANT, mode));
    const Measurement m = c.run(env);
    if (!mode) off_ms = m.time_ms;
    const double cost = mode && off_ms > 0 ? m.time_ms / off_ms : 0;
    const double tflops = m.flops > 0 ? m.flops / (m.time_ms * 1e-3) / 1e12 : 0;
    const double gbps = m.bytes > 0 ? m.bytes / (m.time_ms * 1e-3) / 1e9 : 0;
    const double ratio = m.flops > 0 ? (peak_tflops > 0 ? tflops / peak_tflops : 0) : (peak_gbps > 0 ? gbps / peak_gbps : 0);
    rows.push_back({{"op", c.op},
                    {"shape", c.shape},
                    {"backend", backend},
                    {"time_ms", m.time_ms},
                    {"tflops", num_or_null(tflops)},
                    {"gbps", num_or_null(gbps)},
                    {"ratio_to_peak", num_or_null(ratio)},
                    {"batch_invariant", mode != 0},
                    {"time_over_default", num_or_null(cost)}});
    if (!o.json) {
      auto cell = [](double v, const char *fmt) {
        char b[32] = "-";
        if (v > 0) std::snprintf(b, sizeof b, fmt, v);
        return std::string(b);
      };
      std::string inv;
      if (o.batch_invariant != "off") {
        char b[48];
        std::snprintf(b, sizeof b, "  %9s %8s", mode ? "on" : "off", cell(cost, "%.3fx").c_str());
        inv = b;
      }
      std::printf("%-17s %-48s %12.4f %10s %10s %8s%s\n", c.op.c_str(), c.shape.c_str(), m.time_ms,
                  cell(tflops, "%.4g").c_str(), cell(gbps, "%.4g").c_str(), cell(ratio, "%.3f").c_str(), inv.c_str());
      std::fflush(stdout);
    }
   }
  }
  if (o.json) {
    json j = {{"backend", backend},
              {"device", h.device()},
              {"device_name", std::string(dev.name)},
              {"sizes", small ? "small" : "spec"},
              {"warmup", o.warmup},
              {"repeats", o.repeats},
              {"l2_flush", cpu ? "none" : o.l2_flush},
              {"batch_invariant", o.batch_invariant},
              {"ceilings",
               {{"tflops", num_or_null(peak_tflops)},
                {"tflops_source", tflops_src},
                {"gbps", num_or_null(peak_gbps)},
                {"gbps_source", gbps_src}}},
              {"rows", rows}};
    std::cout << j.dump(2) << std::endl;
  }
  return 0;
}

}  // namespace spmla_cli
