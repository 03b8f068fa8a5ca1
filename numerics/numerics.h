// numerics.h — scalar number formats of spmla (docs/SPEC.md "Number formats"), header-only.
//
// bf16 / fp16 <-> fp32, FP8 E4M3FN and E4M3FNUZ decode and encode, UE8M0 scales, FP4 E2M1
// decode and encode with the V4.1 FP4 tile scale. Everything is
// done on bit patterns with integer arithmetic, so the results are exact and identical on every
// host and device (no dependence on the FPU's rounding mode, FTZ/DAZ or the compiler's fast-math).
// Usable from C++17 host code and from CUDA / HIP (host and device) code: every function is
// marked SPMLA_HD and uses only integer ops plus memcpy-based bit casts.
//
// Conventions, bit-exact with ../shared/vectors/fp8_codes.tsv and fp8_encode.tsv (torch's casts):
//  - bf16 / fp16 encode: round to nearest even; NaN stays NaN (sign and top payload bits are kept,
//    the quiet bit is forced so that a payload never truncates to infinity); overflow gives inf.
//  - FP8 encode: x is rounded to nearest even on the FP8 grid; |x| beyond the largest finite
//    value (including +-inf) saturates to +-max finite (448 for E4M3FN, 240 for E4M3FNUZ), as
//    docs/SPEC.md demands (torch would give NaN for inf; SPEC says saturate, so we saturate);
//    NaN gives the NaN code: E4M3FN 0x7F / 0xFF by sign (as torch does), E4M3FNUZ 0x80.
//    Zero sign: E4M3FN keeps it (-0 and negatives rounding to zero give 0x80); E4M3FNUZ has no
//    -0, so they give 0x00.
//  - UE8M0: value 2^(e-127), 0xFF is NaN; byte 0 is the fp32 subnormal 2^-127.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define SPMLA_HD __host__ __device__ __forceinline__
#else
#define SPMLA_HD inline
#endif

namespace spmla {

// ---------------------------------------------------------------------------------------------
// bit casts
// ---------------------------------------------------------------------------------------------
SPMLA_HD uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
SPMLA_HD float f32_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

// ---------------------------------------------------------------------------------------------
// bf16
// ---------------------------------------------------------------------------------------------
SPMLA_HD float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

SPMLA_HD uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) {          // NaN: keep sign and top payload, force quiet
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  }
  // Round to nearest even on the 16 dropped bits; a carry into the exponent is the right answer
  // (also for overflow to inf).
  uint32_t lsb = (u >> 16) & 1u;
  u += 0x7FFFu + lsb;
  return static_cast<uint16_t>(u >> 16);
}

// ---------------------------------------------------------------------------------------------
// fp16 (IEEE binary16)
// ---------------------------------------------------------------------------------------------
SPMLA_HD float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t man = h & 0x3FFu;
  if (exp == 0x1F) return f32_from_bits(sign | 0x7F800000u | (man << 13));  // inf / NaN
  if (exp == 0) {
    if (man == 0) return f32_from_bits(sign);
    // subnormal: man * 2^-24, normalise
    int e = -1;
    do {
      man <<= 1;
      ++e;
    } while ((man & 0x400u) == 0);
    man &= 0x3FFu;
    return f32_from_bits(sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | (man << 13));
  }
  return f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}

// Shifts `v` right by `s` bits rounding to nearest even (s may exceed 31).
SPMLA_HD uint32_t rne_shift_right(uint32_t v, int s) {
  if (s <= 0) return v;
  if (s > 32) return 0;
  uint64_t w = v;
  uint64_t q = w >> s;
  uint64_t rem = w & ((uint64_t(1) << s) - 1);
  uint64_t half = uint64_t(1) << (s - 1);
  if (rem > half || (rem == half && (q & 1))) ++q;
  return static_cast<uint32_t>(q);
}

