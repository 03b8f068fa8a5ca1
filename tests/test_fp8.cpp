// test_fp8.cpp — numerics.h against the public FP8 tables and hand-picked edge cases.
#include <sstream>

#include "test_support.h"

using namespace spmla;

namespace {

double parse_value(const std::string &s) {
  if (s == "nan") return std::nan("");
  return std::strtod(s.c_str(), nullptr);
}

std::vector<std::vector<std::string>> read_tsv(const std::string &path) {
  std::ifstream f(path);
  INFO(path);
  REQUIRE(f.good());
  std::vector<std::vector<std::string>> rows;
  std::string line;
  std::getline(f, line);  // header
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    std::vector<std::string> cols;
    std::stringstream ss(line);
    std::string c;
    while (std::getline(ss, c, '\t')) cols.push_back(c);
    rows.push_back(cols);
  }
  return rows;
}

}  // namespace

TEST_CASE("fp8 decode: all 256 codes of E4M3FN, E4M3FNUZ and UE8M0 match fp8_codes.tsv") {
  auto rows = read_tsv(tst::vectors_dir() + "/fp8_codes.tsv");
  REQUIRE(rows.size() == 256);
  int checked = 0;
  for (const auto &r : rows) {
    REQUIRE(r.size() == 4);
    const int b = std::stoi(r[0]);
    const uint8_t u = static_cast<uint8_t>(b);
    INFO("byte " << b);
    CHECK(tst::same_float(fp8_e4m3fn_to_f32(u), parse_value(r[1])));
    CHECK(tst::same_float(fp8_e4m3fnuz_to_f32(u), parse_value(r[2])));
    CHECK(tst::same_float(ue8m0_to_f32(u), parse_value(r[3])));
    // the independent ldexp decode of the tests agrees too
    CHECK(tst::same_float(tst::fp8_ref(u, false), parse_value(r[1])));
    CHECK(tst::same_float(tst::fp8_ref(u, true), parse_value(r[2])));
    checked += 3;
  }
  CHECK(checked == 768);
}

TEST_CASE("fp8 encode: every row of fp8_encode.tsv, both flavors") {
  auto rows = read_tsv(tst::vectors_dir() + "/fp8_encode.tsv");
  REQUIRE(rows.size() == 691);
  int fn = 0, fnuz = 0;
  for (const auto &r : rows) {
    REQUIRE(r.size() == 5);
    const uint32_t bits = static_cast<uint32_t>(std::stoul(r[0], nullptr, 16));
    const float x = f32_from_bits(bits);
    INFO("input " << r[0] << " (" << r[1] << ", " << r[2] << ")");
    CHECK(int(f32_to_fp8_e4m3fn(x)) == std::stoi(r[3], nullptr, 16));
    ++fn;
    if (r[4] != "-") {
      CHECK(int(f32_to_fp8_e4m3fnuz(x)) == std::stoi(r[4], nullptr, 16));
      ++fnuz;
    }
  }
  CHECK(fn == 691);
  CHECK(fnuz == 691 - 56);
}

TEST_CASE("fp8 encode: saturation, infinities, NaN and signed zero") {
  // E4M3FN: max 448 (0x7E); everything beyond saturates, inf included.
  for (float x : {448.0f, 449.0f, 464.0f, 465.0f, 480.0f, 1e6f, 3.0e38f, tst::inf()}) {
    INFO(x);
    CHECK(int(f32_to_fp8_e4m3fn(x)) == 0x7E);
    CHECK(int(f32_to_fp8_e4m3fn(-x)) == 0xFE);
  }
  // E4M3FNUZ: max 240 (0x7F).
  for (float x : {240.0f, 241.0f, 248.0f, 256.0f, 1e6f, tst::inf()}) {
    INFO(x);
    CHECK(int(f32_to_fp8_e4m3fnuz(x)) == 0x7F);
    CHECK(int(f32_to_fp8_e4m3fnuz(-x)) == 0xFF);
  }
  CHECK(int(f32_to_fp8_e4m3fn(tst::qnan())) == 0x7F);
  CHECK(int(f32_to_fp8_e4m3fn(-tst::qnan())) == 0xFF);
  CHECK(int(f32_to_fp8_e4m3fnuz(tst::qnan())) == 0x80);
  CHECK(int(f32_to_fp8_e4m3fnuz(-tst::qnan())) == 0x80);
  CHECK(int(f32_to_fp8_e4m3fn(-0.0f)) == 0x80);
  CHECK(int(f32_to_fp8_e4m3fnuz(-0.0f)) == 0x00);
  CHECK(int(f32_to_fp8_e4m3fn(-1e-30f)) == 0x80);
  CHECK(int(f32_to_fp8_e4m3fnuz(-1e-30f)) == 0x00);
  // smallest subnormals and the halfway points below them
  CHECK(int(f32_to_fp8_e4m3fn(std::ldexp(1.0f, -9))) == 0x01);
  CHECK(int(f32_to_fp8_e4m3fn(std::ldexp(1.0f, -10))) == 0x00);  // tie -> even (0)
  CHECK(int(f32_to_fp8_e4m3fn(std::ldexp(1.5f, -10))) == 0x01);
  CHECK(int(f32_to_fp8_e4m3fnuz(std::ldexp(1.0f, -10))) == 0x01);
  CHECK(int(f32_to_fp8_e4m3fnuz(std::ldexp(1.0f, -11))) == 0x00);
}

