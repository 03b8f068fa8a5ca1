// attention_sm90.cuh — the Hopper fast path of sparse attention: warpgroup MMA (wgmma, sm_90a)
// on operands in shared memory. Same contract and partial-result format as the portable kernel
// (backends/common/attention.cuh), which stays the fallback and the cross-check.
//
// CTA = (query token t, block of 64 heads, split s), 2 warpgroups (256 threads). Per tile of 64
// index-list entries:
//   S  = Q K^T       warpgroup w: the 64 heads x keys [32w, 32w + 32)  (wgmma m64n32k16, K = D_qk)
//   softmax          row maxima exchanged between the two warpgroups through shared memory
//   P  -> smem       bf16, both halves, the A operand of the next product
//   O += P V         warpgroup w: the 64 heads x value dims [256w, 256w + 256)  (m64n256k16)
// V is the first 512 columns of the same key tile, read transposed (MN-major), so each key row
// is in shared memory once. Tiles are stored in the 128-byte-swizzled K-major layout: 64-column
// chunks of [64 rows][128 B], chunk c at c * 8 KiB. The next tile is gathered while the current
// one computes: BF16 rows by cp.async straight into the swizzled tile; FP8 rows (V32, V4) are
// held in registers as raw bytes, dequantized into the other buffer, half while QK^T runs and
// half while P V runs, and each half's registers refilled at once with the tile after (about one
// tile of latency to hide). The FP8
// flavor is a template argument (one decoder per kernel keeps the code in the instruction
// cache). FP8_PER_TENSOR and sources of two layouts take the portable kernel.
//
// The compute steps are functions (qk_issue, softmax_tile, pv_issue, attn_epilogue) shared by the
// two-warpgroup kernel (the default) and an experimental warp-specialized kernel at the end.
#pragma once
#include "common/attention.cuh"
#include "common/cache_access.cuh"
#include "common/compat.h"
#include "common/params.h"
#include "wgmma_ops.cuh"

// The kernel bodies exist only in the sm_90a pass; other passes compile an empty kernel that the
// host never launches (it checks the device and the kernel's binary version first).
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SPMLA_SM90A_DEVICE 1
#endif

namespace spmla {
namespace cuda {
namespace sm90 {

constexpr int kBM = 64;        // heads per CTA (the wgmma M)
constexpr int kBN = 64;        // index-list entries per tile
constexpr int kThreads = 256;  // two warpgroups
constexpr int kChunk = kBN * 128;  // bytes of one 64-column chunk of a 64-row bf16 tile
constexpr int kRing = 3;           // tiles whose row addresses are in shared memory at once

template <int D>
struct Smem {
  static constexpr int kTile = (D / 64) * kChunk;  // one 64-row bf16 tile (Q, K buffers)
  static constexpr int kOffQ = 0;
  static constexpr int kOffK = kTile;              // two key buffers
  static constexpr int kOffP = 3 * kTile;          // P: 64 x 64 bf16, one chunk
  static constexpr int kOffRow = kOffP + kChunk;   // [2][64] floats exchanged between warpgroups
  static constexpr int kOffPtr = kOffRow + 2 * kBM * 4;      // [kRing][64] row addresses (0 = no key)
  static constexpr int kOffAux = kOffPtr + kRing * kBN * 8;  // [kRing][64] V4 scale-row addresses (D 512)
  static constexpr int kUsed = kOffAux + (D == 512 ? kRing * kBN * 8 : 0);
  // + alignment slack (swizzle atoms: 1 KiB). D 576 uses exactly Hopper's 227 KiB per block.
  static constexpr int kBytes = kUsed + 1024;
};

// Byte offset of bf16 element e of row r in a swizzled tile.
__device__ __forceinline__ uint32_t swz(int r, int e) {
  return (uint32_t)((e >> 6) * kChunk + r * 128 + ((((e >> 3) & 7) ^ (r & 7)) << 4) + (e & 7) * 2);
}

// Shared-memory matrix descriptor, 128-byte swizzle (PTX ISA, "Matrix Descriptor Format").
__device__ __forceinline__ uint64_t desc_sw128(const void *p, uint32_t lbo, uint32_t sbo) {
  const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
  return (uint64_t)((a & 0x3FFFFu) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFFu) << 16) |
         ((uint64_t)((sbo >> 4) & 0x3FFFu) << 32) | (1ull << 62);
}

// The descriptor of the operand `bytes` further on (a multiple of 16): the start address field is
// the low 14 bits (address >> 4), and shared-memory addresses stay below 2^18, so it is one 32-bit
// add on the low word (no carry). Built once per product from the base pointer, a k-step then
// costs one uniform add instead of rebuilding the descriptor (about 12 uniform instructions per
// wgmma, against about 7.5 in FlashMLA's prefill kernel; docs/KERNEL-NOTES.md, session 9).
__device__ __forceinline__ uint64_t desc_add(uint64_t d, uint32_t bytes) {
  const uint32_t lo = (uint32_t)d + (bytes >> 4), hi = (uint32_t)(d >> 32);
  return ((uint64_t)hi << 32) | lo;
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ __forceinline__ void wg_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }
// Generic-proxy shared-memory writes (st.shared, cp.async) made visible to the async proxy (wgmma).
__device__ __forceinline__ void fence_async_smem() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
// ---- mbarrier and cp.async primitives (PTX ISA: "Parallel Synchronization and Communication
// Instructions: mbarrier", "cp.async.mbarrier.arrive").
__device__ __forceinline__ void mbar_init(uint64_t *b, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(b)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *b) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(smem_u32(b)) : "memory");
}
// Arrives once all of this thread's earlier cp.async have landed (the count was set for it).
__device__ __forceinline__ void mbar_arrive_cp_async(uint64_t *b) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_u32(b)) : "memory");
}
// Waits until the phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(uint64_t *b, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n}\n" ::"r"(smem_u32(b)),
      "r"(parity)
      : "memory");
}
// Arrives and adds `bytes` to the phase's expected transactions (complete_tx of st.async).
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t *b, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(b)), "r"(bytes) : "memory");
}