SPMLA_HD uint16_t f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
  if (a == 0x7F800000u) return static_cast<uint16_t>(sign | 0x7C00u);
  int e = static_cast<int>(a >> 23) - 127;  // unbiased fp32 exponent
  uint32_t sig = (a & 0x7FFFFFu) | (e > -127 ? 0x800000u : 0u);
  if (e == -127) e = -126;  // fp32 subnormal
  uint32_t code;
  if (e >= -14) {
    // normal fp16: code = ((e+15) << 10 | top 10 mantissa bits) rounded; carries are correct
    code = (static_cast<uint32_t>(e + 15) << 10) + rne_shift_right(sig, 13) - 0x400u;
    if (code >= 0x7C00u) code = 0x7C00u;  // overflow -> inf
  } else {
    // subnormal fp16: units of 2^-24; sig is in units of 2^(e-23)
    code = rne_shift_right(sig, (-14 - e) + 13);
  }
  return static_cast<uint16_t>(sign | code);
}

// ---------------------------------------------------------------------------------------------
// FP8 E4M3 (FN: bias 7, max 448, NaN S.1111.111; FNUZ: bias 8, max 240, NaN 0x80 only)
// ---------------------------------------------------------------------------------------------
enum class Fp8Kind : int { E4M3FN = 0, E4M3FNUZ = 1 };

SPMLA_HD float fp8_max_finite(Fp8Kind k) { return k == Fp8Kind::E4M3FN ? 448.0f : 240.0f; }

// Decodes one FP8 byte. The value is built from bits: (1.m) * 2^(e-bias), or m * 2^(1-bias-3).
SPMLA_HD float fp8_e4m3_to_f32(uint8_t b, Fp8Kind kind) {
  const int bias = kind == Fp8Kind::E4M3FN ? 7 : 8;
  const uint32_t sign = static_cast<uint32_t>(b & 0x80u) << 24;
  if (kind == Fp8Kind::E4M3FN) {
    if ((b & 0x7Fu) == 0x7Fu) return f32_from_bits(sign | 0x7FC00000u);
  } else {
    if (b == 0x80u) return f32_from_bits(0x7FC00000u);
  }
  uint32_t e = (b >> 3) & 0xFu;
  uint32_t m = b & 0x7u;
  if (e == 0) {
    if (m == 0) return f32_from_bits(sign);  // FN: 0x80 is -0; FNUZ: 0x80 was NaN above
    // subnormal m * 2^(1-bias-3): normalise m into 1.xxx
    int shift = 0;
    while ((m & 0x8u) == 0) {
      m <<= 1;
      ++shift;
    }
    m &= 0x7u;
    int exp = 1 - bias - shift;  // exponent of the leading 1 (m had its msb at bit 3 after shift)
    return f32_from_bits(sign | (static_cast<uint32_t>(exp + 127) << 23) | (m << 20));
  }
  int exp = static_cast<int>(e) - bias;
  return f32_from_bits(sign | (static_cast<uint32_t>(exp + 127) << 23) | (m << 20));
}

SPMLA_HD float fp8_e4m3fn_to_f32(uint8_t b) { return fp8_e4m3_to_f32(b, Fp8Kind::E4M3FN); }
SPMLA_HD float fp8_e4m3fnuz_to_f32(uint8_t b) { return fp8_e4m3_to_f32(b, Fp8Kind::E4M3FNUZ); }

