// GPU tier: sparse_attention against the CPU reference over the sweep (H, K, block size, layout,
// FP8 flavor, lengths, extra source, sink), NaN-filled masked slots, poisoned outputs, and a
// CUDA-graph capture + replay of a plan + run decode step equal bit for bit to eager.
#include <algorithm>
#include <cstdio>

#include "gpu_test.h"

#if defined(SPMLA_GPU_TESTS_HAVE_CUDART)
#include <cuda_runtime.h>
#endif

using namespace gpu_test;

namespace {

struct CacheSpec {
  spmla_kv_layout_t layout;
  spmla_fp8_flavor_t flavor;
  int D;
  int bs;
  int64_t pages;
  int64_t pad;  // extra page-stride bytes (multiple of 16), 0 = packed
  float scale;  // FP8_PER_TENSOR
  spmla_kv_arrangement_t arrangement = SPMLA_KV_ARRANGEMENT_DEFAULT;  // V41: per token or page-blocked
};

struct HostCache {
  CacheSpec spec;
  spmla::CacheGeometry g;
  std::vector<uint8_t> bytes;
  std::vector<char> poisoned;  // per slot
  DevBuf dev;
  spmla_kv_cache_t desc(void *data) const {
    spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
    c.data = data;
    c.layout = spec.layout;
    c.fp8_flavor = spec.flavor;
    c.head_dim = spec.D;
    c.num_pages = spec.pages;
    c.block_size = spec.bs;
    c.page_stride_bytes = spec.pad ? g.page_stride : 0;
    c.scale = spec.scale;
    c.arrangement = spec.arrangement;
    return c;
  }
  int64_t slots() const { return spec.pages * spec.bs; }
};

// Byte ranges of one token's row(s) in the cache.
std::vector<std::pair<int64_t, int64_t>> token_ranges(const spmla::CacheGeometry &g, int64_t slot) {
  const int64_t page = slot / g.block_size, off = slot % g.block_size, pb = page * g.page_stride;
  switch (g.layout) {
    case SPMLA_KV_LAYOUT_BF16: return {{pb + off * 2 * g.dim, 2 * g.dim}};
    case SPMLA_KV_LAYOUT_FP8_PER_TENSOR: return {{pb + off * g.dim, g.dim}};
    case SPMLA_KV_LAYOUT_V32_FP8: return {{pb + off * 656, 656}};
    case SPMLA_KV_LAYOUT_V4_FP8: return {{pb + off * 576, 576}, {pb + (int64_t)g.block_size * 576 + off * 8, 8}};
    case SPMLA_KV_LAYOUT_V41_FP8:
    case SPMLA_KV_LAYOUT_V41_FP4: {
      const int64_t db = g.layout == SPMLA_KV_LAYOUT_V41_FP8 ? 512 : 256, sb = g.layout == SPMLA_KV_LAYOUT_V41_FP8 ? 16 : 32;
      if (g.arrangement == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED)
        return {{pb + off * db, db}, {pb + (int64_t)g.block_size * db + off * sb, sb}};
      return {{pb + off * (db + sb), db + sb}};
    }
    default: return {{pb + off * g.dim, g.dim}, {pb + (int64_t)g.block_size * g.dim + off * 4, 4}};
  }
}

HostCache make_cache(Rng &r, const CacheSpec &s, double poison_frac) {
  HostCache hc;
  hc.spec = s;
  spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
  c.layout = s.layout;
  c.fp8_flavor = s.flavor;
  c.head_dim = s.D;
  c.num_pages = s.pages;
  c.block_size = s.bs;
  c.scale = s.scale;
  c.arrangement = s.arrangement;
  size_t packed = 0;
  check(spmla_kv_cache_page_bytes(&c, &packed), "page_bytes");
  c.page_stride_bytes = s.pad ? (int64_t)packed + s.pad : 0;
  hc.g = spmla::resolve_geometry(c);
  hc.g.page_stride = c.page_stride_bytes ? c.page_stride_bytes : (int64_t)packed;
  hc.bytes.resize((size_t)(hc.g.page_stride * s.pages));
  for (auto &b : hc.bytes) b = (uint8_t)r.range(0, 256);  // garbage everywhere first (padding too)
  // Every slot gets a random bf16 row, quantized by the CPU reference's store.
  const int64_t n = hc.slots();
  std::vector<uint16_t> kv = random_bf16(r, (size_t)(n * s.D), 1.0f);
  std::vector<int32_t> sm(n);
  for (int64_t i = 0; i < n; ++i) sm[i] = (int32_t)i;
  c.data = hc.bytes.data();
  spmla_tensor_t tkv = tensor(kv.data(), SPMLA_DTYPE_BF16, {n, s.D});
  spmla_tensor_t tsm = tensor(sm.data(), SPMLA_DTYPE_INT32, {n});
  spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
  a.kv = &tkv;
  a.slot_mapping = &tsm;
  a.cache = &c;
  check(spmla_kv_cache_store_run(C(), &a, nullptr), "cpu store (cache build)");
  // NaN-filled slots: referenced only where masked (beyond lengths).
  hc.poisoned.assign((size_t)n, 0);
  for (int64_t i = 0; i < n; ++i) {
    if (r.uni() < poison_frac) {
      hc.poisoned[(size_t)i] = 1;
      for (auto rg : token_ranges(hc.g, i)) memset(hc.bytes.data() + rg.first, 0xff, (size_t)rg.second);
    }
  }
  hc.dev = DevBuf(hc.bytes);
  return hc;
}

int32_t pick_slot(Rng &r, const HostCache &hc, bool want_poison) {
  const int64_t n = hc.slots();
  for (int tries = 0; tries < 1000; ++tries) {
    const int64_t s = r.range(0, n);
    if ((bool)hc.poisoned[(size_t)s] == want_poison) return (int32_t)s;
  }
  return want_poison ? -1 : 0;  // fall back (tiny caches)
}

// Index list [T, K]: valid picks, invalid ids (negative, past the cache), duplicates; entries
// at positions >= length point at NaN-filled slots.
void make_indices(Rng &r, const HostCache &hc, int T, int K, bool use_len, std::vector<int32_t> &idx,
                  std::vector<int32_t> &len) {
  idx.assign((size_t)T * K, -1);
  len.assign((size_t)T, K);
  const int64_t n = hc.slots();
  for (int t = 0; t < T; ++t) {
    int L = K;
    if (use_len) {
      const double u = r.uni();
      L = u < 0.1 ? 0 : u < 0.2 ? K : (int)r.range(0, K + 1);
      if (u > 0.95) L = K + 5;  // lengths beyond K are clipped
      len[(size_t)t] = L;
    }
    for (int k = 0; k < K; ++k) {
      int32_t v;
      if (k >= L) {
        v = pick_slot(r, hc, true);
      } else {
        const double u = r.uni();
        if (u < 0.04) v = -1 - (int32_t)r.range(0, 5);
        else if (u < 0.07) v = (int32_t)std::min<int64_t>(n + r.range(0, 100), INT32_MAX);
        else if (u < 0.08) v = INT32_MAX;
        else if (u < 0.12 && k > 0) v = idx[(size_t)t * K + (size_t)r.range(0, k)];
        else v = pick_slot(r, hc, false);
      }
      idx[(size_t)t * K + k] = v;
    }
  }
}

struct AttnCase {
  int T, H, K;
  CacheSpec main;
  bool lengths;
  bool extra;
  CacheSpec xspec;
  int K2;
  bool extra_lengths;
  bool sink;
  bool max_logits;
};

std::string describe(const AttnCase &c) {
  char b[256];
  snprintf(b, sizeof b, "T=%d H=%d K=%d layout=%d/%d flavor=%d D=%d bs=%d pages=%lld pad=%lld len=%d extra=%d(K2=%d layout=%d/%d bs=%d) sink=%d",
           c.T, c.H, c.K, (int)c.main.layout, (int)c.main.arrangement, (int)c.main.flavor, c.main.D, c.main.bs,
           (long long)c.main.pages, (long long)c.main.pad, (int)c.lengths, (int)c.extra, c.K2, (int)c.xspec.layout,
           (int)c.xspec.arrangement, c.xspec.bs, (int)c.sink);
  return b;
}

struct AttnIO {
  std::vector<uint16_t> q;
  std::vector<int32_t> idx, len, xidx, xlen;
  std::vector<float> sink;
};

struct AttnResult {
  std::vector<uint16_t> out;
  std::vector<float> lse, mx;
};

// Runs on the CPU (host pointers) or the GPU (device buffers); `graph` captures plan+run.
AttnResult run_attention(bool gpu, const AttnCase &c, const AttnIO &io, const HostCache &mc, const HostCache *xc,
                         int mode /*0 eager, 1 graph*/ = 0) {
  const int T = c.T, H = c.H, D = c.main.D;
  DevBuf dq, didx, dlen, dxidx, dxlen, dsink, dout, dlse, dmx;
  std::vector<uint16_t> out = poisoned<uint16_t>((size_t)T * H * 512);
  std::vector<float> lse = poisoned<float>((size_t)T * H), mx = poisoned<float>((size_t)T * H);
  const void *pq = io.q.data(), *pidx = io.idx.data(), *plen = io.len.data(), *pxidx = io.xidx.data(),
             *pxlen = io.xlen.data(), *psink = io.sink.data();
  void *pout = out.data(), *plse = lse.data(), *pmx = mx.data();
  void *mdata = const_cast<uint8_t *>(mc.bytes.data());
  void *xdata = xc ? const_cast<uint8_t *>(xc->bytes.data()) : nullptr;
  if (gpu) {
    dq = DevBuf(io.q);
    didx = DevBuf(io.idx);
    dlen = DevBuf(io.len);
    if (c.extra) {
      dxidx = DevBuf(io.xidx);
      dxlen = DevBuf(io.xlen);
    }
    if (c.sink) dsink = DevBuf(io.sink);
    dout = DevBuf(out.size() * 2);
    dlse = DevBuf(lse.size() * 4);
    dmx = DevBuf(mx.size() * 4);
    dout.poison();
    dlse.poison();
    dmx.poison();
    pq = dq.p, pidx = didx.p, plen = dlen.p, pxidx = dxidx.p, pxlen = dxlen.p, psink = dsink.p;
    pout = dout.p, plse = dlse.p, pmx = dmx.p;
    mdata = mc.dev.p;
    xdata = xc ? xc->dev.p : nullptr;
  }
  spmla_tensor_t tq = tensor(pq, SPMLA_DTYPE_BF16, {T, H, D});
  spmla_tensor_t tidx = tensor(pidx, SPMLA_DTYPE_INT32, {T, c.K});
  spmla_tensor_t tlen = tensor(plen, SPMLA_DTYPE_INT32, {T});
  spmla_tensor_t txidx = tensor(pxidx, SPMLA_DTYPE_INT32, {T, c.K2});
  spmla_tensor_t txlen = tensor(pxlen, SPMLA_DTYPE_INT32, {T});
  spmla_tensor_t tsink = tensor(psink, SPMLA_DTYPE_FP32, {H});
  spmla_tensor_t tout = tensor(pout, SPMLA_DTYPE_BF16, {T, H, 512});
  spmla_tensor_t tlse = tensor(plse, SPMLA_DTYPE_FP32, {T, H});
  spmla_tensor_t tmx = tensor(pmx, SPMLA_DTYPE_FP32, {T, H});
  spmla_kv_cache_t kv = mc.desc(mdata);
  spmla_kv_cache_t xkv = xc ? xc->desc(xdata) : kv;
  spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
  a.q = &tq;
  a.kv = &kv;
  a.indices = &tidx;
  a.lengths = c.lengths ? &tlen : nullptr;
  if (c.extra) {
    a.extra_kv = &xkv;
    a.extra_indices = &txidx;
    a.extra_lengths = c.extra_lengths ? &txlen : nullptr;
  }
  a.attn_sink = c.sink ? &tsink : nullptr;
  a.out = &tout;
  a.lse = &tlse;
  a.max_logits = c.max_logits ? &tmx : nullptr;
  spmla_handle_t h = gpu ? G() : C();
  size_t wsb = 0;
  check(spmla_sparse_attention_get_workspace_size(h, &a, &wsb), "workspace size");
  std::vector<uint8_t> hws(gpu ? 0 : wsb + 16);
  DevBuf dws(gpu ? wsb : 0);
  void *ws = gpu ? dws.p : (void *)hws.data();
  if (gpu) dws.poison(0x7f);
  if (mode == 0) {
    check(spmla_sparse_attention_plan(h, &a, ws, wsb, nullptr), "plan");
    check(spmla_sparse_attention_run(h, &a, ws, wsb, nullptr), "run");
  } else {
#if defined(SPMLA_GPU_TESTS_HAVE_CUDART)
    cudaStream_t s;
    REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
    spmla_status_t s1 = spmla_sparse_attention_plan(h, &a, ws, wsb, s);
    spmla_status_t s2 = spmla_sparse_attention_run(h, &a, ws, wsb, s);
    cudaError_t ec = cudaStreamEndCapture(s, &graph);
    check(s1, "plan (captured)");
    check(s2, "run (captured)");
    REQUIRE(ec == cudaSuccess);
    REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
    for (int rep = 0; rep < 3; ++rep) REQUIRE(cudaGraphLaunch(exec, s) == cudaSuccess);
    REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(s);
#else
    FAIL("graph mode needs the CUDA runtime");
#endif
  }
  AttnResult res;
  if (gpu) {
    sync();
    res.out = dout.download<uint16_t>(out.size());
    res.lse = dlse.download<float>(lse.size());
    res.mx = dmx.download<float>(mx.size());
  } else {
    res.out = out;
    res.lse = lse;
    res.mx = mx;
  }
  return res;
}

void compare(const AttnCase &c, const AttnResult &g, const AttnResult &r, bool have_mx) {
  const int T = c.T, H = c.H;
  double num = 0, den = 0;
  int bad_lse = 0, bad_mx = 0, bad_empty = 0, nonfinite = 0;
  double worst_lse = 0;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      const size_t i = (size_t)t * H + h;
      const float rl = r.lse[i], gl = g.lse[i];
      const bool empty = std::isinf(rl) && rl > 0;
      if (empty) {
        if (!(std::isinf(gl) && gl > 0)) ++bad_lse;
      } else {
        const double err = std::fabs((double)gl - rl);
        if (!(err <= 1e-3 * std::max(1.0, (double)std::fabs(rl)))) ++bad_lse;
        worst_lse = std::max(worst_lse, std::isnan(err) ? 1e30 : err);
      }
      if (have_mx) {
        const float rm = r.mx[i], gm = g.mx[i];
        if (std::isinf(rm)) {
          if (gm != rm) ++bad_mx;
        } else if (!(std::fabs((double)gm - rm) <= 1e-3 * std::max(1.0, (double)std::fabs(rm)))) {
          ++bad_mx;
        }
      }
      for (int d = 0; d < 512; ++d) {
        const float gv = spmla::bf16_to_f32(g.out[i * 512 + d]), rv = spmla::bf16_to_f32(r.out[i * 512 + d]);
        if (!std::isfinite(gv)) ++nonfinite;
        if (empty && g.out[i * 512 + d] != r.out[i * 512 + d]) ++bad_empty;
        num += ((double)gv - rv) * ((double)gv - rv);
        den += (double)rv * rv;
      }
    }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  INFO(describe(c) << "  rel_l2(out)=" << rel << " worst|dlse|=" << worst_lse);
  CHECK(nonfinite == 0);
  CHECK(bad_empty == 0);
  CHECK(bad_lse == 0);
  CHECK(bad_mx == 0);
  CHECK(rel < 1e-2);
}

