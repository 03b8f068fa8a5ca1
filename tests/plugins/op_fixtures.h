// op_fixtures.h — valid argument sets for every operation, shared by the validation and fuzz
// tests (tests/test_validation.cpp, tests/test_fuzz.cpp). Each fixture owns host buffers big
// enough for its descriptors, lists its tensor and cache arguments (so tests can mutate them
// generically), lists its outputs (so tests can poison them and check they stay untouched), and
// knows how to call each of its public entry points on a handle.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "spmla.h"

namespace fixtures {

constexpr unsigned char kPoison = 0xA5;
constexpr size_t kSizeSentinel = 0xDEADBEEFu;

// A 256-byte aligned host buffer with 256 bytes of slack at the end (so +1 / +8 pointer tweaks
// stay inside the allocation).
struct Buf {
  unsigned char *p = nullptr;
  size_t n = 0;
  explicit Buf(size_t bytes) : n(bytes) {
    const size_t cap = (bytes + 255) / 256 * 256 + 256;
    if (posix_memalign(reinterpret_cast<void **>(&p), 256, cap) != 0) std::abort();
    std::memset(p, 0, cap);
  }
  ~Buf() { std::free(p); }
  Buf(const Buf &) = delete;
  Buf &operator=(const Buf &) = delete;
  void poison() { std::memset(p, kPoison, n); }
  bool poisoned() const {
    for (size_t i = 0; i < n; ++i)
      if (p[i] != kPoison) return false;
    return true;
  }
};

struct TensorArg {
  const char *name;
  spmla_tensor_t *t;
  bool required;
  bool output;
  bool align16;
};
struct CacheArg {
  const char *name;
  spmla_kv_cache_t *c;
};
struct Call {
  std::string fn;  // public function name
  bool query;      // a *_get_workspace_size (writes Fixture::ws_out; skips data-pointer rules)
  std::function<spmla_status_t(spmla_handle_t)> f;
};

struct Fixture {
  virtual ~Fixture() = default;
  std::vector<std::unique_ptr<Buf>> bufs;
  std::vector<std::unique_ptr<spmla_tensor_t>> tensor_store;
  std::vector<std::unique_ptr<spmla_kv_cache_t>> cache_store;
  std::vector<TensorArg> tensors;
  std::vector<CacheArg> caches;
  std::vector<Buf *> outputs;
  size_t ws_out = kSizeSentinel;
  std::unique_ptr<Buf> ws{new Buf(4096)};
  size_t ws_bytes = 0;  // what the run/plan calls pass (set by the test to the query's value)
  size_t ws_offset = 0; // tests shift the workspace pointer (misalignment) ...
  bool ws_null = false; // ... or pass NULL
  void *ws_ptr() { return ws_null ? nullptr : ws->p + ws_offset; }

  virtual const char *op() const = 0;
  virtual std::vector<Call> calls() = 0;
  // The args struct's struct_size, for the "small struct_size" case.
  virtual size_t *struct_size() = 0;
  virtual size_t args_size() const = 0;  // sizeof the args struct
  virtual void null_args_calls(std::vector<Call> &out) = 0;

