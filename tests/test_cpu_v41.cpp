// test_cpu_v41.cpp — the DeepSeek-V4.1 cache layouts (V41_FP8, V41_FP4; ABI 1.2) on the CPU
// reference through the public API, in both arrangements (per token, page-blocked):
//  - page sizes of the C API against the SPEC's formula;
//  - kv_cache_store bytes against an independent model of SPEC's quantization recipe written
//    here (E4M3 / UE8M0 / E2M1 / E4M3-scale encoders by search over every code, test-side
//    offsets), whole buffers compared byte by byte;
//  - kv_cache_gather against the model's dequantization (exact), invalid slots zero;
//  - sparse_attention reading V41 caches directly, main and extra in every pairing of layouts
//    (with V4_FP8 and BF16 too), lengths, sink, H, K, block sizes, both arrangements, against
//    the double-precision reference of test_support.h;
//  - validation of the new descriptor member (fuzzed arrangement values, wrong page strides,
//    flavors, reserved1) and the struct_size rule of the grown spmla_kv_cache_t (a 1.0 caller).
#include <algorithm>
#include <climits>
#include <cstddef>
#include <memory>

#include "spmla.hpp"
#include "test_support.h"

using tst::TestCache;
using tst::V41Geo;

namespace {

bool has(const std::string &s, const std::string &sub) { return s.find(sub) != std::string::npos; }

const spmla_kv_arrangement_t kArr[2] = {SPMLA_KV_ARRANGEMENT_PER_TOKEN, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED};

// ---- independent encoders (search over every code of the format) -----------------------------
// E4M3 (FN or FNUZ) of x: nearest finite code, ties to the even code, saturating; -0 kept in FN.
uint8_t fp8_encode_model(float x, bool fnuz) {
  const double maxf = fnuz ? 240.0 : 448.0;
  double a = std::fabs(double(x));
  if (a > maxf) a = maxf;
  int best = 0;
  double best_d = 1e300;
  for (int c = 0; c < 128; ++c) {
    const double v = tst::fp8_ref(uint8_t(c), fnuz);
    if (std::isnan(v)) continue;
    const double d = std::fabs(a - v);
    if (d < best_d || (d == best_d && (c & 1) == 0)) {
      best = c;
      best_d = d;
    }
  }
  if (std::signbit(x) && !(fnuz && best == 0)) best |= 0x80;
  return uint8_t(best);
}
int e2m1_encode_model(float x) {
  const double a = std::fabs(double(x));
  int best = 0;
  double best_d = 1e300;
  for (int c = 0; c < 8; ++c) {
    const double d = std::fabs(a - tst::fp4_ref(c));
    if (d < best_d || (d == best_d && (c & 1) == 0)) {
      best = c;
      best_d = d;
    }
  }
  if (a >= 6.0) best = 7;
  return best | (std::signbit(x) ? 8 : 0);
}
// SPEC V41_FP8 tile: k = ceil(log2(max(amax / fp8_max, 1e-4))) with amax / fp8_max in fp32.
int ue8m0_exponent_model(float amax, bool fnuz) {
  double r = double(amax / (fnuz ? 240.0f : 448.0f));
  r = std::max(r, double(1e-4f));
  int e;
  const double m = std::frexp(r, &e);  // r = m * 2^e, m in [0.5, 1)
  return m == 0.5 ? e - 1 : e;
}
// SPEC V41_FP4 tile scale byte.
int fp4_scale_model(float amax, bool nonfinite) {
  if (nonfinite) return 0x7F;
  double r = double(amax / 6.0f);
  r = std::min(std::max(r, std::ldexp(1.0, -9)), 448.0);
  int best = 1;
  double best_d = 1e300;
  for (int b = 1; b <= 0x7E; ++b) {
    const double d = std::fabs(r - tst::fp8_ref(uint8_t(b), false));
    if (d < best_d || (d == best_d && (b & 1) == 0)) {
      best = b;
      best_d = d;
    }
  }
  return best;
}

// One token's bytes in SPEC order: data then scales (528 / 288), from bf16 inputs. `dont_care`
// marks the data bytes SPEC leaves unspecified (an FP4 tile holding NaN or inf).
void token_model(bool fp4, bool fnuz, const uint16_t *kv, std::vector<uint8_t> &bytes,
                 std::vector<bool> &dont_care) {
  const V41Geo g{fp4, false};
  bytes.assign(size_t(g.token()), 0);
  dont_care.assign(size_t(g.token()), false);
  const int tile = g.tile();
  for (int t = 0; t < 512 / tile; ++t) {
    float amax = 0;
    bool nonfinite = false;
    for (int i = 0; i < tile; ++i) {
      const float a = std::fabs(tst::fb(kv[t * tile + i]));
      if (!std::isfinite(a)) nonfinite = true;
      else amax = std::max(amax, a);
    }
    if (!fp4) {
      const int k = ue8m0_exponent_model(amax, fnuz);
      bytes[size_t(512 + t)] = uint8_t(k + 127);
      for (int i = 0; i < tile; ++i)
        bytes[size_t(t * tile + i)] = fp8_encode_model(float(double(tst::fb(kv[t * tile + i])) / std::ldexp(1.0, k)), fnuz);
    } else {
      const int sb = fp4_scale_model(amax, nonfinite);
      bytes[size_t(256 + t)] = uint8_t(sb);
      const float s = float(tst::fp8_ref(uint8_t(sb), false));
      for (int i = 0; i < tile; ++i) {
        const int c = e2m1_encode_model(tst::fb(kv[t * tile + i]) / s);  // fp32 division (SPEC)
        bytes[size_t((t * tile + i) / 2)] |= uint8_t(c << (4 * (i % 2)));
        if (nonfinite) dont_care[size_t((t * tile + i) / 2)] = true;
      }
    }
  }
}

void store(spmla_handle_t h, TestCache &c, std::vector<uint16_t> &kv, std::vector<int32_t> &slots) {
  tst::store_rows(h, c, kv, slots);
}
std::vector<uint16_t> gather(spmla_handle_t h, TestCache &c, std::vector<int32_t> &slots) {
  return tst::gather_rows(h, c, slots, 0x7FC1);  // poisoned with NaN
}

// A random bf16 row of 512 values whose tiles span many magnitudes, with special tiles: all zero,
// one huge, tiny (below the FP4 clamp), and values on E2M1 / E4M3 midpoints.
std::vector<uint16_t> random_row(tst::Rng &r, bool specials) {
  std::vector<uint16_t> v(512);
  for (int t = 0; t < 32; ++t) {
    const float mag = std::ldexp(1.0f, int(r.integer(-16, 10)));
    for (int i = 0; i < 16; ++i) v[size_t(t * 16 + i)] = tst::bf(r.normal() * mag);
  }
  if (specials) {
    for (int i = 0; i < 16; ++i) v[size_t(i)] = tst::bf(0.0f);                   // zero tile
    for (int i = 16; i < 32; ++i) v[size_t(i)] = tst::bf(i == 20 ? 3e38f : 1.0f);  // huge
    for (int i = 32; i < 48; ++i) v[size_t(i)] = tst::bf(std::ldexp(1.0f, -30) * float(i - 40));
    const float mids[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f};
    for (int i = 48; i < 64; ++i) v[size_t(i)] = tst::bf(mids[i % 8] * (i % 2 ? -1.0f : 1.0f));
    v[size_t(63)] = tst::bf(6.0f);  // amax 6 -> scale 1 exactly, the other values on midpoints
    v[size_t(100)] = tst::bf(-0.0f);
  }
  return v;
}

}  // namespace

