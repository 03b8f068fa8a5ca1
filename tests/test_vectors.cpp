// test_vectors.cpp — the CPU backend against FlashMLA's public test vectors
// (tests/vectors/flashmla, a copy of the public shared/vectors; see its README): cache bytes of quant.py and sparse decode /
// prefill outputs, with docs/SPEC.md's tolerances.
#include "test_support.h"

namespace {

std::string dir(const char *c) { return tst::vectors_dir() + "/flashmla/" + c + "/"; }

struct Compare {
  double out_rel = 0, lse_max = 0, mx_max = 0;
};

// out: [T, H, 512] bf16; lse_ref indexed by lse_at(t, h); max_ref optional.
template <class LseAt>
Compare compare(const std::vector<uint16_t> &out, const std::vector<uint16_t> &out_ref,
                const std::vector<float> &lse, LseAt lse_at, int64_t T, int64_t H,
                const std::vector<float> *mx = nullptr, const std::vector<float> *mx_ref = nullptr) {
  Compare c;
  std::vector<double> ref(out_ref.size());
  for (size_t i = 0; i < ref.size(); ++i) ref[i] = tst::fb(out_ref[i]);
  c.out_rel = tst::rel_l2(out, ref);
  CHECK(c.out_rel < 1e-2);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const double r = lse_at(t, h), g = lse[size_t(t * H + h)];
      INFO("t " << t << " h " << h << " lse " << g << " ref " << r);
      if (std::isinf(r)) {
        CHECK(g == r);
      } else {
        const double d = std::fabs(g - r);
        c.lse_max = std::max(c.lse_max, d);
        CHECK(d < 1e-3 * std::max(1.0, std::fabs(r)));
      }
      if (mx && mx_ref) {
        const double mr = (*mx_ref)[size_t(t * H + h)], mg = (*mx)[size_t(t * H + h)];
        if (std::isinf(mr)) {
          CHECK(mg == mr);
        } else {
          c.mx_max = std::max(c.mx_max, std::fabs(mg - mr));
          CHECK(std::fabs(mg - mr) < 1e-3 * std::max(1.0, std::fabs(mr)));
        }
      }
    }
  return c;
}

struct Run {
  std::vector<uint16_t> out;
  std::vector<float> lse, mx;
};

Run attention(spmla_handle_t h, std::vector<uint16_t> &q, int64_t T, int64_t H, int64_t D,
              const spmla_kv_cache_t &kv, std::vector<int32_t> &idx, int64_t K,
              std::vector<int32_t> *len, const spmla_kv_cache_t *ekv,
              std::vector<int32_t> *eidx, int64_t K2, std::vector<int32_t> *elen,
              std::vector<float> *sink, float scale) {
  Run r;
  r.out.assign(size_t(T * H * 512), 0xFFFF);
  r.lse.assign(size_t(T * H), 0.0f);
  r.mx.assign(size_t(T * H), 0.0f);
  spmla_tensor_t tq = tst::tensor(q.data(), SPMLA_DTYPE_BF16, {T, H, D});
  spmla_tensor_t ti = tst::tensor(idx.data(), SPMLA_DTYPE_INT32, {T, K});
  spmla_tensor_t tl = tst::tensor(len ? len->data() : nullptr, SPMLA_DTYPE_INT32, {T});
  spmla_tensor_t tei = tst::tensor(eidx ? eidx->data() : nullptr, SPMLA_DTYPE_INT32, {T, K2});
  spmla_tensor_t tel = tst::tensor(elen ? elen->data() : nullptr, SPMLA_DTYPE_INT32, {T});
  spmla_tensor_t ts = tst::tensor(sink ? sink->data() : nullptr, SPMLA_DTYPE_FP32, {H});
  spmla_tensor_t to = tst::tensor(r.out.data(), SPMLA_DTYPE_BF16, {T, H, 512});
  spmla_tensor_t tlse = tst::tensor(r.lse.data(), SPMLA_DTYPE_FP32, {T, H});
  spmla_tensor_t tmx = tst::tensor(r.mx.data(), SPMLA_DTYPE_FP32, {T, H});
  spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
  a.q = &tq;
  a.kv = &kv;
  a.indices = &ti;
  a.lengths = len ? &tl : nullptr;
  a.extra_kv = ekv;
  a.extra_indices = ekv ? &tei : nullptr;
  a.extra_lengths = elen ? &tel : nullptr;
  a.attn_sink = sink ? &ts : nullptr;
  a.scale = scale;
  a.out = &to;
  a.lse = &tlse;
  a.max_logits = &tmx;
  size_t ws = 0;
  tst::check(spmla_sparse_attention_get_workspace_size(h, &a, &ws));
  std::vector<uint8_t> wsb(ws + 1);
  tst::check(spmla_sparse_attention_plan(h, &a, ws ? wsb.data() : nullptr, ws, nullptr));
  tst::check(spmla_sparse_attention_run(h, &a, ws ? wsb.data() : nullptr, ws, nullptr));
  return r;
}