// Clusters of CTAs (sm_90; PTX ISA "barrier.cluster", "mapa", "st.async", "Distributed shared
// memory"): the cluster variant's two CTAs write each other's key tiles by st.async, each
// completing the reader's mbarrier, and say with a relaxed cluster barrier that a buffer is free.
__device__ __forceinline__ uint32_t cluster_ctarank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}
__device__ __forceinline__ uint32_t mapa_shared(uint32_t a, uint32_t rank) {
  uint32_t d;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(d) : "r"(a), "r"(rank));
  return d;
}
// 16 bytes into the peer's shared memory (cluster address a), completing 16 bytes of the peer's
// mbarrier at cluster address bar: no fence and no barrier between the writer and the reader,
// which waits on its mbarrier (FlashMLA's FP8 decode shares its dequantized tiles this way).
// A generic st.shared::cluster needs fence.proxy.async.shared::cluster and a release, which
// compile to MEMBAR.ALL.GPU: that waits for the raw loads in flight, which must stay in flight.
__device__ __forceinline__ void st_async_v4(uint32_t a, uint4 v, uint32_t bar) {
  asm volatile("st.async.weak.shared::cluster.mbarrier::complete_tx::bytes.v4.b32 [%0], {%1, %2, %3, %4}, [%5];\n" ::"r"(a),
               "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w), "r"(bar)
               : "memory");
}
// Arrives on the peer CTA's mbarrier at cluster address a (this CTA's reads of the buffer it
// guards are done: relaxed, as sm90c2's cluster barrier that frees a buffer; a release at cluster
// scope compiles to MEMBAR.ALL.GPU, which waits for every memory operation of the thread).
__device__ __forceinline__ void mbar_arrive_remote(uint32_t a) {
  asm volatile("mbarrier.arrive.relaxed.cluster.shared::cluster.b64 _, [%0];\n" ::"r"(a) : "memory");
}
// The cluster barrier without ordering (relaxed arrive): it only says "this CTA is past that point"
// (its reads of a buffer are done), so it carries no MEMBAR.
__device__ __forceinline__ void cluster_arrive_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory"); }
// 2^x on the SFU alone (ex2.approx.ftz: relative error about 2^-22; results below 2^-126 flush to
// 0). exp2f without fast-math wraps the same MUFU.EX2 in 6 more instructions (a range check and two
// FMULs for arguments below -126, whose results vanish in bf16 P and in a row sum >= 1): in the
// softmax that was most of the instructions between the warpgroups' hand-offs. 2^-inf = +0.
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm volatile("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
// The row maximum to subtract: -inf (no key in the row yet, so every score is -inf) becomes 0,
// so that ex2(score - m) is 2^-inf = 0 there instead of NaN, with no test per element.
__device__ __forceinline__ float exp_base(float m) { return m == dev::neg_inf() ? 0.f : m; }

// Keeps the compiler from moving accumulator accesses across an asynchronous wgmma.
template <int N>
__device__ __forceinline__ void fence_regs(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// A CTA's (token, first head, split). The host launches the Hopper kernels with the head blocks
// of a token flattened into x, head block fastest (launch_sm90): the CTAs that read the same
// gathered rows (one token's 64-head blocks) run side by side and share them in L2 instead of
// one wave apart (a V3.2 decode batch's rows, 2048 x 656 B per token, do not stay in L2 that long).
struct CtaCoord {
  int t, h0, split;
};
__device__ __forceinline__ CtaCoord cta_coord(const kern::AttnParams &p) {
  const int nhb = (p.H + kBM - 1) / kBM;
  const int x = (int)blockIdx.x, t = x / nhb;
  return CtaCoord{t, (x - t * nhb) * kBM, (int)blockIdx.z};
}

// L2 policies (PTX createpolicy): the gathered key rows are kept (evict_last: a row is read by
// every head block and by every query token that selects it); Q and the output, streamed once
// per CTA (a V3.2 prefill reads 604 MB of Q and writes 537 MB of O), go first (evict_first), so
// that they do not push the cache rows out of L2 (FlashMLA loads its Q with EVICT_FIRST too).
// Not volatile: the compiler may hoist or share them.
__device__ __forceinline__ uint64_t policy_evict_last() {
  uint64_t p;
  asm("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(p));
  return p;
}
__device__ __forceinline__ uint64_t policy_evict_first() {
  uint64_t p;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(p));
  return p;
}
// 16 bytes global -> shared (a shared-space address), zeros when !valid (no bytes are read then),
// with an L2 policy and a 256-byte L2 prefetch (a row's neighbouring sectors come with it).
__device__ __forceinline__ void cp16(uint32_t dst, const void *src, bool valid, uint64_t policy) {
  asm volatile("cp.async.cg.shared.global.L2::cache_hint.L2::256B [%0], [%1], 16, %2, %3;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0), "l"(policy)
               : "memory");
}
// Read-only 16 / 8-byte loads of a cache row (the FP8 paths), kept in L2 as cp16's.
__device__ __forceinline__ uint4 ldg16_keep(const void *src) {
  uint4 v;
  asm("ld.global.nc.L2::cache_hint.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4], %5;\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(src), "l"(policy_evict_last()));
  return v;
}
__device__ __forceinline__ uint2 ldg8_keep(const void *src) {
  uint2 v;
  asm("ld.global.nc.L2::cache_hint.L2::256B.v2.u32 {%0, %1}, [%2], %3;\n"
      : "=r"(v.x), "=r"(v.y)
      : "l"(src), "l"(policy_evict_last()));
  return v;
}
// Output stores, streamed out of L2 first.
__device__ __forceinline__ void st_stream_b32(void *dst, uint32_t v, uint64_t policy) {
  asm volatile("st.global.L2::cache_hint.b32 [%0], %1, %2;\n" ::"l"(dst), "r"(v), "l"(policy) : "memory");
}
__device__ __forceinline__ void st_stream_f32x2(void *dst, float a, float b, uint64_t policy) {
  asm volatile("st.global.L2::cache_hint.v2.f32 [%0], {%1, %2}, %3;\n" ::"l"(dst), "f"(a), "f"(b), "l"(policy)
               : "memory");
}

using Range = kern::TokenRange;  // end0, end1: valid prefixes; [begin, stop): this split's share

// One list entry of a tile (threads 0..63: entry tile_begin + threadIdx.x): its slot id and
// source; slot -1 = no key. Read one iteration before its addresses are needed, so the load of
// the index list (from DRAM in a decode step) is off the critical path.
struct Entry {
  int32_t slot, which;
};
// A 4-byte read-only load when `ok`, else -1, with no branch: a producer thread's several
// entries then go out back to back. Behind an `if`, ptxas issued each load after the previous
// one's use, and sm90pair's producer waited on them one after the other (ncu, session 10: its
// index loads held 12 % of the kernel's stall samples, and the compute warpgroups waited for it).
__device__ __forceinline__ int32_t ldg_or_minus1(const int32_t *src, bool ok) {
  int32_t v;
  asm("{\n.reg .pred p;\nsetp.ne.b32 p, %2, 0;\nmov.b32 %0, -1;\n@p ld.global.nc.b32 %0, [%1];\n}\n"
      : "=r"(v)
      : "l"(src), "r"((int)ok));
  return v;
}
__device__ __forceinline__ Entry tile_entry(const kern::AttnParams &p, int t, const Range &r, int tile_begin, int j) {
  const int v = tile_begin + j;
  const bool ok = v < r.stop;
  Entry e;
  e.which = ok && v >= r.end0 ? 1 : 0;
  const int pos = e.which == 0 ? v : v - r.end0;
  e.slot = ldg_or_minus1(p.idx[e.which] + (int64_t)t * p.idx_stride[e.which] + pos, ok);
  return e;
}

// The V41 instantiation (Layout kV41) reads V41_FP8 and V41_FP4 rows from either source, in any
// pairing (DeepSeek-V4.1: an FP8 window beside the FP4 compressed cache). tile_rows marks an FP4
// row by setting bit 0 of its scale address (scale rows are at least 16-byte aligned).
constexpr int kV41 = kern::kV41FP8;

// Slot s's row in a source with packed pages (the host's CacheDesc.flat_row > 0): one multiply,
// no page split; null past the source (-1, no key, wraps past any limit).
__device__ __forceinline__ const uint8_t *flat_row_at(const uint8_t *base, uint32_t limit, uint32_t flat_row,
                                                      int32_t slot) {
  const uint32_t s = (uint32_t)slot;
  return s < limit ? base + (uint64_t)s * flat_row : nullptr;
}

// The entry's row address and scale-row address (V4 / V41 scales, D 512 only); row null: no key
// (masked, a zero row).
template <int Layout>
__device__ __forceinline__ void entry_addresses(const kern::AttnParams &p, Entry e, const uint8_t *&row,
                                                const uint8_t *&aux) {
  row = aux = nullptr;
  if constexpr (Layout == kern::kBF16 || Layout == kern::kV32) {
    // Packed pages (the host's flat_row): one multiply, no page split. The split below, with its
    // bound and its division branches, cost about 45 instructions a row, more than half of the
    // pair producer's instructions per key pair.
    const kern::CacheDesc &c0 = p.src[0], &c1 = p.src[1];
    const bool x = e.which != 0;
    const int32_t flat = x ? c1.flat_row : c0.flat_row;
    if (flat > 0) {
      row = flat_row_at(x ? c1.base : c0.base, x ? c1.slot_limit : c0.slot_limit, (uint32_t)flat, e.slot);
      return;
    }
  }
  const kern::CacheDesc &c = p.src[e.which];
  if (e.slot >= 0 && (int64_t)e.slot < c.num_slots()) {
    // Only the V41 instantiation reads two layouts (V41_FP8 / V41_FP4, and V4_FP8 beside them);
    // the others read their own layout from both sources (sm90_sources_unsupported).
    const kern::SlotOffsets o =
        Layout == kV41 ? kern::slot_offsets<true>(c, e.slot) : kern::slot_offsets_as<false>(c, e.slot, Layout);
    row = c.base + o.data;
    aux = c.base + o.aux;
    if (Layout == kV41 && c.layout == kern::kV41FP4) aux += 1;
  }
}
// The entry's addresses into the tile's ring slot.
template <int D, int Layout>
__device__ __forceinline__ void tile_rows(const kern::AttnParams &p, Entry e, const uint8_t **rows, const uint8_t **aux,
                                          int j) {
  const uint8_t *d, *a;
  entry_addresses<Layout>(p, e, d, a);
  rows[j] = d;
  if (D == 512) aux[j] = a;
}

// FP8 row geometry in 16-byte units (NoPE units hold 16 fp8 codes, RoPE units 8 bf16), from the
// layout's entry in numerics/kv_layout_traits.h: kNope NoPE units (a unit's scale: unit >>
// kScaleShift), kUnits units in all, the RoPE part at byte kRopeByte (value kRopeElem).
template <class T>
struct Fp8RowsOf {
  static_assert(T::kNope % 16 == 0 && T::kTile % 16 == 0, "whole 16-byte units per tile");
  static constexpr int kNope = T::kNope / 16, kUnits = (T::kNope + 2 * T::kRope) / 16;
  static constexpr int kRopeByte = T::kRopeOffset, kRopeElem = T::kNope;
  static constexpr int kScaleShift = T::kTileLog2 - 4;
};
template <int Layout>
struct Fp8Rows;
template <>
struct Fp8Rows<kern::kV32> : Fp8RowsOf<KvV32> {
  static_assert(kNope == 32 && kUnits == 40 && kRopeByte == 528 && kRopeElem == 512, "V32 rows");
};
template <>
struct Fp8Rows<kern::kV4> : Fp8RowsOf<KvV4> {
  static_assert(kNope == 28 && kUnits == 36 && kRopeByte == 448 && kRopeElem == 448, "V4 rows");
};
// V41 rows: 32 units of 16 values, no RoPE part. A V41_FP8 unit is 16 codes (scale byte
// unit >> 1), a V41_FP4 unit 8 bytes (scale byte = unit), so a warp's 32 consecutive units are
// one row and the FP8/FP4 branch is warp-uniform.
template <>
struct Fp8Rows<kV41> {
  static_assert(kern::KvV41F8T::kTile == 32 && kern::KvV41F4T::kTile == 16 && kern::KvV41F8T::kValues == 512, "V41 rows");
  static constexpr int kNope = 32, kUnits = 32, kRopeByte = 0, kRopeElem = 512, kScaleShift = 1;
};

// Raw bytes of one FP8 tile (or of one of its Parts) held by one of NT threads between the load
// and the dequantization. Thread i of part q holds units i + (q * kPer + k) * NT, k < kPer.
template <int Layout, int NT, int Parts = 1, bool kFp8 = (Layout != kern::kBF16)>
struct Fp8Stage {};  // BF16 tiles need no staging
template <int Layout, int NT, int Parts>
struct Fp8Stage<Layout, NT, Parts, true> {
  static constexpr int kPer = kBN * Fp8Rows<Layout>::kUnits / NT / Parts;
  static_assert(kBN * Fp8Rows<Layout>::kUnits % (NT * Parts) == 0, "units must divide evenly");
  uint4 raw[kPer];
  // The unit's scale as loaded (V32: fp32 bits, V4 / V41_FP8: the ue8m0 byte, V41_FP4: the E4M3
  // byte), decoded only when the unit is dequantized: any instruction on it at load time would
  // wait for the load right there.
  uint32_t scale[kPer];
  // Bit i: unit i holds V41_FP4 codes. Kept apart from the loaded words for the same reason: the
  // flag OR-ed into the scale byte (session 9) made each FP4 unit's load wait for its scale at
  // once (ncu, session 10: 22 % of the V4.1 decode's stall samples on those ORs).
  uint32_t fp4 = 0u;
};

// Unit c of a row (null: no key, zeros): its raw 16 bytes (V41_FP4: 8) and its scale word;
// returns whether it holds V41_FP4 codes (from the row's scale address, not from memory).
template <int Layout>
__device__ __forceinline__ bool fp8_load_unit(const uint8_t *row, const uint8_t *aux, int c, uint4 &v, uint32_t &s) {
  using G = Fp8Rows<Layout>;
  v = make_uint4(0u, 0u, 0u, 0u);
  s = 0u;
  if (row && Layout == kV41) {
    const uintptr_t at = reinterpret_cast<uintptr_t>(aux);
    const uint8_t *sc = reinterpret_cast<const uint8_t *>(at & ~uintptr_t(1));
    if (at & 1u) {  // V41_FP4
      const uint2 w = ldg8_keep(row + c * 8);
      v = make_uint4(w.x, w.y, 0u, 0u);
      s = __ldg(sc + c);
      return true;
    } else {
      v = ldg16_keep(row + c * 16);
      s = __ldg(sc + (c >> G::kScaleShift));
    }
  } else if (row) {
    if (c < G::kNope) {
      v = ldg16_keep(row + c * 16);
      if (Layout == kern::kV32)
        s = __ldg(reinterpret_cast<const uint32_t *>(row + KvV32::kScaleOffset) + (c >> G::kScaleShift));
      else
        s = __ldg(aux + (c >> G::kScaleShift));
    } else {
      v = ldg16_keep(row + G::kRopeByte + (c - G::kNope) * 16);
    }
  }
  return false;
}
// Records unit i's FP4 flag in a stage's bit set (i a compile-time index after unrolling).
__device__ __forceinline__ void set_fp4_bit(uint32_t &bits, int i, bool fp4) {
  bits = (bits & ~(1u << i)) | ((uint32_t)fp4 << i);
}

// fp8_load / fp8_store: the stage's units [I0, I1) (default: all of them).
template <int I0 = 0, int I1 = -1, int Layout, int NT, int Parts>
__device__ __forceinline__ void fp8_load(Fp8Stage<Layout, NT, Parts> &st, const uint8_t *const *rows,
                                         const uint8_t *const *aux, int ti, int part = 0) {
  using G = Fp8Rows<Layout>;
  constexpr int kPer = Fp8Stage<Layout, NT, Parts>::kPer;
#pragma unroll
  for (int i = I0; i < (I1 < 0 ? kPer : I1); ++i) {
    const int u = ti + (part * kPer + i) * NT;
    const int r = u / G::kUnits, c = u - r * G::kUnits;
    const bool fp4 =
        fp8_load_unit<Layout>(rows[r], Layout == kV41 || Layout == kern::kV4 ? aux[r] : nullptr, c, st.raw[i], st.scale[i]);
    if (Layout == kV41) set_fp4_bit(st.fp4, i, fp4);
  }
}

// 8 codes times the scale: fp32 product, one rounding to bf16 (as the portable kernel). A
// variant on the integer and bf16x2 pipes (code bits shifted into a bf16, two bf16x2 products)
// measured slower on the H200 (V3.2 prefill 13.1 -> 14.3 ms), so the conversion pipe stays.
__device__ __forceinline__ uint4 dequant8_bf16(uint32_t w0, uint32_t w1, float s, int flavor) {
  float f[8];
  dev::fp8x4_to_f32(w0, flavor, f);
  dev::fp8x4_to_f32(w1, flavor, f + 4);
  return make_uint4(dev::pack_bf16x2(f[0] * s, f[1] * s), dev::pack_bf16x2(f[2] * s, f[3] * s),
                    dev::pack_bf16x2(f[4] * s, f[5] * s), dev::pack_bf16x2(f[6] * s, f[7] * s));
}

// 8 E2M1 codes (the low nibble first) times an E4M3 scale s2 (the scale as a bf16 pair), as 8
// bf16. A code's bf16 bits come from two byte tables indexed by its magnitude (prmt: 4 codes per
// instruction), its sign is OR-ed into the high byte, and the product is one bf16x2 multiply: a
// code (at most 2 significant bits) times an E4M3 scale (4) is exact in bf16, so this equals the
// fp32 product rounded to bf16 (the CPU reference's rule) bit for bit, -0 and NaN included. 19
// instructions where decoding each code in fp32 took about 76 (V4.1 decode from the FP4 cache ran
// at 0.65x the V4_FP8 rate on the H100); tools/sim/fp4_prmt.py checks the tables on every code.
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
  uint32_t d;
  asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
  return d;
}
__device__ __forceinline__ uint32_t bf16x2_mul(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("mul.rn.bf16x2 %0, %1, %2;\n" : "=r"(d) : "r"(a), "r"(b));
  return d;
}
__device__ __forceinline__ uint4 dequant_fp4x8_bf16(uint32_t w, uint32_t s2) {
  // bf16 high / low byte of magnitude 0..7 (0, 0.5, 1, 1.5, 2, 3, 4, 6), bytes 0..3 then 4..7.
  constexpr uint32_t kHi0 = 0x3F3F3F00u, kHi1 = 0x40404040u, kLo0 = 0xC0800000u, kLo1 = 0xC0804000u;
  const uint32_t m = w & 0x77777777u, m2 = m >> 16;
  // Sign bytes: code i's sign (bit 4i + 3) at bit 7 of byte i (w << 4 holds codes 0, 2, 4, 6 there).
  const uint32_t w4 = w << 4;
  const uint32_t hi_a = prmt(kHi0, kHi1, m) | (prmt(w4, w, 0x5140u) & 0x80808080u);
  const uint32_t hi_b = prmt(kHi0, kHi1, m2) | (prmt(w4, w, 0x7362u) & 0x80808080u);
  const uint32_t lo_a = prmt(kLo0, kLo1, m), lo_b = prmt(kLo0, kLo1, m2);
  return make_uint4(bf16x2_mul(prmt(lo_a, hi_a, 0x5140u), s2), bf16x2_mul(prmt(lo_a, hi_a, 0x7362u), s2),
                    bf16x2_mul(prmt(lo_b, hi_b, 0x5140u), s2), bf16x2_mul(prmt(lo_b, hi_b, 0x7362u), s2));
}
// An E4M3FN scale byte as a bf16 pair (every E4M3 value, subnormals and NaN included, is a bf16
// value): the hardware E4M3 -> f16 conversion, then f16 -> f32 -> bf16, all exact.
__device__ __forceinline__ uint32_t e4m3_scale_bf16x2(uint32_t b) {
  uint32_t h;
  asm("{\n .reg .b16 lo;\n cvt.u16.u32 lo, %1;\n cvt.rn.f16x2.e4m3x2 %0, lo;\n}\n" : "=r"(h) : "r"(b & 0xFFu));
  const float f = __half2float(__ushort_as_half((unsigned short)(h & 0xFFFFu)));
  return dev::pack_bf16x2(f, f);
}

// Unit c of row r dequantized into the swizzled bf16 tile kt (RoPE units copied as they are).
// kRemote: the unit also goes to the peer CTA's copy of the tile, at cluster address rkt (the
// tile's start there; both CTAs lay out their shared memory alike), completing on the peer's
// mbarrier at cluster address rbar.
template <int Layout, bool kRemote = false>
__device__ __forceinline__ void fp8_store_unit(uint4 v, uint32_t scale, bool fp4, uint8_t *kt, int r, int c,
                                               int flavor, uint32_t rkt = 0, uint32_t rbar = 0) {
  using G = Fp8Rows<Layout>;
  if (c < G::kNope) {
    // A unit of a row without a key holds zeros (scale bits 0): it stays 0 either way.
    uint4 a, b;
    if (Layout == kV41 && fp4) {
      const uint32_t s2 = e4m3_scale_bf16x2(scale);
      a = dequant_fp4x8_bf16(v.x, s2);
      b = dequant_fp4x8_bf16(v.y, s2);
    } else {
      const float sc = Layout == kern::kV32 ? __uint_as_float(scale) : dev::ue8m0_to_f32(scale);
      a = dequant8_bf16(v.x, v.y, sc, flavor);
      b = dequant8_bf16(v.z, v.w, sc, flavor);
    }
    // Units of odd 64-column chunks store their halves in the other order: the warp's first
    // store then covers all eight 16-byte bank groups (no 2-way conflict).
    const int e0 = c * 16, odd = (c >> 2) & 1;
    if constexpr (kRemote) {
      const int o0 = swz(r, e0 + 8 * odd), o1 = swz(r, e0 + 8 * (odd ^ 1));
      *reinterpret_cast<uint4 *>(kt + o0) = odd ? b : a;
      *reinterpret_cast<uint4 *>(kt + o1) = odd ? a : b;
      st_async_v4(rkt + o0, odd ? b : a, rbar);
      st_async_v4(rkt + o1, odd ? a : b, rbar);
    } else {
      *reinterpret_cast<uint4 *>(kt + swz(r, e0 + 8 * odd)) = odd ? b : a;
      *reinterpret_cast<uint4 *>(kt + swz(r, e0 + 8 * (odd ^ 1))) = odd ? a : b;
    }
  } else {
    const int o = swz(r, G::kRopeElem + (c - G::kNope) * 8);
    *reinterpret_cast<uint4 *>(kt + o) = v;
    if constexpr (kRemote) st_async_v4(rkt + o, v, rbar);
  }
}

template <int I0 = 0, int I1 = -1, bool kRemote = false, int Layout, int NT, int Parts>
__device__ __forceinline__ void fp8_store(const Fp8Stage<Layout, NT, Parts> &st, uint8_t *kt, int flavor, int ti,
                                          int part = 0, uint32_t rkt = 0, uint32_t rbar = 0) {
  using G = Fp8Rows<Layout>;
  constexpr int kPer = Fp8Stage<Layout, NT, Parts>::kPer;
#pragma unroll
  for (int i = I0; i < (I1 < 0 ? kPer : I1); ++i) {
    const int u = ti + (part * kPer + i) * NT;
    const int r = u / G::kUnits, c = u - r * G::kUnits;
    fp8_store_unit<Layout, kRemote>(st.raw[i], st.scale[i], (st.fp4 >> i) & 1u, kt, r, c, flavor, rkt, rbar);
  }
}

// Units [I0, I1) of the staged tile dequantized into buffer kt and made visible to wgmma, then, if
// `refill`, the stage's same units reloaded with the next tile's raw bytes (rows, aux).
// kRemote: the units go to the peer CTA's copy too (cluster address rkt, completing on its
// mbarrier rbar).
template <int I0, int I1, bool kRemote = false, int Layout, int NT>
__device__ __forceinline__ void fp8_store_refill(Fp8Stage<Layout, NT> &st, uint8_t *kt, int flavor, int ti,
                                                 const uint8_t *const *rows, const uint8_t *const *aux, bool refill,
                                                 uint32_t rkt = 0, uint32_t rbar = 0) {
  fp8_store<I0, I1, kRemote>(st, kt, flavor, ti, 0, rkt, rbar);
  fence_async_smem();
  if (refill) fp8_load<I0, I1>(st, rows, aux, ti);
}
// Bytes of bf16 the CTA of cluster rank `rank` writes into its peer's copy of each tile in the
// sm90c2 kernel (its virtual threads' units: 32 B per NoPE unit, 16 per RoPE unit): the peer's
// expected transactions for that tile.
template <int Layout, int NT>
constexpr int c2_unit_bytes(int rank) {
  int bytes = 0;
  for (int ti = rank * (NT / 2); ti < (rank + 1) * (NT / 2); ++ti)
    for (int i = 0; i < Fp8Stage<Layout, NT>::kPer; ++i)
      bytes += (ti + i * NT) % Fp8Rows<Layout>::kUnits < Fp8Rows<Layout>::kNope ? 32 : 16;
  return bytes;
}

// BF16 rows: cp.async into the swizzled tile; rows without a key become zeros (P is 0 there,
// and 0 * garbage could be NaN).
// kHint false: plain cp.async (no L2 policy, no prefetch), for the sm90ws producer (see there).
template <int D, int NT, bool kHint = true>
__device__ __forceinline__ void bf16_issue(uint8_t *kt, const uint8_t *const *rows, int ti, uint64_t keep) {
  constexpr int kUnits = D / 8;
  for (int u = ti; u < kBN * kUnits; u += NT) {
    const int r = u / kUnits, c = u - r * kUnits;
    uint8_t *dst = kt + swz(r, c * 8);
    if (rows[r] && kHint)
      cp16(smem_u32(dst), rows[r] + c * 16, true, keep);
    else if (rows[r])
      dev::async_copy16(dst, rows[r] + c * 16);
    else
      *reinterpret_cast<uint4 *>(dst) = make_uint4(0u, 0u, 0u, 0u);
  }
  dev::async_commit();
}

// Q rows h0 .. h0+63 into the swizzled tile by NT threads (zero rows past H); one commit group.
// kPolicy false: plain cp.async (the cluster kernel: with the L2 policy, ptxas 13.0.88 compiled
// this copy as `LDGSTS [R+UR0], desc[UR1]` with uniform registers it never writes, the form that
// stopped sm90ws with an illegal instruction in session 10; tools/sass_check.py flags it).
template <int D, int NT, bool kPolicy = true>
__device__ __forceinline__ void load_q(const kern::AttnParams &p, uint8_t *qs, int t, int h0, int ti, uint64_t once) {
  const uint16_t *qt = p.q + (int64_t)t * p.q_stride_t;
  constexpr int kUnits = D / 8;
  for (int u = ti; u < kBM * kUnits; u += NT) {
    const int r = u / kUnits, c = u - r * kUnits;
    uint8_t *dst = qs + swz(r, c * 8);
    if (h0 + r < p.H) {
      if constexpr (kPolicy)
        cp16(smem_u32(dst), qt + (int64_t)(h0 + r) * p.q_stride_h + c * 8, true, once);
      else
        dev::async_copy16(dst, qt + (int64_t)(h0 + r) * p.q_stride_h + c * 8);
    } else
      *reinterpret_cast<uint4 *>(dst) = make_uint4(0u, 0u, 0u, 0u);
  }
  dev::async_commit();
}

// Named barrier id over n threads: wait for all of them, or arrive without waiting.
__device__ __forceinline__ void bar_sync_n(int id, int n) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void bar_arrive_n(int id, int n) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}

// A barrier of the two compute warpgroups: the whole CTA, or (with a producer warpgroup beside
// them) named barrier kBarMath of their 256 threads.
constexpr int kBarMath = 5;
template <bool kNamed>
__device__ __forceinline__ void math_sync() {
  if (kNamed)
    asm volatile("bar.sync %0, %1;\n" ::"n"(kBarMath), "n"(256) : "memory");
  else
    __syncthreads();
}

// One compute thread's view: warpgroup wg (0, 1), accumulator rows r0 and r0 + 8, quad lane.
struct MathThread {
  int wg, quad, r0;
  __device__ __forceinline__ explicit MathThread(int tid) {
    wg = tid >> 7;
    const int lane = tid & 31;
    quad = lane & 3;
    r0 = ((tid & 127) >> 5) * 16 + (lane >> 2);
  }
};

// The running state of a compute thread: O (its warpgroup's 256 value dims of its two rows), and
// the rows' running maximum (log2 units) and sum of its warpgroup's columns.
struct MathAcc {
  float o[128];
  float m[2], l[2];
  __device__ __forceinline__ void init() {
#pragma unroll
    for (int i = 0; i < 128; ++i) o[i] = 0.f;
    m[0] = m[1] = dev::neg_inf();
    l[0] = l[1] = 0.f;
  }
  // O's two rows times f[0] and f[1].
  __device__ __forceinline__ void scale_o(const float (&f)[2]) {
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      o[4 * j] *= f[0];
      o[4 * j + 1] *= f[0];
      o[4 * j + 2] *= f[1];
      o[4 * j + 3] *= f[1];
    }
  }
};

