/*
 * engine.c — an inference engine's view of spmla: it is NOT linked against libspmla.
 * It dlopens the library, resolves the one entry point spmla_get_api, checks the ABI
 * version and the table size, and runs a DeepSeek-V3.2 decode step on the CPU backend
 * through the function table:
 *
 *   kv_cache_store (V32_FP8 "fp8_ds_mla")  ->  indices_to_slots  ->  plan  ->  run
 *
 * Everything is checked against values this program computes itself: the slot ids from
 * its own block table, the cache bytes from its own FP8 quantizer (docs/SPEC.md), and the
 * attention output / lse from a double-precision reference over its own dequantized keys.
 *
 * Usage: engine [path/to/libspmla.so.1]   (default "libspmla.so.1", found by the loader)
 * Only spmla.h's types and macros are used at compile time: `cc engine.c -ldl -lm`.
 */
#include <spmla.h>

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const spmla_api_t *api;

#define CHECK(call)                                                                        \
  do {                                                                                     \
    spmla_status_t st_ = (call);                                                           \
    if (st_ != SPMLA_STATUS_SUCCESS) {                                                     \
      fprintf(stderr, "engine: %s failed: %s: %s\n", #call, api->status_string(st_),        \
              api->last_error_message());                                                  \
      exit(1);                                                                             \
    }                                                                                      \
  } while (0)

#define FAIL(...)                        \
  do {                                   \
    fprintf(stderr, "engine: " __VA_ARGS__); \
    fprintf(stderr, "\n");               \
    exit(1);                             \
  } while (0)

/* ---- the engine's own numerics (independent of libspmla) --------------------------- */
static uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u); /* round to nearest even; inputs are finite */
  return (uint16_t)(u >> 16);
}
static float bf16_to_f32(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
/* OCP E4M3FN, round to nearest even, saturating at 448. */
static uint8_t fp8_encode(float x) {
  uint8_t sign = signbit(x) ? 0x80 : 0;
  float a = fabsf(x), q, m;
  int e, E;
  if (isnan(x)) return sign | 0x7F;
  if (a >= 448.0f) return sign | 0x7E;
  if (a == 0.0f) return sign;
  frexpf(a, &e); /* a = f * 2^e, f in [0.5, 1) */
  E = e - 1;
  if (E < -6) E = -6; /* subnormal binade */
  q = ldexpf(1.0f, E - 3);
  m = nearbyintf(a / q); /* the default rounding mode: to nearest even */
  if (m >= 16.0f) {
    E += 1;
    m = 8.0f;
  }
  if (ldexpf(m, E - 3) > 448.0f) return sign | 0x7E;
  if (m < 8.0f) return sign | (uint8_t)m; /* subnormal (E == -6) */
  return sign | (uint8_t)(((E + 7) << 3) | ((int)m - 8));
}
static float fp8_decode(uint8_t b) {
  int e = (b >> 3) & 0xF, m = b & 7;
  float v;
  if ((b & 0x7F) == 0x7F) return NAN;
  v = e == 0 ? ldexpf((float)m, -9) : ldexpf(1.0f + m / 8.0f, e - 7);
  return (b & 0x80) ? -v : v;
}
/* 2^ceil(log2(max(amax / 448, 1e-4))), the ratio in fp32. */
static float tile_scale(float amax) {
  float r = amax / 448.0f, f;
  int e;
  if (!(r > 1e-4f)) r = 1e-4f;
  f = frexpf(r, &e);
  return ldexpf(1.0f, f == 0.5f ? e - 1 : e);
}
/* One V3.2 token: [512 fp8][4 fp32 scales][64 bf16]. */
static void v32_encode(const uint16_t *row, uint8_t *tok) {
  int t, i;
  for (t = 0; t < 4; ++t) {
    float amax = 0.0f, s;
    for (i = 0; i < 128; ++i) amax = fmaxf(amax, fabsf(bf16_to_f32(row[t * 128 + i])));
    s = tile_scale(amax);
    for (i = 0; i < 128; ++i) tok[t * 128 + i] = fp8_encode(bf16_to_f32(row[t * 128 + i]) / s);
    memcpy(tok + 512 + 4 * t, &s, 4);
  }
  memcpy(tok + 528, row + 512, 128);
}
static void v32_decode(const uint8_t *tok, float *out) {
  int t, i;
  for (t = 0; t < 4; ++t) {
    float s;
    memcpy(&s, tok + 512 + 4 * t, 4);
    for (i = 0; i < 128; ++i) out[t * 128 + i] = fp8_decode(tok[t * 128 + i]) * s;
  }
  for (i = 0; i < 64; ++i) {
    uint16_t b;
    memcpy(&b, tok + 528 + 2 * i, 2);
    out[512 + i] = bf16_to_f32(b);
  }
}

static uint64_t rng_state = 0x5EED;
static float uniform(void) { /* splitmix64 -> [-1, 1) */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (float)(z >> 40) / 16777216.0f * 2.0f - 1.0f;
}
static void *aligned(size_t bytes) {
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) FAIL("out of host memory");
  memset(p, 0, bytes);
  return p;
}