TEST_CASE("v41: page and cache bytes of the C API, both layouts and arrangements", "[v41]") {
  for (int fp4 = 0; fp4 < 2; ++fp4)
    for (auto arr : kArr)
      for (int bs : {1, 2, 3, 5, 53, 64, 256}) {
        spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
        c.layout = fp4 ? SPMLA_KV_LAYOUT_V41_FP4 : SPMLA_KV_LAYOUT_V41_FP8;
        c.fp8_flavor = SPMLA_FP8_E4M3FN;
        c.block_size = bs;
        c.num_pages = 7;
        c.arrangement = arr;
        const V41Geo g{fp4 == 1, arr == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED};
        INFO("fp4 " << fp4 << " arrangement " << arr << " bs " << bs);
        size_t pb = 0, total = 0;
        tst::check(spmla_kv_cache_page_bytes(&c, &pb));
        CHECK(int64_t(pb) == g.page(bs));
        CHECK(int64_t(pb) == (g.blocked ? (int64_t(fp4 ? 288 : 528) * bs + 511) / 512 * 512
                                         : int64_t(fp4 ? 288 : 528) * bs));
        tst::check(spmla_kv_cache_size_bytes(&c, &total));
        CHECK(total == 7 * pb);
        c.page_stride_bytes = int64_t(pb) + 48;
        tst::check(spmla_kv_cache_size_bytes(&c, &total));
        CHECK(total == 7 * (pb + 48));
      }
  // SPEC's examples: 64-token pages
  spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
  c.layout = SPMLA_KV_LAYOUT_V41_FP8;
  c.fp8_flavor = SPMLA_FP8_E4M3FN;
  c.block_size = 64;
  c.arrangement = SPMLA_KV_ARRANGEMENT_PER_TOKEN;
  size_t pb = 0;
  tst::check(spmla_kv_cache_page_bytes(&c, &pb));
  CHECK(pb == 33792u);  // 64 * 528 = 66 * 512
  c.layout = SPMLA_KV_LAYOUT_V41_FP4;
  c.arrangement = SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED;
  tst::check(spmla_kv_cache_page_bytes(&c, &pb));
  CHECK(pb == 18432u);  // 64 * 256 + 64 * 32
}

