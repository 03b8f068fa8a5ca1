// test_fuzz.cpp — seeded randomized malformed descriptors for every entry point. Each call
// must not crash; a failed call must leave its (poisoned) outputs untouched and set a message
// that starts with the function name. Calls that happen to be valid run on the CPU backend, on
// the fixtures' small buffers: a mutated descriptor whose extent would leave its buffer is made
// invalid by construction (data = NULL) before a run call.
//
// SPMLA_FUZZ_SEED and SPMLA_FUZZ_ITERS override the seed and the iteration count.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <string>

#include "fixture_support.h"
#include "spmla.h"

using namespace fixtures;

namespace {

uint64_t env_u64(const char *name, uint64_t dflt) {
  const char *v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 0) : dflt;
}

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  uint64_t u(uint64_t n) { return n ? g() % n : 0; }
  bool coin(int percent) { return u(100) < static_cast<uint64_t>(percent); }
  template <class T>
  T pick(std::initializer_list<T> l) {
    return *(l.begin() + u(l.size()));
  }
};

constexpr int64_t I64MAX = std::numeric_limits<int64_t>::max();

int64_t wild_size(Rng &r, int64_t orig) {
  return r.pick<int64_t>({-1, 0, 1, 2, 3, orig, orig, orig + 1, orig - 1, int64_t(1) << 31,
                          (int64_t(1) << 31) - 1, int64_t(1) << 40, I64MAX,
                          std::numeric_limits<int64_t>::min(), static_cast<int64_t>(r.u(600))});
}
int64_t wild_stride(Rng &r, int64_t orig) {
  return r.pick<int64_t>({-1, 0, 1, 2, orig, orig, orig * 2, orig + 1, orig + 8, I64MAX / 2,
                          I64MAX, int64_t(1) << 33, static_cast<int64_t>(r.u(2000))});
}

// Element size of a possibly garbage dtype field (read as an integer: no enum load).
size_t esize(const spmla_tensor_t &t) {
  int32_t v;
  std::memcpy(&v, &t.dtype, sizeof v);
  const size_t es = v >= 1 && v <= 9 ? spmla_dtype_size(static_cast<spmla_dtype_t>(v)) : 0;
  return es ? es : 1;
}

void null_member(Fixture &fx, const void *ptr) {
  auto *bytes = reinterpret_cast<unsigned char *>(fx.struct_size());
  const size_t n = fx.args_size();
  for (size_t off = sizeof(size_t); off + sizeof(void *) <= n && off < 256; off += sizeof(void *)) {
    const void *p;
    std::memcpy(&p, bytes + off, sizeof p);
    if (p == ptr) {
      const void *z = nullptr;
      std::memcpy(bytes + off, &z, sizeof z);
    }
  }
}

void mutate_tensor(Rng &r, Fixture &fx, TensorArg &ta) {
  spmla_tensor_t *t = ta.t;
  switch (r.u(9)) {
    case 0: null_member(fx, t); break;
    // Larger than the struct: only sizes the library must refuse without reading the tail (the
    // fixture's descriptor has no tail to read; tails are tested in test_struct_size.cpp).
    case 1: t->struct_size = r.pick<size_t>({0, 8, sizeof(spmla_tensor_t) - 1, SIZE_MAX, size_t(1) << 20}); break;
    case 2: t->dtype = static_cast<spmla_dtype_t>(r.u(12)); break;
    case 3: t->ndim = static_cast<int32_t>(r.u(12)) - 1; break;
    case 4: {
      const int d = static_cast<int>(r.u(SPMLA_MAX_DIMS));
      t->shape[d] = wild_size(r, t->shape[d]);
      break;
    }
    case 5: {
      const int d = static_cast<int>(r.u(SPMLA_MAX_DIMS));
      t->strides[d] = wild_stride(r, t->strides[d]);
      break;
    }
    case 6: {
      const uintptr_t p = reinterpret_cast<uintptr_t>(t->data);  // integer math: may wrap
      t->data = reinterpret_cast<void *>(r.pick<uintptr_t>(
          {0, p + 1, p + 2, p + 4, p + 8, p + 16, ~uintptr_t(15), uintptr_t(16)}));
      break;
    }
    case 7:  // a consistent-looking but different shape (often still valid)
      for (int d = 0; d < t->ndim && d < SPMLA_MAX_DIMS; ++d)
        if (r.coin(50)) t->shape[d] = static_cast<int64_t>(r.u(static_cast<uint64_t>(t->shape[d]) + 2));
      break;
    default:  // transpose-like strides
      if (t->ndim >= 2 && t->ndim <= SPMLA_MAX_DIMS) std::swap(t->strides[0], t->strides[t->ndim - 1]);
      break;
  }
}

