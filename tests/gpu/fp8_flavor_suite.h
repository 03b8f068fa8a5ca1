// fp8_flavor_suite.h — the FP8 flavor tests of the HIP issue, run on any backend through the
// public API: tests/test_fp8_flavors.cpp runs them on "cpu" (CPU tier, CI), and
// tests/gpu/test_gpu_fp8_flavors.cpp on the GPU backend under test (cuda, or hip through the
// HIP-on-NVIDIA build). Buffers come from spmla_device_malloc on the handle, so one body serves both.
//
// What is expected is computed here from the bf16 input alone, by a model of docs/SPEC.md written
// independently of spmla (no numerics.h, no kv_layout.h): E4M3 decoded from its bits with bias 7
// (E4M3FN, max 448) or 8 (E4M3FNUZ, max 240); encoding = the nearest finite code of the flavor,
// ties to the even code; per-tile scale 2^ceil(log2(max(amax / fp8_max, 1e-4))) with the ratio in
// fp32; V32_FP8 = 512 NoPE codes, 4 fp32 scales, 64 bf16 RoPE per 656-byte token; V4_FP8 = 576-byte
// data rows [448 codes, 64 bf16 RoPE] then 8-byte scale rows [7 UE8M0, pad 0] per page;
// V41_FP8 = 512 codes (every dim, tiles of 32) and 16 UE8M0 scales per token, per token (528 B) or
// page-blocked (512-byte code rows, then 16-byte scale rows).
//
// Checked:
//  - store in flavor F: the cache bytes are the model's (codes, scales, RoPE), byte for byte;
//  - gather and sparse_attention of that cache declared F: the model's dequantized numbers
//    (gather exactly, attention within docs/SPEC.md's tolerance against a double-precision reference);
//  - an FNUZ store never mis-scales with 448 (a tile of amax 300 comes back as ~288, not clipped
//    at 240), and an E4M3FN store never uses 240;
//  - the same bytes declared in the other flavor give other numbers (x2 or x0.5, NaN for the
//    other flavor's NaN codes): the flavor is the caller's declaration, spmla cannot see it in
//    the bytes and never guesses it;
//  - a main and an extra source of different flavors in one sparse_attention call are each read
//    with their own declared flavor;
//  - where one call sees two flavors that must agree (indexer q dtype vs the indexer cache's
//    flavor, indexer q vs k), INVALID_ARGUMENT with a message naming both; an FP8 layout whose
//    fp8_flavor is NONE or out of range, or a BF16 cache with a flavor, is refused by every op and
//    by spmla_kv_cache_page_bytes; a refused call writes nothing.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "spmla.h"