struct Combo {
  spmla_kv_layout_t layout;
  spmla_fp8_flavor_t flavor;
  int D;
};
const Combo kCombos[] = {
    {SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, 576},          {SPMLA_KV_LAYOUT_FP8_PER_TENSOR, SPMLA_FP8_E4M3FN, 576},
    {SPMLA_KV_LAYOUT_FP8_PER_TENSOR, SPMLA_FP8_E4M3FNUZ, 512}, {SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FN, 576},
    {SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FNUZ, 576},   {SPMLA_KV_LAYOUT_V4_FP8, SPMLA_FP8_E4M3FN, 512},
    {SPMLA_KV_LAYOUT_V4_FP8, SPMLA_FP8_E4M3FNUZ, 512},    {SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, 512},
};

CacheSpec spec_for(Rng &r, const Combo &cb, int bs, int64_t min_slots, bool pad) {
  CacheSpec s;
  s.layout = cb.layout;
  s.flavor = cb.flavor;
  s.D = cb.D;
  s.bs = bs;
  s.pages = std::max<int64_t>(2, (min_slots + bs - 1) / bs);
  s.pad = pad ? 16 * r.range(1, 5) : 0;
  s.scale = r.uni() < 0.5 ? 0.015625f : 0.0173f;
  return s;
}