// S = Q K^T for this warpgroup's 32 keys of the tile: issued and committed, not waited for.
template <int D>
__device__ __forceinline__ void qk_issue(float (&s)[16], const uint8_t *qs, const uint8_t *kt, int wg) {
#pragma unroll
  for (int i = 0; i < 16; ++i) s[i] = 0.f;
  const uint64_t qa = desc_sw128(qs, 16, 1024), kb = desc_sw128(kt + wg * 32 * 128, 16, 1024);
  wg_fence();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const int ch = kk >> 2, ko = (kk & 3) * 32;
    const uint64_t da = desc_add(qa, ch * kChunk + ko);
    const uint64_t db = desc_add(kb, ch * kChunk + ko);
    wgmma_m64n32k16_ss(s, da, db, kk > 0);
  }
  wg_commit();
}

// The row values of a quad (the 4 threads that hold one accumulator row), combined.
__device__ __forceinline__ void quad_max(float (&x)[2]) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    x[i] = fmaxf(x[i], dev::shfl_xor(x[i], 1));
    x[i] = fmaxf(x[i], dev::shfl_xor(x[i], 2));
  }
}
__device__ __forceinline__ void quad_sum(float (&x)[2]) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    x[i] += dev::shfl_xor(x[i], 1);
    x[i] += dev::shfl_xor(x[i], 2);
  }
}

