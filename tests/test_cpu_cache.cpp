// test_cpu_cache.cpp — kv_cache_store and kv_cache_gather on the CPU backend (public API):
// hand-computed bytes, store -> gather round trips for every layout and flavor, skipped slots,
// duplicates, zero rows for invalid slots, and "reads only the listed slots".
#include <climits>

#include "test_support.h"

using tst::TestCache;

namespace {

void store(spmla_handle_t h, TestCache &c, std::vector<uint16_t> &kv, int64_t N, std::vector<int32_t> &slots) {
  REQUIRE(size_t(N) == slots.size());
  tst::store_rows(h, c, kv, slots);
}

std::vector<uint16_t> gather(spmla_handle_t h, TestCache &c, std::vector<int32_t> &slots) {
  return tst::gather_rows(h, c, slots);
}

float getf(const uint8_t *p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

double expected_tile_scale(const uint16_t *x, int n, double fp8_max) {
  double amax = 0;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(double(tst::fb(x[i]))));
  return std::exp2(std::ceil(std::log2(std::max(double(float(amax / fp8_max)), double(1e-4f)))));
}

}  // namespace

TEST_CASE("kv_cache_store: hand-computed V32 and V4 bytes") {
  tst::Handle h;
  SECTION("V32, E4M3FN: tile of ones -> scale 2^-8, byte 0x78 (256); RoPE copied") {
    TestCache c(SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FN, 576, 1, 2);
    std::vector<uint16_t> kv(576, 0);
    for (int i = 0; i < 128; ++i) kv[size_t(i)] = tst::bf(1.0f);
    for (int i = 128; i < 256; ++i) kv[size_t(i)] = tst::bf(i == 130 ? -448.0f : 0.5f);  // scale 1
    // tile 2 stays zero -> scale 2^-13; tile 3: 3000 -> 3000/448 = 6.7 -> 2^3
    for (int i = 384; i < 512; ++i) kv[size_t(i)] = tst::bf(i == 400 ? 3000.0f : 8.0f);
    for (int i = 0; i < 64; ++i) kv[size_t(512 + i)] = uint16_t(0x3F00 + i);
    std::vector<int32_t> slots{1};
    store(h, c, kv, 1, slots);
    const uint8_t *row = c.buf.data() + 656;
    CHECK(int(row[0]) == 0x78);
    CHECK(getf(row + 512) == std::ldexp(1.0f, -8));
    CHECK(getf(row + 516) == 1.0f);
    CHECK(int(row[130]) == 0xFE);  // -448
    CHECK(int(row[129]) == 0x30);  // 0.5 = 2^-1: e = 6, m = 0
    CHECK(getf(row + 520) == std::ldexp(1.0f, -13));
    CHECK(int(row[256]) == 0x00);
    CHECK(getf(row + 524) == 8.0f);
    CHECK(int(row[400 - 0]) == int(spmla::f32_to_fp8_e4m3fn(375.0f)));  // 3000/8 = 375 -> 384
    CHECK(int(row[401]) == 0x38);                                      // 8/8 = 1
    for (int i = 0; i < 64; ++i) {
      uint16_t v;
      std::memcpy(&v, row + 528 + 2 * i, 2);
      CHECK(v == uint16_t(0x3F00 + i));
    }
    // slot 0 was not written
    for (int i = 0; i < 656; ++i) CHECK(c.buf.data()[i] == 0xEE);
  }
  SECTION("V4, E4M3FNUZ: amax 240 -> UE8M0 127; pad byte and page padding 0") {
    TestCache c(SPMLA_KV_LAYOUT_V4_FP8, SPMLA_FP8_E4M3FNUZ, 512, 1, 3);  // 3*584=1752 -> 2304
    REQUIRE(c.stride == 2304);
    std::vector<uint16_t> kv(512, 0);
    kv[0] = tst::bf(240.0f);
    kv[1] = tst::bf(-1.0f);
    kv[64] = tst::bf(480.0f);  // tile 1 -> 2^1
    std::vector<int32_t> slots{2};
    store(h, c, kv, 1, slots);
    const uint8_t *row = c.buf.data() + 2 * 576;
    const uint8_t *sc = c.buf.data() + 3 * 576 + 2 * 8;
    CHECK(int(row[0]) == 0x7F);
    CHECK(int(row[1]) == 0xC0);  // -1 in FNUZ: e = 8, m = 0, sign
    CHECK(int(sc[0]) == 127);
    CHECK(int(sc[1]) == 128);
    CHECK(int(row[64]) == 0x7F);
    for (int t = 2; t < 7; ++t) CHECK(int(sc[t]) == 127 - 13);
    CHECK(int(sc[7]) == 0);
    for (int64_t i = 3 * 584; i < 2304; ++i) CHECK(int(c.buf.data()[i]) == 0);
    CHECK(int(c.buf.data()[3 * 576]) == 0xEE);  // other tokens' scale rows untouched
  }
}

