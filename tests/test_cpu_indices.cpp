// test_cpu_indices.cpp — indices_to_slots and window_indices on the CPU backend (public API).
#include <climits>

#include "test_support.h"

namespace {

struct I2S {
  std::vector<int32_t> pos, req, table, slots, lens, indptr, ragged;
  std::vector<uint8_t> valid;
  int64_t T, K, R, P;
  int32_t bs;
  void run(spmla_handle_t h, bool with_valid, bool with_ragged) {
    slots.assign(size_t(T * K), 999);
    lens.assign(size_t(T), 999);
    indptr.assign(size_t(T + 1), 999);
    ragged.assign(size_t(T * K), 999);
    spmla_tensor_t tp = tst::tensor(pos.data(), SPMLA_DTYPE_INT32, {T, K});
    spmla_tensor_t tr = tst::tensor(req.data(), SPMLA_DTYPE_INT32, {T});
    spmla_tensor_t tb = tst::tensor(table.data(), SPMLA_DTYPE_INT32, {R, P});
    spmla_tensor_t tv = tst::tensor(valid.data(), SPMLA_DTYPE_UINT8, {T});
    spmla_tensor_t ts = tst::tensor(slots.data(), SPMLA_DTYPE_INT32, {T, K});
    spmla_tensor_t tl = tst::tensor(lens.data(), SPMLA_DTYPE_INT32, {T});
    spmla_tensor_t ti = tst::tensor(indptr.data(), SPMLA_DTYPE_INT32, {T + 1});
    spmla_tensor_t tg = tst::tensor(ragged.data(), SPMLA_DTYPE_INT32, {T * K});
    spmla_indices_to_slots_args_t a = SPMLA_INDICES_TO_SLOTS_ARGS_INIT;
    a.positions = &tp;
    a.token_to_req = &tr;
    a.block_table = &tb;
    a.block_size = bs;
    a.token_valid = with_valid ? &tv : nullptr;
    a.slots = &ts;
    a.lengths = &tl;
    a.indptr = with_ragged ? &ti : nullptr;
    a.ragged_slots = with_ragged ? &tg : nullptr;
    tst::check(spmla_indices_to_slots_run(h, &a, nullptr));
  }
};

}  // namespace

TEST_CASE("indices_to_slots: hand-computed edge cases, lengths and ragged form") {
  tst::Handle h;
  I2S c;
  c.T = 4;
  c.K = 5;
  c.R = 2;
  c.P = 3;
  c.bs = 4;
  // request 0: pages 7, 2, -1 ; request 1: pages 0, 5, 9
  c.table = {7, 2, -1, 0, 5, 9};
  c.pos = {0, 5, -1, 8, 12,          // t0 req 0: 28, 9, -1, -1 (table -1), -1 (beyond table)
           3, 4, 11, INT_MIN, 1,     // t1 req 1: 3, 20, 39, -1, 1
           0, 1, 2, 3, 4,            // t2 req 5 (invalid request) -> all -1
           2, 2, -5, 7, 0};          // t3 req 0 but token_valid 0 -> all -1
  c.req = {0, 1, 5, 0};
  c.valid = {1, 1, 1, 0};
  c.run(h, true, true);
  const std::vector<int32_t> want = {28, 9, -1, -1, -1, 3, 20, 39, -1, 1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
  CHECK(c.slots == want);
  CHECK(c.lens == std::vector<int32_t>{2, 4, 0, 0});
  CHECK(c.indptr == std::vector<int32_t>{0, 2, 6, 6, 6});
  CHECK(std::vector<int32_t>(c.ragged.begin(), c.ragged.begin() + 6) == std::vector<int32_t>{28, 9, 3, 20, 39, 1});
  // without token_valid, token 3 is valid
  c.run(h, false, false);
  CHECK(std::vector<int32_t>(c.slots.begin() + 15, c.slots.end()) == std::vector<int32_t>{30, 30, -1, 11, 28});
  CHECK(c.lens[3] == 4);
  CHECK(c.indptr[0] == 999);  // ragged outputs absent: not written
}

TEST_CASE("indices_to_slots: random agreement with a direct evaluation, thread-count independent") {
  tst::Rng rng(12);
  I2S c;
  c.T = 300;
  c.K = 77;
  c.R = 5;
  c.P = 20;
  c.bs = 53;
  c.table.resize(size_t(c.R * c.P));
  for (auto &x : c.table) x = int32_t(rng.integer(-2, 40));
  c.pos.resize(size_t(c.T * c.K));
  for (auto &x : c.pos) x = int32_t(rng.integer(-3, c.P * c.bs + 50));
  c.req.resize(size_t(c.T));
  for (auto &x : c.req) x = int32_t(rng.integer(-1, c.R));
  c.valid.resize(size_t(c.T));
  for (auto &x : c.valid) x = uint8_t(rng.integer(0, 5) != 0);
  std::vector<int32_t> first;
  for (int threads : {1, 2, 5}) {
    tst::Handle h(threads);
    c.run(h, true, true);
    int32_t total = 0;
    for (int64_t t = 0; t < c.T; ++t) {
      const int32_t r = c.req[size_t(t)];
      int32_t n = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const int64_t p = c.pos[size_t(t * c.K + k)];
        int32_t want = -1;
        if (c.valid[size_t(t)] && r >= 0 && r < c.R && p >= 0 && p / c.bs < c.P) {
          const int32_t pg = c.table[size_t(r * c.P + p / c.bs)];
          if (pg >= 0) want = int32_t(pg * c.bs + p % c.bs);
        }
        REQUIRE(c.slots[size_t(t * c.K + k)] == want);
        if (want >= 0) REQUIRE(c.ragged[size_t(total + n++)] == want);
      }
      REQUIRE(c.lens[size_t(t)] == n);
      REQUIRE(c.indptr[size_t(t)] == total);
      total += n;
    }
    REQUIRE(c.indptr[size_t(c.T)] == total);
    if (first.empty()) first = c.slots;
    CHECK(first == c.slots);
  }
}