// The factor that moves O and the row sums from row maximum m_old to m_new (1 while the row has
// no key yet: both are -inf).
__device__ __forceinline__ float rescale_factor(float m_old, float m_new) {
  return m_new == dev::neg_inf() ? 1.f : exp2f(m_old - m_new);
}

// Online softmax of one tile's scores (both warpgroups; two compute barriers): scale to log2
// units, mask the entries without a key, exchange the row maxima, P = exp2(S - m) as bf16 into
// shared memory (the A operand of P V), update the row sums and rescale O.
template <bool kNamed>
__device__ __forceinline__ void softmax_tile(float (&s)[16], MathAcc &acc, const MathThread &th,
                                             const uint8_t *const *rows_cur, float *xrow, uint8_t *ps, float sl2) {
  const int wg = th.wg, quad = th.quad, r0 = th.r0;
  float mx[2] = {dev::neg_inf(), dev::neg_inf()};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int col = wg * 32 + j * 8 + quad * 2 + e;
      const bool valid = rows_cur[col] != nullptr;
      s[4 * j + e] = valid ? s[4 * j + e] * sl2 : dev::neg_inf();
      s[4 * j + 2 + e] = valid ? s[4 * j + 2 + e] * sl2 : dev::neg_inf();
      mx[0] = fmaxf(mx[0], s[4 * j + e]);
      mx[1] = fmaxf(mx[1], s[4 * j + 2 + e]);
    }
  }
  quad_max(mx);
  if (quad == 0) {
    xrow[wg * kBM + r0] = mx[0];
    xrow[wg * kBM + r0 + 8] = mx[1];
  }
  math_sync<kNamed>();
  float alpha[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = r0 + 8 * i;
    const float m_new = fmaxf(acc.m[i], fmaxf(xrow[r], xrow[kBM + r]));
    alpha[i] = m_new == dev::neg_inf() ? 1.f : ex2(acc.m[i] - m_new);
    acc.m[i] = m_new;
  }
  float sum[2] = {0.f, 0.f};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const float a = s[4 * j + 2 * i], b = s[4 * j + 2 * i + 1];
      const float pa = ex2(a - exp_base(acc.m[i])), pb = ex2(b - exp_base(acc.m[i]));
      sum[i] += pa + pb;
      const int r = r0 + 8 * i, col = wg * 32 + j * 8 + quad * 2;
      *reinterpret_cast<uint32_t *>(ps + swz(r, col)) = dev::pack_bf16x2(pa, pb);
    }
  }
  quad_sum(sum);