/* ---- the decode step ------------------------------------------------------------------ */
enum { D = 576, DV = 512, H = 16, K = 48, BS = 16, NPAGES = 12, MAXP = 6, B = 2, NEXT_N = 2 };
enum { T = B * NEXT_N };

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "libspmla.so.1";
  void *lib;
  spmla_get_api_fn get_api;
  spmla_handle_t h = NULL;
  /* The engine's paged-cache bookkeeping: two requests, pages scattered. */
  const int32_t ctx[B] = {83, 41};
  const int32_t block_table[B * MAXP] = {9, 2, 7, 0, 11, 5, /**/ 4, 10, 1, -1, -1, -1};
  int32_t ntok = 0, b, t, i, j, hh;
  int32_t *tok_pos, *tok_req, *slot_mapping;
  uint16_t *kv_rows, *q, *out;
  uint8_t *cache_mem;
  float lse[T * H];
  int32_t positions[T * K], tok_to_req[T], slots[T * K], lengths[T];
  double worst = 0.0;

  lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) FAIL("dlopen(%s): %s", path, dlerror());
  *(void **)(&get_api) = dlsym(lib, "spmla_get_api");
  if (!get_api) FAIL("dlsym(spmla_get_api): %s", dlerror());
  /* A major this engine was not built for is refused with a message. */
  if (get_api(SPMLA_ABI_VERSION_MAJOR + 1) != NULL) FAIL("spmla_get_api accepted a wrong major");
  api = get_api(SPMLA_ABI_VERSION_MAJOR);
  if (!api) FAIL("spmla_get_api(%d) returned NULL", SPMLA_ABI_VERSION_MAJOR);
  if ((api->abi_version >> 16) != SPMLA_ABI_VERSION_MAJOR)
    FAIL("library ABI %u.%u, engine built for %d.x", api->abi_version >> 16,
         api->abi_version & 0xFFFF, SPMLA_ABI_VERSION_MAJOR);
  /* Members this engine calls must be covered by the library's table. */
  if (api->struct_size < sizeof(spmla_api_t))
    FAIL("library table has %zu bytes, the engine needs %zu", api->struct_size,
         sizeof(spmla_api_t));
  if (api->abi_version_fn() != api->abi_version) FAIL("abi_version mismatch in the table");
  printf("engine: loaded %s, spmla %s, ABI %u.%u\n", path, api->version_string(),
         api->abi_version >> 16, api->abi_version & 0xFFFF);

  CHECK(api->handle_create("cpu", 0, &h));

  /* 1. store every context token's KV row (the new tokens are the last NEXT_N). */
  for (b = 0; b < B; ++b) ntok += ctx[b];
  tok_pos = aligned(sizeof(int32_t) * ntok);
  tok_req = aligned(sizeof(int32_t) * ntok);
  slot_mapping = aligned(sizeof(int32_t) * ntok);
  kv_rows = aligned(sizeof(uint16_t) * (size_t)ntok * D);
  for (b = 0, i = 0; b < B; ++b)
    for (j = 0; j < ctx[b]; ++j, ++i) {
      tok_pos[i] = j;
      tok_req[i] = b;
      slot_mapping[i] = block_table[b * MAXP + j / BS] * BS + j % BS;
    }
  for (i = 0; i < ntok * D; ++i) {
    float v = uniform();
    if (i % D < 128 && (i / D) % 5 == 0) v *= 300.0f; /* tiles of very different ranges */
    kv_rows[i] = f32_to_bf16(v);
  }
  {
    spmla_kv_cache_t kv = SPMLA_KV_CACHE_INIT;
    spmla_tensor_t t_rows = SPMLA_TENSOR_INIT, t_map = SPMLA_TENSOR_INIT;
    spmla_kv_cache_store_args_t st = SPMLA_KV_CACHE_STORE_ARGS_INIT;
    int64_t rs[2] = {ntok, D}, ms[1] = {ntok};
    size_t bytes = 0;
    kv.layout = SPMLA_KV_LAYOUT_V32_FP8;
    kv.fp8_flavor = SPMLA_FP8_E4M3FN;
    kv.head_dim = D;
    kv.num_pages = NPAGES;
    kv.block_size = BS;
    CHECK(api->kv_cache_size_bytes(&kv, &bytes));
    if (bytes != (size_t)NPAGES * BS * 656) FAIL("V32 cache size %zu", bytes);
    cache_mem = aligned(bytes);
    kv.data = cache_mem;
    CHECK(api->tensor_make_contiguous(&t_rows, kv_rows, SPMLA_DTYPE_BF16, 2, rs));
    CHECK(api->tensor_make_contiguous(&t_map, slot_mapping, SPMLA_DTYPE_INT32, 1, ms));
    st.kv = &t_rows;
    st.slot_mapping = &t_map;
    st.cache = &kv;
    CHECK(api->kv_cache_store_run(h, &st, NULL));
    /* The bytes are FlashMLA's "fp8_ds_mla" format, as the engine quantizes it. */
    for (i = 0; i < ntok; ++i) {
      uint8_t want[656];
      v32_encode(kv_rows + (size_t)i * D, want);
      if (memcmp(want, cache_mem + (size_t)slot_mapping[i] * 656, 656) != 0)
        FAIL("cache bytes of token %d (slot %d) differ from the engine's quantization", i,
             slot_mapping[i]);
    }

    /* 2. the top-k positions of each new token (causal: <= its own position); the
     *    short request's lists end in unused (-1) entries. */
    for (t = 0; t < T; ++t) {
      int32_t req = t / NEXT_N, pos = ctx[req] - NEXT_N + t % NEXT_N, n = 0;
      tok_to_req[t] = req;
      if (pos + 1 <= K) /* short context: every position, then -1 */
        for (j = 0; j <= pos; ++j) positions[t * K + n++] = j;
      else /* K positions spread over [0, pos], ascending */
        for (; n < K; ++n) positions[t * K + n] = (int32_t)(((int64_t)n * (pos + 1)) / K);
      for (; n < K; ++n) positions[t * K + n] = -1;
    }
    {
      spmla_tensor_t tp = SPMLA_TENSOR_INIT, tr = SPMLA_TENSOR_INIT, tb = SPMLA_TENSOR_INIT,
                     ts = SPMLA_TENSOR_INIT, tl = SPMLA_TENSOR_INIT;
      spmla_indices_to_slots_args_t ia = SPMLA_INDICES_TO_SLOTS_ARGS_INIT;
      int64_t ps[2] = {T, K}, rsz[1] = {T}, bsz[2] = {B, MAXP};
      CHECK(api->tensor_make_contiguous(&tp, positions, SPMLA_DTYPE_INT32, 2, ps));
      CHECK(api->tensor_make_contiguous(&tr, tok_to_req, SPMLA_DTYPE_INT32, 1, rsz));
      CHECK(api->tensor_make_contiguous(&tb, (void *)block_table, SPMLA_DTYPE_INT32, 2, bsz));
      CHECK(api->tensor_make_contiguous(&ts, slots, SPMLA_DTYPE_INT32, 2, ps));
      CHECK(api->tensor_make_contiguous(&tl, lengths, SPMLA_DTYPE_INT32, 1, rsz));
      ia.positions = &tp;
      ia.token_to_req = &tr;
      ia.block_table = &tb;
      ia.block_size = BS;
      ia.slots = &ts;
      ia.lengths = &tl;
      CHECK(api->indices_to_slots_run(h, &ia, NULL));
      for (t = 0; t < T; ++t) {
        int32_t valid = 0;
        for (j = 0; j < K; ++j) {
          int32_t p = positions[t * K + j];
          int32_t want = p < 0 ? -1 : block_table[tok_to_req[t] * MAXP + p / BS] * BS + p % BS;
          if (slots[t * K + j] != want) FAIL("slot[%d,%d] = %d, expected %d", t, j, slots[t * K + j], want);
          valid += p >= 0;
        }
        if (lengths[t] != valid) FAIL("lengths[%d] = %d, expected %d", t, lengths[t], valid);
      }
    }

    /* 3. plan once and 4. run (twice, as two layers would). */
    q = aligned(sizeof(uint16_t) * T * H * D);
    out = aligned(sizeof(uint16_t) * T * H * DV);
    for (i = 0; i < T * H * D; ++i) q[i] = f32_to_bf16(uniform());
    {
      spmla_tensor_t tq = SPMLA_TENSOR_INIT, ti = SPMLA_TENSOR_INIT, tl = SPMLA_TENSOR_INIT,
                     to = SPMLA_TENSOR_INIT, tlse = SPMLA_TENSOR_INIT;
      spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
      int64_t qs[3] = {T, H, D}, is[2] = {T, K}, ls[1] = {T}, os[3] = {T, H, DV}, es[2] = {T, H};
      size_t ws_bytes = 0;
      void *ws = NULL;
      int layer;
      CHECK(api->tensor_make_contiguous(&tq, q, SPMLA_DTYPE_BF16, 3, qs));
      CHECK(api->tensor_make_contiguous(&ti, slots, SPMLA_DTYPE_INT32, 2, is));
      CHECK(api->tensor_make_contiguous(&tl, lengths, SPMLA_DTYPE_INT32, 1, ls));
      CHECK(api->tensor_make_contiguous(&to, out, SPMLA_DTYPE_BF16, 3, os));
      CHECK(api->tensor_make_contiguous(&tlse, lse, SPMLA_DTYPE_FP32, 2, es));
      a.q = &tq;
      a.kv = &kv;
      a.indices = &ti;
      a.lengths = &tl;
      a.out = &to;
      a.lse = &tlse;
      CHECK(api->sparse_attention_get_workspace_size(h, &a, &ws_bytes));
      if (ws_bytes) CHECK(api->device_malloc(h, ws_bytes, &ws));
      CHECK(api->sparse_attention_plan(h, &a, ws, ws_bytes, NULL));
      for (layer = 0; layer < 2; ++layer) CHECK(api->sparse_attention_run(h, &a, ws, ws_bytes, NULL));
      CHECK(api->stream_synchronize(h, NULL));
      CHECK(api->device_free(h, ws));
    }
  }

  /* Reference: the engine's own dequantization of its own quantization, in double. */
  for (t = 0; t < T; ++t) {
    int32_t len = lengths[t];
    float *keys = malloc(sizeof(float) * (size_t)(len ? len : 1) * D);
    double *logit = malloc(sizeof(double) * (len ? len : 1));
    for (j = 0; j < len; ++j) {
      int32_t p = positions[t * K + j], req = tok_to_req[t], row = p;
      uint8_t tok[656];
      for (b = 0; b < req; ++b) row += ctx[b]; /* row of kv_rows holding (req, p) */
      v32_encode(kv_rows + (size_t)row * D, tok);
      v32_decode(tok, keys + (size_t)j * D);
    }
    for (hh = 0; hh < H; ++hh) {
      const uint16_t *qv = q + ((size_t)t * H + hh) * D;
      double m = -INFINITY, sum = 0.0, ref_lse, num = 0.0, den = 0.0, err;
      for (j = 0; j < len; ++j) {
        double dot = 0.0;
        for (i = 0; i < D; ++i) dot += (double)bf16_to_f32(qv[i]) * keys[(size_t)j * D + i];
        logit[j] = dot / sqrt((double)D);
        m = fmax(m, logit[j]);
      }
      for (j = 0; j < len; ++j) sum += exp(logit[j] - m);
      ref_lse = m + log(sum);
      for (i = 0; i < DV; ++i) {
        double r = 0.0, o = bf16_to_f32(out[((size_t)t * H + hh) * DV + i]);
        for (j = 0; j < len; ++j) r += exp(logit[j] - ref_lse) * keys[(size_t)j * D + i];
        num += (o - r) * (o - r);
        den += r * r;
      }
      err = sqrt(num / den);
      if (!(err < 1e-2)) FAIL("token %d head %d: relative L2 error %g", t, hh, err);
      if (!(fabs(lse[t * H + hh] - ref_lse) < 1e-3 * fmax(1.0, fabs(ref_lse))))
        FAIL("token %d head %d: lse %g, reference %g", t, hh, lse[t * H + hh], ref_lse);
      worst = fmax(worst, err);
    }
    free(keys);
    free(logit);
  }
  CHECK(api->handle_destroy(h));
  printf("engine: DeepSeek-V3.2 decode step (T %d, H %d, K %d, lengths %d %d %d %d) OK, "
         "max relative error %.2e\n",
         T, H, K, lengths[0], lengths[1], lengths[2], lengths[3], worst);
  free(tok_pos);
  free(tok_req);
  free(slot_mapping);
  free(kv_rows);
  free(cache_mem);
  free(q);
  free(out);
  dlclose(lib);
  return 0;
}
