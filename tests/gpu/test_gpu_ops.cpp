// GPU tier: indices_to_slots, window_indices, indexer_logits (ragged, paged), topk_per_row,
// kv_cache_store (bit-identical cache bytes) and kv_cache_gather against the CPU reference.
#include <algorithm>
#include <cstdlib>

#include "gpu_test.h"

#if defined(SPMLA_GPU_TESTS_HAVE_CUDART)
#include <cuda_runtime.h>
#endif

using namespace gpu_test;

namespace {

std::vector<int32_t> block_table(Rng &r, int R, int max_pages, int num_pages) {
  std::vector<int32_t> bt((size_t)R * max_pages);
  for (auto &x : bt) x = r.uni() < 0.05 ? -1 : (int32_t)r.range(0, num_pages);
  return bt;
}

}  // namespace

TEST_CASE("gpu indices_to_slots and window_indices", "[gpu][indices]") {
  Rng r;
  INFO("seed " << r.seed);
  const int cases[][3] = {{1, 1, 1}, {37, 63, 2}, {200, 2048, 64}, {3000, 100, 53}, {5, 512, 256}};
  for (auto &cs : cases) {
    if (quick() && cs[0] * cs[1] > 100000) continue;
    const int T = cs[0], K = cs[1], bs = cs[2];
    const int R = 7, max_pages = std::max(1, 3000 / bs);
    INFO("T=" << T << " K=" << K << " bs=" << bs);
    std::vector<int32_t> bt = block_table(r, R, max_pages, 100000 / bs + 1);
    std::vector<int32_t> pos((size_t)T * K), ttr(T);
    std::vector<uint8_t> tv(T);
    for (auto &p : pos) p = r.uni() < 0.1 ? -1 : (int32_t)r.range(0, max_pages * bs + 50);
    for (auto &x : ttr) x = r.uni() < 0.05 ? R + 1 : (int32_t)r.range(0, R);
    for (auto &x : tv) x = r.uni() < 0.1 ? 0 : 1;
    DevBuf dpos(pos), dttr(ttr), dtv(tv), dbt(bt);
    DevBuf dslots((size_t)T * K * 4), dlen((size_t)T * 4), dind((size_t)(T + 1) * 4), drag((size_t)T * K * 4);
    for (DevBuf *b : {&dslots, &dlen, &dind, &drag}) b->poison();
    auto hslots = poisoned<int32_t>((size_t)T * K), hlen = poisoned<int32_t>(T), hind = poisoned<int32_t>(T + 1),
         hrag = poisoned<int32_t>((size_t)T * K);
    auto run = [&](bool gpu) {
      spmla_tensor_t a1 = tensor(gpu ? dpos.p : pos.data(), SPMLA_DTYPE_INT32, {T, K});
      spmla_tensor_t a2 = tensor(gpu ? dttr.p : ttr.data(), SPMLA_DTYPE_INT32, {T});
      spmla_tensor_t a3 = tensor(gpu ? dbt.p : bt.data(), SPMLA_DTYPE_INT32, {R, max_pages});
      spmla_tensor_t a4 = tensor(gpu ? dtv.p : tv.data(), SPMLA_DTYPE_UINT8, {T});
      spmla_tensor_t o1 = tensor(gpu ? dslots.p : hslots.data(), SPMLA_DTYPE_INT32, {T, K});
      spmla_tensor_t o2 = tensor(gpu ? dlen.p : hlen.data(), SPMLA_DTYPE_INT32, {T});
      spmla_tensor_t o3 = tensor(gpu ? dind.p : hind.data(), SPMLA_DTYPE_INT32, {T + 1});
      spmla_tensor_t o4 = tensor(gpu ? drag.p : hrag.data(), SPMLA_DTYPE_INT32, {(int64_t)T * K});
      spmla_indices_to_slots_args_t a = SPMLA_INDICES_TO_SLOTS_ARGS_INIT;
      a.positions = &a1;
      a.token_to_req = &a2;
      a.block_table = &a3;
      a.block_size = bs;
      a.token_valid = &a4;
      a.slots = &o1;
      a.lengths = &o2;
      a.indptr = &o3;
      a.ragged_slots = &o4;
      check(spmla_indices_to_slots_run(gpu ? G() : C(), &a, nullptr), "indices_to_slots");
    };
    run(false);
    run(true);
    sync();
    require_equal(dslots.download<int32_t>(hslots.size()), hslots, "slots");
    require_equal(dlen.download<int32_t>(hlen.size()), hlen, "lengths");
    require_equal(dind.download<int32_t>(hind.size()), hind, "indptr");
    const int total = hind[(size_t)T];
    auto grag = drag.download<int32_t>((size_t)total);
    require_equal(grag, std::vector<int32_t>(hrag.begin(), hrag.begin() + total), "ragged_slots");

    // window_indices with ratios 1, 4, 128
    for (int ratio : {1, 4, 128}) {
      const int W = ratio == 128 ? 64 : std::min(K, 128);
      std::vector<int32_t> wp(T);
      for (auto &x : wp) x = r.uni() < 0.05 ? -3 : (int32_t)r.range(0, max_pages * bs + 100);
      DevBuf dwp(wp), dws((size_t)T * W * 4), dwl((size_t)T * 4);
      dws.poison();
      dwl.poison();
      auto hws = poisoned<int32_t>((size_t)T * W), hwl = poisoned<int32_t>(T);
      auto runw = [&](bool gpu) {
        spmla_tensor_t a1 = tensor(gpu ? dwp.p : wp.data(), SPMLA_DTYPE_INT32, {T});
        spmla_tensor_t a2 = tensor(gpu ? dttr.p : ttr.data(), SPMLA_DTYPE_INT32, {T});
        spmla_tensor_t a3 = tensor(gpu ? dbt.p : bt.data(), SPMLA_DTYPE_INT32, {R, max_pages});
        spmla_tensor_t o1 = tensor(gpu ? dws.p : hws.data(), SPMLA_DTYPE_INT32, {T, W});
        spmla_tensor_t o2 = tensor(gpu ? dwl.p : hwl.data(), SPMLA_DTYPE_INT32, {T});
        spmla_window_indices_args_t a = SPMLA_WINDOW_INDICES_ARGS_INIT;
        a.positions = &a1;
        a.token_to_req = &a2;
        a.block_table = &a3;
        a.block_size = bs;
        a.ratio = ratio;
        a.slots = &o1;
        a.lengths = &o2;
        check(spmla_window_indices_run(gpu ? G() : C(), &a, nullptr), "window_indices");
      };
      runw(false);
      runw(true);
      sync();
      require_equal(dws.download<int32_t>(hws.size()), hws, "window slots ratio " + std::to_string(ratio));
      require_equal(dwl.download<int32_t>(hwl.size()), hwl, "window lengths ratio " + std::to_string(ratio));
    }
  }
}

