// GPU tier, sizes that reach the schedules of the CUDA store and indexer kernels: many rows per
// store group (grid-stride with the next row in flight), and indexer launches with more work items
// than SMs (persistent CTAs walking items, the k tile of the next item in flight, partial stages),
// FP8 edge codes (max finite, NaN, the FNUZ bytes 0x7F / 0xFF / 0x80), negative and NaN k_scale.
// Everything against the CPU reference on fresh random data; outputs poisoned first.
#include <algorithm>
#include <cstdlib>

#include "gpu_test.h"

using namespace gpu_test;

namespace {

// Random finite FP8 bytes plus a few edge codes (max finite both signs, NaN).
std::vector<uint8_t> edge_fp8(Rng &r, size_t n, bool fnuz, float sd) {
  const spmla::Fp8Kind k = fnuz ? spmla::Fp8Kind::E4M3FNUZ : spmla::Fp8Kind::E4M3FN;
  std::vector<uint8_t> v(n);
  for (auto &b : v) {
    const double u = r.uni();
    if (u < 0.002) b = fnuz ? 0x7F : 0x7E;       // +max finite
    else if (u < 0.004) b = fnuz ? 0xFF : 0xFE;  // -max finite
    else if (u < 0.0042) b = fnuz ? 0x80 : 0x7F;  // NaN
    else b = spmla::f32_to_fp8_e4m3(r.normal(sd), k);
  }
  return v;
}

}  // namespace

TEST_CASE("gpu indexer_logits ragged, more work items than SMs", "[gpu][indexer]") {
  Rng r;
  INFO("seed " << r.seed);
  // rows of 64 per item, 256 keys per item: T=66 x S=50000 is 2 x 196 items (H200: 132 SMs);
  // T=131 leaves a 3-row group (a half stage).
  struct Cs { int T, S, Hi, Di; bool fnuz; } cases[] = {
      {66, 50000, 8, 64, false}, {131, 12000, 16, 64, true}, {66, 34000, 64, 128, false}, {3, 40000, 40, 128, true}};
  for (auto cs : cases) {
    if (quick() && (long)cs.T * cs.S > 40000) continue;
    INFO("T=" << cs.T << " S=" << cs.S << " Hi=" << cs.Hi << " Di=" << cs.Di << " fnuz=" << cs.fnuz);
    const int T = cs.T, S = cs.S, Hi = cs.Hi, Di = cs.Di;
    auto q = edge_fp8(r, (size_t)T * Hi * Di, cs.fnuz, 1.0f);
    auto k = edge_fp8(r, (size_t)S * Di, cs.fnuz, 1.0f);
    std::vector<float> ks(S), w((size_t)T * Hi);
    for (auto &x : ks) {
      const double u = r.uni();
      x = u < 0.01 ? -(float)(0.01 + r.uni()) : u < 0.011 ? qnan() : (float)(0.01 + r.uni());
    }
    for (auto &x : w) x = r.normal(1.0f);
    std::vector<int32_t> st(T), en(T);
    for (int t = 0; t < T; ++t) {
      const double u = r.uni();
      if (u < 0.4) {  // the whole range
        st[t] = 0;
        en[t] = S;
      } else if (u < 0.45) {  // empty
        st[t] = S / 3;
        en[t] = S / 3;
      } else {
        st[t] = (int32_t)r.range(-5, S / 2 + 1);
        en[t] = (int32_t)r.range(st[t], S + 10);
      }
    }
    check_indexer_ragged(q, k, ks, w, st, en, T, S, Hi, Di, cs.fnuz, "indexer ragged (many items)");
  }
}

TEST_CASE("gpu indexer_logits paged, more work items than SMs", "[gpu][indexer]") {
  Rng r;
  INFO("seed " << r.seed);
  // 256 keys per item: B=70 x 4 key blocks; N=3 gives a half stage per item.
  struct Cs { int B, N, Hi, Di, bs, C; bool fnuz; } cases[] = {
      {70, 2, 64, 128, 64, 1000, false}, {50, 3, 16, 64, 16, 700, true}, {8, 70, 32, 128, 7, 300, false}};
  for (auto cs : cases) {
    if (quick() && (long)cs.B * cs.N * cs.C > 10000) continue;
    INFO("B=" << cs.B << " N=" << cs.N << " Hi=" << cs.Hi << " Di=" << cs.Di << " bs=" << cs.bs << " C=" << cs.C);
    const int B = cs.B, N = cs.N, Hi = cs.Hi, Di = cs.Di, bs = cs.bs, Cc = cs.C;
    const int max_pages = (Cc + bs - 1) / bs + 2;
    const int pages = B * max_pages;
    const IndexerCache ic = indexer_cache(r, pages, bs, Di, cs.fnuz);
    std::vector<int32_t> bt((size_t)B * max_pages), cl(B);
    for (auto &x : bt) x = r.uni() < 0.03 ? -1 : r.uni() < 0.03 ? pages + 3 : (int32_t)r.range(0, pages);
    for (auto &x : cl) x = r.uni() < 0.5 ? Cc : (int32_t)r.range(0, Cc + 20);
    auto q = edge_fp8(r, (size_t)B * N * Hi * Di, cs.fnuz, 1.0f);
    std::vector<float> w((size_t)B * N * Hi);
    for (auto &x : w) x = r.normal(1.0f);
    check_indexer_paged(ic, bt, cl, q, w, B, N, Hi, Di, max_pages, Cc, cs.fnuz, "indexer paged (many items)");
  }
}