TEST_CASE("fp8: every finite code re-encodes to itself") {
  for (int b = 0; b < 256; ++b) {
    const uint8_t u = static_cast<uint8_t>(b);
    if ((b & 0x7F) != 0x7F) {
      INFO("fn " << b);
      CHECK(int(f32_to_fp8_e4m3fn(fp8_e4m3fn_to_f32(u))) == b);
    }
    if (b != 0x80) {
      INFO("fnuz " << b);
      CHECK(int(f32_to_fp8_e4m3fnuz(fp8_e4m3fnuz_to_f32(u))) == b);
    }
  }
}

TEST_CASE("fp8 encode: round to nearest even against an exhaustive nearest-code search") {
  // For many random floats in range, the encoding is the nearest code, ties to even mantissa.
  tst::Rng rng(7);
  for (int kind = 0; kind < 2; ++kind) {
    const bool fnuz = kind == 1;
    std::vector<std::pair<double, int>> codes;
    for (int b = 0; b < 128; ++b) {
      double v = tst::fp8_ref(uint8_t(b), fnuz);
      if (!std::isnan(v)) codes.push_back({v, b});
    }
    for (int i = 0; i < 20000; ++i) {
      const float x = std::ldexp(rng.uniform(0.5f, 1.0f), int(rng.integer(-14, 9)));
      const double maxv = fnuz ? 240.0 : 448.0;
      int best = -1;
      double bestd = 1e300;
      for (auto &c : codes) {
        double d = std::fabs(c.first - double(x));
        if (d < bestd || (d == bestd && (c.second & 1) == 0)) {
          bestd = d;
          best = c.second;
        }
      }
      if (double(x) > maxv) best = fnuz ? 0x7F : 0x7E;
      INFO("x=" << x << " fnuz=" << fnuz);
      REQUIRE(int(f32_to_fp8_e4m3(x, fnuz ? Fp8Kind::E4M3FNUZ : Fp8Kind::E4M3FN)) == best);
    }
  }
}

TEST_CASE("bf16: round to nearest even, NaN preserved, overflow to inf") {
  CHECK(f32_to_bf16(1.0f) == 0x3F80);
  CHECK(f32_to_bf16(f32_from_bits(0x3F808000u)) == 0x3F80);  // tie, even stays
  CHECK(f32_to_bf16(f32_from_bits(0x3F818000u)) == 0x3F82);  // tie, odd rounds up
  CHECK(f32_to_bf16(f32_from_bits(0x3F808001u)) == 0x3F81);
  CHECK(f32_to_bf16(f32_from_bits(0x3F807FFFu)) == 0x3F80);
  CHECK(f32_to_bf16(-0.0f) == 0x8000);
  CHECK(f32_to_bf16(tst::inf()) == 0x7F80);
  CHECK(f32_to_bf16(f32_from_bits(0x7F7FFFFFu)) == 0x7F80);  // rounds past max -> inf
  const uint16_t n1 = f32_to_bf16(f32_from_bits(0x7F800001u));  // signalling, low payload
  CHECK(std::isnan(bf16_to_f32(n1)));
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(-tst::qnan()))));
  CHECK((f32_to_bf16(-tst::qnan()) & 0x8000) != 0);
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_f32(uint16_t(h));
    if (std::isnan(f)) {
      CHECK(std::isnan(bf16_to_f32(f32_to_bf16(f))));
    } else if (f32_to_bf16(f) != h) {
      FAIL("bf16 round trip " << h);
    }
  }
}

