// hostsim_vendor.cpp — a simulated GPU vendor for the host-layer tests (tests/test_host_layer.cpp):
// the runtime table over host memory and a kernel list whose launchers record what they were
// given instead of computing. Linked with backends/common/host/plugin_host.cpp into
// libspmla_backend_hostsim.so, so the one host layer of the CUDA and HIP plugins (schedule,
// variant choice, marshalling, workspace layout, errors, SPMLA_LOG) runs in the CPU tier.
//
// Device knobs (read at init / handle creation): HOSTSIM_DEVICES (default 1, 0: no device),
// HOSTSIM_SM_COUNT (default 100), HOSTSIM_SMEM (shared memory per block, default 100000),
// HOSTSIM_FAIL (a launch name that fails with error 700 "illegal address").
// The test reads the journal through the exported hostsim_journal().
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include "common/host/gpu_kernels.h"
#include "common/host/gpu_runtime.h"
#include "hostsim_journal.h"

namespace {

hostsim::Journal g_journal;
std::mutex g_mu;

int env_int(const char *name, int dflt) {
  const char *v = std::getenv(name);
  return v && *v ? std::atoi(v) : dflt;
}

// A launch: recorded, or failed when HOSTSIM_FAIL names it.
int record(const char *name, const char *variant, const hostsim::Launch &l) {
  const char *fail = std::getenv("HOSTSIM_FAIL");
  if (fail && std::strcmp(fail, name) == 0) return 700;
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_journal.count < hostsim::kMaxLaunches) {
    hostsim::Launch &r = g_journal.launches[g_journal.count];
    r = l;
    std::snprintf(r.what, sizeof r.what, "%s", name);
    std::snprintf(r.variant, sizeof r.variant, "%s", variant ? variant : "");
  }
  ++g_journal.count;
  return 0;
}

// ------------------------------------------------------------------ runtime table (host memory)
using spmla::gpu::Attr;
int count(int *n) {
  *n = env_int("HOSTSIM_DEVICES", 1);
  return 0;
}
thread_local int t_device = 0;
int set_dev(int d) { return d >= 0 && d < env_int("HOSTSIM_DEVICES", 1) ? (t_device = d, 0) : 101; }
int get_dev(int *d) { return *d = t_device, 0; }
int attr(int *v, Attr a, int) {
  switch (a) {
    case Attr::kMultiprocessorCount: *v = env_int("HOSTSIM_SM_COUNT", 100); break;
    case Attr::kWarpSize: *v = 32; break;
    default: *v = env_int("HOSTSIM_SMEM", 100000); break;
  }
  return 0;
}
int total_mem(size_t *b, int) { return *b = (size_t)1 << 30, 0; }
int dev_name(char *out, int n, int) { return std::snprintf(out, (size_t)n, "hostsim"), 0; }
int dev_arch(char *out, size_t n, int) { return std::snprintf(out, n, "sim_1"), 0; }
int mal(void **p, size_t b) {
  *p = std::aligned_alloc(256, (b + 255) / 256 * 256);
  return *p ? 0 : 2;
}
int fre(void *p) { return std::free(p), 0; }
int cpy(void *d, const void *s, size_t b, int, void *) { return std::memmove(d, s, b), 0; }
int set(void *d, int v, size_t b, void *) { return std::memset(d, v, b), 0; }
int ssync(void *) { return 0; }
int ev_create(void **e) { return *e = new (std::nothrow) int(0), *e ? 0 : 2; }
int ev_destroy(void *e) { return delete static_cast<int *>(e), 0; }
int ev_record(void *, void *) { return 0; }
int ev_sync(void *) { return 0; }
int ev_elapsed(float *ms, void *, void *) { return *ms = 0.f, 0; }
int last() { return 0; }
const char *ename(int e) { return e == 700 ? "simErrorIllegalAddress" : "simError"; }
const char *estr(int e) { return e == 700 ? "an illegal memory access was encountered (simulated)" : "simulated error"; }
int func_smem(const void *, int) { return 0; }

spmla::gpu::Runtime make_runtime() {
  spmla::gpu::Runtime a;
  std::memset(&a, 0, sizeof a);
  a.vendor = "hostsim";
  std::snprintf(a.library, sizeof a.library, "host memory");
  a.GetDeviceCount = count;
  a.SetDevice = set_dev;
  a.GetDevice = get_dev;
  a.DeviceGetAttribute = attr;
  a.DeviceTotalMem = total_mem;
  a.DeviceGetName = dev_name;
  a.DeviceArch = dev_arch;
  a.Malloc = mal;
  a.Free = fre;
  a.MemcpyAsync = cpy;
  a.MemsetAsync = set;
  a.StreamSynchronize = ssync;
  a.EventCreate = ev_create;
  a.EventDestroy = ev_destroy;
  a.EventRecord = ev_record;
  a.EventSynchronize = ev_sync;
  a.EventElapsedTime = ev_elapsed;
  a.GetLastError = last;
  a.GetErrorName = ename;
  a.GetErrorString = estr;
  a.FuncSetMaxDynamicShared = func_smem;
  return a;
}

