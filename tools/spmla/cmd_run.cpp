// spmla run: one full DeepSeek sparse-attention step on random, realistic data, checked against an
// independent fp64 computation.
//
// The step, as an inference engine runs it for one layer:
//   1. store every context token's KV into the model's paged cache (V32_FP8, V4_FP8, or v41's
//      V41_FP4 compressed cache) through a shuffled block table, and its indexer key into an
//      INDEXER_FP8 cache (v4, v41: also the last tokens into a separate sliding-window cache, v41's
//      in V41_FP8);
//   2. indexer logits of the query tokens (decode: paged form over the indexer cache; prefill:
//      ragged form over the indexer keys copied out of the cache, causal k_start/k_end);
//   3. top-k per row -> request-local positions;  4. indices_to_slots through the block table;
//   5. v4/v41: window_indices for the sliding window;  6. sparse attention (workspace -> plan ->
//      run); v41 passes the V41_FP8 window as the main source and the V41_FP4 top-k cache as the
//      extra one (docs/SPEC.md: V41_FP4 is in practice the extra, compressed cache).
// The checker then recomputes a sample of query tokens in double from the cache bytes themselves
// (decoded here from docs/SPEC.md's layout table, not by the library) and compares out, lse and
// max_logits, plus the indexer logits, top-k selection and slot lists of the same rows.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <memory>
#include <numeric>
#include <thread>

#include "cache_reader.h"
#include "check.h"
#include "cli.h"
#include "device_buffer.h"
#include "host_numerics.h"
#include "memory.h"

