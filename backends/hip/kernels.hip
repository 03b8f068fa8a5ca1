// kernels.hip — the HIP plugin's kernel list (common/host/gpu_kernels.h): per-device preparation,
// the attention variants in order of preference, and the launchers of the other operations (the
// shared kernels of backends/common/, the indexer on the AMD matrix policy: MFMA on CDNA,
// portable elsewhere).
#include <cstdio>
#include <cstring>
#include <new>

#include "cdna3/attention_mfma.cuh"
#include "cdna4/attention_mfma950.cuh"
#include "common/attention.cuh"
#include "common/attention_portable.cuh"
#include "common/host/gpu_runtime.h"
#include "common/indexer.cuh"
#include "common/kv_ops.cuh"
#include "common/topk.cuh"
#include "hip/mma_policy_amd.h"
#include "hip/vendor_hip.h"

namespace spmla {
namespace hip {

#if defined(SPMLA_VENDOR_HIP)
int launch_status() {
  const gpu::Runtime *rt = gpu::runtime();
  return rt ? rt->GetLastError() : 3 /* hipErrorNotInitialized */;
}
#else
int launch_status() { return (int)cudaGetLastError(); }
#endif

size_t mfma_smem_bytes(int D) { return D == 576 ? MfmaSmem<576>::kBytes : MfmaSmem<512>::kBytes; }
size_t mfma950_smem_bytes(int D) { return D == 576 ? Mfma950Smem<576>::kBytes : Mfma950Smem<512>::kBytes; }
size_t portable_smem_bytes(int D) { return D == 576 ? kern::PortSmem<576>::kBytes : kern::PortSmem<512>::kBytes; }

namespace {

inline spmla_stream_t as_stream(void *s) { return static_cast<spmla_stream_t>(s); }

// MFMA kernels exist in the code objects of gfx90a, gfx942 and gfx950 (wave64 CDNA).
bool arch_has_mfma(const char *a) {
  for (const char *p : {"gfx90a", "gfx940", "gfx941", "gfx942", "gfx950"})
    if (!strncmp(a, p, 6)) return true;
  return false;
}

const char *lds_short(size_t need, size_t have) {
  static thread_local char buf[96];
  snprintf(buf, sizeof buf, "needs %zu B of LDS per block, the device allows %zu", need, have);
  return buf;
}

const char *mfma_unsupported(const gpu::Device &d, const gpu::VendorState *vs, const gpu::AttnShape &s) {
  if (!vs->mfma) return "needs a CDNA device with wave64 (gfx90a, gfx942, gfx950)";
  if (d.smem_optin < mfma_smem_bytes(s.D)) return lds_short(mfma_smem_bytes(s.D), d.smem_optin);
  return nullptr;
}
// CDNA4 only: the kernel's code exists in the gfx950 code object alone (v_mfma_f32_16x16x32_bf16
// is a gfx950 instruction) and its tile needs ~84 KiB of LDS.
const char *mfma950_unsupported(const gpu::Device &d, const gpu::VendorState *vs, const gpu::AttnShape &s) {
  if (!vs->mfma950) return "needs gfx950 (CDNA4: v_mfma_f32_16x16x32_bf16, 160 KiB LDS)";
  if (d.smem_optin < mfma950_smem_bytes(s.D)) return lds_short(mfma950_smem_bytes(s.D), d.smem_optin);
  return nullptr;
}
const char *portable_unsupported(const gpu::Device &d, const gpu::VendorState *, const gpu::AttnShape &s) {
  if (d.smem_optin < portable_smem_bytes(s.D)) return lds_short(portable_smem_bytes(s.D), d.smem_optin);
  return nullptr;
}
int mfma_launch(const kern::AttnParams &p, int q_vec, gpu::Dim3 g, const gpu::VendorState *, void *s) {
  return p.D == 576 ? launch_mfma_d576(p, q_vec, g, s) : launch_mfma_d512(p, q_vec, g, s);
}
int mfma950_launch(const kern::AttnParams &p, int q_vec, gpu::Dim3 g, const gpu::VendorState *, void *s) {
  return p.D == 576 ? launch_mfma950_d576(p, q_vec, g, s) : launch_mfma950_d512(p, q_vec, g, s);
}
int portable_launch(const kern::AttnParams &p, int, gpu::Dim3 g, const gpu::VendorState *, void *s) {
  return p.D == 576 ? launch_portable_d576(p, g, s) : launch_portable_d512(p, g, s);
}

// Best first: on gfx950 the CDNA4 kernel (16-byte Q loads, 8 bf16, where aligned), then the CDNA3
// MFMA kernel (gfx90a/gfx942, and gfx950 when the first cannot run; 8-byte loads, 4 bf16).
const gpu::AttnVariant kAttnVariants[] = {
    {"mfma950", kern::kAttnBM, 8, false, mfma950_unsupported, mfma950_launch},
    {"mfma", kern::kAttnBM, 4, false, mfma_unsupported, mfma_launch},
    {"portable", kern::kPortBM, 1, false, portable_unsupported, portable_launch},
};

}  // namespace
}  // namespace hip

// ------------------------------------------------------------------ gpu_kernels.h
namespace gpu {

int vendor_prepare(const Device &d, VendorState **out) {
  VendorState *vs = new (std::nothrow) VendorState;
  if (!vs) return kErrOutOfMemory;
  *out = vs;
  vs->mfma = hip::arch_has_mfma(d.arch) && d.warp_size == 64;
  vs->mfma950 = vs->mfma && !strncmp(d.arch, "gfx950", 6);
  int e = hip::attention_prepare_d576(d.smem_optin);
  if (e == 0) e = hip::attention_prepare_d512(d.smem_optin);
  if (e == 0 && kern::IdxSmem::kBytes <= d.smem_optin)
    e = runtime()->FuncSetMaxDynamicShared(reinterpret_cast<const void *>(&kern::indexer_logits_kernel<hip::MmaPolicyAmd>),
                                           kern::IdxSmem::kBytes);
  return e;
}

void vendor_release(VendorState *vs) { delete vs; }

const AttnVariant *attention_variants(int *count) {
  *count = (int)(sizeof hip::kAttnVariants / sizeof hip::kAttnVariants[0]);
  return hip::kAttnVariants;
}

int launch_attention_combine(const kern::AttnParams &p, const VendorState *, void *s) {
  kern::sparse_attention_combine_kernel<<<dim3(p.T, p.H), 128, 0, hip::as_stream(s)>>>(p);
  return hip::launch_status();
}

int launch_indices_to_slots(const kern::IndicesToSlotsParams &p, void *s) {
  if (p.T == 0) return 0;
  kern::indices_to_slots_kernel<256><<<p.T, 256, 0, hip::as_stream(s)>>>(p);
  if (p.indptr && p.ragged) {
    kern::ragged_indptr_kernel<1024><<<1, 1024, 0, hip::as_stream(s)>>>(p);
    kern::ragged_pack_kernel<256><<<p.T, 256, 0, hip::as_stream(s)>>>(p);
  }
  return hip::launch_status();
}

int launch_window_indices(const kern::WindowParams &p, void *s) {
  if (p.T == 0) return 0;
  kern::window_indices_kernel<<<p.T, 128, 0, hip::as_stream(s)>>>(p);
  return hip::launch_status();
}

const char *indexer_unsupported(const Device &d, const VendorState *, int, int) {
  if (d.smem_optin < kern::IdxSmem::kBytes) return "the device's shared memory per block is below the indexer kernel's";
  return nullptr;
}

// kIdxThreads is 8 warps of the *device's* warp size (the host pass of a multi-target HIP
// compile cannot know it): the launch uses the device's warp size.
int launch_indexer(const kern::IndexerParams &p, const Device &d, const VendorState *vs, void *s, const char **chosen) {
  const int groups = !p.paged       ? (p.rows + kern::kIdxRows - 1) / kern::kIdxRows
                     : p.next_n > 0 ? (p.rows / p.next_n) * ((p.next_n + kern::kIdxRows - 1) / kern::kIdxRows)
                                    : 0;
  *chosen = vs->mfma ? "tiled (MFMA policy)" : "tiled (portable policy)";
  if (groups == 0 || p.C == 0) return 0;
  dim3 grid(groups, (p.C + kern::kIdxChunk - 1) / kern::kIdxChunk);
  kern::indexer_logits_kernel<hip::MmaPolicyAmd>
      <<<grid, kern::kIdxWarps * d.warp_size, kern::IdxSmem::kBytes, hip::as_stream(s)>>>(p);
  return hip::launch_status();
}

int launch_topk(const kern::TopkParams &p, const VendorState *, void *s, const char **chosen) {
  *chosen = "portable (multi-pass)";
  if (p.R == 0) return 0;
  kern::topk_per_row_kernel<<<p.R, kern::kTopkThreads, 0, hip::as_stream(s)>>>(p);
  return hip::launch_status();
}

int launch_kv_store(const kern::StoreParams &p, int vec, void *s) {
  if (p.N == 0) return 0;
  const int blocks = (p.N + kern::kStoreRowsPerBlock - 1) / kern::kStoreRowsPerBlock;
  kern::kv_store_kernel<<<blocks, kern::kStoreRowThreads * kern::kStoreRowsPerBlock, 0, hip::as_stream(s)>>>(p, vec);
  return hip::launch_status();
}

int launch_kv_gather(const kern::GatherParams &p, int vec, void *s) {
  if (p.N == 0) return 0;
  kern::kv_gather_kernel<<<(p.N + 7) / 8, 256, 0, hip::as_stream(s)>>>(p, vec);
  return hip::launch_status();
}

}  // namespace gpu
}  // namespace spmla
