// cdna_model.h — CPU models of the CDNA instructions that backends/hip/emu/cdna_emu.cuh emulates,
// written from AMD's documentation, not from the emulation: the oracle of the emulated build's
// instruction tests (test_gpu_cdna_emu.cpp) and of the host-only check (cdna_model_check.cpp).
// Plain C++ (no CUDA): a wavefront is an array of 64 lanes.
//
// Sources:
//  - v_mfma_f32_16x16x16_bf16 (CDNA3 ISA, "Matrix fused-multiply-add"; the layouts as AMD's matrix
//    instruction calculator, ROCm/amd_matrix_instruction_calculator, prints them for
//    `--architecture cdna3 --instruction v_mfma_f32_16x16x16_bf16 -A -B -D`):
//      A[i][k] in lane i + 16 * (k / 4), item k % 4   (items 0,1 in the first VGPR, 2,3 in the second)
//      B[k][j] in lane j + 16 * (k / 4), item k % 4
//      C[i][j], D[i][j] in lane j + 16 * (i / 4), register i % 4
//    D = A B + C with fp32 accumulation (bf16 products are exact in fp32).
//  - v_mfma_f32_16x16x32_bf16 (gfx950 only; CDNA4 ISA "Matrix fused-multiply-add"). The calculator
//    (ROCm/amd_matrix_instruction_calculator, last commit 2025-05) has no CDNA4 entries; the
//    layout is the one AMD's Composable Kernel programs for this instruction
//    (ck_tile WarpGemmAttributeMfmaImplBf16Bf16F32M16N16K32: kAMLane = kBNLane = 16, kABKLane 4,
//    kABKPerLane 8; C as the 16x16x16 form: kCMLane 4, kCNLane 16, kCM1PerLane 4), the pattern the
//    calculator prints for the same-shape CDNA3 instruction `--architecture cdna3 --instruction
//    v_mfma_f32_16x16x32_fp8_fp8 -A -B -D` (eight items per lane, K split into 4 lane groups):
//      A[i][k] in lane i + 16 * (k / 8), item k % 8  (items 2v, 2v+1 in VGPR v, low half first)
//      B[k][j] in lane j + 16 * (k / 8), item k % 8
//      C[i][j], D[i][j] in lane j + 16 * (i / 4), register i % 4
//  - v_cvt_pk_f32_fp8 src, word_sel (CDNA3 ISA "VOP1/VOP3"; CDNA4 for gfx950):
//      D.f32[0] = fp8(src[16 sel + 7 : 16 sel]), D.f32[1] = fp8(src[16 sel + 15 : 16 sel + 8]);
//    gfx942 reads E4M3FNUZ (bias 8, 0x80 = NaN, no infinities, no negative zero), gfx950 the OCP
//    E4M3FN (bias 7, S.1111.111 = NaN, no infinities); subnormals (E = 0) are M/8 * 2^(1 - bias).
//  - cross-lane: ds_bpermute_b32 (lane l reads lane (addr_l >> 2) mod 64 of the wavefront) and
//    HIP's __shfl/__shfl_up/__shfl_down/__shfl_xor (hip/amd_detail/amd_warp_functions.h), which
//    compute that address from the lane id and width; __ballot: bit l = predicate of lane l.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace cdna_model {

constexpr int kLanes = 64;

inline float bf16(uint16_t h) {
  // bf16 is the top half of an fp32: value = (-1)^s * 2^(e-127) * (1 + m/128), built arithmetically.
  const int s = h >> 15, e = (h >> 7) & 0xff, m = h & 0x7f;
  double v;
  if (e == 0xff) return m ? std::numeric_limits<float>::quiet_NaN() : (s ? -INFINITY : INFINITY);
  if (e == 0)
    v = std::ldexp((double)m / 128.0, -126);
  else
    v = std::ldexp(1.0 + (double)m / 128.0, e - 127);
  return (float)(s ? -v : v);
}

// v_mfma_f32_16x16x16_bf16 on one wavefront: a, b, c, d indexed [lane][item].
inline void mfma_f32_16x16x16_bf16(const uint16_t a[kLanes][4], const uint16_t b[kLanes][4], const float c[kLanes][4],
                                   float d[kLanes][4]) {
  double A[16][16], B[16][16], C[16][16];
  for (int i = 0; i < 16; ++i)
    for (int k = 0; k < 16; ++k) A[i][k] = bf16(a[i + 16 * (k / 4)][k % 4]);
  for (int k = 0; k < 16; ++k)
    for (int j = 0; j < 16; ++j) B[k][j] = bf16(b[j + 16 * (k / 4)][k % 4]);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) C[i][j] = c[j + 16 * (i / 4)][i % 4];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      double s = C[i][j];
      for (int k = 0; k < 16; ++k) s += A[i][k] * B[k][j];
      d[j + 16 * (i / 4)][i % 4] = (float)s;
    }
}
// The error bound of an fp32 evaluation of one D element against the model: sum |a b| + |c|.
inline void mfma_magnitudes(const uint16_t a[kLanes][4], const uint16_t b[kLanes][4], const float c[kLanes][4],
                            double mag[kLanes][4]) {
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      double s = std::fabs((double)c[j + 16 * (i / 4)][i % 4]);
      for (int k = 0; k < 16; ++k)
        s += std::fabs((double)bf16(a[i + 16 * (k / 4)][k % 4]) * bf16(b[j + 16 * (k / 4)][k % 4]));
      mag[j + 16 * (i / 4)][i % 4] = s;
    }
}