TEST_CASE("v41: kv_cache_store writes SPEC's bytes (independent model), every arrangement and block size", "[v41]") {
  tst::Handle h;
  tst::Rng rng(0x5EC41);
  for (int fp4 = 0; fp4 < 2; ++fp4)
    for (int fl = 1; fl <= (fp4 ? 1 : 2); ++fl)
      for (auto arr : kArr)
        for (int bs : {1, 2, 5, 53, 64}) {
          for (int64_t extra : {int64_t(0), int64_t(32)}) {
            const bool fnuz = fl == 2;
            const int64_t pages = bs == 1 ? 9 : 3;
            TestCache c(fp4 ? SPMLA_KV_LAYOUT_V41_FP4 : SPMLA_KV_LAYOUT_V41_FP8, spmla_fp8_flavor_t(fl),
                        512, pages, bs, extra, arr);
            const V41Geo g = c.geo();
            INFO("fp4 " << fp4 << " fnuz " << fnuz << " arrangement " << arr << " bs " << bs
                        << " extra stride " << extra);
            // a subset of the slots, plus skipped ones (negative, out of range)
            const int64_t S = c.slots();
            std::vector<int32_t> slots;
            for (int64_t s = 0; s < S; ++s)
              if (rng.integer(0, 2) != 0) slots.push_back(int32_t(s));
            std::reverse(slots.begin(), slots.end());
            slots.push_back(-1);
            slots.push_back(int32_t(S));
            slots.push_back(INT_MIN);
            std::vector<uint16_t> kv;
            for (size_t n = 0; n < slots.size(); ++n) {
              auto row = random_row(rng, n % 3 == 0);
              if (fp4 && n % 5 == 1) row[size_t(200)] = tst::bf(n % 2 ? tst::qnan() : -tst::inf());
              kv.insert(kv.end(), row.begin(), row.end());
            }
            store(h, c, kv, slots);

            // expected buffer: 0xEE except stored tokens and the zeroed padding of pages written to
            std::vector<uint8_t> want(size_t(c.stride * pages), 0xEE);
            std::vector<bool> care(want.size(), true);
            std::vector<uint8_t> tok;
            std::vector<bool> dc;
            for (size_t n = 0; n < slots.size(); ++n) {
              const int64_t s = slots[n];
              if (s < 0 || s >= S) continue;
              token_model(fp4 == 1, fnuz, kv.data() + n * 512, tok, dc);
              const int64_t base = (s / bs) * c.stride, o = s % bs;
              for (int i = 0; i < g.data(); ++i) {
                want[size_t(base + g.data_off(o) + i)] = tok[size_t(i)];
                care[size_t(base + g.data_off(o) + i)] = !dc[size_t(i)];
              }
              for (int i = 0; i < g.scales(); ++i) want[size_t(base + g.scale_off(o, bs) + i)] = tok[size_t(g.data() + i)];
              for (int64_t b = int64_t(g.token()) * bs; b < g.page(bs); ++b) want[size_t(base + b)] = 0;  // pad
            }
            size_t bad = 0, first = SIZE_MAX;
            for (size_t i = 0; i < want.size(); ++i)
              if (care[i] && c.buf.data()[i] != want[i]) {
                ++bad;
                first = std::min(first, i);
              }
            INFO("first differing byte " << first << " of " << want.size());
            CHECK(bad == 0);
            // bytes past the cache untouched
            CHECK(c.buf.data()[c.stride * pages] == 0xEE);

            // gather = the model's dequantization, exactly (products exact in bf16); invalid -> 0
            std::vector<int32_t> gs = {-1, int32_t(S), INT_MAX};
            for (size_t n = 0; n < slots.size(); ++n)
              if (slots[n] >= 0 && slots[n] < S) gs.push_back(slots[n]);
            auto out = gather(h, c, gs);
            size_t gbad = 0;
            for (size_t n = 0; n < gs.size(); ++n) {
              if (n < 3) {
                for (int i = 0; i < 512; ++i) gbad += out[n * 512 + size_t(i)] != 0;
                continue;
              }
              const auto ref = c.row(gs[n]);  // test-side decode of the stored bytes
              for (int i = 0; i < 512; ++i) {
                const double got = tst::fb(out[n * 512 + size_t(i)]);
                if (std::isnan(ref[size_t(i)]) ? !std::isnan(got) : got != ref[size_t(i)]) ++gbad;
              }
            }
            CHECK(gbad == 0);
          }
        }
}

TEST_CASE("v41: store -> gather error is within SPEC's quantization step", "[v41]") {
  // A property check independent of the byte model: |gathered - x| <= half a grid step times the
  // scale for every finite value (FP8: 2^-4 relative to the tile's scale * 448 range; FP4: the
  // E2M1 step at that magnitude), and the tile scale covers the tile's amax.
  tst::Handle h;
  tst::Rng rng(77);
  for (int fp4 = 0; fp4 < 2; ++fp4)
    for (auto arr : kArr) {
      TestCache c(fp4 ? SPMLA_KV_LAYOUT_V41_FP4 : SPMLA_KV_LAYOUT_V41_FP8, SPMLA_FP8_E4M3FN, 512, 4, 16, 0, arr);
      std::vector<int32_t> slots;
      std::vector<uint16_t> kv;
      for (int s = 0; s < 64; ++s) {
        slots.push_back(s);
        auto row = random_row(rng, false);
        kv.insert(kv.end(), row.begin(), row.end());
      }
      store(h, c, kv, slots);
      auto out = gather(h, c, slots);
      size_t bad = 0;
      for (int s = 0; s < 64; ++s) {
        const int tile = fp4 ? 16 : 32;
        for (int t = 0; t < 512 / tile; ++t) {
          double amax = 0;
          for (int i = 0; i < tile; ++i) amax = std::max(amax, std::fabs(double(tst::fb(kv[size_t(s * 512 + t * tile + i)]))));
          for (int i = 0; i < tile; ++i) {
            const size_t k = size_t(s * 512 + t * tile + i);
            const double x = tst::fb(kv[k]), y = tst::fb(out[k]);
            // FP8: relative 2^-4 of |x| or 2^-9 of the tile's scale (amax / 448 rounded up to 2^k);
            // FP4: half an E2M1 step (at most 1, between 4 and 6) times the scale amax / 6, the
            // scale's E4M3 rounding included (2^-4 relative for normal scales).
            // (E4M3 subnormal scales, amax / 6 < 2^-6, are 2^-9 apart: a scale rounded down by up
            // to 2^-10 saturates |x| by at most 6 * 2^-10.)
            // Beyond 6 * 448 the scale is clamped (SPEC): values saturate at 2688.
            const double smax = std::max(amax / 6 * 1.0625, amax / 6 + std::ldexp(1.0, -10));
            const double tol = fp4 ? std::max(smax, 4 * std::ldexp(1.0, -9)) + std::max(0.0, amax - 2688.0)
                                   : std::fabs(x) / 16 + std::max(amax / 448, 1e-4) * 2 * std::ldexp(1.0, -9);
            if (std::fabs(x - y) > tol + 1e-30 && ++bad < 4) FAIL_CHECK("x " << x << " y " << y << " amax " << amax);
          }
        }
      }
      INFO("fp4 " << fp4 << " arrangement " << arr);
      CHECK(bad == 0);
    }
}

