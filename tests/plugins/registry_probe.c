/* registry_probe.c — prints libspmla's backend registry as a fresh process sees it, and
 * exercises dispatch to the fake backend. Run by tests/test_registry.cpp with
 * SPMLA_BACKEND_PATH pointing at the fake plugins.
 *   registry_probe list             one line per backend: backend|name|available|devices|library|reason
 *   registry_probe dispatch         handle on "fake", ops reach it, workspace checks (prints key=value)
 *   registry_probe threads A B      two threads create handles on A and B at once (first use)
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spmla.h"

static int list(void) {
  int32_t n = -1, i;
  if (spmla_backend_count(&n) != SPMLA_STATUS_SUCCESS) return 1;
  printf("count=%d\n", (int)n);
  for (i = 0; i < n; ++i) {
    spmla_backend_info_t info = SPMLA_BACKEND_INFO_INIT;
    if (spmla_backend_get_info(i, &info) != SPMLA_STATUS_SUCCESS) return 1;
    printf("backend|%s|%d|%d|%s|%s\n", info.name, (int)info.available, (int)info.device_count,
           info.library, info.reason);
  }
  return 0;
}

static void *xalloc(size_t bytes, unsigned char poison) {
  void *p = NULL;
  if (posix_memalign(&p, 256, (bytes + 255) / 256 * 256) != 0) exit(3);
  memset(p, poison, (bytes + 255) / 256 * 256);
  return p;
}

static spmla_tensor_t tensor(void *data, spmla_dtype_t dt, int32_t nd, int64_t a, int64_t b,
                             int64_t c) {
  spmla_tensor_t t = SPMLA_TENSOR_INIT;
  int64_t shape[3];
  shape[0] = a;
  shape[1] = b;
  shape[2] = c;
  if (spmla_tensor_make_contiguous(&t, data, dt, nd, shape) != SPMLA_STATUS_SUCCESS) exit(4);
  return t;
}

static int all_u16(const void *p, size_t n, uint16_t v) {
  const uint16_t *q = (const uint16_t *)p;
  size_t i;
  for (i = 0; i < n; ++i)
    if (q[i] != v) return 0;
  return 1;
}
static int all_bytes(const void *p, size_t n, unsigned char v) {
  const unsigned char *q = (const unsigned char *)p;
  size_t i;
  for (i = 0; i < n; ++i)
    if (q[i] != v) return 0;
  return 1;
}

static int dispatch(void) {
  spmla_handle_t h = NULL, h2 = NULL;
  spmla_status_t st;
  int ok = 1;
  enum { T = 2, H = 3, D = 512, K = 5, BS = 4, PAGES = 2 };
  spmla_device_info_t dev = SPMLA_DEVICE_INFO_INIT;

  st = spmla_handle_create("fake", 0, &h);
  printf("create_fake=%s\n", spmla_status_string(st));
  if (st != SPMLA_STATUS_SUCCESS) {
    printf("message=%s\n", spmla_last_error_message());
    return 1;
  }
  printf("handle_backend=%s\n", spmla_handle_backend_name(h));
  st = spmla_handle_create("fake", 2, &h2);
  printf("create_fake_dev2=%s\n", spmla_status_string(st));
  st = spmla_device_get_info("fake", 1, &dev);
  printf("device_info=%s name=%s arch=%s\n", spmla_status_string(st), dev.name, dev.arch);
  st = spmla_handle_create(NULL, 0, &h2);
  printf("auto=%s backend=%s\n", spmla_status_string(st),
         st == SPMLA_STATUS_SUCCESS ? spmla_handle_backend_name(h2) : "-");
  spmla_handle_destroy(h2);
  h2 = NULL;
  st = spmla_handle_create("nope", 0, &h2);
  printf("unknown=%s message=%s\n", spmla_status_string(st), spmla_last_error_message());
  st = spmla_handle_create("badabi", 0, &h2);
  printf("badabi=%s message=%s\n", spmla_status_string(st), spmla_last_error_message());
  {
    /* handle options on a plugin without context_set_option (as one of plugin ABI 1.0 / 1.1):
     * the default is accepted, anything else is UNSUPPORTED */
    int64_t v = -1;
    st = spmla_handle_set_option(h, SPMLA_OPTION_BATCH_INVARIANT, 1);
    printf("opt_on=%s message=%s\n", spmla_status_string(st), spmla_last_error_message());
    st = spmla_handle_set_option(h, SPMLA_OPTION_BATCH_INVARIANT, 0);
    printf("opt_off=%s\n", spmla_status_string(st));
    st = spmla_handle_get_option(h, SPMLA_OPTION_BATCH_INVARIANT, &v);
    printf("opt_get=%s value=%lld\n", spmla_status_string(st), (long long)v);
  }

  {
    /* sparse attention through the fake backend */
    void *q = xalloc(T * H * D * 2, 0x11), *kvd = xalloc(PAGES * BS * D * 2, 0x22);
    void *idx = xalloc(T * K * 4, 0), *out = xalloc(T * H * 512 * 2, 0xAB);
    void *lse = xalloc(T * H * 4, 0xAB), *ws = xalloc(4096, 0);
    spmla_tensor_t tq = tensor(q, SPMLA_DTYPE_BF16, 3, T, H, D);
    spmla_tensor_t ti = tensor(idx, SPMLA_DTYPE_INT32, 2, T, K, 0);
    spmla_tensor_t to = tensor(out, SPMLA_DTYPE_BF16, 3, T, H, 512);
    spmla_tensor_t tl = tensor(lse, SPMLA_DTYPE_FP32, 2, T, H, 0);
    spmla_kv_cache_t kv = SPMLA_KV_CACHE_INIT;
    spmla_sparse_attention_args_t a = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
    size_t need = 0;
    float l0;
    kv.data = kvd;
    kv.layout = SPMLA_KV_LAYOUT_BF16;
    kv.head_dim = D;
    kv.num_pages = PAGES;
    kv.block_size = BS;
    a.q = &tq;
    a.kv = &kv;
    a.indices = &ti;
    a.out = &to;
    a.lse = &tl;
    st = spmla_sparse_attention_get_workspace_size(h, &a, &need);
    printf("sa_workspace=%s bytes=%zu\n", spmla_status_string(st), need);
    st = spmla_sparse_attention_plan(h, &a, ws, need - 1, NULL);
    printf("sa_plan_small=%s message=%s\n", spmla_status_string(st), spmla_last_error_message());
    st = spmla_sparse_attention_run(h, &a, NULL, need, NULL);
    printf("sa_run_null_ws=%s\n", spmla_status_string(st));
    printf("sa_untouched=%d\n", all_bytes(out, T * H * 512 * 2, 0xAB) &&
                                    all_bytes(lse, T * H * 4, 0xAB));
    st = spmla_sparse_attention_plan(h, &a, ws, need, NULL);
    printf("sa_plan=%s\n", spmla_status_string(st));
    st = spmla_sparse_attention_run(h, &a, ws, need, NULL);
    memcpy(&l0, lse, 4);
    printf("sa_run=%s out_ok=%d lse=%g\n", spmla_status_string(st),
           all_u16(out, T * H * 512, 0x4049), (double)l0);
    ok = ok && st == SPMLA_STATUS_SUCCESS && all_u16(out, T * H * 512, 0x4049) && l0 == 42.0f;
    free(q);
    free(kvd);
    free(idx);
    free(out);
    free(lse);
    free(ws);
  }
  {
    /* kv_cache_gather and topk_per_row through the fake backend */
    void *kvd = xalloc(PAGES * BS * D * 2, 0x22), *slots = xalloc(3 * 4, 0);
    void *out = xalloc(3 * D * 2, 0xAB), *logits = xalloc(2 * 8 * 4, 0), *ind = xalloc(2 * 3 * 4, 0);
    spmla_kv_cache_t kv = SPMLA_KV_CACHE_INIT;
    spmla_tensor_t ts = tensor(slots, SPMLA_DTYPE_INT32, 1, 3, 0, 0);
    spmla_tensor_t to = tensor(out, SPMLA_DTYPE_BF16, 2, 3, D, 0);
    spmla_tensor_t tlg = tensor(logits, SPMLA_DTYPE_FP32, 2, 2, 8, 0);
    spmla_tensor_t tin = tensor(ind, SPMLA_DTYPE_INT32, 2, 2, 3, 0);
    spmla_kv_cache_gather_args_t g = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
    spmla_topk_per_row_args_t k = SPMLA_TOPK_PER_ROW_ARGS_INIT;
    int32_t i0;
    kv.data = kvd;
    kv.layout = SPMLA_KV_LAYOUT_BF16;
    kv.head_dim = D;
    kv.num_pages = PAGES;
    kv.block_size = BS;
    g.cache = &kv;
    g.slots = &ts;
    g.out = &to;
    st = spmla_kv_cache_gather_run(h, &g, NULL);
    printf("gather=%s out_ok=%d\n", spmla_status_string(st), all_u16(out, 3 * D, 0x3F80));
    ok = ok && st == SPMLA_STATUS_SUCCESS && all_u16(out, 3 * D, 0x3F80);
    {
      /* ABI 1.2: a V41 cache given to a plugin backend is refused by the core (src/api.cpp,
       * "LAYOUTS THE BACKENDS SERVE") before the plugin is called: its output stays untouched. */
      const spmla_kv_layout_t layouts[2] = {SPMLA_KV_LAYOUT_V41_FP8, SPMLA_KV_LAYOUT_V41_FP4};
      const spmla_kv_arrangement_t arrs[2] = {SPMLA_KV_ARRANGEMENT_PER_TOKEN, SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED};
      int li;
      for (li = 0; li < 2; ++li) {
        void *v41 = xalloc(PAGES * 4096, 0x33);
        spmla_kv_cache_t c41 = SPMLA_KV_CACHE_INIT;
        spmla_kv_cache_store_args_t sa = SPMLA_KV_CACHE_STORE_ARGS_INIT;
        spmla_tensor_t tkv = tensor(out, SPMLA_DTYPE_BF16, 2, 3, D, 0);
        c41.data = v41;
        c41.layout = layouts[li];
        c41.fp8_flavor = SPMLA_FP8_E4M3FN;
        c41.num_pages = PAGES;
        c41.block_size = BS;
        c41.arrangement = arrs[li];
        memset(out, 0xAB, 3 * D * 2);
        g.cache = &c41;
        st = spmla_kv_cache_gather_run(h, &g, NULL);
        printf("v41_gather_%d=%s untouched=%d\n", li, spmla_status_string(st), all_bytes(out, 3 * D * 2, 0xAB));
        printf("v41_gather_msg_%d=%s\n", li, spmla_last_error_message());
        ok = ok && st == SPMLA_STATUS_UNSUPPORTED && all_bytes(out, 3 * D * 2, 0xAB);
        sa.kv = &tkv;
        sa.slot_mapping = &ts;
        sa.cache = &c41;
        st = spmla_kv_cache_store_run(h, &sa, NULL);
        printf("v41_store_%d=%s untouched=%d\n", li, spmla_status_string(st), all_bytes(v41, PAGES * 4096, 0x33));
        ok = ok && st == SPMLA_STATUS_UNSUPPORTED && all_bytes(v41, PAGES * 4096, 0x33);
        free(v41);
      }
      g.cache = &kv;
    }
    k.logits = &tlg;
    k.indices = &tin;
    st = spmla_topk_per_row_run(h, &k, NULL, 0, NULL);
    memcpy(&i0, ind, 4);
    printf("topk=%s first=%d\n", spmla_status_string(st), (int)i0);
    ok = ok && st == SPMLA_STATUS_SUCCESS && i0 == 5555;
    free(kvd);
    free(slots);
    free(out);
    free(logits);
    free(ind);
  }
  {
    float ms = 0;
    spmla_event_t e0 = NULL, e1 = NULL;
    void *p = NULL;
    spmla_event_create(h, &e0);
    spmla_event_create(h, &e1);
    st = spmla_event_elapsed_ms(h, e0, e1, &ms);
    printf("elapsed=%s ms=%g\n", spmla_status_string(st), (double)ms);
    spmla_event_destroy(h, e0);
    spmla_event_destroy(h, e1);
    st = spmla_device_malloc(h, 100, &p);
    printf("malloc=%s aligned=%d\n", spmla_status_string(st), (int)(((size_t)p % 256) == 0));
    spmla_device_free(h, p);
  }
  spmla_handle_destroy(h);
  printf("dispatch=%s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}

struct thread_arg {
  const char *backend;
  pthread_barrier_t *barrier;
  spmla_status_t status;
  const char *name;
};

static void *thread_main(void *p) {
  struct thread_arg *a = (struct thread_arg *)p;
  spmla_handle_t h = NULL;
  pthread_barrier_wait(a->barrier);
  a->status = spmla_handle_create(a->backend, 0, &h);
  a->name = h ? spmla_handle_backend_name(h) : "-";
  spmla_handle_destroy(h);
  return NULL;
}

static int threads(const char *b0, const char *b1) {
  pthread_barrier_t barrier;
  pthread_t t[2];
  struct thread_arg a[2];
  int i;
  pthread_barrier_init(&barrier, NULL, 2);
  a[0].backend = b0;
  a[1].backend = b1;
  for (i = 0; i < 2; ++i) {
    a[i].barrier = &barrier;
    a[i].status = SPMLA_STATUS_INTERNAL;
    a[i].name = "-";
    if (pthread_create(&t[i], NULL, thread_main, &a[i]) != 0) return 1;
  }
  for (i = 0; i < 2; ++i) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&barrier);
  for (i = 0; i < 2; ++i)
    printf("thread%d=%s backend=%s\n", i, spmla_status_string(a[i].status), a[i].name);
  return a[0].status == SPMLA_STATUS_SUCCESS && a[1].status == SPMLA_STATUS_SUCCESS ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "list") == 0) return list();
  if (argc >= 2 && strcmp(argv[1], "dispatch") == 0) return dispatch();
  if (argc >= 4 && strcmp(argv[1], "threads") == 0) return threads(argv[2], argv[3]);
  fprintf(stderr, "usage: registry_probe list | dispatch | threads BACKEND BACKEND\n");
  return 2;
}