TEST_CASE("gpu indexer_logits ragged", "[gpu][indexer]") {
  Rng r;
  INFO("seed " << r.seed);
  struct Cs { int T, S, Hi, Di; bool fnuz; } cases[] = {
      {1, 100, 8, 64, false}, {5, 3000, 64, 128, false}, {37, 1000, 32, 128, true}, {9, 4100, 64, 64, true}, {3, 17, 13, 128, false}};
  for (auto cs : cases) {
    if (quick() && (long)cs.T * cs.S > 40000) continue;
    INFO("T=" << cs.T << " S=" << cs.S << " Hi=" << cs.Hi << " Di=" << cs.Di << " fnuz=" << cs.fnuz);
    const int T = cs.T, S = cs.S, Hi = cs.Hi, Di = cs.Di;
    auto q = random_fp8(r, (size_t)T * Hi * Di, cs.fnuz, 1.0f);
    auto k = random_fp8(r, (size_t)S * Di, cs.fnuz, 1.0f);
    std::vector<float> ks(S), w((size_t)T * Hi);
    for (auto &x : ks) x = (float)(0.01 + r.uni());
    for (auto &x : w) x = r.normal(1.0f);
    std::vector<int32_t> st(T), en(T);
    for (int t = 0; t < T; ++t) {
      st[t] = (int32_t)r.range(-5, S / 2 + 1);
      en[t] = (int32_t)r.range(st[t], S + 10);
    }
    check_indexer_ragged(q, k, ks, w, st, en, T, S, Hi, Di, cs.fnuz, "indexer ragged");
  }
}

