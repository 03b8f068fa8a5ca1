// test_cpu_indexer.cpp — indexer_logits (ragged and paged) on the CPU backend (public API),
// against a double-precision evaluation from the FP8 bytes.
#include <climits>

#include "test_support.h"

using tst::TestCache;

namespace {

// |got - ref| within 1e-5 of the row's scale sum_h |w_h| * |k_scale| * sum_d |q_d k_d|
int64_t g_checked = 0;  // values compared (so that a vacuous pass is noticed)
void check_value(float got, double ref, double mag) {
  ++g_checked;
  if (!(std::fabs(double(got) - ref) <= 1e-5 * mag + 1e-30)) FAIL("got " << got << " ref " << ref);
}

}  // namespace

TEST_CASE("indexer_logits (ragged): ranges, -inf outside, every column written, both flavors") {
  g_checked = 0;
  tst::Handle h;
  tst::Rng rng(55);
  for (int fl = 0; fl < 2; ++fl) {
    const bool fnuz = fl == 1;
    const auto kind = fnuz ? spmla::Fp8Kind::E4M3FNUZ : spmla::Fp8Kind::E4M3FN;
    const spmla_dtype_t dt = fnuz ? SPMLA_DTYPE_FP8_E4M3FNUZ : SPMLA_DTYPE_FP8_E4M3FN;
    for (int64_t Hi : {1, 8, 64}) {
      for (int64_t Di : {64, 128}) {
        INFO("fnuz " << fnuz << " Hi " << Hi << " Di " << Di);
        const int64_t T = 6, S = 300, C = S, LS = C + 5;
        std::vector<uint8_t> q(size_t(T * Hi * Di)), k(size_t(S * Di));
        for (auto &x : q) x = spmla::f32_to_fp8_e4m3(rng.normal() * 4, kind);
        for (auto &x : k) x = spmla::f32_to_fp8_e4m3(rng.normal() * 4, kind);
        std::vector<float> ks(static_cast<size_t>(S)), w(static_cast<size_t>(T * Hi));
        for (auto &x : ks) x = rng.uniform(0.001f, 0.02f);
        for (auto &x : w) x = rng.uniform(-1.0f, 1.0f);
        std::vector<int32_t> st = {0, -10, 100, 250, 5, 0}, en = {300, 50, 99, 1000, 5, 1};
        std::vector<float> lg(size_t(T * LS), tst::qnan());
        spmla_tensor_t tq = tst::tensor(q.data(), dt, {T, Hi, Di});
        spmla_tensor_t tk = tst::tensor(k.data(), dt, {S, Di});
        spmla_tensor_t tks = tst::tensor(ks.data(), SPMLA_DTYPE_FP32, {S});
        spmla_tensor_t tw = tst::tensor(w.data(), SPMLA_DTYPE_FP32, {T, Hi});
        spmla_tensor_t tst_ = tst::tensor(st.data(), SPMLA_DTYPE_INT32, {T});
        spmla_tensor_t ten = tst::tensor(en.data(), SPMLA_DTYPE_INT32, {T});
        spmla_tensor_t tl = tst::tensor(lg.data(), SPMLA_DTYPE_FP32, {T, C}, {LS, 1});
        spmla_indexer_logits_args_t a = SPMLA_INDEXER_LOGITS_ARGS_INIT;
        a.q = &tq;
        a.k = &tk;
        a.k_scale = &tks;
        a.weights = &tw;
        a.k_start = &tst_;
        a.k_end = &ten;
        a.logits = &tl;
        size_t ws = 0;
        tst::check(spmla_indexer_logits_get_workspace_size(h, &a, &ws));
        std::vector<uint8_t> wsb(ws + 1);
        tst::check(spmla_indexer_logits_run(h, &a, ws ? wsb.data() : nullptr, ws, nullptr));
        for (int64_t t = 0; t < T; ++t) {
          const int64_t lo = std::max<int64_t>(0, st[size_t(t)]), hi = std::min<int64_t>(S, en[size_t(t)]);
          for (int64_t j = 0; j < C; ++j) {
            const float got = lg[size_t(t * LS + j)];
            if (j < lo || j >= hi) {
              if (got != -tst::inf()) FAIL("t " << t << " j " << j << " expected -inf, got " << got);
              continue;
            }
            double ref = 0, mag = 0;
            for (int64_t hh = 0; hh < Hi; ++hh) {
              double dot = 0, adot = 0;
              for (int64_t d = 0; d < Di; ++d) {
                const double p = tst::fp8_ref(q[size_t((t * Hi + hh) * Di + d)], fnuz) *
                                 tst::fp8_ref(k[size_t(j * Di + d)], fnuz);
                dot += p;
                adot += std::fabs(p);
              }
              const double s = double(ks[size_t(j)]) * dot;
              ref += double(w[size_t(t * Hi + hh)]) * (s > 0 ? s : 0);
              mag += std::fabs(double(w[size_t(t * Hi + hh)])) * double(ks[size_t(j)]) * adot;
            }
            check_value(got, ref, mag);
          }
          for (int64_t j = C; j < LS; ++j) CHECK(std::isnan(lg[size_t(t * LS + j)]));  // padding untouched
        }
      }
    }
  }
  CHECK(g_checked == 12 * 401);
}