namespace fp8flav {

// =============================================================================================
// The independent model
// =============================================================================================
enum class Fl : int { FN = 1, FNUZ = 2 };  // the values of spmla_fp8_flavor_t
inline spmla_fp8_flavor_t api(Fl f) { return f == Fl::FN ? SPMLA_FP8_E4M3FN : SPMLA_FP8_E4M3FNUZ; }
inline spmla_dtype_t dtype(Fl f) { return f == Fl::FN ? SPMLA_DTYPE_FP8_E4M3FN : SPMLA_DTYPE_FP8_E4M3FNUZ; }
inline const char *name(Fl f) { return f == Fl::FN ? "E4M3FN" : "E4M3FNUZ"; }
inline Fl other(Fl f) { return f == Fl::FN ? Fl::FNUZ : Fl::FN; }
inline double fp8_max(Fl f) { return f == Fl::FN ? 448.0 : 240.0; }
inline double nan() { return std::numeric_limits<double>::quiet_NaN(); }

inline float bf16_to_float(uint16_t b) {
  const uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
inline uint16_t float_to_bf16(float f) {  // round to nearest even; NaN stays NaN
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

// E4M3 from its bits: (8 + m) * 2^(e - bias - 3), or m * 2^(1 - bias - 3) for e == 0.
inline double decode(uint8_t b, Fl f) {
  if (f == Fl::FN && (b & 0x7f) == 0x7f) return nan();
  if (f == Fl::FNUZ && b == 0x80) return nan();
  const int e = (b >> 3) & 15, m = b & 7, bias = f == Fl::FN ? 7 : 8;
  const double v = e == 0 ? std::ldexp((double)m, 1 - bias - 3) : std::ldexp(8.0 + m, e - bias - 3);
  return (b & 0x80) ? -v : v;
}

// The nearest finite code (ties to the even code), saturating. Negatives that round to zero keep
// the sign where the flavor has -0 (E4M3FN 0x80); E4M3FNUZ has none (0x80 is its NaN).
inline uint8_t encode(double y, Fl f) {
  const double a = std::fabs(y);
  int best = 0;
  double bd = std::numeric_limits<double>::infinity();
  for (int c = 0; c < 128; ++c) {
    const double v = decode((uint8_t)c, f);
    if (std::isnan(v)) continue;
    const double d = std::fabs(v - a);
    if (d < bd || (d == bd && (c & 1) == 0)) bd = d, best = c;
  }
  if (y < 0 && !(f == Fl::FNUZ && best == 0)) best |= 0x80;
  return (uint8_t)best;
}

// ceil(log2(max(amax / fp8_max, 1e-4))), the ratio in fp32, the ceiling exact (frexp).
inline int tile_exp(float amax, Fl f) {
  float r = amax / (float)fp8_max(f);
  r = std::max(r, 1e-4f);
  int e = 0;
  const double m = std::frexp((double)r, &e);  // r = m * 2^e, m in [0.5, 1)
  return m == 0.5 ? e - 1 : e;
}

struct Layout {
  spmla_kv_layout_t l;
  int D, nope, tile, rope;
  const char *name;
  spmla_kv_arrangement_t arr = SPMLA_KV_ARRANGEMENT_DEFAULT;
  int tiles() const { return nope / tile; }
};
// V41_FP8 (ABI 1.2): 512 E4M3 codes of every dim in tiles of 32, 16 UE8M0 scales; per token
// (codes then scales, 528 B) or page-blocked (512-byte code rows, then 16-byte scale rows, the
// page rounded up to 512 B).
inline Layout layout(spmla_kv_layout_t l, spmla_kv_arrangement_t arr = SPMLA_KV_ARRANGEMENT_DEFAULT) {
  if (l == SPMLA_KV_LAYOUT_V32_FP8) return {l, 576, 512, 128, 64, "V32_FP8"};
  if (l == SPMLA_KV_LAYOUT_V41_FP8)
    return {l, 512, 512, 32, 0, arr == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED ? "V41_FP8 page-blocked" : "V41_FP8 per token",
            arr};
  return {SPMLA_KV_LAYOUT_V4_FP8, 512, 448, 64, 64, "V4_FP8"};
}
// The layouts of the suite: V3.2's and V4's FP8 caches and V4.1's FP8 cache in both arrangements.
inline std::vector<Layout> suite_layouts() {
  return {layout(SPMLA_KV_LAYOUT_V32_FP8), layout(SPMLA_KV_LAYOUT_V4_FP8),
          layout(SPMLA_KV_LAYOUT_V41_FP8, SPMLA_KV_ARRANGEMENT_PER_TOKEN),
          layout(SPMLA_KV_LAYOUT_V41_FP8, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED)};
}
inline size_t page_bytes(const Layout &L, int bs) {
  if (L.l == SPMLA_KV_LAYOUT_V32_FP8) return (size_t)656 * bs;
  if (L.l == SPMLA_KV_LAYOUT_V41_FP8)
    return L.arr == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED ? ((size_t)528 * bs + 511) / 512 * 512 : (size_t)528 * bs;
  return ((size_t)584 * bs + 575) / 576 * 576;
}

// One token as stored: NoPE codes, per-tile scale exponents, RoPE bf16.
struct Row {
  std::vector<uint8_t> code;
  std::vector<int> sexp;
  std::vector<uint16_t> rope;
  bool pad_ok = true;  // V4: the scale row's pad byte is 0
};

inline Row quantize_row(const Layout &L, Fl f, const uint16_t *x) {
  Row r;
  r.code.resize((size_t)L.nope);
  r.sexp.resize((size_t)L.tiles());
  for (int t = 0; t < L.tiles(); ++t) {
    float amax = 0.f;
    for (int i = t * L.tile; i < (t + 1) * L.tile; ++i) amax = std::max(amax, std::fabs(bf16_to_float(x[i])));
    const int k = tile_exp(amax, f);
    r.sexp[(size_t)t] = k;
    for (int i = t * L.tile; i < (t + 1) * L.tile; ++i)
      r.code[(size_t)i] = encode(std::ldexp((double)bf16_to_float(x[i]), -k), f);  // exact division
  }
  r.rope.assign(x + L.nope, x + L.D);
  return r;
}

// The D values a reader declaring flavor `read` gets from a stored row.
inline std::vector<double> dequant(const Layout &L, const Row &r, Fl read) {
  std::vector<double> v((size_t)L.D);
  for (int i = 0; i < L.nope; ++i) v[(size_t)i] = std::ldexp(decode(r.code[(size_t)i], read), r.sexp[(size_t)(i / L.tile)]);
  for (int i = 0; i < L.rope; ++i) v[(size_t)(L.nope + i)] = bf16_to_float(r.rope[(size_t)i]);
  return v;
}

// Reads one stored token from raw page bytes with this file's own reading of the layouts.
inline Row parse(const Layout &L, const uint8_t *page, int bs, int off) {
  Row r;
  r.code.resize((size_t)L.nope);
  r.sexp.resize((size_t)L.tiles());
  r.rope.resize((size_t)L.rope);
  if (L.l == SPMLA_KV_LAYOUT_V32_FP8) {
    const uint8_t *tok = page + (size_t)off * 656;
    memcpy(r.code.data(), tok, 512);
    for (int t = 0; t < 4; ++t) {
      float s;
      memcpy(&s, tok + 512 + 4 * t, 4);
      int e = 0;
      const double m = std::frexp((double)s, &e);
      r.sexp[(size_t)t] = (m == 0.5) ? e - 1 : 100000;  // not a power of two: never matches
    }
    memcpy(r.rope.data(), tok + 528, 128);
  } else if (L.l == SPMLA_KV_LAYOUT_V41_FP8) {
    const bool blocked = L.arr == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED;
    const uint8_t *data = page + (size_t)off * (blocked ? 512 : 528);
    const uint8_t *sc = blocked ? page + (size_t)bs * 512 + (size_t)off * 16 : data + 512;
    memcpy(r.code.data(), data, 512);
    for (int t = 0; t < 16; ++t) r.sexp[(size_t)t] = (int)sc[t] - 127;  // UE8M0: 2^(e - 127)
  } else {
    const uint8_t *data = page + (size_t)off * 576, *sc = page + (size_t)bs * 576 + (size_t)off * 8;
    memcpy(r.code.data(), data, 448);
    memcpy(r.rope.data(), data + 448, 128);
    for (int t = 0; t < 7; ++t) r.sexp[(size_t)t] = (int)sc[t] - 127;  // UE8M0: 2^(e - 127)
    r.pad_ok = sc[7] == 0;
  }
  return r;
}

// Input rows whose tiles cover the regimes that matter: ordinary values, the 240..448 band where
// a 448/240 mix-up clips or mis-scales, tiny tiles (the 1e-4 scale floor, subnormal codes), zero
// tiles, large values, and exact midpoints of the flavor's grid (round-to-even). `moderate`
// keeps the magnitudes attention-friendly.
inline std::vector<uint16_t> make_rows(std::mt19937_64 &g, const Layout &L, Fl f, int n, bool moderate) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_int_distribution<int> kind_d(0, moderate ? 3 : 6), code_d(0, 119);
  std::vector<uint16_t> x((size_t)n * L.D);
  for (int r = 0; r < n; ++r) {
    uint16_t *row = x.data() + (size_t)r * L.D;
    for (int t = 0; t < L.tiles(); ++t) {
      const int kind = kind_d(g);
      for (int i = t * L.tile; i < (t + 1) * L.tile; ++i) {
        float v = nd(g);
        switch (kind) {
          case 1: v *= 1e-6f; break;                        // scale floor 1e-4, subnormal codes
          case 2: v = 0.f; break;                           // all-zero tile
          case 3: v = std::min(std::max(v, -2.f), 2.f) * 1.5f; break;
          case 4: v = std::min(std::max(v * 90.f, -299.f), 299.f); break;  // the 240..448 band
          case 5: v *= 1000.f; break;
          case 6: {  // a midpoint of two adjacent codes of flavor f, times 2^-3
            const int c = code_d(g);
            const double mid = 0.5 * (decode((uint8_t)c, f) + decode((uint8_t)(c + 1), f));
            v = (float)std::ldexp(mid, -3) * (nd(g) < 0 ? -1.f : 1.f);
            break;
          }
          default: break;
        }
        row[i] = float_to_bf16(v);
      }
      if (kind == 4) row[t * L.tile + (r % L.tile)] = float_to_bf16(r % 2 ? 300.f : -300.f);
      if (kind == 6) row[t * L.tile] = float_to_bf16((float)std::ldexp(fp8_max(f), -3));  // amax: scale 2^-3
    }
    for (int i = L.nope; i < L.D; ++i) row[i] = float_to_bf16(nd(g));
  }
  return x;
}

// =============================================================================================
// Buffers through the handle ("device" memory of the backend: host memory on cpu)
// =============================================================================================
inline void ok(spmla_status_t st, const char *what) {
  INFO(what << ": " << spmla_status_string(st) << " " << spmla_last_error_message());
  REQUIRE(st == SPMLA_STATUS_SUCCESS);
}

struct Buf {
  spmla_handle_t h = nullptr;
  void *p = nullptr;
  size_t n = 0;
  Buf(spmla_handle_t h_, size_t bytes) : h(h_), n(bytes) {
    ok(spmla_device_malloc(h, std::max<size_t>(bytes, 16), &p), "device_malloc");
  }
  template <typename T>
  Buf(spmla_handle_t h_, const std::vector<T> &v) : Buf(h_, v.size() * sizeof(T)) {
    put(v);
  }
  Buf(const Buf &) = delete;
  Buf &operator=(const Buf &) = delete;
  ~Buf() {
    if (p) spmla_device_free(h, p);
  }
  template <typename T>
  void put(const std::vector<T> &v) {
    REQUIRE(v.size() * sizeof(T) <= n);
    if (!v.empty()) ok(spmla_memcpy(h, p, v.data(), v.size() * sizeof(T), SPMLA_MEMCPY_HOST_TO_DEVICE, nullptr), "h2d");
  }
  template <typename T>
  std::vector<T> get(size_t count) const {
    std::vector<T> v(count);
    ok(spmla_stream_synchronize(h, nullptr), "sync");
    if (count) ok(spmla_memcpy(h, v.data(), p, count * sizeof(T), SPMLA_MEMCPY_DEVICE_TO_HOST, nullptr), "d2h");
    return v;
  }
  void fill(int byte) { ok(spmla_memset(h, p, byte, n, nullptr), "memset"); }
};

inline spmla_tensor_t tensor(const void *data, spmla_dtype_t dt, std::vector<int64_t> shape) {
  spmla_tensor_t t = SPMLA_TENSOR_INIT;
  t.data = const_cast<void *>(data);
  t.dtype = dt;
  t.ndim = (int32_t)shape.size();
  int64_t s = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    t.shape[d] = shape[(size_t)d];
    t.strides[d] = s;
    s *= shape[(size_t)d];
  }
  return t;
}

inline spmla_kv_cache_t cache_desc(const Layout &L, Fl f, void *data, int64_t pages, int bs) {
  spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
  c.data = data;
  c.layout = L.l;
  c.fp8_flavor = api(f);
  c.head_dim = L.D;
  c.num_pages = pages;
  c.block_size = bs;
  c.arrangement = L.arr;
  return c;
}

// A cache on the handle filled by spmla's kv_cache_store from known bf16 rows.
struct StoredCache {
  Layout L;
  Fl f;
  int bs;
  int64_t pages;
  std::unique_ptr<Buf> buf;
  std::vector<uint16_t> x;      // the rows stored
  std::vector<int32_t> slot;    // their slots (-1: skipped)
  std::vector<int32_t> row_of;  // slot -> row, -1 if never stored
  spmla_kv_cache_t desc(Fl declared) const { return cache_desc(L, declared, buf->p, pages, bs); }
};

inline StoredCache store(spmla_handle_t h, std::mt19937_64 &g, const Layout &L, Fl f, int bs, int n_rows, bool moderate) {
  StoredCache s{L, f, bs, 0, nullptr, {}, {}, {}};
  s.pages = std::max<int64_t>(2, (2 * n_rows + bs - 1) / bs);
  const int64_t nslots = s.pages * bs;
  spmla_kv_cache_t c = cache_desc(L, f, nullptr, s.pages, bs);
  size_t pb = 0;
  ok(spmla_kv_cache_page_bytes(&c, &pb), "page_bytes");
  REQUIRE(pb == page_bytes(L, bs));
  s.buf.reset(new Buf(h, pb * (size_t)s.pages));
  s.buf->fill(0x5a);
  s.x = make_rows(g, L, f, n_rows, moderate);
  std::vector<int32_t> perm((size_t)nslots);
  for (int64_t i = 0; i < nslots; ++i) perm[(size_t)i] = (int32_t)i;
  std::shuffle(perm.begin(), perm.end(), g);
  s.slot.assign(perm.begin(), perm.begin() + n_rows);
  for (int i = 0; i < n_rows; i += 17) s.slot[(size_t)i] = -1;  // skipped rows
  s.row_of.assign((size_t)nslots, -1);
  for (int i = 0; i < n_rows; ++i)
    if (s.slot[(size_t)i] >= 0) s.row_of[(size_t)s.slot[(size_t)i]] = i;
  Buf dx(h, s.x), dsm(h, s.slot);
  c.data = s.buf->p;
  spmla_tensor_t tkv = tensor(dx.p, SPMLA_DTYPE_BF16, {n_rows, L.D});
  spmla_tensor_t tsm = tensor(dsm.p, SPMLA_DTYPE_INT32, {n_rows});
  spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
  a.kv = &tkv, a.slot_mapping = &tsm, a.cache = &c;
  ok(spmla_kv_cache_store_run(h, &a, nullptr), "kv_cache_store");
  ok(spmla_stream_synchronize(h, nullptr), "sync");
  return s;
}

inline Row model_row(const StoredCache &s, int32_t slot) {
  return quantize_row(s.L, s.f, s.x.data() + (size_t)s.row_of[(size_t)slot] * s.L.D);
}

// The cache bytes are the model's, token by token.
inline void check_bytes(const StoredCache &s) {
  const size_t pb = page_bytes(s.L, s.bs);
  const std::vector<uint8_t> bytes = s.buf->get<uint8_t>(pb * (size_t)s.pages);
  int bad_code = 0, bad_scale = 0, bad_rope = 0, bad_pad = 0, checked = 0;
  for (size_t slot = 0; slot < s.row_of.size(); ++slot) {
    if (s.row_of[slot] < 0) continue;
    const Row want = model_row(s, (int32_t)slot);
    const Row got = parse(s.L, bytes.data() + (slot / s.bs) * pb, s.bs, (int)(slot % s.bs));
    for (size_t i = 0; i < want.code.size(); ++i) bad_code += want.code[i] != got.code[i];
    for (size_t i = 0; i < want.sexp.size(); ++i) bad_scale += want.sexp[i] != got.sexp[i];
    for (size_t i = 0; i < want.rope.size(); ++i) bad_rope += want.rope[i] != got.rope[i];
    bad_pad += !got.pad_ok;
    ++checked;
  }
  INFO(s.L.name << " " << name(s.f) << " bs " << s.bs << ": " << checked << " tokens; codes " << bad_code << ", scales "
                << bad_scale << ", rope " << bad_rope << ", pad " << bad_pad << " differ from the model");
  CHECK(checked > 0);
  CHECK(bad_code == 0);
  CHECK(bad_scale == 0);
  CHECK(bad_rope == 0);
  CHECK(bad_pad == 0);
}

// Gathers `slots` with the cache declared `declared`; returns the bf16 rows as floats.
inline std::vector<float> gather(spmla_handle_t h, const StoredCache &s, Fl declared, const std::vector<int32_t> &slots) {
  const int M = (int)slots.size();
  Buf dsl(h, slots), dout(h, (size_t)M * s.L.D * 2);
  dout.fill(0xff);
  spmla_kv_cache_t c = s.desc(declared);
  spmla_tensor_t ts = tensor(dsl.p, SPMLA_DTYPE_INT32, {M});
  spmla_tensor_t to = tensor(dout.p, SPMLA_DTYPE_BF16, {M, s.L.D});
  spmla_kv_cache_gather_args_t a = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
  a.cache = &c, a.slots = &ts, a.out = &to;
  ok(spmla_kv_cache_gather_run(h, &a, nullptr), "kv_cache_gather");
  const std::vector<uint16_t> raw = dout.get<uint16_t>((size_t)M * s.L.D);
  std::vector<float> v(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) v[i] = bf16_to_float(raw[i]);
  return v;
}

// The model's gather: the dequantized row for a stored slot, zeros for anything else.
inline std::vector<double> model_gather(const StoredCache &s, Fl read, const std::vector<int32_t> &slots) {
  std::vector<double> v;
  for (int32_t sl : slots) {
    if (sl >= 0 && (size_t)sl < s.row_of.size() && s.row_of[(size_t)sl] >= 0) {
      const std::vector<double> r = dequant(s.L, model_row(s, sl), read);
      v.insert(v.end(), r.begin(), r.end());
    } else {
      v.insert(v.end(), (size_t)s.L.D, 0.0);
    }
  }
  return v;
}

// Exact: each value equals the model's dequantized value rounded to bf16 (any NaN equals any NaN).
inline int count_gather_mismatch(const std::vector<float> &got, const std::vector<double> &want) {
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const float w = bf16_to_float(float_to_bf16((float)want[i]));
    if (std::isnan(w) != std::isnan(got[i]) || (!std::isnan(w) && w != got[i])) ++bad;
  }
  return bad;
}

