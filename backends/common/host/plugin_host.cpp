// plugin_host.cpp — the host side of every GPU plugin, written once: runtime glue (devices,
// contexts, memory, events, errors) over the runtime table of gpu_runtime.h, argument → kernel
// parameter marshalling, the attention schedule and workspace layout, variant choice, and the
// backend function table. Compiled into each plugin with SPMLA_BACKEND_NAME ("cuda", "hip");
// the vendor supplies its runtime table and its kernels (gpu_kernels.h). Exports only
// spmla_backend_entry (see spmla_backend.h).
//
// Environment (testing and tuning; see README): SPMLA_LOG=1 prints each operation's kernel
// choice to stderr; SPMLA_ATTENTION_VARIANT=<name> puts that attention variant first wherever it
// can run the call; SPMLA_ATTENTION_SPLITS=<n> forces the split-K count.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "common/params.h"
#include "gpu_kernels.h"
#include "gpu_runtime.h"
#include "kv_layout.h"
#include "spmla_backend.h"

#ifndef SPMLA_BACKEND_NAME
#error "SPMLA_BACKEND_NAME (\"cuda\" or \"hip\") must be defined by the plugin's build"
#endif

namespace spmla {
namespace gpu {
namespace {

constexpr const char *kName = SPMLA_BACKEND_NAME;
const spmla_backend_host_t *g_host = nullptr;
const Runtime *g_rt = nullptr;

spmla_status_t fail(spmla_status_t st, const std::string &msg) {
  if (g_host && g_host->set_error) g_host->set_error((std::string(kName) + " backend: " + msg).c_str());
  return st;
}
// "cudaMalloc" / "hipMalloc": the vendor's name of a runtime call, for messages.
std::string rt_name(const char *call) { return std::string(kName) + call; }
spmla_status_t rt_fail(Err e, const std::string &what) {
  const spmla_status_t st = e == kErrOutOfMemory ? SPMLA_STATUS_OUT_OF_MEMORY : SPMLA_STATUS_DEVICE_ERROR;
  const char *n = g_rt ? g_rt->GetErrorName(e) : nullptr;
  const char *s = g_rt ? g_rt->GetErrorString(e) : nullptr;
  return fail(st, what + ": " + (n ? n : "error " + std::to_string(e)) + " (" + (s ? s : "?") + ")");
}
#define SPMLA_RT(call, what)                      \
  do {                                            \
    const Err _e = (call);                        \
    if (_e != kSuccess) return rt_fail(_e, what); \
  } while (0)

bool env_flag(const char *name) {
  const char *v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}

struct Context {
  Device dev;
  VendorState *vs = nullptr;
  int forced_splits = 0;          // SPMLA_ATTENTION_SPLITS: 0 = chosen by the schedule
  std::string forced_attn;        // SPMLA_ATTENTION_VARIANT: tried first where it can run
  bool log = false;               // SPMLA_LOG
  bool batch_invariant = false;   // SPMLA_OPTION_BATCH_INVARIANT (context_set_option)
};

spmla_status_t use_device(const Context *c) {
  int cur = -1;
  if (g_rt->GetDevice(&cur) != kSuccess || cur != c->dev.id) SPMLA_RT(g_rt->SetDevice(c->dev.id), rt_name("SetDevice"));
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
  d.blocked = g.arrangement == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED;
  const int64_t row = d.layout == kern::kBF16           ? 2 * (int64_t)d.dim
                      : d.layout == kern::kFP8PerTensor ? (int64_t)d.dim
                      : d.layout == kern::kV32          ? (int64_t)KvV32::kDataRowBytes
                                                        : 0;
  if (row > 0 && row <= INT32_MAX && d.page_stride == row * d.block_size) d.flat_row = (int32_t)row;
  d.slot_limit = (uint32_t)std::min<int64_t>(d.num_slots(), int64_t(1) << 31);
  return d;
}

// FP8 caches carry their flavor; the kernels convert E4M3FN and E4M3FNUZ. Anything else is
// refused here instead of being read with the wrong bias.
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
  g_rt = runtime_load(&why);
  if (!g_rt) {
    say(why);
    return SPMLA_STATUS_BACKEND_UNAVAILABLE;
  }
  int n = 0;
  const Err e = g_rt->GetDeviceCount(&n);
  if (e != kSuccess || n == 0) {
    const char *en = e != kSuccess ? g_rt->GetErrorName(e) : nullptr;
    say(std::string("no ") + g_rt->vendor + " device (" + g_rt->library + (en ? std::string(": ") + en : "") + ")");
    return SPMLA_STATUS_BACKEND_UNAVAILABLE;
  }
  *device_count = n;
  return SPMLA_STATUS_SUCCESS;
}

bool starts_with(const char *s, const char *prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

spmla_status_t device_info(int32_t device, spmla_device_info_t *info) {
  char name[256] = {0};
  SPMLA_RT(g_rt->DeviceGetName(name, (int)sizeof name, device), rt_name("DeviceGetName"));
  snprintf(info->name, sizeof info->name, "%s", name);
  SPMLA_RT(g_rt->DeviceArch(info->arch, sizeof info->arch, device), rt_name("GetDeviceProperties"));
  size_t mem = 0;
  SPMLA_RT(g_rt->DeviceTotalMem(&mem, device), rt_name("DeviceTotalMem"));
  info->total_memory_bytes = (int64_t)mem;
  int v = 0;
  SPMLA_RT(g_rt->DeviceGetAttribute(&v, Attr::kMultiprocessorCount, device), rt_name("DeviceGetAttribute"));
  info->multiprocessor_count = v;
  SPMLA_RT(g_rt->DeviceGetAttribute(&v, Attr::kWarpSize, device), rt_name("DeviceGetAttribute"));
  info->warp_size = v;
  // Hardware FP8 conversion: E4M3FNUZ on gfx940-942, E4M3FN on gfx950, RDNA4 and sm_89+.
  const char *a = info->arch;
  info->fp8_e4m3fnuz_native = starts_with(a, "gfx940") || starts_with(a, "gfx941") || starts_with(a, "gfx942");
  info->fp8_e4m3fn_native = starts_with(a, "gfx950") || starts_with(a, "gfx12") ||
                            (starts_with(a, "sm_") && std::atoi(a + 3) >= 89);
  return SPMLA_STATUS_SUCCESS;
}

void log_variants(const Context *c);

spmla_status_t context_create(int32_t device, void **out) {
  Context *c = new (std::nothrow) Context;
  if (!c) return fail(SPMLA_STATUS_OUT_OF_MEMORY, "context allocation failed");
  Device &d = c->dev;
  d.id = device;
  int optin = 0;
  Err e = g_rt->SetDevice(device);
  if (e == kSuccess) e = g_rt->DeviceGetAttribute(&d.sm_count, Attr::kMultiprocessorCount, device);
  if (e == kSuccess) e = g_rt->DeviceGetAttribute(&d.warp_size, Attr::kWarpSize, device);
  if (e == kSuccess) e = g_rt->DeviceGetAttribute(&optin, Attr::kSharedPerBlockOptin, device);
  if (e == kSuccess) e = g_rt->DeviceArch(d.arch, sizeof d.arch, device);
  d.smem_optin = optin > 0 ? (size_t)optin : 0;
  d.sm_count = std::max(1, d.sm_count);
  d.cc = starts_with(d.arch, "sm_") ? std::atoi(d.arch + 3) : 0;
  // Kernel attributes are set once here, never while a stream may be capturing.
  if (e == kSuccess) e = vendor_prepare(d, &c->vs);
  if (e != kSuccess) {
    vendor_release(c->vs);
    delete c;
    return rt_fail(e, "context setup");
  }
  if (const char *splits = std::getenv("SPMLA_ATTENTION_SPLITS")) c->forced_splits = std::max(0, std::min(64, std::atoi(splits)));
  if (const char *v = std::getenv("SPMLA_ATTENTION_VARIANT")) c->forced_attn = v;
  c->log = env_flag("SPMLA_LOG");
  if (c->log) log_variants(c);
  *out = c;
  return SPMLA_STATUS_SUCCESS;
}

// Handle options (plugin ABI 1.2); the core has checked the option and its range.
spmla_status_t context_set_option(void *ctx, int32_t option, int64_t value) {
  Context *c = static_cast<Context *>(ctx);
  if (option == SPMLA_OPTION_BATCH_INVARIANT) {
    c->batch_invariant = value != 0;
    return SPMLA_STATUS_SUCCESS;
  }
  return fail(SPMLA_STATUS_UNSUPPORTED, "unknown handle option " + std::to_string(option));
}

void context_destroy(void *ctx) {
  Context *c = static_cast<Context *>(ctx);
  if (c) vendor_release(c->vs);
  delete c;
}

spmla_status_t malloc_fn(void *ctx, size_t bytes, void **p) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  *p = nullptr;
  if (bytes == 0) return SPMLA_STATUS_SUCCESS;
  SPMLA_RT(g_rt->Malloc(p, bytes), rt_name("Malloc"));
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t free_fn(void *ctx, void *p) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  if (p) SPMLA_RT(g_rt->Free(p), rt_name("Free"));
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t memcpy_fn(void *ctx, void *dst, const void *src, size_t bytes, spmla_memcpy_kind_t kind, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  if (bytes == 0) return SPMLA_STATUS_SUCCESS;
  const int k = kind == SPMLA_MEMCPY_HOST_TO_DEVICE ? 1 : kind == SPMLA_MEMCPY_DEVICE_TO_HOST ? 2 : 3;
  SPMLA_RT(g_rt->MemcpyAsync(dst, src, bytes, k, stream), rt_name("MemcpyAsync"));
  if (k == 2) SPMLA_RT(g_rt->StreamSynchronize(stream), rt_name("StreamSynchronize"));
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t memset_fn(void *ctx, void *dst, int value, size_t bytes, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  if (bytes == 0) return SPMLA_STATUS_SUCCESS;
  SPMLA_RT(g_rt->MemsetAsync(dst, value, bytes, stream), rt_name("MemsetAsync"));
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t stream_synchronize(void *ctx, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  SPMLA_RT(g_rt->StreamSynchronize(stream), rt_name("StreamSynchronize"));
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t event_create(void *ctx, void **ev) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  SPMLA_RT(g_rt->EventCreate(ev), rt_name("EventCreate"));
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t event_destroy(void *, void *ev) {
  if (ev) SPMLA_RT(g_rt->EventDestroy(ev), rt_name("EventDestroy"));
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t event_record(void *, void *ev, void *stream) {
  SPMLA_RT(g_rt->EventRecord(ev, stream), rt_name("EventRecord"));
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t event_elapsed_ms(void *, void *a, void *b, float *ms) {
  SPMLA_RT(g_rt->EventSynchronize(b), rt_name("EventSynchronize"));
  SPMLA_RT(g_rt->EventElapsedTime(ms, a, b), rt_name("EventElapsedTime"));
  return SPMLA_STATUS_SUCCESS;
}

// ------------------------------------------------------------------ sparse attention: variants
// The variant that runs a call: the forced one where it can, else the first of the list that can.
// q_vec < 0: shapes only (the schedule); else whether Q allows the variants' vector loads.
// Batch invariance: the variants are asked about the shapes with T = 1, so that no predicate can
// make the choice (and so the kernel and its tile width) depend on the number of tokens.
const AttnVariant *pick_attention(const Context *c, const AttnShape &shape, int q_vec_ok_elems) {
  AttnShape s = shape;
  if (c->batch_invariant) s.T = 1;
  int n = 0;
  const AttnVariant *v = attention_variants(&n);
  auto runs = [&](const AttnVariant &a) {
    if (a.unsupported(c->dev, c->vs, s)) return false;
    if (a.require_q_vec && q_vec_ok_elems >= 0 && q_vec_ok_elems % a.q_vec_elems != 0) return false;
    return true;
  };
  if (!c->forced_attn.empty())
    for (int i = 0; i < n; ++i)
      if (c->forced_attn == v[i].name && runs(v[i])) return &v[i];
  // The first variant that runs and is preferred for the shape; if every one that runs declines,
  // the first that runs.
  for (int i = 0; i < n; ++i)
    if (runs(v[i]) && !(v[i].not_preferred && v[i].not_preferred(c->dev, s))) return &v[i];
  for (int i = 0; i < n; ++i)
    if (runs(v[i])) return &v[i];
  return nullptr;
}

// Why no variant runs a call (every reason), for the error message.
std::string no_variant_reason(const Context *c, const AttnShape &s) {
  int n = 0;
  const AttnVariant *v = attention_variants(&n);
  std::string r;
  for (int i = 0; i < n; ++i) {
    const char *why = v[i].unsupported(c->dev, c->vs, s);
    r += std::string(i ? "; " : "") + v[i].name + ": " + (why ? why : "needs aligned Q");
  }
  return r;
}

const char *layout_name(int l) {
  switch (l) {
    case kern::kBF16: return "BF16";
    case kern::kFP8PerTensor: return "FP8_PER_TENSOR";
    case kern::kV32: return "V32_FP8";
    case kern::kV4: return "V4_FP8";
    case kern::kIndexer: return "INDEXER_FP8";
    case kern::kV41FP8: return "V41_FP8";
    case kern::kV41FP4: return "V41_FP4";
    default: return "?";
  }
}

void log_variants(const Context *c) {
  const Device &d = c->dev;
  fprintf(stderr, "spmla[%s:%d] %s, %d SMs, warp %d, %zu B shared/block\n", kName, d.id, d.arch, d.sm_count,
          d.warp_size, d.smem_optin);
  int n = 0;
  const AttnVariant *v = attention_variants(&n);
  // One probe per head dim with BF16 keys: what the device allows before layouts narrow it.
  for (int D : {576, 512}) {
    const AttnShape s{1, 64, D, kern::kBF16, 0, 0, 0};
    for (int i = 0; i < n; ++i) {
      const char *why = v[i].unsupported(d, c->vs, s);
      fprintf(stderr, "spmla[%s:%d]   attention D %d variant %-8s %s%s\n", kName, d.id, D, v[i].name,
              why ? "unavailable: " : "available", why ? why : "");
    }
  }
  if (!c->forced_attn.empty()) fprintf(stderr, "spmla[%s:%d]   SPMLA_ATTENTION_VARIANT=%s\n", kName, d.id, c->forced_attn.c_str());
}

// ------------------------------------------------------------------ sparse attention: schedule
// The schedule is a function of the shapes and the device alone (no data is read), so workspace
// query, plan and run compute the same one; plan has nothing to leave on the device and launches
// nothing. Workspace: the split-K partials, none without a split.
inline size_t align256(size_t x) { return (x + 255) / 256 * 256; }

// Batch-invariant attention (SPMLA_OPTION_BATCH_INVARIANT): one split per this many entries of the
// index lists (K + K2), whatever T. DeepSeek's K 2048 and K 512/1024 + window 128 run unsplit (no
// workspace); SPMLA_ATTENTION_SPLITS forces another constant count.
constexpr int kBatchInvariantSplitKeys = 2048;

struct Schedule {
  AttnShape shape;
  int Ktot = 0;
  int splits = 1;
  const AttnVariant *variant = nullptr;  // the shape-only choice the split count is sized for
};

AttnShape attn_shape_of(const spmla_sparse_attention_args_t *a) {
  AttnShape s;
  s.T = (int)a->q->shape[0];
  s.H = (int)a->q->shape[1];
  s.D = (int)a->q->shape[2];
  s.layout0 = (int)a->kv->layout;
  s.flavor0 = (int)a->kv->fp8_flavor;
  const bool extra = a->extra_kv && a->extra_indices;
  s.layout1 = extra ? (int)a->extra_kv->layout : 0;
  s.flavor1 = extra ? (int)a->extra_kv->fp8_flavor : 0;
  return s;
}

spmla_status_t attn_schedule(const Context *c, const spmla_sparse_attention_args_t *a, Schedule *out) {
  Schedule s;
  s.shape = attn_shape_of(a);
  if (spmla_status_t e = check_flavor(a->kv, "kv")) return e;
  if (a->extra_kv && a->extra_indices)
    if (spmla_status_t e = check_flavor(a->extra_kv, "extra_kv")) return e;
  if (s.shape.D != 512 && s.shape.D != 576) return fail(SPMLA_STATUS_UNSUPPORTED, "D_qk must be 512 or 576");
  s.variant = pick_attention(c, s.shape, -1);
  if (!s.variant)
    return fail(SPMLA_STATUS_UNSUPPORTED, "no attention kernel runs this call on " + std::string(c->dev.arch) + " (" +
                                              no_variant_reason(c, s.shape) + ")");
  const bool extra = a->extra_kv && a->extra_indices;
  s.Ktot = (int)a->indices->shape[1] + (extra ? (int)a->extra_indices->shape[1] : 0);
  // Split-K only when the (token, head-block) grid cannot fill the GPU; every split keeps at
  // least two tiles of the list. The count is the smallest that reaches the best wave efficiency
  // (CTAs over whole waves of one CTA per SM), so a grid that fills one wave is not split in two.
  // Batch invariance: the count follows from the list widths alone (one split per
  // kBatchInvariantSplitKeys entries of K + K2), never from T; each token's split boundaries
  // then follow from that count and its own lengths (token_range), and the combine runs in split
  // order, so a token's bits do not depend on the other tokens of the call.
  const int bm = s.variant->heads_per_cta, sms = c->dev.sm_count;
  const long base = (long)s.shape.T * ((s.shape.H + bm - 1) / bm);
  if (c->batch_invariant) {
    s.splits = std::max(1, std::min(64, (s.Ktot + kBatchInvariantSplitKeys - 1) / kBatchInvariantSplitKeys));
  } else if (base > 0 && base < sms) {
    const int max_s = std::min(std::max(1, s.Ktot / (2 * kern::kAttnBN)), 64);
    double best = 0;
    for (int k = 1; k <= max_s; ++k) {
      const long ctas = base * k, waves = (ctas + sms - 1) / sms;
      const double eff = (double)ctas / ((double)waves * sms);
      if (eff > best + 0.02) {
        best = eff;
        s.splits = k;
      }
    }
  }
  // A forced count (tuning; a constant, so batch-invariant too) still leaves every split at least
  // one tile.
  if (c->forced_splits > 0)
    s.splits = std::max(1, std::min(c->forced_splits, (s.Ktot + kern::kAttnBN - 1) / kern::kAttnBN));
  *out = s;
  return SPMLA_STATUS_SUCCESS;
}

size_t attn_ws_bytes(const Schedule &s) {
  if (s.splits <= 1) return 0;
  const size_t rows = (size_t)s.splits * s.shape.T * s.shape.H;
  return align256(rows * kern::kDV * 4) + 2 * align256(rows * 4);
}

spmla_status_t attn_workspace(void *ctx, const spmla_sparse_attention_args_t *a, size_t *bytes) {
  Schedule s;
  if (spmla_status_t e = attn_schedule(static_cast<Context *>(ctx), a, &s)) return e;
  *bytes = attn_ws_bytes(s);
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t attn_plan(void *ctx, const spmla_sparse_attention_args_t *a, void *, size_t ws_bytes, void *) {
  Context *c = static_cast<Context *>(ctx);
  Schedule s;
  if (spmla_status_t e = attn_schedule(c, a, &s)) return e;
  if (ws_bytes < attn_ws_bytes(s)) return fail(SPMLA_STATUS_WORKSPACE_TOO_SMALL, "workspace smaller than the query");
  return SPMLA_STATUS_SUCCESS;
}

kern::AttnParams attn_params(const spmla_sparse_attention_args_t *a, const Schedule &s, void *ws) {
  kern::AttnParams p;
  memset(&p, 0, sizeof p);
  p.q = ptr<const uint16_t>(a->q);
  p.q_stride_t = st(a->q, 0);
  p.q_stride_h = st(a->q, 1);
  p.T = s.shape.T;
  p.H = s.shape.H;
  p.D = s.shape.D;
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
  p.scale = a->scale != 0.f ? a->scale : (float)(1.0 / std::sqrt((double)s.shape.D));
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
  if (s.splits > 1) {  // the workspace layout of attn_ws_bytes
    uint8_t *w = static_cast<uint8_t *>(ws);
    const size_t rows = (size_t)s.splits * s.shape.T * s.shape.H;
    p.part_o = reinterpret_cast<float *>(w);
    w += align256(rows * kern::kDV * 4);
    p.part_lse = reinterpret_cast<float *>(w);
    w += align256(rows * 4);
    p.part_max = reinterpret_cast<float *>(w);
  }
  return p;
}

// The largest element count (a power of two, at most 8) that Q's address and strides are aligned to.
int q_aligned_elems(const kern::AttnParams &p) {
  const uintptr_t qa = reinterpret_cast<uintptr_t>(p.q);
  int e = 8;
  while (e > 1 && ((qa % (2 * e)) != 0 || p.q_stride_t % e != 0 || p.q_stride_h % e != 0)) e /= 2;
  return e;
}

spmla_status_t attn_run(void *ctx, const spmla_sparse_attention_args_t *a, void *ws, size_t ws_bytes, void *stream) {
  Context *c = static_cast<Context *>(ctx);
  if (spmla_status_t s = use_device(c)) return s;
  Schedule s;
  if (spmla_status_t e = attn_schedule(c, a, &s)) return e;
  if (ws_bytes < attn_ws_bytes(s)) return fail(SPMLA_STATUS_WORKSPACE_TOO_SMALL, "workspace smaller than the query");
  if (s.shape.T == 0 || s.shape.H == 0) return SPMLA_STATUS_SUCCESS;
  const kern::AttnParams p = attn_params(a, s, ws);
  const int aligned = q_aligned_elems(p);
  // The schedule's variant unless Q's alignment rules it out; then a later one (never another
  // split count: the workspace holds splits x T x H partial rows whatever the heads per CTA).
  const AttnVariant *v = s.variant;
  if (v->require_q_vec && aligned % v->q_vec_elems != 0) v = pick_attention(c, s.shape, aligned);
  if (!v) return fail(SPMLA_STATUS_UNSUPPORTED, "no attention kernel runs this call (" + no_variant_reason(c, s.shape) + ")");
  const int q_vec = aligned % v->q_vec_elems == 0;
  const Dim3 grid{(unsigned)s.shape.T, (unsigned)((s.shape.H + v->heads_per_cta - 1) / v->heads_per_cta),
                  (unsigned)s.splits};
  if (c->log)
    fprintf(stderr, "spmla[%s:%d] sparse_attention T %d H %d D %d %s%s%s K %d: %s, %d split%s, Q %s%s\n", kName,
            c->dev.id, s.shape.T, s.shape.H, s.shape.D, layout_name(s.shape.layout0), s.shape.layout1 ? "+" : "",
            s.shape.layout1 ? layout_name(s.shape.layout1) : "", s.Ktot, v->name, s.splits, s.splits == 1 ? "" : "s",
            q_vec ? "vector loads" : "scalar loads", c->batch_invariant ? ", batch-invariant" : "");
  SPMLA_RT(v->launch(p, q_vec, grid, c->vs, stream), std::string("sparse_attention (") + v->name + ") launch");
  if (s.splits > 1) SPMLA_RT(launch_attention_combine(p, c->vs, stream), "sparse_attention combine launch");
  return SPMLA_STATUS_SUCCESS;
}

// ------------------------------------------------------------------ indices / window
// The fields both ops share: positions, their requests, the block table, the output slots and lengths.
template <class P, class A>
void request_map_params(P &p, const A *a) {
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
  p.slots = ptr<int32_t>(a->slots);
  p.slots_stride = st(a->slots, 0);
  p.lengths = ptr<int32_t>(a->lengths);
  p.len_stride = st(a->lengths, 0);
}

spmla_status_t indices_to_slots(void *ctx, const spmla_indices_to_slots_args_t *a, void *stream) {
  if (spmla_status_t s = use_device(static_cast<Context *>(ctx))) return s;
  kern::IndicesToSlotsParams p;
  request_map_params(p, a);
  p.K = (int)a->positions->shape[1];
  p.token_valid = ptr<const uint8_t>(a->token_valid);
  p.tv_stride = st(a->token_valid, 0);
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
  request_map_params(p, a);
  p.W = (int)a->slots->shape[1];
  p.ratio = a->ratio;
  SPMLA_RT(launch_window_indices(p, stream), "window_indices launch");
  return SPMLA_STATUS_SUCCESS;
}

// ------------------------------------------------------------------ indexer
spmla_status_t no_workspace(size_t *bytes) {
  *bytes = 0;
  return SPMLA_STATUS_SUCCESS;
}
spmla_status_t idx_ws(void *, const spmla_indexer_logits_args_t *, size_t *b) { return no_workspace(b); }
spmla_status_t idxp_ws(void *, const spmla_indexer_logits_paged_args_t *, size_t *b) { return no_workspace(b); }
spmla_status_t topk_ws(void *, const spmla_topk_per_row_args_t *, size_t *b) { return no_workspace(b); }

spmla_status_t check_indexer(const Context *c, int Hi, int Di) {
  if (Hi < 1 || Hi > kern::kIdxMaxHi) return fail(SPMLA_STATUS_UNSUPPORTED, "indexer Hi must be 1..64");
  if (Di != 64 && Di != 128) return fail(SPMLA_STATUS_UNSUPPORTED, "indexer Di must be 64 or 128");
  if (const char *why = indexer_unsupported(c->dev, c->vs, Hi, Di)) return fail(SPMLA_STATUS_UNSUPPORTED, why);
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t launch_indexer_logged(const Context *c, const kern::IndexerParams &p, void *stream, const char *op) {
  const char *chosen = "?";
  SPMLA_RT(launch_indexer(p, c->dev, c->vs, stream, &chosen), std::string(op) + " launch");
  if (c->log)
    fprintf(stderr, "spmla[%s:%d] %s rows %d Hi %d Di %d C %d: %s\n", kName, c->dev.id, op, p.rows, p.Hi, p.Di, p.C,
            chosen);
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t indexer_logits(void *ctx, const spmla_indexer_logits_args_t *a, void *, size_t, void *stream) {
  const Context *c = static_cast<Context *>(ctx);
  if (spmla_status_t s = use_device(c)) return s;
  kern::IndexerParams p;
  memset(&p, 0, sizeof p);
  p.q = ptr<const uint8_t>(a->q);
  p.q_stride_row = st(a->q, 0);
  p.q_stride_h = st(a->q, 1);
  p.rows = (int)a->q->shape[0];
  p.Hi = (int)a->q->shape[1];
  p.Di = (int)a->q->shape[2];
  if (spmla_status_t s = check_indexer(c, p.Hi, p.Di)) return s;
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
  return launch_indexer_logged(c, p, stream, "indexer_logits");
}

spmla_status_t indexer_logits_paged(void *ctx, const spmla_indexer_logits_paged_args_t *a, void *, size_t, void *stream) {
  const Context *c = static_cast<Context *>(ctx);
  if (spmla_status_t s = use_device(c)) return s;
  kern::IndexerParams p;
  memset(&p, 0, sizeof p);
  const int B = (int)a->q->shape[0], N = (int)a->q->shape[1];
  p.q = ptr<const uint8_t>(a->q);
  p.q_stride_row = st(a->q, 1);  // rows b*N+i: q[b][i] = base + b*s0 + i*s1
  p.q_stride_h = st(a->q, 2);
  p.rows = B * N;
  p.Hi = (int)a->q->shape[2];
  p.Di = (int)a->q->shape[3];
  if (spmla_status_t s = check_indexer(c, p.Hi, p.Di)) return s;
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
  return launch_indexer_logged(c, p, stream, "indexer_logits_paged");
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
  const char *chosen = "?";
  SPMLA_RT(launch_topk(p, c->vs, stream, &chosen), "topk_per_row launch");
  if (c->log) fprintf(stderr, "spmla[%s:%d] topk_per_row R %d C %d k %d: %s\n", kName, c->dev.id, p.R, p.C, p.k, chosen);
  return SPMLA_STATUS_SUCCESS;
}

// 16-byte vector loads of bf16 rows need a 16-byte aligned base and strides of 8 elements.
int rows_vec16(const void *base, int64_t stride) {
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && stride % 8 == 0;
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
  SPMLA_RT(launch_kv_store(p, rows_vec16(p.kv, p.kv_stride), stream), "kv_cache_store launch");
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
  SPMLA_RT(launch_kv_gather(p, rows_vec16(p.out, p.out_stride), stream), "kv_cache_gather launch");
  return SPMLA_STATUS_SUCCESS;
}

spmla_backend_table_t make_table() {
  spmla_backend_table_t t;
  memset(&t, 0, sizeof t);
  t.struct_size = sizeof t;
  t.abi_version = SPMLA_BACKEND_ABI_VERSION;
  t.name = kName;
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
  t.last_kv_layout = kKvLayoutLast;  // the kernel tree reads every layout up to it (cache_access.cuh)
  t.context_set_option = context_set_option;
  return t;
}

const spmla_backend_table_t g_table = make_table();

}  // namespace
}  // namespace gpu
}  // namespace spmla

extern "C" __attribute__((visibility("default"))) const spmla_backend_table_t *spmla_backend_entry(uint32_t host_abi) {
  if ((host_abi >> 16) != SPMLA_BACKEND_ABI_MAJOR) return nullptr;
  return &spmla::gpu::g_table;
}