void mutate_cache(Rng &r, Fixture &fx, spmla_kv_cache_t *c) {
  switch (r.u(12)) {
    case 0: null_member(fx, c); break;
    // 63 / 64: around the ABI 1.0 size (64 is accepted: an older caller's struct)
    case 1: c->struct_size = r.pick<size_t>({0, 8, 63, 64, sizeof(spmla_kv_cache_t) - 1, SIZE_MAX, size_t(1) << 20}); break;
    case 2: c->layout = static_cast<spmla_kv_layout_t>(r.u(8)); break;
    case 3: c->fp8_flavor = static_cast<spmla_fp8_flavor_t>(r.u(4)); break;
    case 4: c->head_dim = r.pick<int32_t>({0, 64, 128, 512, 576, 100, -1, 1 << 30}); break;
    case 5: c->block_size = r.pick<int32_t>({0, 1, 2, 3, 4, 53, 1 << 20, (1 << 20) + 1, -5}); break;
    case 6: c->num_pages = wild_size(r, c->num_pages); break;
    case 7: c->page_stride_bytes = r.pick<int64_t>({0, 16, 8, 1000, 4096, 4104, I64MAX / 3, -16}); break;
    case 8: c->scale = r.pick<float>({0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN(),
                                      std::numeric_limits<float>::infinity(), 0.5f}); break;
    // ABI 1.2: the arrangement (only 0..2 exist; V41 layouts need 1 or 2) and reserved1 (must be 0)
    case 10: {
      const int32_t a = r.pick<int32_t>({0, 1, 2, 3, -1, 1 << 30});
      std::memcpy(&c->arrangement, &a, sizeof a);
      if (r.coin(50)) c->layout = r.pick<spmla_kv_layout_t>({SPMLA_KV_LAYOUT_V41_FP8, SPMLA_KV_LAYOUT_V41_FP4});
      break;
    }
    case 11: c->reserved1 = r.pick<int32_t>({0, 1, -1}); break;
    default: {
      const uintptr_t p = reinterpret_cast<uintptr_t>(c->data);
      c->data = reinterpret_cast<void *>(r.pick<uintptr_t>({0, p + 8, p + 16, ~uintptr_t(15)}));
      break;
    }
  }
}

void mutate_args(Rng &r, Fixture &fx) {
  switch (r.u(4)) {
    case 0: *fx.struct_size() = r.pick<size_t>({0, 8, *fx.struct_size() - 1, SIZE_MAX, size_t(1) << 20}); break;
    case 1: fx.ws_bytes = r.pick<size_t>({0, 1, 16, 4096}); break;
    case 2: fx.ws_null = true; fx.ws_bytes = r.pick<size_t>({0, 64}); break;
    default: fx.ws_offset = r.pick<size_t>({1, 4, 8, 16}); break;
  }
}

// Scalars of the args structs (block_size, ratio, next_n, scale).
void mutate_scalars(Rng &r, Fixture &fx) {
  const std::string op = fx.op();
  const int32_t iv = r.pick<int32_t>({-1, 0, 1, 2, 3, 4, 128, 1 << 30});
  if (op == "sparse_attention")
    static_cast<SparseAttention &>(fx).a.scale = r.pick<float>(
        {0.0f, -2.0f, 1e30f, std::numeric_limits<float>::quiet_NaN(),
         -std::numeric_limits<float>::infinity()});
  else if (op == "indices_to_slots") static_cast<IndicesToSlots &>(fx).a.block_size = iv;
  else if (op == "window_indices") {
    if (r.coin(50)) static_cast<WindowIndices &>(fx).a.block_size = iv;
    else static_cast<WindowIndices &>(fx).a.ratio = iv;
  } else if (op == "topk_per_row") static_cast<TopkPerRow &>(fx).a.next_n = iv;
  else if (op == "topk_per_row(paged)") static_cast<TopkPaged &>(fx).a.next_n = iv;
}