inline std::vector<int32_t> gather_slots(std::mt19937_64 &g, const StoredCache &s, int M) {
  std::uniform_int_distribution<int64_t> any(0, (int64_t)s.row_of.size() - 1);
  std::vector<int32_t> out;
  for (int i = 0; i < M; ++i) {
    int32_t v = (int32_t)any(g);
    if (i % 11 == 3) v = -1;
    else if (i % 13 == 5) v = (int32_t)s.row_of.size() + 3;  // past the cache
    else
      for (int tries = 0; tries < 100 && s.row_of[(size_t)v] < 0; ++tries) v = (int32_t)any(g);
    out.push_back(v);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// sparse_attention against a double-precision reference on the model's rows
// ---------------------------------------------------------------------------------------------
struct Source {
  const StoredCache *s;
  Fl declared;
  std::vector<int32_t> idx;  // [T, K]
  std::vector<int32_t> len;  // [T]
  int K;
};

struct AttnOut {
  std::vector<float> out, lse;  // [T, H, 512], [T, H]
};

inline AttnOut run_attention(spmla_handle_t h, int T, int H, const std::vector<uint16_t> &q, const Source &m,
                             const Source *x) {
  const int D = m.s->L.D;
  Buf dq(h, q), di(h, m.idx), dl(h, m.len), dout(h, (size_t)T * H * 512 * 2), dlse(h, (size_t)T * H * 4);
  std::unique_ptr<Buf> dxi, dxl;
  dout.fill(0xff);
  dlse.fill(0xff);
  spmla_tensor_t tq = tensor(dq.p, SPMLA_DTYPE_BF16, {T, H, D});
  spmla_tensor_t ti = tensor(di.p, SPMLA_DTYPE_INT32, {T, m.K});
  spmla_tensor_t tl = tensor(dl.p, SPMLA_DTYPE_INT32, {T});
  spmla_tensor_t to = tensor(dout.p, SPMLA_DTYPE_BF16, {T, H, 512});
  spmla_tensor_t tlse = tensor(dlse.p, SPMLA_DTYPE_FP32, {T, H});
  spmla_kv_cache_t kv = m.s->desc(m.declared), xkv = kv;
  spmla_tensor_t txi = ti, txl = tl;
  spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
  a.q = &tq, a.kv = &kv, a.indices = &ti, a.lengths = &tl, a.out = &to, a.lse = &tlse;
  if (x) {
    dxi.reset(new Buf(h, x->idx));
    dxl.reset(new Buf(h, x->len));
    xkv = x->s->desc(x->declared);
    txi = tensor(dxi->p, SPMLA_DTYPE_INT32, {T, x->K});
    txl = tensor(dxl->p, SPMLA_DTYPE_INT32, {T});
    a.extra_kv = &xkv, a.extra_indices = &txi, a.extra_lengths = &txl;
  }
  size_t wsb = 0;
  ok(spmla_sparse_attention_get_workspace_size(h, &a, &wsb), "workspace size");
  Buf ws(h, wsb);
  ok(spmla_sparse_attention_plan(h, &a, ws.p, wsb, nullptr), "plan");
  ok(spmla_sparse_attention_run(h, &a, ws.p, wsb, nullptr), "run");
  AttnOut r;
  const std::vector<uint16_t> o = dout.get<uint16_t>((size_t)T * H * 512);
  r.out.resize(o.size());
  for (size_t i = 0; i < o.size(); ++i) r.out[i] = bf16_to_float(o[i]);
  r.lse = dlse.get<float>((size_t)T * H);
  return r;
}

// docs/SPEC.md: logit = scale * <q, K[0:D]>, out = softmax-weighted sum of V = the first 512 values.
inline AttnOut reference(int T, int H, const std::vector<uint16_t> &q, const Source &m, const Source *x) {
  const int D = m.s->L.D;
  const double scale = 1.0 / std::sqrt((double)D);
  AttnOut r;
  r.out.assign((size_t)T * H * 512, 0.f);
  r.lse.assign((size_t)T * H, 0.f);
  for (int t = 0; t < T; ++t) {
    std::vector<std::vector<double>> rows;  // the valid keys of token t, both sources
    for (const Source *src : {&m, x}) {
      if (!src) continue;
      const int L = std::min(src->len[(size_t)t], src->K);
      for (int k = 0; k < L; ++k) {
        const int32_t sl = src->idx[(size_t)t * src->K + k];
        if (sl < 0 || (size_t)sl >= src->s->row_of.size()) continue;
        rows.push_back(dequant(src->s->L, model_row(*src->s, sl), src->declared));
      }
    }
    for (int hh = 0; hh < H; ++hh) {
      const uint16_t *qr = q.data() + ((size_t)t * H + hh) * D;
      std::vector<double> lg(rows.size());
      double mx = -std::numeric_limits<double>::infinity();
      for (size_t j = 0; j < rows.size(); ++j) {
        double d = 0;
        for (int i = 0; i < D; ++i) d += (double)bf16_to_float(qr[i]) * rows[j][(size_t)i];
        lg[j] = d * scale;
        mx = std::max(mx, lg[j]);
      }
      double sum = 0;
      for (double l : lg) sum += std::exp(l - mx);
      const size_t o = (size_t)t * H + hh;
      r.lse[o] = rows.empty() ? std::numeric_limits<float>::infinity() : (float)(mx + std::log(sum));
      for (size_t j = 0; j < rows.size(); ++j) {
        const double p = std::exp(lg[j] - mx) / sum;
        for (int i = 0; i < 512; ++i) r.out[o * 512 + i] += (float)(p * rows[j][(size_t)i]);
      }
    }
  }
  return r;
}

struct AttnDiff {
  double rel_l2 = 0, worst_lse = 0;
  int bad_lse = 0, nonfinite = 0;
};
inline AttnDiff diff(const AttnOut &got, const AttnOut &ref) {
  AttnDiff d;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.out.size(); ++i) {
    if (!std::isfinite(got.out[i])) ++d.nonfinite;
    num += ((double)got.out[i] - ref.out[i]) * ((double)got.out[i] - ref.out[i]);
    den += (double)ref.out[i] * ref.out[i];
  }
  d.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  for (size_t i = 0; i < got.lse.size(); ++i) {
    const double e = std::fabs((double)got.lse[i] - ref.lse[i]);
    if (std::isinf(ref.lse[i])) {
      if (got.lse[i] != ref.lse[i]) ++d.bad_lse;
    } else if (!(e <= 1e-3 * std::max(1.0, (double)std::fabs(ref.lse[i])))) {
      ++d.bad_lse;
    }
    if (!std::isinf(ref.lse[i])) d.worst_lse = std::max(d.worst_lse, std::isnan(e) ? 1e30 : e);
  }
  return d;
}

inline Source make_source(std::mt19937_64 &g, const StoredCache &s, Fl declared, int T, int K) {
  Source src{&s, declared, {}, {}, K};
  std::vector<int32_t> stored;
  for (size_t i = 0; i < s.row_of.size(); ++i)
    if (s.row_of[i] >= 0) stored.push_back((int32_t)i);
  std::uniform_int_distribution<size_t> pick(0, stored.size() - 1);
  src.idx.resize((size_t)T * K);
  src.len.resize((size_t)T);
  for (int t = 0; t < T; ++t) {
    src.len[(size_t)t] = t == 0 ? K : (int)(K - 1 - (t * 7) % K);
    for (int k = 0; k < K; ++k) {
      int32_t v = stored[pick(g)];
      if (k % 19 == 7) v = -1;
      if (k % 23 == 11) v = (int32_t)s.row_of.size() + k;  // past the cache: no key
      src.idx[(size_t)t * K + k] = v;
    }
  }
  return src;
}

inline std::vector<uint16_t> make_q(std::mt19937_64 &g, size_t n) {
  std::normal_distribution<float> nd(0.f, 0.5f);
  std::vector<uint16_t> q(n);
  for (auto &v : q) v = float_to_bf16(nd(g));
  return q;
}

// =============================================================================================
// The tests (each takes the handle of the backend under test)
// =============================================================================================
inline std::mt19937_64 rng(uint64_t &seed) {
  seed = std::random_device{}() ^ ((uint64_t)std::random_device{}() << 32);
  return std::mt19937_64(seed);
}

// Written in F, read in F: the model's bytes and numbers (store, gather, sparse_attention).
inline void same_flavor_roundtrip(spmla_handle_t h) {
  uint64_t seed;
  std::mt19937_64 g = rng(seed);
  INFO("seed " << seed);
  for (const Layout &L : suite_layouts())
    for (Fl f : {Fl::FN, Fl::FNUZ})
      for (int bs : {64, 5}) {
        INFO(L.name << " written and read as " << name(f) << ", block_size " << bs);
        {  // bytes and gather over every regime of values (ties, tiny, zero, the 240..448 band, large)
          const StoredCache s = store(h, g, L, f, bs, 160, false);
          check_bytes(s);
          const std::vector<int32_t> slots = gather_slots(g, s, 120);
          const std::vector<float> got = gather(h, s, f, slots);
          const int bad = count_gather_mismatch(got, model_gather(s, f, slots));
          INFO("gather: " << bad << " of " << got.size() << " values differ from the model");
          CHECK(bad == 0);
        }
        {  // attention on moderate values: T 3, H 16, K 48, lengths, invalid ids
          const StoredCache s = store(h, g, L, f, bs, 96, true);
          check_bytes(s);
          const int T = 3, H = 16, K = 48;
          const Source m = make_source(g, s, f, T, K);
          const std::vector<uint16_t> q = make_q(g, (size_t)T * H * L.D);
          const AttnDiff d = diff(run_attention(h, T, H, q, m, nullptr), reference(T, H, q, m, nullptr));
          INFO("attention: rel_l2(out) " << d.rel_l2 << ", worst |dlse| " << d.worst_lse);
          CHECK(d.nonfinite == 0);
          CHECK(d.bad_lse == 0);
          CHECK(d.rel_l2 < 1e-2);
        }
      }
}

// The 448/240 mix-up other engines suffer: an FNUZ store scales by 240, so values up to the
// tile's amax come back within E4M3's rounding (a 300 becomes 288, never clipped to 240), and an
// E4M3FN store scales by 448 (a 300 stays in range with scale 1).
inline void no_448_240_misscaling(spmla_handle_t h) {
  uint64_t seed;
  std::mt19937_64 g = rng(seed);
  INFO("seed " << seed);
  for (const Layout &L : suite_layouts())
    for (Fl f : {Fl::FN, Fl::FNUZ}) {
      INFO(L.name << " " << name(f));
      // Every NoPE tile in the 240..448 band (amax exactly 300).
      const int n = 8, bs = 4;
      StoredCache s{L, f, bs, 4, nullptr, {}, {}, {}};
      spmla_kv_cache_t c = cache_desc(L, f, nullptr, s.pages, bs);
      s.buf.reset(new Buf(h, page_bytes(L, bs) * (size_t)s.pages));
      s.buf->fill(0);
      std::normal_distribution<float> nd(0.f, 90.f);
      s.x.resize((size_t)n * L.D);
      for (int r = 0; r < n; ++r)
        for (int i = 0; i < L.D; ++i) {
          float v = std::min(std::max(nd(g), -299.f), 299.f);
          if (i < L.nope && i % L.tile == r % L.tile) v = r % 2 ? 300.f : -300.f;
          s.x[(size_t)r * L.D + i] = float_to_bf16(i < L.nope ? v : v / 90.f);
        }
      for (int r = 0; r < n; ++r) s.slot.push_back(2 * r + 1);
      s.row_of.assign((size_t)(s.pages * bs), -1);
      for (int r = 0; r < n; ++r) s.row_of[(size_t)s.slot[(size_t)r]] = r;
      Buf dx(h, s.x), dsm(h, s.slot);
      c.data = s.buf->p;
      spmla_tensor_t tkv = tensor(dx.p, SPMLA_DTYPE_BF16, {n, L.D});
      spmla_tensor_t tsm = tensor(dsm.p, SPMLA_DTYPE_INT32, {n});
      spmla_kv_cache_store_args_t a = SPMLA_KV_CACHE_STORE_ARGS_INIT;
      a.kv = &tkv, a.slot_mapping = &tsm, a.cache = &c;
      ok(spmla_kv_cache_store_run(h, &a, nullptr), "kv_cache_store");
      check_bytes(s);
      const std::vector<float> got = gather(h, s, f, s.slot);
      int clipped = 0, off = 0, scale_wrong = 0;
      const std::vector<uint8_t> bytes = s.buf->get<uint8_t>(page_bytes(L, bs) * (size_t)s.pages);
      for (int r = 0; r < n; ++r) {
        const int32_t sl = s.slot[(size_t)r];
        const Row row = parse(L, bytes.data() + (size_t)(sl / bs) * page_bytes(L, bs), bs, sl % bs);
        for (int t = 0; t < L.tiles(); ++t) scale_wrong += row.sexp[(size_t)t] != (f == Fl::FN ? 0 : 1);  // 300/448 -> 2^0, 300/240 -> 2^1
        for (int i = 0; i < L.nope; ++i) {
          const double x = bf16_to_float(s.x[(size_t)r * L.D + i]), y = got[(size_t)r * L.D + i];
          if (std::fabs(x) == 300.0 && std::fabs(y) != 288.0) ++clipped;  // 300 -> 288 in both flavors
          if (!(std::fabs(y - x) <= std::max(std::fabs(x) / 16.0, std::ldexp(1.0, f == Fl::FN ? -10 : -11) * 2.0))) ++off;
        }
      }
      INFO("tiles with a scale other than the flavor's: " << scale_wrong << "; 300s not read back as 288: " << clipped
                                                          << "; values off by more than E4M3 rounding: " << off);
      CHECK(scale_wrong == 0);
      CHECK(clipped == 0);
      CHECK(off == 0);
    }
}

// The same bytes declared in the other flavor read other numbers: x2 (FNUZ bytes read as E4M3FN),
// x0.5 (the reverse), NaN where a code is the other flavor's NaN. spmla reads what the caller
// declares; the bytes carry no flavor and spmla never guesses one.
inline void mislabelled_reads_differ(spmla_handle_t h) {
  uint64_t seed;
  std::mt19937_64 g = rng(seed);
  INFO("seed " << seed);
  for (const Layout &L : suite_layouts())
    for (Fl f : {Fl::FNUZ, Fl::FN}) {
      const Fl wrong = other(f);
      INFO(L.name << " written " << name(f) << ", declared " << name(wrong));
      const StoredCache s = store(h, g, L, f, 16, 96, true);
      const std::vector<int32_t> slots = gather_slots(g, s, 80);
      const std::vector<float> right = gather(h, s, f, slots), mis = gather(h, s, wrong, slots);
      // The mislabelled read is exactly the model's reading of those bytes in the wrong flavor ...
      CHECK(count_gather_mismatch(mis, model_gather(s, wrong, slots)) == 0);
      CHECK(count_gather_mismatch(right, model_gather(s, f, slots)) == 0);
      // ... which is not the data: every nonzero NoPE value changes (x2 / x0.5 or NaN), RoPE does not.
      int nope_nonzero = 0, nope_changed = 0, ratio_ok = 0, nan_codes = 0, rope_changed = 0;
      const double ratio = f == Fl::FNUZ ? 2.0 : 0.5;
      for (size_t r = 0; r < slots.size(); ++r)
        for (int i = 0; i < L.D; ++i) {
          const float a = right[r * L.D + (size_t)i], b = mis[r * L.D + (size_t)i];
          if (i >= L.nope) {
            rope_changed += !(a == b);
            continue;
          }
          if (a == 0.f && !std::isnan(b)) continue;
          ++nope_nonzero;
          if (!(a == b)) ++nope_changed;
          if (std::isnan(b)) ++nan_codes;
          else if ((double)b == ratio * a) ++ratio_ok;
        }
      INFO("nonzero NoPE values " << nope_nonzero << ", changed " << nope_changed << ", x" << ratio << " " << ratio_ok
                                  << ", NaN " << nan_codes);
      CHECK(nope_nonzero > 1000);
      CHECK(nope_changed == nope_nonzero);
      CHECK(ratio_ok + nan_codes == nope_nonzero);
      CHECK(rope_changed == 0);
      // Attention over the mislabelled cache is not the data's attention either.
      const int T = 2, H = 8, K = 32;
      const Source m = make_source(g, s, f, T, K);
      Source mm = m;
      mm.declared = wrong;
      const std::vector<uint16_t> q = make_q(g, (size_t)T * H * L.D);
      const AttnOut ref = reference(T, H, q, m, nullptr);
      const AttnDiff d_right = diff(run_attention(h, T, H, q, m, nullptr), ref);
      const AttnDiff d_wrong = diff(run_attention(h, T, H, q, mm, nullptr), ref);
      INFO("attention vs the data's reference: declared right rel_l2 " << d_right.rel_l2 << "; declared wrong rel_l2 "
                                                                      << d_wrong.rel_l2 << " (" << d_wrong.nonfinite
                                                                      << " non-finite)");
      CHECK(d_right.rel_l2 < 1e-2);
      CHECK((d_wrong.nonfinite > 0 || d_wrong.rel_l2 > 0.05));
    }
}

// DeepSeek-V4: a main and an extra (window) source of different flavors in one call, each read
// with the flavor its own descriptor declares.
inline void per_source_flavors(spmla_handle_t h) {
  uint64_t seed;
  std::mt19937_64 g = rng(seed);
  INFO("seed " << seed);
  for (Fl fm : {Fl::FN, Fl::FNUZ}) {
    const Fl fx = other(fm);
    for (spmla_kv_layout_t l : {SPMLA_KV_LAYOUT_V4_FP8, SPMLA_KV_LAYOUT_V32_FP8}) {
      const Layout L = layout(l);
      INFO(L.name << ": main " << name(fm) << ", extra " << name(fx));
      const StoredCache sm = store(h, g, L, fm, 64, 128, true), sx = store(h, g, L, fx, 8, 64, true);
      const int T = 3, H = 16;
      const Source m = make_source(g, sm, fm, T, 40), x = make_source(g, sx, fx, T, 24);
      const std::vector<uint16_t> q = make_q(g, (size_t)T * H * L.D);
      const AttnDiff d = diff(run_attention(h, T, H, q, m, &x), reference(T, H, q, m, &x));
      INFO("attention: rel_l2(out) " << d.rel_l2 << ", worst |dlse| " << d.worst_lse);
      CHECK(d.nonfinite == 0);
      CHECK(d.bad_lse == 0);
      CHECK(d.rel_l2 < 1e-2);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------
// `w` occurs in `s` as a whole word (so "E4M3FN" is not found inside "E4M3FNUZ").
inline bool has_word(const std::string &s, const std::string &w) {
  for (size_t p = s.find(w); p != std::string::npos; p = s.find(w, p + 1)) {
    const size_t e = p + w.size();
    const bool left = p == 0 || !(std::isalnum((unsigned char)s[p - 1]) || s[p - 1] == '_');
    const bool right = e >= s.size() || !(std::isalnum((unsigned char)s[e]) || s[e] == '_');
    if (left && right) return true;
  }
  return false;
}

inline const char *dtype_name(Fl f) { return f == Fl::FN ? "fp8_e4m3fn" : "fp8_e4m3fnuz"; }

inline void mixing_is_caught(spmla_handle_t h) {
  // indexer_logits_paged: q's dtype against the indexer cache's fp8_flavor.
  for (Fl cf : {Fl::FN, Fl::FNUZ})
    for (Fl qf : {Fl::FN, Fl::FNUZ}) {
      INFO("indexer_logits_paged: q " << dtype_name(qf) << ", cache " << name(cf));
      const int B = 2, N = 2, Hi = 8, Di = 64, bs = 16, P = 3, C = 40;
      spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
      c.layout = SPMLA_KV_LAYOUT_INDEXER_FP8;
      c.fp8_flavor = api(cf);
      c.head_dim = Di;
      c.num_pages = B * P;
      c.block_size = bs;
      size_t pb = 0;
      ok(spmla_kv_cache_page_bytes(&c, &pb), "page_bytes");
      Buf cache(h, pb * (size_t)c.num_pages), dq(h, (size_t)B * N * Hi * Di), dbt(h, (size_t)B * P * 4),
          dcl(h, (size_t)B * 4), dw(h, (size_t)B * N * Hi * 4), dlog(h, (size_t)B * N * C * 4);
      cache.fill(0);
      dq.fill(0x38);  // 1.0 in E4M3FN, 0.5 in E4M3FNUZ
      std::vector<int32_t> bt((size_t)B * P), cl((size_t)B, C);
      for (size_t i = 0; i < bt.size(); ++i) bt[i] = (int32_t)i;
      dbt.put(bt);
      dcl.put(cl);
      dw.put(std::vector<float>((size_t)B * N * Hi, 1.f));
      dlog.fill(0x7f);
      c.data = cache.p;
      spmla_tensor_t tq = tensor(dq.p, dtype(qf), {B, N, Hi, Di});
      spmla_tensor_t tbt = tensor(dbt.p, SPMLA_DTYPE_INT32, {B, P});
      spmla_tensor_t tcl = tensor(dcl.p, SPMLA_DTYPE_INT32, {B});
      spmla_tensor_t tw = tensor(dw.p, SPMLA_DTYPE_FP32, {B * N, Hi});
      spmla_tensor_t tl = tensor(dlog.p, SPMLA_DTYPE_FP32, {B * N, C});
      spmla_indexer_logits_paged_args_t a = SPMLA_INDEXER_LOGITS_PAGED_ARGS_INIT;
      a.q = &tq, a.cache = &c, a.block_table = &tbt, a.context_lens = &tcl, a.weights = &tw, a.logits = &tl;
      size_t wsb = 0;
      const spmla_status_t sw = spmla_indexer_logits_paged_get_workspace_size(h, &a, &wsb);
      const std::string mw = spmla_last_error_message();
      Buf ws(h, 256);
      const spmla_status_t sr = spmla_indexer_logits_paged_run(h, &a, ws.p, sw == SPMLA_STATUS_SUCCESS ? wsb : 0, nullptr);
      const std::string mr = spmla_last_error_message();
      const std::vector<uint32_t> logits = dlog.get<uint32_t>((size_t)B * N * C);
      if (qf == cf) {
        INFO(mr);
        CHECK(sw == SPMLA_STATUS_SUCCESS);
        CHECK(sr == SPMLA_STATUS_SUCCESS);
      } else {
        INFO("workspace query: " << mw << "\nrun: " << mr);
        CHECK(sw == SPMLA_STATUS_INVALID_ARGUMENT);
        CHECK(sr == SPMLA_STATUS_INVALID_ARGUMENT);
        for (const std::string &msg : {mw, mr}) {
          CHECK(has_word(msg, dtype_name(qf)));  // q's flavor ...
          CHECK(has_word(msg, name(cf)));        // ... and the cache's
          CHECK(msg.find("q.dtype") != std::string::npos);
        }
        size_t touched = 0;
        for (uint32_t v : logits) touched += v != 0x7f7f7f7fu;
        CHECK(touched == 0);  // a refused call writes nothing
      }
    }

  // indexer_logits (ragged): q and k must be of one flavor.
  {
    const int T = 2, Hi = 8, Di = 64, S = 32;
    Buf dq(h, (size_t)T * Hi * Di), dk(h, (size_t)S * Di), dks(h, (size_t)S * 4), dw(h, (size_t)T * Hi * 4),
        dst(h, (size_t)T * 4), den(h, (size_t)T * 4), dlog(h, (size_t)T * S * 4);
    dq.fill(0x38);
    dk.fill(0x38);
    dks.put(std::vector<float>((size_t)S, 1.f));
    dw.put(std::vector<float>((size_t)T * Hi, 1.f));
    dst.put(std::vector<int32_t>((size_t)T, 0));
    den.put(std::vector<int32_t>((size_t)T, S));
    for (Fl qf : {Fl::FN, Fl::FNUZ}) {
      const Fl kf = other(qf);
      INFO("indexer_logits: q " << dtype_name(qf) << ", k " << dtype_name(kf));
      dlog.fill(0x7f);
      spmla_tensor_t tq = tensor(dq.p, dtype(qf), {T, Hi, Di}), tk = tensor(dk.p, dtype(kf), {S, Di});
      spmla_tensor_t tks = tensor(dks.p, SPMLA_DTYPE_FP32, {S}), tw = tensor(dw.p, SPMLA_DTYPE_FP32, {T, Hi});
      spmla_tensor_t ts = tensor(dst.p, SPMLA_DTYPE_INT32, {T}), te = tensor(den.p, SPMLA_DTYPE_INT32, {T});
      spmla_tensor_t tl = tensor(dlog.p, SPMLA_DTYPE_FP32, {T, S});
      spmla_indexer_logits_args_t a = SPMLA_INDEXER_LOGITS_ARGS_INIT;
      a.q = &tq, a.k = &tk, a.k_scale = &tks, a.weights = &tw, a.k_start = &ts, a.k_end = &te, a.logits = &tl;
      Buf ws(h, 256);
      const spmla_status_t st = spmla_indexer_logits_run(h, &a, ws.p, 256, nullptr);
      const std::string msg = spmla_last_error_message();
      INFO(msg);
      CHECK(st == SPMLA_STATUS_INVALID_ARGUMENT);
      CHECK(msg.find("k.dtype") != std::string::npos);
      CHECK(has_word(msg, dtype_name(qf)));
      CHECK(has_word(msg, dtype_name(kf)));
      size_t touched = 0;
      for (uint32_t v : dlog.get<uint32_t>((size_t)T * S)) touched += v != 0x7f7f7f7fu;
      CHECK(touched == 0);
    }
  }
}

// An FP8 layout needs fp8_flavor E4M3FN or E4M3FNUZ; NONE or any other value is refused by every
// op that takes the cache (and by the size query); BF16 takes no flavor.
inline void missing_or_unknown_flavor_refused(spmla_handle_t h) {
  // Out-of-range values are written as a C caller would (an int in the field), not through a C++
  // enum conversion.
  static_assert(sizeof(spmla_fp8_flavor_t) == sizeof(int32_t), "spmla_fp8_flavor_t is an int-sized enum");
  const int32_t bad_flavors[] = {0 /* NONE */, 3, 255, -1};
  for (spmla_kv_layout_t l : {SPMLA_KV_LAYOUT_V32_FP8, SPMLA_KV_LAYOUT_V4_FP8})
    for (int32_t bf : bad_flavors) {
      const Layout L = layout(l);
      INFO(L.name << " with fp8_flavor " << bf);
      const int bs = 4, pages = 2, N = 3;
      Buf cache(h, page_bytes(L, bs) * pages);
      cache.fill(0x33);
      spmla_kv_cache_t c = cache_desc(L, Fl::FN, cache.p, pages, bs);
      memcpy(&c.fp8_flavor, &bf, sizeof bf);
      auto expect_refused = [&](spmla_status_t st, const char *op) {
        const std::string msg = spmla_last_error_message();
        INFO(op << ": " << spmla_status_string(st) << " " << msg);
        CHECK(st == SPMLA_STATUS_INVALID_ARGUMENT);
        CHECK(msg.find("fp8_flavor") != std::string::npos);
      };
      size_t pb = 0;
      expect_refused(spmla_kv_cache_page_bytes(&c, &pb), "kv_cache_page_bytes");
      // store
      std::vector<uint16_t> x((size_t)N * L.D, float_to_bf16(1.f));
      std::vector<int32_t> sm = {0, 1, 2};
      Buf dx(h, x), dsm(h, sm);
      spmla_tensor_t tkv = tensor(dx.p, SPMLA_DTYPE_BF16, {N, L.D}), tsm = tensor(dsm.p, SPMLA_DTYPE_INT32, {N});
      spmla_kv_cache_store_args_t sa = SPMLA_KV_CACHE_STORE_ARGS_INIT;
      sa.kv = &tkv, sa.slot_mapping = &tsm, sa.cache = &c;
      expect_refused(spmla_kv_cache_store_run(h, &sa, nullptr), "kv_cache_store");
      size_t touched = 0;
      for (uint8_t b : cache.get<uint8_t>(cache.n)) touched += b != 0x33;
      CHECK(touched == 0);
      // gather
      Buf dout(h, (size_t)N * L.D * 2);
      dout.fill(0xee);
      spmla_tensor_t to = tensor(dout.p, SPMLA_DTYPE_BF16, {N, L.D});
      spmla_kv_cache_gather_args_t ga = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
      ga.cache = &c, ga.slots = &tsm, ga.out = &to;
      expect_refused(spmla_kv_cache_gather_run(h, &ga, nullptr), "kv_cache_gather");
      touched = 0;
      for (uint8_t b : dout.get<uint8_t>(dout.n)) touched += b != 0xee;
      CHECK(touched == 0);
      // sparse_attention, as the main and as the extra source
      const int T = 1, H = 4, K = 3;
      Buf dq(h, std::vector<uint16_t>((size_t)T * H * L.D, float_to_bf16(0.5f))), di(h, sm), dao(h, (size_t)T * H * 512 * 2),
          dlse(h, (size_t)T * H * 4), ws(h, 1 << 20);
      dao.fill(0xee);
      spmla_tensor_t tq = tensor(dq.p, SPMLA_DTYPE_BF16, {T, H, L.D}), ti = tensor(di.p, SPMLA_DTYPE_INT32, {T, K});
      spmla_tensor_t tao = tensor(dao.p, SPMLA_DTYPE_BF16, {T, H, 512}), tlse = tensor(dlse.p, SPMLA_DTYPE_FP32, {T, H});
      spmla_kv_cache_t good = c;
      good.fp8_flavor = SPMLA_FP8_E4M3FN;
      for (int as_extra = 0; as_extra < 2; ++as_extra) {
        spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
        a.q = &tq, a.indices = &ti, a.out = &tao, a.lse = &tlse;
        a.kv = as_extra ? &good : &c;
        if (as_extra) a.extra_kv = &c, a.extra_indices = &ti;
        size_t wsb = 0;
        expect_refused(spmla_sparse_attention_get_workspace_size(h, &a, &wsb), "sparse_attention workspace");
        expect_refused(spmla_sparse_attention_plan(h, &a, ws.p, ws.n, nullptr), "sparse_attention plan");
        expect_refused(spmla_sparse_attention_run(h, &a, ws.p, ws.n, nullptr), "sparse_attention run");
      }
      touched = 0;
      for (uint8_t b : dao.get<uint8_t>(dao.n)) touched += b != 0xee;
      CHECK(touched == 0);
    }
  // BF16 takes no flavor; INDEXER_FP8 and FP8_PER_TENSOR need one.
  {
    spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
    c.layout = SPMLA_KV_LAYOUT_BF16;
    c.fp8_flavor = SPMLA_FP8_E4M3FN;
    c.head_dim = 576;
    c.num_pages = 1;
    c.block_size = 1;
    size_t pb = 0;
    CHECK(spmla_kv_cache_page_bytes(&c, &pb) == SPMLA_STATUS_INVALID_ARGUMENT);
    c.layout = SPMLA_KV_LAYOUT_FP8_PER_TENSOR;
    c.fp8_flavor = SPMLA_FP8_NONE;
    CHECK(spmla_kv_cache_page_bytes(&c, &pb) == SPMLA_STATUS_INVALID_ARGUMENT);
    c.layout = SPMLA_KV_LAYOUT_INDEXER_FP8;
    c.head_dim = 128;
    CHECK(spmla_kv_cache_page_bytes(&c, &pb) == SPMLA_STATUS_INVALID_ARGUMENT);
    c.fp8_flavor = SPMLA_FP8_E4M3FNUZ;
    CHECK(spmla_kv_cache_page_bytes(&c, &pb) == SPMLA_STATUS_SUCCESS);
  }
}

}  // namespace fp8flav