namespace spmla_cli {
namespace {

using nlohmann::json;

// Random streams (see Rng): one per kind of input, so every row can be regenerated.
enum Stream : uint64_t { kKv = 1, kIndexerK, kWindowKv, kQ, kIndexerQ, kWeights, kSink, kPages };

struct Model {
  const char *name;
  const char *title;            // DeepSeek-<title>
  spmla_kv_layout_t layout;     // the cache the top-k list reads
  const char *layout_name;
  int d_qk, d_v, heads, topk, window;
  bool sink;
  spmla_kv_layout_t window_layout;  // the sliding-window cache's
  const char *window_layout_name;
  bool window_is_main;              // the window is sparse_attention's main source, top-k the extra
};
const Model kV32 = {"v32", "V3.2", SPMLA_KV_LAYOUT_V32_FP8, "V32_FP8", 576, 512, 128, 2048, 0, false,
                    SPMLA_KV_LAYOUT_V32_FP8, "V32_FP8", false};
const Model kV4 = {"v4", "V4", SPMLA_KV_LAYOUT_V4_FP8, "V4_FP8", 512, 512, 64, 512, 128, true,
                   SPMLA_KV_LAYOUT_V4_FP8, "V4_FP8", false};
// DeepSeek-V4.1: the compressed cache in V41_FP4 through the top-k list, the 128-token window in
// V41_FP8 as the main source (SPEC "V4.1 cache layouts"); both in --arrangement.
const Model kV41 = {"v41", "V4.1", SPMLA_KV_LAYOUT_V41_FP4, "V41_FP4", 512, 512, 64, 512, 128, true,
                    SPMLA_KV_LAYOUT_V41_FP8, "V41_FP8", true};

spmla_kv_arrangement_t arrangement_of(const RunOptions &o, spmla_kv_layout_t layout) {
  if (layout != SPMLA_KV_LAYOUT_V41_FP8 && layout != SPMLA_KV_LAYOUT_V41_FP4) return SPMLA_KV_ARRANGEMENT_DEFAULT;
  return o.arrangement == "page_blocked" ? SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED : SPMLA_KV_ARRANGEMENT_PER_TOKEN;
}
// V41_FP4's scales are E4M3FN whatever --fp8-flavor says (SPEC); the other caches take the option's.
spmla_fp8_flavor_t flavor_of(spmla_fp8_flavor_t option, spmla_kv_layout_t layout) {
  return layout == SPMLA_KV_LAYOUT_V41_FP4 ? SPMLA_FP8_E4M3FN : option;
}

// Query activations: N(0, 1) clipped to +-4; keys/values: N(0, 1) (so the scaled logits
// q.k/sqrt(D) have a standard deviation near 1); everything rounded to bf16.
constexpr double kQClip = 4.0;
constexpr double kKvStd = 1.0;

struct Shapes {
  const Model *m;
  int B, N, H, K, W, bs, Hi, Di, ctx_max, max_pages;
  int64_t T;
  bool decode = true;           // decode: paged indexer over ctx_max columns; prefill: ragged over S
  std::vector<int> ctx;         // tokens of each request (its queries are the last N)
  std::vector<int64_t> offset;  // first flat token of each request (prefill's ragged k)
  int64_t S;                    // total context tokens
  int64_t pos_of(int64_t t) const { return ctx[t / N] - N + t % N; }
};

void fill_kv_row(uint64_t seed, Stream s, int64_t id, int d, uint16_t *out) {
  Rng r(seed, s, static_cast<uint64_t>(id));
  for (int i = 0; i < d; ++i) out[i] = f32_to_bf16(static_cast<float>(kKvStd * r.normal()));
}
void fill_q_row(uint64_t seed, int64_t t, int n, uint16_t *out) {
  Rng r(seed, kQ, static_cast<uint64_t>(t));
  for (int i = 0; i < n; ++i)
    out[i] = f32_to_bf16(static_cast<float>(std::clamp(r.normal(), -kQClip, kQClip)));
}
void fill_indexer_q_row(uint64_t seed, int64_t t, int n, const Fp8Encoder &enc, uint8_t *out) {
  Rng r(seed, kIndexerQ, static_cast<uint64_t>(t));
  for (int i = 0; i < n; ++i) out[i] = enc.encode(r.normal());
}
void fill_weights_row(uint64_t seed, int64_t t, int hi, float *out) {
  Rng r(seed, kWeights, static_cast<uint64_t>(t));
  for (int i = 0; i < hi; ++i) out[i] = static_cast<float>(r.normal() / std::sqrt(double(hi)));
}

// A shuffled page allocation: table[b][j] = page of logical page j of request b, for the logical
// pages in [first[b], last[b]]; -1 elsewhere. Returns the number of pages used.
int64_t make_block_table(const Shapes &s, uint64_t seed, uint64_t salt, const std::vector<int> &first,
                         const std::vector<int> &last, std::vector<int32_t> &table) {
  int64_t n = 0;
  for (int b = 0; b < s.B; ++b) n += std::max(0, last[b] - first[b] + 1);
  std::vector<int32_t> pages(n);
  std::iota(pages.begin(), pages.end(), 0);
  Rng r(seed, kPages, salt);
  for (int64_t i = n - 1; i > 0; --i) std::swap(pages[i], pages[r.below(i + 1)]);
  table.assign(size_t(s.B) * s.max_pages, -1);
  int64_t k = 0;
  for (int b = 0; b < s.B; ++b)
    for (int j = first[b]; j <= last[b]; ++j) table[size_t(b) * s.max_pages + j] = pages[k++];
  return n;
}

int32_t slot_of(const std::vector<int32_t> &table, const Shapes &s, int b, int64_t pos) {
  const int32_t page = table[size_t(b) * s.max_pages + pos / s.bs];
  return page < 0 ? -1 : static_cast<int32_t>(int64_t(page) * s.bs + pos % s.bs);
}

// A view of the first n rows of a contiguous tensor.
spmla_tensor_t rows(const spmla_tensor_t &t, int64_t n) {
  spmla_tensor_t v = t;
  v.shape[0] = n;
  return v;
}


// Pages of the block tables make_block_table() will build: the KV (and indexer) caches' and the
// sliding-window cache's (without the spare page), as build_caches() computes first/last below.
std::pair<int64_t, int64_t> count_pages(const Shapes &s) {
  int64_t pages = 0, wpages = 0;
  for (int b = 0; b < s.B; ++b) {
    const int64_t last = (s.ctx[b] - 1) / s.bs;
    pages += last + 1;
    if (s.W > 0) {
      const int64_t lo = std::max<int64_t>(0, int64_t(s.ctx[b]) - s.N + 1 - s.W);
      wpages += last - lo / s.bs + 1;
    }
  }
  return {pages, wpages};
}

// The options that set the sizes, with the values in effect.
std::string size_flags(const RunOptions &o, const Shapes &s) {
  std::string f = "--batch " + std::to_string(s.B) + " --tokens-per-request " + std::to_string(s.N) + " --context " +
                  std::to_string(s.ctx_max) + " --heads " + std::to_string(s.H) + " --topk " + std::to_string(s.K);
  if (s.W) f += " --window " + std::to_string(s.W);
  if (s.m->window_is_main) f += " --arrangement " + o.arrangement;
  if (o.block_size != 64) f += " --block-size " + std::to_string(s.bs);
  if (s.Hi != 64 || s.Di != 128) f += " --indexer-heads " + std::to_string(s.Hi) + " --indexer-dim " + std::to_string(s.Di);
  return f + " (--model " + o.model + " --phase " + o.phase + ")";
}

// Bytes one step allocates, from the same sizes as the stages' allocations below (keep the two in step).
// Device buffers stay alive to the end, so they are summed; host buffers are summed too (the
// transient ones are small next to the tensors, except the indexer query, the size of its device
// copy). Not counted: the backend's workspaces (0 on cpu; a GPU's failed allocation is an
// OUT_OF_MEMORY status, not an OOM kill) and the cpu backend's per-token scratch.
MemoryEstimate estimate_memory(const Shapes &s, const RunOptions &o, spmla_fp8_flavor_t flavor, int check_tokens) {
  const Model &m = *s.m;
  const bool decode = s.decode;
  auto page_bytes = [&](spmla_kv_layout_t layout, int dim) {
    spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
    c.layout = layout;
    c.fp8_flavor = flavor_of(flavor, layout);
    c.arrangement = arrangement_of(o, layout);
    c.head_dim = dim;
    c.num_pages = 1;
    c.block_size = s.bs;
    size_t pb = 0;
    SPMLA_CHECK(spmla_kv_cache_page_bytes(&c, &pb));
    return int64_t(pb);
  };
  const auto [pages, wpages] = count_pages(s);
  const int64_t T = s.T, B = s.B, S = s.S, C = decode ? s.ctx_max : s.S, H = s.H, K = s.K, W = s.W;
  const int64_t Hi = s.Hi, Di = s.Di, dqk = m.d_qk, dv = m.d_v, mp = s.max_pages;
  const int64_t pb_kv = page_bytes(m.layout, m.d_qk), pb_idx = page_bytes(SPMLA_KV_LAYOUT_INDEXER_FP8, s.Di);
  const int64_t pb_win = page_bytes(m.window_layout, m.d_qk);
  MemoryEstimate e;
  // 1. caches (one spare page each), the store chunk, the block tables
  e.device("KV cache", {pages + 1, pb_kv});
  e.device("indexer cache", {pages + 1, pb_idx});
  if (W) e.device("sliding-window cache", {wpages + 1, pb_win});
  const int64_t chunk = std::min<int64_t>(16384, S);
  e.device("store chunk", {chunk, 2 * dqk + 2 * Di + 4});
  e.host("store chunk", {chunk, 2 * dqk + 2 * Di + 4 + 16});
  e.host("block tables", {W ? 2 : 1, B, mp, 4});
  e.host("page lists", {pages + wpages, 4});
  // query-side inputs
  e.device("q [T, H, D] bf16", {T, H, dqk, 2});
  const int64_t qrow = H * dqk * 2, qchunk = std::min<int64_t>(T, std::max<int64_t>(1, (int64_t(64) << 20) / qrow));
  e.host("q upload chunk", {qchunk, qrow});
  e.device("indexer q", {T, Hi, Di});
  e.host("indexer q", {T, Hi, Di});
  e.device("indexer weights", {T, Hi, 4});
  e.host("indexer weights", {T, Hi, 4});
  e.host("token tables", {T, 2 * 4});
  e.device("token tables", {T, 2 * 4});
  e.device("block table", {W ? 2 : 1, B, mp, 4});
  // 2. indexer logits (+ prefill's ragged keys and ranges)
  e.device("indexer logits [T x " + std::string(decode ? "context" : "batch*context") + "] fp32", {T, C, 4});
  if (!decode) {
    e.device("ragged indexer keys", {S, Di + 4});
    e.device("k ranges", {T, 2 * 4});
    e.host("k ranges", {T, 2 * 4});
  }
  // 3-5. top-k, slots, window lists
  e.device("top-k [T, K] int32", {T, K, 4});
  e.device("slots [T, K] int32", {T, K + 1, 4});
  if (W) e.device("window slots", {T, W + 1, 4});
  // 6. attention outputs
  e.device("out [T, H, 512] bf16", {T, H, dv * 2 + 8});
  // check: pages read back (kept per reader), per-token rows in double
  const int64_t nchk = std::min<int64_t>(check_tokens, T);
  if (nchk > 0) {
    e.host("checker pages", {std::min<int64_t>(pages, nchk * mp), pb_idx + pb_kv});
    if (W) e.host("checker window pages", {std::min<int64_t>(wpages, nchk * mp), pb_win});
    e.host("checker rows", {s.ctx_max, Di * 8 + 24 + 8 + 1 + 4});
    e.host("checker keys", {K + W, dqk * 8 + 24});
  }
  return e;
}

struct CheckResult {
  int tokens = 0;
  double max_rel_err = 0, max_lse_err = 0, max_lse_err_norm = 0, max_maxlogit_err_norm = 0;
  double indexer_err = 0;
  bool attention_ok = true, indexer_ok = true, topk_ok = true, slots_ok = true, window_ok = true;
  double logit_std = 0;
  std::vector<std::string> failures;
  void fail(const std::string &s) {
    if (failures.size() < 20) failures.push_back(s);
  }
};

// The sizes of the step: the options, or the model's defaults for the phase.
Shapes make_shapes(const RunOptions &o, const Model &m) {
  const bool decode = o.phase == "decode";
  Shapes s;
  s.m = &m;
  s.decode = decode;
  s.B = o.batch ? o.batch : (decode ? 2 : 1);
  s.N = o.tokens_per_request ? o.tokens_per_request : (decode ? 2 : 256);
  s.H = o.heads ? o.heads : m.heads;
  s.K = o.topk ? o.topk : m.topk;
  s.W = m.window ? (o.window >= 0 ? o.window : m.window) : 0;
  s.bs = o.block_size;
  s.Hi = o.indexer_heads;
  s.Di = o.indexer_dim;
  s.ctx_max = o.context ? o.context : 4096;
  if (s.ctx_max < s.N)
    throw Error("--context " + std::to_string(s.ctx_max) + " is smaller than the query tokens per request (" +
                std::to_string(s.N) + ")");
  s.T = int64_t(s.B) * s.N;
  s.max_pages = (s.ctx_max + s.bs - 1) / s.bs;
  // Requests after the first get somewhat shorter contexts, as in a real batch.
  s.S = 0;
  for (int b = 0; b < s.B; ++b) {
    const int spread = std::max(1, s.ctx_max / 8);
    const int c = b == 0 ? s.ctx_max : std::max(s.N, s.ctx_max - int((uint64_t(b) * 7919u) % uint64_t(spread)));
    s.ctx.push_back(c);
    s.offset.push_back(s.S);
    s.S += c;
  }
  return s;
}

// What the stages of one step share: the sizes, the handle, and every buffer they make. Each
// stage fills in its part in order; the checker and the report read them all. Device buffers
// live as long as the step (estimate_memory() counts them that way).
struct Step {
  Step(const RunOptions &opts, const Model &model, Shapes shapes, Progress &prog)
      : o(opts), m(model), s(std::move(shapes)), decode(s.decode), progress(prog),
        flavor(o.fp8_flavor == "e4m3fnuz" ? SPMLA_FP8_E4M3FNUZ : SPMLA_FP8_E4M3FN),
        fp8_dtype(flavor == SPMLA_FP8_E4M3FNUZ ? SPMLA_DTYPE_FP8_E4M3FNUZ : SPMLA_DTYPE_FP8_E4M3FN),
        K_eff(int64_t(s.K) + s.W), flops(2.0 * double(s.T) * s.H * double(K_eff) * (m.d_qk + m.d_v)),
        C(decode ? s.ctx_max : s.S), enc(flavor), h(o.backend.c_str(), o.device), backend(h.backend()) {}

