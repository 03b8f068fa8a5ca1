// gpu_kernels.h — what a GPU vendor supplies to the one host layer (plugin_host.cpp): its kernels,
// as lists of variants, and their launchers. Everything else — argument marshalling, the attention
// schedule (split-K), workspace layout, runtime glue, the backend function table — is written once
// in plugin_host.cpp over the runtime table of gpu_runtime.h.
//
// Each plugin (backends/cuda, backends/hip) implements every function declared here, in its own
// shared object. Plain C++ types only: the host layer is compiled by the host compiler on AMD.
//
// A variant is data: a name, what it needs (a predicate over the device and the call that says
// why not), and a launcher. The host layer takes the first variant of a list that can run the
// call (lists are ordered best first and end in a kernel that runs everywhere), prints the choice
// to stderr under SPMLA_LOG=1, and lets SPMLA_ATTENTION_VARIANT force one (testing).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "../params.h"

namespace spmla {
namespace gpu {

struct Dim3 {
  unsigned x, y, z;
};

// The device a context runs on, as the host layer read it from the runtime.
struct Device {
  int id = 0;
  int sm_count = 1;        // multiprocessors / compute units
  int warp_size = 32;      // 32 NVIDIA, 64 CDNA, 32 RDNA
  size_t smem_optin = 0;   // dynamic shared memory (LDS) one block may use
  int cc = 0;              // NVIDIA compute capability (major * 10 + minor), 0 elsewhere
  char arch[32] = {0};     // "sm_90", "gfx942"
};

// Per-device state of a vendor's kernels (kernel attributes set, launch budgets); defined by each
// vendor, created at context creation, never while a stream may be capturing.
struct VendorState;
// Returns a runtime error code (0 = success).
int vendor_prepare(const Device &dev, VendorState **out);
void vendor_release(VendorState *vs);

// ------------------------------------------------------------------ sparse attention
// What an attention variant is asked about: shapes and layouts only (no data pointers), so that
// the schedule derived from the choice is the same at workspace query, plan and run.
struct AttnShape {
  int T, H, D;
  int layout0, flavor0;  // main source
  int layout1, flavor1;  // extra source (layout1 = 0: none)
};

struct AttnVariant {
  const char *name;
  int heads_per_cta;  // the grid's y = ceil(H / heads_per_cta)
  // Q rows read with vector loads need the pointer and both strides aligned to this many bf16
  // elements; with require_q_vec the variant cannot run at all on unaligned Q (else it takes a
  // scalar path).
  int q_vec_elems;
  bool require_q_vec;
  // null: this variant runs the call on this device; else a short reason (for SPMLA_LOG).
  const char *(*unsupported)(const Device &, const VendorState *, const AttnShape &);
  // Launches the tile kernel over grid (T, ceil(H / heads_per_cta), p.num_splits).
  int (*launch)(const kern::AttnParams &, int q_vec, Dim3 grid, const VendorState *, void *stream);
  // Optional (null: preferred wherever it runs). Non-null result: this variant can run the call but
  // was measured slower there than a later one, so the default choice passes it over (the reason,
  // for SPMLA_LOG); SPMLA_ATTENTION_VARIANT still forces it. Seen with T = 1 under
  // SPMLA_OPTION_BATCH_INVARIANT, like every shape test of the choice.
  const char *(*not_preferred)(const Device &, const AttnShape &);
};
// The vendor's attention variants, best first; the last one runs on every device the vendor serves.
const AttnVariant *attention_variants(int *count);
// Merges split-K partials (p.num_splits > 1) into out / lse / max_logits, right after the
// attention kernel in the same stream (CUDA sm_90: as its programmatic dependent, vs says whether).
int launch_attention_combine(const kern::AttnParams &p, const VendorState *vs, void *stream);

// ------------------------------------------------------------------ the other operations
// One kernel family each; the launcher picks among its own configurations and names the one it
// launched in *chosen (a static string, for SPMLA_LOG).
int launch_indices_to_slots(const kern::IndicesToSlotsParams &p, void *stream);
int launch_window_indices(const kern::WindowParams &p, void *stream);
// null if the indexer runs on this device, else why not.
const char *indexer_unsupported(const Device &dev, const VendorState *vs, int Hi, int Di);
int launch_indexer(const kern::IndexerParams &p, const Device &dev, const VendorState *vs, void *stream,
                   const char **chosen);
int launch_topk(const kern::TopkParams &p, const VendorState *vs, void *stream, const char **chosen);
int launch_kv_store(const kern::StoreParams &p, int vec, void *stream);
int launch_kv_gather(const kern::GatherParams &p, int vec, void *stream);

}  // namespace gpu
}  // namespace spmla