TEST_CASE("gpu kv_cache_store bit-identical, many rows per group", "[gpu][kv]") {
  Rng r;
  INFO("seed " << r.seed);
  struct Cs { spmla_kv_layout_t l; spmla_fp8_flavor_t f; int D, bs; } layouts[] = {
      {SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FN, 576, 64},      {SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FNUZ, 576, 37},
      {SPMLA_KV_LAYOUT_V4_FP8, SPMLA_FP8_E4M3FN, 512, 64},       {SPMLA_KV_LAYOUT_V4_FP8, SPMLA_FP8_E4M3FNUZ, 512, 3},
      {SPMLA_KV_LAYOUT_INDEXER_FP8, SPMLA_FP8_E4M3FN, 128, 64},  {SPMLA_KV_LAYOUT_INDEXER_FP8, SPMLA_FP8_E4M3FNUZ, 64, 5},
      {SPMLA_KV_LAYOUT_INDEXER_FP8, SPMLA_FP8_E4M3FNUZ, 128, 1}, {SPMLA_KV_LAYOUT_FP8_PER_TENSOR, SPMLA_FP8_E4M3FN, 576, 64},
      {SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, 512, 16}};
  for (auto L : layouts) {
    INFO("layout " << L.l << " flavor " << L.f << " D " << L.D << " bs " << L.bs);
    spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
    c.layout = L.l;
    c.fp8_flavor = L.f;
    c.head_dim = L.D;
    c.block_size = L.bs;
    const int N = quick() ? 3000 : 40000;
    c.num_pages = (N + 100 + L.bs - 1) / L.bs;
    c.scale = 0.0173f;
    size_t pb = 0;
    check(spmla_kv_cache_page_bytes(&c, &pb), "page bytes");
    std::vector<uint8_t> cache(pb * c.num_pages);
    for (size_t i = 0; i < cache.size(); i += 8) {  // random bytes, 8 per draw
      const uint64_t x = r.g();
      for (size_t b = 0; b < 8 && i + b < cache.size(); ++b) cache[i + b] = (uint8_t)(x >> (8 * b));
    }
    const int64_t nslots = c.num_pages * L.bs;
    std::vector<int64_t> perm((size_t)nslots);
    for (int64_t i = 0; i < nslots; ++i) perm[(size_t)i] = i;
    std::shuffle(perm.begin(), perm.end(), r.g);
    std::vector<int32_t> sm(N);
    for (int i = 0; i < N; ++i) {
      const double u = r.uni();
      sm[i] = u < 0.02 ? -1 : u < 0.03 ? (int32_t)(nslots + r.range(0, 10)) : (int32_t)perm[(size_t)i];
    }
    std::vector<uint16_t> kv = random_bf16(r, (size_t)N * L.D, 1.0f);
    for (int i = 0; i < N; ++i) {  // special rows: zeros, huge, tiny, negative NaN, a NaN, -0
      const double u = r.uni();
      for (int d = 0; d < L.D; ++d) {
        uint16_t &x = kv[(size_t)i * L.D + d];
        if (u < 0.03) x = 0;
        else if (u < 0.06) x = spmla::f32_to_bf16(spmla::bf16_to_f32(x) * 3e4f);
        else if (u < 0.09) x = spmla::f32_to_bf16(spmla::bf16_to_f32(x) * 1e-7f);
        else if (u < 0.1) x = 0x8000;
      }
      if (u > 0.98) kv[(size_t)i * L.D + (size_t)r.range(0, L.D)] = spmla::f32_to_bf16(qnan());
      if (u > 0.97 && u <= 0.98) kv[(size_t)i * L.D + (size_t)r.range(0, L.D)] = 0xffc0;  // -NaN
    }
    // then gather slots back (listed slots, some invalid)
    std::vector<int32_t> gs(quick() ? 500 : 20000);
    for (auto &x : gs) {
      const double u = r.uni();
      x = u < 0.03 ? -1 : u < 0.05 ? (int32_t)(nslots + 7) : (int32_t)r.range(0, nslots);
    }
    check_store_gather(c, cache, kv, sm, L.D, gs);
  }
}