// ---------------------------------------------------------------------------------------------
// sparse_attention over V41 caches
// ---------------------------------------------------------------------------------------------
namespace {

struct Src {
  spmla_kv_layout_t layout;
  spmla_kv_arrangement_t arr;
  const char *name;
};
const Src kSources[] = {
    {SPMLA_KV_LAYOUT_V41_FP8, SPMLA_KV_ARRANGEMENT_PER_TOKEN, "V41_FP8/per-token"},
    {SPMLA_KV_LAYOUT_V41_FP8, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED, "V41_FP8/page-blocked"},
    {SPMLA_KV_LAYOUT_V41_FP4, SPMLA_KV_ARRANGEMENT_PER_TOKEN, "V41_FP4/per-token"},
    {SPMLA_KV_LAYOUT_V41_FP4, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED, "V41_FP4/page-blocked"},
    {SPMLA_KV_LAYOUT_V4_FP8, SPMLA_KV_ARRANGEMENT_DEFAULT, "V4_FP8"},
    {SPMLA_KV_LAYOUT_BF16, SPMLA_KV_ARRANGEMENT_DEFAULT, "BF16"},
};

std::vector<int32_t> random_indices(tst::Rng &r, int64_t T, int64_t K, int64_t slots) {
  std::vector<int32_t> v(size_t(T * K));
  for (auto &x : v) {
    const int64_t u = r.integer(0, 19);
    x = u == 0 ? -1 : u == 1 ? int32_t(slots + r.integer(0, 3)) : u == 2 ? INT_MIN : int32_t(r.integer(0, slots - 1));
  }
  return v;
}

// tst::Attn's check (SPEC's tolerances against the fp64 reference) plus: tokens with no valid
// key have out exactly +0.
void check_attention(tst::Attn &r) {
  r.check_against_ref();
  size_t bad = 0;
  for (size_t i = 0; i < r.lse.size(); ++i)
    if (std::isinf(r.lse[i]))
      for (int d = 0; d < 512; ++d) bad += r.out[i * 512 + size_t(d)] != 0;
  CHECK(bad == 0);
}

tst::Attn make_attn(tst::Rng &rng, int64_t T, int64_t H, int64_t K, int64_t K2, TestCache *kv, TestCache *ekv) {
  tst::Attn r;
  r.T = T;
  r.H = H;
  r.D = 512;
  r.K = K;
  r.K2 = ekv ? K2 : 0;
  r.kv = kv;
  r.ekv = ekv;
  r.q = tst::random_bf16(rng, size_t(T * H * 512), 1.0f);
  return r;
}

}  // namespace