void run_case(Rng &r, const AttnCase &c) {
  INFO("seed " << r.seed << "  " << describe(c));
  HostCache mc = make_cache(r, c.main, c.lengths ? 0.05 : 0.0);
  HostCache xc_storage;
  const HostCache *xc = nullptr;
  if (c.extra) {
    xc_storage = make_cache(r, c.xspec, c.extra_lengths ? 0.05 : 0.0);
    xc = &xc_storage;
  }
  AttnIO io;
  io.q = random_bf16(r, (size_t)c.T * c.H * c.main.D, 1.0f);
  make_indices(r, mc, c.T, c.K, c.lengths, io.idx, io.len);
  if (c.extra) make_indices(r, *xc, c.T, c.K2, c.extra_lengths, io.xidx, io.xlen);
  io.sink.resize((size_t)c.H);
  for (int h = 0; h < c.H; ++h) io.sink[(size_t)h] = r.normal(2.0f);
  if (c.H > 2) {
    io.sink[0] = inf();
    io.sink[1] = -inf();
  }
  AttnResult ref = run_attention(false, c, io, mc, xc);
  AttnResult got = run_attention(true, c, io, mc, xc);
  compare(c, got, ref, c.max_logits);
}

}  // namespace

TEST_CASE("gpu sparse_attention sweep vs reference", "[gpu][attention]") {
  Rng r;
  const int Hs[] = {1, 16, 32, 64, 128};
  const int Ks[] = {1, 63, 64, 100, 512, 2048};
  const int BSs[] = {1, 2, 53, 64, 256};
  // SPMLA_GPU_TESTS_QUICK=1 (under compute-sanitizer): fewer, smaller cases.
  const bool quick = std::getenv("SPMLA_GPU_TESTS_QUICK") != nullptr;
  const int n = quick ? 10 : 40;
  for (int i = 0; i < n; ++i) {
    AttnCase c;
    c.H = Hs[i % 5];
    c.K = Ks[(i + i / 5) % 6];
    const int bs = BSs[(i * 3 + i / 7) % 5];
    const Combo cb = kCombos[i % 8];
    c.T = 1 + (i % 3);
    c.main = spec_for(r, cb, bs, std::max(64, 2 * c.K), i % 4 == 1);
    c.lengths = i % 2 == 0;
    c.extra = (cb.layout == SPMLA_KV_LAYOUT_V4_FP8) || i % 9 == 4;
    c.K2 = 0;
    c.extra_lengths = false;
    if (c.extra) {
      // V4: a sliding-window source of the same flavor; else a bf16 source of the same D.
      const Combo xcb = cb.layout == SPMLA_KV_LAYOUT_V4_FP8 ? cb : Combo{SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, cb.D};
      c.K2 = i % 3 == 0 ? 128 : 37;
      c.xspec = spec_for(r, xcb, BSs[(i + 2) % 5], 256, false);
      c.extra_lengths = i % 4 != 3;
    }
    c.sink = i % 3 != 1;
    c.max_logits = i % 5 != 2;
    if (quick) {
      c.T = 1;
      c.K = std::min(c.K, 100);
      c.main = spec_for(r, cb, bs, 256, i % 4 == 1);
    }
    SECTION("case " + std::to_string(i)) { run_case(r, c); }
  }
}

