// test_fp4.cpp — FP4 E2M1 decode / encode and the V4.1 FP4 tile scale of numerics/numerics.h,
// bit-exact against an independent model written here (docs/SPEC.md "Number formats", "V4.1
// cache layouts"): decode from the format's definition with ldexp, encode by searching the whole
// E2M1 grid for the nearest value (ties to the even code), the scale by searching every finite
// E4M3FN value. Every E2M1 code, every E4M3 scale, values on and around every midpoint, and
// random float32 bit patterns.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "numerics.h"

namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// E2M1: 1 sign bit, 2 exponent bits (bias 1), 1 mantissa bit; e = 0 is subnormal (m * 2^-1).
double e2m1_model(int code) {
  const int s = (code >> 3) & 1, e = (code >> 1) & 3, m = code & 1;
  const double v = e == 0 ? std::ldexp(double(m), -1) : std::ldexp(1.0 + m / 2.0, e - 1);
  return s ? -v : v;
}

// Round to nearest on the E2M1 grid (ties to the even code), saturating at 6; the sign kept.
int e2m1_encode_model(float x) {
  const double a = std::fabs(double(x));
  int best = 0;
  double best_d = std::numeric_limits<double>::infinity();
  for (int c = 0; c < 8; ++c) {
    const double d = std::fabs(a - e2m1_model(c));
    if (d < best_d || (d == best_d && (c & 1) == 0)) {
      best = c;
      best_d = d;
    }
  }
  if (a >= 6.0) best = 7;  // satfinite (also +-inf)
  return best | (std::signbit(x) ? 8 : 0);
}

// Independent E4M3FN decode (ldexp), NaN for S.1111.111.
double e4m3fn_model(int b) {
  if ((b & 0x7F) == 0x7F) return std::nan("");
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  const double v = e == 0 ? std::ldexp(double(m), -9) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s ? -v : v;
}

// SPEC: scale = e4m3_rne(clamp(amax / 6, 2^-9, 448)), NaN (0x7F) for a tile with NaN/inf.
// The quotient amax / 6 is an fp32 operation in SPEC (quant.py works in fp32); the clamp and the
// rounding are modelled here by searching every positive finite E4M3FN byte.
int scale_model(float amax, bool nonfinite) {
  if (nonfinite) return 0x7F;
  double r = double(amax / 6.0f);
  r = std::min(std::max(r, std::ldexp(1.0, -9)), 448.0);
  int best = 1;
  double best_d = std::numeric_limits<double>::infinity();
  for (int b = 1; b <= 0x7E; ++b) {
    const double d = std::fabs(r - e4m3fn_model(b));
    if (d < best_d || (d == best_d && (b & 1) == 0)) {
      best = b;
      best_d = d;
    }
  }
  return best;
}

bool same_value(double a, float b) {
  return a == double(b) && std::signbit(a) == std::signbit(b) && !std::isnan(b);
}

}  // namespace

TEST_CASE("fp4: every E2M1 code decodes to the format's value", "[fp4]") {
  const double expect[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};  // SPEC's table
  for (int c = 0; c < 16; ++c) {
    INFO("code " << c);
    const float v = spmla::fp4_e2m1_to_f32(uint8_t(c));
    CHECK(same_value(e2m1_model(c), v));
    CHECK(std::fabs(double(v)) == expect[c & 7]);
    CHECK(std::signbit(v) == (c >= 8));
    // the high nibble of the byte is ignored by the decoder
    CHECK(bits_of(spmla::fp4_e2m1_to_f32(uint8_t(c | 0xA0))) == bits_of(v));
    // encode(decode(c)) == c: every code is its own value's encoding (-0 is 0x8)
    CHECK(int(spmla::f32_to_fp4_e2m1(v)) == c);
  }
}

TEST_CASE("fp4: encode on and around every midpoint, both signs, and the saturation", "[fp4]") {
  std::vector<float> probes;
  for (int c = 0; c < 7; ++c) {
    const float lo = float(e2m1_model(c)), hi = float(e2m1_model(c + 1));
    const float mid = (lo + hi) / 2;  // exact: the grid has 2 significant bits
    for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 100.0f), lo, hi,
                    std::nextafter(lo, 100.0f), std::nextafter(hi, 0.0f)})
      probes.push_back(x);
  }
  const float big[] = {6.0f, std::nextafter(6.0f, 100.0f), 6.5f, 7.0f, 1e30f, 3.4e38f,
                       std::numeric_limits<float>::infinity(), std::numeric_limits<float>::denorm_min(),
                       std::numeric_limits<float>::min(), 0.0f};
  for (float x : big) probes.push_back(x);
  for (float x : probes) {
    for (float y : {x, -x}) {
      INFO("x = " << y << " (bits 0x" << std::hex << bits_of(y) << ")");
      CHECK(int(spmla::f32_to_fp4_e2m1(y)) == e2m1_encode_model(y));
    }
  }
  // hand-checked ties (RNE): 0.25 -> 0, 0.75 -> 1.0, 1.25 -> 1.0, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4
  const float ties[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  const int want[] = {0, 2, 2, 4, 4, 6, 6};
  for (int i = 0; i < 7; ++i) {
    CHECK(int(spmla::f32_to_fp4_e2m1(ties[i])) == want[i]);
    CHECK(int(spmla::f32_to_fp4_e2m1(-ties[i])) == (want[i] | 8));
  }
  CHECK(int(spmla::f32_to_fp4_e2m1(-0.0f)) == 8);
  CHECK(int(spmla::f32_to_fp4_e2m1(-0.1f)) == 8);  // rounds to zero, keeps the sign
  CHECK(int(spmla::f32_to_fp4_e2m1(-std::numeric_limits<float>::infinity())) == 0xF);
  // NaN has no E2M1 code: numerics.h documents 0x7 (SPEC leaves a NaN tile's codes unspecified)
  CHECK(int(spmla::f32_to_fp4_e2m1(std::nanf(""))) == 0x7);
}