TEST_CASE("v41: sparse_attention, every pairing of main and extra layout, against fp64", "[v41][attention]") {
  tst::Handle h;
  tst::Rng rng(0xA7741);
  int cases = 0;
  for (const Src &m : kSources) {
    for (int e = -1; e < int(sizeof kSources / sizeof kSources[0]); ++e) {
      if (m.layout != SPMLA_KV_LAYOUT_V41_FP8 && m.layout != SPMLA_KV_LAYOUT_V41_FP4 &&
          (e < 0 || !tst::is_v41(kSources[e].layout)))
        continue;  // pairings without a V41 source are covered by test_cpu_attention
      const Src *x = e >= 0 ? &kSources[e] : nullptr;
      const int32_t bs = int32_t(std::vector<int>{1, 2, 5, 53, 64}[size_t(rng.integer(0, 4))]);
      const int32_t ebs = int32_t(std::vector<int>{1, 3, 64, 128}[size_t(rng.integer(0, 3))]);
      const int64_t H = std::vector<int64_t>{1, 3, 16, 64, 128}[size_t(rng.integer(0, 4))];
      const int64_t T = rng.integer(1, 3), K = rng.integer(1, 70), K2 = rng.integer(1, 40);
      INFO("main " << m.name << " extra " << (x ? x->name : "none") << " bs " << bs << "/" << ebs << " H " << H
                   << " T " << T << " K " << K << " K2 " << K2);
      const int64_t pages = (60 + bs - 1) / bs + 1, epages = (40 + ebs - 1) / ebs + 1;
      // FP8 data in either flavor (a gfx942 user's E4M3FNUZ V41_FP8 cache); V41_FP4's scales are E4M3FN
      auto flavor = [&](spmla_kv_layout_t l) {
        return l == SPMLA_KV_LAYOUT_V41_FP4 || rng.integer(0, 1) == 0 ? SPMLA_FP8_E4M3FN : SPMLA_FP8_E4M3FNUZ;
      };
      TestCache kv(m.layout, flavor(m.layout), 512, pages, bs, rng.integer(0, 1) * 16, m.arr);
      kv.fill_random(rng);
      std::unique_ptr<TestCache> ekv;
      if (x) {
        ekv.reset(new TestCache(x->layout, flavor(x->layout), 512, epages, ebs, 0, x->arr));
        ekv->fill_random(rng);
      }
      tst::Attn r = make_attn(rng, T, H, K, K2, &kv, ekv.get());
      r.idx = random_indices(rng, T, K, kv.slots());
      if (rng.integer(0, 1)) {
        r.len.resize(size_t(T));
        for (auto &l : r.len) l = int32_t(rng.integer(-1, K + 2));
      }
      if (x) {
        r.eidx = random_indices(rng, T, K2, ekv->slots());
        if (rng.integer(0, 1)) {
          r.elen.resize(size_t(T));
          for (auto &l : r.elen) l = int32_t(rng.integer(0, K2));
        }
      }
      if (rng.integer(0, 1)) {
        r.sink.resize(size_t(H));
        for (auto &s : r.sink) s = rng.uniform(-2.0f, 4.0f);
        r.sink[0] = tst::inf();
      }
      // NaN bytes in every slot that no valid entry names must never reach the outputs
      std::vector<bool> used(size_t(kv.slots()), false), eused(x ? size_t(ekv->slots()) : 0, false);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t L = r.len.empty() ? K : std::max<int64_t>(0, std::min<int64_t>(K, r.len[size_t(t)]));
        for (int64_t k = 0; k < L; ++k) {
          const int64_t s = r.idx[size_t(t * K + k)];
          if (s >= 0 && s < kv.slots()) used[size_t(s)] = true;
        }
        if (x) {
          const int64_t L2 = r.elen.empty() ? K2 : std::max<int64_t>(0, std::min<int64_t>(K2, r.elen[size_t(t)]));
          for (int64_t k = 0; k < L2; ++k) {
            const int64_t s = r.eidx[size_t(t * K2 + k)];
            if (s >= 0 && s < ekv->slots()) eused[size_t(s)] = true;
          }
        }
      }
      for (int64_t s = 0; s < kv.slots(); ++s)
        if (!used[size_t(s)]) kv.poison(s);
      for (int64_t s = 0; x && s < ekv->slots(); ++s)
        if (!eused[size_t(s)]) ekv->poison(s);
      r.run(h);
      check_attention(r);
      ++cases;
    }
  }
  CHECK(cases == 4 * 7 + 2 * 4);
}

TEST_CASE("v41: DeepSeek-V4.1 decode shape (V41_FP8 window main + V41_FP4 compressed extra, sink)", "[v41][attention]") {
  // SPEC: V41_FP4 is the extra (compressed) cache beside a V41_FP8 sliding window. H 64, top-k
  // 512 from the FP4 cache, a 128-token window, block size 64, both arrangements mixed.
  tst::Handle h;
  tst::Rng rng(41);
  for (auto arr : kArr) {
    TestCache win(SPMLA_KV_LAYOUT_V41_FP8, SPMLA_FP8_E4M3FN, 512, 4, 64, 0, arr);
    TestCache cmp(SPMLA_KV_LAYOUT_V41_FP4, SPMLA_FP8_E4M3FN, 512, 12, 64, 0,
                  arr == SPMLA_KV_ARRANGEMENT_PER_TOKEN ? SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED : SPMLA_KV_ARRANGEMENT_PER_TOKEN);
    win.fill_random(rng);
    cmp.fill_random(rng);
    const int64_t T = 2, H = 64, K = 128, K2 = 512;
    tst::Attn r = make_attn(rng, T, H, K, K2, &win, &cmp);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t k = 0; k < K; ++k) r.idx.push_back(int32_t((t * 37 + k) % win.slots()));
      for (int64_t k = 0; k < K2; ++k) r.eidx.push_back(int32_t(rng.integer(0, cmp.slots() - 1)));
    }
    r.len = {128, 100};
    r.elen = {512, 300};
    r.sink.resize(size_t(H));
    for (auto &s : r.sink) s = rng.uniform(-1.0f, 3.0f);
    r.run(h);
    check_attention(r);
  }
}

// ---------------------------------------------------------------------------------------------
// validation of the new member and of the grown struct
// ---------------------------------------------------------------------------------------------
namespace {
spmla_kv_cache_t v41_desc(void *data, spmla_kv_layout_t l, spmla_kv_arrangement_t arr, int32_t bs, int64_t pages) {
  spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
  c.data = data;
  c.layout = l;
  c.fp8_flavor = SPMLA_FP8_E4M3FN;
  c.head_dim = 512;
  c.num_pages = pages;
  c.block_size = bs;
  c.arrangement = arr;
  return c;
}
spmla_status_t page_bytes_of(const spmla_kv_cache_t *c, size_t *pb) { return spmla_kv_cache_page_bytes(c, pb); }
}  // namespace

