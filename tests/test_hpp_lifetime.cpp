// test_hpp_lifetime.cpp — lifetimes of the C++ wrapper (include/spmla.hpp).
//
// Every object made through a spmla::Handle (DeviceBuffer, Workspace, Event, Plan) may outlive
// the Handle: it shares ownership of the C handle, which is destroyed after the last of them.
// Under the asan preset these cases are what catches a free through a destroyed handle
// (heap-use-after-free) and, through LeakSanitizer, a C handle that is never destroyed.
// A moved-from object that is used throws spmla::Error (SPMLA_STATUS_INVALID_ARGUMENT) whose
// message names the call and says "moved-from"; it never reaches the C library with NULL.
//
// Test names start with "hpp" so that the ASan step of scripts/test-all selects them.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "spmla.hpp"

namespace {

static_assert(!std::is_copy_constructible<spmla::Handle>::value, "Handle stays move-only");
static_assert(std::is_nothrow_move_constructible<spmla::Handle>::value, "Handle moves");
static_assert(std::is_nothrow_move_constructible<spmla::DeviceBuffer>::value, "DeviceBuffer moves");
static_assert(std::is_nothrow_move_constructible<spmla::Workspace>::value, "Workspace moves");
static_assert(std::is_nothrow_move_constructible<spmla::Event>::value, "Event moves");
static_assert(std::is_nothrow_move_constructible<spmla::Plan>::value, "Plan moves");

uint16_t bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// `f` throws spmla::Error with INVALID_ARGUMENT, naming `fn` and saying "moved-from".
void require_moved_from_error(const std::function<void()> &f, const std::string &fn) {
  INFO("call: " << fn);
  bool threw = false;
  try {
    f();
  } catch (const spmla::Error &e) {
    threw = true;
    CHECK(e.status() == SPMLA_STATUS_INVALID_ARGUMENT);
    CHECK(e.message().find(fn) != std::string::npos);
    CHECK(e.message().find("moved-from") != std::string::npos);
    CHECK(std::string(e.what()).rfind("SPMLA_STATUS_INVALID_ARGUMENT", 0) == 0);
  } catch (const std::exception &e) {
    threw = true;
    FAIL("threw " << e.what() << " instead of spmla::Error");
  }
  CHECK(threw);
}

// One query token, two heads of D 512 over a bf16 cache whose slot 5 holds `row`; lengths 1, so
// the output of each head is exactly that row.
struct OneKeyAttention {
  enum { D = 512, BS = 2, PAGES = 3 };
  std::vector<uint16_t> cache_mem = std::vector<uint16_t>(PAGES * BS * D, 0);
  std::vector<uint16_t> row = std::vector<uint16_t>(D), q = std::vector<uint16_t>(2 * D);
  std::vector<uint16_t> out = std::vector<uint16_t>(2 * 512, 0);
  float lse[2] = {0, 0};
  int32_t idx[3] = {5, -1, 2}, len1[1] = {1}, store_slot[1] = {5};
  spmla_kv_cache_t cache = SPMLA_KV_CACHE_INIT;
  spmla_tensor_t t_q, t_idx, t_out, t_lse, t_len, t_row, t_slot;
  spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
  spmla_kv_cache_store_args_t st = SPMLA_KV_CACHE_STORE_ARGS_INIT;

  OneKeyAttention() {
    for (int i = 0; i < D; ++i) row[i] = bf16(static_cast<float>((i * 7) % 13) - 6.0f);
    for (int i = 0; i < 2 * D; ++i) q[i] = bf16(static_cast<float>((i * 3) % 5) * 0.125f - 0.25f);
    cache = spmla::kv_cache(cache_mem.data(), SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, D, PAGES, BS);
    t_q = spmla::tensor(q.data(), SPMLA_DTYPE_BF16, {1, 2, D});
    t_idx = spmla::tensor(idx, {1, 3});
    t_out = spmla::tensor(out.data(), SPMLA_DTYPE_BF16, {1, 2, 512});
    t_lse = spmla::tensor(lse, {1, 2});
    t_len = spmla::tensor(len1, {1});
    t_row = spmla::tensor(row.data(), SPMLA_DTYPE_BF16, {1, D});
    t_slot = spmla::tensor(store_slot, {1});
    a.q = &t_q;
    a.kv = &cache;
    a.indices = &t_idx;
    a.lengths = &t_len;
    a.out = &t_out;
    a.lse = &t_lse;
    a.scale = 0.05f;
    st.kv = &t_row;
    st.slot_mapping = &t_slot;
    st.cache = &cache;
  }
  bool out_is_row() const {
    return std::memcmp(out.data(), row.data(), 2 * 512) == 0 &&
           std::memcmp(out.data() + 512, row.data(), 2 * 512) == 0;
  }
};

}  // namespace