// v_mfma_f32_16x16x32_bf16 on one wavefront: a, b indexed [lane][item 0..7], c, d [lane][reg].
inline void mfma_f32_16x16x32_bf16(const uint16_t a[kLanes][8], const uint16_t b[kLanes][8], const float c[kLanes][4],
                                   float d[kLanes][4]) {
  double A[16][32], B[32][16], C[16][16];
  for (int i = 0; i < 16; ++i)
    for (int k = 0; k < 32; ++k) A[i][k] = bf16(a[i + 16 * (k / 8)][k % 8]);
  for (int k = 0; k < 32; ++k)
    for (int j = 0; j < 16; ++j) B[k][j] = bf16(b[j + 16 * (k / 8)][k % 8]);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) C[i][j] = c[j + 16 * (i / 4)][i % 4];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      double s = C[i][j];
      for (int k = 0; k < 32; ++k) s += A[i][k] * B[k][j];
      d[j + 16 * (i / 4)][i % 4] = (float)s;
    }
}
inline void mfma_x32_magnitudes(const uint16_t a[kLanes][8], const uint16_t b[kLanes][8], const float c[kLanes][4],
                                double mag[kLanes][4]) {
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      double s = std::fabs((double)c[j + 16 * (i / 4)][i % 4]);
      for (int k = 0; k < 32; ++k)
        s += std::fabs((double)bf16(a[i + 16 * (k / 8)][k % 8]) * bf16(b[j + 16 * (k / 8)][k % 8]));
      mag[j + 16 * (i / 4)][i % 4] = s;
    }
}

// FP8 E4M3 code -> value; fnuz: E4M3FNUZ (gfx942), else OCP E4M3FN (gfx950).
inline double fp8(uint8_t code, bool fnuz) {
  const int bias = fnuz ? 8 : 7;
  if (fnuz && code == 0x80) return std::numeric_limits<double>::quiet_NaN();
  if (!fnuz && (code & 0x7f) == 0x7f) return std::numeric_limits<double>::quiet_NaN();
  const int s = code >> 7, E = (code >> 3) & 15, M = code & 7;
  const double mag = E == 0 ? (M / 8.0) * std::pow(2.0, 1 - bias) : (1.0 + M / 8.0) * std::pow(2.0, E - bias);
  return s ? -mag : mag;
}
inline void cvt_pk_f32_fp8(uint32_t src, bool word_sel, bool fnuz, double out[2]) {
  const uint32_t w = word_sel ? src >> 16 : src;
  out[0] = fp8((uint8_t)(w & 0xff), fnuz);
  out[1] = fp8((uint8_t)((w >> 8) & 0xff), fnuz);
}

// ds_bpermute_b32 with the per-lane byte address HIP's shuffles compute (index << 2).
inline void bpermute(const uint32_t src[kLanes], const int index[kLanes], uint32_t dst[kLanes]) {
  for (int l = 0; l < kLanes; ++l) dst[l] = src[((index[l] << 2) >> 2) & 63];
}
enum Shfl { kIdx = 0, kUp = 1, kDown = 2, kXor = 3 };
// Source lane of lane `self` (HIP's formulas; arg: src lane, delta or mask).
inline int shfl_index(Shfl op, int self, int arg, int width) {
  switch (op) {
    case kIdx: return (arg & (width - 1)) + (self & ~(width - 1));
    case kUp: {
      const int i = self - arg;
      return i < (self & ~(width - 1)) ? self : i;
    }
    case kDown: {
      const int i = self + arg;
      return (int)((self & (width - 1)) + arg) >= width ? self : i;
    }
    default: {
      const int i = self ^ arg;
      return i >= ((self + width) & ~(width - 1)) ? self : i;
    }
  }
}
inline uint64_t ballot(const bool pred[kLanes], int lanes_present = kLanes) {
  uint64_t m = 0;
  for (int l = 0; l < lanes_present; ++l) m |= (uint64_t)pred[l] << l;
  return m;
}