TEST_CASE("v41: validation of arrangement, flavor, head_dim and page stride (fuzzed)", "[v41][validation]") {
  tst::Rng rng(0xF022);
  size_t pb = 0;
  std::string msg;
  // arrangement values: only 0, 1, 2 exist
  for (int i = 0; i < 300; ++i) {
    int32_t a = i < 6 ? std::vector<int32_t>{-1, 3, 4, INT_MAX, INT_MIN, 255}[size_t(i)] : int32_t(rng.integer(INT_MIN, INT_MAX));
    if (a >= 0 && a <= 2) continue;
    for (auto l : {SPMLA_KV_LAYOUT_V41_FP8, SPMLA_KV_LAYOUT_V41_FP4, SPMLA_KV_LAYOUT_V4_FP8, SPMLA_KV_LAYOUT_BF16}) {
      spmla_kv_cache_t c = v41_desc(nullptr, l, SPMLA_KV_ARRANGEMENT_PER_TOKEN, 64, 1);
      if (l == SPMLA_KV_LAYOUT_BF16) c.fp8_flavor = SPMLA_FP8_NONE;
      std::memcpy(&c.arrangement, &a, 4);
      REQUIRE(page_bytes_of(&c, &pb) == SPMLA_STATUS_INVALID_ARGUMENT);
      msg = spmla_last_error_message();
      INFO(msg);
      CHECK(msg == "spmla_kv_cache_page_bytes: cache.arrangement: expected DEFAULT (0), PER_TOKEN (1) or "
                   "PAGE_BLOCKED (2), got unknown arrangement " + std::to_string(a));
    }
  }
  // V41 layouts must name their arrangement
  for (auto l : {SPMLA_KV_LAYOUT_V41_FP8, SPMLA_KV_LAYOUT_V41_FP4}) {
    spmla_kv_cache_t c = v41_desc(nullptr, l, SPMLA_KV_ARRANGEMENT_DEFAULT, 64, 1);
    CHECK(page_bytes_of(&c, &pb) == SPMLA_STATUS_INVALID_ARGUMENT);
    msg = spmla_last_error_message();
    CHECK(has(msg, "cache.arrangement: expected PER_TOKEN or PAGE_BLOCKED (layout "));
    CHECK(has(msg, "exists in both arrangements; name the one the cache was written in), got DEFAULT"));
  }
  // the pre-V41 layouts: DEFAULT or their own arrangement only
  struct {
    spmla_kv_layout_t l;
    spmla_fp8_flavor_t f;
    int32_t d;
    spmla_kv_arrangement_t own, other;
  } olds[] = {{SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, 576, SPMLA_KV_ARRANGEMENT_PER_TOKEN, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED},
              {SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FN, 576, SPMLA_KV_ARRANGEMENT_PER_TOKEN, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED},
              {SPMLA_KV_LAYOUT_V4_FP8, SPMLA_FP8_E4M3FN, 512, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED, SPMLA_KV_ARRANGEMENT_PER_TOKEN},
              {SPMLA_KV_LAYOUT_INDEXER_FP8, SPMLA_FP8_E4M3FN, 128, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED, SPMLA_KV_ARRANGEMENT_PER_TOKEN}};
  for (auto &o : olds) {
    spmla_kv_cache_t c = v41_desc(nullptr, o.l, SPMLA_KV_ARRANGEMENT_DEFAULT, 64, 1);
    c.fp8_flavor = o.f;
    c.head_dim = o.d;
    size_t p0 = 0, p1 = 0;
    tst::check(page_bytes_of(&c, &p0));
    c.arrangement = o.own;
    tst::check(page_bytes_of(&c, &p1));
    CHECK(p0 == p1);
    c.arrangement = o.other;
    CHECK(page_bytes_of(&c, &pb) == SPMLA_STATUS_INVALID_ARGUMENT);
    CHECK(has(spmla_last_error_message(), "has only that arrangement)"));
  }
  // flavors: V41_FP4's scales are E4M3FN; V41_FP8 takes both FP8 flavors; NONE is refused
  {
    spmla_kv_cache_t c = v41_desc(nullptr, SPMLA_KV_LAYOUT_V41_FP4, SPMLA_KV_ARRANGEMENT_PER_TOKEN, 64, 1);
    for (auto f : {SPMLA_FP8_NONE, SPMLA_FP8_E4M3FNUZ}) {
      c.fp8_flavor = f;
      CHECK(page_bytes_of(&c, &pb) == SPMLA_STATUS_INVALID_ARGUMENT);
      CHECK(has(spmla_last_error_message(), "cache.fp8_flavor: expected E4M3FN (layout V41_FP4: its tile scales are E4M3FN bytes)"));
    }
    c = v41_desc(nullptr, SPMLA_KV_LAYOUT_V41_FP8, SPMLA_KV_ARRANGEMENT_PER_TOKEN, 64, 1);
    c.fp8_flavor = SPMLA_FP8_E4M3FNUZ;
    tst::check(page_bytes_of(&c, &pb));
    c.fp8_flavor = SPMLA_FP8_NONE;
    CHECK(page_bytes_of(&c, &pb) == SPMLA_STATUS_INVALID_ARGUMENT);
  }
  // head_dim: 0 or 512
  for (int32_t d : {0, 512, 576, 128, -1, 1024}) {
    spmla_kv_cache_t c = v41_desc(nullptr, SPMLA_KV_LAYOUT_V41_FP8, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED, 64, 1);
    c.head_dim = d;
    const spmla_status_t st = page_bytes_of(&c, &pb);
    CHECK(st == (d == 0 || d == 512 ? SPMLA_STATUS_SUCCESS : SPMLA_STATUS_INVALID_ARGUMENT));
  }
  // page strides: random values around the packed size of each geometry
  for (int fp4 = 0; fp4 < 2; ++fp4)
    for (auto arr : kArr)
      for (int bs : {1, 3, 7, 64}) {
        const V41Geo g{fp4 == 1, arr == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED};
        const int64_t packed = g.page(bs);
        for (int i = 0; i < 60; ++i) {
          const int64_t stride = i == 0 ? packed : i == 1 ? packed - 16 : i == 2 ? packed + 8 : i == 3 ? -16
                               : i == 4 ? V41Geo{fp4 == 1, false}.page(bs) : packed + rng.integer(-600, 600);
          spmla_kv_cache_t c = v41_desc(nullptr, fp4 ? SPMLA_KV_LAYOUT_V41_FP4 : SPMLA_KV_LAYOUT_V41_FP8, arr, bs, 3);
          c.page_stride_bytes = stride;
          const bool ok = stride == 0 || (stride >= packed && stride % 16 == 0);
          INFO("fp4 " << fp4 << " arr " << arr << " bs " << bs << " stride " << stride << " packed " << packed);
          const spmla_status_t st = spmla_kv_cache_size_bytes(&c, &pb);
          CHECK(st == (ok ? SPMLA_STATUS_SUCCESS : SPMLA_STATUS_INVALID_ARGUMENT));
          if (ok) {
            CHECK(int64_t(pb) == 3 * (stride ? stride : packed));
          } else {
            msg = spmla_last_error_message();
            CHECK(msg == "spmla_kv_cache_size_bytes: cache.page_stride_bytes: expected 0 or >= " + std::to_string(packed) +
                             " (packed page of " + (fp4 ? "V41_FP4, " : "V41_FP8, ") +
                             (g.blocked ? "PAGE_BLOCKED" : "PER_TOKEN") + ") and a multiple of 16, got " +
                             std::to_string(stride));
          }
        }
      }
  // reserved1 is refused when set (a member of a newer header this library cannot honour)
  {
    spmla_kv_cache_t c = v41_desc(nullptr, SPMLA_KV_LAYOUT_V41_FP8, SPMLA_KV_ARRANGEMENT_PER_TOKEN, 64, 1);
    c.reserved1 = 5;
    CHECK(page_bytes_of(&c, &pb) == SPMLA_STATUS_ABI_MISMATCH);
    CHECK(has(spmla_last_error_message(), "cache.reserved1: expected 0 (reserved in ABI " +
                                              std::to_string(SPMLA_ABI_VERSION_MAJOR) + "." +
                                              std::to_string(SPMLA_ABI_VERSION_MINOR)));
    c.reserved1 = 0;
    c.reserved0 = 0x5A5A5A5A;  // never read
    tst::check(page_bytes_of(&c, &pb));
  }
}