// DeepSeek-V4.1 caches (ABI 1.2), read directly: V41_FP8 main + V41_FP4 extra (V4.1's pairing),
// V41_FP8 + V41_FP8 window, V4_FP8 + V41_FP4 and V41_FP4 + BF16 (engines migrating), both
// arrangements, both FP8 flavors for V41_FP8, any H, K and block size.
TEST_CASE("gpu sparse_attention V4.1 caches vs reference", "[gpu][attention]") {
  Rng r;
  const int Hs[] = {1, 16, 64, 128, 32};
  const int Ks[] = {1, 64, 100, 512, 2048};
  const int BSs[] = {1, 2, 53, 64, 256};
  const bool quick = std::getenv("SPMLA_GPU_TESTS_QUICK") != nullptr;
  struct Pair {
    Combo main, extra;  // extra.D == 0: no extra source
  };
  const Combo f8{SPMLA_KV_LAYOUT_V41_FP8, SPMLA_FP8_E4M3FN, 512}, f8z{SPMLA_KV_LAYOUT_V41_FP8, SPMLA_FP8_E4M3FNUZ, 512},
      f4{SPMLA_KV_LAYOUT_V41_FP4, SPMLA_FP8_E4M3FN, 512}, v4{SPMLA_KV_LAYOUT_V4_FP8, SPMLA_FP8_E4M3FN, 512},
      b16{SPMLA_KV_LAYOUT_BF16, SPMLA_FP8_NONE, 512};
  const Pair pairs[] = {{f8, f4}, {f8z, f4}, {f8, f8}, {v4, f4}, {f4, b16}, {f8z, {}}, {f4, {}}};
  const int n = quick ? 8 : 28;
  for (int i = 0; i < n; ++i) {
    const Pair pr = pairs[i % 7];
    AttnCase c;
    c.H = Hs[(i + i / 7) % 5];
    c.K = Ks[(i / 2) % 5];
    c.T = 1 + (i % 3);
    const auto arr = [&](int k) {
      return ((i >> k) & 1) ? SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED : SPMLA_KV_ARRANGEMENT_PER_TOKEN;
    };
    c.main = spec_for(r, pr.main, BSs[(i * 3 + i / 7) % 5], std::max(64, 2 * c.K), i % 4 == 1);
    if (pr.main.layout != SPMLA_KV_LAYOUT_V4_FP8) c.main.arrangement = arr(0);
    c.lengths = i % 2 == 0;
    c.extra = pr.extra.D != 0;
    c.K2 = 0;
    c.extra_lengths = false;
    if (c.extra) {
      c.K2 = i % 3 == 0 ? 128 : 37;
      c.xspec = spec_for(r, pr.extra, BSs[(i + 2) % 5], 256, i % 5 == 3);
      if (pr.extra.layout == SPMLA_KV_LAYOUT_V41_FP8 || pr.extra.layout == SPMLA_KV_LAYOUT_V41_FP4)
        c.xspec.arrangement = arr(1);
      c.extra_lengths = i % 4 != 3;
    }
    c.sink = i % 3 != 1;
    c.max_logits = i % 5 != 2;
    if (quick) {
      c.T = 1;
      c.K = std::min(c.K, 100);
      c.main.pages = std::max<int64_t>(2, 256 / c.main.bs);
    }
    SECTION("case " + std::to_string(i)) { run_case(r, c); }
  }
}

