// cdna_model_check.cpp — the CPU models of cdna_model.h against hand-computed cases, on the host
// (no GPU, every CI run): the oracle of the emulated build's instruction tests is itself checked.
// Exit 0 when every case holds, 1 otherwise (each failure printed).
#include <cmath>
#include <cstdio>
#include <cstring>

#include "cdna_model.h"

namespace {

int g_fail = 0;
void expect(bool ok, const char *what, double got, double want) {
  if (!ok) {
    ++g_fail;
    std::printf("FAIL %s: got %.9g, want %.9g\n", what, got, want);
  }
}
bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || (a == b && std::signbit(a) == std::signbit(b)); }

void mfma_hand() {
  static uint16_t a[64][4], b[64][4];
  static float c[64][4], d[64][4];
  cdna_model::hand_case(a, b, c);
  cdna_model::mfma_f32_16x16x16_bf16(a, b, c, d);
  for (const auto &r : cdna_model::kHandExpect)
    for (int j = 0; j < 4; ++j) {
      char w[64];
      std::snprintf(w, sizeof w, "mfma hand case lane %d reg %d", r.lane, j);
      expect(d[r.lane][j] == r.d[j], w, d[r.lane][j], r.d[j]);
    }
  // Every lane: D[i][j] = 16 ((i + 1) % 16) + j in lane j + 16 (i / 4), register i % 4.
  for (int l = 0; l < 64; ++l)
    for (int j = 0; j < 4; ++j) {
      const int i = 4 * (l / 16) + j, col = l % 16;
      const double want = 16 * ((i + 1) % 16) + col + (i == 10 && col == 5 ? 0.5 : 0.0);
      expect(d[l][j] == want, "mfma hand case (all lanes)", d[l][j], want);
    }
  // A second hand case: all-ones A, B[k][j] = k -> every D element is 0 + 1 + ... + 15 = 120.
  for (int l = 0; l < 64; ++l)
    for (int j = 0; j < 4; ++j) {
      a[l][j] = 0x3f80;
      const float v = (float)(4 * (l / 16) + j);
      uint32_t u;
      std::memcpy(&u, &v, 4);
      b[l][j] = (uint16_t)(u >> 16);
      c[l][j] = 0.f;
    }
  cdna_model::mfma_f32_16x16x16_bf16(a, b, c, d);
  for (int l = 0; l < 64; ++l)
    for (int j = 0; j < 4; ++j) expect(d[l][j] == 120.f, "mfma all-ones case", d[l][j], 120);
}

void mfma_x32_hand() {
  static uint16_t a[64][8], b[64][8];
  static float c[64][4], d[64][4];
  cdna_model::hand_case_x32(a, b, c);
  cdna_model::mfma_f32_16x16x32_bf16(a, b, c, d);
  for (const auto &r : cdna_model::kHandExpectX32)
    for (int j = 0; j < 4; ++j) {
      char w[64];
      std::snprintf(w, sizeof w, "mfma x32 hand case lane %d reg %d", r.lane, j);
      expect(d[r.lane][j] == r.d[j], w, d[r.lane][j], r.d[j]);
    }
  // Every lane: D[i][j] = (sel(i) + 1) 2^j in lane j + 16 (i / 4), register i % 4.
  for (int l = 0; l < 64; ++l)
    for (int j = 0; j < 4; ++j) {
      const int i = 4 * (l / 16) + j, col = l % 16;
      const double want = std::ldexp((double)(cdna_model::hand_x32_sel(i) + 1), col) + (i == 10 && col == 5 ? 0.5 : 0.0);
      expect(d[l][j] == want, "mfma x32 hand case (all lanes)", d[l][j], want);
    }
  // All-ones A, B[k][j] = k -> every D element is 0 + 1 + ... + 31 = 496 (each k used once).
  for (int l = 0; l < 64; ++l) {
    for (int e = 0; e < 8; ++e) {
      a[l][e] = 0x3f80;
      const float v = (float)(8 * (l / 16) + e);
      uint32_t u;
      std::memcpy(&u, &v, 4);
      b[l][e] = (uint16_t)(u >> 16);
    }
    for (int j = 0; j < 4; ++j) c[l][j] = 0.f;
  }
  cdna_model::mfma_f32_16x16x32_bf16(a, b, c, d);
  for (int l = 0; l < 64; ++l)
    for (int j = 0; j < 4; ++j) expect(d[l][j] == 496.f, "mfma x32 all-ones case", d[l][j], 496);
}