TEST_CASE("kv_cache_store -> kv_cache_gather round trip, every layout, flavor and block size") {
  tst::Handle h;
  tst::Rng rng(31337);
  struct L {
    spmla_kv_layout_t layout;
    int32_t dim;
  } layouts[] = {{SPMLA_KV_LAYOUT_BF16, 576},          {SPMLA_KV_LAYOUT_BF16, 512},
                 {SPMLA_KV_LAYOUT_FP8_PER_TENSOR, 576}, {SPMLA_KV_LAYOUT_V32_FP8, 576},
                 {SPMLA_KV_LAYOUT_V4_FP8, 512},        {SPMLA_KV_LAYOUT_INDEXER_FP8, 128},
                 {SPMLA_KV_LAYOUT_INDEXER_FP8, 64}};
  for (auto l : layouts) {
    for (int fl = 1; fl <= 2; ++fl) {
      if (l.layout == SPMLA_KV_LAYOUT_BF16 && fl == 2) continue;
      const bool fnuz = fl == 2;
      const double fp8_max = fnuz ? 240.0 : 448.0;
      for (int bs : {1, 53, 64}) {
        INFO("layout " << l.layout << " dim " << l.dim << " flavor " << fl << " bs " << bs);
        TestCache c(l.layout, spmla_fp8_flavor_t(fl), l.dim, bs == 1 ? 40 : 2, bs, bs == 53 ? 16 : 0);
        const int64_t N = 30;
        std::vector<uint16_t> kv(size_t(N * l.dim));
        for (int64_t n = 0; n < N; ++n) {
          const float sigma = std::ldexp(1.0f, int(rng.integer(-12, 10)));
          for (int i = 0; i < l.dim; ++i) kv[size_t(n * l.dim + i)] = tst::bf(rng.normal() * sigma);
        }
        if (l.layout == SPMLA_KV_LAYOUT_FP8_PER_TENSOR)  // keep within range of the tensor scale
          for (auto &x : kv) x = tst::bf(std::max(-3.0f, std::min(3.0f, tst::fb(x))));
        // distinct random slots, a few skipped
        std::vector<int32_t> perm(size_t(c.slots()));
        for (size_t i = 0; i < perm.size(); ++i) perm[i] = int32_t(i);
        std::shuffle(perm.begin(), perm.end(), rng.g);
        std::vector<int32_t> slots(perm.begin(), perm.begin() + N);
        slots[3] = -1;
        slots[7] = int32_t(c.slots());
        slots[11] = INT_MIN;
        store(h, c, kv, N, slots);
        std::vector<int32_t> gs = slots;
        gs.push_back(perm[size_t(N)]);  // never written: keeps its 0xEE bytes (not checked)
        std::vector<uint16_t> out = gather(h, c, gs);
        for (int64_t n = 0; n < N; ++n) {
          const uint16_t *x = &kv[size_t(n * l.dim)];
          const uint16_t *g = &out[size_t(n * l.dim)];
          if (n == 3 || n == 7 || n == 11) {
            for (int i = 0; i < l.dim; ++i) CHECK(g[i] == 0);  // invalid slot -> zero row
            continue;
          }
          if (l.layout == SPMLA_KV_LAYOUT_BF16) {
            CHECK(std::memcmp(g, x, size_t(l.dim) * 2) == 0);
            continue;
          }
          // per value, the scale it was quantized with
          const uint8_t *page = c.page(slots[size_t(n)]);
          const int64_t o = c.off(slots[size_t(n)]);
          std::vector<double> scale(size_t(l.dim), 0.0);
          int nope = l.dim;
          if (l.layout == SPMLA_KV_LAYOUT_FP8_PER_TENSOR) {
            std::fill(scale.begin(), scale.end(), double(c.tensor_scale));
          } else if (l.layout == SPMLA_KV_LAYOUT_V32_FP8) {
            nope = 512;
            for (int t = 0; t < 4; ++t) {
              const double s = getf(page + o * 656 + 512 + 4 * t);
              CHECK(s == expected_tile_scale(x + t * 128, 128, fp8_max));
              for (int i = 0; i < 128; ++i) scale[size_t(t * 128 + i)] = s;
            }
          } else if (l.layout == SPMLA_KV_LAYOUT_V4_FP8) {
            nope = 448;
            for (int t = 0; t < 7; ++t) {
              const double s = std::ldexp(1.0, int(page[int64_t(bs) * 576 + o * 8 + t]) - 127);
              CHECK(s == expected_tile_scale(x + t * 64, 64, fp8_max));
              for (int i = 0; i < 64; ++i) scale[size_t(t * 64 + i)] = s;
            }
            CHECK(int(page[int64_t(bs) * 576 + o * 8 + 7]) == 0);
          } else {  // INDEXER_FP8
            float amax = 0;
            for (int i = 0; i < l.dim; ++i) amax = std::max(amax, std::fabs(tst::fb(x[i])));
            const float s = std::max(amax, 1e-4f) / float(fp8_max);
            CHECK(getf(page + int64_t(bs) * l.dim + o * 4) == s);
            std::fill(scale.begin(), scale.end(), double(s));
          }
          for (int i = 0; i < l.dim; ++i) {
            const double xv = tst::fb(x[i]), gv = tst::fb(g[i]);
            if (i >= nope) {
              CHECK(g[i] == x[i]);  // RoPE stored as bf16 unchanged
              continue;
            }
            // fp8 rounding (half an ulp: 1/16 relative, or half the subnormal step) + bf16 rounding
            const double tol = std::fabs(xv) / 16 + scale[size_t(i)] * std::ldexp(1.0, fnuz ? -11 : -10) +
                               std::fabs(xv) / 256;
            if (std::fabs(gv - xv) > tol * 1.0001) FAIL("value " << i << " of row " << n << ": " << gv << " vs " << xv);
          }
        }
      }
    }
  }
}

