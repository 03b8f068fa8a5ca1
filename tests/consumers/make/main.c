/* Consumer (b), C11, through `pkg-config spmla`: an FP8_PER_TENSOR cache (E4M3FNUZ,
 * scale 0.5) round-trips values that are exact in that format, and a bad call reports
 * the argument at fault and leaves its output untouched. */
#include <spmla.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                                      \
  do {                                                                                   \
    spmla_status_t st_ = (call);                                                         \
    if (st_ != SPMLA_STATUS_SUCCESS) {                                                   \
      fprintf(stderr, "%s: %s: %s\n", #call, spmla_status_string(st_),                  \
              spmla_last_error_message());                                               \
      return 1;                                                                          \
    }                                                                                    \
  } while (0)

enum { D = 512, BS = 3, NPAGES = 2, N = 2 };

static uint16_t bf16(float f) { /* exact for the values used here */
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)(u >> 16);
}

int main(void) {
  static _Alignas(16) uint8_t cache_mem[NPAGES * BS * D];
  static _Alignas(16) uint16_t rows[N * D], back[N * D];
  int32_t slots[N] = {4, 1};
  int64_t rs[2] = {N, D}, ss[1] = {N};
  spmla_handle_t h = NULL;
  spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
  spmla_tensor_t tr = SPMLA_TENSOR_INIT, ts = SPMLA_TENSOR_INIT, tb = SPMLA_TENSOR_INIT;
  spmla_kv_cache_store_args_t st = SPMLA_KV_CACHE_STORE_ARGS_INIT;
  spmla_kv_cache_gather_args_t ga = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
  spmla_status_t bad;
  int i;

  /* x = +-(1 + k/8) * 2^e * 0.5 (k 0..7, e -5..4): x / 0.5 is exact in E4M3FNUZ (3
   * mantissa bits, exponents -7..7) and x is exact in bf16. */
  for (i = 0; i < N * D; ++i) {
    float m = 1.0f + (float)((i * 5) % 8) / 8.0f;
    int e = (i * 3) % 10 - 5;
    rows[i] = bf16((i % 2 ? -0.5f : 0.5f) * ldexpf(m, e));
  }
  c.data = cache_mem;
  c.layout = SPMLA_KV_LAYOUT_FP8_PER_TENSOR;
  c.fp8_flavor = SPMLA_FP8_E4M3FNUZ;
  c.head_dim = D;
  c.num_pages = NPAGES;
  c.block_size = BS;
  c.scale = 0.5f;
  CHECK(spmla_handle_create("cpu", 0, &h));
  CHECK(spmla_tensor_make_contiguous(&tr, rows, SPMLA_DTYPE_BF16, 2, rs));
  CHECK(spmla_tensor_make_contiguous(&ts, slots, SPMLA_DTYPE_INT32, 1, ss));
  CHECK(spmla_tensor_make_contiguous(&tb, back, SPMLA_DTYPE_BF16, 2, rs));
  st.kv = &tr;
  st.slot_mapping = &ts;
  st.cache = &c;
  CHECK(spmla_kv_cache_store_run(h, &st, NULL));
  ga.cache = &c;
  ga.slots = &ts;
  ga.out = &tb;
  CHECK(spmla_kv_cache_gather_run(h, &ga, NULL));
  if (memcmp(rows, back, sizeof rows) != 0) {
    fprintf(stderr, "consumer_pc: FP8_PER_TENSOR round trip differs\n");
    return 1;
  }
  /* A negative scale is rejected, the message names it, and nothing is written. */
  memset(back, 0x77, sizeof back);
  c.scale = -1.0f;
  bad = spmla_kv_cache_gather_run(h, &ga, NULL);
  if (bad != SPMLA_STATUS_INVALID_ARGUMENT || !strstr(spmla_last_error_message(), "scale")) {
    fprintf(stderr, "consumer_pc: bad scale gave %s: %s\n", spmla_status_string(bad),
            spmla_last_error_message());
    return 1;
  }
  for (i = 0; i < N * D; ++i)
    if (back[i] != 0x7777) {
      fprintf(stderr, "consumer_pc: a failed call wrote its output\n");
      return 1;
    }
  CHECK(spmla_handle_destroy(h));
  printf("consumer_pc (pkg-config): OK\n");
  return 0;
}