void fp8_hand() {
  struct Case {
    uint8_t code;
    double fnuz, fn;
  };
  const double nan = std::nan("");
  const Case cases[] = {
      {0x00, 0.0, 0.0},
      {0x80, nan, -0.0},
      {0x01, 0.0009765625, 0.001953125},  // smallest subnormal: 2^-10 / 2^-9
      {0x07, 7 * 0.0009765625, 7 * 0.001953125},
      {0x08, 0.0078125, 0.015625},        // smallest normal: 2^-7 / 2^-6
      {0x38, 0.5, 1.0},
      {0x40, 1.0, 2.0},
      {0x7e, 224.0, 448.0},
      {0x7f, 240.0, nan},
      {0xff, -240.0, nan},
      {0xc4, -1.5, -3.0},
  };
  for (const Case &c : cases) {
    char w[64];
    std::snprintf(w, sizeof w, "fp8 0x%02x FNUZ", c.code);
    expect(same(cdna_model::fp8(c.code, true), c.fnuz), w, cdna_model::fp8(c.code, true), c.fnuz);
    std::snprintf(w, sizeof w, "fp8 0x%02x FN", c.code);
    expect(same(cdna_model::fp8(c.code, false), c.fn), w, cdna_model::fp8(c.code, false), c.fn);
  }
  double o[2];
  cdna_model::cvt_pk_f32_fp8(0x7e40c438u, false, false, o);  // bytes 0x38, 0xc4 -> 1.0, -3.0 (FN)
  expect(o[0] == 1.0 && o[1] == -3.0, "cvt_pk word 0", o[0], 1.0);
  cdna_model::cvt_pk_f32_fp8(0x7e40c438u, true, true, o);  // bytes 0x40, 0x7e -> 1.0, 224 (FNUZ)
  expect(o[0] == 1.0 && o[1] == 224.0, "cvt_pk word 1", o[1], 224.0);
}

void shfl_hand() {
  using cdna_model::shfl_index;
  // __shfl(v, 3, 16): lane 37 reads lane 32 + 3; __shfl(v, 70, 64): lane 5 reads lane 6.
  expect(shfl_index(cdna_model::kIdx, 37, 3, 16) == 35, "shfl idx", shfl_index(cdna_model::kIdx, 37, 3, 16), 35);
  expect(shfl_index(cdna_model::kIdx, 5, 70, 64) == 6, "shfl idx wrap", shfl_index(cdna_model::kIdx, 5, 70, 64), 6);
  // __shfl_up(v, 4, 64): lane 33 reads 29 (across the half-wave), lane 2 keeps its own.
  expect(shfl_index(cdna_model::kUp, 33, 4, 64) == 29, "shfl_up", shfl_index(cdna_model::kUp, 33, 4, 64), 29);
  expect(shfl_index(cdna_model::kUp, 2, 4, 64) == 2, "shfl_up edge", shfl_index(cdna_model::kUp, 2, 4, 64), 2);
  expect(shfl_index(cdna_model::kUp, 34, 4, 32) == 34, "shfl_up width 32", shfl_index(cdna_model::kUp, 34, 4, 32), 34);
  // __shfl_down(v, 8, 16): lane 9 keeps its own (9 % 16 + 8 >= 16), lane 4 reads 12.
  expect(shfl_index(cdna_model::kDown, 9, 8, 16) == 9, "shfl_down edge", shfl_index(cdna_model::kDown, 9, 8, 16), 9);
  expect(shfl_index(cdna_model::kDown, 4, 8, 16) == 12, "shfl_down", shfl_index(cdna_model::kDown, 4, 8, 16), 12);
  // __shfl_xor(v, 32, 64): lane 3 <-> 35; __shfl_xor(v, 32, 16) stays (a later group), lane 40
  // with mask 32 reads lane 8 (an earlier group is allowed).
  expect(shfl_index(cdna_model::kXor, 3, 32, 64) == 35, "shfl_xor", shfl_index(cdna_model::kXor, 3, 32, 64), 35);
  expect(shfl_index(cdna_model::kXor, 3, 32, 16) == 3, "shfl_xor later", shfl_index(cdna_model::kXor, 3, 32, 16), 3);
  expect(shfl_index(cdna_model::kXor, 40, 32, 16) == 8, "shfl_xor earlier", shfl_index(cdna_model::kXor, 40, 32, 16), 8);
  bool p[64] = {};
  p[0] = p[33] = p[63] = true;
  const uint64_t m = cdna_model::ballot(p);
  expect(m == 0x8000000200000001ull, "ballot", (double)m, (double)0x8000000200000001ull);
}

}  // namespace

int main() {
  mfma_hand();
  mfma_x32_hand();
  fp8_hand();
  shfl_hand();
  if (g_fail) {
    std::printf("cdna_model_check: %d failure(s)\n", g_fail);
    return 1;
  }
  std::printf("cdna_model_check: the CDNA instruction models agree with every hand-computed case\n");
  return 0;
}
