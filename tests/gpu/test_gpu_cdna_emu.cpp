// test_gpu_cdna_emu.cpp — the emulated CDNA instructions of the HIP-on-NVIDIA emulation build
// (SPMLA_HIP_EMULATE=gfx942|gfx950, backends/hip/emu/cdna_emu.cuh) against the CPU models of
// cdna_model.h (written from AMD's documentation, checked on the host by cdna_model_check.cpp),
// on random operands and on the hand-worked 16x16x16 case. Built only in the emulated build.
#include <cmath>
#include <string>
#include <cstring>
#include <random>
#include <vector>

#include <cuda_runtime.h>

#include "cdna_emu_instr.h"
#include "cdna_model.h"
#include "gpu_test.h"

namespace {

using cdna_model::kLanes;

bool have_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

uint32_t seed() {
  static const uint32_t s = std::random_device{}();
  return s;
}

uint16_t bf16_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return (uint16_t)(u >> 16);  // truncation: any bf16 pattern is a valid operand
}

bool fnuz() { return cdna_emu_test::emulated_target() == 942; }

// One random-operand check of an emulated 16x16xK MFMA (kItems bf16 per lane and operand: 4 for
// 16x16x16, 8 for 16x16x32) against the CPU model, in blocks of 64, 256 and 1024 threads (1024:
// 16 wavefronts, the shared last barrier). run: the device side; model, mags: cdna_model's.
template <int kItems, typename Run, typename Model, typename Mags>
void random_mfma_check(std::mt19937 &rng, Run run, Model model, Mags mags) {
  std::uniform_real_distribution<float> val(-4.f, 4.f);
  std::uniform_int_distribution<int> ex(-20, 20);
  constexpr int kAB = kLanes * kItems, kCD = kLanes * 4;  // elements per wavefront
  for (int threads : {64, 256, 1024}) {
    const int waves = 32;
    std::vector<uint16_t> a(waves * kAB), b(waves * kAB);
    std::vector<float> c(waves * kCD), d(waves * kCD);
    for (int i = 0; i < waves * kAB; ++i) {
      a[i] = bf16_of(std::ldexp(val(rng), ex(rng) / 4));
      b[i] = bf16_of(std::ldexp(val(rng), ex(rng) / 4));
    }
    for (int i = 0; i < waves * kCD; ++i) c[i] = (i % 3 == 0) ? 0.f : std::ldexp(val(rng), ex(rng) / 2);
    REQUIRE(run(waves, threads, a.data(), b.data(), c.data(), d.data()) == 0);
    int bad = 0;
    for (int w = 0; w < waves; ++w) {
      float m[kLanes][4];
      double mag[kLanes][4];
      const auto *aw = reinterpret_cast<const uint16_t(*)[kItems]>(&a[w * kAB]);
      const auto *bw = reinterpret_cast<const uint16_t(*)[kItems]>(&b[w * kAB]);
      const auto *cw = reinterpret_cast<const float(*)[4]>(&c[w * kCD]);
      model(aw, bw, cw, m);
      mags(aw, bw, cw, mag);
      for (int l = 0; l < kLanes; ++l)
        for (int j = 0; j < 4; ++j) {
          const double got = d[w * kCD + l * 4 + j], err = std::fabs(got - m[l][j]);
          if (!(err <= std::ldexp(mag[l][j], -20)) && bad++ < 8) {
            INFO("threads " << threads << " wave " << w << " lane " << l << " reg " << j << ": " << got << " vs model "
                            << m[l][j]);
            CHECK(false);
          }
        }
    }
    INFO("threads " << threads);
    CHECK(bad == 0);
  }
}

}  // namespace

TEST_CASE("CDNA emulation: wave64 at compile time, the emulated target", "[cdna_emu]") {
  REQUIRE(have_device());
  CHECK(cdna_emu_test::device_warp_size() == 64);
  const int t = cdna_emu_test::emulated_target();
  CHECK((t == 942 || t == 950));
}