TEST_CASE("kv_cache_store: int64 slot mapping, duplicates (last wins), FP8_PER_TENSOR saturation") {
  tst::Handle h;
  TestCache c(SPMLA_KV_LAYOUT_FP8_PER_TENSOR, SPMLA_FP8_E4M3FN, 512, 2, 4);
  c.desc.scale = 1.0f;
  std::vector<uint16_t> kv(3 * 512, tst::bf(1.0f));
  kv[512] = tst::bf(1000.0f);
  kv[513] = tst::bf(-1000.0f);
  kv[2 * 512] = tst::bf(2.0f);
  std::vector<int64_t> slots{5, 6, 5};
  spmla_tensor_t tk = tst::tensor(kv.data(), SPMLA_DTYPE_BF16, {3, 512});
  spmla_tensor_t ts = tst::tensor(slots.data(), SPMLA_DTYPE_INT64, {3});
  spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
  a.kv = &tk;
  a.slot_mapping = &ts;
  a.cache = &c.desc;
  tst::check(spmla_kv_cache_store_run(h, &a, nullptr));
  const uint8_t *page1 = c.buf.data() + c.stride;
  CHECK(int(page1[1 * 512]) == int(spmla::f32_to_fp8_e4m3fn(2.0f)));  // slot 5: the last row
  CHECK(int(page1[2 * 512]) == 0x7E);                                 // 1000 saturates to 448
  CHECK(int(page1[2 * 512 + 1]) == 0xFE);
  CHECK(int(page1[0]) == 0xEE);  // slot 4 untouched
  // FNUZ saturates to 240
  TestCache z(SPMLA_KV_LAYOUT_FP8_PER_TENSOR, SPMLA_FP8_E4M3FNUZ, 512, 1, 1);
  z.desc.scale = 1.0f;
  std::vector<int32_t> s1{0};
  std::vector<uint16_t> k1(kv.begin() + 512, kv.begin() + 1024);
  store(h, z, k1, 1, s1);
  CHECK(int(z.buf.data()[0]) == 0x7F);
  CHECK(int(z.buf.data()[1]) == 0xFF);
}

TEST_CASE("kv_cache_gather: reads only the listed slots, invalid ids give zero rows") {
  tst::Handle h;
  tst::Rng rng(8);
  for (spmla_kv_layout_t layout : {SPMLA_KV_LAYOUT_V32_FP8, SPMLA_KV_LAYOUT_V4_FP8, SPMLA_KV_LAYOUT_BF16,
                                   SPMLA_KV_LAYOUT_FP8_PER_TENSOR, SPMLA_KV_LAYOUT_INDEXER_FP8}) {
    INFO("layout " << layout);
    const int32_t D = layout == SPMLA_KV_LAYOUT_V4_FP8 ? 512 : layout == SPMLA_KV_LAYOUT_INDEXER_FP8 ? 128 : 576;
    TestCache c(layout, SPMLA_FP8_E4M3FN, D, 5, 7);
    c.fill_random(rng);
    std::vector<int32_t> slots{3, -1, 34, 35, INT_MIN, 0, 3, INT_MAX};
    std::vector<uint16_t> before = gather(h, c, slots);
    for (int64_t s = 0; s < c.slots(); ++s)
      if (s != 3 && s != 34 && s != 0) c.poison(s);
    std::vector<uint16_t> after = gather(h, c, slots);
    CHECK(before == after);
    for (int i = 0; i < D; ++i) {
      CHECK(after[size_t(1 * D + i)] == 0);
      CHECK(after[size_t(3 * D + i)] == 0);
      CHECK(after[size_t(4 * D + i)] == 0);
      CHECK(after[size_t(7 * D + i)] == 0);
      CHECK(after[size_t(6 * D + i)] == after[size_t(i)]);
    }
    // values match the independent decode (rounded to bf16)
    std::vector<double> r = c.row(34);
    for (int i = 0; i < D; ++i) CHECK(after[size_t(2 * D + i)] == tst::bf(float(r[size_t(i)])));
  }
}