// Two head blocks (H 65-128) on the FP8 sources the Hopper cluster kernel reads (sm90c2: the
// CTAs of a token's two head blocks share each tile's dequantization; forced by gpu-check's
// variant stage): many tiles, a partial second head block, splits (T small) and one pass (T
// large), both arrangements and flavors, an extra source, lengths that end mid-tile.
TEST_CASE("gpu sparse_attention, two head blocks on V32 and V41 sources", "[gpu][attention]") {
  Rng r;
  const bool quick = std::getenv("SPMLA_GPU_TESTS_QUICK") != nullptr;
  const Combo v32{SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FN, 576}, v32z{SPMLA_KV_LAYOUT_V32_FP8, SPMLA_FP8_E4M3FNUZ, 576},
      f8{SPMLA_KV_LAYOUT_V41_FP8, SPMLA_FP8_E4M3FN, 512}, f8z{SPMLA_KV_LAYOUT_V41_FP8, SPMLA_FP8_E4M3FNUZ, 512},
      f4{SPMLA_KV_LAYOUT_V41_FP4, SPMLA_FP8_E4M3FN, 512};
  struct Shape {
    Combo main, extra;  // extra.D == 0: none
    int T, H, K, bs;
  };
  const Shape shapes[] = {
      {v32, {}, 2, 128, 2048, 64},  {v32z, v32z, 3, 100, 1000, 53}, {v32, {}, 200, 128, 192, 64},
      {f8, f4, 2, 128, 2048, 64},   {f4, f8, 3, 72, 777, 256},     {f8z, {}, 200, 128, 256, 1},
  };
  int i = 0;
  for (const Shape &sh : shapes) {
    if (quick && sh.T > 3) continue;
    AttnCase c;
    c.T = sh.T;
    c.H = sh.H;
    c.K = quick ? std::min(sh.K, 300) : sh.K;
    c.main = spec_for(r, sh.main, sh.bs, std::max(64, 2 * c.K), i % 2 == 1);
    if (sh.main.layout != SPMLA_KV_LAYOUT_V32_FP8)
      c.main.arrangement = i % 2 ? SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED : SPMLA_KV_ARRANGEMENT_PER_TOKEN;
    c.lengths = i % 2 == 0;
    c.extra = sh.extra.D != 0;
    c.K2 = c.extra ? 128 : 0;
    c.extra_lengths = c.extra;
    if (c.extra) {
      c.xspec = spec_for(r, sh.extra, 64, 256, false);
      if (sh.extra.layout != SPMLA_KV_LAYOUT_V32_FP8) c.xspec.arrangement = SPMLA_KV_ARRANGEMENT_PER_TOKEN;
    }
    c.sink = i % 3 != 2;
    c.max_logits = i % 2 == 0;
    SECTION("case " + std::to_string(i)) { run_case(r, c); }
    ++i;
  }
}