TEST_CASE("fp4: encode of random float32 bit patterns matches the model", "[fp4]") {
  std::mt19937_64 g(0xF4F4);
  std::uniform_int_distribution<uint32_t> any;
  std::uniform_real_distribution<float> near(-7.0f, 7.0f);
  int64_t checked = 0, mismatches = 0;
  for (int i = 0; i < (1 << 21); ++i) {
    const float x = (i & 1) ? from_bits(any(g)) : near(g);
    if (std::isnan(x)) continue;
    ++checked;
    if (int(spmla::f32_to_fp4_e2m1(x)) != e2m1_encode_model(x)) {
      ++mismatches;
      if (mismatches < 5) FAIL_CHECK("x = " << x << " bits 0x" << std::hex << bits_of(x));
    }
  }
  CHECK(checked > (1 << 20));
  CHECK(mismatches == 0);
}

TEST_CASE("fp4: the tile scale for every E4M3 scale value, around every E4M3 midpoint and clamp", "[fp4]") {
  for (int b = 1; b <= 0x7E; ++b) {
    const double s = e4m3fn_model(b);
    INFO("scale byte 0x" << std::hex << b);
    // amax = 6 * s is exact in fp32 and amax / 6 == s exactly: the byte itself
    const float amax = float(6.0 * s);
    CHECK(int(spmla::fp4_tile_scale_e4m3(amax, false)) == b);
    CHECK(int(spmla::fp4_tile_scale_e4m3(amax, false)) == scale_model(amax, false));
    // neighbours of amax and of 6 * (the midpoint to the next value)
    std::vector<float> around = {std::nextafter(amax, 0.0f), std::nextafter(amax, 1e9f)};
    if (b < 0x7E) {
      const float mid6 = float(6.0 * (s + e4m3fn_model(b + 1)) / 2.0);
      around.insert(around.end(), {mid6, std::nextafter(mid6, 0.0f), std::nextafter(mid6, 1e9f)});
    }
    for (float a : around) {
      INFO("amax " << a);
      CHECK(int(spmla::fp4_tile_scale_e4m3(a, false)) == scale_model(a, false));
    }
    // the dequantized products code x scale are exact in bf16 (SPEC)
    for (int c = 0; c < 16; ++c) {
      const float p = spmla::fp4_e2m1_to_f32(uint8_t(c)) * float(s);
      CHECK(spmla::bf16_to_f32(spmla::f32_to_bf16(p)) == p);
    }
  }
  // clamps: below 6 * 2^-9 -> 0x01 (2^-9); zero tile -> 0x01; above 6 * 448 -> 0x7E (448)
  CHECK(int(spmla::fp4_tile_scale_e4m3(0.0f, false)) == 0x01);
  CHECK(int(spmla::fp4_tile_scale_e4m3(1e-30f, false)) == 0x01);
  CHECK(int(spmla::fp4_tile_scale_e4m3(float(6.0 * std::ldexp(1.0, -9)) * 0.9f, false)) == 0x01);
  CHECK(int(spmla::fp4_tile_scale_e4m3(2688.0f, false)) == 0x7E);
  CHECK(int(spmla::fp4_tile_scale_e4m3(1e30f, false)) == 0x7E);
  CHECK(int(spmla::fp4_tile_scale_e4m3(3.4e38f, false)) == 0x7E);
  // a tile holding NaN or inf: scale NaN
  CHECK(int(spmla::fp4_tile_scale_e4m3(1.0f, true)) == 0x7F);
  // random amax values over the whole range
  std::mt19937_64 g(99);
  std::uniform_real_distribution<float> lg(-14.0f, 13.0f);
  for (int i = 0; i < 200000; ++i) {
    const float a = std::exp2(lg(g));
    INFO("amax " << a);
    REQUIRE(int(spmla::fp4_tile_scale_e4m3(a, false)) == scale_model(a, false));
  }
}

TEST_CASE("fp4: a whole tile quantized and dequantized (SPEC's recipe, model vs numerics)", "[fp4]") {
  std::mt19937_64 g(4242);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::uniform_int_distribution<int> ex(-20, 12);
  for (int rep = 0; rep < 20000; ++rep) {
    float x[16];
    const float mag = std::ldexp(1.0f, ex(g));
    for (float &v : x) v = spmla::bf16_to_f32(spmla::f32_to_bf16(n(g) * mag));
    float amax = 0;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    const int sb = scale_model(amax, false);
    const float s = float(e4m3fn_model(sb));
    REQUIRE(int(spmla::fp4_tile_scale_e4m3(amax, false)) == sb);
    for (float v : x) {
      const int code = e2m1_encode_model(v / s);
      REQUIRE(int(spmla::f32_to_fp4_e2m1(v / s)) == code);
      // the error of a dequantized value is at most half a grid step times the scale, or the
      // saturation (|v / s| > 6 only when the scale rounded down)
      const double deq = e2m1_model(code) * double(s);
      const double step = std::fabs(v / s) < 2 ? 0.25 : std::fabs(v / s) < 4 ? 0.5 : 1.0;
      if (std::fabs(v / s) <= 6) CHECK(std::fabs(deq - v) <= step * s * (1 + 1e-6));
    }
  }
}