TEST_CASE("indexer_logits (paged): block table, context lengths, next_n rows, -inf elsewhere") {
  g_checked = 0;
  tst::Rng rng(66);
  for (int fl = 1; fl <= 2; ++fl) {
    const bool fnuz = fl == 2;
    const auto kind = fnuz ? spmla::Fp8Kind::E4M3FNUZ : spmla::Fp8Kind::E4M3FN;
    for (int bs : {1, 53, 64}) {
      for (int64_t Di : {64, 128}) {
        INFO("fnuz " << fnuz << " bs " << bs << " Di " << Di);
        const int64_t B = 3, N = 2, Hi = 8, P = 6, C = 200;
        const int64_t pages = (P * B) / 2 + 2;
        TestCache c(SPMLA_KV_LAYOUT_INDEXER_FP8, spmla_fp8_flavor_t(fl), int32_t(Di), pages, bs);
        c.fill_random(rng, 1.0f);
        std::vector<int32_t> table(size_t(B * P));
        for (auto &x : table) x = int32_t(rng.integer(-1, pages));  // -1 and == pages: no key
        std::vector<int32_t> ctx = {int32_t(std::min<int64_t>(150, P * bs)), 1, int32_t(P * bs + 40)};
        std::vector<uint8_t> q(size_t(B * N * Hi * Di));
        for (auto &x : q) x = spmla::f32_to_fp8_e4m3(rng.normal() * 4, kind);
        std::vector<float> w(size_t(B * N * Hi));
        for (auto &x : w) x = rng.uniform(-1.0f, 1.0f);
        std::vector<float> lg(size_t(B * N * C), tst::qnan());
        for (int threads : {1, 3}) {
          tst::Handle h(threads);
          spmla_tensor_t tq = tst::tensor(q.data(), fnuz ? SPMLA_DTYPE_FP8_E4M3FNUZ : SPMLA_DTYPE_FP8_E4M3FN,
                                          {B, N, Hi, Di});
          spmla_tensor_t tb = tst::tensor(table.data(), SPMLA_DTYPE_INT32, {B, P});
          spmla_tensor_t tc = tst::tensor(ctx.data(), SPMLA_DTYPE_INT32, {B});
          spmla_tensor_t tw = tst::tensor(w.data(), SPMLA_DTYPE_FP32, {B * N, Hi});
          spmla_tensor_t tl = tst::tensor(lg.data(), SPMLA_DTYPE_FP32, {B * N, C});
          spmla_indexer_logits_paged_args_t a = SPMLA_INDEXER_LOGITS_PAGED_ARGS_INIT;
          a.q = &tq;
          a.cache = &c.desc;
          a.block_table = &tb;
          a.context_lens = &tc;
          a.weights = &tw;
          a.logits = &tl;
          size_t ws = 0;
          tst::check(spmla_indexer_logits_paged_get_workspace_size(h, &a, &ws));
          std::vector<uint8_t> wsb(ws + 1);
          tst::check(spmla_indexer_logits_paged_run(h, &a, ws ? wsb.data() : nullptr, ws, nullptr));
          for (int64_t b = 0; b < B; ++b)
            for (int64_t i = 0; i < N; ++i) {
              const int64_t r = b * N + i;
              const int64_t limit = ctx[size_t(b)] - N + i + 1;
              for (int64_t j = 0; j < C; ++j) {
                const float got = lg[size_t(r * C + j)];
                const int64_t pi = j / bs;
                const int32_t pg = pi < P ? table[size_t(b * P + pi)] : -1;
                if (j >= limit || pg < 0 || pg >= pages) {
                  if (got != -tst::inf()) FAIL("r " << r << " j " << j << " expected -inf, got " << got);
                  continue;
                }
                const int64_t slot = int64_t(pg) * bs + j % bs;
                const std::vector<double> kr = c.row(slot);  // fp8 * scale
                double ref = 0, mag = 0;
                for (int64_t hh = 0; hh < Hi; ++hh) {
                  double dot = 0, adot = 0;
                  for (int64_t d = 0; d < Di; ++d) {
                    const double p = tst::fp8_ref(q[size_t((r * Hi + hh) * Di + d)], fnuz) * kr[size_t(d)];
                    dot += p;
                    adot += std::fabs(p);
                  }
                  ref += double(w[size_t(r * Hi + hh)]) * (dot > 0 ? dot : 0);
                  mag += std::fabs(double(w[size_t(r * Hi + hh)])) * adot;
                }
                check_value(got, ref, mag);
              }
            }
        }
      }
    }
  }
  CHECK(g_checked > 5000);
}
