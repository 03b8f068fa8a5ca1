// cdna_emu_host_check.cu — the emulation's own lane arithmetic (backends/hip/emu/cdna_emu.cuh, its
// __host__ __device__ part: shuffle source lanes, the MFMA lane computation from the staged operands,
// the FP8 decode) run on the host against the CPU models of cdna_model.h. No GPU: what this cannot
// see (the shared-memory exchange, the per-wavefront barriers) the GPU tier's [cdna_emu] cases do.
// Built with nvcc in the emulated build (ctest label cpu); exit 0 when everything agrees.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "cdna_model.h"
#include "hip/emu/cdna_emu.cuh"

namespace {

int g_fail = 0;
#define EXPECT(cond, ...)                 \
  do {                                    \
    if (!(cond) && g_fail++ < 20) {       \
      std::printf("FAIL: " __VA_ARGS__); \
      std::printf("\n");                  \
    }                                     \
  } while (0)

// The emulated MFMA of one wavefront, staged as the device stages it.
void emu_mfma(const uint16_t a[64][4], const uint16_t b[64][4], const float c[64][4], float d[64][4]) {
  uint2 s[128];
  for (int l = 0; l < 64; ++l) {
    spmla::emu::bf16x4 av = {(short)a[l][0], (short)a[l][1], (short)a[l][2], (short)a[l][3]};
    spmla::emu::bf16x4 bv = {(short)b[l][0], (short)b[l][1], (short)b[l][2], (short)b[l][3]};
    s[l] = spmla::emu::pack4(av);
    s[64 + l] = spmla::emu::pack4(bv);
  }
  for (int l = 0; l < 64; ++l) {
    const spmla::emu::f32x4 cv = {c[l][0], c[l][1], c[l][2], c[l][3]};
    const spmla::emu::f32x4 dv = spmla::emu::mfma_16x16x16_lane(s, l, cv);
    for (int j = 0; j < 4; ++j) d[l][j] = dv[j];
  }
}

// The emulated v_mfma_f32_16x16x32_bf16 of one wavefront (eight bf16 per lane and operand).
void emu_mfma_x32(const uint16_t a[64][8], const uint16_t b[64][8], const float c[64][4], float d[64][4]) {
  uint4 s[128];
  for (int l = 0; l < 64; ++l) {
    spmla::emu::bf16x8 av, bv;
    for (int e = 0; e < 8; ++e) {
      av[e] = (short)a[l][e];
      bv[e] = (short)b[l][e];
    }
    s[l] = spmla::emu::pack8(av);
    s[64 + l] = spmla::emu::pack8(bv);
  }
  for (int l = 0; l < 64; ++l) {
    const spmla::emu::f32x4 cv = {c[l][0], c[l][1], c[l][2], c[l][3]};
    const spmla::emu::f32x4 dv = spmla::emu::mfma_16x16x32_lane(s, l, cv);
    for (int j = 0; j < 4; ++j) d[l][j] = dv[j];
  }
}

uint16_t bf16_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return (uint16_t)(u >> 16);
}

void mfma() {
  static uint16_t a[64][4], b[64][4];
  static float c[64][4], d[64][4], m[64][4];
  static double mag[64][4];
  cdna_model::hand_case(a, b, c);
  emu_mfma(a, b, c, d);
  for (const auto &r : cdna_model::kHandExpect)
    for (int j = 0; j < 4; ++j) EXPECT(d[r.lane][j] == r.d[j], "mfma hand case lane %d reg %d: %g, want %g", r.lane, j, d[r.lane][j], r.d[j]);
  std::mt19937 rng(12345);
  std::uniform_real_distribution<float> val(-4.f, 4.f);
  std::uniform_int_distribution<int> ex(-5, 5);
  for (int it = 0; it < 2000; ++it) {
    for (int l = 0; l < 64; ++l)
      for (int j = 0; j < 4; ++j) {
        a[l][j] = bf16_of(std::ldexp(val(rng), ex(rng)));
        b[l][j] = bf16_of(std::ldexp(val(rng), ex(rng)));
        c[l][j] = (l + j) % 3 ? std::ldexp(val(rng), ex(rng)) : 0.f;
      }
    emu_mfma(a, b, c, d);
    cdna_model::mfma_f32_16x16x16_bf16(a, b, c, m);
    cdna_model::mfma_magnitudes(a, b, c, mag);
    for (int l = 0; l < 64; ++l)
      for (int j = 0; j < 4; ++j)
        EXPECT(std::fabs((double)d[l][j] - m[l][j]) <= std::ldexp(mag[l][j], -20), "mfma random %d lane %d reg %d: %.9g vs %.9g",
               it, l, j, d[l][j], m[l][j]);
  }
}