TEST_CASE("gpu sparse_attention without split-K and with many tokens", "[gpu][attention]") {
  Rng r;
  if (std::getenv("SPMLA_GPU_TESTS_QUICK")) return;
  // T * head blocks above the SM count: the single-pass path (no combine).
  for (int i = 0; i < 3; ++i) {
    AttnCase c;
    c.T = 300;
    c.H = i == 0 ? 16 : 64;
    c.K = i == 2 ? 100 : 64;
    const Combo cb = kCombos[i == 0 ? 3 : i == 1 ? 5 : 0];
    c.main = spec_for(r, cb, 64, 4096, false);
    c.lengths = true;
    c.extra = cb.layout == SPMLA_KV_LAYOUT_V4_FP8;
    c.K2 = 64;
    c.xspec = spec_for(r, cb, 64, 512, false);
    c.extra_lengths = true;
    c.sink = true;
    c.max_logits = true;
    SECTION("case " + std::to_string(i)) { run_case(r, c); }
  }
}

#if defined(SPMLA_GPU_TESTS_HAVE_CUDART)
TEST_CASE("gpu sparse_attention plan+run captured in a CUDA graph equals eager bit for bit", "[gpu][graph]") {
  if (std::string(backend_name()) != "cuda" && std::string(backend_name()) != "hip") return;
  Rng r;
  for (int i = 0; i < 2; ++i) {
    AttnCase c;
    c.T = 4;  // batch 2 x 2 MTP tokens: split-K + combine
    c.H = i == 0 ? 128 : 64;
    c.K = i == 0 ? 2048 : 512;
    const Combo cb = kCombos[i == 0 ? 3 : 5];
    c.main = spec_for(r, cb, 64, 8192, false);
    c.lengths = true;
    c.extra = i == 1;
    c.K2 = 128;
    c.xspec = spec_for(r, cb, 64, 512, false);
    c.extra_lengths = true;
    c.sink = i == 1;
    c.max_logits = true;
    INFO("seed " << r.seed << "  " << describe(c));
    HostCache mc = make_cache(r, c.main, 0.05);
    HostCache xc = c.extra ? make_cache(r, c.xspec, 0.05) : HostCache();
    AttnIO io;
    io.q = random_bf16(r, (size_t)c.T * c.H * c.main.D, 1.0f);
    make_indices(r, mc, c.T, c.K, c.lengths, io.idx, io.len);
    if (c.extra) make_indices(r, xc, c.T, c.K2, true, io.xidx, io.xlen);
    io.sink.assign((size_t)c.H, 0.5f);
    AttnResult eager = run_attention(true, c, io, mc, c.extra ? &xc : nullptr, 0);
    AttnResult graph = run_attention(true, c, io, mc, c.extra ? &xc : nullptr, 1);
    CHECK(memcmp(eager.out.data(), graph.out.data(), eager.out.size() * 2) == 0);
    CHECK(memcmp(eager.lse.data(), graph.lse.data(), eager.lse.size() * 4) == 0);
    CHECK(memcmp(eager.mx.data(), graph.mx.data(), eager.mx.size() * 4) == 0);
    AttnResult ref = run_attention(false, c, io, mc, c.extra ? &xc : nullptr);
    compare(c, graph, ref, true);
  }
}
#endif