void report(const char *name, const Compare &c) {
  std::printf("[vectors] %-22s out rel-L2 %.2e  max|dlse| %.2e  max|dmax_logits| %.2e\n", name,
              c.out_rel, c.lse_max, c.mx_max);
}

}  // namespace

TEST_CASE("vectors: quant_small cache bytes, V32 (all bytes) and MODEL1/V4 (all bytes, pads 0)") {
  tst::Handle h;
  const std::string d = dir("quant_small");
  SECTION("V32") {
    auto kv = tst::read_bin<uint16_t>(d + "v32_kv.bin", 2 * 16 * 576);
    auto ref = tst::read_bin<uint8_t>(d + "v32_k_cache.bin", 2 * 16 * 656);
    tst::Bytes buf(2 * 16 * 656, 0xEE);
    spmla_kv_cache_t c = tst::cache(buf.data(), SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FN, 576, 2, 16);
    std::vector<int32_t> slots(32);
    for (int i = 0; i < 32; ++i) slots[size_t(i)] = 31 - i;  // any order
    std::vector<uint16_t> kvp(32 * 576);
    for (int i = 0; i < 32; ++i) std::memcpy(&kvp[size_t(i * 576)], &kv[size_t((31 - i) * 576)], 576 * 2);
    spmla_tensor_t tk = tst::tensor(kvp.data(), SPMLA_DTYPE_BF16, {32, 576});
    spmla_tensor_t ts = tst::tensor(slots.data(), SPMLA_DTYPE_INT32, {32});
    spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
    a.kv = &tk;
    a.slot_mapping = &ts;
    a.cache = &c;
    tst::check(spmla_kv_cache_store_run(h, &a, nullptr));
    size_t diff = 0;
    for (size_t i = 0; i < ref.size(); ++i) diff += buf.data()[i] != ref[i];
    CHECK(diff == 0);
  }
  SECTION("V4 (MODEL1)") {
    auto kv = tst::read_bin<uint16_t>(d + "model1_kv.bin", 2 * 16 * 512);
    auto ref = tst::read_bin<uint8_t>(d + "model1_k_cache_pages.bin", 2 * 9792);
    tst::Bytes buf(2 * 9792, 0xEE);
    spmla_kv_cache_t c = tst::cache(buf.data(), SPMLA_KV_LAYOUT_V4_FP8, SPMLA_FP8_E4M3FN, 512, 2, 16);
    size_t pb = 0;
    tst::check(spmla_kv_cache_page_bytes(&c, &pb));
    REQUIRE(pb == 9792);
    std::vector<int64_t> slots(32);
    for (int i = 0; i < 32; ++i) slots[size_t(i)] = i;
    spmla_tensor_t tk = tst::tensor(kv.data(), SPMLA_DTYPE_BF16, {32, 512});
    spmla_tensor_t ts = tst::tensor(slots.data(), SPMLA_DTYPE_INT64, {32});
    spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
    a.kv = &tk;
    a.slot_mapping = &ts;
    a.cache = &c;
    tst::check(spmla_kv_cache_store_run(h, &a, nullptr));
    size_t diff = 0, diff_defined = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      if (buf.data()[i] == ref[i]) continue;
      ++diff;
      const size_t in_page = i % 9792;
      const bool undefined = in_page >= 16 * 584 || (in_page >= 16 * 576 && (in_page - 16 * 576) % 8 == 7);
      if (!undefined) ++diff_defined;
    }
    CHECK(diff_defined == 0);
    CHECK(diff == 0);  // the pad byte and page padding are written as 0, as the file has them
  }
}

