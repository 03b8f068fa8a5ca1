/*
 * two_threads.c — two threads create their own spmla handle at the same moment (a
 * barrier releases them together) and run operations on it concurrently:
 * kv_cache_store + sparse attention (plan once, run many times) and topk_per_row.
 * Each thread checks its results against the ones the main thread computed alone
 * beforehand (the CPU backend is deterministic), and that the last-error message is
 * per thread: errors provoked on one thread never show up on the other.
 */
#include <spmla.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { D = 512, H = 4, T = 3, K = 6, BS = 5, NPAGES = 4, ITERS = 40 };

#define CHECK(call)                                                                   \
  do {                                                                                \
    spmla_status_t st_ = (call);                                                      \
    if (st_ != SPMLA_STATUS_SUCCESS) {                                                \
      fprintf(stderr, "two_threads: %s: %s: %s\n", #call, spmla_status_string(st_),   \
              spmla_last_error_message());                                            \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)

typedef struct {
  int id;
  _Alignas(64) uint16_t rows[NPAGES * BS * D];
  _Alignas(64) uint16_t q[T * H * D];
  _Alignas(64) uint16_t out[T * H * 512];
  float lse[T * H];
  int32_t top[T * 3];
  int failed;
} job_t;

static pthread_barrier_t start;
static _Alignas(64) uint16_t ref_out[2][T * H * 512];
static float ref_lse[2][T * H];
static int32_t ref_top[2][T * 3];

static uint16_t bf16_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static void fill(job_t *j) {
  uint32_t s = 12345u + 777u * (uint32_t)j->id;
  int i;
  for (i = 0; i < NPAGES * BS * D; ++i) {
    s = s * 1664525u + 1013904223u;
    j->rows[i] = bf16_bits((float)(int32_t)(s >> 8) / 8388608.0f);
  }
  for (i = 0; i < T * H * D; ++i) {
    s = s * 1664525u + 1013904223u;
    j->q[i] = bf16_bits((float)(int32_t)(s >> 8) / 8388608.0f);
  }
}

/* One "step": store the rows, attend, top-k; ITERS runs of attention from one plan. */
static int step(spmla_handle_t h, job_t *j, int iters) {
  static _Thread_local _Alignas(64) uint8_t cache_mem[NPAGES * BS * D * 2];
  int32_t all[NPAGES * BS], idx[T * K], i;
  float logits[T * 8];
  spmla_kv_cache_t kv = SPMLA_KV_CACHE_INIT;
  spmla_tensor_t tr = SPMLA_TENSOR_INIT, ta = SPMLA_TENSOR_INIT, tq = SPMLA_TENSOR_INIT,
                 ti = SPMLA_TENSOR_INIT, to = SPMLA_TENSOR_INIT, tl = SPMLA_TENSOR_INIT,
                 tlg = SPMLA_TENSOR_INIT, ttop = SPMLA_TENSOR_INIT;
  spmla_kv_cache_store_args_t st = SPMLA_KV_CACHE_STORE_ARGS_INIT;
  spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
  spmla_topk_per_row_args_t tk = SPMLA_TOPK_PER_ROW_ARGS_INIT;
  int64_t rs[2] = {NPAGES * BS, D}, as[1] = {NPAGES * BS}, qs[3] = {T, H, D}, is[2] = {T, K},
          os[3] = {T, H, 512}, ls[2] = {T, H}, lgs[2] = {T, 8}, tps[2] = {T, 3};
  size_t ws_bytes = 0, tk_bytes = 0;
  void *ws = NULL, *tkws = NULL;

  for (i = 0; i < NPAGES * BS; ++i) all[i] = i;
  for (i = 0; i < T * K; ++i) idx[i] = (i * 7 + j->id) % (NPAGES * BS + 2) - 1; /* some -1, some out of range */
  for (i = 0; i < T * 8; ++i) logits[i] = (float)((i * 5 + j->id * 3) % 11);
  kv.data = cache_mem;
  kv.layout = SPMLA_KV_LAYOUT_BF16;
  kv.head_dim = D;
  kv.num_pages = NPAGES;
  kv.block_size = BS;
  CHECK(spmla_tensor_make_contiguous(&tr, j->rows, SPMLA_DTYPE_BF16, 2, rs));
  CHECK(spmla_tensor_make_contiguous(&ta, all, SPMLA_DTYPE_INT32, 1, as));
  st.kv = &tr;
  st.slot_mapping = &ta;
  st.cache = &kv;
  CHECK(spmla_kv_cache_store_run(h, &st, NULL));

  CHECK(spmla_tensor_make_contiguous(&tq, j->q, SPMLA_DTYPE_BF16, 3, qs));
  CHECK(spmla_tensor_make_contiguous(&ti, idx, SPMLA_DTYPE_INT32, 2, is));
  CHECK(spmla_tensor_make_contiguous(&to, j->out, SPMLA_DTYPE_BF16, 3, os));
  CHECK(spmla_tensor_make_contiguous(&tl, j->lse, SPMLA_DTYPE_FP32, 2, ls));
  a.q = &tq;
  a.kv = &kv;
  a.indices = &ti;
  a.out = &to;
  a.lse = &tl;
  CHECK(spmla_sparse_attention_get_workspace_size(h, &a, &ws_bytes));
  if (ws_bytes) CHECK(spmla_device_malloc(h, ws_bytes, &ws));
  CHECK(spmla_sparse_attention_plan(h, &a, ws, ws_bytes, NULL));
  for (i = 0; i < iters; ++i) {
    CHECK(spmla_sparse_attention_run(h, &a, ws, ws_bytes, NULL));
    /* Provoke an error on this thread: its message must name this thread's argument. */
    {
      spmla_sparse_attention_args_t bad = a;
      bad.scale = j->id == 0 ? -INFINITY : 0.0f; /* thread 0: infinite scale */
      bad.lse = j->id == 0 ? a.lse : NULL;          /* thread 1: missing lse */
      if (spmla_sparse_attention_run(h, &bad, ws, ws_bytes, NULL) == SPMLA_STATUS_SUCCESS) {
        fprintf(stderr, "two_threads: thread %d: a bad call succeeded\n", j->id);
        return 1;
      }
      if (!strstr(spmla_last_error_message(), j->id == 0 ? "scale" : "lse")) {
        fprintf(stderr, "two_threads: thread %d got another thread's message: %s\n", j->id,
                spmla_last_error_message());
        return 1;
      }
    }
  }
  CHECK(spmla_device_free(h, ws));

  CHECK(spmla_tensor_make_contiguous(&tlg, logits, SPMLA_DTYPE_FP32, 2, lgs));
  CHECK(spmla_tensor_make_contiguous(&ttop, j->top, SPMLA_DTYPE_INT32, 2, tps));
  tk.logits = &tlg;
  tk.indices = &ttop;
  CHECK(spmla_topk_per_row_get_workspace_size(h, &tk, &tk_bytes));
  if (tk_bytes) CHECK(spmla_device_malloc(h, tk_bytes, &tkws));
  CHECK(spmla_topk_per_row_run(h, &tk, tkws, tk_bytes, NULL));
  CHECK(spmla_device_free(h, tkws));
  return 0;
}

static void *worker(void *arg) {
  job_t *j = arg;
  spmla_handle_t h = NULL;
  spmla_status_t st;
  pthread_barrier_wait(&start);
  st = spmla_handle_create("cpu", 0, &h); /* both threads at once */
  if (st != SPMLA_STATUS_SUCCESS) {
    fprintf(stderr, "two_threads: thread %d: handle_create: %s\n", j->id,
            spmla_last_error_message());
    j->failed = 1;
    return NULL;
  }
  j->failed = step(h, j, ITERS);
  if (!j->failed && (memcmp(j->out, ref_out[j->id], sizeof j->out) != 0 ||
                     memcmp(j->lse, ref_lse[j->id], sizeof j->lse) != 0 ||
                     memcmp(j->top, ref_top[j->id], sizeof j->top) != 0)) {
    fprintf(stderr, "two_threads: thread %d: results differ from the single-thread run\n",
            j->id);
    j->failed = 1;
  }
  spmla_handle_destroy(h);
  return NULL;
}

int main(void) {
  static job_t jobs[2];
  pthread_t th[2];
  spmla_handle_t h = NULL;
  int i, nonzero = 0;

  /* Reference results, one thread, one handle. */
  CHECK(spmla_handle_create("cpu", 0, &h));
  for (i = 0; i < 2; ++i) {
    jobs[i].id = i;
    fill(&jobs[i]);
    if (step(h, &jobs[i], 1)) return 1;
    memcpy(ref_out[i], jobs[i].out, sizeof ref_out[i]);
    memcpy(ref_lse[i], jobs[i].lse, sizeof ref_lse[i]);
    memcpy(ref_top[i], jobs[i].top, sizeof ref_top[i]);
    memset(jobs[i].out, 0, sizeof jobs[i].out);
    memset(jobs[i].lse, 0, sizeof jobs[i].lse);
    memset(jobs[i].top, 0, sizeof jobs[i].top);
  }
  CHECK(spmla_handle_destroy(h));
  for (i = 0; i < T * H * 512; ++i) nonzero += ref_out[0][i] != 0;
  if (nonzero == 0 || memcmp(ref_out[0], ref_out[1], sizeof ref_out[0]) == 0) {
    fprintf(stderr, "two_threads: degenerate reference (all zero or both threads equal)\n");
    return 1;
  }

  pthread_barrier_init(&start, NULL, 2);
  for (i = 0; i < 2; ++i) pthread_create(&th[i], NULL, worker, &jobs[i]);
  for (i = 0; i < 2; ++i) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&start);
  if (jobs[0].failed || jobs[1].failed) return 1;
  printf("two_threads: two handles on two threads at once: OK (%d attention runs each)\n", ITERS);
  return 0;
}