TEST_CASE("hpp: a DeviceBuffer outlives its Handle", "[hpp]") {
  spmla::DeviceBuffer buf;
  {
    spmla::Handle h("cpu");
    buf = h.alloc(64);
  }  // the Handle is gone; the C handle stays alive for the buffer
  REQUIRE(buf.data() != nullptr);
  REQUIRE(buf.size() == 64);
  const char msg[16] = "outlives handle";
  char got[16] = {0};
  buf.copy_from_host(msg, 16, 8);
  buf.copy_to_host(got, 16, 8);
  CHECK(std::memcmp(msg, got, 16) == 0);
  // Moved into a new owner after the handle died, then freed there.
  spmla::DeviceBuffer moved(std::move(buf));
  CHECK(moved.size() == 64);
  moved = spmla::DeviceBuffer();  // frees through the (still alive) C handle
  CHECK(moved.data() == nullptr);
}

TEST_CASE("hpp: a Workspace outlives its Handle and still grows", "[hpp]") {
  spmla::Workspace ws = [] {
    spmla::Handle h("cpu");
    spmla::Workspace w = h.workspace();
    w.reserve(256);
    return w;
  }();
  CHECK(ws.size() >= 256);
  CHECK(ws.handle() != nullptr);
  ws.reserve(1 << 16);  // frees the old buffer and allocates a new one through the C handle
  CHECK(ws.size() >= size_t(1) << 16);
  CHECK(ws.data() != nullptr);
}

TEST_CASE("hpp: Events outlive their Handle", "[hpp]") {
  std::vector<spmla::Event> ev;
  {
    spmla::Handle h("cpu");
    ev.push_back(h.event());
    ev.push_back(h.event());
  }
  ev[0].record();
  ev[1].record();
  CHECK(ev[0].elapsed_ms(ev[1]) >= 0.0f);
  ev.clear();  // destroys both events through the C handle, which goes with the last one
}

TEST_CASE("hpp: a Plan outlives its Handle and still runs", "[hpp]") {
  OneKeyAttention t;
  std::vector<spmla::Plan> plans;
  {
    spmla::Handle h("cpu");
    h.kv_cache_store(t.st);
    plans.emplace_back(h, t.a);
  }
  plans[0].run(t.a);
  CHECK(t.out_is_row());
  std::fill(t.out.begin(), t.out.end(), uint16_t(0));
  plans[0].replan(t.a);  // may grow its workspace through the C handle
  plans[0].run(t.a);
  CHECK(t.out_is_row());
  plans.clear();
}

TEST_CASE("hpp: assigning over a Handle keeps the old C handle alive for its objects", "[hpp]") {
  spmla::Handle h("cpu");
  spmla::DeviceBuffer buf = h.alloc(32);
  spmla::Event e = h.event();
  h = spmla::Handle("cpu");  // the first C handle must outlive buf and e
  const char msg[8] = "reuse!!";
  char got[8] = {0};
  buf.copy_from_host(msg, 8);
  buf.copy_to_host(got, 8);
  CHECK(std::memcmp(msg, got, 8) == 0);
  e.record();
  CHECK(h.backend_name() == "cpu");
  spmla::DeviceBuffer other = h.alloc(16);
  CHECK(other.size() == 16);
}

