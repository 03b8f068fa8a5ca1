/* Consumer (a), C99, through find_package(spmla): library and header agree, the CPU
 * backend is listed, cache geometry, window_indices and the ragged lightning indexer
 * give the hand-computed values. */
#include <spmla.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

static int failures = 0;
#define EXPECT(c)                                                      \
  do {                                                                 \
    if (!(c)) {                                                        \
      fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #c); \
      ++failures;                                                      \
    }                                                                  \
  } while (0)
#define CHECK(call)                                                                      \
  do {                                                                                   \
    spmla_status_t st_ = (call);                                                         \
    if (st_ != SPMLA_STATUS_SUCCESS) {                                                   \
      fprintf(stderr, "%s: %s: %s\n", #call, spmla_status_string(st_),                  \
              spmla_last_error_message());                                               \
      return 1;                                                                          \
    }                                                                                    \
  } while (0)

int main(void) {
  int32_t n = 0, i, found_cpu = 0;
  spmla_handle_t h = NULL;
  spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
  size_t bytes = 0;

  EXPECT(spmla_version_number() == SPMLA_VERSION_NUMBER);
  EXPECT(strcmp(spmla_version_string(), SPMLA_VERSION_STRING) == 0);
  EXPECT((spmla_abi_version() >> 16) == SPMLA_ABI_VERSION_MAJOR);
  CHECK(spmla_backend_count(&n));
  for (i = 0; i < n; ++i) {
    spmla_backend_info_t info = SPMLA_BACKEND_INFO_INIT;
    CHECK(spmla_backend_get_info(i, &info));
    if (strcmp(info.name, "cpu") == 0) found_cpu = info.available;
  }
  EXPECT(found_cpu);

  /* V4 page: 584 * 64 = 37376 bytes, rounded up to a multiple of 576 = 37440. */
  c.layout = SPMLA_KV_LAYOUT_V4_FP8;
  c.fp8_flavor = SPMLA_FP8_E4M3FN;
  c.num_pages = 3;
  c.block_size = 64;
  CHECK(spmla_kv_cache_page_bytes(&c, &bytes));
  EXPECT(bytes == 37440);
  CHECK(spmla_kv_cache_size_bytes(&c, &bytes));
  EXPECT(bytes == 3 * 37440);

  CHECK(spmla_handle_create("cpu", 0, &h));
  {
    /* Sliding window of 3 (ratio 1), block size 2, pages [6, 2, 9]: position p is slot
     * table[p / 2] * 2 + p % 2. Position 4: positions 2..4 -> 4, 5, 18. */
    int32_t pos[2] = {4, 0}, req[2] = {0, 0}, table[3] = {6, 2, 9}, slots[6], lens[2];
    int64_t s2[1] = {2}, st[2] = {1, 3}, ss[2] = {2, 3};
    spmla_tensor_t tp = SPMLA_TENSOR_INIT, tr = SPMLA_TENSOR_INIT, tt = SPMLA_TENSOR_INIT,
                   ts = SPMLA_TENSOR_INIT, tl = SPMLA_TENSOR_INIT;
    spmla_window_indices_args_t a = SPMLA_WINDOW_INDICES_ARGS_INIT;
    CHECK(spmla_tensor_make_contiguous(&tp, pos, SPMLA_DTYPE_INT32, 1, s2));
    CHECK(spmla_tensor_make_contiguous(&tr, req, SPMLA_DTYPE_INT32, 1, s2));
    CHECK(spmla_tensor_make_contiguous(&tt, table, SPMLA_DTYPE_INT32, 2, st));
    CHECK(spmla_tensor_make_contiguous(&ts, slots, SPMLA_DTYPE_INT32, 2, ss));
    CHECK(spmla_tensor_make_contiguous(&tl, lens, SPMLA_DTYPE_INT32, 1, s2));
    a.positions = &tp;
    a.token_to_req = &tr;
    a.block_table = &tt;
    a.block_size = 2;
    a.slots = &ts;
    a.lengths = &tl;
    CHECK(spmla_window_indices_run(h, &a, NULL));
    EXPECT(slots[0] == 4 && slots[1] == 5 && slots[2] == 18 && lens[0] == 3);
    EXPECT(slots[3] == 12 && slots[4] == -1 && slots[5] == -1 && lens[1] == 1);
  }
  {
    /* Ragged indexer, T 1, Hi 2, Di 64, S 3: q and k hold FP8 E4M3FN 1.0 (0x38) or
     * -1.0 (0xB8) so every dot product is a small integer.
     *   q head 0 = all +1, head 1 = +1 on the first 32, -1 on the rest;
     *   k row 0 = all +1 (dots 64, 0), row 1 = all -1 (dots -64, 0),
     *   row 2 = -1 on the first 32, +1 on the rest (dots 0, -64).
     * weights (0.5, 2), k_scale (1, 1, 0.25), range [0, 2):
     *   logits = 0.5 * relu(64) + 2 * relu(0) = 32;  0 + 0 = 0;  -inf (outside). */
    static _Alignas(16) uint8_t q[2 * 64], k[3 * 64];
    float k_scale[3] = {1.0f, 1.0f, 0.25f}, w[2] = {0.5f, 2.0f}, logits[3];
    int32_t ks[1] = {0}, ke[1] = {2};
    int64_t qs[3] = {1, 2, 64}, kss[2] = {3, 64}, s3[1] = {3}, ws[2] = {1, 2}, s1[1] = {1},
            ls[2] = {1, 3};
    spmla_tensor_t tq = SPMLA_TENSOR_INIT, tk = SPMLA_TENSOR_INIT, tsc = SPMLA_TENSOR_INIT,
                   tw = SPMLA_TENSOR_INIT, tks = SPMLA_TENSOR_INIT, tke = SPMLA_TENSOR_INIT,
                   tl = SPMLA_TENSOR_INIT;
    spmla_indexer_logits_args_t a = SPMLA_INDEXER_LOGITS_ARGS_INIT;
    size_t wsb = 0;
    void *wsp = NULL;
    for (i = 0; i < 64; ++i) {
      q[i] = 0x38;
      q[64 + i] = i < 32 ? 0x38 : 0xB8;
      k[i] = 0x38;
      k[64 + i] = 0xB8;
      k[128 + i] = i < 32 ? 0xB8 : 0x38;
    }
    CHECK(spmla_tensor_make_contiguous(&tq, q, SPMLA_DTYPE_FP8_E4M3FN, 3, qs));
    CHECK(spmla_tensor_make_contiguous(&tk, k, SPMLA_DTYPE_FP8_E4M3FN, 2, kss));
    CHECK(spmla_tensor_make_contiguous(&tsc, k_scale, SPMLA_DTYPE_FP32, 1, s3));
    CHECK(spmla_tensor_make_contiguous(&tw, w, SPMLA_DTYPE_FP32, 2, ws));
    CHECK(spmla_tensor_make_contiguous(&tks, ks, SPMLA_DTYPE_INT32, 1, s1));
    CHECK(spmla_tensor_make_contiguous(&tke, ke, SPMLA_DTYPE_INT32, 1, s1));
    CHECK(spmla_tensor_make_contiguous(&tl, logits, SPMLA_DTYPE_FP32, 2, ls));
    a.q = &tq;
    a.k = &tk;
    a.k_scale = &tsc;
    a.weights = &tw;
    a.k_start = &tks;
    a.k_end = &tke;
    a.logits = &tl;
    CHECK(spmla_indexer_logits_get_workspace_size(h, &a, &wsb));
    if (wsb) CHECK(spmla_device_malloc(h, wsb, &wsp));
    CHECK(spmla_indexer_logits_run(h, &a, wsp, wsb, NULL));
    CHECK(spmla_device_free(h, wsp));
    EXPECT(fabsf(logits[0] - 32.0f) < 1e-3f);
    EXPECT(logits[1] == 0.0f);
    EXPECT(isinf(logits[2]) && logits[2] < 0);
  }
  CHECK(spmla_handle_destroy(h));
  if (failures) return 1;
  printf("consumer_c (find_package): OK\n");
  return 0;
}
