// plugin.cu — the CUDA backend plugin: runtime glue (devices, contexts, memory, events, errors)
// and host-side dispatch of every operation to the shared kernels. Exports only
// spmla_backend_entry (see spmla_backend.h). The CUDA runtime is linked statically; the driver
// (libcuda.so.1) is looked for at init so that a machine without one gets "backend unavailable"
// with a reason instead of a crash.
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../common/params.h"
#include "kv_layout.h"
#include "launchers.h"
#include "spmla_backend.h"

namespace spmla {
namespace cuda {
namespace {

const spmla_backend_host_t *g_host = nullptr;

spmla_status_t fail(spmla_status_t st, const std::string &msg) {
  if (g_host && g_host->set_error) g_host->set_error(("cuda backend: " + msg).c_str());
  return st;
}
spmla_status_t cuda_fail(cudaError_t e, const char *what) {
  const spmla_status_t st = e == cudaErrorMemoryAllocation ? SPMLA_STATUS_OUT_OF_MEMORY : SPMLA_STATUS_DEVICE_ERROR;
  return fail(st, std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}
#define SPMLA_CU(call, what)                      \
  do {                                            \
    cudaError_t _e = (call);                      \
    if (_e != cudaSuccess) return cuda_fail(_e, what); \
  } while (0)

struct Context {
  int device = 0;
  int sm_count = 1;
  size_t smem_optin = 0;
  AttnSm90Mode attn_sm90 = AttnSm90Mode::kOff;  // the Hopper attention fast path on this device
  int attn_splits = 0;  // SPMLA_CUDA_ATTENTION_SPLITS (tuning): split-K count forced, 0 = chosen
  TopkLaunchState topk;  // fast topk kernels' shared memory per block, dependent launch
};

spmla_status_t use_device(const Context *c) {
  int cur = -1;
  if (cudaGetDevice(&cur) != cudaSuccess || cur != c->device) SPMLA_CU(cudaSetDevice(c->device), "cudaSetDevice");
  return SPMLA_STATUS_SUCCESS;
}

inline cudaStream_t as_stream(void *s) { return static_cast<cudaStream_t>(s); }

template <typename T>
T *ptr(const spmla_tensor_t *t) { return t ? static_cast<T *>(t->data) : nullptr; }
inline int64_t st(const spmla_tensor_t *t, int i) { return t ? t->strides[i] : 0; }

kern::CacheDesc cache_desc(const spmla_kv_cache_t &c) {
  const CacheGeometry g = resolve_geometry(c);
  kern::CacheDesc d;
  d.base = g.base;
  d.num_pages = g.num_pages;
  d.page_stride = g.page_stride;
  d.block_size = g.block_size;
  d.layout = (int32_t)g.layout;
  d.flavor = (int32_t)g.flavor;
  d.dim = g.dim;
  d.scale = g.scale;
  return d;
}

// ------------------------------------------------------------------ runtime glue
spmla_status_t init(const spmla_backend_host_t *host, int32_t *device_count, char *reason, size_t reason_size) {
  g_host = host;
  *device_count = 0;
  auto say = [&](const std::string &s) {
    if (reason && reason_size) snprintf(reason, reason_size, "%s", s.c_str());
  };
  void *drv = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!drv) {
    const char *e = dlerror();
    say(std::string("no CUDA driver: libcuda.so.1 not found (") + (e ? e : "dlopen failed") + ")");
    return SPMLA_STATUS_BACKEND_UNAVAILABLE;
  }
  // Keep the handle: the static runtime loads the same library.
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) {
    say("no CUDA device");
    return SPMLA_STATUS_BACKEND_UNAVAILABLE;
  }
  if (e != cudaSuccess) {
    say(std::string("CUDA runtime error: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
    return SPMLA_STATUS_BACKEND_UNAVAILABLE;
  }
  *device_count = n;
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t device_info(int32_t device, spmla_device_info_t *info) {
  cudaDeviceProp p;
  SPMLA_CU(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  snprintf(info->name, sizeof info->name, "%s", p.name);
  const int cc = p.major * 10 + p.minor;
  snprintf(info->arch, sizeof info->arch, "sm_%d", cc);
  info->total_memory_bytes = (int64_t)p.totalGlobalMem;
  info->multiprocessor_count = p.multiProcessorCount;
  info->warp_size = p.warpSize;
  info->fp8_e4m3fn_native = cc >= 89 ? 1 : 0;
  info->fp8_e4m3fnuz_native = 0;
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t context_create(int32_t device, void **out) {
  Context *c = new (std::nothrow) Context;
  if (!c) return fail(SPMLA_STATUS_OUT_OF_MEMORY, "context allocation failed");
  c->device = device;
  cudaError_t e = cudaSetDevice(device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, device);
  int optin = 0;
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  c->smem_optin = (size_t)optin;
  // Kernel attributes are set once here, never while a stream may be capturing.
  if (e == cudaSuccess && c->smem_optin >= attention_smem_bytes(576)) e = attention_prepare(576);
  if (e == cudaSuccess && c->smem_optin >= attention_smem_bytes(512)) e = attention_prepare(512);
  int major = 0, minor = 0;
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  if (e == cudaSuccess) e = attention_sm90_prepare(major * 10 + minor, c->smem_optin, &c->attn_sm90);
  if (const char *v = std::getenv("SPMLA_CUDA_ATTENTION_SPLITS")) c->attn_splits = std::max(0, std::min(64, std::atoi(v)));
  if (e == cudaSuccess) e = indexer_prepare();
  if (e == cudaSuccess) e = topk_prepare(device, &c->topk);
  if (e != cudaSuccess) {
    delete c;
    return cuda_fail(e, "context setup");
  }
  *out = c;
  return SPMLA_STATUS_SUCCESS;
}

void context_destroy(void *ctx) { delete static_cast<Context *>(ctx); }

spmla_status_t malloc_fn(void *ctx, size_t bytes, void **p) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  *p = nullptr;
  if (bytes == 0) return SPMLA_STATUS_SUCCESS;
  SPMLA_CU(cudaMalloc(p, bytes), "cudaMalloc");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t free_fn(void *ctx, void *p) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  if (p) SPMLA_CU(cudaFree(p), "cudaFree");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t memcpy_fn(void *ctx, void *dst, const void *src, size_t bytes, spmla_memcpy_kind_t kind, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  if (bytes == 0) return SPMLA_STATUS_SUCCESS;
  cudaMemcpyKind k = kind == SPMLA_MEMCPY_HOST_TO_DEVICE   ? cudaMemcpyHostToDevice
                     : kind == SPMLA_MEMCPY_DEVICE_TO_HOST ? cudaMemcpyDeviceToHost
                                                           : cudaMemcpyDeviceToDevice;
  SPMLA_CU(cudaMemcpyAsync(dst, src, bytes, k, as_stream(stream)), "cudaMemcpyAsync");
  if (k == cudaMemcpyDeviceToHost) SPMLA_CU(cudaStreamSynchronize(as_stream(stream)), "cudaStreamSynchronize");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t memset_fn(void *ctx, void *dst, int value, size_t bytes, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  if (bytes == 0) return SPMLA_STATUS_SUCCESS;
  SPMLA_CU(cudaMemsetAsync(dst, value, bytes, as_stream(stream)), "cudaMemsetAsync");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t stream_synchronize(void *ctx, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  SPMLA_CU(cudaStreamSynchronize(as_stream(stream)), "cudaStreamSynchronize");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t event_create(void *ctx, void **ev) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  cudaEvent_t e;
  SPMLA_CU(cudaEventCreate(&e), "cudaEventCreate");
  *ev = e;
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t event_destroy(void *, void *ev) {
  if (ev) SPMLA_CU(cudaEventDestroy(static_cast<cudaEvent_t>(ev)), "cudaEventDestroy");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t event_record(void *, void *ev, void *stream) {
  SPMLA_CU(cudaEventRecord(static_cast<cudaEvent_t>(ev), as_stream(stream)), "cudaEventRecord");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t event_elapsed_ms(void *, void *a, void *b, float *ms) {
  SPMLA_CU(cudaEventSynchronize(static_cast<cudaEvent_t>(b)), "cudaEventSynchronize");
  SPMLA_CU(cudaEventElapsedTime(ms, static_cast<cudaEvent_t>(a), static_cast<cudaEvent_t>(b)), "cudaEventElapsedTime");
  return SPMLA_STATUS_SUCCESS;
}

// ------------------------------------------------------------------ sparse attention
constexpr size_t kHeaderBytes = 256;
inline size_t align256(size_t x) { return (x + 255) / 256 * 256; }

struct AttnShape {
  int T, H, D, Ktot, splits;
};

AttnShape attn_shape(const Context *c, const spmla_sparse_attention_args_t *a) {
  AttnShape s;
  s.T = (int)a->q->shape[0];
  s.H = (int)a->q->shape[1];
  s.D = (int)a->q->shape[2];
  const bool extra = a->extra_kv && a->extra_indices;
  s.Ktot = (int)a->indices->shape[1] + (extra ? (int)a->extra_indices->shape[1] : 0);
  // Split-K only when the (token, head-block) grid cannot fill the GPU; every split keeps at
  // least two tiles of the list. A function of the shapes alone, so plan and run agree.
  // The count is the smallest that reaches the best wave efficiency (CTAs over whole waves of
  // one CTA per SM), so a grid that already fills one wave is not split into two.
  const long base = (long)s.T * ((s.H + kern::kAttnBM - 1) / kern::kAttnBM);
  int splits = 1;
  if (base > 0 && base < c->sm_count) {
    const int max_s = std::min(std::max(1, s.Ktot / (2 * kern::kAttnBN)), 64);
    double best = 0;
    for (int k = 1; k <= max_s; ++k) {
      const long ctas = base * k, waves = (ctas + c->sm_count - 1) / c->sm_count;
      const double eff = (double)ctas / ((double)waves * c->sm_count);
      if (eff > best + 0.02) {
        best = eff;
        splits = k;
      }
    }
  }
  // A forced count (tuning) still leaves every split at least one tile.
  if (c->attn_splits > 0) splits = std::max(1, std::min(c->attn_splits, (s.Ktot + kern::kAttnBN - 1) / kern::kAttnBN));
  s.splits = splits;
  return s;
}

size_t attn_ws_bytes(const AttnShape &s) {
  size_t b = kHeaderBytes;
  if (s.splits > 1) {
    const size_t rows = (size_t)s.splits * s.T * s.H;
    b += align256(rows * kern::kDV * 4) + 2 * align256(rows * 4);
  }
  return b;
}

spmla_status_t attn_workspace(void *ctx, const spmla_sparse_attention_args_t *a, size_t *bytes) {
  *bytes = attn_ws_bytes(attn_shape(static_cast<Context *>(ctx), a));
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t attn_plan(void *ctx, const spmla_sparse_attention_args_t *a, void *ws, size_t ws_bytes, void *stream) {
  Context *c = static_cast<Context *>(ctx);
  if (spmla_status_t s = use_device(c)) return s;
  const AttnShape s = attn_shape(c, a);
  if (ws_bytes < attn_ws_bytes(s)) return fail(SPMLA_STATUS_WORKSPACE_TOO_SMALL, "workspace smaller than the query");
  if (s.T == 0) return SPMLA_STATUS_SUCCESS;
  SPMLA_CU(launch_attention_plan(ws, (unsigned)s.splits, (unsigned)s.T, (unsigned)s.H, as_stream(stream)),
           "sparse_attention plan launch");
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t attn_run(void *ctx, const spmla_sparse_attention_args_t *a, void *ws, size_t ws_bytes, void *stream) {
  Context *c = static_cast<Context *>(ctx);
  if (spmla_status_t s = use_device(c)) return s;
  const AttnShape s = attn_shape(c, a);
  if (ws_bytes < attn_ws_bytes(s)) return fail(SPMLA_STATUS_WORKSPACE_TOO_SMALL, "workspace smaller than the query");
  if (s.D != 512 && s.D != 576) return fail(SPMLA_STATUS_UNSUPPORTED, "D_qk must be 512 or 576");
  if (c->smem_optin < attention_smem_bytes(s.D))
    return fail(SPMLA_STATUS_UNSUPPORTED, "the device's shared memory per block (" + std::to_string(c->smem_optin) +
                                              " B) is below the attention kernel's " +
                                              std::to_string(attention_smem_bytes(s.D)) + " B");
  if (s.T == 0 || s.H == 0) return SPMLA_STATUS_SUCCESS;
  kern::AttnParams p;
  memset(&p, 0, sizeof p);
  p.q = ptr<const uint16_t>(a->q);
  p.q_stride_t = st(a->q, 0);
  p.q_stride_h = st(a->q, 1);
  p.T = s.T;
  p.H = s.H;
  p.D = s.D;
  p.src[0] = cache_desc(*a->kv);
  p.idx[0] = ptr<const int32_t>(a->indices);
  p.idx_stride[0] = st(a->indices, 0);
  p.K[0] = (int)a->indices->shape[1];
  p.len[0] = ptr<const int32_t>(a->lengths);
  p.len_stride[0] = st(a->lengths, 0);
  if (a->extra_kv && a->extra_indices) {
    p.src[1] = cache_desc(*a->extra_kv);
    p.idx[1] = ptr<const int32_t>(a->extra_indices);
    p.idx_stride[1] = st(a->extra_indices, 0);
    p.K[1] = (int)a->extra_indices->shape[1];
    p.len[1] = ptr<const int32_t>(a->extra_lengths);
    p.len_stride[1] = st(a->extra_lengths, 0);
  } else {
    p.src[1] = p.src[0];
    p.K[1] = 0;
  }
  p.sink = ptr<const float>(a->attn_sink);
  p.sink_stride = st(a->attn_sink, 0);
  p.scale = a->scale != 0.f ? a->scale : (float)(1.0 / std::sqrt((double)s.D));
  p.out = ptr<uint16_t>(a->out);
  p.out_stride_t = st(a->out, 0);
  p.out_stride_h = st(a->out, 1);
  p.lse = ptr<float>(a->lse);
  p.lse_stride_t = st(a->lse, 0);
  p.lse_stride_h = st(a->lse, 1);
  p.max_logits = ptr<float>(a->max_logits);
  p.ml_stride_t = st(a->max_logits, 0);
  p.ml_stride_h = st(a->max_logits, 1);
  p.num_splits = s.splits;
  if (s.splits > 1) {
    uint8_t *w = static_cast<uint8_t *>(ws) + kHeaderBytes;
    const size_t rows = (size_t)s.splits * s.T * s.H;
    p.part_o = reinterpret_cast<float *>(w);
    w += align256(rows * kern::kDV * 4);
    p.part_lse = reinterpret_cast<float *>(w);
    w += align256(rows * 4);
    p.part_max = reinterpret_cast<float *>(w);
  }
  const uintptr_t qa = reinterpret_cast<uintptr_t>(p.q);
  const int qvec = (qa % 16 == 0) && (p.q_stride_t % 8 == 0) && (p.q_stride_h % 8 == 0);
  dim3 grid(s.T, (s.H + kern::kAttnBM - 1) / kern::kAttnBM, s.splits);
  cudaStream_t cs = as_stream(stream);
  // Hopper fast path when every source has one layout it reads (else the portable kernel).
  const int layout = p.src[0].layout;
  const bool one_layout = p.K[1] == 0 || (p.src[1].layout == layout && p.src[1].flavor == p.src[0].flavor);
  if (c->attn_sm90 != AttnSm90Mode::kOff && qvec && one_layout && attention_sm90_layout_ok(s.D, layout)) {
    SPMLA_CU(launch_attention_sm90(p, layout, c->attn_sm90, grid, cs), "sparse_attention (sm90) launch");
  } else {
    SPMLA_CU(s.D == 576 ? launch_attention_d576(p, qvec, grid, cs) : launch_attention_d512(p, qvec, grid, cs),
             "sparse_attention launch");
  }
  if (s.splits > 1) SPMLA_CU(launch_attention_combine(p, cs), "sparse_attention combine launch");
  return SPMLA_STATUS_SUCCESS;
}

// ------------------------------------------------------------------ indices / window
spmla_status_t indices_to_slots(void *ctx, const spmla_indices_to_slots_args_t *a, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  kern::IndicesToSlotsParams p;
  memset(&p, 0, sizeof p);
  p.positions = ptr<const int32_t>(a->positions);
  p.pos_stride = st(a->positions, 0);
  p.token_to_req = ptr<const int32_t>(a->token_to_req);
  p.ttr_stride = st(a->token_to_req, 0);
  p.block_table = ptr<const int32_t>(a->block_table);
  p.bt_stride = st(a->block_table, 0);
  p.R = (int)a->block_table->shape[0];
  p.max_pages = (int)a->block_table->shape[1];
  p.block_size = a->block_size;
  p.T = (int)a->positions->shape[0];
  p.K = (int)a->positions->shape[1];
  p.token_valid = ptr<const uint8_t>(a->token_valid);
  p.tv_stride = st(a->token_valid, 0);
  p.slots = ptr<int32_t>(a->slots);
  p.slots_stride = st(a->slots, 0);
  p.lengths = ptr<int32_t>(a->lengths);
  p.len_stride = st(a->lengths, 0);
  if (a->indptr && a->ragged_slots) {
    p.indptr = ptr<int32_t>(a->indptr);
    p.indptr_stride = st(a->indptr, 0);
    p.ragged = ptr<int32_t>(a->ragged_slots);
    p.ragged_stride = st(a->ragged_slots, 0);
  }
  SPMLA_CU(launch_indices_to_slots(p, as_stream(stream)), "indices_to_slots launch");
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t window_indices(void *ctx, const spmla_window_indices_args_t *a, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  kern::WindowParams p;
  memset(&p, 0, sizeof p);
  p.positions = ptr<const int32_t>(a->positions);
  p.pos_stride = st(a->positions, 0);
  p.token_to_req = ptr<const int32_t>(a->token_to_req);
  p.ttr_stride = st(a->token_to_req, 0);
  p.block_table = ptr<const int32_t>(a->block_table);
  p.bt_stride = st(a->block_table, 0);
  p.R = (int)a->block_table->shape[0];
  p.max_pages = (int)a->block_table->shape[1];
  p.block_size = a->block_size;
  p.T = (int)a->positions->shape[0];
  p.W = (int)a->slots->shape[1];
  p.ratio = a->ratio;
  p.slots = ptr<int32_t>(a->slots);
  p.slots_stride = st(a->slots, 0);
  p.lengths = ptr<int32_t>(a->lengths);
  p.len_stride = st(a->lengths, 0);
  SPMLA_CU(launch_window_indices(p, as_stream(stream)), "window_indices launch");
  return SPMLA_STATUS_SUCCESS;
}

// ------------------------------------------------------------------ indexer
spmla_status_t zero_ws(void *, const void *, size_t *bytes) {
  *bytes = 0;
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t idx_ws(void *c, const spmla_indexer_logits_args_t *a, size_t *b) { return zero_ws(c, a, b); }
spmla_status_t idxp_ws(void *c, const spmla_indexer_logits_paged_args_t *a, size_t *b) { return zero_ws(c, a, b); }
spmla_status_t topk_ws(void *c, const spmla_topk_per_row_args_t *a, size_t *b) { return zero_ws(c, a, b); }

spmla_status_t check_idx_shape(int Hi, int Di) {
  if (Hi < 1 || Hi > kern::kIdxMaxHi) return fail(SPMLA_STATUS_UNSUPPORTED, "indexer Hi must be 1..64");
  if (Di != 64 && Di != 128) return fail(SPMLA_STATUS_UNSUPPORTED, "indexer Di must be 64 or 128");
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t indexer_logits(void *ctx, const spmla_indexer_logits_args_t *a, void *, size_t, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  kern::IndexerParams p;
  memset(&p, 0, sizeof p);
  p.q = ptr<const uint8_t>(a->q);
  p.q_stride_row = st(a->q, 0);
  p.q_stride_h = st(a->q, 1);
  p.rows = (int)a->q->shape[0];
  p.Hi = (int)a->q->shape[1];
  p.Di = (int)a->q->shape[2];
  if (spmla_status_t s = check_idx_shape(p.Hi, p.Di)) return s;
  p.flavor = a->q->dtype == SPMLA_DTYPE_FP8_E4M3FNUZ ? 2 : 1;
  p.weights = ptr<const float>(a->weights);
  p.w_stride_row = st(a->weights, 0);
  p.w_stride_h = st(a->weights, 1);
  p.logits = ptr<float>(a->logits);
  p.logits_stride = st(a->logits, 0);
  p.C = (int)a->logits->shape[1];
  p.k = ptr<const uint8_t>(a->k);
  p.k_stride = st(a->k, 0);
  p.S = a->k->shape[0];
  p.k_scale = ptr<const float>(a->k_scale);
  p.ks_stride = st(a->k_scale, 0);
  p.k_start = ptr<const int32_t>(a->k_start);
  p.ks_start_stride = st(a->k_start, 0);
  p.k_end = ptr<const int32_t>(a->k_end);
  p.ks_end_stride = st(a->k_end, 0);
  p.paged = 0;
  p.next_n = 1;
  SPMLA_CU(launch_indexer(p, static_cast<Context *>(ctx)->sm_count, as_stream(stream)), "indexer_logits launch");
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t indexer_logits_paged(void *ctx, const spmla_indexer_logits_paged_args_t *a, void *, size_t, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  kern::IndexerParams p;
  memset(&p, 0, sizeof p);
  const int B = (int)a->q->shape[0], N = (int)a->q->shape[1];
  p.q = ptr<const uint8_t>(a->q);
  p.q_stride_row = st(a->q, 1);  // rows b*N+i: q[b][i] = base + b*s0 + i*s1
  p.q_stride_h = st(a->q, 2);
  p.rows = B * N;
  p.Hi = (int)a->q->shape[2];
  p.Di = (int)a->q->shape[3];
  if (spmla_status_t s = check_idx_shape(p.Hi, p.Di)) return s;
  if (B > 0 && N > 0 && st(a->q, 0) != (int64_t)N * st(a->q, 1))
    return fail(SPMLA_STATUS_UNSUPPORTED, "paged indexer q must have q.strides[0] == N * q.strides[1]");
  p.cache = cache_desc(*a->cache);
  p.flavor = p.cache.flavor;
  p.weights = ptr<const float>(a->weights);
  p.w_stride_row = st(a->weights, 0);
  p.w_stride_h = st(a->weights, 1);
  p.logits = ptr<float>(a->logits);
  p.logits_stride = st(a->logits, 0);
  p.C = (int)a->logits->shape[1];
  p.paged = 1;
  p.next_n = N;
  p.block_table = ptr<const int32_t>(a->block_table);
  p.bt_stride = st(a->block_table, 0);
  p.max_pages = (int)a->block_table->shape[1];
  p.context_lens = ptr<const int32_t>(a->context_lens);
  p.cl_stride = st(a->context_lens, 0);
  SPMLA_CU(launch_indexer(p, static_cast<Context *>(ctx)->sm_count, as_stream(stream)), "indexer_logits_paged launch");
  return SPMLA_STATUS_SUCCESS;
}

// ------------------------------------------------------------------ topk, store, gather
spmla_status_t topk_per_row(void *ctx, const spmla_topk_per_row_args_t *a, void *, size_t, void *stream) {
  const Context *c = static_cast<Context *>(ctx);
  if (spmla_status_t s = use_device(c)) return s;
  kern::TopkParams p;
  memset(&p, 0, sizeof p);
  p.logits = ptr<const float>(a->logits);
  p.row_stride = st(a->logits, 0);
  p.R = (int)a->logits->shape[0];
  p.C = (int)a->logits->shape[1];
  p.k = (int)a->indices->shape[1];
  p.row_starts = ptr<const int32_t>(a->row_starts);
  p.rs_stride = st(a->row_starts, 0);
  p.row_ends = ptr<const int32_t>(a->row_ends);
  p.re_stride = st(a->row_ends, 0);
  p.context_lens = ptr<const int32_t>(a->context_lens);
  p.cl_stride = st(a->context_lens, 0);
  p.next_n = a->next_n >= 1 ? a->next_n : 1;
  p.out = ptr<int32_t>(a->indices);
  p.out_stride = st(a->indices, 0);
  SPMLA_CU(launch_topk(p, c->topk, as_stream(stream)), "topk_per_row launch");
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t kv_cache_store(void *ctx, const spmla_kv_cache_store_args_t *a, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  kern::StoreParams p;
  memset(&p, 0, sizeof p);
  p.kv = ptr<const uint16_t>(a->kv);
  p.kv_stride = st(a->kv, 0);
  p.slots = a->slot_mapping->data;
  p.slots_is64 = a->slot_mapping->dtype == SPMLA_DTYPE_INT64;
  p.slots_stride = st(a->slot_mapping, 0);
  p.N = (int)a->kv->shape[0];
  p.cache = cache_desc(*a->cache);
  const int vec = reinterpret_cast<uintptr_t>(p.kv) % 16 == 0 && p.kv_stride % 8 == 0;
  SPMLA_CU(launch_kv_store(p, vec, as_stream(stream)), "kv_cache_store launch");
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t kv_cache_gather(void *ctx, const spmla_kv_cache_gather_args_t *a, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  kern::GatherParams p;
  memset(&p, 0, sizeof p);
  p.cache = cache_desc(*a->cache);
  p.slots = ptr<const int32_t>(a->slots);
  p.slots_stride = st(a->slots, 0);
  p.N = (int)a->slots->shape[0];
  p.out = ptr<uint16_t>(a->out);
  p.out_stride = st(a->out, 0);
  const int vec = reinterpret_cast<uintptr_t>(p.out) % 16 == 0 && p.out_stride % 8 == 0;
  SPMLA_CU(launch_kv_gather(p, vec, as_stream(stream)), "kv_cache_gather launch");
  return SPMLA_STATUS_SUCCESS;
}

spmla_backend_table_t make_table() {
  spmla_backend_table_t t;
  memset(&t, 0, sizeof t);
  t.struct_size = sizeof t;
  t.abi_version = SPMLA_BACKEND_ABI_VERSION;
  t.name = "cuda";
  t.init = init;
  t.device_info = device_info;
  t.context_create = context_create;
  t.context_destroy = context_destroy;
  t.malloc_fn = malloc_fn;
  t.free_fn = free_fn;
  t.memcpy_fn = memcpy_fn;
  t.memset_fn = memset_fn;
  t.stream_synchronize = stream_synchronize;
  t.event_create = event_create;
  t.event_destroy = event_destroy;
  t.event_record = event_record;
  t.event_elapsed_ms = event_elapsed_ms;
  t.sparse_attention_workspace = attn_workspace;
  t.sparse_attention_plan = attn_plan;
  t.sparse_attention_run = attn_run;
  t.indices_to_slots = indices_to_slots;
  t.window_indices = window_indices;
  t.indexer_logits_workspace = idx_ws;
  t.indexer_logits = indexer_logits;
  t.indexer_logits_paged_workspace = idxp_ws;
  t.indexer_logits_paged = indexer_logits_paged;
  t.topk_per_row_workspace = topk_ws;
  t.topk_per_row = topk_per_row;
  t.kv_cache_store = kv_cache_store;
  t.kv_cache_gather = kv_cache_gather;
  return t;
}

const spmla_backend_table_t g_table = make_table();

}  // namespace
}  // namespace cuda
}  // namespace spmla

extern "C" __attribute__((visibility("default"))) const spmla_backend_table_t *spmla_backend_entry(uint32_t host_abi) {
  if ((host_abi >> 16) != SPMLA_BACKEND_ABI_MAJOR) return nullptr;
  return &spmla::cuda::g_table;
}