// Byte capacity of the fixture buffer that `p` points into (0 if none).
size_t room(const Fixture &fx, const void *p) {
  const uintptr_t c = reinterpret_cast<uintptr_t>(p);
  for (const auto &b : fx.bufs) {
    const size_t cap = (b->n + 255) / 256 * 256 + 256;
    const uintptr_t lo = reinterpret_cast<uintptr_t>(b->p);
    if (c >= lo && c < lo + cap) return cap - static_cast<size_t>(c - lo);
  }
  return 0;
}

// Makes any descriptor that would reach past its buffer invalid by construction.
void fence(Fixture &fx) {
  for (auto &ta : fx.tensors) {
    spmla_tensor_t *t = ta.t;
    if (!t->data || t->ndim < 0 || t->ndim > SPMLA_MAX_DIMS) continue;
    const size_t es = esize(*t);
    bool empty = false, overflow = false;
    int64_t extent = 1;
    for (int d = 0; d < t->ndim; ++d) {
      if (t->shape[d] <= 0) empty = true;
      int64_t term;
      if (t->shape[d] > 0 &&
          (__builtin_mul_overflow(t->shape[d] - 1, t->strides[d] < 0 ? 0 : t->strides[d], &term) ||
           __builtin_add_overflow(extent, term, &extent)))
        overflow = true;
    }
    if (empty) continue;
    if (overflow || static_cast<uint64_t>(extent) > room(fx, t->data) / es) t->data = nullptr;
  }
  for (auto &ca : fx.caches) {
    spmla_kv_cache_t *c = ca.c;
    if (!c->data || c->num_pages <= 0) continue;
    // Worst case: any page stride the validator accepts; use the descriptor's own numbers.
    spmla_kv_cache_t probe = *c;
    probe.data = nullptr;
    size_t bytes = 0;
    if (spmla_kv_cache_size_bytes(&probe, &bytes) != SPMLA_STATUS_SUCCESS) continue;  // invalid anyway
    if (bytes > room(fx, c->data)) c->data = nullptr;
  }
}

}  // namespace

TEST_CASE("fuzz: malformed descriptors never crash and never write outputs", "[fuzz]") {
  const uint64_t seed = env_u64("SPMLA_FUZZ_SEED", 0x5eed5eedULL);
  const uint64_t iters = env_u64("SPMLA_FUZZ_ITERS", 4000);
  INFO("seed " << seed << " (set SPMLA_FUZZ_SEED to replay)");
  Rng r(seed);
  auto fixtures_list = all_fixtures();
  std::map<std::string, int> by_status;
  uint64_t calls = 0, failed = 0, succeeded = 0;
  for (uint64_t it = 0; it < iters; ++it) {
    auto &entry = fixtures_list[r.u(fixtures_list.size())];
    auto fx = entry.second();
    // Workspace bytes as the query reports for the valid fixture.
    for (auto &c : fx->calls())
      if (c.query && c.f(cpu_handle()) == SPMLA_STATUS_SUCCESS) fx->ws_bytes = fx->ws_out;
    const int n_mut = 1 + static_cast<int>(r.u(4));
    for (int m = 0; m < n_mut; ++m) {
      const uint64_t kind = r.u(10);
      if (kind < 6 && !fx->tensors.empty())
        mutate_tensor(r, *fx, fx->tensors[r.u(fx->tensors.size())]);
      else if (kind < 8 && !fx->caches.empty())
        mutate_cache(r, *fx, fx->caches[r.u(fx->caches.size())].c);
      else if (kind < 9)
        mutate_scalars(r, *fx);
      else
        mutate_args(r, *fx);
    }
    fence(*fx);
    const bool null_handle = r.coin(2);
    for (auto &c : fx->calls()) {
      fx->poison_outputs();
      spmla_clear_last_error();
      const spmla_status_t st = c.f(null_handle ? nullptr : cpu_handle());
      ++calls;
      ++by_status[spmla_status_string(st)];
      if (st == SPMLA_STATUS_SUCCESS) {
        ++succeeded;
        continue;
      }
      ++failed;
      const std::string msg = spmla_last_error_message();
      if (st == SPMLA_STATUS_UNSUPPORTED) continue;  // valid but not implemented by the backend
      if (!fx->outputs_untouched() || msg.find(c.fn + ": ") != 0) {
        INFO("iteration " << it << " op " << entry.first << " call " << c.fn << ": "
                          << spmla_status_string(st) << ": " << msg);
        CHECK(fx->outputs_untouched());
        CHECK(msg.find(c.fn + ": ") == 0);
      }
    }
  }
  std::string summary;
  for (auto &kv : by_status) summary += kv.first + "=" + std::to_string(kv.second) + " ";
  INFO("calls " << calls << ": " << summary);
  CHECK(calls > iters);
  CHECK(failed > calls / 2);   // mostly malformed
  CHECK(succeeded > 0);        // and some valid ones ran on the CPU backend
  for (const char *s : {"SPMLA_STATUS_INVALID_ARGUMENT", "SPMLA_STATUS_MISALIGNED",
                        "SPMLA_STATUS_SIZE_OVERFLOW"})
    CHECK(by_status[s] > 0);
  WARN("fuzz seed " << seed << ": " << calls << " calls: " << summary);
}