TEST_CASE("gpu indexer_logits paged", "[gpu][indexer]") {
  Rng r;
  INFO("seed " << r.seed);
  struct Cs { int B, N, Hi, Di, bs, C; bool fnuz; } cases[] = {
      {1, 1, 64, 128, 64, 1000, false}, {3, 2, 64, 128, 64, 5000, false}, {2, 5, 16, 64, 53, 700, true}, {4, 4, 8, 128, 1, 300, true}};
  for (auto cs : cases) {
    if (quick() && (long)cs.B * cs.N * cs.C > 10000) continue;
    INFO("B=" << cs.B << " N=" << cs.N << " Hi=" << cs.Hi << " Di=" << cs.Di << " bs=" << cs.bs << " C=" << cs.C);
    const int B = cs.B, N = cs.N, Hi = cs.Hi, Di = cs.Di, bs = cs.bs, Cc = cs.C;
    const int max_pages = (Cc + bs - 1) / bs + 2;
    const int pages = B * max_pages;
    const IndexerCache ic = indexer_cache(r, pages, bs, Di, cs.fnuz);
    std::vector<int32_t> bt((size_t)B * max_pages), cl(B);
    for (auto &x : bt) x = r.uni() < 0.03 ? -1 : r.uni() < 0.03 ? pages + 3 : (int32_t)r.range(0, pages);
    for (auto &x : cl) x = (int32_t)r.range(0, Cc + 20);
    auto q = random_fp8(r, (size_t)B * N * Hi * Di, cs.fnuz, 1.0f);
    std::vector<float> w((size_t)B * N * Hi);
    for (auto &x : w) x = r.normal(1.0f);
    check_indexer_paged(ic, bt, cl, q, w, B, N, Hi, Di, max_pages, Cc, cs.fnuz, "indexer paged");
  }
}