// Encodes x: round to nearest even, saturating, NaN -> NaN code (see the file comment).
SPMLA_HD uint8_t f32_to_fp8_e4m3(float x, Fp8Kind kind) {
  const int bias = kind == Fp8Kind::E4M3FN ? 7 : 8;
  const uint32_t max_code = kind == Fp8Kind::E4M3FN ? 0x7Eu : 0x7Fu;
  const uint32_t u = f32_bits(x);
  const bool neg = (u >> 31) != 0;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return kind == Fp8Kind::E4M3FN ? (neg ? 0xFFu : 0x7Fu) : 0x80u;
  uint32_t code;
  if (a >= 0x7F800000u) {
    code = max_code;  // inf saturates
  } else {
    int e = static_cast<int>(a >> 23) - 127;
    uint32_t sig = (a & 0x7FFFFFu) | 0x800000u;
    if (e == -127) {  // fp32 subnormal: far below the smallest FP8 subnormal
      sig = a & 0x7FFFFFu;
      e = -126;
    }
    const int min_normal_exp = 1 - bias;
    if (e >= min_normal_exp) {
      // code = (biased exponent << 3) + mantissa, rounding may carry into the exponent
      uint32_t r = rne_shift_right(sig, 20);  // in [8, 16]
      code = (static_cast<uint32_t>(e + bias) << 3) + r - 8u;
      if (e + bias > 16) code = 0xFFFFu;  // far beyond the range: saturate below
    } else {
      // subnormal grid: units of 2^(min_normal_exp-3); sig is in units of 2^(e-23)
      code = rne_shift_right(sig, (min_normal_exp - 3) - (e - 23));
    }
    if (code > max_code) code = max_code;
  }
  if (neg) {
    if (kind == Fp8Kind::E4M3FN) return static_cast<uint8_t>(code | 0x80u);
    return code == 0 ? 0x00u : static_cast<uint8_t>(code | 0x80u);  // FNUZ has no -0
  }
  return static_cast<uint8_t>(code);
}

SPMLA_HD uint8_t f32_to_fp8_e4m3fn(float x) { return f32_to_fp8_e4m3(x, Fp8Kind::E4M3FN); }
SPMLA_HD uint8_t f32_to_fp8_e4m3fnuz(float x) { return f32_to_fp8_e4m3(x, Fp8Kind::E4M3FNUZ); }

// ---------------------------------------------------------------------------------------------
// UE8M0 scales: 2^(e-127), 0xFF NaN
// ---------------------------------------------------------------------------------------------
SPMLA_HD float ue8m0_to_f32(uint8_t e) {
  if (e == 0xFFu) return f32_from_bits(0x7FC00000u);
  if (e == 0) return f32_from_bits(0x00400000u);  // 2^-127, an fp32 subnormal
  return f32_from_bits(static_cast<uint32_t>(e) << 23);
}

// The UE8M0 byte of 2^k, clamped to the representable exponents [-127, 127].
SPMLA_HD uint8_t ue8m0_from_exponent(int k) {
  if (k < -127) k = -127;
  if (k > 127) k = 127;
  return static_cast<uint8_t>(k + 127);
}

// The UE8M0 byte of a power of two p (the exponent of p's leading bit for other positive
// values, i.e. floor(log2 p)); NaN, inf, zero and negatives give 0xFF (NaN).
SPMLA_HD uint8_t ue8m0_from_pow2(float p) {
  uint32_t u = f32_bits(p);
  if ((u >> 31) != 0 || u == 0 || u >= 0x7F800000u) return 0xFFu;
  int e = static_cast<int>(u >> 23);
  if (e == 0) {  // subnormal: only 2^-127 (bit 22) is representable; smaller clamp to it
    return 0;
  }
  return ue8m0_from_exponent(e - 127);
}

// ceil(log2(r)) of a positive finite float, exactly (bit-based, no libm rounding).
SPMLA_HD int ceil_log2_exact(float r) {
  uint32_t u = f32_bits(r);
  int e = static_cast<int>((u >> 23) & 0xFFu);
  uint32_t man = u & 0x7FFFFFu;
  if (e == 0) {  // subnormal: r = man * 2^-149
    int msb = 31;
    while (msb >= 0 && ((man >> msb) & 1u) == 0) --msb;
    if (msb < 0) return -149;  // zero: not expected, callers guard
    bool pow2 = (man & (man - 1u)) == 0;
    return msb - 149 + (pow2 ? 0 : 1);
  }
  return (e - 127) + (man != 0 ? 1 : 0);
}