TEST_CASE("vectors: v32_decode_small (V32 FP8 cache, b 1, s_q 2, h 64, top-k 128)") {
  tst::Handle h;
  const std::string d = dir("v32_decode_small");
  auto q = tst::read_bin<uint16_t>(d + "q.bin", 2 * 64 * 576);
  auto kc = tst::read_bin<uint8_t>(d + "k_cache.bin", 8 * 64 * 656);
  auto idx = tst::read_bin<int32_t>(d + "indices.bin", 2 * 128);
  auto out_ref = tst::read_bin<uint16_t>(d + "out.bin", 2 * 64 * 512);
  auto lse_ref = tst::read_bin<float>(d + "lse.bin", 64 * 2);  // [b, h, s_q]
  spmla_kv_cache_t c = tst::cache(kc.data(), SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FN, 576, 8, 64);
  Run r = attention(h, q, 2, 64, 576, c, idx, 128, nullptr, nullptr, nullptr, 0, nullptr, nullptr, 0.75f);
  report("v32_decode_small", compare(r.out, out_ref, r.lse,
                                     [&](int64_t t, int64_t hh) { return lse_ref[size_t(hh * 2 + t)]; }, 2, 64));
}

TEST_CASE("vectors: v32_decode_sink (2 requests, h 128, top-k 192, sink with a +inf head)") {
  tst::Handle h;
  const std::string d = dir("v32_decode_sink");
  auto q = tst::read_bin<uint16_t>(d + "q.bin", 2 * 128 * 576);
  auto kc = tst::read_bin<uint8_t>(d + "k_cache.bin", 32 * 64 * 656);
  auto idx = tst::read_bin<int32_t>(d + "indices.bin", 2 * 192);
  auto sink = tst::read_bin<float>(d + "attn_sink.bin", 128);
  auto out_ref = tst::read_bin<uint16_t>(d + "out.bin", 2 * 128 * 512);
  auto lse_ref = tst::read_bin<float>(d + "lse.bin", 2 * 128);  // [b, h, 1]
  spmla_kv_cache_t c = tst::cache(kc.data(), SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FN, 576, 32, 64);
  Run r = attention(h, q, 2, 128, 576, c, idx, 192, nullptr, nullptr, nullptr, 0, nullptr, &sink, 0.75f);
  report("v32_decode_sink", compare(r.out, out_ref, r.lse,
                                    [&](int64_t t, int64_t hh) { return lse_ref[size_t(t * 128 + hh)]; }, 2, 128));
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t i = 0; i < 512; ++i) CHECK(r.out[size_t((t * 128 + 77) * 512 + i)] == 0);
}

TEST_CASE("vectors: model1_decode_small (V4 main + sliding-window extra, lengths, sink)") {
  tst::Handle h;
  const std::string d = dir("model1_decode_small");
  auto q = tst::read_bin<uint16_t>(d + "q.bin", 64 * 512);
  auto kc = tst::read_bin<uint8_t>(d + "k_cache_pages.bin", 6 * 37440);
  auto ekc = tst::read_bin<uint8_t>(d + "extra_k_cache_pages.bin", 2 * 74880);
  auto idx = tst::read_bin<int32_t>(d + "indices.bin", 64);
  auto len = tst::read_bin<int32_t>(d + "topk_length.bin", 1);
  auto eidx = tst::read_bin<int32_t>(d + "extra_indices.bin", 64);
  auto elen = tst::read_bin<int32_t>(d + "extra_topk_length.bin", 1);
  auto sink = tst::read_bin<float>(d + "attn_sink.bin", 64);
  auto out_ref = tst::read_bin<uint16_t>(d + "out.bin", 64 * 512);
  auto lse_ref = tst::read_bin<float>(d + "lse.bin", 64);
  spmla_kv_cache_t c = tst::cache(kc.data(), SPMLA_KV_LAYOUT_V4_FP8, SPMLA_FP8_E4M3FN, 512, 6, 64, 37440);
  spmla_kv_cache_t ec = tst::cache(ekc.data(), SPMLA_KV_LAYOUT_V4_FP8, SPMLA_FP8_E4M3FN, 512, 2, 128, 74880);
  Run r = attention(h, q, 1, 64, 512, c, idx, 64, &len, &ec, &eidx, 64, &elen, &sink, 0.75f);
  report("model1_decode_small", compare(r.out, out_ref, r.lse,
                                        [&](int64_t, int64_t hh) { return lse_ref[size_t(hh)]; }, 1, 64));
  for (int64_t i = 0; i < 512; ++i) CHECK(r.out[size_t(13 * 512 + i)] == 0);
  // the lengths matter: without them the result differs
  Run full = attention(h, q, 1, 64, 512, c, idx, 64, nullptr, &ec, &eidx, 64, nullptr, &sink, 0.75f);
  CHECK(full.lse != r.lse);
}