#pragma unroll
  for (int i = 0; i < 2; ++i) acc.l[i] = acc.l[i] * alpha[i] + sum[i];
  fence_async_smem();
  // Rescale O only where a row maximum moved (most tiles of a long list leave it alone).
  if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
    acc.scale_o(alpha);
  }
  math_sync<kNamed>();
}

// O += P V for this warpgroup's 256 value dims (V = the key tile read transposed): issued and
// committed, not waited for.
__device__ __forceinline__ void pv_issue(float (&o)[128], const uint8_t *ps, const uint8_t *kt, int wg) {
  const uint64_t pa = desc_sw128(ps, 16, 1024), vb = desc_sw128(kt + wg * 4 * kChunk, kChunk, 1024);
  wg_fence();
#pragma unroll
  for (int kk = 0; kk < kBN / 16; ++kk) {
    wgmma_m64n256k16_ss_tb(o, desc_add(pa, kk * 32), desc_add(vb, kk * 2048), 1);
  }
  wg_commit();
}

// Row sums of both warpgroups, lse, max logits (kern::attn_row_stats), the normalized output (or
// the split's partials).
template <bool kNamed>
__device__ __forceinline__ void attn_epilogue(const kern::AttnParams &p, const MathAcc &acc, const MathThread &th,
                                              float *xrow, int t, int h0, int split) {
  // The combine (a programmatic dependent launch) may be scheduled once every CTA is here; it
  // waits for the whole grid before it reads a partial.
  dev::grid_launch_dependents();
  const int wg = th.wg, quad = th.quad, r0 = th.r0;
  if (quad == 0) {
    xrow[wg * kBM + r0] = acc.l[0];
    xrow[wg * kBM + r0 + 8] = acc.l[1];
  }
  math_sync<kNamed>();
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = r0 + 8 * i, h = h0 + r;
    if (h < p.H) {
      const kern::AttnRowStats rs = kern::attn_row_stats(p, h, acc.m[i], xrow[r] + xrow[kBM + r]);
      const float f = rs.f;
      if (wg == 0 && quad == 0) kern::attn_row_write_stats(p, t, h, split, rs);
      if (p.num_splits > 1) {
        // Partials are read back by the combine kernel right after: normal priority.
        const int64_t pi = ((int64_t)split * p.T + t) * p.H + h;
        float *dst = p.part_o + pi * kern::kDV + wg * 256 + quad * 2;
#pragma unroll
        for (int j = 0; j < 32; ++j)
          *reinterpret_cast<float2 *>(dst + j * 8) = make_float2(acc.o[4 * j + 2 * i] * f, acc.o[4 * j + 2 * i + 1] * f);
      } else {
        uint16_t *dst = p.out + (int64_t)t * p.out_stride_t + (int64_t)h * p.out_stride_h + wg * 256 + quad * 2;
        // Pairs of bf16 as one 4-byte store where the output allows it (the usual contiguous case).
        if ((reinterpret_cast<uintptr_t>(dst) & 3u) == 0) {
          const uint64_t once = policy_evict_first();
#pragma unroll
          for (int j = 0; j < 32; ++j)
            st_stream_b32(dst + j * 8, dev::pack_bf16x2(acc.o[4 * j + 2 * i] * f, acc.o[4 * j + 2 * i + 1] * f), once);
        } else {
#pragma unroll
          for (int j = 0; j < 32; ++j) {
            const uint32_t v = dev::pack_bf16x2(acc.o[4 * j + 2 * i] * f, acc.o[4 * j + 2 * i + 1] * f);
            dst[j * 8] = (uint16_t)(v & 0xffffu);
            dst[j * 8 + 1] = (uint16_t)(v >> 16);
          }
        }
      }
    }
  }
}