TEST_CASE("hpp: objects of every kind outlive a Handle in any order", "[hpp]") {
  OneKeyAttention t;
  auto h = std::make_unique<spmla::Handle>("cpu");
  spmla::DeviceBuffer buf = h->alloc(128);
  spmla::Workspace ws = h->workspace();
  ws.reserve(64);
  spmla::Event e0 = h->event(), e1 = h->event();
  h->kv_cache_store(t.st);
  spmla::Plan plan(*h, t.a);
  h.reset();
  e0.record();
  plan.run(t.a);
  e1.record();
  CHECK(e0.elapsed_ms(e1) >= 0.0f);
  CHECK(t.out_is_row());
  // Destroyed in a scrambled order: buffer, plan, event, workspace, event.
  buf = spmla::DeviceBuffer();
  { spmla::Plan gone(std::move(plan)); }
  { spmla::Event gone(std::move(e0)); }
  { spmla::Workspace gone(std::move(ws)); }
}

TEST_CASE("hpp: a moved-from Handle throws spmla::Error", "[hpp]") {
  spmla::Handle h0("cpu");
  spmla::Handle h(std::move(h0));
  CHECK(h0.get() == nullptr);  // NOLINT(bugprone-use-after-move): what this test is about
  CHECK(h.get() != nullptr);
  CHECK(h.backend_name() == "cpu");
  OneKeyAttention t;
  spmla::Workspace ws = h.workspace();
  spmla_topk_per_row_args_t tk = SPMLA_TOPK_PER_ROW_ARGS_INIT;
  spmla_indices_to_slots_args_t is = SPMLA_INDICES_TO_SLOTS_ARGS_INIT;
  spmla_window_indices_args_t wi = SPMLA_WINDOW_INDICES_ARGS_INIT;
  spmla_indexer_logits_args_t il = SPMLA_INDEXER_LOGITS_ARGS_INIT;
  spmla_indexer_logits_paged_args_t ilp = SPMLA_INDEXER_LOGITS_PAGED_ARGS_INIT;
  spmla_kv_cache_gather_args_t ga = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
  require_moved_from_error([&] { (void)h0.backend_name(); }, "spmla::Handle::backend_name");
  require_moved_from_error([&] { (void)h0.device(); }, "spmla::Handle::device");
  require_moved_from_error([&] { (void)h0.alloc(16); }, "spmla::Handle::alloc");
  require_moved_from_error([&] { (void)h0.workspace(); }, "spmla::Handle::workspace");
  require_moved_from_error([&] { (void)h0.event(); }, "spmla::Handle::event");
  require_moved_from_error([&] { h0.synchronize(); }, "spmla::Handle::synchronize");
  require_moved_from_error([&] { (void)h0.sparse_attention_workspace_size(t.a); },
                           "spmla::Handle::sparse_attention_workspace_size");
  require_moved_from_error([&] { h0.indices_to_slots(is); }, "spmla::Handle::indices_to_slots");
  require_moved_from_error([&] { h0.window_indices(wi); }, "spmla::Handle::window_indices");
  require_moved_from_error([&] { h0.indexer_logits(il, ws); }, "spmla::Handle::indexer_logits");
  require_moved_from_error([&] { h0.indexer_logits_paged(ilp, ws); }, "spmla::Handle::indexer_logits_paged");
  require_moved_from_error([&] { h0.topk_per_row(tk, ws); }, "spmla::Handle::topk_per_row");
  require_moved_from_error([&] { h0.kv_cache_store(t.st); }, "spmla::Handle::kv_cache_store");
  require_moved_from_error([&] { h0.kv_cache_gather(ga); }, "spmla::Handle::kv_cache_gather");
  require_moved_from_error([&] { spmla::Plan p(h0, t.a); }, "spmla::Plan");
  require_moved_from_error([&] { h0.set_batch_invariant(true); }, "spmla::Handle::set_option");
  require_moved_from_error([&] { (void)h0.batch_invariant(); }, "spmla::Handle::option");
  // Assigning a live handle to the moved-from one makes it usable again.
  h0 = spmla::Handle("cpu");
  CHECK(h0.backend_name() == "cpu");
  CHECK(h0.device() == 0);
}

