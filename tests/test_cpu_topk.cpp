// test_cpu_topk.cpp — topk_per_row on the CPU backend (public API).
#include <algorithm>
#include <climits>

#include "test_support.h"

namespace {

struct TopK {
  int64_t R, C, k, stride;
  std::vector<float> logits;  // R x stride
  std::vector<int32_t> starts, ends, ctx;
  int32_t next_n = 1;
  std::vector<int32_t> out;
  void run(spmla_handle_t h) {
    out.assign(size_t(R * k), 12345);
    spmla_tensor_t tl = tst::tensor(logits.data(), SPMLA_DTYPE_FP32, {R, C}, {stride, 1});
    spmla_tensor_t ts = tst::tensor(starts.data(), SPMLA_DTYPE_INT32, {R});
    spmla_tensor_t te = tst::tensor(ends.data(), SPMLA_DTYPE_INT32, {R});
    spmla_tensor_t tc = tst::tensor(ctx.data(), SPMLA_DTYPE_INT32, {int64_t(ctx.size())});
    spmla_tensor_t to = tst::tensor(out.data(), SPMLA_DTYPE_INT32, {R, k});
    spmla_topk_per_row_args_t a = SPMLA_TOPK_PER_ROW_ARGS_INIT;
    a.logits = &tl;
    a.row_starts = starts.empty() ? nullptr : &ts;
    a.row_ends = ends.empty() ? nullptr : &te;
    a.context_lens = ctx.empty() ? nullptr : &tc;
    a.next_n = next_n;
    a.indices = &to;
    size_t ws = 0;
    tst::check(spmla_topk_per_row_get_workspace_size(h, &a, &ws));
    std::vector<uint8_t> wsb(ws + 1);
    tst::check(spmla_topk_per_row_run(h, &a, ws ? wsb.data() : nullptr, ws, nullptr));
  }
  std::vector<int32_t> row(int64_t r) const {
    return std::vector<int32_t>(out.begin() + r * k, out.begin() + (r + 1) * k);
  }
};

// brute force: sort all columns of [s, e) by (value desc, NaN last, column asc), take k, sort asc
std::vector<int32_t> brute(const float *v, int64_t s, int64_t e, int64_t C, int64_t k) {
  s = std::max<int64_t>(s, 0);
  e = std::min<int64_t>(e, C);
  std::vector<int32_t> cols;
  for (int64_t j = s; j < e; ++j) cols.push_back(int32_t(j));
  std::stable_sort(cols.begin(), cols.end(), [&](int32_t a, int32_t b) {
    const float x = v[a], y = v[b];
    if (std::isnan(x)) return false;
    if (std::isnan(y)) return true;
    return x > y;
  });
  if (int64_t(cols.size()) > k) cols.resize(size_t(k));
  std::sort(cols.begin(), cols.end());
  std::vector<int32_t> r;
  for (int32_t c : cols) r.push_back(int32_t(c - s));
  while (int64_t(r.size()) < k) r.push_back(-1);
  return r;
}

}  // namespace

TEST_CASE("topk_per_row: hand cases with ties, NaN and -inf") {
  tst::Handle h;
  const float nan = tst::qnan(), ninf = -tst::inf();
  const std::vector<float> row = {1, 3, 3, 2, nan, ninf, 5};
  auto run = [&](int64_t k) {
    TopK t;
    t.R = 1;
    t.C = 7;
    t.k = k;
    t.stride = 7;
    t.logits = row;
    t.run(h);
    return t.row(0);
  };
  CHECK(run(1) == std::vector<int32_t>{6});
  CHECK(run(2) == std::vector<int32_t>{1, 6});  // tie 3/3 -> smaller column
  CHECK(run(3) == std::vector<int32_t>{1, 2, 6});
  CHECK(run(5) == std::vector<int32_t>{0, 1, 2, 3, 6});
  CHECK(run(6) == std::vector<int32_t>{0, 1, 2, 3, 5, 6});  // -inf beats NaN
  CHECK(run(7) == std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6});
  CHECK(run(9) == std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, -1, -1});
  // all equal: the first k columns; all NaN likewise
  TopK e;
  e.R = 2;
  e.C = 10;
  e.k = 4;
  e.stride = 12;
  e.logits.assign(24, 0.5f);
  for (int j = 12; j < 24; ++j) e.logits[size_t(j)] = nan;
  e.logits[12 + 8] = ninf;
  e.run(h);
  CHECK(e.row(0) == std::vector<int32_t>{0, 1, 2, 3});
  CHECK(e.row(1) == std::vector<int32_t>{0, 1, 2, 8});
  // -0.0 and +0.0 are equal values: the smaller column wins
  TopK z;
  z.R = 1;
  z.C = 3;
  z.k = 1;
  z.stride = 3;
  z.logits = {-1.0f, -0.0f, 0.0f};
  z.run(h);
  CHECK(z.row(0) == std::vector<int32_t>{1});
}

