// plugin.cpp — the HIP backend plugin: runtime glue (devices, contexts, memory, events, errors)
// and host-side dispatch of every operation to the kernels. Exports only spmla_backend_entry.
//
// Ordinary C++ (compiled by the host compiler): the HIP runtime is reached only through the
// table of hip_api.h, which is filled by dlopen'ing libamdhip64 at init (AMD build) or from the
// CUDA runtime (HIP-on-NVIDIA build). Without a runtime or a device, init says why and the
// backend is "unavailable"; nothing here crashes for lack of ROCm.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "../common/params.h"
#include "hip_api.h"
#include "kv_layout.h"
#include "launchers.h"
#include "spmla_backend.h"

namespace spmla {
namespace hip {
namespace {

const spmla_backend_host_t *g_host = nullptr;
const Api *g_api = nullptr;

spmla_status_t fail(spmla_status_t st, const std::string &msg) {
  if (g_host && g_host->set_error) g_host->set_error(("hip backend: " + msg).c_str());
  return st;
}
spmla_status_t rt_fail(Err e, const char *what) {
  const spmla_status_t st = e == kErrOutOfMemory ? SPMLA_STATUS_OUT_OF_MEMORY : SPMLA_STATUS_DEVICE_ERROR;
  const char *n = g_api ? g_api->GetErrorName(e) : nullptr;
  const char *s = g_api ? g_api->GetErrorString(e) : nullptr;
  return fail(st, std::string(what) + ": " + (n ? n : "error " + std::to_string(e)) + " (" + (s ? s : "?") + ")");
}
#define SPMLA_RT(call, what)                     \
  do {                                           \
    const Err _e = (call);                       \
    if (_e != kSuccess) return rt_fail(_e, what); \
  } while (0)

struct Context {
  int device = 0;
  int cu_count = 1;
  int warp_size = 64;
  size_t lds_per_block = 0;
  char arch[32] = {0};
  AttnKernel attn = AttnKernel::kPortable;
};

// MFMA kernels exist in the code objects of gfx90a, gfx942 and gfx950 (wave64 CDNA).
bool arch_has_mfma(const char *a) {
  return !strncmp(a, "gfx90a", 6) || !strncmp(a, "gfx940", 6) || !strncmp(a, "gfx941", 6) ||
         !strncmp(a, "gfx942", 6) || !strncmp(a, "gfx950", 6);
}

spmla_status_t use_device(const Context *c) {
  int cur = -1;
  if (g_api->GetDevice(&cur) != kSuccess || cur != c->device) SPMLA_RT(g_api->SetDevice(c->device), "hipSetDevice");
  return SPMLA_STATUS_SUCCESS;
}

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

// FP8 caches carry their flavor; the kernels convert E4M3FN and E4M3FNUZ (hardware where the
// device has the instruction, exact software otherwise). Anything else is refused here, at
// plan time, instead of being read with the wrong bias.
spmla_status_t check_flavor(const spmla_kv_cache_t *c, const char *which) {
  if (!c || c->layout == SPMLA_KV_LAYOUT_BF16) return SPMLA_STATUS_SUCCESS;
  if (c->fp8_flavor == SPMLA_FP8_E4M3FN || c->fp8_flavor == SPMLA_FP8_E4M3FNUZ) return SPMLA_STATUS_SUCCESS;
  return fail(SPMLA_STATUS_UNSUPPORTED, std::string(which) + ": FP8 cache layout needs fp8_flavor E4M3FN or E4M3FNUZ, got " +
                                            std::to_string((int)c->fp8_flavor));
}

// ------------------------------------------------------------------ runtime glue
spmla_status_t init(const spmla_backend_host_t *host, int32_t *device_count, char *reason, size_t reason_size) {
  g_host = host;
  *device_count = 0;
  auto say = [&](const std::string &s) {
    if (reason && reason_size) snprintf(reason, reason_size, "%s", s.c_str());
  };
  std::string why;
  g_api = api_load(&why);
  if (!g_api) {
    say(why);
    return SPMLA_STATUS_BACKEND_UNAVAILABLE;
  }
  int n = 0;
  const Err e = g_api->GetDeviceCount(&n);
  if (e != kSuccess || n == 0) {
    const char *en = e != kSuccess ? g_api->GetErrorName(e) : nullptr;
    say(std::string("no ") + (g_api->vendor) + " device (" + g_api->library + (en ? std::string(": ") + en : "") + ")");
    return SPMLA_STATUS_BACKEND_UNAVAILABLE;
  }
  *device_count = n;
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t device_info(int32_t device, spmla_device_info_t *info) {
  char name[256] = {0};
  SPMLA_RT(g_api->DeviceGetName(name, (int)sizeof name, device), "hipDeviceGetName");
  snprintf(info->name, sizeof info->name, "%s", name);
  SPMLA_RT(g_api->DeviceArch(info->arch, sizeof info->arch, device), "hipGetDeviceProperties");
  size_t mem = 0;
  SPMLA_RT(g_api->DeviceTotalMem(&mem, device), "hipDeviceTotalMem");
  info->total_memory_bytes = (int64_t)mem;
  int v = 0;
  SPMLA_RT(g_api->DeviceGetAttribute(&v, Attr::kMultiprocessorCount, device), "hipDeviceGetAttribute");
  info->multiprocessor_count = v;
  SPMLA_RT(g_api->DeviceGetAttribute(&v, Attr::kWarpSize, device), "hipDeviceGetAttribute");
  info->warp_size = v;
  const std::string a = info->arch;
  info->fp8_e4m3fnuz_native = (a.rfind("gfx940", 0) == 0 || a.rfind("gfx941", 0) == 0 || a.rfind("gfx942", 0) == 0) ? 1 : 0;
  info->fp8_e4m3fn_native = a.rfind("gfx950", 0) == 0 || a.rfind("gfx12", 0) == 0 ? 1 : 0;
  if (a.rfind("sm_", 0) == 0) info->fp8_e4m3fn_native = std::atoi(a.c_str() + 3) >= 89 ? 1 : 0;
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t context_create(int32_t device, void **out) {
  Context *c = new (std::nothrow) Context;
  if (!c) return fail(SPMLA_STATUS_OUT_OF_MEMORY, "context allocation failed");
  c->device = device;
  Err e = g_api->SetDevice(device);
  if (e == kSuccess) e = g_api->DeviceGetAttribute(&c->cu_count, Attr::kMultiprocessorCount, device);
  if (e == kSuccess) e = g_api->DeviceGetAttribute(&c->warp_size, Attr::kWarpSize, device);
  int lds = 0;
  if (e == kSuccess) e = g_api->DeviceGetAttribute(&lds, Attr::kSharedPerBlockOptin, device);
  c->lds_per_block = lds > 0 ? (size_t)lds : 0;
  if (e == kSuccess) e = g_api->DeviceArch(c->arch, sizeof c->arch, device);
  c->attn = arch_has_mfma(c->arch) && c->warp_size == 64 ? AttnKernel::kMfma : AttnKernel::kPortable;
  // Kernel attributes are set once here, never while a stream may be capturing.
  if (e == kSuccess) e = kernels_prepare(c->lds_per_block);
  if (e != kSuccess) {
    delete c;
    return rt_fail(e, "context setup");
  }
  if (c->cu_count < 1) c->cu_count = 1;
  *out = c;
  return SPMLA_STATUS_SUCCESS;
}

void context_destroy(void *ctx) { delete static_cast<Context *>(ctx); }

spmla_status_t malloc_fn(void *ctx, size_t bytes, void **p) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  *p = nullptr;
  if (bytes == 0) return SPMLA_STATUS_SUCCESS;
  SPMLA_RT(g_api->Malloc(p, bytes), "hipMalloc");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t free_fn(void *ctx, void *p) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  if (p) SPMLA_RT(g_api->Free(p), "hipFree");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t memcpy_fn(void *ctx, void *dst, const void *src, size_t bytes, spmla_memcpy_kind_t kind, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  if (bytes == 0) return SPMLA_STATUS_SUCCESS;
  const int k = kind == SPMLA_MEMCPY_HOST_TO_DEVICE ? 1 : kind == SPMLA_MEMCPY_DEVICE_TO_HOST ? 2 : 3;
  SPMLA_RT(g_api->MemcpyAsync(dst, src, bytes, k, stream), "hipMemcpyAsync");
  if (k == 2) SPMLA_RT(g_api->StreamSynchronize(stream), "hipStreamSynchronize");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t memset_fn(void *ctx, void *dst, int value, size_t bytes, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  if (bytes == 0) return SPMLA_STATUS_SUCCESS;
  SPMLA_RT(g_api->MemsetAsync(dst, value, bytes, stream), "hipMemsetAsync");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t stream_synchronize(void *ctx, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  SPMLA_RT(g_api->StreamSynchronize(stream), "hipStreamSynchronize");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t event_create(void *ctx, void **ev) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  SPMLA_RT(g_api->EventCreate(ev), "hipEventCreate");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t event_destroy(void *, void *ev) {
  if (ev) SPMLA_RT(g_api->EventDestroy(ev), "hipEventDestroy");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t event_record(void *, void *ev, void *stream) {
  SPMLA_RT(g_api->EventRecord(ev, stream), "hipEventRecord");
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t event_elapsed_ms(void *, void *a, void *b, float *ms) {
  SPMLA_RT(g_api->EventSynchronize(b), "hipEventSynchronize");
  SPMLA_RT(g_api->EventElapsedTime(ms, a, b), "hipEventElapsedTime");
  return SPMLA_STATUS_SUCCESS;
}

// ------------------------------------------------------------------ sparse attention
constexpr size_t kHeaderBytes = 256;
inline size_t align256(size_t x) { return (x + 255) / 256 * 256; }

struct AttnShape {
  int T, H, D, Ktot, bm, splits;
};

// Split-K only when the (token, head-block) grid cannot fill the GPU; every split keeps at least
// two tiles of the list. A function of the shapes and the device alone, so plan and run agree.
AttnShape attn_shape(const Context *c, const spmla_sparse_attention_args_t *a) {
  AttnShape s;
  s.T = (int)a->q->shape[0];
  s.H = (int)a->q->shape[1];
  s.D = (int)a->q->shape[2];
  const bool extra = a->extra_kv && a->extra_indices;
  s.Ktot = (int)a->indices->shape[1] + (extra ? (int)a->extra_indices->shape[1] : 0);
  s.bm = attention_heads_per_cta(c->attn);
  const long base = (long)s.T * ((s.H + s.bm - 1) / s.bm);
  int splits = 1;
  if (base > 0 && base < c->cu_count) {
    splits = (int)((c->cu_count + base - 1) / base);
    const int max_by_k = std::max(1, s.Ktot / (2 * kern::kAttnBN));
    splits = std::min(std::min(splits, max_by_k), 64);
  }
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

spmla_status_t attn_checks(const Context *c, const spmla_sparse_attention_args_t *a, const AttnShape &s) {
  if (spmla_status_t e = check_flavor(a->kv, "kv")) return e;
  if (a->extra_kv && a->extra_indices)
    if (spmla_status_t e = check_flavor(a->extra_kv, "extra_kv")) return e;
  if (s.D != 512 && s.D != 576) return fail(SPMLA_STATUS_UNSUPPORTED, "D_qk must be 512 or 576");
  const size_t need = attention_smem_bytes(c->attn, s.D);
  if (c->lds_per_block < need)
    return fail(SPMLA_STATUS_UNSUPPORTED, "the device's shared memory per block (" + std::to_string(c->lds_per_block) +
                                              " B) is below the attention kernel's " + std::to_string(need) + " B");
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t attn_plan(void *ctx, const spmla_sparse_attention_args_t *a, void *ws, size_t ws_bytes, void *stream) {
  Context *c = static_cast<Context *>(ctx);
  if (spmla_status_t s = use_device(c)) return s;
  const AttnShape s = attn_shape(c, a);
  if (spmla_status_t e = attn_checks(c, a, s)) return e;
  if (ws_bytes < attn_ws_bytes(s)) return fail(SPMLA_STATUS_WORKSPACE_TOO_SMALL, "workspace smaller than the query");
  if (s.T == 0) return SPMLA_STATUS_SUCCESS;
  SPMLA_RT(launch_attention_plan(ws, (unsigned)s.splits, (unsigned)s.T, (unsigned)s.H, stream),
           "sparse_attention plan launch");
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t attn_run(void *ctx, const spmla_sparse_attention_args_t *a, void *ws, size_t ws_bytes, void *stream) {
  Context *c = static_cast<Context *>(ctx);
  if (spmla_status_t s = use_device(c)) return s;
  const AttnShape s = attn_shape(c, a);
  if (spmla_status_t e = attn_checks(c, a, s)) return e;
  if (ws_bytes < attn_ws_bytes(s)) return fail(SPMLA_STATUS_WORKSPACE_TOO_SMALL, "workspace smaller than the query");
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
  // 8-byte vector loads of Q rows in the MFMA kernel
  const uintptr_t qa = reinterpret_cast<uintptr_t>(p.q);
  const int qvec = (qa % 8 == 0) && (p.q_stride_t % 4 == 0) && (p.q_stride_h % 4 == 0);
  const Dim3H grid{(unsigned)s.T, (unsigned)((s.H + s.bm - 1) / s.bm), (unsigned)s.splits};
  SPMLA_RT(s.D == 576 ? launch_attention_d576(c->attn, p, qvec, grid, stream)
                      : launch_attention_d512(c->attn, p, qvec, grid, stream),
           "sparse_attention launch");
  if (s.splits > 1) SPMLA_RT(launch_attention_combine(p, stream), "sparse_attention combine launch");
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
  SPMLA_RT(launch_indices_to_slots(p, stream), "indices_to_slots launch");
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
  SPMLA_RT(launch_window_indices(p, stream), "window_indices launch");
  return SPMLA_STATUS_SUCCESS;
}

// ------------------------------------------------------------------ indexer
spmla_status_t idx_ws(void *, const spmla_indexer_logits_args_t *, size_t *b) { return *b = 0, SPMLA_STATUS_SUCCESS; }
spmla_status_t idxp_ws(void *, const spmla_indexer_logits_paged_args_t *, size_t *b) { return *b = 0, SPMLA_STATUS_SUCCESS; }
spmla_status_t topk_ws(void *, const spmla_topk_per_row_args_t *, size_t *b) { return *b = 0, SPMLA_STATUS_SUCCESS; }

spmla_status_t check_idx(const Context *c, int Hi, int Di) {
  if (Hi < 1 || Hi > kern::kIdxMaxHi) return fail(SPMLA_STATUS_UNSUPPORTED, "indexer Hi must be 1..64");
  if (Di != 64 && Di != 128) return fail(SPMLA_STATUS_UNSUPPORTED, "indexer Di must be 64 or 128");
  if (c->lds_per_block < indexer_smem_bytes())
    return fail(SPMLA_STATUS_UNSUPPORTED, "the device's shared memory per block is below the indexer kernel's " +
                                              std::to_string(indexer_smem_bytes()) + " B");
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t indexer_logits(void *ctx, const spmla_indexer_logits_args_t *a, void *, size_t, void *stream) {
  Context *c = static_cast<Context *>(ctx);
  if (spmla_status_t s = use_device(c)) return s;
  kern::IndexerParams p;
  memset(&p, 0, sizeof p);
  p.q = ptr<const uint8_t>(a->q);
  p.q_stride_row = st(a->q, 0);
  p.q_stride_h = st(a->q, 1);
  p.rows = (int)a->q->shape[0];
  p.Hi = (int)a->q->shape[1];
  p.Di = (int)a->q->shape[2];
  if (spmla_status_t s = check_idx(c, p.Hi, p.Di)) return s;
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
  const int groups = (p.rows + kern::kIdxRows - 1) / kern::kIdxRows;
  SPMLA_RT(launch_indexer(p, groups, c->warp_size, stream), "indexer_logits launch");
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t indexer_logits_paged(void *ctx, const spmla_indexer_logits_paged_args_t *a, void *, size_t, void *stream) {
  Context *c = static_cast<Context *>(ctx);
  if (spmla_status_t s = use_device(c)) return s;
  kern::IndexerParams p;
  memset(&p, 0, sizeof p);
  const int B = (int)a->q->shape[0], N = (int)a->q->shape[1];
  p.q = ptr<const uint8_t>(a->q);
  p.q_stride_row = st(a->q, 1);  // row b*N+i: q[b][i] = base + b*s0 + i*s1
  p.q_stride_h = st(a->q, 2);
  p.rows = B * N;
  p.Hi = (int)a->q->shape[2];
  p.Di = (int)a->q->shape[3];
  if (spmla_status_t s = check_idx(c, p.Hi, p.Di)) return s;
  if (spmla_status_t s = check_flavor(a->cache, "cache")) return s;
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
  const int groups = B * ((N + kern::kIdxRows - 1) / kern::kIdxRows);
  SPMLA_RT(launch_indexer(p, groups, c->warp_size, stream), "indexer_logits_paged launch");
  return SPMLA_STATUS_SUCCESS;
}

// ------------------------------------------------------------------ topk, store, gather
spmla_status_t topk_per_row(void *ctx, const spmla_topk_per_row_args_t *a, void *, size_t, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
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
  SPMLA_RT(launch_topk(p, stream), "topk_per_row launch");
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t kv_cache_store(void *ctx, const spmla_kv_cache_store_args_t *a, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  if (spmla_status_t s = check_flavor(a->cache, "cache")) return s;
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
  SPMLA_RT(launch_kv_store(p, vec, stream), "kv_cache_store launch");
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t kv_cache_gather(void *ctx, const spmla_kv_cache_gather_args_t *a, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  if (spmla_status_t s = check_flavor(a->cache, "cache")) return s;
  kern::GatherParams p;
  memset(&p, 0, sizeof p);
  p.cache = cache_desc(*a->cache);
  p.slots = ptr<const int32_t>(a->slots);
  p.slots_stride = st(a->slots, 0);
  p.N = (int)a->slots->shape[0];
  p.out = ptr<uint16_t>(a->out);
  p.out_stride = st(a->out, 0);
  const int vec = reinterpret_cast<uintptr_t>(p.out) % 16 == 0 && p.out_stride % 8 == 0;
  SPMLA_RT(launch_kv_gather(p, vec, stream), "kv_cache_gather launch");
  return SPMLA_STATUS_SUCCESS;
}

spmla_backend_table_t make_table() {
  spmla_backend_table_t t;
  memset(&t, 0, sizeof t);
  t.struct_size = sizeof t;
  t.abi_version = SPMLA_BACKEND_ABI_VERSION;
  t.name = "hip";
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
}  // namespace hip
}  // namespace spmla

extern "C" __attribute__((visibility("default"))) const spmla_backend_table_t *spmla_backend_entry(uint32_t host_abi) {
  if ((host_abi >> 16) != SPMLA_BACKEND_ABI_MAJOR) return nullptr;
  return &spmla::hip::g_table;
}