TEST_CASE("CDNA emulation: the hip backend reports the emulated device", "[cdna_emu]") {
  // What the host layer selects from (arch_has_mfma, warp size 64) and what callers see.
  spmla_device_info_t di = SPMLA_DEVICE_INFO_INIT;
  REQUIRE(spmla_device_get_info("hip", 0, &di) == SPMLA_STATUS_SUCCESS);
  const bool g942 = cdna_emu_test::emulated_target() == 942;
  CHECK(std::string(di.arch) == (g942 ? "gfx942" : "gfx950"));
  CHECK(di.warp_size == 64);
  CHECK(di.fp8_e4m3fnuz_native == (g942 ? 1 : 0));
  CHECK(di.fp8_e4m3fn_native == (g942 ? 0 : 1));
  CHECK(std::string(di.name).find(g942 ? "emulating gfx942" : "emulating gfx950") != std::string::npos);
}

TEST_CASE("CDNA emulation: v_mfma_f32_16x16x16_bf16, the hand-worked case", "[cdna_emu]") {
  REQUIRE(have_device());
  static uint16_t a[kLanes][4], b[kLanes][4];
  static float c[kLanes][4], d[kLanes][4], m[kLanes][4];
  cdna_model::hand_case(a, b, c);
  REQUIRE(cdna_emu_test::run_mfma(1, 64, &a[0][0], &b[0][0], &c[0][0], &d[0][0]) == 0);
  for (const auto &r : cdna_model::kHandExpect)
    for (int j = 0; j < 4; ++j) {
      INFO("lane " << r.lane << " register " << j);
      CHECK(d[r.lane][j] == r.d[j]);
    }
  cdna_model::mfma_f32_16x16x16_bf16(a, b, c, m);
  for (int l = 0; l < kLanes; ++l)
    for (int j = 0; j < 4; ++j) {
      INFO("lane " << l << " register " << j);
      CHECK(d[l][j] == m[l][j]);
    }
}

TEST_CASE("CDNA emulation: v_mfma_f32_16x16x16_bf16 on random operands", "[cdna_emu]") {
  REQUIRE(have_device());
  INFO("seed " << seed());
  std::mt19937 rng(seed());
  random_mfma_check<4>(rng, cdna_emu_test::run_mfma, cdna_model::mfma_f32_16x16x16_bf16, cdna_model::mfma_magnitudes);
}

TEST_CASE("CDNA emulation: v_mfma_f32_16x16x32_bf16 (gfx950), the hand-worked case", "[cdna_emu]") {
  REQUIRE(have_device());
  if (cdna_emu_test::emulated_target() != 950) {
    WARN("gfx942 emulation: v_mfma_f32_16x16x32_bf16 is gfx950-only (not emulated here)");
    return;
  }
  static uint16_t a[kLanes][8], b[kLanes][8];
  static float c[kLanes][4], d[kLanes][4], m[kLanes][4];
  cdna_model::hand_case_x32(a, b, c);
  REQUIRE(cdna_emu_test::run_mfma_x32(1, 64, &a[0][0], &b[0][0], &c[0][0], &d[0][0]) == 0);
  for (const auto &r : cdna_model::kHandExpectX32)
    for (int j = 0; j < 4; ++j) {
      INFO("lane " << r.lane << " register " << j);
      CHECK(d[r.lane][j] == r.d[j]);
    }
  cdna_model::mfma_f32_16x16x32_bf16(a, b, c, m);
  for (int l = 0; l < kLanes; ++l)
    for (int j = 0; j < 4; ++j) {
      INFO("lane " << l << " register " << j);
      CHECK(d[l][j] == m[l][j]);
    }
}

TEST_CASE("CDNA emulation: v_mfma_f32_16x16x32_bf16 (gfx950) on random operands", "[cdna_emu]") {
  REQUIRE(have_device());
  if (cdna_emu_test::emulated_target() != 950) {
    WARN("gfx942 emulation: v_mfma_f32_16x16x32_bf16 is gfx950-only (not emulated here)");
    return;
  }
  INFO("seed " << seed());
  std::mt19937 rng(seed() + 7);
  random_mfma_check<8>(rng, cdna_emu_test::run_mfma_x32, cdna_model::mfma_f32_16x16x32_bf16,
                       cdna_model::mfma_x32_magnitudes);
}