TEST_CASE("window_indices: sliding window (ratio 1) and compressed tokens (ratio 128)") {
  tst::Handle h;
  auto run = [&](std::vector<int32_t> pos, std::vector<int32_t> req, std::vector<int32_t> table, int64_t R,
                 int64_t P, int32_t bs, int32_t ratio, int64_t W, std::vector<int32_t> &slots,
                 std::vector<int32_t> &lens) {
    const int64_t T = int64_t(pos.size());
    slots.assign(size_t(T * W), 999);
    lens.assign(size_t(T), 999);
    spmla_tensor_t tp = tst::tensor(pos.data(), SPMLA_DTYPE_INT32, {T});
    spmla_tensor_t tr = tst::tensor(req.data(), SPMLA_DTYPE_INT32, {T});
    spmla_tensor_t tb = tst::tensor(table.data(), SPMLA_DTYPE_INT32, {R, P});
    spmla_tensor_t ts = tst::tensor(slots.data(), SPMLA_DTYPE_INT32, {T, W});
    spmla_tensor_t tl = tst::tensor(lens.data(), SPMLA_DTYPE_INT32, {T});
    spmla_window_indices_args_t a = SPMLA_WINDOW_INDICES_ARGS_INIT;
    a.positions = &tp;
    a.token_to_req = &tr;
    a.block_table = &tb;
    a.block_size = bs;
    a.ratio = ratio;
    a.slots = &ts;
    a.lengths = &tl;
    tst::check(spmla_window_indices_run(h, &a, nullptr));
  };
  std::vector<int32_t> slots, lens;
  // bs 4, request 0 pages {3, -1, 1}; W 6
  run({2, 9, -1, 5, 20}, {0, 0, 0, 7, 0}, {3, -1, 1}, 1, 3, 4, 1, 6, slots, lens);
  // pos 2: hi 3, lo 0 -> positions 0..2 -> 12, 13, 14
  CHECK(std::vector<int32_t>(slots.begin(), slots.begin() + 6) == std::vector<int32_t>{12, 13, 14, -1, -1, -1});
  // pos 9: hi 10, lo 4 -> positions 4..9: page 1 (-1) for 4..7, page 2 (1) for 8, 9 -> 4, 5
  CHECK(std::vector<int32_t>(slots.begin() + 6, slots.begin() + 12) == std::vector<int32_t>{-1, -1, -1, -1, 4, 5});
  // negative position, invalid request: empty
  CHECK(std::vector<int32_t>(slots.begin() + 12, slots.begin() + 24) == std::vector<int32_t>(12, -1));
  // pos 20: hi 21, lo 15 -> positions 15..20, beyond the 12-position table -> -1 but counted
  CHECK(std::vector<int32_t>(slots.begin() + 24, slots.end()) == std::vector<int32_t>(6, -1));
  CHECK(lens == std::vector<int32_t>{3, 6, 0, 0, 6});
  // ratio 128: pos 1000 -> hi 7 compressed tokens, W 16 >= hi: positions 0..6; bs 2 pages {5,6,7,8}
  run({1000, 126, 127}, {0, 0, 0}, {5, 6, 7, 8}, 1, 4, 2, 128, 16, slots, lens);
  CHECK(std::vector<int32_t>(slots.begin(), slots.begin() + 8) == std::vector<int32_t>{10, 11, 12, 13, 14, 15, 16, -1});
  CHECK(lens == std::vector<int32_t>{7, 0, 1});
  CHECK(slots[32] == 10);
  CHECK(slots[33] == -1);
}
