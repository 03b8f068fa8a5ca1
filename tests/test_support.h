// test_support.h — helpers shared by the CPU backend tests: a handle on "cpu", tensor and cache
// descriptors over std::vectors, an independent double-precision attention reference, random
// inputs and the public test vectors reader.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kv_layout.h"
#include "numerics.h"
#include "spmla.h"

namespace tst {

// ---------------------------------------------------------------------------------------------
// handle
// ---------------------------------------------------------------------------------------------
struct Handle {
  spmla_handle_t h = nullptr;
  Handle() {
    spmla_status_t st = spmla_handle_create("cpu", 0, &h);
    INFO(spmla_last_error_message());
    REQUIRE(st == SPMLA_STATUS_SUCCESS);
  }
  // A handle created while SPMLA_NUM_THREADS = n (the CPU backend reads it per handle).
  explicit Handle(int threads) {
    const char *old = std::getenv("SPMLA_NUM_THREADS");
    std::string saved = old ? old : "";
    setenv("SPMLA_NUM_THREADS", std::to_string(threads).c_str(), 1);
    spmla_status_t st = spmla_handle_create("cpu", 0, &h);
    if (old)
      setenv("SPMLA_NUM_THREADS", saved.c_str(), 1);
    else
      unsetenv("SPMLA_NUM_THREADS");
    INFO(spmla_last_error_message());
    REQUIRE(st == SPMLA_STATUS_SUCCESS);
  }
  ~Handle() { spmla_handle_destroy(h); }
  Handle(const Handle &) = delete;
  Handle &operator=(const Handle &) = delete;
  operator spmla_handle_t() const { return h; }
};

inline void check(spmla_status_t st) {
  INFO(spmla_last_error_message());
  REQUIRE(st == SPMLA_STATUS_SUCCESS);
}

// ---------------------------------------------------------------------------------------------
// tensors
// ---------------------------------------------------------------------------------------------
inline spmla_tensor_t tensor(void *data, spmla_dtype_t dt, std::initializer_list<int64_t> shape) {
  spmla_tensor_t t = SPMLA_TENSOR_INIT;
  t.data = data;
  t.dtype = dt;
  t.ndim = static_cast<int32_t>(shape.size());
  int i = 0;
  for (int64_t s : shape) t.shape[i++] = s;
  int64_t st = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    t.strides[d] = st;
    st *= t.shape[d];
  }
  return t;
}
// Same with explicit strides (elements).
inline spmla_tensor_t tensor(void *data, spmla_dtype_t dt, std::initializer_list<int64_t> shape,
                             std::initializer_list<int64_t> strides) {
  spmla_tensor_t t = tensor(data, dt, shape);
  int i = 0;
  for (int64_t s : strides) t.strides[i++] = s;
  return t;
}

inline spmla_kv_cache_t cache(void *data, spmla_kv_layout_t layout, spmla_fp8_flavor_t flavor,
                              int32_t dim, int64_t pages, int32_t bs, int64_t stride = 0,
                              float scale = 1.0f) {
  spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
  c.data = data;
  c.layout = layout;
  c.fp8_flavor = layout == SPMLA_KV_LAYOUT_BF16 ? SPMLA_FP8_NONE : flavor;
  c.head_dim = dim;
  c.num_pages = pages;
  c.block_size = bs;
  c.page_stride_bytes = stride;
  c.scale = scale;
  return c;
}

inline int64_t page_bytes(spmla_kv_layout_t l, int64_t d, int64_t bs) {
  return spmla::packed_page_bytes(l, d, bs);
}

// Host buffer with 256-byte alignment (caches want 16).
struct Bytes {
  std::vector<uint8_t> v;
  uint8_t *p = nullptr;
  explicit Bytes(size_t n, uint8_t fill = 0) : v(n + 256, fill) {
    uintptr_t a = reinterpret_cast<uintptr_t>(v.data());
    p = v.data() + ((256 - a % 256) % 256);
  }
  uint8_t *data() { return p; }
};