TEST_CASE("CDNA emulation: v_cvt_pk_f32_fp8, every pair of codes in both words", "[cdna_emu]") {
  REQUIRE(have_device());
  std::vector<uint32_t> src(65536);
  for (uint32_t w = 0; w < 65536; ++w) src[w] = w | ((w ^ 0x5a5au) << 16);
  std::vector<float> out(src.size() * 4);
  REQUIRE(cdna_emu_test::run_cvt((int)src.size(), src.data(), out.data()) == 0);
  int bad = 0;
  for (size_t i = 0; i < src.size(); ++i)
    for (int s = 0; s < 2; ++s) {
      double want[2];
      cdna_model::cvt_pk_f32_fp8(src[i], s != 0, fnuz(), want);
      for (int e = 0; e < 2; ++e) {
        const float got = out[4 * i + 2 * s + e];
        const bool ok = std::isnan(want[e]) ? std::isnan(got)
                                            : (got == want[e] && std::signbit(got) == std::signbit(want[e]));
        if (!ok && bad++ < 8) {
          INFO("src 0x" << std::hex << src[i] << std::dec << " word_sel " << s << " element " << e << ": " << got
                        << " vs " << want[e]);
          CHECK(false);
        }
      }
    }
  CHECK(bad == 0);
}

TEST_CASE("CDNA emulation: shuffles and readlane with AMD semantics (wave64)", "[cdna_emu]") {
  REQUIRE(have_device());
  INFO("seed " << seed());
  std::mt19937 rng(seed() + 1);
  int bad = 0, runs = 0;
  for (int threads : {64, 192, 1024})
    for (bool wide : {false, true})
      for (int op = 0; op <= 4; ++op)
        for (int width = 1; width <= 64; width *= 2) {
          if (op == 4 && width != 64) continue;  // readlane has no width
          std::vector<int> argset;
          if (op == 3)
            for (int m = 0; m < 64; ++m) argset.push_back(m);
          else
            argset = {0, 1, 2, 7, 16, 31, 32, 33, 63, 64, (int)(rng() % 64)};
          for (int arg : argset) {
            std::vector<int> args(threads, arg);
            if (op == 0)
              for (int &x : args) x = (int)(rng() % 160);  // per-lane source lanes, beyond the width too
            std::vector<uint64_t> in(threads), out(threads);
            for (auto &x : in) x = wide ? ((uint64_t)rng() << 32 | rng()) : rng();
            REQUIRE(cdna_emu_test::run_shfl(op, width, threads, args.data(), in.data(), out.data(), wide) == 0);
            ++runs;
            for (int t = 0; t < threads; ++t) {
              const int w = t / 64, self = t % 64;
              const int src = op == 4 ? (arg & 63)
                                      : cdna_model::shfl_index((cdna_model::Shfl)op, self, args[t], width) & 63;
              const uint64_t want = in[w * 64 + src];
              if (out[t] != want && bad++ < 8) {
                INFO("op " << op << " width " << width << " arg " << args[t] << " threads " << threads << " wide "
                           << wide << " lane " << t);
                CHECK(out[t] == want);
              }
            }
          }
        }
  INFO(runs << " launches");
  CHECK(bad == 0);
}

TEST_CASE("CDNA emulation: wavefronts with different numbers of exchanges (16 per block)", "[cdna_emu]") {
  REQUIRE(have_device());
  std::mt19937 rng(seed() + 3);
  for (int threads : {128, 960, 1024}) {
    std::vector<uint64_t> in(threads), out(threads);
    for (auto &x : in) x = rng();
    REQUIRE(cdna_emu_test::run_uneven(threads, in.data(), out.data()) == 0);
    for (int t = 0; t < threads; ++t) {
      const int w = t / 64, l = t % 64, flip = (w % 3) % 2 ? 32 : 0;
      INFO("threads " << threads << " lane " << t);
      CHECK(out[t] == in[w * 64 + ((l ^ 1) ^ flip)]);
    }
  }
}

TEST_CASE("CDNA emulation: ballot as a 64-bit mask", "[cdna_emu]") {
  REQUIRE(have_device());
  INFO("seed " << seed());
  std::mt19937 rng(seed() + 2);
  for (int threads : {64, 96, 256, 1024}) {
    std::vector<uint8_t> pred(threads);
    for (auto &p : pred) p = (uint8_t)(rng() % 3 == 0);
    const int waves = (threads + 63) / 64;
    std::vector<uint64_t> out(waves);
    REQUIRE(cdna_emu_test::run_ballot(threads, pred.data(), out.data()) == 0);
    for (int w = 0; w < waves; ++w) {
      bool p[kLanes] = {};
      const int present = std::min(64, threads - 64 * w);
      for (int l = 0; l < present; ++l) p[l] = pred[w * 64 + l] != 0;
      INFO("threads " << threads << " wave " << w);
      CHECK(out[w] == cdna_model::ballot(p, present));
    }
  }
}