TEST_CASE("v41: a caller of the 1.0 header (struct_size 64) keeps working; V41 needs the new member", "[v41][abi]") {
  static_assert(offsetof(spmla_kv_cache_t, arrangement) == 64 || sizeof(void *) != 8, "LP64");
  const size_t old_size = offsetof(spmla_kv_cache_t, arrangement);  // the 1.0 sizeof
  tst::Handle h;
  tst::Rng rng(10);
  // An old caller's struct: 64 bytes, followed by bytes that are not part of it (garbage the
  // library must not read: if it did, arrangement / reserved1 would be refused).
  TestCache c(SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FN, 576, 3, 4);
  std::vector<uint8_t> raw(sizeof(spmla_kv_cache_t) + 16, 0x5A);
  spmla_kv_cache_t full = c.desc;
  full.struct_size = old_size;
  std::memcpy(raw.data(), &full, old_size);
  auto *old = reinterpret_cast<spmla_kv_cache_t *>(raw.data());
  size_t pb = 0;
  tst::check(spmla_kv_cache_page_bytes(old, &pb));
  CHECK(pb == size_t(4 * 656));
  // store and gather through the old struct, compared with the same through a new one
  std::vector<uint16_t> kv = tst::random_bf16(rng, size_t(3 * 576), 1.0f);
  std::vector<int32_t> slots{0, 5, 11};
  spmla_tensor_t tk = tst::tensor(kv.data(), SPMLA_DTYPE_BF16, {3, 576});
  spmla_tensor_t ts = tst::tensor(slots.data(), SPMLA_DTYPE_INT32, {3});
  spmla_kv_cache_store_args_t sa = SPMLA_KV_CACHE_STORE_ARGS_INIT;
  sa.kv = &tk;
  sa.slot_mapping = &ts;
  sa.cache = old;
  tst::check(spmla_kv_cache_store_run(h, &sa, nullptr));
  std::vector<uint16_t> out(size_t(3 * 576), 0x7FC1);
  spmla_tensor_t to = tst::tensor(out.data(), SPMLA_DTYPE_BF16, {3, 576});
  spmla_kv_cache_gather_args_t ga = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
  ga.cache = old;
  ga.slots = &ts;
  ga.out = &to;
  tst::check(spmla_kv_cache_gather_run(h, &ga, nullptr));
  for (size_t n = 0; n < 3; ++n) {
    const auto ref = c.row(slots[n]);
    size_t bad = 0;
    for (int i = 0; i < 576; ++i) bad += double(tst::fb(out[n * 576 + size_t(i)])) != double(float(ref[size_t(i)]));
    CHECK(bad == 0);
  }
  // sparse attention with an old-sized main cache and a new-sized V41 extra cache
  TestCache e(SPMLA_KV_LAYOUT_V41_FP4, SPMLA_FP8_E4M3FN, 512, 2, 8, 0, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED);
  e.fill_random(rng);
  TestCache m4(SPMLA_KV_LAYOUT_V4_FP8, SPMLA_FP8_E4M3FN, 512, 2, 8);
  m4.fill_random(rng);
  spmla_kv_cache_t m4old = m4.desc;
  m4old.struct_size = old_size;
  std::vector<uint8_t> raw4(sizeof(spmla_kv_cache_t) + 16, 0xA5);
  std::memcpy(raw4.data(), &m4old, old_size);
  tst::Attn r = make_attn(rng, 1, 4, 6, 5, &m4, &e);
  r.idx = {0, 3, 7, 15, -1, 9};
  r.eidx = {1, 2, 3, 14, 15};
  const spmla_kv_cache_t saved = m4.desc;
  m4.desc = *reinterpret_cast<spmla_kv_cache_t *>(raw4.data());  // copies 72 bytes: 64 + garbage
  r.run(h);
  m4.desc = saved;
  check_attention(r);
  // a V41 layout through a 64-byte struct: no arrangement member, refused with a clear message
  spmla_kv_cache_t v = v41_desc(nullptr, SPMLA_KV_LAYOUT_V41_FP8, SPMLA_KV_ARRANGEMENT_PER_TOKEN, 64, 1);
  v.struct_size = old_size;
  std::vector<uint8_t> rawv(sizeof(spmla_kv_cache_t), 0x01);
  std::memcpy(rawv.data(), &v, old_size);
  CHECK(spmla_kv_cache_page_bytes(reinterpret_cast<spmla_kv_cache_t *>(rawv.data()), &pb) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(has(spmla_last_error_message(), "got DEFAULT (struct_size 64 of an ABI 1.0/1.1 header has no arrangement member)"));
  // smaller than the 1.0 struct: refused
  full.struct_size = old_size - 1;
  std::memcpy(raw.data(), &full, old_size);
  CHECK(spmla_kv_cache_page_bytes(old, &pb) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(has(spmla_last_error_message(), "cache->struct_size: expected >= 64 (SPMLA_KV_CACHE_INIT), got 63"));
}

TEST_CASE("v41: the C++ wrapper (spmla.hpp) describes, stores and gathers V41 caches", "[v41][hpp]") {
  spmla::Handle h("cpu");
  tst::Rng rng(1234);
  for (auto l : {SPMLA_KV_LAYOUT_V41_FP8, SPMLA_KV_LAYOUT_V41_FP4})
    for (auto arr : kArr) {
      const V41Geo g{l == SPMLA_KV_LAYOUT_V41_FP4, arr == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED};
      CHECK(int64_t(spmla::kv_cache_page_bytes(spmla::kv_cache_v41(nullptr, l, arr, 2, 7))) == g.page(7));
      // the general helper without an arrangement: refused with the library's message
      try {
        spmla::kv_cache_page_bytes(spmla::kv_cache(nullptr, l, SPMLA_FP8_E4M3FN, 512, 2, 7));
        FAIL("expected spmla::Error");
      } catch (const spmla::Error &e) {
        CHECK(e.status() == SPMLA_STATUS_INVALID_ARGUMENT);
        CHECK(has(e.what(), "arrangement"));
      }
      TestCache c(l, SPMLA_FP8_E4M3FN, 512, 2, 7, 0, arr);
      const spmla_kv_cache_t desc = spmla::kv_cache_v41(c.buf.data(), l, arr, 2, 7);
      std::vector<uint16_t> kv = tst::random_bf16(rng, 2 * 512, 2.0f);
      std::vector<int32_t> slots{3, 12};
      spmla_tensor_t tk = spmla::tensor(kv.data(), SPMLA_DTYPE_BF16, {2, 512});
      spmla_tensor_t ts = spmla::tensor(slots.data(), SPMLA_DTYPE_INT32, {2});
      spmla_kv_cache_store_args_t sa = SPMLA_KV_CACHE_STORE_ARGS_INIT;
      sa.kv = &tk;
      sa.slot_mapping = &ts;
      sa.cache = &desc;
      h.kv_cache_store(sa);
      std::vector<uint16_t> out(2 * 512, 0x7FC1);
      spmla_tensor_t to = spmla::tensor(out.data(), SPMLA_DTYPE_BF16, {2, 512});
      spmla_kv_cache_gather_args_t ga = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
      ga.cache = &desc;
      ga.slots = &ts;
      ga.out = &to;
      h.kv_cache_gather(ga);
      size_t bad = 0;
      for (size_t n = 0; n < 2; ++n) {
        const auto ref = c.row(slots[n]);  // test-side decode of the bytes written
        for (int i = 0; i < 512; ++i) bad += double(tst::fb(out[n * 512 + size_t(i)])) != ref[size_t(i)];
      }
      CHECK(bad == 0);
    }
}