TEST_CASE("hpp: handle options (ABI 1.3)", "[hpp][options]") {
  spmla::Handle h("cpu");
  CHECK_FALSE(h.batch_invariant());
  h.set_batch_invariant(true);
  CHECK(h.batch_invariant());
  CHECK(h.option(SPMLA_OPTION_BATCH_INVARIANT) == 1);
  try {
    h.set_option(SPMLA_OPTION_BATCH_INVARIANT, 7);
    FAIL("7 is outside 0 .. 1");
  } catch (const spmla::Error &e) {
    CHECK(e.status() == SPMLA_STATUS_INVALID_ARGUMENT);
    CHECK(e.message().find("expected 0 .. 1 for SPMLA_OPTION_BATCH_INVARIANT, got 7") != std::string::npos);
  }
  CHECK(h.batch_invariant());
  h.set_batch_invariant(false);
  CHECK_FALSE(h.batch_invariant());
}

TEST_CASE("hpp: moved-from buffers workspaces events and plans throw spmla::Error", "[hpp]") {
  spmla::Handle h("cpu");
  OneKeyAttention t;
  h.kv_cache_store(t.st);
  char bytes[8] = {0};

  spmla::DeviceBuffer b0 = h.alloc(8);
  spmla::DeviceBuffer b1(std::move(b0));
  CHECK(b0.data() == nullptr);  // NOLINT(bugprone-use-after-move)
  CHECK(b0.size() == 0);
  require_moved_from_error([&] { b0.copy_from_host(bytes, 8); }, "spmla::DeviceBuffer::copy_from_host");
  require_moved_from_error([&] { b0.copy_to_host(bytes, 8); }, "spmla::DeviceBuffer::copy_to_host");
  require_moved_from_error([&] { b0.copy_to_host(bytes, 0); }, "spmla::DeviceBuffer::copy_to_host");
  b1.copy_from_host(bytes, 8);  // the new owner works

  spmla::Workspace w0 = h.workspace();
  spmla::Workspace w1(std::move(w0));
  CHECK(w0.handle() == nullptr);  // NOLINT(bugprone-use-after-move)
  require_moved_from_error([&] { w0.reserve(64); }, "spmla::Workspace::reserve");
  spmla_topk_per_row_args_t tk = SPMLA_TOPK_PER_ROW_ARGS_INIT;
  require_moved_from_error([&] { h.topk_per_row(tk, w0); }, "spmla::Handle::topk_per_row");
  w1.reserve(64);
  CHECK(w1.size() >= 64);

  spmla::Event e0 = h.event(), end = h.event();
  spmla::Event e1(std::move(e0));
  CHECK(e0.get() == nullptr);  // NOLINT(bugprone-use-after-move)
  require_moved_from_error([&] { e0.record(); }, "spmla::Event::record");
  e1.record();
  end.record();
  require_moved_from_error([&] { (void)e0.elapsed_ms(end); }, "spmla::Event::elapsed_ms");
  require_moved_from_error([&] { (void)end.elapsed_ms(e0); }, "spmla::Event::elapsed_ms");
  CHECK(e1.elapsed_ms(end) >= 0.0f);

  spmla::Plan p0(h, t.a);
  spmla::Plan p1(std::move(p0));
  CHECK(p0.workspace_bytes() == 0);  // NOLINT(bugprone-use-after-move)
  require_moved_from_error([&] { p0.run(t.a); }, "spmla::Plan::run");
  require_moved_from_error([&] { p0.replan(t.a); }, "spmla::Plan::replan");
  p1.run(t.a);
  CHECK(t.out_is_row());
}

TEST_CASE("hpp: objects of different handles are not mixed", "[hpp]") {
  spmla::Handle a("cpu"), b("cpu");
  spmla::Workspace wb = b.workspace();
  spmla_topk_per_row_args_t tk = SPMLA_TOPK_PER_ROW_ARGS_INIT;
  try {
    a.topk_per_row(tk, wb);
    FAIL("a workspace of another handle must be refused");
  } catch (const spmla::Error &e) {
    CHECK(e.status() == SPMLA_STATUS_INVALID_ARGUMENT);
    CHECK(e.message().find("another handle") != std::string::npos);
  }
  spmla::Event ea = a.event(), eb = b.event();
  ea.record();
  eb.record();
  try {
    (void)ea.elapsed_ms(eb);
    FAIL("events of two handles must be refused");
  } catch (const spmla::Error &e) {
    CHECK(e.status() == SPMLA_STATUS_INVALID_ARGUMENT);
    CHECK(e.message().find("another handle") != std::string::npos);
  }
}
