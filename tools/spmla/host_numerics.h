// host_numerics.h — the CLI's own number formats, written from the table in docs/SPEC.md ("Number
// formats") and independent of numerics/numerics.h, so `spmla run` checks the library against a second
// implementation rather than against itself.
#pragma once
#include <spmla.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace spmla_cli {

// bf16: the top half of an fp32, rounded to nearest even; NaN stays a quiet NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_f32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

// E4M3FN (OCP): 1-4-3, bias 7, S.1111.111 is NaN, no infinities, max 448.
inline double decode_e4m3fn(uint8_t b) {
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s ? -mag : mag;
}
// E4M3FNUZ (gfx942): 1-4-3, bias 8, only 0x80 is NaN, no -0, max 240.
inline double decode_e4m3fnuz(uint8_t b) {
  if (b == 0x80) return std::numeric_limits<double>::quiet_NaN();
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  const double mag = e == 0 ? std::ldexp(m / 8.0, -7) : std::ldexp(1.0 + m / 8.0, e - 8);
  return s ? -mag : mag;
}
inline double decode_fp8(uint8_t b, spmla_fp8_flavor_t f) {
  return f == SPMLA_FP8_E4M3FNUZ ? decode_e4m3fnuz(b) : decode_e4m3fn(b);
}
inline double fp8_max(spmla_fp8_flavor_t f) { return f == SPMLA_FP8_E4M3FNUZ ? 240.0 : 448.0; }
// UE8M0 scale: 2^(e-127), 0xFF is NaN.
inline double decode_ue8m0(uint8_t e) {
  return e == 0xFF ? std::numeric_limits<double>::quiet_NaN() : std::ldexp(1.0, int(e) - 127);
}

// Encoder by table: the 128 non-negative codes of a flavor sorted by value; a value is rounded
// to the nearest representable magnitude, ties to the even code, saturated to the max finite.
class Fp8Encoder {
 public:
  explicit Fp8Encoder(spmla_fp8_flavor_t f) : flavor_(f) {
    int n = 0;
    for (int c = 0; c < 128; ++c) {
      const double v = decode_fp8(static_cast<uint8_t>(c), f);
      if (std::isnan(v)) continue;
      vals_[n] = v;
      codes_[n] = static_cast<uint8_t>(c);
      ++n;
    }
    n_ = n;  // codes 0..127 are already in increasing order of value
  }
  uint8_t encode(double x) const {
    if (std::isnan(x)) return flavor_ == SPMLA_FP8_E4M3FNUZ ? 0x80 : 0x7f;
    const bool neg = std::signbit(x);
    const double a = std::min(std::fabs(x), vals_[n_ - 1]);
    const double *hi = std::lower_bound(vals_.data(), vals_.data() + n_, a);
    int i = static_cast<int>(hi - vals_.data());
    if (i > 0 && vals_[i] != a) {
      const double dlo = a - vals_[i - 1], dhi = vals_[i] - a;
      if (dlo < dhi || (dlo == dhi && (codes_[i - 1] & 1) == 0)) --i;
    }
    uint8_t c = codes_[i];
    if (neg && c != 0) c |= 0x80;  // FNUZ has no -0; for FN, -0 rounds to +0 here, harmless
    return c;
  }
  spmla_fp8_flavor_t flavor() const { return flavor_; }

 private:
  spmla_fp8_flavor_t flavor_;
  std::array<double, 128> vals_{};
  std::array<uint8_t, 128> codes_{};
  int n_ = 0;
};

}  // namespace spmla_cli