// The hand-worked 16x16x16 case (also in cdna_model_check.cpp and the GPU test): A is the
// permutation A[i][k] = (k == (i + 1) % 16), B[k][j] = 16 k + j, C = 0 but C[10][5] = 0.5, so
// D[i][j] = 16 ((i + 1) % 16) + j (+ 0.5 at [10][5]). Registers per lane, as the layouts give them.
inline void hand_case(uint16_t a[kLanes][4], uint16_t b[kLanes][4], float c[kLanes][4]) {
  for (int l = 0; l < kLanes; ++l)
    for (int j = 0; j < 4; ++j) {
      a[l][j] = 0;
      c[l][j] = 0.f;
      // B[k][col] = 16 k + col with k = 4 (l / 16) + j, col = l % 16, as bf16 (exact: <= 255)
      const float v = (float)(16 * (4 * (l / 16) + j) + l % 16);
      uint32_t u;
      std::memcpy(&u, &v, 4);
      b[l][j] = (uint16_t)(u >> 16);
    }
  // A[i][(i+1)%16] = 1 (bf16 0x3f80): lane i + 16 * (k / 4), item k % 4 with k = (i + 1) % 16.
  static const int kOnes[16][2] = {{0, 1},  {1, 2},  {2, 3},  {19, 0}, {20, 1}, {21, 2}, {22, 3}, {39, 0},
                                   {40, 1}, {41, 2}, {42, 3}, {59, 0}, {60, 1}, {61, 2}, {62, 3}, {15, 0}};
  for (const auto &o : kOnes) a[o[0]][o[1]] = 0x3f80;
  c[5 + 16 * 2][2] = 0.5f;  // C[10][5]: lane 5 + 16 * (10 / 4) = 37, register 10 % 4 = 2
}
// Expected D registers of the hand case for some lanes, written out: {lane, d0, d1, d2, d3}.
struct HandRow {
  int lane;
  float d[4];
};
constexpr HandRow kHandExpect[] = {
    {0, {16, 32, 48, 64}},      // rows 0-3, col 0: B rows 1-4
    {1, {17, 33, 49, 65}},      // col 1
    {15, {31, 47, 63, 79}},     // col 15
    {16, {80, 96, 112, 128}},   // rows 4-7, col 0: B rows 5-8
    {37, {149, 165, 181.5f, 197}},  // rows 8-11, col 5: B rows 9-12, + C[10][5] = 0.5
    {48, {208, 224, 240, 0}},   // rows 12-15, col 0: B rows 13, 14, 15, 0 (the wrap-around)
    {63, {223, 239, 255, 15}},  // rows 12-15, col 15
};

// The hand-worked 16x16x32 case: A[i][k] = (k == sel(i)) with sel(i) = (5 i + 3) mod 32 (every
// item 0..7 and every lane group 0..3 is hit once per 8 rows), B[k][j] = (k + 1) 2^j (exact in
// bf16: at most 6 significant bits), C = 0 but C[10][5] = 0.5, so D[i][j] = (sel(i) + 1) 2^j
// (+ 0.5 at [10][5]): the value names the k that was picked, its power of two the column.
inline int hand_x32_sel(int i) { return (5 * i + 3) % 32; }
inline void hand_case_x32(uint16_t a[kLanes][8], uint16_t b[kLanes][8], float c[kLanes][4]) {
  for (int l = 0; l < kLanes; ++l) {
    for (int e = 0; e < 8; ++e) {
      a[l][e] = 0;
      // B[k][col] with k = 8 (l / 16) + e, col = l % 16
      const float v = std::ldexp((float)(8 * (l / 16) + e + 1), l % 16);
      uint32_t u;
      std::memcpy(&u, &v, 4);
      b[l][e] = (uint16_t)(u >> 16);
    }
    for (int j = 0; j < 4; ++j) c[l][j] = 0.f;
  }
  // A[i][sel(i)] = 1 (bf16 0x3f80) sits in lane i + 16 (sel / 8), item sel % 8: {lane, item} for
  // i = 0..15 (sel = 3, 8, 13, 18, 23, 28, 1, 6, 11, 16, 21, 26, 31, 4, 9, 14).
  static const int kOnes[16][2] = {{0, 3},  {17, 0}, {18, 5}, {35, 2}, {36, 7}, {53, 4}, {6, 1},  {7, 6},
                                   {24, 3}, {41, 0}, {42, 5}, {59, 2}, {60, 7}, {13, 4}, {30, 1}, {31, 6}};
  for (const auto &o : kOnes) a[o[0]][o[1]] = 0x3f80;
  c[5 + 16 * 2][2] = 0.5f;  // C[10][5]: lane 5 + 16 * (10 / 4) = 37, register 10 % 4 = 2
}
// Expected D registers of the 16x16x32 hand case for some lanes: lane 16 q + c holds rows 4 q + j
// of column c, i.e. (sel(4 q + j) + 1) 2^c.
constexpr HandRow kHandExpectX32[] = {
    {0, {4, 9, 14, 19}},                              // rows 0-3 (k = 3, 8, 13, 18), col 0
    {1, {8, 18, 28, 38}},                             // col 1: x 2
    {15, {131072, 294912, 458752, 622592}},           // col 15: x 2^15
    {16, {24, 29, 2, 7}},                             // rows 4-7 (k = 23, 28, 1, 6), col 0
    {37, {384, 544, 704.5f, 864}},                    // rows 8-11 (k = 11, 16, 21, 26), col 5, + C[10][5]
    {48, {32, 5, 10, 15}},                            // rows 12-15 (k = 31, 4, 9, 14), col 0
    {63, {1048576, 163840, 327680, 491520}},          // rows 12-15, col 15
};

}  // namespace cdna_model