  // Waits for the stage's work, so that its time is its own.
  void stage_done(const char *name) {
    h.sync();
    stages[name] = stage_clock.ms();
    stage_clock = Stopwatch();
  }

  const RunOptions &o;
  const Model &m;
  const Shapes s;
  const bool decode;
  Progress &progress;
  const spmla_fp8_flavor_t flavor;
  const spmla_dtype_t fp8_dtype;
  const int64_t K_eff;    // keys each query attends: top-k + window
  const double flops;
  const int64_t C;        // indexer logits columns
  const Fp8Encoder enc;
  Handle h;
  const std::string backend;
  spmla_device_info_t dev = SPMLA_DEVICE_INFO_INIT;
  json stages = json::object();
  Stopwatch stage_clock;

  // caches (build_caches, store_caches)
  std::vector<int> last;  // last logical page of each request
  std::vector<int32_t> table, win_table;
  std::vector<int64_t> win_lo;  // first position of each request the window cache holds
  int64_t pages = 0;
  DeviceBuffer kv_buf, idx_buf, win_buf;
  spmla_kv_cache_t kv_cache = SPMLA_KV_CACHE_INIT, idx_cache = SPMLA_KV_CACHE_INIT, win_cache = SPMLA_KV_CACHE_INIT;
  // query-side inputs (make_inputs)
  DeviceTensor q_t, iq_t, w_t, tok_req_t, pos_t, table_t, ctx_t, sink_t;
  std::vector<float> sink_h;
  // indexer logits (run_indexer)
  DeviceTensor logits_t, kstart_t, kend_t, ik_flat, ks_flat;
  // top-k, slots, window lists (run_topk_and_slots)
  DeviceTensor topk_t, slots_t, lens_t, wslots_t, wlens_t, wtable_t;
  // attention (run_attention)
  DeviceTensor out_t, lse_t, maxl_t;
  DeviceBuffer attn_ws;
  double plan_ms = 0, attn_ms = 0, tflops = 0, step_ms = 0;
};

// Refuses what cannot fit or cannot work before anything large is allocated.
void check_sizes(Step &st) {
  const Shapes &s = st.s;
  check_memory("spmla run", size_flags(st.o, s), estimate_memory(s, st.o, st.flavor, st.o.check_tokens),
               st.backend == "cpu" || std::string(st.dev.arch) == "cpu", st.dev, st.o.verbose < 0);
  // Slots (and prefill's ragged key offsets) are int32.
  const int64_t slots = (count_pages(s).first + 1) * s.bs;
  if (slots > std::numeric_limits<int32_t>::max())
    throw Error("spmla run: " + size_flags(st.o, s) + ": the KV cache would have " + std::to_string(slots) +
                " slots, more than int32 slot ids reach (2147483647); lower --batch or --context");
}

spmla_kv_cache_t make_cache(Step &st, spmla_kv_layout_t layout, int dim, int64_t num_pages, DeviceBuffer &buf) {
  spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
  c.layout = layout;
  c.fp8_flavor = flavor_of(st.flavor, layout);
  c.arrangement = arrangement_of(st.o, layout);
  c.head_dim = dim;
  c.num_pages = num_pages;
  c.block_size = st.s.bs;
  size_t bytes = 0;
  SPMLA_CHECK(spmla_kv_cache_size_bytes(&c, &bytes));
  buf = DeviceBuffer(st.h, bytes);
  buf.fill(0xFF);  // never-written bytes are NaN in both flavors: they must not reach outputs
  c.data = buf.data();
  return c;
}

// 1a. Block tables and the (empty) caches.
void build_caches(Step &st) {
  const Shapes &s = st.s;
  const Model &m = st.m;
  std::vector<int> first(s.B, 0);
  st.last.resize(s.B);
  for (int b = 0; b < s.B; ++b) st.last[b] = (s.ctx[b] - 1) / s.bs;
  st.pages = make_block_table(s, st.o.seed, 0, first, st.last, st.table);
  // One spare page beyond what the block table uses: bytes no slot list points at.
  st.kv_cache = make_cache(st, m.layout, m.d_qk, st.pages + 1, st.kv_buf);
  st.idx_cache = make_cache(st, SPMLA_KV_LAYOUT_INDEXER_FP8, s.Di, st.pages + 1, st.idx_buf);

  // v4's sliding-window cache holds only the pages the window of some query token reaches.
  st.win_lo.assign(s.B, 0);
  if (s.W > 0) {
    std::vector<int> wfirst(s.B);
    for (int b = 0; b < s.B; ++b) {
      st.win_lo[b] = std::max<int64_t>(0, int64_t(s.ctx[b]) - s.N + 1 - s.W);
      wfirst[b] = int(st.win_lo[b] / s.bs);
    }
    const int64_t wpages = make_block_table(s, st.o.seed, 1, wfirst, st.last, st.win_table);
    st.win_cache = make_cache(st, m.window_layout, m.d_qk, wpages + 1, st.win_buf);
  }
}

// 1b. Every context token's KV (and indexer key) stored through the block tables, in chunks.
void store_caches(Step &st) {
  const Shapes &s = st.s;
  const Model &m = st.m;
  const uint64_t seed = st.o.seed;
  Handle &h = st.h;
  st.progress("storing " + std::to_string(s.S) + " tokens into " + m.layout_name + " and INDEXER_FP8 caches" +
              (s.W ? std::string(" (+ the ") + m.window_layout_name + " sliding-window cache)" : std::string()) + "...");
  const int64_t chunk = std::min<int64_t>(16384, s.S);
  DeviceTensor kv_t(h, SPMLA_DTYPE_BF16, {chunk, m.d_qk}), ik_t(h, SPMLA_DTYPE_BF16, {chunk, s.Di});
  DeviceTensor slot_t(h, SPMLA_DTYPE_INT32, {chunk});
  std::vector<uint16_t> kv_h(size_t(chunk) * m.d_qk), ik_h(size_t(chunk) * s.Di);
  std::vector<int32_t> slot_h(chunk);
  // Rows are generated on all threads (each row has its own random stream), then stored.
  std::vector<std::pair<int, int64_t>> toks;  // (request, position) of the chunk's rows
  auto flush = [&](const spmla_kv_cache_t &cache, const std::vector<int32_t> &tab, Stream kv_stream,
                   bool with_indexer) {
    const int64_t n = int64_t(toks.size());
    if (n == 0) return;
    parallel_for(n, [&](int64_t i) {
      const int64_t id = int64_t(toks[i].first) * s.ctx_max + toks[i].second;
      fill_kv_row(seed, kv_stream, id, m.d_qk, &kv_h[size_t(i) * m.d_qk]);
      if (with_indexer) fill_kv_row(seed, kIndexerK, id, s.Di, &ik_h[size_t(i) * s.Di]);
      slot_h[i] = slot_of(tab, s, toks[i].first, toks[i].second);
    });
    kv_t.buf.upload(kv_h.data(), size_t(n) * m.d_qk * 2);
    slot_t.buf.upload(slot_h.data(), size_t(n) * 4);
    const spmla_tensor_t kv_v = rows(kv_t.t, n), slot_v = rows(slot_t.t, n);
    spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
    a.kv = &kv_v;
    a.slot_mapping = &slot_v;
    a.cache = &cache;
    SPMLA_CHECK(spmla_kv_cache_store_run(h, &a, nullptr));
    if (with_indexer) {
      ik_t.buf.upload(ik_h.data(), size_t(n) * s.Di * 2);
      const spmla_tensor_t ik_v = rows(ik_t.t, n);
      a.kv = &ik_v;
      a.cache = &st.idx_cache;
      SPMLA_CHECK(spmla_kv_cache_store_run(h, &a, nullptr));
    }
    h.sync();  // the host buffers are refilled next
    toks.clear();
  };
  for (int b = 0; b < s.B; ++b)
    for (int64_t p = 0; p < s.ctx[b]; ++p) {
      toks.emplace_back(b, p);
      if (int64_t(toks.size()) == chunk) flush(st.kv_cache, st.table, kKv, true);
    }
  flush(st.kv_cache, st.table, kKv, true);
  for (int b = 0; s.W && b < s.B; ++b)
    for (int64_t p = st.win_lo[b]; p < s.ctx[b]; ++p) {
      toks.emplace_back(b, p);
      if (int64_t(toks.size()) == chunk) flush(st.win_cache, st.win_table, kWindowKv, false);
    }
  flush(st.win_cache, st.win_table, kWindowKv, false);
  st.stage_done("store");
}

// Query-side inputs: q, the indexer query and weights, the token tables, v4's sinks.
void make_inputs(Step &st) {
  const Shapes &s = st.s;
  const Model &m = st.m;
  const uint64_t seed = st.o.seed;
  Handle &h = st.h;
  st.progress("generating " + std::to_string(s.T) + " query tokens (H " + std::to_string(s.H) + ", indexer " +
              std::to_string(s.Hi) + "x" + std::to_string(s.Di) + ")...");
  st.q_t = DeviceTensor(h, SPMLA_DTYPE_BF16, {s.T, s.H, m.d_qk});
  {
    // q is uploaded in chunks of at most 64 MiB: it is the largest query-side tensor.
    const int64_t row = int64_t(s.H) * m.d_qk, chunk = std::max<int64_t>(1, (64 << 20) / (row * 2));
    std::vector<uint16_t> qh(size_t(std::min(chunk, s.T)) * row);
    for (int64_t t0 = 0; t0 < s.T; t0 += chunk) {
      const int64_t n = std::min(chunk, s.T - t0);
      parallel_for(n, [&](int64_t t) { fill_q_row(seed, t0 + t, int(row), &qh[size_t(t) * row]); });
      st.q_t.buf.upload(qh.data(), size_t(n) * row * 2, size_t(t0) * row * 2);
      h.sync();
    }
  }
  st.iq_t = DeviceTensor(h, st.fp8_dtype, st.decode ? std::vector<int64_t>{s.B, s.N, s.Hi, s.Di}
                                                    : std::vector<int64_t>{s.T, s.Hi, s.Di});
  st.w_t = DeviceTensor(h, SPMLA_DTYPE_FP32, {s.T, s.Hi});
  {
    std::vector<uint8_t> iq(size_t(s.T) * s.Hi * s.Di);
    std::vector<float> w(size_t(s.T) * s.Hi);
    parallel_for(s.T, [&](int64_t t) {
      fill_indexer_q_row(seed, t, s.Hi * s.Di, st.enc, &iq[size_t(t) * s.Hi * s.Di]);
      fill_weights_row(seed, t, s.Hi, &w[size_t(t) * s.Hi]);
    });
    st.iq_t.upload(iq);
    st.w_t.upload(w);
  }
  std::vector<int32_t> tok_req(s.T), positions(s.T), ctx_lens(s.ctx.begin(), s.ctx.end());
  for (int64_t t = 0; t < s.T; ++t) tok_req[t] = int32_t(t / s.N), positions[t] = int32_t(s.pos_of(t));
  st.tok_req_t = DeviceTensor(h, SPMLA_DTYPE_INT32, {s.T});
  st.pos_t = DeviceTensor(h, SPMLA_DTYPE_INT32, {s.T});
  st.table_t = DeviceTensor(h, SPMLA_DTYPE_INT32, {s.B, s.max_pages});
  st.ctx_t = DeviceTensor(h, SPMLA_DTYPE_INT32, {s.B});
  st.tok_req_t.upload(tok_req);
  st.pos_t.upload(positions);
  st.table_t.upload(st.table);
  st.ctx_t.upload(ctx_lens);
  if (m.sink) {
    // Sinks near the typical lse (log of the attended count) so that they visibly matter.
    Rng r(seed, kSink, 0);
    for (int i = 0; i < s.H; ++i) st.sink_h.push_back(float(std::log(double(st.K_eff)) + r.normal()));
    st.sink_t = DeviceTensor(h, SPMLA_DTYPE_FP32, {s.H});
    st.sink_t.upload(st.sink_h);
  }
  st.stage_done("inputs");
}

// 2. Indexer logits: decode reads the paged cache; prefill the keys copied out of it (ragged).
void run_indexer(Step &st) {
  const Shapes &s = st.s;
  Handle &h = st.h;
  st.logits_t = DeviceTensor(h, SPMLA_DTYPE_FP32, {s.T, st.C});
  if (st.decode) {
    st.progress("indexer logits (paged) for " + std::to_string(s.T) + " rows x " + std::to_string(st.C) +
                " keys...");
    spmla_indexer_logits_paged_args_t a = SPMLA_INDEXER_LOGITS_PAGED_ARGS_INIT;
    a.q = st.iq_t.desc();
    a.cache = &st.idx_cache;
    a.block_table = st.table_t.desc();
    a.context_lens = st.ctx_t.desc();
    a.weights = st.w_t.desc();
    a.logits = st.logits_t.desc();
    size_t ws = 0;
    SPMLA_CHECK(spmla_indexer_logits_paged_get_workspace_size(h, &a, &ws));
    DeviceBuffer wsb(h, ws);
    SPMLA_CHECK(spmla_indexer_logits_paged_run(h, &a, wsb.data(), ws, nullptr));
    st.stage_done("indexer_logits");
    return;
  }
  // Prefill reads the indexer keys as one ragged [S, Di] tensor: copy them out of the cache
  // page by page (fp8 bytes and scales), as an engine's gather step does.
  st.progress("copying " + std::to_string(s.S) + " indexer keys out of the cache, then indexer logits (ragged) for " +
              std::to_string(s.T) + " rows...");
  st.ik_flat = DeviceTensor(h, st.fp8_dtype, {s.S, s.Di});
  st.ks_flat = DeviceTensor(h, SPMLA_DTYPE_FP32, {s.S});
  size_t page_bytes = 0;
  SPMLA_CHECK(spmla_kv_cache_page_bytes(&st.idx_cache, &page_bytes));
  auto *base = static_cast<uint8_t *>(st.idx_buf.data());
  for (int b = 0; b < s.B; ++b)
    for (int j = 0; j * s.bs < s.ctx[b]; ++j) {
      const int64_t n = std::min<int64_t>(s.bs, s.ctx[b] - int64_t(j) * s.bs);
      const int64_t dst_tok = s.offset[b] + int64_t(j) * s.bs;
      const uint8_t *page = base + size_t(st.table[size_t(b) * s.max_pages + j]) * page_bytes;
      SPMLA_CHECK(spmla_memcpy(h, static_cast<uint8_t *>(st.ik_flat.buf.data()) + dst_tok * s.Di, page,
                               size_t(n) * s.Di, SPMLA_MEMCPY_DEVICE_TO_DEVICE, nullptr));
      SPMLA_CHECK(spmla_memcpy(h, static_cast<uint8_t *>(st.ks_flat.buf.data()) + dst_tok * 4,
                               page + size_t(s.bs) * s.Di, size_t(n) * 4, SPMLA_MEMCPY_DEVICE_TO_DEVICE, nullptr));
    }
  std::vector<int32_t> ks(s.T), ke(s.T);
  for (int64_t t = 0; t < s.T; ++t) {
    ks[t] = int32_t(s.offset[t / s.N]);
    ke[t] = int32_t(s.offset[t / s.N] + s.pos_of(t) + 1);  // causal
  }
  st.kstart_t = DeviceTensor(h, SPMLA_DTYPE_INT32, {s.T});
  st.kend_t = DeviceTensor(h, SPMLA_DTYPE_INT32, {s.T});
  st.kstart_t.upload(ks);
  st.kend_t.upload(ke);
  spmla_indexer_logits_args_t a = SPMLA_INDEXER_LOGITS_ARGS_INIT;
  a.q = st.iq_t.desc();
  a.k = st.ik_flat.desc();
  a.k_scale = st.ks_flat.desc();
  a.weights = st.w_t.desc();
  a.k_start = st.kstart_t.desc();
  a.k_end = st.kend_t.desc();
  a.logits = st.logits_t.desc();
  size_t ws = 0;
  SPMLA_CHECK(spmla_indexer_logits_get_workspace_size(h, &a, &ws));
  DeviceBuffer wsb(h, ws);
  SPMLA_CHECK(spmla_indexer_logits_run(h, &a, wsb.data(), ws, nullptr));
  st.stage_done("indexer_logits");
}

// 3. Top-k per row, 4. slots through the block table, 5. v4's sliding-window lists.
void run_topk_and_slots(Step &st) {
  const Shapes &s = st.s;
  Handle &h = st.h;
  st.progress("top-" + std::to_string(s.K) + " per row, slots from the block table" +
              (s.W ? ", sliding-window lists" : "") + "...");
  st.topk_t = DeviceTensor(h, SPMLA_DTYPE_INT32, {s.T, s.K});
  {
    spmla_topk_per_row_args_t a = SPMLA_TOPK_PER_ROW_ARGS_INIT;
    a.logits = st.logits_t.desc();
    // Rows end where the indexer's causal range does: decode by context length, prefill by k_end.
    if (st.decode) {
      a.context_lens = st.ctx_t.desc();
      a.next_n = s.N;
    } else {
      a.row_starts = st.kstart_t.desc();
      a.row_ends = st.kend_t.desc();
    }
    a.indices = st.topk_t.desc();
    size_t ws = 0;
    SPMLA_CHECK(spmla_topk_per_row_get_workspace_size(h, &a, &ws));
    DeviceBuffer wsb(h, ws);
    SPMLA_CHECK(spmla_topk_per_row_run(h, &a, wsb.data(), ws, nullptr));
    st.stage_done("topk");
  }
  st.slots_t = DeviceTensor(h, SPMLA_DTYPE_INT32, {s.T, s.K});
  st.lens_t = DeviceTensor(h, SPMLA_DTYPE_INT32, {s.T});
  {
    spmla_indices_to_slots_args_t a = SPMLA_INDICES_TO_SLOTS_ARGS_INIT;
    a.positions = st.topk_t.desc();
    a.token_to_req = st.tok_req_t.desc();
    a.block_table = st.table_t.desc();
    a.block_size = s.bs;
    a.slots = st.slots_t.desc();
    a.lengths = st.lens_t.desc();
    SPMLA_CHECK(spmla_indices_to_slots_run(h, &a, nullptr));
    st.stage_done("indices_to_slots");
  }
  if (!s.W) return;
  st.wslots_t = DeviceTensor(h, SPMLA_DTYPE_INT32, {s.T, s.W});
  st.wlens_t = DeviceTensor(h, SPMLA_DTYPE_INT32, {s.T});
  st.wtable_t = DeviceTensor(h, SPMLA_DTYPE_INT32, {s.B, s.max_pages});
  st.wtable_t.upload(st.win_table);
  spmla_window_indices_args_t a = SPMLA_WINDOW_INDICES_ARGS_INIT;
  a.positions = st.pos_t.desc();
  a.token_to_req = st.tok_req_t.desc();
  a.block_table = st.wtable_t.desc();
  a.block_size = s.bs;
  a.ratio = 1;
  a.slots = st.wslots_t.desc();
  a.lengths = st.wlens_t.desc();
  SPMLA_CHECK(spmla_window_indices_run(h, &a, nullptr));
  st.stage_done("window_indices");
}

// 6. Sparse attention (workspace -> plan -> run), timed: the median of --repeats runs.
void run_attention(Step &st) {
  const Shapes &s = st.s;
  const Model &m = st.m;
  Handle &h = st.h;
  st.out_t = DeviceTensor(h, SPMLA_DTYPE_BF16, {s.T, s.H, m.d_v});
  st.lse_t = DeviceTensor(h, SPMLA_DTYPE_FP32, {s.T, s.H});
  st.maxl_t = DeviceTensor(h, SPMLA_DTYPE_FP32, {s.T, s.H});
  spmla_sparse_attention_args_t aa = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
  aa.q = st.q_t.desc();
  aa.kv = &st.kv_cache;
  aa.indices = st.slots_t.desc();
  aa.lengths = st.lens_t.desc();
  if (s.W) {
    aa.extra_kv = &st.win_cache;
    aa.extra_indices = st.wslots_t.desc();
    aa.extra_lengths = st.wlens_t.desc();
    if (m.window_is_main) {  // v41: the window is the main source, the top-k cache the extra
      std::swap(aa.kv, aa.extra_kv);
      std::swap(aa.indices, aa.extra_indices);
      std::swap(aa.lengths, aa.extra_lengths);
    }
  }
  if (m.sink) aa.attn_sink = st.sink_t.desc();
  aa.scale = 0.0f;  // 1/sqrt(D_qk)
  aa.out = st.out_t.desc();
  aa.lse = st.lse_t.desc();
  aa.max_logits = st.maxl_t.desc();
  size_t ws_bytes = 0;
  SPMLA_CHECK(spmla_sparse_attention_get_workspace_size(h, &aa, &ws_bytes));
  st.attn_ws = DeviceBuffer(h, ws_bytes);
  st.progress("sparse attention: T " + std::to_string(s.T) + ", H " + std::to_string(s.H) + ", K " +
              std::to_string(s.K) + (s.W ? " + window " + std::to_string(s.W) : std::string()) + ", D " +
              std::to_string(m.d_qk) + ", workspace " + format_bytes(double(ws_bytes)) + "...");
  EventTimer timer(h);
  timer.start();
  SPMLA_CHECK(spmla_sparse_attention_plan(h, &aa, st.attn_ws.data(), ws_bytes, nullptr));
  timer.stop();
  st.plan_ms = timer.elapsed_ms();
  std::vector<double> times;
  for (int r = 0; r < st.o.repeats; ++r) {
    timer.start();
    SPMLA_CHECK(spmla_sparse_attention_run(h, &aa, st.attn_ws.data(), ws_bytes, nullptr));
    timer.stop();
    times.push_back(timer.elapsed_ms());
  }
  st.attn_ms = median(times);
  st.tflops = st.flops / (st.attn_ms * 1e-3) / 1e12;
  st.stage_done("sparse_attention");
}

// --- check: one query token at a time, each output against its fp64 recomputation -------------

// The query token a check looks at.
struct CheckedToken {
  int64_t t;
  int b;
  int64_t pos, L;  // position in its request; keys it may see (pos + 1)
  std::string tag;
};

// Indexer logits of the row, over request-local positions 0..ncols-1; returns the row.
std::vector<float> check_indexer_row(const Step &st, const CheckedToken &k, CacheReader &idx_rd, CheckResult &cr) {
  const Shapes &s = st.s;
  const int64_t t = k.t, L = k.L;
  const int64_t col0 = st.decode ? 0 : s.offset[k.b];
  const int64_t ncols = st.decode ? st.C : s.ctx[k.b];
  std::vector<float> lrow = st.logits_t.buf.download_vec<float>(size_t(ncols), size_t(t * st.C + col0) * 4);
  std::vector<uint8_t> iq(size_t(s.Hi) * s.Di);
  std::vector<float> w(s.Hi);
  fill_indexer_q_row(st.o.seed, t, s.Hi * s.Di, st.enc, iq.data());
  fill_weights_row(st.o.seed, t, s.Hi, w.data());
  std::vector<double> qd(iq.size());
  for (size_t i = 0; i < iq.size(); ++i) qd[i] = decode_fp8(iq[i], st.flavor);
  std::vector<std::vector<double>> krows(L);
  for (int64_t j = 0; j < L; ++j) idx_rd.row(slot_of(st.table, s, k.b, j), krows[j]);
  std::vector<double> ref(L);
  parallel_for(L, [&](int64_t j) {
    double acc = 0;
    for (int hh = 0; hh < s.Hi; ++hh) {
      double d = 0;
      for (int i = 0; i < s.Di; ++i) d += qd[size_t(hh) * s.Di + i] * krows[j][i];
      acc += double(w[hh]) * std::max(0.0, d);
    }
    ref[j] = acc;
  });
  // The error is relative to the row's largest logit: logits near 0 carry no precision of their own.
  double rs = 0, err = 0;
  for (int64_t j = 0; j < L; ++j) rs = std::max(rs, std::fabs(ref[j]));
  for (int64_t j = 0; j < L; ++j) err = std::max(err, std::fabs(double(lrow[j]) - ref[j]) / std::max(rs, 1e-30));
  bool masked_ok = true;
  for (int64_t j = L; j < ncols; ++j) masked_ok &= std::isinf(lrow[j]) && lrow[j] < 0;
  cr.indexer_err = std::max(cr.indexer_err, err);
  if (!(err < 1e-3) || !masked_ok) {
    cr.indexer_ok = false;
    cr.fail(k.tag + ": indexer logits error " + std::to_string(err) + " of the row's scale" +
            (masked_ok ? "" : ", columns beyond the causal range are not -inf"));
  }
  return lrow;
}

// Top-k: exactly the k largest of the row's range, ascending, then -1; returns the selection.
std::vector<int32_t> check_topk_row(const Step &st, const CheckedToken &tok, const std::vector<float> &lrow,
                                    CheckResult &cr) {
  const Shapes &s = st.s;
  const int64_t L = tok.L;
  std::vector<int32_t> sel = st.topk_t.buf.download_vec<int32_t>(size_t(s.K), size_t(tok.t) * s.K * 4);
  const int64_t want = std::min<int64_t>(s.K, L);
  bool ok = true;
  std::vector<char> chosen(L, 0);
  for (int64_t k = 0; k < s.K; ++k) {
    if (k < want) {
      ok &= sel[k] >= 0 && sel[k] < L && (k == 0 || sel[k] > sel[k - 1]);
      if (sel[k] >= 0 && sel[k] < L) chosen[sel[k]] = 1;
    } else {
      ok &= sel[k] == -1;
    }
  }
  if (ok) {
    // every chosen column beats every other: larger value, or equal value and smaller column
    float min_sel = std::numeric_limits<float>::infinity();
    int64_t min_sel_col = -1;
    for (int64_t j = 0; j < L; ++j)
      if (chosen[j] && (lrow[j] < min_sel || (lrow[j] == min_sel))) min_sel = lrow[j], min_sel_col = j;
    for (int64_t j = 0; j < L && ok; ++j)
      if (!chosen[j] && (lrow[j] > min_sel || (lrow[j] == min_sel && j < min_sel_col))) ok = false;
  }
  if (!ok) {
    cr.topk_ok = false;
    cr.fail(tok.tag + ": top-k indices are not the " + std::to_string(want) + " largest logits in ascending order");
  }
  return sel;
}

// A slot list and its length, as one token's attention reads them.
struct SlotList {
  std::vector<int32_t> slots;
  int32_t len = 0;
};

// Slots and lengths through the block table.
SlotList check_slots_row(const Step &st, const CheckedToken &tok, const std::vector<int32_t> &sel, CheckResult &cr) {
  const Shapes &s = st.s;
  SlotList l;
  l.slots = st.slots_t.buf.download_vec<int32_t>(size_t(s.K), size_t(tok.t) * s.K * 4);
  l.len = st.lens_t.buf.download_vec<int32_t>(1, size_t(tok.t) * 4)[0];
  int32_t valid = 0;
  bool ok = true;
  for (int k = 0; k < s.K; ++k) {
    const int32_t expect = sel[k] < 0 ? -1 : slot_of(st.table, s, tok.b, sel[k]);
    ok &= l.slots[k] == expect;
    valid += expect >= 0;
  }
  ok &= l.len == valid;
  if (!ok) {
    cr.slots_ok = false;
    cr.fail(tok.tag + ": indices_to_slots output differs from the block table mapping");
  }
  return l;
}

// The sliding-window list: the last W positions up to the token's own, through the window table.
SlotList check_window_row(const Step &st, const CheckedToken &tok, CheckResult &cr) {
  const Shapes &s = st.s;
  SlotList l;
  l.slots = st.wslots_t.buf.download_vec<int32_t>(size_t(s.W), size_t(tok.t) * s.W * 4);
  l.len = st.wlens_t.buf.download_vec<int32_t>(1, size_t(tok.t) * 4)[0];
  const int64_t hi = tok.pos + 1, lo = std::max<int64_t>(0, hi - s.W);
  bool ok = l.len == hi - lo;
  for (int k = 0; k < s.W; ++k) ok &= l.slots[k] == (k < hi - lo ? slot_of(st.win_table, s, tok.b, lo + k) : -1);
  if (!ok) {
    cr.window_ok = false;
    cr.fail(tok.tag + ": window_indices output differs from the sliding-window rule");
  }
  return l;
}

// Attention in double from the decoded cache rows, by docs/SPEC.md's definition. Adds the
// token's squared logits and their count to logit_sum2 / logit_count (for the logit std).
void check_attention_row(const Step &st, const CheckedToken &tok, const std::vector<std::vector<double>> &keys,
                         CheckResult &cr, double &logit_sum2, int64_t &logit_count) {
  const Shapes &s = st.s;
  const Model &m = st.m;
  const int64_t t = tok.t;
  const double scale = 1.0 / std::sqrt(double(m.d_qk));
  std::vector<uint16_t> qb(size_t(s.H) * m.d_qk);
  fill_q_row(st.o.seed, t, int(qb.size()), qb.data());
  std::vector<uint16_t> out = st.out_t.buf.download_vec<uint16_t>(size_t(s.H) * m.d_v, size_t(t) * s.H * m.d_v * 2);
  std::vector<float> lse = st.lse_t.buf.download_vec<float>(size_t(s.H), size_t(t) * s.H * 4);
  std::vector<float> mxl = st.maxl_t.buf.download_vec<float>(size_t(s.H), size_t(t) * s.H * 4);
  std::vector<double> num(s.H, 0), den(s.H, 0), lse_err(s.H, 0), lse_norm(s.H, 0), mx_norm(s.H, 0), lsum2(s.H, 0);
  std::vector<char> empty_bad(s.H, 0);
  const int64_t J = int64_t(keys.size());
  parallel_for(s.H, [&](int64_t hh) {
    std::vector<double> lg(J);
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < J; ++j) {
      double d = 0;
      for (int i = 0; i < m.d_qk; ++i) d += double(bf16_to_f32(qb[size_t(hh) * m.d_qk + i])) * keys[j][i];
      lg[j] = scale * d;
      mx = std::max(mx, lg[j]);
      lsum2[hh] += lg[j] * lg[j];
    }
    const uint16_t *o_dev = &out[size_t(hh) * m.d_v];
    if (J == 0) {  // empty set: exact zeros, lse +inf, max_logits -inf
      bool ok = std::isinf(lse[hh]) && lse[hh] > 0 && std::isinf(mxl[hh]) && mxl[hh] < 0;
      for (int i = 0; i < m.d_v; ++i) ok &= bf16_to_f32(o_dev[i]) == 0.0f;
      empty_bad[hh] = !ok;
      return;
    }
    double sum = 0;
    for (int64_t j = 0; j < J; ++j) sum += std::exp(lg[j] - mx);
    const double l = mx + std::log(sum);
    const double sink_f = m.sink ? 1.0 / (1.0 + std::exp(double(st.sink_h[hh]) - l)) : 1.0;
    std::vector<double> ref(m.d_v, 0.0);
    for (int64_t j = 0; j < J; ++j) {
      const double p = std::exp(lg[j] - l) * sink_f;
      for (int i = 0; i < m.d_v; ++i) ref[i] += p * keys[j][i];
    }
    for (int i = 0; i < m.d_v; ++i) {
      const double d = double(bf16_to_f32(o_dev[i])) - ref[i];
      num[hh] += d * d;
      den[hh] += ref[i] * ref[i];
    }
    lse_err[hh] = std::fabs(double(lse[hh]) - l);
    lse_norm[hh] = lse_err[hh] / std::max(1.0, std::fabs(l));
    mx_norm[hh] = std::fabs(double(mxl[hh]) - mx) / std::max(1.0, std::fabs(mx));
    // A NaN must fail the tolerance checks, which compare with <: make it infinite.
    if (std::isnan(lse_norm[hh])) lse_norm[hh] = lse_err[hh] = INFINITY;
    if (std::isnan(mx_norm[hh])) mx_norm[hh] = INFINITY;
  });
  const double n2 = std::accumulate(num.begin(), num.end(), 0.0), d2 = std::accumulate(den.begin(), den.end(), 0.0);
  double rel = d2 > 0 ? std::sqrt(n2 / d2) : std::sqrt(n2);
  if (std::isnan(rel)) rel = INFINITY;
  cr.max_rel_err = std::max(cr.max_rel_err, rel);
  for (int hh = 0; hh < s.H; ++hh) {
    cr.max_lse_err = std::max(cr.max_lse_err, lse_err[hh]);
    cr.max_lse_err_norm = std::max(cr.max_lse_err_norm, lse_norm[hh]);
    cr.max_maxlogit_err_norm = std::max(cr.max_maxlogit_err_norm, mx_norm[hh]);
    logit_sum2 += lsum2[hh];
  }
  logit_count += J * s.H;
  const bool any_empty_bad = std::any_of(empty_bad.begin(), empty_bad.end(), [](char x) { return x != 0; });
  if (!(rel < 1e-2) || any_empty_bad) {
    cr.attention_ok = false;
    cr.fail(tok.tag + ": out relative error " + std::to_string(rel) + (any_empty_bad ? " (empty set not exact)" : ""));
  }
}

// Recomputes --check-tokens query tokens, spread evenly over the batch and ending with the last,
// in double from the cache bytes themselves (decoded here, not by the library).
CheckResult check_step(Step &st) {
  const Shapes &s = st.s;
  CheckResult cr;
  const int nchk = int(std::min<int64_t>(st.o.check_tokens, s.T));
  if (nchk <= 0) return cr;
  st.progress("checking " + std::to_string(nchk) + " query tokens against an fp64 computation...");
  CacheReader kv_rd(st.h, st.kv_cache), idx_rd(st.h, st.idx_cache);
  std::unique_ptr<CacheReader> win_rd;
  if (s.W) win_rd.reset(new CacheReader(st.h, st.win_cache));
  double logit_sum2 = 0;
  int64_t logit_count = 0;
  for (int c = 0; c < nchk; ++c) {
    CheckedToken tok;
    tok.t = nchk == 1 ? s.T - 1 : int64_t(c) * (s.T - 1) / (nchk - 1);
    tok.b = int(tok.t / s.N);
    tok.pos = s.pos_of(tok.t);
    tok.L = tok.pos + 1;
    tok.tag = "token " + std::to_string(tok.t) + " (request " + std::to_string(tok.b) + ", position " +
              std::to_string(tok.pos) + ")";
    ++cr.tokens;

    const std::vector<float> lrow = check_indexer_row(st, tok, idx_rd, cr);
    const std::vector<int32_t> sel = check_topk_row(st, tok, lrow, cr);
    const SlotList sl = check_slots_row(st, tok, sel, cr);
    SlotList wl;
    if (s.W) wl = check_window_row(st, tok, cr);

    // The keys attention sees: the valid slots of both lists, as the device reads them.
    std::vector<std::vector<double>> keys;
    auto add = [&](CacheReader &rd, const std::vector<int32_t> &list, int32_t n) {
      for (int32_t k = 0; k < int32_t(list.size()) && k < n; ++k)
        if (rd.valid_slot(list[k])) {
          keys.emplace_back();
          rd.row(list[k], keys.back());
        }
    };
    add(kv_rd, sl.slots, sl.len);
    if (s.W) add(*win_rd, wl.slots, wl.len);
    check_attention_row(st, tok, keys, cr, logit_sum2, logit_count);
  }
  if (!(cr.max_lse_err_norm < 1e-3)) {
    cr.attention_ok = false;
    cr.fail("lse error " + std::to_string(cr.max_lse_err_norm) + " x max(1,|lse|) exceeds 1e-3");
  }
  if (!(cr.max_maxlogit_err_norm < 1e-3)) {
    cr.attention_ok = false;
    cr.fail("max_logits error " + std::to_string(cr.max_maxlogit_err_norm) + " x max(1,|max|) exceeds 1e-3");
  }
  cr.logit_std = logit_count ? std::sqrt(logit_sum2 / double(logit_count)) : 0;
  return cr;
}

// --- report -----------------------------------------------------------------------------------

json report_json(Step &st, const CheckResult &cr, bool ok, bool checked) {
  const Shapes &s = st.s;
  const Model &m = st.m;
  const RunOptions &o = st.o;
  json shapes = {{"T", s.T},           {"batch", s.B},          {"tokens_per_request", s.N},
                 {"heads", s.H},       {"d_qk", m.d_qk},        {"d_v", m.d_v},
                 {"topk", s.K},        {"window", s.W},         {"k_eff", st.K_eff},
                 {"context", s.ctx_max}, {"contexts", s.ctx},  {"block_size", s.bs},
                 {"layout", m.layout_name}, {"window_layout", s.W ? m.window_layout_name : ""},
                 {"arrangement", m.window_is_main ? o.arrangement : "default"},
                 {"main_source", m.window_is_main ? "window" : "top-k"},
                 {"fp8_flavor", o.fp8_flavor}, {"indexer_heads", s.Hi},
                 {"indexer_dim", s.Di}, {"attn_sink", m.sink}, {"cache_pages", st.pages + 1}};
  return {{"ok", ok},
          {"backend", st.backend},
          {"device", st.h.device()},
          {"device_name", std::string(st.dev.name)},
          {"model", m.name},
          {"phase", o.phase},
          {"time_ms", st.attn_ms},
          {"plan_ms", st.plan_ms},
          {"step_ms", st.step_ms},
          {"repeats", o.repeats},
          {"flops", st.flops},
          {"tflops", st.tflops},
          {"max_rel_err", cr.max_rel_err},
          {"max_lse_err", cr.max_lse_err},
          {"max_lse_err_normalized", cr.max_lse_err_norm},
          {"max_logits_err_normalized", cr.max_maxlogit_err_norm},
          {"indexer_err", cr.indexer_err},
          {"checked", checked},
          {"checked_tokens", cr.tokens},
          {"checks",
           {{"attention", cr.attention_ok}, {"indexer_logits", cr.indexer_ok}, {"topk", cr.topk_ok},
            {"indices_to_slots", cr.slots_ok}, {"window_indices", cr.window_ok}}},
          {"logit_std", cr.logit_std},
          {"tolerances", {{"out_rel", 1e-2}, {"lse", "1e-3*max(1,|lse|)"}, {"indexer", "1e-3 of the row scale"}}},
          {"stages_ms", st.stages},
          {"seed", o.seed},
          {"shapes", shapes},
          {"failures", cr.failures}};
}

void print_report(Step &st, const CheckResult &cr, bool ok, bool checked) {
  const Shapes &s = st.s;
  const Model &m = st.m;
  const RunOptions &o = st.o;
  const json &stages = st.stages;
  std::printf("spmla run: DeepSeek-%s %s on %s (device %d: %s)\n", m.title,
              o.phase.c_str(), st.backend.c_str(), st.h.device(), st.dev.name);
  const std::string win = s.W && m.window_layout != m.layout
                              ? std::string(" + ") + m.window_layout_name + " window" +
                                    (m.window_is_main ? " (main source)" : "")
                              : std::string();
  const std::string arr = m.window_is_main ? ", " + o.arrangement : std::string();
  std::printf("  shapes     T %lld (%d request%s x %d), H %d, D_qk %d, D_v %d, K %d%s, context %d, block %d,\n"
              "             %s cache%s (%s%s)%s, indexer %dx%d\n",
              (long long)s.T, s.B, s.B == 1 ? "" : "s", s.N, s.H, m.d_qk, m.d_v, s.K,
              s.W ? (" + window " + std::to_string(s.W)).c_str() : "", s.ctx_max, s.bs, m.layout_name,
              win.c_str(), o.fp8_flavor.c_str(), arr.c_str(), m.sink ? ", attention sink" : "", s.Hi, s.Di);
  std::printf("  attention  %.3f ms (median of %d; plan %.3f ms), %.3f TFLOP/s\n", st.attn_ms, o.repeats, st.plan_ms,
              st.tflops);
  std::printf("  step       %.1f ms (store %.1f, inputs %.1f, indexer %.1f, top-k %.1f, attention %.1f); check %.1f ms\n",
              st.step_ms, stages.value("store", 0.0), stages.value("inputs", 0.0),
              stages.value("indexer_logits", 0.0), stages.value("topk", 0.0), stages.value("sparse_attention", 0.0),
              stages.value("check", 0.0));
  if (checked) {
    std::printf("  check      %d tokens vs fp64: max_rel_err %.3g (tol 1e-2), lse err %.3g (tol 1e-3*max(1,|lse|)),\n"
                "             max_logits err %.3g, indexer err %.3g (tol 1e-3), top-k %s, slots %s%s; logit std %.2f\n",
                cr.tokens, cr.max_rel_err, cr.max_lse_err_norm, cr.max_maxlogit_err_norm, cr.indexer_err,
                cr.topk_ok ? "ok" : "WRONG", cr.slots_ok ? "ok" : "WRONG",
                s.W ? (cr.window_ok ? ", window ok" : ", window WRONG") : "", cr.logit_std);
    for (const std::string &f : cr.failures) std::printf("  FAIL       %s\n", f.c_str());
    std::printf("%s\n", ok ? "PASS" : "FAIL");
  } else {
    std::printf("  check      skipped (--check-tokens 0)\nPASS (unchecked)\n");
  }
}

}  // namespace