// ------------------------------------------------------------------ attention variants
// "big": runs what "wide" runs, preferred only on D 576 grids of at least 8 waves (a variant that is
// faster only on large grids, as sm90pair on CUDA);
// "wide": 64 heads, needs Q aligned to 8 elements and one layout for both sources, 80000 B;
// "mid": 64 heads, D 576 only, vector loads of 4 elements when aligned; "any": 16 heads, 1000 B.
using spmla::gpu::AttnShape;
using spmla::gpu::Device;
using spmla::gpu::VendorState;

const char *wide_unsupported(const Device &d, const VendorState *, const AttnShape &s) {
  if (d.smem_optin < 80000) return "needs 80000 B of shared memory";
  if (s.layout1 != 0 && s.layout1 != s.layout0) return "needs one layout for both sources";
  return nullptr;
}
const char *mid_unsupported(const Device &, const VendorState *, const AttnShape &s) {
  return s.D == 576 ? nullptr : "reads D 576 only";
}
const char *any_unsupported(const Device &d, const VendorState *, const AttnShape &) {
  return d.smem_optin < 1000 ? "needs 1000 B of shared memory" : nullptr;
}
const char *big_not_preferred(const Device &d, const AttnShape &s) {
  if (s.D != 576) return "preferred at D 576 only";
  return (long)s.T * ((s.H + 63) / 64) >= 8L * d.sm_count ? nullptr : "preferred on grids of 8 waves or more";
}
hostsim::Launch attn_record(const spmla::kern::AttnParams &p, int q_vec, spmla::gpu::Dim3 g) {
  hostsim::Launch l{};
  l.grid[0] = g.x;
  l.grid[1] = g.y;
  l.grid[2] = g.z;
  l.q_vec = q_vec;
  l.attn = p;
  return l;
}
int big_launch(const spmla::kern::AttnParams &p, int q_vec, spmla::gpu::Dim3 g, const VendorState *, void *) {
  return record("attention", "big", attn_record(p, q_vec, g));
}
int wide_launch(const spmla::kern::AttnParams &p, int q_vec, spmla::gpu::Dim3 g, const VendorState *, void *) {
  return record("attention", "wide", attn_record(p, q_vec, g));
}
int mid_launch(const spmla::kern::AttnParams &p, int q_vec, spmla::gpu::Dim3 g, const VendorState *, void *) {
  return record("attention", "mid", attn_record(p, q_vec, g));
}
int any_launch(const spmla::kern::AttnParams &p, int q_vec, spmla::gpu::Dim3 g, const VendorState *, void *) {
  return record("attention", "any", attn_record(p, q_vec, g));
}
const spmla::gpu::AttnVariant kVariants[] = {
    {"big", 64, 8, true, wide_unsupported, big_launch, big_not_preferred},
    {"wide", 64, 8, true, wide_unsupported, wide_launch},
    {"mid", 64, 4, false, mid_unsupported, mid_launch},
    {"any", 16, 1, false, any_unsupported, any_launch},
};

}  // namespace

namespace spmla {
namespace gpu {

struct VendorState {
  int prepared = 1;
};

bool runtime_fill(Runtime *rt, std::string *why) {
  if (std::getenv("HOSTSIM_NO_RUNTIME")) {
    *why = "hostsim runtime switched off (HOSTSIM_NO_RUNTIME)";
    return false;
  }
  *rt = make_runtime();
  return true;
}

int vendor_prepare(const Device &, VendorState **out) {
  *out = new (std::nothrow) VendorState;
  return *out ? 0 : 2;
}
void vendor_release(VendorState *vs) { delete vs; }

const AttnVariant *attention_variants(int *count) {
  *count = (int)(sizeof kVariants / sizeof kVariants[0]);
  return kVariants;
}
int launch_attention_combine(const kern::AttnParams &p, const VendorState *, void *) {
  hostsim::Launch l{};
  l.attn = p;
  return record("combine", nullptr, l);
}
int launch_indices_to_slots(const kern::IndicesToSlotsParams &p, void *) {
  hostsim::Launch l{};
  l.slots = p;
  return record("indices_to_slots", nullptr, l);
}
int launch_window_indices(const kern::WindowParams &p, void *) {
  hostsim::Launch l{};
  l.window = p;
  return record("window_indices", nullptr, l);
}
const char *indexer_unsupported(const Device &, const VendorState *, int Hi, int) {
  return Hi > 32 ? "hostsim's indexer takes at most 32 heads" : nullptr;
}
int launch_indexer(const kern::IndexerParams &p, const Device &, const VendorState *, void *, const char **chosen) {
  *chosen = "sim-indexer";
  hostsim::Launch l{};
  l.indexer = p;
  return record("indexer", *chosen, l);
}
int launch_topk(const kern::TopkParams &p, const VendorState *, void *, const char **chosen) {
  *chosen = "sim-topk";
  hostsim::Launch l{};
  l.topk = p;
  return record("topk", *chosen, l);
}
int launch_kv_store(const kern::StoreParams &p, int vec, void *) {
  hostsim::Launch l{};
  l.store = p;
  l.q_vec = vec;
  return record("kv_store", nullptr, l);
}
int launch_kv_gather(const kern::GatherParams &p, int vec, void *) {
  hostsim::Launch l{};
  l.gather = p;
  l.q_vec = vec;
  return record("kv_gather", nullptr, l);
}

}  // namespace gpu
}  // namespace spmla

extern "C" __attribute__((visibility("default"))) hostsim::Journal *hostsim_journal() { return &g_journal; }