TEST_CASE("topk_per_row: ranges (relative to the clipped start), clipping and the paged rule") {
  tst::Handle h;
  TopK t;
  t.R = 5;
  t.C = 8;
  t.k = 3;
  t.stride = 8;
  t.logits.resize(40);
  for (int r = 0; r < 5; ++r)
    for (int j = 0; j < 8; ++j) t.logits[size_t(r * 8 + j)] = float((j * 5) % 8);  // 0 5 2 7 4 1 6 3
  t.starts = {2, -4, 6, 5, 0};
  t.ends = {6, 3, 100, 2, 8};
  t.run(h);
  CHECK(t.row(0) == std::vector<int32_t>{0, 1, 2});   // cols 2..5 = 2 7 4 1 -> 3,4,2 -> rel 0,1,2
  CHECK(t.row(1) == std::vector<int32_t>{0, 1, 2});   // [-4,3) -> [0,3): all three
  CHECK(t.row(2) == std::vector<int32_t>{0, 1, -1});  // [6, 8)
  CHECK(t.row(3) == std::vector<int32_t>{-1, -1, -1});  // empty
  CHECK(t.row(4) == std::vector<int32_t>{1, 3, 6});
  // only ends / only starts
  t.starts.clear();
  t.run(h);
  CHECK(t.row(0) == std::vector<int32_t>{1, 3, 4});
  t.ends.clear();
  t.starts = {0, 1, 2, 3, 4};
  t.run(h);
  CHECK(t.row(4) == std::vector<int32_t>{0, 2, 3});  // cols 4..7 = 4 1 6 3 -> cols 4, 6, 7
  // paged rule: next_n 2, context_lens {5, 1}: rows end at 5-2+0+1=4, 5, then 0, 1
  TopK p;
  p.R = 4;
  p.C = 8;
  p.k = 2;
  p.stride = 8;
  p.logits = t.logits;
  p.logits.resize(32);
  p.ctx = {5, 1};
  p.next_n = 2;
  p.run(h);
  CHECK(p.row(0) == std::vector<int32_t>{1, 3});
  CHECK(p.row(1) == std::vector<int32_t>{1, 3});
  CHECK(p.row(2) == std::vector<int32_t>{-1, -1});
  CHECK(p.row(3) == std::vector<int32_t>{0, -1});
}

TEST_CASE("topk_per_row: random rows with ties and NaN against brute force, any thread count") {
  tst::Rng rng(2718);
  TopK t;
  t.R = 64;
  t.C = 3000;
  t.k = 100;
  t.stride = 3011;
  t.logits.resize(size_t(t.R * t.stride));
  for (auto &x : t.logits) {
    const int64_t u = rng.integer(0, 99);
    x = u < 3 ? tst::qnan() : u < 5 ? -tst::inf() : float(rng.integer(-40, 40)) * 0.25f;  // many ties
  }
  t.starts.resize(size_t(t.R));
  t.ends.resize(size_t(t.R));
  for (int64_t r = 0; r < t.R; ++r) {
    t.starts[size_t(r)] = int32_t(rng.integer(-50, 2900));
    t.ends[size_t(r)] = int32_t(t.starts[size_t(r)] + rng.integer(-5, 400));
  }
  t.starts[0] = 0;
  t.ends[0] = 3000;
  std::vector<int32_t> first;
  for (int threads : {1, 2, 7}) {
    tst::Handle h(threads);
    t.run(h);
    for (int64_t r = 0; r < t.R; ++r) {
      INFO("row " << r);
      REQUIRE(t.row(r) == brute(&t.logits[size_t(r * t.stride)], t.starts[size_t(r)], t.ends[size_t(r)], t.C, t.k));
    }
    if (first.empty()) first = t.out;
    CHECK(first == t.out);
    t.run(h);
    CHECK(first == t.out);
  }
}