// ---------------------------------------------------------------------------------------------
// numbers
// ---------------------------------------------------------------------------------------------
inline uint16_t bf(float x) { return spmla::f32_to_bf16(x); }
inline float fb(uint16_t h) { return spmla::bf16_to_f32(h); }
inline float qnan() { return std::numeric_limits<float>::quiet_NaN(); }
inline float inf() { return std::numeric_limits<float>::infinity(); }

// Independent FP8 decode for the test references (ldexp based, not numerics.h's bit assembly).
inline double fp8_ref(uint8_t b, bool fnuz) {
  const int bias = fnuz ? 8 : 7;
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  if (!fnuz && (b & 0x7F) == 0x7F) return std::nan("");
  if (fnuz && b == 0x80) return std::nan("");
  double v = e == 0 ? std::ldexp(double(m), 1 - bias - 3) : std::ldexp(1.0 + m / 8.0, e - bias);
  return s ? -v : v;
}

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g); }
  float normal() { return std::normal_distribution<float>(0.0f, 1.0f)(g); }
  int64_t integer(int64_t lo, int64_t hi) {  // inclusive
    return std::uniform_int_distribution<int64_t>(lo, hi)(g);
  }
};

inline std::vector<uint16_t> random_bf16(Rng &r, size_t n, float sigma) {
  std::vector<uint16_t> v(n);
  for (auto &x : v) x = bf(r.normal() * sigma);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Independent reference attention (double precision) over explicit key rows.
// keys[t] = the dequantized rows attended by token t (duplicates included), each of length D_qk.
// ---------------------------------------------------------------------------------------------
struct RefOut {
  std::vector<double> out;  // [T, H, Dv]
  std::vector<double> lse;  // [T, H]
  std::vector<double> mx;   // [T, H]
};
inline RefOut ref_attention(const std::vector<uint16_t> &q, int64_t T, int64_t H, int64_t Dqk,
                            int64_t Dv, const std::vector<std::vector<std::vector<double>>> &keys,
                            double scale, const float *sink) {
  RefOut r;
  r.out.assign(size_t(T * H * Dv), 0.0);
  r.lse.assign(size_t(T * H), 0.0);
  r.mx.assign(size_t(T * H), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    const auto &ks = keys[size_t(t)];
    for (int64_t h = 0; h < H; ++h) {
      const size_t th = size_t(t * H + h);
      if (ks.empty()) {
        r.lse[th] = std::numeric_limits<double>::infinity();
        r.mx[th] = -std::numeric_limits<double>::infinity();
        continue;
      }
      std::vector<double> lg(ks.size());
      double m = -std::numeric_limits<double>::infinity();
      for (size_t j = 0; j < ks.size(); ++j) {
        double s = 0;
        for (int64_t d = 0; d < Dqk; ++d) s += double(fb(q[size_t((t * H + h) * Dqk + d)])) * ks[j][size_t(d)];
        lg[j] = scale * s;
        m = std::max(m, lg[j]);
      }
      double sum = 0;
      for (double l : lg) sum += std::exp(l - m);
      const double lse = m + std::log(sum);
      double f = 1.0;
      if (sink) f = 1.0 / (1.0 + std::exp(double(sink[h]) - lse));
      for (size_t j = 0; j < ks.size(); ++j) {
        const double w = std::exp(lg[j] - lse) * f;
        for (int64_t d = 0; d < Dv; ++d) r.out[size_t(th * Dv + d)] += w * ks[j][size_t(d)];
      }
      r.lse[th] = lse;
      r.mx[th] = m;
    }
  }
  return r;
}

// ‖a − b‖ / ‖b‖ over bf16 outputs a and a double reference b (0 when both are zero).
inline double rel_l2(const std::vector<uint16_t> &a, const std::vector<double> &b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    const double d = double(fb(a[i])) - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  if (den == 0) return num == 0 ? 0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}


// ---------------------------------------------------------------------------------------------
// A test KV cache filled with random contents, with an independent decoder (test-side offsets and
// fp8_ref, not the backend's code) and a poisoner that fills a slot with NaN bytes.
// ---------------------------------------------------------------------------------------------
// Test-side geometry of the V4.1 layouts (docs/SPEC.md "V4.1 cache layouts"), written from the
// SPEC text, not from numerics/kv_layout_traits.h.
struct V41Geo {
  bool fp4, blocked;
  int data() const { return fp4 ? 256 : 512; }    // data bytes per token
  int scales() const { return fp4 ? 32 : 16; }    // scale bytes per token
  int token() const { return data() + scales(); }  // 288 / 528
  int tile() const { return fp4 ? 16 : 32; }
  int64_t page(int64_t bs) const { return blocked ? (token() * bs + 511) / 512 * 512 : token() * bs; }
  int64_t data_off(int64_t o) const { return o * (blocked ? data() : token()); }
  int64_t scale_off(int64_t o, int64_t bs) const {
    return blocked ? bs * data() + o * scales() : o * token() + data();
  }
};
inline bool is_v41(spmla_kv_layout_t l) {
  return l == SPMLA_KV_LAYOUT_V41_FP8 || l == SPMLA_KV_LAYOUT_V41_FP4;
}
// Independent E2M1 decode (ldexp).
inline double fp4_ref(int code) {
  const int s = (code >> 3) & 1, e = (code >> 1) & 3, m = code & 1;
  const double v = e == 0 ? std::ldexp(double(m), -1) : std::ldexp(1.0 + m / 2.0, e - 1);
  return s ? -v : v;
}

struct TestCache {
  spmla_kv_layout_t layout;
  spmla_fp8_flavor_t flavor;
  int32_t dim, bs;
  spmla_kv_arrangement_t arrangement;
  int64_t pages, stride;
  float tensor_scale = 0.0078125f * 1.5f;  // FP8_PER_TENSOR scale (not a power of two)
  Bytes buf;
  spmla_kv_cache_t desc;

  static int64_t packed(spmla_kv_layout_t l, int32_t d, int32_t block, spmla_kv_arrangement_t a) {
    if (is_v41(l))
      return V41Geo{l == SPMLA_KV_LAYOUT_V41_FP4, a == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED}.page(block);
    return page_bytes(l, d, block);
  }
  TestCache(spmla_kv_layout_t l, spmla_fp8_flavor_t f, int32_t d, int64_t np, int32_t block,
            int64_t extra_stride = 0, spmla_kv_arrangement_t arr = SPMLA_KV_ARRANGEMENT_DEFAULT)
      : layout(l), flavor(l == SPMLA_KV_LAYOUT_BF16 ? SPMLA_FP8_NONE : f), dim(d), bs(block),
        arrangement(arr), pages(np),
        stride(extra_stride ? spmla::round_up(packed(l, d, block, arr), 16) + extra_stride
                            : packed(l, d, block, arr)),
        buf(size_t(stride * np), 0xEE) {
    desc = cache(buf.data(), layout, flavor, dim, pages, bs, extra_stride ? stride : 0,
                 tensor_scale);
    desc.arrangement = arr;
  }
  V41Geo geo() const {
    return V41Geo{layout == SPMLA_KV_LAYOUT_V41_FP4, arrangement == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED};
  }
  int64_t slots() const { return pages * bs; }
  bool fnuz() const { return flavor == SPMLA_FP8_E4M3FNUZ; }
  uint8_t *page(int64_t slot) { return buf.data() + (slot / bs) * stride; }
  int64_t off(int64_t slot) const { return slot % bs; }

  uint8_t fp8_of(float x) const {
    return spmla::f32_to_fp8_e4m3(x, fnuz() ? spmla::Fp8Kind::E4M3FNUZ : spmla::Fp8Kind::E4M3FN);
  }
  // Random contents for every slot: values of magnitude ~ sigma.
  void fill_random(Rng &r, float sigma = 0.5f) {
    for (int64_t s = 0; s < slots(); ++s) {
      uint8_t *p = page(s);
      const int64_t o = off(s);
      auto put16 = [](uint8_t *q, uint16_t v) { std::memcpy(q, &v, 2); };
      switch (layout) {
        case SPMLA_KV_LAYOUT_BF16:
          for (int i = 0; i < dim; ++i) put16(p + (o * dim + i) * 2, bf(r.normal() * sigma));
          break;
        case SPMLA_KV_LAYOUT_FP8_PER_TENSOR:
          for (int i = 0; i < dim; ++i) p[o * dim + i] = fp8_of(r.normal() * sigma / tensor_scale);
          break;
        case SPMLA_KV_LAYOUT_V32_FP8: {
          uint8_t *row = p + o * 656;
          for (int t = 0; t < 4; ++t) {
            const float sc = std::ldexp(1.0f, int(r.integer(-8, -5)));
            std::memcpy(row + 512 + 4 * t, &sc, 4);
            for (int i = 0; i < 128; ++i) row[t * 128 + i] = fp8_of(r.normal() * sigma / sc);
          }
          for (int i = 0; i < 64; ++i) put16(row + 528 + 2 * i, bf(r.normal() * sigma));
          break;
        }
        case SPMLA_KV_LAYOUT_V4_FP8: {
          uint8_t *row = p + o * 576;
          uint8_t *sc = p + int64_t(bs) * 576 + o * 8;
          for (int t = 0; t < 7; ++t) {
            const int k = int(r.integer(-8, -5));
            sc[t] = uint8_t(k + 127);
            for (int i = 0; i < 64; ++i)
              row[t * 64 + i] = fp8_of(r.normal() * sigma / std::ldexp(1.0f, k));
          }
          sc[7] = 0;
          for (int i = 0; i < 64; ++i) put16(row + 448 + 2 * i, bf(r.normal() * sigma));
          break;
        }
        case SPMLA_KV_LAYOUT_INDEXER_FP8: {
          const float sc = 0.01f + 0.001f * float(r.integer(0, 9));
          std::memcpy(p + int64_t(bs) * dim + o * 4, &sc, 4);
          for (int i = 0; i < dim; ++i) p[o * dim + i] = fp8_of(r.normal() * sigma / sc);
          break;
        }
        case SPMLA_KV_LAYOUT_V41_FP8: {
          const V41Geo g = geo();
          uint8_t *row = p + g.data_off(o), *sc = p + g.scale_off(o, bs);
          for (int t = 0; t < 16; ++t) {
            const int k = int(r.integer(-8, -5));
            sc[t] = uint8_t(k + 127);
            for (int i = 0; i < 32; ++i) row[t * 32 + i] = fp8_of(r.normal() * sigma / std::ldexp(1.0f, k));
          }
          break;
        }
        case SPMLA_KV_LAYOUT_V41_FP4: {
          // random codes (every one of the 16), E4M3FN scales around sigma / 4
          const V41Geo g = geo();
          uint8_t *row = p + g.data_off(o), *sc = p + g.scale_off(o, bs);
          for (int i = 0; i < 256; ++i) row[i] = uint8_t(r.integer(0, 255));
          for (int t = 0; t < 32; ++t)
            sc[t] = spmla::f32_to_fp8_e4m3fn(sigma / 4 * r.uniform(0.5f, 2.0f));
          break;
        }
        default:
          break;
      }
    }
  }
  // Every byte of the slot becomes a NaN pattern (0xFF: bf16/fp32/ue8m0/E4M3FN NaN; FNUZ fp8
  // bytes get 0x80, its only NaN).
  void poison(int64_t s) {
    uint8_t *p = page(s);
    const int64_t o = off(s);
    const uint8_t f8 = fnuz() ? 0x80 : 0xFF;
    switch (layout) {
      case SPMLA_KV_LAYOUT_BF16: std::memset(p + o * dim * 2, 0xFF, size_t(dim) * 2); break;
      case SPMLA_KV_LAYOUT_FP8_PER_TENSOR: std::memset(p + o * dim, f8, size_t(dim)); break;
      case SPMLA_KV_LAYOUT_V32_FP8:
        std::memset(p + o * 656, f8, 512);
        std::memset(p + o * 656 + 512, 0xFF, 144);
        break;
      case SPMLA_KV_LAYOUT_V4_FP8:
        std::memset(p + o * 576, f8, 448);
        std::memset(p + o * 576 + 448, 0xFF, 128);
        std::memset(p + int64_t(bs) * 576 + o * 8, 0xFF, 8);
        break;
      case SPMLA_KV_LAYOUT_INDEXER_FP8:
        std::memset(p + o * dim, f8, size_t(dim));
        std::memset(p + int64_t(bs) * dim + o * 4, 0xFF, 4);
        break;
      case SPMLA_KV_LAYOUT_V41_FP8:
      case SPMLA_KV_LAYOUT_V41_FP4: {
        const V41Geo g = geo();
        std::memset(p + g.data_off(o), layout == SPMLA_KV_LAYOUT_V41_FP4 ? 0x77 : f8, size_t(g.data()));
        std::memset(p + g.scale_off(o, bs), layout == SPMLA_KV_LAYOUT_V41_FP4 ? 0x7F : 0xFF, size_t(g.scales()));
        break;
      }
      default: break;
    }
  }
  // Independent decode of all dim values of a slot, in double.
  std::vector<double> row(int64_t s) {
    std::vector<double> v(static_cast<size_t>(dim));
    uint8_t *p = page(s);
    const int64_t o = off(s);
    auto get16 = [](const uint8_t *q) {
      uint16_t h;
      std::memcpy(&h, q, 2);
      return double(fb(h));
    };
    auto getf = [](const uint8_t *q) {
      float f;
      std::memcpy(&f, q, 4);
      return double(f);
    };
    switch (layout) {
      case SPMLA_KV_LAYOUT_BF16:
        for (int i = 0; i < dim; ++i) v[size_t(i)] = get16(p + (o * dim + i) * 2);
        break;
      case SPMLA_KV_LAYOUT_FP8_PER_TENSOR:
        for (int i = 0; i < dim; ++i) v[size_t(i)] = fp8_ref(p[o * dim + i], fnuz()) * double(tensor_scale);
        break;
      case SPMLA_KV_LAYOUT_V32_FP8: {
        const uint8_t *row = p + o * 656;
        for (int i = 0; i < 512; ++i) v[size_t(i)] = fp8_ref(row[i], fnuz()) * getf(row + 512 + 4 * (i / 128));
        for (int i = 0; i < 64; ++i) v[size_t(512 + i)] = get16(row + 528 + 2 * i);
        break;
      }
      case SPMLA_KV_LAYOUT_V4_FP8: {
        const uint8_t *row = p + o * 576;
        const uint8_t *sc = p + int64_t(bs) * 576 + o * 8;
        for (int i = 0; i < 448; ++i) v[size_t(i)] = fp8_ref(row[i], fnuz()) * std::ldexp(1.0, int(sc[i / 64]) - 127);
        for (int i = 0; i < 64; ++i) v[size_t(448 + i)] = get16(row + 448 + 2 * i);
        break;
      }
      case SPMLA_KV_LAYOUT_INDEXER_FP8: {
        const double sc = getf(p + int64_t(bs) * dim + o * 4);
        for (int i = 0; i < dim; ++i) v[size_t(i)] = fp8_ref(p[o * dim + i], fnuz()) * sc;
        break;
      }
      case SPMLA_KV_LAYOUT_V41_FP8: {
        const V41Geo g = geo();
        const uint8_t *row = p + g.data_off(o), *sc = p + g.scale_off(o, bs);
        for (int i = 0; i < 512; ++i)
          v[size_t(i)] = fp8_ref(row[i], fnuz()) * std::ldexp(1.0, int(sc[i / 32]) - 127);
        break;
      }
      case SPMLA_KV_LAYOUT_V41_FP4: {
        const V41Geo g = geo();
        const uint8_t *row = p + g.data_off(o), *sc = p + g.scale_off(o, bs);
        for (int i = 0; i < 512; ++i)
          v[size_t(i)] = fp4_ref((row[i / 2] >> (4 * (i % 2))) & 15) * fp8_ref(sc[i / 16], false);
        break;
      }
      default: break;
    }
    return v;
  }
};

// kv_cache_store of N = slots.size() rows kv [N, c.dim] bf16 into c (must succeed).
inline void store_rows(spmla_handle_t h, TestCache &c, std::vector<uint16_t> &kv, std::vector<int32_t> &slots) {
  const int64_t N = int64_t(slots.size());
  spmla_tensor_t tk = tensor(kv.data(), SPMLA_DTYPE_BF16, {N, c.dim});
  spmla_tensor_t ts = tensor(slots.data(), SPMLA_DTYPE_INT32, {N});
  spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
  a.kv = &tk;
  a.slot_mapping = &ts;
  a.cache = &c.desc;
  check(spmla_kv_cache_store_run(h, &a, nullptr));
}
// kv_cache_gather of `slots` from c into a fresh [N, c.dim] bf16 buffer first filled with `poison`.
inline std::vector<uint16_t> gather_rows(spmla_handle_t h, TestCache &c, std::vector<int32_t> &slots,
                                         uint16_t poison = 0x7777) {
  const int64_t N = int64_t(slots.size());
  std::vector<uint16_t> out(size_t(N * c.dim), poison);
  spmla_tensor_t ts = tensor(slots.data(), SPMLA_DTYPE_INT32, {N});
  spmla_tensor_t to = tensor(out.data(), SPMLA_DTYPE_BF16, {N, c.dim});
  spmla_kv_cache_gather_args_t a = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
  a.cache = &c.desc;
  a.slots = &ts;
  a.out = &to;
  check(spmla_kv_cache_gather_run(h, &a, nullptr));
  return out;
}

// ---------------------------------------------------------------------------------------------
// One sparse_attention call through the public API over TestCaches (outputs poisoned first), and
// its check against ref_attention with SPEC's tolerances.
// ---------------------------------------------------------------------------------------------
struct Attn {
  int64_t T = 1, H = 1, D = 576, Dv = 512;
  std::vector<uint16_t> q;
  TestCache *kv = nullptr;
  int64_t K = 1;
  std::vector<int32_t> idx, len;  // len empty = absent
  TestCache *ekv = nullptr;
  int64_t K2 = 0;
  std::vector<int32_t> eidx, elen;
  std::vector<float> sink;  // empty = absent
  float scale = 0.0f;
  bool want_max = true;
  std::vector<uint16_t> out;
  std::vector<float> lse, mx;

  void run(spmla_handle_t h) {
    out.assign(size_t(T * H * Dv), 0xAAAA);
    lse.assign(size_t(T * H), 12345.0f);
    mx.assign(size_t(T * H), 12345.0f);
    spmla_tensor_t tq = tst::tensor(q.data(), SPMLA_DTYPE_BF16, {T, H, D});
    spmla_tensor_t ti = tst::tensor(idx.data(), SPMLA_DTYPE_INT32, {T, K});
    spmla_tensor_t tl = tst::tensor(len.data(), SPMLA_DTYPE_INT32, {T});
    spmla_tensor_t tei = tst::tensor(eidx.data(), SPMLA_DTYPE_INT32, {T, K2});
    spmla_tensor_t tel = tst::tensor(elen.data(), SPMLA_DTYPE_INT32, {T});
    spmla_tensor_t ts = tst::tensor(sink.data(), SPMLA_DTYPE_FP32, {H});
    spmla_tensor_t to = tst::tensor(out.data(), SPMLA_DTYPE_BF16, {T, H, Dv});
    spmla_tensor_t tlse = tst::tensor(lse.data(), SPMLA_DTYPE_FP32, {T, H});
    spmla_tensor_t tmx = tst::tensor(mx.data(), SPMLA_DTYPE_FP32, {T, H});
    spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
    a.q = &tq;
    a.kv = &kv->desc;
    a.indices = &ti;
    a.lengths = len.empty() ? nullptr : &tl;
    if (ekv) {
      a.extra_kv = &ekv->desc;
      a.extra_indices = &tei;
      a.extra_lengths = elen.empty() ? nullptr : &tel;
    }
    a.attn_sink = sink.empty() ? nullptr : &ts;
    a.scale = scale;
    a.out = &to;
    a.lse = &tlse;
    a.max_logits = want_max ? &tmx : nullptr;
    size_t ws = 0;
    tst::check(spmla_sparse_attention_get_workspace_size(h, &a, &ws));
    std::vector<uint8_t> wsb(ws + 256);
    void *wp = ws ? wsb.data() : nullptr;
    tst::check(spmla_sparse_attention_plan(h, &a, wp, ws, nullptr));
    tst::check(spmla_sparse_attention_run(h, &a, wp, ws, nullptr));
  }

  // keys of token t from one list, per SPEC (valid slot and position < length)
  static void keys_of(TestCache *c, const std::vector<int32_t> &ix, const std::vector<int32_t> &ln,
                      int64_t t, int64_t K, std::vector<std::vector<double>> &dst) {
    int64_t L = ln.empty() ? K : std::max<int64_t>(0, std::min<int64_t>(K, ln[size_t(t)]));
    for (int64_t k = 0; k < L; ++k) {
      int64_t s = ix[size_t(t * K + k)];
      if (s >= 0 && s < c->slots()) dst.push_back(c->row(s));
    }
  }
  tst::RefOut ref() {
    std::vector<std::vector<std::vector<double>>> keys(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      keys_of(kv, idx, len, t, K, keys[size_t(t)]);
      if (ekv) keys_of(ekv, eidx, elen, t, K2, keys[size_t(t)]);
    }
    double sc = scale != 0.0f ? scale : 1.0 / std::sqrt(double(D));
    return tst::ref_attention(q, T, H, D, Dv, keys, sc, sink.empty() ? nullptr : sink.data());
  }
  void check_against_ref(double out_tol = 1e-2, double lse_tol = 1e-3) {
    tst::RefOut r = ref();
    CHECK(tst::rel_l2(out, r.out) < out_tol);
    // bf16 output: every element within ~1 bf16 ulp of the reference plus a small absolute slack
    double maxref = 0;
    for (double v : r.out) maxref = std::max(maxref, std::fabs(v));
    size_t bad = 0;
    for (size_t i = 0; i < r.out.size(); ++i) {
      double d = std::fabs(double(tst::fb(out[i])) - r.out[i]);
      if (d > std::fabs(r.out[i]) * (1.0 / 128) + 1e-4 * maxref + 1e-30) ++bad;
    }
    CHECK(bad == 0);
    for (size_t i = 0; i < r.lse.size(); ++i) {
      INFO("lse " << i << " got " << lse[i] << " ref " << r.lse[i]);
      if (std::isinf(r.lse[i])) {
        CHECK(lse[i] == tst::inf());
        if (want_max) CHECK(mx[i] == -tst::inf());
      } else {
        CHECK(std::fabs(lse[i] - r.lse[i]) < lse_tol * std::max(1.0, std::fabs(r.lse[i])));
        if (want_max) CHECK(std::fabs(mx[i] - r.mx[i]) < lse_tol * std::max(1.0, std::fabs(r.mx[i])));
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// public test vectors
// ---------------------------------------------------------------------------------------------
inline std::string vectors_dir() { return SPMLA_VECTORS_DIR; }

template <class T>
std::vector<T> read_bin(const std::string &path, size_t expected_count) {
  std::ifstream f(path, std::ios::binary);
  INFO(path);
  REQUIRE(f.good());
  f.seekg(0, std::ios::end);
  const size_t bytes = size_t(f.tellg());
  f.seekg(0);
  REQUIRE(bytes == expected_count * sizeof(T));
  std::vector<T> v(expected_count);
  f.read(reinterpret_cast<char *>(v.data()), std::streamsize(bytes));
  return v;
}

inline bool same_float(double a, double b) {  // bitwise-ish: NaN == NaN, -0 != +0
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return a == b && std::signbit(a) == std::signbit(b);
}

}  // namespace tst