void mfma_x32() {
  static uint16_t a[64][8], b[64][8];
  static float c[64][4], d[64][4], m[64][4];
  static double mag[64][4];
  cdna_model::hand_case_x32(a, b, c);
  emu_mfma_x32(a, b, c, d);
  for (const auto &r : cdna_model::kHandExpectX32)
    for (int j = 0; j < 4; ++j)
      EXPECT(d[r.lane][j] == r.d[j], "mfma x32 hand case lane %d reg %d: %g, want %g", r.lane, j, d[r.lane][j], r.d[j]);
  std::mt19937 rng(54321);
  std::uniform_real_distribution<float> val(-4.f, 4.f);
  std::uniform_int_distribution<int> ex(-5, 5);
  for (int it = 0; it < 1000; ++it) {
    for (int l = 0; l < 64; ++l) {
      for (int e = 0; e < 8; ++e) {
        a[l][e] = bf16_of(std::ldexp(val(rng), ex(rng)));
        b[l][e] = bf16_of(std::ldexp(val(rng), ex(rng)));
      }
      for (int j = 0; j < 4; ++j) c[l][j] = (l + j) % 3 ? std::ldexp(val(rng), ex(rng)) : 0.f;
    }
    emu_mfma_x32(a, b, c, d);
    cdna_model::mfma_f32_16x16x32_bf16(a, b, c, m);
    cdna_model::mfma_x32_magnitudes(a, b, c, mag);
    for (int l = 0; l < 64; ++l)
      for (int j = 0; j < 4; ++j)
        EXPECT(std::fabs((double)d[l][j] - m[l][j]) <= std::ldexp(mag[l][j], -20),
               "mfma x32 random %d lane %d reg %d: %.9g vs %.9g", it, l, j, d[l][j], m[l][j]);
  }
}

void fp8() {
  for (int flavor : {1, 2})
    for (uint32_t w = 0; w < 65536; ++w)
      for (int sel = 0; sel < 2; ++sel) {
        const uint32_t src = sel ? w << 16 : w;
        const spmla::emu::f32x2 got = spmla::emu::cvt_pk_f32_fp8_flavor((int)src, sel != 0, flavor);
        double want[2];
        cdna_model::cvt_pk_f32_fp8(src, sel != 0, flavor == 2, want);
        for (int e = 0; e < 2; ++e) {
          const bool ok = std::isnan(want[e]) ? std::isnan(got[e])
                                              : (got[e] == want[e] && std::signbit(got[e]) == std::signbit(want[e]));
          EXPECT(ok, "cvt_pk flavor %d src 0x%08x sel %d elem %d: %g, want %g", flavor, src, sel, e, got[e], want[e]);
        }
      }
}

void shuffles() {
  for (int width = 1; width <= 64; width *= 2)
    for (int self = 0; self < 64; ++self)
      for (int arg = 0; arg < 160; ++arg) {
        using cdna_model::shfl_index;
        EXPECT(spmla::emu::shfl_src(self, arg, width) == shfl_index(cdna_model::kIdx, self, arg, width), "shfl %d %d %d", self, arg, width);
        EXPECT(spmla::emu::shfl_up_src(self, arg, width) == shfl_index(cdna_model::kUp, self, arg, width), "up %d %d %d", self, arg, width);
        EXPECT(spmla::emu::shfl_down_src(self, arg, width) == shfl_index(cdna_model::kDown, self, arg, width), "down %d %d %d", self, arg, width);
        if (arg < 64)
          EXPECT(spmla::emu::shfl_xor_src(self, arg, width) == shfl_index(cdna_model::kXor, self, arg, width), "xor %d %d %d", self, arg, width);
        // The native path is taken only where the source lane lies in the caller's own warp.
        const bool native_idx = width <= 32, native_xor = width <= 32 && arg < 32;
        if (native_idx) {
          EXPECT((spmla::emu::shfl_src(self, arg, width) >> 5) == (self >> 5), "shfl native crosses warps %d %d %d", self, arg, width);
          EXPECT((spmla::emu::shfl_up_src(self, arg, width) >> 5) == (self >> 5), "up native crosses %d %d %d", self, arg, width);
          EXPECT((spmla::emu::shfl_down_src(self, arg, width) >> 5) == (self >> 5), "down native crosses %d %d %d", self, arg, width);
        }
        if (native_xor)
          EXPECT((spmla::emu::shfl_xor_src(self, arg, width) >> 5) == (self >> 5), "xor native crosses %d %d %d", self, arg, width);
      }
}

}  // namespace

int main() {
  mfma();
  mfma_x32();
  fp8();
  shuffles();
  if (g_fail) {
    std::printf("cdna_emu_host_check: %d failure(s)\n", g_fail);
    return 1;
  }
  std::printf("cdna_emu_host_check (gfx%d): the emulation's lane arithmetic agrees with the CDNA models\n", SPMLA_HIP_EMULATE);
  return 0;
}
