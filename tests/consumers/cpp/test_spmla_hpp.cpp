// Test of include/spmla.hpp (the header-only C++17 wrapper), built against an installed
// spmla by tests/consumers/cmake. Runs ops through the RAII types on the CPU backend and
// checks values and the exception path.
#include <spmla.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>

static int failures = 0;
#define EXPECT(cond)                                                   \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                      \
    }                                                                  \
  } while (0)

static uint16_t bf16(float f) {  // round to nearest even (inputs here are exact anyway)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
static float f32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

static_assert(std::is_base_of<std::runtime_error, spmla::Error>::value, "Error is a runtime_error");
static_assert(!std::is_copy_constructible<spmla::Handle>::value, "Handle is move-only");
static_assert(std::is_nothrow_move_constructible<spmla::Handle>::value, "Handle moves");
static_assert(!std::is_copy_constructible<spmla::Plan>::value, "Plan is move-only");

int main() {
  EXPECT(spmla::abi_major() == SPMLA_ABI_VERSION_MAJOR);
  EXPECT(spmla::version_string() == SPMLA_VERSION_STRING);

  // Exceptions carry the status and the C message.
  try {
    spmla::Handle bad("no-such-backend", 0);
    EXPECT(false && "handle creation on an unknown backend must throw");
  } catch (const spmla::Error &e) {
    EXPECT(e.status() != SPMLA_STATUS_SUCCESS);
    EXPECT(!e.message().empty());
    EXPECT(std::string(e.what()).rfind(spmla_status_string(e.status()), 0) == 0);
  }

  spmla::Handle h0("cpu");
  spmla::Handle h(std::move(h0));  // moved-from handle owns nothing
  EXPECT(h0.get() == nullptr);
  EXPECT(h.backend_name() == "cpu");
  EXPECT(h.device() == 0);

  // --- store + gather on a bf16 cache: exact round trip ---------------------------------
  enum { D = 512, BS = 2, PAGES = 3 };
  alignas(64) static uint16_t cache_mem[PAGES * BS * D];
  alignas(64) static uint16_t rows[2 * D];
  alignas(64) static uint16_t back[3 * D];
  for (int i = 0; i < 2 * D; ++i) rows[i] = bf16(static_cast<float>((i * 7) % 13) - 6.0f);
  spmla_kv_cache_t cache = spmla::kv_cache(cache_mem, SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, D,
                                           PAGES, BS);
  EXPECT(spmla::kv_cache_size_bytes(cache) == sizeof(cache_mem));
  EXPECT(spmla::kv_cache_page_bytes(cache) == 2u * D * BS);
  int32_t store_slots[2] = {5, 2};
  spmla_tensor_t t_rows = spmla::tensor(rows, SPMLA_DTYPE_BF16, {2, D});
  spmla_tensor_t t_sm = spmla::tensor(store_slots, {2});
  spmla_kv_cache_store_args_t st = SPMLA_KV_CACHE_STORE_ARGS_INIT;
  st.kv = &t_rows;
  st.slot_mapping = &t_sm;
  st.cache = &cache;
  h.kv_cache_store(st);
  int32_t gather_slots[3] = {2, 5, -1};
  spmla_tensor_t t_gs = spmla::tensor(gather_slots, {3});
  spmla_tensor_t t_back = spmla::tensor(back, SPMLA_DTYPE_BF16, {3, D});
  spmla_kv_cache_gather_args_t ga = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
  ga.cache = &cache;
  ga.slots = &t_gs;
  ga.out = &t_back;
  h.kv_cache_gather(ga);
  EXPECT(std::memcmp(back, rows + D, 2 * D) == 0);  // slot 2 <- row 1
  EXPECT(std::memcmp(back + D, rows, 2 * D) == 0);  // slot 5 <- row 0
  bool zero = true;
  for (int i = 0; i < D; ++i) zero = zero && back[2 * D + i] == 0;
  EXPECT(zero);

  // --- sparse attention through a Plan: one token, two heads, keys in slots 5 and 2 -----
  alignas(64) static uint16_t q[2 * D];
  alignas(64) static uint16_t out[2 * 512];
  float lse[2], maxl[2];
  for (int i = 0; i < 2 * D; ++i) q[i] = bf16(static_cast<float>((i * 3) % 5) * 0.125f - 0.25f);
  int32_t idx[3] = {5, -1, 2};
  spmla_tensor_t t_q = spmla::tensor(q, SPMLA_DTYPE_BF16, {1, 2, D});
  spmla_tensor_t t_idx = spmla::tensor(idx, {1, 3});
  spmla_tensor_t t_out = spmla::tensor(out, SPMLA_DTYPE_BF16, {1, 2, 512});
  spmla_tensor_t t_lse = spmla::tensor(lse, {1, 2});
  spmla_tensor_t t_max = spmla::tensor(maxl, {1, 2});
  spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
  a.q = &t_q;
  a.kv = &cache;
  a.indices = &t_idx;
  a.out = &t_out;
  a.lse = &t_lse;
  a.max_logits = &t_max;
  a.scale = 0.05f;
  spmla::Plan plan(h, a);
  plan.run(a);
  for (int hh = 0; hh < 2; ++hh) {
    double l[2];
    const uint16_t *key[2] = {rows, rows + D};  // slot 5 = row 0, slot 2 = row 1
    for (int j = 0; j < 2; ++j) {
      double dot = 0;
      for (int i = 0; i < D; ++i) dot += double(f32(q[hh * D + i])) * f32(key[j][i]);
      l[j] = 0.05 * dot;
    }
    double m = std::fmax(l[0], l[1]);
    double ref_lse = m + std::log(std::exp(l[0] - m) + std::exp(l[1] - m));
    EXPECT(std::fabs(lse[hh] - ref_lse) < 1e-3 * std::fmax(1.0, std::fabs(ref_lse)));
    EXPECT(std::fabs(maxl[hh] - m) < 1e-3 * std::fmax(1.0, std::fabs(m)));
    double num = 0, den = 0;
    for (int i = 0; i < 512; ++i) {
      double r = std::exp(l[0] - ref_lse) * f32(key[0][i]) + std::exp(l[1] - ref_lse) * f32(key[1][i]);
      double o = f32(out[hh * 512 + i]);
      num += (o - r) * (o - r);
      den += r * r;
    }
    EXPECT(std::sqrt(num / den) < 1e-2);
  }
  // One key only (after replan with lengths = 1): softmax of one logit is 1, out = V exactly.
  int32_t len1[1] = {1};
  spmla_tensor_t t_len = spmla::tensor(len1, {1});
  a.lengths = &t_len;
  plan.replan(a);
  plan.run(a);
  EXPECT(std::memcmp(out, rows, 2 * 512) == 0);
  EXPECT(std::memcmp(out + 512, rows, 2 * 512) == 0);

  // A failing call throws, names the argument, and writes nothing.
  std::memset(out, 0x5A, sizeof(out));
  spmla_tensor_t t_q_bad = spmla::tensor(q, SPMLA_DTYPE_FP32, {1, 2, D / 2});
  a.q = &t_q_bad;
  try {
    plan.run(a);
    EXPECT(false && "fp32 q must be rejected");
  } catch (const spmla::Error &e) {
    EXPECT(e.status() == SPMLA_STATUS_INVALID_ARGUMENT);
    EXPECT(e.message().find("q") != std::string::npos);
  }
  bool untouched = true;
  for (uint16_t v : out) untouched = untouched && v == 0x5A5A;
  EXPECT(untouched);

  // --- top-k with a reusable workspace ------------------------------------------------
  spmla::Workspace ws = h.workspace();
  float logits[2 * 5] = {1, 9, 3, 9, 0, /**/ 4, 4, 4, 8, 4};
  int32_t top[2 * 2];
  spmla_tensor_t t_l = spmla::tensor(logits, {2, 5});
  spmla_tensor_t t_top = spmla::tensor(top, {2, 2});
  spmla_topk_per_row_args_t tk = SPMLA_TOPK_PER_ROW_ARGS_INIT;
  tk.logits = &t_l;
  tk.indices = &t_top;
  h.topk_per_row(tk, ws);
  EXPECT(top[0] == 1 && top[1] == 3);  // the two 9s
  EXPECT(top[2] == 0 && top[3] == 3);  // 8, then the first 4

  // --- indices_to_slots ------------------------------------------------------------------
  int32_t pos[4] = {0, 3, 6, -1}, t2r[1] = {0}, table[3] = {4, 1, -1}, slots[4], lens[1];
  spmla_tensor_t t_pos = spmla::tensor(pos, {1, 4}), t_t2r = spmla::tensor(t2r, {1}),
                 t_tab = spmla::tensor(table, {1, 3}), t_sl = spmla::tensor(slots, {1, 4}),
                 t_ln = spmla::tensor(lens, {1});
  spmla_indices_to_slots_args_t is = SPMLA_INDICES_TO_SLOTS_ARGS_INIT;
  is.positions = &t_pos;
  is.token_to_req = &t_t2r;
  is.block_table = &t_tab;
  is.block_size = 3;
  is.slots = &t_sl;
  is.lengths = &t_ln;
  h.indices_to_slots(is);
  // 0 -> 4*3+0; 3 -> page 1: 1*3+0; 6 -> table entry -1; -1 stays.
  EXPECT(slots[0] == 12 && slots[1] == 3 && slots[2] == -1 && slots[3] == -1 && lens[0] == 2);

  // --- device buffers and events ------------------------------------------------------------
  spmla::DeviceBuffer buf = h.alloc(64);
  const char msg[16] = "hello, spmla!!!";
  char got[16] = {0};
  buf.copy_from_host(msg, 16, 8);
  buf.copy_to_host(got, 16, 8);
  EXPECT(std::memcmp(msg, got, 16) == 0);
  try {
    buf.copy_to_host(got, 16, 60);
    EXPECT(false && "out-of-range copy must throw");
  } catch (const spmla::Error &e) {
    EXPECT(e.status() == SPMLA_STATUS_INVALID_ARGUMENT);
  }
  spmla::DeviceBuffer moved = std::move(buf);
  EXPECT(buf.data() == nullptr && moved.size() == 64);
  spmla::Event e0 = h.event(), e1 = h.event();
  e0.record();
  e1.record();
  EXPECT(e0.elapsed_ms(e1) >= 0.0f);

  if (failures) {
    std::fprintf(stderr, "test_spmla_hpp: %d failure(s)\n", failures);
    return 1;
  }
  std::printf("test_spmla_hpp: OK\n");
  return 0;
}