  Buf *buf(size_t bytes, unsigned seed) {
    bufs.emplace_back(new Buf(bytes));
    Buf *b = bufs.back().get();
    // Deterministic non-zero bytes with no NaN/Inf patterns of any dtype used here.
    for (size_t i = 0; i < bytes; ++i) b->p[i] = static_cast<unsigned char>(0x10 + (i * 7 + seed) % 0x20);
    return b;
  }
  template <class T>
  void fill(Buf *b, std::initializer_list<T> values) {
    size_t i = 0;
    for (T v : values) std::memcpy(b->p + sizeof(T) * i++, &v, sizeof(T));
  }
  spmla_tensor_t *tensor(const char *name, spmla_dtype_t dt, std::initializer_list<int64_t> shape,
                         bool required, bool output, bool align16, Buf **out_buf = nullptr) {
    size_t numel = 1;
    for (auto s : shape) numel *= static_cast<size_t>(s);
    Buf *b = buf(numel * spmla_dtype_size(dt), static_cast<unsigned>(tensors.size()));
    tensor_store.emplace_back(new spmla_tensor_t);
    spmla_tensor_t *t = tensor_store.back().get();
    std::vector<int64_t> sh(shape);
    if (spmla_tensor_make_contiguous(t, b->p, dt, static_cast<int32_t>(sh.size()), sh.data()) !=
        SPMLA_STATUS_SUCCESS)
      std::abort();
    tensors.push_back({name, t, required, output, align16});
    if (output) outputs.push_back(b);
    if (out_buf) *out_buf = b;
    return t;
  }
  spmla_kv_cache_t *cache(const char *name, spmla_kv_layout_t layout, spmla_fp8_flavor_t fl,
                          int32_t head_dim, int32_t bs, int64_t pages, bool output,
                          spmla_kv_arrangement_t arrangement = SPMLA_KV_ARRANGEMENT_DEFAULT) {
    cache_store.emplace_back(new spmla_kv_cache_t);
    spmla_kv_cache_t *c = cache_store.back().get();
    *c = SPMLA_KV_CACHE_INIT;
    c->layout = layout;
    c->arrangement = arrangement;
    c->fp8_flavor = fl;
    c->head_dim = head_dim;
    c->block_size = bs;
    c->num_pages = pages;
    size_t bytes = 0;
    if (spmla_kv_cache_size_bytes(c, &bytes) != SPMLA_STATUS_SUCCESS) std::abort();
    Buf *b = buf(bytes, 3);
    c->data = b->p;
    caches.push_back({name, c});
    if (output) outputs.push_back(b);
    return c;
  }
  TensorArg *find(const std::string &name) {
    for (auto &t : tensors)
      if (name == t.name) return &t;
    return nullptr;
  }
  spmla_kv_cache_t *find_cache(const std::string &name) {
    for (auto &c : caches)
      if (name == c.name) return c.c;
    return nullptr;
  }
  void poison_outputs() {
    for (Buf *b : outputs) b->poison();
    ws_out = kSizeSentinel;
  }
  bool outputs_untouched() const {
    for (Buf *b : outputs)
      if (!b->poisoned()) return false;
    return ws_out == kSizeSentinel;
  }
};

// Shorthands.
constexpr spmla_dtype_t BF16 = SPMLA_DTYPE_BF16;
constexpr spmla_dtype_t F32 = SPMLA_DTYPE_FP32;
constexpr spmla_dtype_t I32 = SPMLA_DTYPE_INT32;
constexpr spmla_dtype_t I64 = SPMLA_DTYPE_INT64;
constexpr spmla_dtype_t U8 = SPMLA_DTYPE_UINT8;
constexpr spmla_dtype_t FN = SPMLA_DTYPE_FP8_E4M3FN;
constexpr spmla_dtype_t FNUZ = SPMLA_DTYPE_FP8_E4M3FNUZ;

#define FIXTURE_WS_CALLS(prefix, argsvar)                                                      \
  std::vector<Call> calls() override {                                                         \
    return {{"spmla_" #prefix "_get_workspace_size", true,                                     \
             [this](spmla_handle_t h) { return spmla_##prefix##_get_workspace_size(h, &argsvar, &ws_out); }}, \
            {"spmla_" #prefix "_run", false, [this](spmla_handle_t h) {                        \
               return spmla_##prefix##_run(h, &argsvar, ws_ptr(), ws_bytes, nullptr);         \
             }}};                                                                              \
  }                                                                                            \
  void null_args_calls(std::vector<Call> &out) override {                                      \
    out.push_back({"spmla_" #prefix "_get_workspace_size", true, [this](spmla_handle_t h) {     \
                     return spmla_##prefix##_get_workspace_size(h, nullptr, &ws_out);          \
                   }});                                                                        \
    out.push_back({"spmla_" #prefix "_run", false, [this](spmla_handle_t h) {                  \
                     return spmla_##prefix##_run(h, nullptr, ws_ptr(), ws_bytes, nullptr);     \
                   }});                                                                        \
  }                                                                                            \
  size_t *struct_size() override { return &argsvar.struct_size; }                             \
  size_t args_size() const override { return sizeof(argsvar); }