TEST_CASE("gpu topk_per_row", "[gpu][topk]") {
  Rng r;
  INFO("seed " << r.seed);
  // vals: 0 normal, 1 integers in [-20, 20) (many ties), 2 three distinct values (a tie larger than
  // the CUDA fast kernel's candidate list: its global-memory fallback), 3 mostly +-0 with some 1
  // and -1 (the k-th value is 0: -0 == +0 ties), 4 large values on every 16th vector of the row
  // (exactly what the fast kernel's strided sample reads in its 512-thread configuration, the one
  // k = 4000 of 32768 gets: the sample promises too many candidates and the row falls back).
  // rows: 0 whole rows, 2 row_starts/row_ends, 3 the paged rule (next_n = 2).
  // CUDA paths: C above ~11000 (32768, 33333, 70000, 131072) the fast kernel's sampled pass, below
  // it every key a candidate; k too large for the list (40000/9000) or C too large for the bitmaps
  // (500000) the portable kernel. The last four cases have more rows than one wave of blocks
  // (3 x 132 on an H200), with short, sampled, take-all and fallen-back rows mixed in one launch.
  struct Cs { int R, C, k, vals, rows; } cases[] = {
      {3, 100, 1, 0, 0},        {7, 5000, 7, 1, 0},       {64, 32768, 2048, 0, 0}, {33, 32768, 1024, 0, 2},
      {40, 8192, 512, 1, 0},    {5, 600, 1000, 0, 0},     {16, 4096, 2048, 0, 3},  {9, 70000, 2048, 0, 2},
      {8, 3000, 100, 0, 3},     {20, 32768, 1, 0, 0},     {10, 32768, 7, 0, 2},    {12, 33333, 512, 1, 0},
      {16, 32768, 2048, 1, 2},  {16, 32768, 2048, 0, 3},  {6, 131072, 2048, 0, 0}, {5, 131072, 512, 0, 2},
      {6, 32768, 2048, 2, 0},   {6, 32768, 2048, 3, 2},   {8, 8192, 2048, 3, 0},   {6, 32768, 4000, 4, 0},
      {6, 32768, 2048, 4, 2},   {4, 40000, 9000, 0, 2},   {4, 500000, 2048, 0, 0}, {8, 33333, 2048, 0, 2},
      {1000, 32768, 2048, 0, 2}, {700, 32768, 2048, 2, 2}, {1000, 20000, 512, 1, 3}, {900, 32768, 4000, 4, 2}};
  for (auto cs : cases) {
    if (quick()) cs.R = std::min(cs.R, cs.R > 100 ? 600 : 8), cs.C = std::min(cs.C, 8192);  // every mode, smaller
    INFO("R=" << cs.R << " C=" << cs.C << " k=" << cs.k << " vals=" << cs.vals << " rows=" << cs.rows);
    const int R = cs.R, Cc = cs.C, k = cs.k;
    std::vector<float> v((size_t)R * Cc);
    for (size_t i = 0; i < v.size(); ++i) {
      float &x = v[i];
      const double u = r.uni();
      const double w = r.uni();
      if (cs.vals == 1) x = (float)(int)r.range(-20, 20);  // many ties
      else if (cs.vals == 2) x = w < 0.3 ? 1.0f : w < 0.6 ? 0.5f : -2.0f;
      else if (cs.vals == 3) x = w < 0.05 ? 1.0f : w < 0.5 ? (r.uni() < 0.5 ? 0.0f : -0.0f) : -1.0f;
      else if (cs.vals == 4) x = ((i % Cc) / 4) % 16 == 0 ? 100.0f + r.normal(1.0f) : r.normal(1.0f);
      else x = r.normal(3.0f);
      if (u < 0.01) x = qnan();
      else if (u < 0.02) x = -inf();
      else if (u < 0.025) x = inf();
      else if (u < 0.04) x = r.uni() < 0.5 ? 0.0f : -0.0f;
    }
    std::vector<int32_t> rs(R), re(R), cl(R);
    for (int i = 0; i < R; ++i) {
      rs[i] = (int32_t)r.range(-3, Cc / 3 + 1);
      re[i] = (int32_t)r.range(rs[i], Cc + 5);
    }
    const int next_n = 2;
    for (auto &x : cl) x = (int32_t)r.range(0, Cc + 4);
    DevBuf dv(v), drs(rs), dre(re), dcl(cl), dout((size_t)R * k * 4);
    dout.poison();
    auto hout = poisoned<int32_t>((size_t)R * k);
    for (bool gpu : {false, true}) {
      spmla_tensor_t a1 = tensor(gpu ? dv.p : v.data(), SPMLA_DTYPE_FP32, {R, Cc});
      spmla_tensor_t a2 = tensor(gpu ? drs.p : rs.data(), SPMLA_DTYPE_INT32, {R});
      spmla_tensor_t a3 = tensor(gpu ? dre.p : re.data(), SPMLA_DTYPE_INT32, {R});
      spmla_tensor_t a4 = tensor(gpu ? dcl.p : cl.data(), SPMLA_DTYPE_INT32, {(R + next_n - 1) / next_n});
      spmla_tensor_t o = tensor(gpu ? dout.p : hout.data(), SPMLA_DTYPE_INT32, {R, k});
      spmla_topk_per_row_args_t a = SPMLA_TOPK_PER_ROW_ARGS_INIT;
      a.logits = &a1;
      if (cs.rows == 2) a.row_starts = &a2, a.row_ends = &a3;
      if (cs.rows == 3) a.context_lens = &a4, a.next_n = next_n;
      a.indices = &o;
      if (cs.rows == 3 && R % next_n) continue;
      run_op(gpu, a, spmla_topk_per_row_get_workspace_size, spmla_topk_per_row_run, "topk");
    }
    sync();
    require_equal(dout.download<int32_t>(hout.size()), hout, "topk indices");
  }
}