TEST_CASE("vectors: v32_prefill_small (bf16 kv, invalid ids of every kind, lengths, sink)") {
  tst::Handle h;
  const std::string d = dir("v32_prefill_small");
  auto q = tst::read_bin<uint16_t>(d + "q.bin", 4 * 64 * 576);
  auto kv = tst::read_bin<uint16_t>(d + "kv.bin", 512 * 576);
  auto idx = tst::read_bin<int32_t>(d + "indices.bin", 4 * 128);
  auto len = tst::read_bin<int32_t>(d + "topk_length.bin", 4);
  auto sink = tst::read_bin<float>(d + "attn_sink.bin", 64);
  auto out_ref = tst::read_bin<uint16_t>(d + "out.bin", 4 * 64 * 512);
  auto mx_ref = tst::read_bin<float>(d + "max_logits.bin", 4 * 64);
  auto lse_ref = tst::read_bin<float>(d + "lse.bin", 4 * 64);
  // The same kv as a BF16 cache of block size 1 (512 pages), 512 (one page) and 64 (8 pages).
  for (int bs : {1, 512, 64}) {
    INFO("block_size " << bs);
    spmla_kv_cache_t c = tst::cache(kv.data(), SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, 576, 512 / bs, bs);
    Run r = attention(h, q, 4, 64, 576, c, idx, 128, &len, nullptr, nullptr, 0, nullptr, &sink, 5.0f);
    Compare cmp = compare(r.out, out_ref, r.lse, [&](int64_t t, int64_t hh) { return lse_ref[size_t(t * 64 + hh)]; },
                          4, 64, &r.mx, &mx_ref);
    if (bs == 1) report("v32_prefill_small", cmp);
    for (int64_t hh = 0; hh < 64; ++hh) {
      CHECK(r.lse[size_t(2 * 64 + hh)] == tst::inf());
      CHECK(r.mx[size_t(2 * 64 + hh)] == -tst::inf());
    }
    for (int64_t i = 0; i < 64 * 512; ++i) CHECK(r.out[size_t(2 * 64 * 512 + i)] == 0);
    for (int64_t t = 0; t < 4; ++t)
      for (int64_t i = 0; i < 512; ++i) CHECK(r.out[size_t((t * 64 + 2) * 512 + i)] == 0);
  }
}

TEST_CASE("vectors: model1_prefill_small (bf16 kv, D 512, sink)") {
  tst::Handle h;
  const std::string d = dir("model1_prefill_small");
  auto q = tst::read_bin<uint16_t>(d + "q.bin", 4 * 64 * 512);
  auto kv = tst::read_bin<uint16_t>(d + "kv.bin", 512 * 512);
  auto idx = tst::read_bin<int32_t>(d + "indices.bin", 4 * 128);
  auto sink = tst::read_bin<float>(d + "attn_sink.bin", 64);
  auto out_ref = tst::read_bin<uint16_t>(d + "out.bin", 4 * 64 * 512);
  auto mx_ref = tst::read_bin<float>(d + "max_logits.bin", 4 * 64);
  auto lse_ref = tst::read_bin<float>(d + "lse.bin", 4 * 64);
  spmla_kv_cache_t c = tst::cache(kv.data(), SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, 512, 512, 1);
  Run r = attention(h, q, 4, 64, 512, c, idx, 128, nullptr, nullptr, nullptr, 0, nullptr, &sink, 5.0f);
  report("model1_prefill_small",
         compare(r.out, out_ref, r.lse, [&](int64_t t, int64_t hh) { return lse_ref[size_t(t * 64 + hh)]; }, 4,
                 64, &r.mx, &mx_ref));
  for (int64_t t = 0; t < 4; ++t)
    for (int64_t i = 0; i < 512; ++i) CHECK(r.out[size_t((t * 64 + 6) * 512 + i)] == 0);
}