#define FIXTURE_RUN_CALLS(prefix, argsvar)                                                     \
  std::vector<Call> calls() override {                                                         \
    return {{"spmla_" #prefix "_run", false,                                                   \
             [this](spmla_handle_t h) { return spmla_##prefix##_run(h, &argsvar, nullptr); }}}; \
  }                                                                                            \
  void null_args_calls(std::vector<Call> &out) override {                                      \
    out.push_back({"spmla_" #prefix "_run", false,                                             \
                   [](spmla_handle_t h) { return spmla_##prefix##_run(h, nullptr, nullptr); }}); \
  }                                                                                            \
  size_t *struct_size() override { return &argsvar.struct_size; }                             \
  size_t args_size() const override { return sizeof(argsvar); }

// 1. sparse_attention: T=2, H=4, D=576, K=8, BF16 cache of 4 pages x 4 tokens, every optional
// argument present (extra BF16 cache, lengths, sink, max_logits).
struct SparseAttention : Fixture {
  spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
  SparseAttention() {
    a.q = tensor("q", BF16, {2, 4, 576}, true, false, true);
    a.kv = cache("kv", SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, 576, 4, 4, false);
    Buf *b;
    a.indices = tensor("indices", I32, {2, 8}, true, false, false, &b);
    fill<int32_t>(b, {0, 1, 2, 3, 15, -1, 7, 9, 4, 4, 5, 6, 100, 11, 12, 13});
    a.lengths = tensor("lengths", I32, {2}, false, false, false, &b);
    fill<int32_t>(b, {8, 5});
    a.extra_kv = cache("extra_kv", SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, 576, 2, 2, false);
    a.extra_indices = tensor("extra_indices", I32, {2, 3}, false, false, false, &b);
    fill<int32_t>(b, {0, 1, 2, 3, -1, 2});
    a.extra_lengths = tensor("extra_lengths", I32, {2}, false, false, false, &b);
    fill<int32_t>(b, {3, 2});
    a.attn_sink = tensor("attn_sink", F32, {4}, false, false, false, &b);
    fill<float>(b, {0.5f, -1.0f, 0.0f, 2.0f});
    a.scale = 0.0f;
    a.out = tensor("out", BF16, {2, 4, 512}, true, true, true);
    a.lse = tensor("lse", F32, {2, 4}, true, true, false);
    a.max_logits = tensor("max_logits", F32, {2, 4}, false, true, false);
  }
  const char *op() const override { return "sparse_attention"; }
  std::vector<Call> calls() override {
    return {{"spmla_sparse_attention_get_workspace_size", true,
             [this](spmla_handle_t h) {
               return spmla_sparse_attention_get_workspace_size(h, &a, &ws_out);
             }},
            {"spmla_sparse_attention_plan", false,
             [this](spmla_handle_t h) {
               return spmla_sparse_attention_plan(h, &a, ws_ptr(), ws_bytes, nullptr);
             }},
            {"spmla_sparse_attention_run", false, [this](spmla_handle_t h) {
               return spmla_sparse_attention_run(h, &a, ws_ptr(), ws_bytes, nullptr);
             }}};
  }
  void null_args_calls(std::vector<Call> &out) override {
    out.push_back({"spmla_sparse_attention_get_workspace_size", true, [this](spmla_handle_t h) {
                     return spmla_sparse_attention_get_workspace_size(h, nullptr, &ws_out);
                   }});
    out.push_back({"spmla_sparse_attention_plan", false, [this](spmla_handle_t h) {
                     return spmla_sparse_attention_plan(h, nullptr, ws_ptr(), ws_bytes, nullptr);
                   }});
    out.push_back({"spmla_sparse_attention_run", false, [this](spmla_handle_t h) {
                     return spmla_sparse_attention_run(h, nullptr, ws_ptr(), ws_bytes, nullptr);
                   }});
  }
  size_t *struct_size() override { return &a.struct_size; }
  size_t args_size() const override { return sizeof(a); }
};

// 2. indices_to_slots: T=3, K=4, R=2 requests x 3 pages, block_size 4, ragged outputs.
struct IndicesToSlots : Fixture {
  spmla_indices_to_slots_args_t a = SPMLA_INDICES_TO_SLOTS_ARGS_INIT;
  IndicesToSlots() {
    Buf *b;
    a.positions = tensor("positions", I32, {3, 4}, true, false, false, &b);
    fill<int32_t>(b, {0, 1, 5, -1, 11, 12, 3, 2, 7, 7, -1, 0});
    a.token_to_req = tensor("token_to_req", I32, {3}, true, false, false, &b);
    fill<int32_t>(b, {0, 1, 0});
    a.block_table = tensor("block_table", I32, {2, 3}, true, false, false, &b);
    fill<int32_t>(b, {0, 1, 2, 3, -1, 5});
    a.block_size = 4;
    a.token_valid = tensor("token_valid", U8, {3}, false, false, false, &b);
    fill<uint8_t>(b, {1, 1, 0});
    a.slots = tensor("slots", I32, {3, 4}, true, true, false);
    a.lengths = tensor("lengths", I32, {3}, true, true, false);
    a.indptr = tensor("indptr", I32, {4}, false, true, false);
    a.ragged_slots = tensor("ragged_slots", I32, {12}, false, true, false);
  }
  const char *op() const override { return "indices_to_slots"; }
  FIXTURE_RUN_CALLS(indices_to_slots, a)
};

// 3. window_indices: T=3, W=4, block_size 4, ratio 1.
struct WindowIndices : Fixture {
  spmla_window_indices_args_t a = SPMLA_WINDOW_INDICES_ARGS_INIT;
  WindowIndices() {
    Buf *b;
    a.positions = tensor("positions", I32, {3}, true, false, false, &b);
    fill<int32_t>(b, {5, 0, 9});
    a.token_to_req = tensor("token_to_req", I32, {3}, true, false, false, &b);
    fill<int32_t>(b, {0, 1, 1});
    a.block_table = tensor("block_table", I32, {2, 3}, true, false, false, &b);
    fill<int32_t>(b, {0, 1, 2, 3, 4, 5});
    a.block_size = 4;
    a.ratio = 1;
    a.slots = tensor("slots", I32, {3, 4}, true, true, false);
    a.lengths = tensor("lengths", I32, {3}, true, true, false);
  }
  const char *op() const override { return "window_indices"; }
  FIXTURE_RUN_CALLS(window_indices, a)
};

// 4a. indexer_logits (ragged): T=2, Hi=4, Di=64, S=6, E4M3FN.
struct IndexerLogits : Fixture {
  spmla_indexer_logits_args_t a = SPMLA_INDEXER_LOGITS_ARGS_INIT;
  IndexerLogits() {
    Buf *b;
    a.q = tensor("q", FN, {2, 4, 64}, true, false, true);
    a.k = tensor("k", FN, {6, 64}, true, false, true);
    a.k_scale = tensor("k_scale", F32, {6}, true, false, false, &b);
    fill<float>(b, {0.5f, 1.0f, 2.0f, 0.25f, 1.5f, 1.0f});
    a.weights = tensor("weights", F32, {2, 4}, true, false, false, &b);
    fill<float>(b, {1.0f, -0.5f, 0.25f, 2.0f, 1.0f, 1.0f, -1.0f, 0.5f});
    a.k_start = tensor("k_start", I32, {2}, true, false, false, &b);
    fill<int32_t>(b, {0, 1});
    a.k_end = tensor("k_end", I32, {2}, true, false, false, &b);
    fill<int32_t>(b, {6, 4});
    a.logits = tensor("logits", F32, {2, 6}, true, true, false);
  }
  const char *op() const override { return "indexer_logits"; }
  FIXTURE_WS_CALLS(indexer_logits, a)
};

// 4b. indexer_logits_paged: B=2, N=2, Hi=4, Di=64, INDEXER_FP8 cache (E4M3FN) 4 pages x 4.
struct IndexerLogitsPaged : Fixture {
  spmla_indexer_logits_paged_args_t a = SPMLA_INDEXER_LOGITS_PAGED_ARGS_INIT;
  IndexerLogitsPaged() {
    Buf *b;
    a.q = tensor("q", FN, {2, 2, 4, 64}, true, false, true);
    a.cache = cache("cache", SPMLA_KV_LAYOUT_INDEXER_FP8, SPMLA_FP8_E4M3FN, 64, 4, 4, false);
    a.block_table = tensor("block_table", I32, {2, 2}, true, false, false, &b);
    fill<int32_t>(b, {0, 1, 2, 3});
    a.context_lens = tensor("context_lens", I32, {2}, true, false, false, &b);
    fill<int32_t>(b, {5, 3});
    a.weights = tensor("weights", F32, {4, 4}, true, false, false);
    a.logits = tensor("logits", F32, {4, 8}, true, true, false);
  }
  const char *op() const override { return "indexer_logits_paged"; }
  FIXTURE_WS_CALLS(indexer_logits_paged, a)
};

// 5. topk_per_row: R=4, C=10, k=3, explicit row ranges.
struct TopkPerRow : Fixture {
  spmla_topk_per_row_args_t a = SPMLA_TOPK_PER_ROW_ARGS_INIT;
  TopkPerRow() {
    Buf *b;
    a.logits = tensor("logits", F32, {4, 10}, true, false, false);
    a.row_starts = tensor("row_starts", I32, {4}, false, false, false, &b);
    fill<int32_t>(b, {0, 2, 5, 9});
    a.row_ends = tensor("row_ends", I32, {4}, false, false, false, &b);
    fill<int32_t>(b, {10, 4, 10, 10});
    a.next_n = 1;
    a.indices = tensor("indices", I32, {4, 3}, true, true, false);
  }
  const char *op() const override { return "topk_per_row"; }
  FIXTURE_WS_CALLS(topk_per_row, a)
};

// 5b. topk_per_row with the paged rule: R=4, next_n=2, context_lens [2].
struct TopkPaged : Fixture {
  spmla_topk_per_row_args_t a = SPMLA_TOPK_PER_ROW_ARGS_INIT;
  TopkPaged() {
    Buf *b;
    a.logits = tensor("logits", F32, {4, 10}, true, false, false);
    a.context_lens = tensor("context_lens", I32, {2}, false, false, false, &b);
    fill<int32_t>(b, {7, 10});
    a.next_n = 2;
    a.indices = tensor("indices", I32, {4, 3}, true, true, false);
  }
  const char *op() const override { return "topk_per_row(paged)"; }
  FIXTURE_WS_CALLS(topk_per_row, a)
};

// 6. kv_cache_store: N=3 rows of D=576 into a BF16 cache (the cache is the output).
struct KvCacheStore : Fixture {
  spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
  explicit KvCacheStore(spmla_kv_layout_t layout = SPMLA_KV_LAYOUT_BF16,
                        spmla_fp8_flavor_t fl = SPMLA_FP8_NONE, int32_t dim = 576,
                        spmla_kv_arrangement_t arrangement = SPMLA_KV_ARRANGEMENT_DEFAULT) {
    Buf *b;
    a.kv = tensor("kv", BF16, {3, dim}, true, false, true);
    a.slot_mapping = tensor("slot_mapping", I32, {3}, true, false, false, &b);
    fill<int32_t>(b, {0, 5, -1});
    a.cache = cache("cache", layout, fl, dim, 4, 2, true, arrangement);
  }
  const char *op() const override { return "kv_cache_store"; }
  FIXTURE_RUN_CALLS(kv_cache_store, a)
};

// 7. kv_cache_gather: N=3 slots of a BF16 cache with D=512.
struct KvCacheGather : Fixture {
  spmla_kv_cache_gather_args_t a = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
  KvCacheGather() {
    Buf *b;
    a.cache = cache("cache", SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, 512, 4, 2, false);
    a.slots = tensor("slots", I32, {3}, true, false, false, &b);
    fill<int32_t>(b, {0, 7, -1});
    a.out = tensor("out", BF16, {3, 512}, true, true, true);
  }
  const char *op() const override { return "kv_cache_gather"; }
  FIXTURE_RUN_CALLS(kv_cache_gather, a)
};

using Factory = std::function<std::unique_ptr<Fixture>()>;
inline std::vector<std::pair<std::string, Factory>> all_fixtures() {
  return {
      {"sparse_attention", [] { return std::unique_ptr<Fixture>(new SparseAttention); }},
      {"indices_to_slots", [] { return std::unique_ptr<Fixture>(new IndicesToSlots); }},
      {"window_indices", [] { return std::unique_ptr<Fixture>(new WindowIndices); }},
      {"indexer_logits", [] { return std::unique_ptr<Fixture>(new IndexerLogits); }},
      {"indexer_logits_paged", [] { return std::unique_ptr<Fixture>(new IndexerLogitsPaged); }},
      {"topk_per_row", [] { return std::unique_ptr<Fixture>(new TopkPerRow); }},
      {"topk_per_row_paged", [] { return std::unique_ptr<Fixture>(new TopkPaged); }},
      {"kv_cache_store", [] { return std::unique_ptr<Fixture>(new KvCacheStore); }},
      {"kv_cache_gather", [] { return std::unique_ptr<Fixture>(new KvCacheGather); }},
  };
}

}  // namespace fixtures