// The CTA's shared memory, aligned to the swizzle atoms.
template <int D>
struct SmemView {
  uint8_t *base, *qs, *ps;
  float *xrow;
  const uint8_t **rows, **auxs;
  __device__ __forceinline__ explicit SmemView(uint8_t *raw) {
    using S = Smem<D>;
    // Pointer arithmetic on the shared array (no integer round trip), so that the compiler
    // knows every derived pointer is shared memory and emits ld/st.shared, not generic accesses.
    base = raw + ((1024u - ((uint32_t)__cvta_generic_to_shared(raw) & 1023u)) & 1023u);
    qs = base + S::kOffQ;
    ps = base + S::kOffP;
    xrow = reinterpret_cast<float *>(base + S::kOffRow);
    rows = reinterpret_cast<const uint8_t **>(base + S::kOffPtr);
    auxs = reinterpret_cast<const uint8_t **>(base + S::kOffAux);
  }
  __device__ __forceinline__ uint8_t *ktile(int b) const { return base + Smem<D>::kOffK + b * Smem<D>::kTile; }
  // The ring slot (one of kRing) of tile i's row addresses and V4 scale-row addresses.
  __device__ __forceinline__ const uint8_t **rows_of(int i) const { return rows + (i % kRing) * kBN; }
  __device__ __forceinline__ const uint8_t **auxs_of(int i) const { return auxs + (i % kRing) * kBN; }
};

// The two-warpgroup kernel's split of a tile's FP8 units between the QK^T and the P V phase.
template <int Layout, int NT = kThreads>
constexpr int fp8_half() {
  if constexpr (Layout == kern::kBF16)
    return 0;
  else
    return Fp8Stage<Layout, NT>::kPer / 2;
}