int cmd_run(const RunOptions &o) {
  Stopwatch step_clock;
  Progress progress("spmla run", o.verbose);
  const Model &m = o.model == "v41" ? kV41 : o.model == "v4" ? kV4 : kV32;
  // The shapes are checked before the handle is made: a bad size is reported as such, whatever the backend.
  Step st(o, m, make_shapes(o, m), progress);
  SPMLA_CHECK(spmla_device_get_info(st.backend.c_str(), st.h.device(), &st.dev));
  progress(std::string("model ") + m.name + ", " + o.phase + ", backend " + st.backend + " (" + st.dev.name + ")");
  check_sizes(st);

  st.stage_clock = Stopwatch();
  build_caches(st);
  store_caches(st);
  make_inputs(st);
  run_indexer(st);
  run_topk_and_slots(st);
  run_attention(st);
  st.step_ms = step_clock.ms();

  const CheckResult cr = check_step(st);
  st.stage_done("check");
  progress.finish();
  const bool checked = cr.tokens > 0;
  const bool ok = cr.attention_ok && cr.indexer_ok && cr.topk_ok && cr.slots_ok && cr.window_ok;
  if (o.json)
    std::cout << report_json(st, cr, ok, checked).dump(2) << std::endl;
  else
    print_report(st, cr, ok, checked);
  return ok ? 0 : 1;
}

}  // namespace spmla_cli