// The per-tile power-of-two quantization scale of docs/SPEC.md / FlashMLA's quant.py:
//   scale = 2^ceil(log2(max(amax / fp8_max, 1e-4)))
// amax / fp8_max is computed in fp32 (as quant.py does in torch fp32), then ceil(log2(.)) is taken
// exactly from the bits (a power of two maps to itself). Returns the exponent k (scale = 2^k).
SPMLA_HD int tile_scale_exponent(float amax, Fp8Kind kind) {
  float r = amax / fp8_max_finite(kind);
  const float floor_ratio = 1e-4f;
  if (!(r > floor_ratio)) r = floor_ratio;  // also maps NaN amax to the floor
  return ceil_log2_exact(r);
}

// ---------------------------------------------------------------------------------------------
// FP4 E2M1 (OCP MX: 1 sign, 2 exponent bits of bias 1, 1 mantissa bit; no inf, no NaN) and the
// DeepSeek-V4.1 FP4 tile scale (docs/SPEC.md "V4.1 cache layouts")
// ---------------------------------------------------------------------------------------------
// Magnitudes by the 3 low bits: 0, 0.5, 1, 1.5, 2, 3, 4, 6; bit 3 is the sign (0x8 is -0).
SPMLA_HD float fp4_e2m1_to_f32(uint8_t code) {
  const uint32_t m = code & 0x7u;
  // (1.m) * 2^(e-1) for e = m >> 1 >= 1; the subnormal 0.5 * (m & 1) for e = 0: built from bits.
  uint32_t bits;
  if (m == 0) bits = 0;
  else if (m == 1) bits = 0x3F000000u;                            // 0.5
  else bits = ((126u + (m >> 1)) << 23) | ((m & 1u) << 22);       // 2^(e-1) * (1 + m/2)
  return f32_from_bits(bits | (static_cast<uint32_t>(code & 0x8u) << 28));
}

// e2m1_rne_satfinite(x): round to nearest even on the E2M1 grid, |x| > 6 (and +-inf) saturate to
// +-6 (PTX cvt.rn.satfinite.e2m1x2.f32). The sign is kept (-0 and negatives rounding to 0 give
// 0x8). NaN has no E2M1 code: it gives 0x7 (+6); SPEC leaves a NaN tile's codes unspecified
// (its scale is NaN). The decision points are the grid's midpoints, compared exactly in fp32.
SPMLA_HD uint8_t f32_to_fp4_e2m1(float x) {
  const uint32_t u = f32_bits(x);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return 0x7u;
  const float m = f32_from_bits(a);
  uint8_t c;
  if (m <= 0.25f) c = 0;        // tie 0.25 -> 0 (even)
  else if (m < 0.75f) c = 1;    // tie 0.75 -> 1.0 (code 2, even)
  else if (m <= 1.25f) c = 2;   // tie 1.25 -> 1.0
  else if (m < 1.75f) c = 3;    // tie 1.75 -> 2.0
  else if (m <= 2.5f) c = 4;    // tie 2.5 -> 2.0
  else if (m < 3.5f) c = 5;     // tie 3.5 -> 4.0
  else if (m <= 5.0f) c = 6;    // tie 5 -> 4.0
  else c = 7;                   // (5, inf]: 6, saturating
  return static_cast<uint8_t>(c | ((u >> 28) & 0x8u));
}

// The E4M3FN byte of a V41_FP4 tile's scale: e4m3_rne(clamp(amax / 6, 2^-9, 448)), amax / 6 in
// fp32; a tile holding a NaN or an inf (`nonfinite`) gets the NaN byte 0x7F.
SPMLA_HD uint8_t fp4_tile_scale_e4m3(float amax, bool nonfinite) {
  if (nonfinite) return 0x7Fu;
  float r = amax / 6.0f;
  const float lo = f32_from_bits(0x3B000000u);  // 2^-9, the smallest E4M3FN subnormal
  if (!(r >= lo)) r = lo;
  if (r > 448.0f) r = 448.0f;
  return f32_to_fp8_e4m3(r, Fp8Kind::E4M3FN);
}

// 2^k as a float for k in [-149, 127].
SPMLA_HD float exp2_int(int k) {
  if (k >= -126) return f32_from_bits(static_cast<uint32_t>(k + 127) << 23);
  return f32_from_bits(1u << (k + 149));
}

}  // namespace spmla