TEST_CASE("fp16: round trip of all codes and RNE against the compiler's _Float16") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    if (f32_to_f16(f) != h) FAIL("fp16 round trip " << h);
  }
  CHECK(f16_to_f32(0x3C00) == 1.0f);
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(f16_to_f32(0x7BFF) == 65504.0f);
  CHECK(f32_to_f16(65520.0f) == 0x7C00);  // halfway to 2^16 rounds to inf
  CHECK(f32_to_f16(65519.0f) == 0x7BFF);
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);  // tie to even (0)
  CHECK(f32_to_f16(std::ldexp(1.5f, -25)) == 0x0001);
  CHECK(std::isnan(f16_to_f32(f32_to_f16(tst::qnan()))));
#if defined(__FLT16_MAX__)
  tst::Rng rng(3);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::ldexp(rng.uniform(-1.0f, 1.0f), int(rng.integer(-30, 17)));
    _Float16 y = static_cast<_Float16>(x);
    uint16_t yb;
    std::memcpy(&yb, &y, 2);
    if (f32_to_f16(x) != yb) FAIL("fp16 encode of " << x);
  }
#endif
}

TEST_CASE("ue8m0: decode, encode of powers of two, tile scale exponent") {
  CHECK(ue8m0_to_f32(127) == 1.0f);
  CHECK(ue8m0_to_f32(128) == 2.0f);
  CHECK(ue8m0_to_f32(0) == std::ldexp(1.0f, -127));
  CHECK(ue8m0_to_f32(254) == std::ldexp(1.0f, 127));
  CHECK(std::isnan(ue8m0_to_f32(255)));
  for (int k = -127; k <= 127; ++k) {
    INFO(k);
    CHECK(int(ue8m0_from_pow2(std::ldexp(1.0f, k))) == k + 127);
    CHECK(int(ue8m0_from_exponent(k)) == k + 127);
    CHECK(ue8m0_to_f32(ue8m0_from_exponent(k)) == std::ldexp(1.0f, k));
  }
  CHECK(int(ue8m0_from_pow2(tst::qnan())) == 0xFF);
  CHECK(int(ue8m0_from_pow2(-1.0f)) == 0xFF);
  // scale = 2^ceil(log2(max(amax/fp8_max, 1e-4))) : 1e-4 clamps to 2^-13
  CHECK(tile_scale_exponent(0.0f, Fp8Kind::E4M3FN) == -13);
  CHECK(tile_scale_exponent(3e-6f, Fp8Kind::E4M3FN) == -13);
  CHECK(tile_scale_exponent(448.0f, Fp8Kind::E4M3FN) == 0);
  CHECK(tile_scale_exponent(449.0f, Fp8Kind::E4M3FN) == 1);
  CHECK(tile_scale_exponent(896.0f, Fp8Kind::E4M3FN) == 1);
  CHECK(tile_scale_exponent(240.0f, Fp8Kind::E4M3FNUZ) == 0);
  CHECK(tile_scale_exponent(241.0f, Fp8Kind::E4M3FNUZ) == 1);
  CHECK(tile_scale_exponent(0.03f, Fp8Kind::E4M3FN) == -13);  // 0.03/448 = 6.7e-5 < 1e-4
  CHECK(tile_scale_exponent(1.0f, Fp8Kind::E4M3FN) == -8);    // 1/448 = 2.2e-3 -> 2^-8
  CHECK(ceil_log2_exact(1.0f) == 0);
  CHECK(ceil_log2_exact(std::nextafter(1.0f, 2.0f)) == 1);
  CHECK(ceil_log2_exact(0.75f) == 0);
  CHECK(ceil_log2_exact(std::ldexp(1.0f, -140)) == -140);
  CHECK(exp2_int(-149) == std::ldexp(1.0f, -149));
  CHECK(exp2_int(127) == std::ldexp(1.0f, 127));
}