#if defined(SPMLA_GPU_TESTS_HAVE_CUDART)
// The CUDA fast path is two kernels, the second launched as a programmatic dependent of the first
// (sm_90): it may start before the first has finished. Captured in a graph right after the copy
// that writes its logits (poisoned to NaN before every replay), on a stream of its own, it must
// still equal the CPU reference on every replay, as the eager run on that stream must.
TEST_CASE("gpu topk_per_row on a stream and in a CUDA graph, after the copy that writes its logits", "[gpu][topk][graph]") {
  Rng r;
  INFO("seed " << r.seed);
  const int R = quick() ? 200 : 1000, Cc = 32768, k = 2048;  // sampled rows, more than one wave
  std::vector<float> v((size_t)R * Cc);
  for (auto &x : v) {
    const double u = r.uni();
    x = u < 0.01 ? qnan() : u < 0.015 ? inf() : r.normal(3.0f);
  }
  std::vector<int32_t> rs(R), re(R);
  for (int i = 0; i < R; ++i) {
    rs[i] = (int32_t)r.range(0, Cc / 4);
    re[i] = (int32_t)r.range(Cc / 2, Cc + 1);
  }
  auto href = poisoned<int32_t>((size_t)R * k);
  DevBuf dsrc(v), dv(v.size() * 4), drs(rs), dre(re), dout((size_t)R * k * 4);
  struct Args {  // the op's arguments and the tensors they point to
    spmla_tensor_t logits, starts, ends, out;
    spmla_topk_per_row_args_t a = SPMLA_TOPK_PER_ROW_ARGS_INIT;
    Args(const void *l, const void *rs_, const void *re_, void *o, int R_, int C_, int k_)
        : logits(tensor(l, SPMLA_DTYPE_FP32, {R_, C_})), starts(tensor(rs_, SPMLA_DTYPE_INT32, {R_})),
          ends(tensor(re_, SPMLA_DTYPE_INT32, {R_})), out(tensor(o, SPMLA_DTYPE_INT32, {R_, k_})) {
      a.logits = &logits;
      a.row_starts = &starts;
      a.row_ends = &ends;
      a.indices = &out;
    }
    Args(const Args &) = delete;
  };
  const Args ha(v.data(), rs.data(), re.data(), href.data(), R, Cc, k);
  run_op(false, ha.a, spmla_topk_per_row_get_workspace_size, spmla_topk_per_row_run, "topk (reference)");
  const Args dargs(dv.p, drs.p, dre.p, dout.p, R, Cc, k);
  const spmla_topk_per_row_args_t &da = dargs.a;
  size_t wsb = 0;
  check(spmla_topk_per_row_get_workspace_size(G(), &da, &wsb), "ws");
  DevBuf dws(wsb);
  cudaStream_t s;
  REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  auto poison = [&] {
    REQUIRE(cudaMemsetAsync(dv.p, 0xff, dv.bytes, s) == cudaSuccess);  // NaN logits
    REQUIRE(cudaMemsetAsync(dout.p, 0xff, dout.bytes, s) == cudaSuccess);
  };
  auto copy_and_run = [&] {
    REQUIRE(cudaMemcpyAsync(dv.p, dsrc.p, dv.bytes, cudaMemcpyDeviceToDevice, s) == cudaSuccess);
    return spmla_topk_per_row_run(G(), &da, dws.p, wsb, s);
  };
  {
    INFO("eager, on its own stream");
    poison();
    check(copy_and_run(), "topk (eager)");
    REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
    require_equal(dout.download<int32_t>(href.size()), href, "topk indices, eager");
  }
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  const spmla_status_t st = copy_and_run();
  const cudaError_t ec = cudaStreamEndCapture(s, &graph);
  check(st, "topk (captured)");
  REQUIRE(ec == cudaSuccess);
  REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  for (int rep = 0; rep < 3; ++rep) {
    INFO("graph replay " << rep);
    poison();
    REQUIRE(cudaGraphLaunch(exec, s) == cudaSuccess);
    REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
    require_equal(dout.download<int32_t>(href.size()), href, "topk indices, graph");
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}
#endif

TEST_CASE("gpu kv_cache_store bit-identical and kv_cache_gather", "[gpu][kv]") {
  Rng r;
  INFO("seed " << r.seed);
  struct Cs {
    spmla_kv_layout_t l;
    spmla_fp8_flavor_t f;
    int D;
    spmla_kv_arrangement_t a = SPMLA_KV_ARRANGEMENT_DEFAULT;
  } layouts[] = {
      {SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, 576},          {SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, 512},
      {SPMLA_KV_LAYOUT_FP8_PER_TENSOR, SPMLA_FP8_E4M3FN, 576}, {SPMLA_KV_LAYOUT_FP8_PER_TENSOR, SPMLA_FP8_E4M3FNUZ, 512},
      {SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FN, 576},     {SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FNUZ, 576},
      {SPMLA_KV_LAYOUT_V4_FP8, SPMLA_FP8_E4M3FN, 512},      {SPMLA_KV_LAYOUT_V4_FP8, SPMLA_FP8_E4M3FNUZ, 512},
      {SPMLA_KV_LAYOUT_INDEXER_FP8, SPMLA_FP8_E4M3FN, 128}, {SPMLA_KV_LAYOUT_INDEXER_FP8, SPMLA_FP8_E4M3FNUZ, 64},
      // DeepSeek-V4.1 (ABI 1.2): both arrangements, both flavors for V41_FP8 (V41_FP4's scales are E4M3FN)
      {SPMLA_KV_LAYOUT_V41_FP8, SPMLA_FP8_E4M3FN, 512, SPMLA_KV_ARRANGEMENT_PER_TOKEN},
      {SPMLA_KV_LAYOUT_V41_FP8, SPMLA_FP8_E4M3FNUZ, 512, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED},
      {SPMLA_KV_LAYOUT_V41_FP8, SPMLA_FP8_E4M3FNUZ, 512, SPMLA_KV_ARRANGEMENT_PER_TOKEN},
      {SPMLA_KV_LAYOUT_V41_FP8, SPMLA_FP8_E4M3FN, 512, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED},
      {SPMLA_KV_LAYOUT_V41_FP4, SPMLA_FP8_E4M3FN, 512, SPMLA_KV_ARRANGEMENT_PER_TOKEN},
      {SPMLA_KV_LAYOUT_V41_FP4, SPMLA_FP8_E4M3FN, 512, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED}};
  const int BSs[] = {1, 2, 53, 64, 256};
  int li = 0;
  for (auto L : layouts) {
    for (int bi = 0; bi < 2; ++bi) {
      const int bs = BSs[(li + bi * 2) % 5];
      INFO("layout " << L.l << " arrangement " << L.a << " flavor " << L.f << " D " << L.D << " bs " << bs);
      spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
      c.layout = L.l;
      c.arrangement = L.a;
      c.fp8_flavor = L.f;
      c.head_dim = L.D;
      c.block_size = bs;
      c.num_pages = std::max(2, 700 / bs);
      c.scale = bi ? 0.0173f : 0.03125f;
      size_t pb = 0;
      check(spmla_kv_cache_page_bytes(&c, &pb), "page bytes");
      if (bi) c.page_stride_bytes = ((int64_t)pb + 15) / 16 * 16 + 32;
      const size_t stride = c.page_stride_bytes ? (size_t)c.page_stride_bytes : pb;
      std::vector<uint8_t> cache(stride * c.num_pages);
      for (auto &b : cache) b = (uint8_t)r.range(0, 256);
      const int64_t nslots = c.num_pages * bs;
      const int N = (int)std::min<int64_t>(nslots, quick() ? 150 : 500);
      // distinct target slots (a random subset), some skipped (negative, out of range)
      std::vector<int64_t> perm((size_t)nslots);
      for (int64_t i = 0; i < nslots; ++i) perm[(size_t)i] = i;
      std::shuffle(perm.begin(), perm.end(), r.g);
      std::vector<int32_t> sm32(N);
      std::vector<int64_t> sm64(N);
      for (int i = 0; i < N; ++i) {
        int64_t s = perm[(size_t)i];
        const double u = r.uni();
        if (u < 0.05) s = -1;
        else if (u < 0.08) s = nslots + r.range(0, 10);
        sm32[i] = (int32_t)s;
        sm64[i] = s;
      }
      std::vector<uint16_t> kv = random_bf16(r, (size_t)N * L.D, 1.0f);
      for (int i = 0; i < N; ++i) {  // special rows: zeros, huge, tiny, a NaN
        const double u = r.uni();
        for (int d = 0; d < L.D; ++d) {
          uint16_t &x = kv[(size_t)i * L.D + d];
          if (u < 0.05) x = 0;
          else if (u < 0.1) x = spmla::f32_to_bf16(spmla::bf16_to_f32(x) * 1e4f);
          else if (u < 0.15) x = spmla::f32_to_bf16(spmla::bf16_to_f32(x) * 1e-6f);
        }
        if (u > 0.97) kv[(size_t)i * L.D + (size_t)r.range(0, L.D)] = spmla::f32_to_bf16(qnan());
      }
      // then gather: listed slots only (including invalid ones) from the stored cache
      std::vector<int32_t> gs(quick() ? 100 : 300);
      for (auto &x : gs) {
        const double u = r.uni();
        x = u < 0.05 ? -1 : u < 0.08 ? (int32_t)(nslots + 7) : (int32_t)r.range(0, nslots);
      }
      if (bi == 1)  // int64 slot ids on the second block size
        check_store_gather(c, cache, kv, sm64, L.D, gs);
      else
        check_store_gather(c, cache, kv, sm32, L.D, gs);
    }
    ++li;
  }
}