// kCluster 2 (variant "sm90c2", FP8 sources): the CTAs of a token's two head blocks form a cluster
// and share each key tile's dequantization (FlashMLA's sm90 FP8 decode shares it the same way;
// written anew here). Rank k of the pair loads and dequantizes the units of "virtual threads"
// k * 256 + tid of 512 (half the tile) and stores them into its own tile and, by st.async, into
// the peer's, so each CTA does half of the loads and of the FP8 decoding, which bound the FP8
// decode. Synchronisation, per key buffer b:
//   - the peer's half of the tile in b: mbarrier kfull[b] (this CTA's thread 0 arrives with the
//     bytes expected, the peer's st.async complete them); read before each QK^T;
//   - this CTA's half: generic stores, the proxy fence and __syncthreads, as in the plain kernel;
//   - the buffer free again: a relaxed cluster barrier, arrived at the end of an iteration (both
//     products done) and waited on before the next iteration's stores into the other CTA.
// Both CTAs have the same token and split, so the same tiles and the same barrier counts.
template <int D, int Layout, int Flavor, int kCluster = 1>
__global__ void __launch_bounds__(kThreads, 1) sparse_attention_sm90_kernel(const kern::AttnParams p) {
#if defined(SPMLA_SM90A_DEVICE)
  constexpr bool kFp8 = Layout != kern::kBF16;
  constexpr bool kC2 = kCluster == 2;
  static_assert(kCluster == 1 || (kC2 && kFp8), "clusters share FP8 dequantization only");
  constexpr int kNT = kThreads * kCluster;  // threads that share one tile's FP8 units
  extern __shared__ uint8_t smem_raw[];
  const SmemView<D> sm(smem_raw);
  const int tid = threadIdx.x;
  const MathThread th(tid);
  const CtaCoord cta = cta_coord(p);
  const int t = cta.t, h0 = cta.h0, split = cta.split;
  constexpr int flavor = Flavor;  // one FP8 decoder per instantiation (code size)

  // kC2: the two mbarriers sit in the alignment slack (D 576 fills the rest of the 227 KiB):
  // before the aligned base if the slack there holds them, else after the used bytes. Both CTAs
  // have the same shared addresses, so the peer's are at the same offsets.
  uint64_t *kfull = nullptr;
  uint32_t rank = 0u, rk0 = 0u, rk1 = 0u, rb0 = 0u, rb1 = 0u;
  if constexpr (kC2) {
    const bool before = sm.base - smem_raw >= 16;
    kfull = reinterpret_cast<uint64_t *>(before ? smem_raw : sm.base + Smem<D>::kUsed);
    if (tid == 0) {
      mbar_init(kfull, 1);
      mbar_init(kfull + 1, 1);
      asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    // The peer may write this CTA's tiles only once it runs and its mbarriers exist: arrive now,
    // wait before the first store.
    cluster_arrive_relaxed();
    rank = cluster_ctarank();
    rk0 = mapa_shared(smem_u32(sm.ktile(0)), rank ^ 1u);  // (scalars: an indexed array went to local memory)
    rk1 = mapa_shared(smem_u32(sm.ktile(1)), rank ^ 1u);
    rb0 = mapa_shared(smem_u32(kfull), rank ^ 1u);
    rb1 = mapa_shared(smem_u32(kfull + 1), rank ^ 1u);
  }
  const int vt = (int)rank * kThreads + tid;  // this thread's share of the tile's units
  // Bytes the peer writes into this CTA's copy of each tile.
  uint32_t peer_bytes = 0u;
  if constexpr (kC2) {
    constexpr uint32_t kB0 = c2_unit_bytes<Layout, kNT>(0), kB1 = c2_unit_bytes<Layout, kNT>(1);
    static_assert(kB0 + kB1 == kBN * D * 2, "the two halves make one bf16 tile");
    peer_bytes = rank ? kB0 : kB1;
  }

  load_q<D, kThreads, !kC2>(p, sm.qs, t, h0, tid, kC2 ? 0ull : policy_evict_first());
  const Range range = kern::token_range<kBN>(p, t, split);
  const int ntiles = (range.stop - range.begin + kBN - 1) / kBN;
  Entry ahead{-1, 0};  // threads 0..63: the entry of tile it+3, read during iteration it-1
  if (tid < kBN) {
    const Entry e0 = tile_entry(p, t, range, range.begin, tid);
    const Entry e1 = tile_entry(p, t, range, range.begin + kBN, tid);
    const Entry e2 = tile_entry(p, t, range, range.begin + 2 * kBN, tid);
    ahead = tile_entry(p, t, range, range.begin + 3 * kBN, tid);
    tile_rows<D, Layout>(p, e0, sm.rows_of(0), sm.auxs_of(0), tid);
    tile_rows<D, Layout>(p, e1, sm.rows_of(1), sm.auxs_of(1), tid);
    tile_rows<D, Layout>(p, e2, sm.rows_of(2), sm.auxs_of(2), tid);
  }
  __syncthreads();
  // Tile 0 into buffer 0 now; FP8: tile 1's raw bytes into registers (stored during iteration 0).
  Fp8Stage<Layout, kNT> st;
  constexpr int kFp8Half = fp8_half<Layout, kNT>();
  if constexpr (kC2) cluster_wait();
  if (ntiles > 0) {
    if constexpr (kFp8) {
      fp8_load(st, sm.rows_of(0), sm.auxs_of(0), vt);
      if (kC2 && tid == 0) mbar_arrive_expect_tx(kfull, peer_bytes);
      fp8_store<0, -1, kC2>(st, sm.ktile(0), flavor, vt, 0, rk0, rb0);
      if (ntiles > 1) fp8_load(st, sm.rows_of(1), sm.auxs_of(1), vt);
    } else {
      bf16_issue<D, kThreads>(sm.ktile(0), sm.rows_of(0), tid, policy_evict_last());
    }
  }
  dev::async_wait_all();
  fence_async_smem();
  __syncthreads();

  const float sl2 = p.scale * kern::kLog2e;
  MathAcc acc;
  acc.init();

  // Iteration it: tile it is in buffer it & 1; ring slot rows_of(s) holds the row addresses of tile
  // s, written in iteration s-3 (the prologue for tiles 0..2). While QK^T of tile it runs, tile
  // it+1 goes into the other buffer (free since the previous P V): BF16 by cp.async, FP8 from
  // the raw bytes in registers, which are dequantized and stored, and the registers are at once
  // refilled with tile it+2's raw bytes, so their loads have this tile's softmax, its P V and
  // the next QK^T to land. During P V the first 64 threads write tile it+3's addresses into the
  // slot of tile it (its mask was read before the first softmax barrier).
  for (int it = 0; it < ntiles; ++it) {
    const int buf = it & 1;
    const uint8_t *kt = sm.ktile(buf);
    const bool more = it + 1 < ntiles;

    if constexpr (kC2) mbar_wait(kfull + buf, (uint32_t)(it >> 1) & 1u);  // the peer's half of tile it
    float s[16];
    qk_issue<D>(s, sm.qs, kt, th.wg);
    // kC2: the peer is done with its copy of the other buffer (its iteration it-1).
    if (kC2 && it > 0) cluster_wait();
    if (more) {
      if constexpr (kFp8) {
        // The first half of tile it+1's units now (under QK^T), the second under P V: the other
        // buffer is free during both, and the dequantization is hidden under both products
        // instead of overrunning the first. Each half's registers are refilled with tile it+2's.
        if (kC2 && tid == 0) mbar_arrive_expect_tx(kfull + (buf ^ 1), peer_bytes);
        fp8_store_refill<0, kFp8Half, kC2>(st, sm.ktile(buf ^ 1), flavor, vt, sm.rows_of(it + 2), sm.auxs_of(it + 2),
                                           it + 2 < ntiles, buf ? rk0 : rk1, buf ? rb0 : rb1);
      } else {
        bf16_issue<D, kThreads>(sm.ktile(buf ^ 1), sm.rows_of(it + 1), tid, policy_evict_last());
      }
    }
    wg_wait0();
    fence_regs(s);

    softmax_tile<false>(s, acc, th, sm.rows_of(it), sm.xrow, sm.ps, sl2);

    pv_issue(acc.o, sm.ps, kt, th.wg);
    if constexpr (kFp8) {
      if (more)
        fp8_store_refill<kFp8Half, -1, kC2>(st, sm.ktile(buf ^ 1), flavor, vt, sm.rows_of(it + 2),
                                            sm.auxs_of(it + 2), it + 2 < ntiles, buf ? rk0 : rk1, buf ? rb0 : rb1);
    }
    if (tid < kBN && it + 3 < ntiles) {
      tile_rows<D, Layout>(p, ahead, sm.rows_of(it), sm.auxs_of(it), tid);  // tile it+3 takes tile it's slot
      ahead = tile_entry(p, t, range, range.begin + (it + 4) * kBN, tid);
    }
    wg_wait0();
    fence_regs(acc.o);
    if (!kFp8 && more) dev::async_wait_all();
    if (!kFp8) fence_async_smem();
    __syncthreads();
    if constexpr (kC2) cluster_arrive_relaxed();  // done with buffer buf (both products waited)
  }
  // kC2: the last arrive's wait, so that neither CTA leaves while the other may still write to it.
  if (kC2 && ntiles > 0) cluster_wait();

  attn_epilogue<false>(p, acc, th, sm.xrow, t, h0, split);
#endif
}

// ---------------------------------------------------------------------------------------------
// Warp-specialized variant (EXPERIMENTAL; built with SPMLA_CUDA_SM90_WS, selected only by
// SPMLA_ATTENTION_VARIANT=sm90ws): passes the GPU tier, but is slower than the two-warpgroup kernel (its producer exposes half a tile's
// load latency; docs/KERNEL-NOTES.md has the times). The same two compute warpgroups and tile
// algorithm, plus a third,
// producer warpgroup that gathers (and dequantizes) the next tile while the compute warpgroups
// work, so the gather leaves their critical path. Registers move from the producer to the
// compute warpgroups with setmaxnreg. Handoffs through named barriers, one pair per buffer:
//   kBarFull + b   the producer filled buffer b (128 arrive, the 256 compute threads wait)
//   kBarEmpty + b  the compute warpgroups are done with buffer b (256 arrive, the producer waits)
// The producer also writes the ring slot of a tile's row addresses before filling its buffer.
constexpr int kWsThreads = 384;
constexpr int kBarFull = 1, kBarEmpty = 3, kBarProd = 6;  // kBarMath = 5 (compute warpgroups)
constexpr int kProdRegs = 120, kMathRegs = 192;            // 128 * 120 + 256 * 192 = 64512 of 65536
static_assert(128 * kProdRegs + 256 * kMathRegs <= 65536, "register file");

template <int D, int Layout, int Flavor>
__global__ void __launch_bounds__(kWsThreads, 1) sparse_attention_sm90_ws_kernel(const kern::AttnParams p) {
#if defined(SPMLA_SM90A_DEVICE)
  constexpr bool kFp8 = Layout != kern::kBF16;
  extern __shared__ uint8_t smem_raw[];
  const SmemView<D> sm(smem_raw);
  const int tid = threadIdx.x;
  const CtaCoord cta = cta_coord(p);
  const int t = cta.t, h0 = cta.h0, split = cta.split;
  const Range range = kern::token_range<kBN>(p, t, split);
  const int ntiles = (range.stop - range.begin + kBN - 1) / kBN;

  if (tid >= 256) {
    // ---- producer: Q and tile i into buffer i & 1, one tile ahead of the compute warpgroups.
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProdRegs));
    const int pt = tid - 256;
    constexpr int flavor = Flavor;  // one FP8 decoder per instantiation (code size)
    load_q<D, 128>(p, sm.qs, t, h0, pt, policy_evict_first());
    Entry ahead{-1, 0};  // threads 0..63: the entry of tile i+1, read during iteration i-1
    if (pt < kBN) {
      tile_rows<D, Layout>(p, tile_entry(p, t, range, range.begin, pt), sm.rows_of(0), sm.auxs_of(0), pt);
      ahead = tile_entry(p, t, range, range.begin + kBN, pt);
    }
    bar_sync_n(kBarProd, 128);
    Fp8Stage<Layout, 128, 2> st;  // half of a tile's raw bytes
    if constexpr (kFp8) {
      if (ntiles > 0) fp8_load(st, sm.rows_of(0), sm.auxs_of(0), pt, 0);
    }
    for (int i = 0; i < ntiles; ++i) {
      const int b = i & 1;
      uint8_t *kt = sm.ktile(b);
      const uint8_t *const *rows_i = sm.rows_of(i);
      const uint8_t *const *aux_i = sm.auxs_of(i);
      // Tile i-2 consumed: buffer b and ring slot rows_of(i + 1) (tile i-2's) are free.
      if (i >= 2) bar_sync_n(kBarEmpty + b, kWsThreads);
      if constexpr (kFp8) {
        fp8_store(st, kt, flavor, pt, 0);
        fp8_load(st, rows_i, aux_i, pt, 1);
        fp8_store(st, kt, flavor, pt, 1);
      } else {
        // Plain cp.async here: with the L2-policy copy, ptxas 13.0.88 compiled this loop of
        // the BF16 instantiations with its shared base and memory descriptor in uniform
        // registers it never writes (`LDGSTS [R+UR0], desc[UR1]`), and the kernel stopped with
        // an illegal instruction on the H100 (session 10); tools/sass_check.py finds that form.
        bf16_issue<D, 128, false>(kt, rows_i, pt, 0);
      }
      if (pt < kBN && i + 1 < ntiles) {
        tile_rows<D, Layout>(p, ahead, sm.rows_of(i + 1), sm.auxs_of(i + 1), pt);
        ahead = tile_entry(p, t, range, range.begin + (i + 2) * kBN, pt);
      }
      bar_sync_n(kBarProd, 128);
      // The first half of tile i+1 on its way into registers while the compute works on tile i.
      if constexpr (kFp8) {
        if (i + 1 < ntiles) fp8_load(st, sm.rows_of(i + 1), sm.auxs_of(i + 1), pt, 0);
      }
      dev::async_wait_all();  // BF16 tile i (and Q, committed before tile 0)
      fence_async_smem();
      bar_arrive_n(kBarFull + b, kWsThreads);
    }
    dev::async_wait_all();
  } else {
    // ---- compute warpgroups: the tile algorithm of the two-warpgroup kernel.
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kMathRegs));
    const MathThread th(tid);
    const float sl2 = p.scale * kern::kLog2e;
    MathAcc acc;
    acc.init();
    for (int i = 0; i < ntiles; ++i) {
      const int b = i & 1;
      const uint8_t *kt = sm.ktile(b);
      bar_sync_n(kBarFull + b, kWsThreads);
      float s[16];
      qk_issue<D>(s, sm.qs, kt, th.wg);
      wg_wait0();
      fence_regs(s);
      softmax_tile<true>(s, acc, th, sm.rows_of(i), sm.xrow, sm.ps, sl2);
      pv_issue(acc.o, sm.ps, kt, th.wg);
      wg_wait0();
      fence_regs(acc.o);
      if (i + 2 < ntiles) bar_arrive_n(kBarEmpty + b, kWsThreads);  // the producer waits for i+2
    }
    attn_epilogue<true>(p, acc, th, sm.xrow, t, h0, split);
  }
#endif
}

}  // namespace sm90
}  // namespace cuda
}  // namespace spmla
