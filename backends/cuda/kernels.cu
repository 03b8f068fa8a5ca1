// kernels.cu — the CUDA plugin's kernel list (common/host/gpu_kernels.h): per-device preparation,
// the attention variants in order of preference, and the launchers of the other operations.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <new>

#include "common/attention.cuh"
#include "common/attention_portable.cuh"
#include "common/kv_ops.cuh"
#include "common/topk.cuh"
#include "cuda/vendor_cuda.h"
#include "indexer_fx.cuh"

namespace spmla {
namespace cuda {
namespace {

inline cudaStream_t as_stream(void *s) { return static_cast<cudaStream_t>(s); }

cudaError_t indices_to_slots(const kern::IndicesToSlotsParams &p, cudaStream_t s) {
  if (p.T == 0) return cudaSuccess;
  kern::indices_to_slots_kernel<256><<<p.T, 256, 0, s>>>(p);
  if (p.indptr && p.ragged) {
    kern::ragged_indptr_kernel<1024><<<1, 1024, 0, s>>>(p);
    kern::ragged_pack_kernel<256><<<p.T, 256, 0, s>>>(p);
  }
  return cudaGetLastError();
}

cudaError_t window_indices(const kern::WindowParams &p, cudaStream_t s) {
  if (p.T == 0) return cudaSuccess;
  kern::window_indices_kernel<<<p.T, 128, 0, s>>>(p);
  return cudaGetLastError();
}

// The fused indexer kernel per (Di, 16-head groups).
using IdxKernel = void (*)(const kern::IndexerParams, int, int);
template <int Di>
IdxKernel idx_kernel(int ng) {
  switch (ng) {
    case 1: return kern::indexer_fx_kernel<Di, 1>;
    case 2: return kern::indexer_fx_kernel<Di, 2>;
    case 3: return kern::indexer_fx_kernel<Di, 3>;
    default: return kern::indexer_fx_kernel<Di, 4>;
  }
}

cudaError_t indexer_prepare() {
  cudaError_t e = cudaSuccess;
  for (int ng = 1; ng <= 4 && e == cudaSuccess; ++ng) {
    e = cudaFuncSetAttribute(idx_kernel<128>(ng), cudaFuncAttributeMaxDynamicSharedMemorySize, kern::FxSmem<128>::kBytes);
    if (e == cudaSuccess)
      e = cudaFuncSetAttribute(idx_kernel<64>(ng), cudaFuncAttributeMaxDynamicSharedMemorySize, kern::FxSmem<64>::kBytes);
  }
  return e;
}

// The fused kernel deals its own work items (kFxGroup rows x kFxKeys keys) to at most one CTA per
// SM (sm_count: the context's device).
cudaError_t indexer(const kern::IndexerParams &p, int sm_count, cudaStream_t s) {
  if (p.C == 0 || p.rows == 0) return cudaSuccess;
  const int64_t row_groups = p.paged ? (int64_t)(p.rows / p.next_n) * ((p.next_n + kern::kFxGroup - 1) / kern::kFxGroup)
                                     : ((int64_t)p.rows + kern::kFxGroup - 1) / kern::kFxGroup;
  const int key_blocks = kern::fx_key_blocks(p);
  const int64_t items = row_groups * key_blocks;
  if (items > 0x7fffffff) return cudaErrorInvalidValue;
  const int grid = (int)std::min<int64_t>(items, std::max(1, sm_count));
  const int ng = (p.Hi + 15) / 16;
  if (p.Di == 64)
    idx_kernel<64>(ng)<<<grid, kern::kFxThreads, kern::FxSmem<64>::kBytes, s>>>(p, key_blocks, (int)items);
  else
    idx_kernel<128>(ng)<<<grid, kern::kFxThreads, kern::FxSmem<128>::kBytes, s>>>(p, key_blocks, (int)items);
  return cudaGetLastError();
}

// topk: the fast kernel in the first configuration whose candidate list (what shared memory
// leaves after the bitmaps, at `blocks` blocks per SM) holds what the kernel's sample aims at with
// room to spare; otherwise the portable kernel. Kernel parameters <threads, blocks per SM, loads
// per thread, sample vectors per thread, prefetch distance>.
struct TopkFastCfg {
  void (*kernel)(kern::TopkParams, int, int);
  void (*sampler)(kern::TopkParams, int);  // its sample kernel (kSplit), or null: it samples itself
  int threads, blocks, sample;  // sample: vectors per thread (the kernel's SV)
  int sample_vectors;           // 16-byte vectors in a row's sample: the sampler's NS, or threads * sample
};
// H200, 4096 x 32768, k = 2048, same run (docs/benchmarks-history.md, sessions 4 and 5): the 320-thread
// split configuration 0.2589 ms against 0.2848 for 384 threads sampling in the block; its sample
// at 160 places and the dependent launch, 0.2375 against 0.2561. The 512-thread configuration
// serves rows too long for the first one's list (131072 columns).
constexpr int kTopkSplitSample = 160;
constexpr TopkFastCfg kTopkFast[kTopkFastConfigs] = {
    {kern::topk_per_row_fast_kernel<320, 3, 3, 1, 2, true>, kern::topk_sample_kernel<kTopkSplitSample>, 320, 3, 1,
     kTopkSplitSample},
    {kern::topk_per_row_fast_kernel<512, 2, 4, 1, 2, false>, nullptr, 512, 2, 1, 512},
};
// A sampler samples the rows its fast kernel samples (see topk.cuh), and an in-block sample is
// threads * sample vectors.
constexpr bool topk_samples_consistent() {
  for (const TopkFastCfg &f : kTopkFast)
    if (f.sampler ? f.sample_vectors > f.threads * f.sample : f.sample_vectors != f.threads * f.sample) return false;
  return true;
}
static_assert(topk_samples_consistent(), "kTopkFast: sample_vectors");

cudaError_t topk_prepare(int device, TopkLaunchState *st) {
  int per_sm = 0, reserved = 0, optin = 0, major = 0;
  size_t *fast_smem = st->fast_smem;
  cudaError_t e = cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  // A dependent launch needs the device (sm_90+) and split kernels whose loaded code has the wait:
  // code built for an older architecture (sm_80 SASS, or its PTX JIT-compiled here) compiles
  // dev::grid_dependency_wait() to nothing, and such a kernel must start only after its sampler.
  st->dependent_launch = major >= 9;
  for (int i = 0; e == cudaSuccess && i < kTopkFastConfigs; ++i) {
    if (!kTopkFast[i].sampler) continue;
    cudaFuncAttributes fa = {};
    e = cudaFuncGetAttributes(&fa, kTopkFast[i].kernel);
    if (e == cudaSuccess && fa.ptxVersion < 90) st->dependent_launch = false;
  }
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  for (int i = 0; i < kTopkFastConfigs; ++i) {
    fast_smem[i] = 0;
    const int budget = std::min(per_sm / kTopkFast[i].blocks - reserved, optin) & ~15;
    if (e != cudaSuccess || budget <= (int)kern::topk_fast_smem_bytes(0, 0)) continue;
    e = cudaFuncSetAttribute(kTopkFast[i].kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, budget);
    if (e == cudaSuccess) fast_smem[i] = (size_t)budget;
  }
  return e;
}

// Launches `kernel` as the programmatic dependent of the kernel before it in stream s (sm_90): it
// may start before that one ends, and calls dev::grid_dependency_wait() before reading its output.
template <typename... Params, typename... Args>
cudaError_t launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                             Args... args) {
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  return launch_with(attr, kernel, grid, block, smem, s, args...);
}

// Names of the launches below, for SPMLA_LOG.
const char *const kTopkFastNames[kTopkFastConfigs] = {"fast (320 threads, split sample)", "fast (512 threads)"};

cudaError_t topk(const kern::TopkParams &p, const TopkLaunchState &st, cudaStream_t s, const char **chosen) {
  const size_t *fast_smem = st.fast_smem;
  if (p.R == 0) return cudaSuccess;
  const int words = kern::topk_fast_words(p.C);
  const size_t fixed = kern::topk_fast_smem_bytes(words, 0);
  for (int i = 0; i < kTopkFastConfigs; ++i) {
    const TopkFastCfg &f = kTopkFast[i];
    if (fast_smem[i] <= fixed) continue;
    const int cap = (int)std::min<size_t>((fast_smem[i] - fixed) / 8, (size_t)p.C);
    if (cap < p.C) {  // rows may be longer than the list: the kernel samples them
      if (cap < 4 * f.threads * f.sample + 8) continue;
      const double ns = 4.0 * f.sample_vectors, ex = p.k * ns / p.C;
      const double aim = (ex + 4.0 * std::sqrt(ex) + 4.0) * p.C / ns;  // the kernel's sample target
      if (cap < 1.25 * aim + 64) continue;
      *chosen = kTopkFastNames[i];
      if (f.sampler) {  // the rows' bounds into out[r][0], which the fast kernel reads first
        f.sampler<<<(p.R + kern::kTopkSampleWarps - 1) / kern::kTopkSampleWarps,
                    kern::kTopkSampleWarps * SPMLA_WARP_SIZE, 0, s>>>(p, cap);
        if (cudaError_t e = cudaGetLastError()) return e;
        if (st.dependent_launch)  // may start while the sampler runs; waits before reading lo
          return launch_dependent(f.kernel, dim3((unsigned)p.R), dim3((unsigned)f.threads),
                                  kern::topk_fast_smem_bytes(words, cap), s, p, words, cap);
      }
    }
    *chosen = kTopkFastNames[i];
    f.kernel<<<p.R, f.threads, kern::topk_fast_smem_bytes(words, cap), s>>>(p, words, cap);
    return cudaGetLastError();
  }
  *chosen = "portable (multi-pass)";
  kern::topk_per_row_kernel<<<p.R, kern::kTopkThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t kv_store(const kern::StoreParams &p, int vec, cudaStream_t s) {
  if (p.N == 0) return cudaSuccess;
  // Any grid is correct (grid-stride rows); a few rows per group keep the next row's loads in
  // flight while a row is quantized (V32_FP8 16, the other layouts 4: see kv_ops.cuh).
  const int rows_per_group = p.cache.layout == kern::kV32 ? kern::kStoreRowsPerGroupV32 : kern::kStoreRowsPerGroup;
  const int64_t rows_per_block = kern::kStoreThreads / kern::kv_row_lanes(p.cache);
  const int64_t per_block = rows_per_block * rows_per_group;
  const int blocks = (int)((p.N + per_block - 1) / per_block);
  const bool fnuz = p.cache.flavor == 2;
  void (*k)(const kern::StoreParams, int);
  switch (p.cache.layout) {
    case kern::kBF16: k = kern::kv_store_layout_kernel<kern::kBF16, 32, false>; break;
    case kern::kFP8PerTensor:
      k = fnuz ? kern::kv_store_layout_kernel<kern::kFP8PerTensor, 32, true>
               : kern::kv_store_layout_kernel<kern::kFP8PerTensor, 32, false>;
      break;
    case kern::kV32:
      k = fnuz ? kern::kv_store_layout_kernel<kern::kV32, 32, true> : kern::kv_store_layout_kernel<kern::kV32, 32, false>;
      break;
    case kern::kV4:
      k = fnuz ? kern::kv_store_layout_kernel<kern::kV4, 32, true> : kern::kv_store_layout_kernel<kern::kV4, 32, false>;
      break;
    case kern::kV41FP8:
      k = fnuz ? kern::kv_store_layout_kernel<kern::kV41FP8, 32, true>
               : kern::kv_store_layout_kernel<kern::kV41FP8, 32, false>;
      break;
    case kern::kV41FP4: k = kern::kv_store_layout_kernel<kern::kV41FP4, 32, false>; break;  // E4M3FN scales
    default:
      if (p.cache.dim == 64)
        k = fnuz ? kern::kv_store_layout_kernel<kern::kIndexer, 8, true>
                 : kern::kv_store_layout_kernel<kern::kIndexer, 8, false>;
      else
        k = fnuz ? kern::kv_store_layout_kernel<kern::kIndexer, 16, true>
                 : kern::kv_store_layout_kernel<kern::kIndexer, 16, false>;
      break;
  }
  k<<<blocks, kern::kStoreThreads, 0, s>>>(p, vec);
  return cudaGetLastError();
}

cudaError_t kv_gather(const kern::GatherParams &p, int vec, cudaStream_t s) {
  if (p.N == 0) return cudaSuccess;
  const int64_t rows_per_block = 256 / kern::kv_row_lanes(p.cache);
  kern::kv_gather_kernel<<<(int)((p.N + rows_per_block - 1) / rows_per_block), 256, 0, s>>>(p, vec);
  return cudaGetLastError();
}

// ------------------------------------------------------------------ attention variants
const char *shared_memory_short(size_t need, size_t have) {
  static thread_local char buf[96];
  snprintf(buf, sizeof buf, "needs %zu B of shared memory per block, the device allows %zu", need, have);
  return buf;
}

size_t sm80_smem_bytes(int D) { return D == 576 ? kern::AttnSmem<576>::kBytes : kern::AttnSmem<512>::kBytes; }

// The three Hopper variants ("sm90", "sm90ws", "sm90pair") read the same sources.
template <Sm90Kernel K>
const char *sm90_variant_unsupported(const gpu::Device &d, const gpu::VendorState *vs, const gpu::AttnShape &s) {
  if (!sm90_built(K)) return "not built (SPMLA_CUDA_SM90_WS=OFF)";
  if (d.cc != 90) return "needs an sm_90 device";
  if (!vs->sm90[(int)K]) return "no sm_90a code for this device in the plugin";
  return sm90_sources_unsupported(s.D, s.layout0, s.flavor0, s.layout1, s.flavor1);
}
template <Sm90Kernel K>
const char *sm90c2_variant_unsupported(const gpu::Device &d, const gpu::VendorState *vs, const gpu::AttnShape &s) {
  if (const char *why = sm90_variant_unsupported<K>(d, vs, s)) return why;
  return sm90c2_unsupported(s.D, s.H, s.layout0, s.layout1);
}
const char *sm80_variant_unsupported(const gpu::Device &d, const gpu::VendorState *vs, const gpu::AttnShape &s) {
  if (d.cc < 80) return "needs sm_80 or newer (mma.sync bf16)";
  if (!vs->sm80[s.D == 576]) return shared_memory_short(sm80_smem_bytes(s.D), d.smem_optin);
  return nullptr;
}
const char *portable_variant_unsupported(const gpu::Device &d, const gpu::VendorState *vs, const gpu::AttnShape &s) {
  if (!vs->portable[s.D == 576]) return shared_memory_short(portable_smem_bytes(s.D), d.smem_optin);
  return nullptr;
}

dim3 as_dim3(gpu::Dim3 g) { return dim3(g.x, g.y, g.z); }
template <Sm90Kernel K>
int sm90_variant_launch(const kern::AttnParams &p, int, gpu::Dim3 g, const gpu::VendorState *, void *s) {
  return (int)launch_sm90(p, K, as_dim3(g), as_stream(s));
}
int sm80_variant_launch(const kern::AttnParams &p, int q_vec, gpu::Dim3 g, const gpu::VendorState *, void *s) {
  return (int)(p.D == 576 ? launch_sm80_d576(p, q_vec, as_dim3(g), as_stream(s))
                          : launch_sm80_d512(p, q_vec, as_dim3(g), as_stream(s)));
}
int portable_variant_launch(const kern::AttnParams &p, int, gpu::Dim3 g, const gpu::VendorState *, void *s) {
  return (int)launch_portable(p, as_dim3(g), as_stream(s));
}

// sm90pair is preferred where it was measured faster than sm90: BF16 keys on a grid of at least a
// wave. The prefill (T 4096, H 128): at D 576 1.06x and 1.04x in sessions 9 and 10, 1.99x since
// session 11's producer; at D 512 1.90x (3.94 ms against sm90's 7.49, H100, session 12). The
// V3.2 BF16-KV decode at batch 64 (T 128, H 128: 256 CTAs): 169.9 us against sm90's 278.7 (H100,
// the peer script, two runs of session 12: 1.64x). Smaller grids were not measured.
// Whether the call's (token, head block) CTAs fill the device once (splits not counted).
bool grid_fills_a_wave(const gpu::Device &d, const gpu::AttnShape &s) {
  return (long)s.T * ((s.H + kern::kAttnBM - 1) / kern::kAttnBM) >= d.sm_count;
}
const char *sm90pair_not_preferred(const gpu::Device &d, const gpu::AttnShape &s) {
  const bool bf16 = s.layout0 == kern::kBF16 && (s.layout1 == 0 || s.layout1 == kern::kBF16);
  if (!bf16) return "measured faster than sm90 only for BF16 keys";
  if (!grid_fills_a_wave(d, s)) return "measured faster than sm90 only on grids of a wave or more";
  return nullptr;
}

// sm90pairc2 is preferred where it was measured faster than sm90c2 (H100, session 12, one run,
// docs/BENCHMARKS.md): V3.2 FP8 decode T 256 H 128 1.18x, V3.2 FP8 prefill 1.28x, V4.1 prefill
// (V41_FP8) 1.22x. Not measured faster: the decode at batch 2 (a grid of 8 CTAs, 1.01x slower),
// and nothing with V41_FP4 rows was measured (sm90pair without clusters reads them 1.5x slower
// than sm90 on the V4.1 decode at H 64).
const char *sm90pairc2_not_preferred(const gpu::Device &d, const gpu::AttnShape &s) {
  if (s.layout0 == kern::kV41FP4 || s.layout1 == kern::kV41FP4) return "not measured on V41_FP4 sources";
  if (!grid_fills_a_wave(d, s)) return "measured faster than sm90c2 only on grids of a wave or more";
  return nullptr;
}

// Best first. sm90pairc2 and sm90pair run where they are preferred (above), sm90c2 wherever it
// reads the sources, sm90 every other call the Hopper kernels read; sm90ws (experimental) runs only
// when SPMLA_ATTENTION_VARIANT names it; portable runs on any device whose shared memory holds its
// ~58 KiB.
const gpu::AttnVariant kAttnVariants[] = {
    // sm90pair in clusters of a token's two head blocks that share the FP8 dequantization.
    {"sm90pairc2", kern::kAttnBM, 8, true, sm90c2_variant_unsupported<Sm90Kernel::kPairC2>,
     sm90_variant_launch<Sm90Kernel::kPairC2>, sm90pairc2_not_preferred},
    {"sm90pair", kern::kAttnBM, 8, true, sm90_variant_unsupported<Sm90Kernel::kPair>,
     sm90_variant_launch<Sm90Kernel::kPair>, sm90pair_not_preferred},
    // sm90c2 runs wherever it can (V32_FP8 / V41 sources, H 65-128): on the H100 (session 11, one
    // run, docs/BENCHMARKS.md) it timed 0.966x sm90 on the V3.2 FP8 decode (T 128, H 128), 0.981x
    // on the V3.2 FP8 prefill and 0.984x on the V4.1 prefill (T 4096, H 128, K 2048).
    {"sm90c2", kern::kAttnBM, 8, true, sm90c2_variant_unsupported<Sm90Kernel::kC2>,
     sm90_variant_launch<Sm90Kernel::kC2>},
    {"sm90", kern::kAttnBM, 8, true, sm90_variant_unsupported<Sm90Kernel::kTwoWg>,
     sm90_variant_launch<Sm90Kernel::kTwoWg>},
    {"sm90ws", kern::kAttnBM, 8, true, sm90_variant_unsupported<Sm90Kernel::kWs>, sm90_variant_launch<Sm90Kernel::kWs>},
    {"sm80", kern::kAttnBM, 8, false, sm80_variant_unsupported, sm80_variant_launch},
    {"portable", kern::kPortBM, 1, false, portable_variant_unsupported, portable_variant_launch},
};

}  // namespace
}  // namespace cuda

// ------------------------------------------------------------------ gpu_kernels.h
namespace gpu {

int vendor_prepare(const Device &d, VendorState **out) {
  VendorState *vs = new (std::nothrow) VendorState;
  if (!vs) return (int)cudaErrorMemoryAllocation;
  *out = vs;
  cudaError_t e = cudaSuccess;
  for (int D : {576, 512}) {
    const bool big = D == 576;
    if (e == cudaSuccess && d.cc >= 80 && d.smem_optin >= cuda::sm80_smem_bytes(D)) {
      e = big ? cuda::sm80_prepare_d576() : cuda::sm80_prepare_d512();
      vs->sm80[big] = e == cudaSuccess;
    }
    if (e == cudaSuccess && d.smem_optin >= cuda::portable_smem_bytes(D)) {
      e = cuda::portable_prepare(D);
      vs->portable[big] = e == cudaSuccess;
    }
  }
  if (e == cudaSuccess && d.cc == 90 && d.smem_optin >= cuda::sm90_smem_bytes(576)) {
    for (cuda::Sm90Kernel k : {cuda::Sm90Kernel::kTwoWg, cuda::Sm90Kernel::kWs, cuda::Sm90Kernel::kPair,
                               cuda::Sm90Kernel::kC2, cuda::Sm90Kernel::kPairC2})
      if (e == cudaSuccess && cuda::sm90_built(k)) e = cuda::sm90_prepare(k, &vs->sm90[(int)k]);
  }
  if (e == cudaSuccess) e = cuda::indexer_prepare();
  if (e == cudaSuccess) e = cuda::topk_prepare(d.id, &vs->topk);
  // The combine as a dependent launch needs sm_90 and loaded code that has the wait (sm_80 SASS
  // compiles dev::grid_dependency_wait() to nothing; such a combine must start after the attention).
  if (e == cudaSuccess && d.cc >= 90) {
    cudaFuncAttributes fa = {};
    e = cudaFuncGetAttributes(&fa, kern::sparse_attention_combine_kernel);
    vs->combine_dependent = e == cudaSuccess && fa.ptxVersion >= 90 && fa.binaryVersion >= 90;
  }
  return (int)e;
}

void vendor_release(VendorState *vs) { delete vs; }

const AttnVariant *attention_variants(int *count) {
  *count = (int)(sizeof cuda::kAttnVariants / sizeof cuda::kAttnVariants[0]);
  return cuda::kAttnVariants;
}

int launch_attention_combine(const kern::AttnParams &p, const VendorState *vs, void *s) {
  // A programmatic dependent of the attention kernel: scheduled once every attention CTA has
  // reached its epilogue (dev::grid_launch_dependents), it waits in the kernel for that grid to
  // finish, instead of the launch gap after it (the batch-2 decode is a few microseconds long).
  if (vs->combine_dependent)
    return (int)cuda::launch_dependent(kern::sparse_attention_combine_kernel, dim3(p.T, p.H), dim3(128), 0,
                                       cuda::as_stream(s), p);
  kern::sparse_attention_combine_kernel<<<dim3(p.T, p.H), 128, 0, cuda::as_stream(s)>>>(p);
  return (int)cudaGetLastError();
}
int launch_indices_to_slots(const kern::IndicesToSlotsParams &p, void *s) {
  return (int)cuda::indices_to_slots(p, cuda::as_stream(s));
}
int launch_window_indices(const kern::WindowParams &p, void *s) { return (int)cuda::window_indices(p, cuda::as_stream(s)); }
const char *indexer_unsupported(const Device &, const VendorState *, int, int) { return nullptr; }
int launch_indexer(const kern::IndexerParams &p, const Device &d, const VendorState *, void *s, const char **chosen) {
  *chosen = "fused (indexer_fx)";
  return (int)cuda::indexer(p, d.sm_count, cuda::as_stream(s));
}
int launch_topk(const kern::TopkParams &p, const VendorState *vs, void *s, const char **chosen) {
  return (int)cuda::topk(p, vs->topk, cuda::as_stream(s), chosen);
}
int launch_kv_store(const kern::StoreParams &p, int vec, void *s) { return (int)cuda::kv_store(p, vec, cuda::as_stream(s)); }
int launch_kv_gather(const kern::GatherParams &p, int vec, void *s) { return (int)cuda::kv_gather(p, vec, cuda::as_stream(s)); }

}  // namespace gpu
}  // namespace spmla