TEST_CASE("fuzz: random bytes as descriptors", "[fuzz]") {
  // Descriptors whose every field is random (pointers into a small arena or wild): exercises
  // the order of checks (no field is read before the ones that make it meaningful).
  Rng r(env_u64("SPMLA_FUZZ_SEED", 0x5eed5eedULL) ^ 0xabcdef);
  Buf arena(1 << 16);
  const uint64_t iters = env_u64("SPMLA_FUZZ_ITERS", 4000);
  for (uint64_t it = 0; it < iters; ++it) {
    // Each descriptor has a 64-byte tail (random or zero) that a struct_size up to sizeof + 64
    // may cover (the struct_size rule reads it; SIZE_MAX must be refused without reading).
    struct TailedTensor {
      spmla_tensor_t t;
      unsigned char tail[64];
    } tts[12];
    spmla_tensor_t *ts[12];
    for (int i = 0; i < 12; ++i) {
      ts[i] = &tts[i].t;
      for (auto &b : tts[i].tail) b = r.coin(70) ? 0 : static_cast<unsigned char>(r.u(256));
    }
    spmla_kv_cache_t cs[2];
    for (spmla_tensor_t *tp : ts) {
      spmla_tensor_t &t = *tp;
      std::memset(&t, 0, sizeof t);
      t.struct_size = r.coin(85) ? sizeof t
                      : r.coin(50) ? r.u(sizeof t + 64 + 1)
                                   : r.pick<size_t>({SIZE_MAX, size_t(1) << 20, size_t(65537)});
      t.dtype = static_cast<spmla_dtype_t>(r.u(11));
      t.ndim = static_cast<int32_t>(r.u(6));
      for (int d = 0; d < SPMLA_MAX_DIMS; ++d) {
        t.shape[d] = r.coin(80) ? static_cast<int64_t>(r.u(5)) : wild_size(r, 4);
        t.strides[d] = r.coin(80) ? static_cast<int64_t>(r.u(9)) : wild_stride(r, 1);
      }
      t.data = r.coin(10) ? nullptr : arena.p + 16 * r.u(64);
    }
    for (auto &c : cs) {
      c = SPMLA_KV_CACHE_INIT;
      c.layout = static_cast<spmla_kv_layout_t>(r.u(9));  // 0 .. 8: V41 (6, 7) and one past
      c.fp8_flavor = static_cast<spmla_fp8_flavor_t>(r.u(3));
      c.arrangement = static_cast<spmla_kv_arrangement_t>(r.u(4));
      c.head_dim = r.pick<int32_t>({0, 64, 128, 512, 576});
      c.block_size = static_cast<int32_t>(r.u(6));
      c.num_pages = r.coin(70) ? static_cast<int64_t>(r.u(3)) : wild_size(r, 2);
      c.data = r.coin(10) ? nullptr : arena.p + 256;
    }
    // Fence exactly like the mutation fuzzer: nothing may reach past the arena.
    auto fits = [&](const spmla_tensor_t &t) {
      if (!t.data || t.ndim < 0 || t.ndim > SPMLA_MAX_DIMS) return true;
      int64_t extent = 1;
      for (int d = 0; d < t.ndim; ++d) {
        if (t.shape[d] <= 0) return true;
        int64_t term;
        if (__builtin_mul_overflow(t.shape[d] - 1, std::max<int64_t>(t.strides[d], 0), &term) ||
            __builtin_add_overflow(extent, term, &extent))
          return false;
      }
      const size_t es = esize(t);
      const size_t off = static_cast<size_t>(static_cast<unsigned char *>(t.data) - arena.p);
      return static_cast<uint64_t>(extent) <= (arena.n - off) / es;
    };
    for (spmla_tensor_t *t : ts)
      if (!fits(*t)) t->data = nullptr;
    for (auto &c : cs) {
      spmla_kv_cache_t p = c;
      size_t bytes = 0;
      if (spmla_kv_cache_size_bytes(&p, &bytes) == SPMLA_STATUS_SUCCESS && bytes > arena.n - 256)
        c.data = nullptr;
    }
    auto T = [&](int i) -> const spmla_tensor_t * { return r.coin(8) ? nullptr : ts[i]; };
    const int op = static_cast<int>(r.u(7));
    spmla_handle_t h = cpu_handle();
    size_t ws = 0;
    switch (op) {
      case 0: {
        spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
        a.q = T(0); a.kv = &cs[0]; a.indices = T(1); a.lengths = r.coin(50) ? T(2) : nullptr;
        if (r.coin(30)) { a.extra_kv = &cs[1]; a.extra_indices = T(3); a.extra_lengths = T(4); }
        a.attn_sink = r.coin(50) ? T(5) : nullptr; a.out = T(6); a.lse = T(7);
        a.max_logits = r.coin(50) ? T(8) : nullptr;
        spmla_sparse_attention_get_workspace_size(h, &a, &ws);
        spmla_sparse_attention_plan(h, &a, nullptr, 0, nullptr);
        spmla_sparse_attention_run(h, &a, nullptr, 0, nullptr);
        break;
      }
      case 1: {
        spmla_indices_to_slots_args_t a = SPMLA_INDICES_TO_SLOTS_ARGS_INIT;
        a.positions = T(0); a.token_to_req = T(1); a.block_table = T(2);
        a.block_size = static_cast<int32_t>(r.u(5)); a.token_valid = r.coin(50) ? T(3) : nullptr;
        a.slots = T(4); a.lengths = T(5);
        if (r.coin(50)) { a.indptr = T(6); a.ragged_slots = T(7); }
        spmla_indices_to_slots_run(h, &a, nullptr);
        break;
      }
      case 2: {
        spmla_window_indices_args_t a = SPMLA_WINDOW_INDICES_ARGS_INIT;
        a.positions = T(0); a.token_to_req = T(1); a.block_table = T(2);
        a.block_size = static_cast<int32_t>(r.u(5)); a.ratio = static_cast<int32_t>(r.u(4));
        a.slots = T(3); a.lengths = T(4);
        spmla_window_indices_run(h, &a, nullptr);
        break;
      }
      case 3: {
        spmla_indexer_logits_args_t a = SPMLA_INDEXER_LOGITS_ARGS_INIT;
        a.q = T(0); a.k = T(1); a.k_scale = T(2); a.weights = T(3); a.k_start = T(4);
        a.k_end = T(5); a.logits = T(6);
        spmla_indexer_logits_get_workspace_size(h, &a, &ws);
        spmla_indexer_logits_run(h, &a, nullptr, 0, nullptr);
        break;
      }
      case 4: {
        spmla_indexer_logits_paged_args_t a = SPMLA_INDEXER_LOGITS_PAGED_ARGS_INIT;
        a.q = T(0); a.cache = &cs[0]; a.block_table = T(1); a.context_lens = T(2);
        a.weights = T(3); a.logits = T(4);
        spmla_indexer_logits_paged_get_workspace_size(h, &a, &ws);
        spmla_indexer_logits_paged_run(h, &a, nullptr, 0, nullptr);
        break;
      }
      case 5: {
        spmla_topk_per_row_args_t a = SPMLA_TOPK_PER_ROW_ARGS_INIT;
        a.logits = T(0); a.row_starts = r.coin(50) ? T(1) : nullptr;
        a.row_ends = r.coin(50) ? T(2) : nullptr; a.context_lens = r.coin(30) ? T(3) : nullptr;
        a.next_n = static_cast<int32_t>(r.u(4)); a.indices = T(4);
        spmla_topk_per_row_get_workspace_size(h, &a, &ws);
        spmla_topk_per_row_run(h, &a, nullptr, 0, nullptr);
        break;
      }
      default: {
        spmla_kv_cache_store_args_t s = SPMLA_KV_CACHE_STORE_ARGS_INIT;
        s.kv = T(0); s.slot_mapping = T(1); s.cache = &cs[0];
        spmla_kv_cache_store_run(h, &s, nullptr);
        spmla_kv_cache_gather_args_t g = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
        g.cache = &cs[1]; g.slots = T(2); g.out = T(3);
        spmla_kv_cache_gather_run(h, &g, nullptr);
        break;
      }
    }
  }
  SUCCEED("no crash");
}
