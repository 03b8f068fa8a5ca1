// attention_sm90_pair.cuh — Hopper sparse attention, the "pair" schedule (variant "sm90pair"):
// the sources the sm90 kernel reads (BF16 gathered by cp.async; V32_FP8, V4_FP8 and V41 rows
// dequantized by the producer warpgroup). Same contract and partial-result format as the other
// kernels; the tile arithmetic (swizzled tiles, descriptors, FP8 units, epilogue) is
// attention_sm90.cuh's.
//
// Why a second schedule: the two-warpgroup kernel splits each 64-key tile's QK^T between the
// warpgroups (m64n32: every wgmma re-reads the 64 x 16 Q slice for only 32 keys, so QK^T is bound
// by shared-memory reads) and synchronises both warpgroups twice per tile, so softmax, QK^T and
// P V of one CTA never overlap. Here (the schedule of FlashMLA's sm90 sparse prefill, written anew):
//   - three warpgroups: WG0 and WG1 compute, WG2 gathers rows (cp.async for BF16; loads and
//     dequantization for FP8), setmaxnreg moving registers from it to the compute warpgroups;
//   - keys go in pairs of 64-key tiles K0, K1: WG0 computes S0 = Q K0^T, WG1 S1 = Q K1^T (m64n64,
//     each Q slice read once per 64 keys);
//   - value dims are split: WG0 owns O[:, 0:256), WG1 O[:, 256:512). Each multiplies its own P
//     from registers (wgmma RS) and the other's P from shared memory, so P V reads each V half once;
//   - the row maximum is chained (WG0's goes to WG1, WG1's combined one back to WG0, which rescales
//     its P before publishing it), so the warpgroups hand off instead of meeting at a barrier, and
//     one's softmax overlaps the other's MMA;
//   - each tile is two halves (dims [0, 256) and [256, D)) with their own full/free mbarriers, so the
//     producer refills a half as soon as its last reader is done.
// For D 576 the published P of WG0 (S0) lives in K0's RoPE chunk, which no P V reads: the three
// 64 x D tiles (Q, K0, K1) and S1 fill Hopper's 227 KiB.
#pragma once
#include <type_traits>

#include "attention_sm90.cuh"

namespace spmla {
namespace cuda {
namespace sm90 {
namespace pair {

constexpr int kThreads = 384;                   // WG0, WG1 compute; WG2 produces
// setmaxnreg moves registers within the CTA's allocation at launch (384 threads x 168, the
// ceiling __launch_bounds__(384, 1) gives ptxas): a total above it makes setmaxnreg.inc wait
// forever (found on the H100: 208 + 96 = 65536 hung the first launch).
constexpr int kMathRegs = 208, kProdRegs = 88;
static_assert(256 * kMathRegs + 128 * kProdRegs <= kThreads * 168, "register split within the launch allocation");
// Named barriers (0 is __syncthreads, kBarMath = 5 the compute warpgroups' barrier of the epilogue),
// each completed by one warpgroup's bar.arrive and the other's bar.sync (256 threads):
constexpr int kBarMax0 = 1;  // WG0 published its row maximum (sM)
constexpr int kBarMax1 = 2;  // WG1 published the combined row maximum (sM)
constexpr int kBarP0 = 3;    // WG0's P (rescaled to the combined maximum) is in S0
constexpr int kBarP1 = 4;    // WG1's P is in S1
constexpr int kBarProducer = 6;  // the producer warpgroup's own barrier (128 threads)
static_assert(kBarMath == 5, "kBarMath is the epilogue's barrier");

template <int D, bool kFp8 = false>
struct Smem {
  static constexpr int kChunks = D / 64;
  static constexpr int kTile = kChunks * kChunk;
  static constexpr int kOffQ = 0;
  static constexpr int kOffK = kTile;  // K0, K1
  static constexpr int kOffS1 = 3 * kTile;
  // S0: K0's RoPE chunk at D 576 (free once S0 = Q K0^T is computed; the producer refills it only
  // after the last reader of S0), its own chunk at D 512.
  static constexpr int kOffS0 = D == 576 ? kOffK + 8 * kChunk : kOffS1 + kChunk;
  static constexpr int kOffMeta = kOffS1 + (D == 576 ? 1 : 2) * kChunk;
  static constexpr int kOffValid = kOffMeta;           // [2][64] bytes: key present (K0, K1 rows)
  static constexpr int kOffMax = kOffValid + 128;      // [64] floats: the row maximum handed over
  static constexpr int kOffRow = kOffMax + 256;        // [2][64] floats: the epilogue's row sums
  static constexpr int kOffBar = kOffRow + 512;        // mbarriers (8 B each)
  // bars: 0 Q ready, 1 + 2 * k + h: half h of tile k ready, 5 + 2 * k + h: free, 9: valid ready
  static constexpr int kBars = 10;
  // FP8 sources: the pair's row addresses [2][64] and (D 512: V4 / V41 scale rows) [2][64].
  static constexpr int kOffRows = kOffBar + kBars * 8;
  static constexpr int kOffAux = kOffRows + (kFp8 ? 1024 : 0);
  static constexpr int kUsed = kOffAux + (kFp8 && D == 512 ? 1024 : 0);
  static constexpr int kBytes = kUsed + 1024;  // + alignment slack for the swizzle atoms
  static_assert(kBytes <= 227 * 1024, "fits Hopper's 227 KiB per block");
};

// mbarrier primitives: attention_sm90.cuh.
// S = Q K^T over chunks [c0, c1) of a 64-key tile (m64n64, accumulate unless `clear`); issued only.
// Each batch starts with its own wgmma.fence: a wait loop between two batches on the same
// accumulators otherwise makes ptxas insert one and serialize every wgmma of the kernel.
__device__ __forceinline__ void qk_chunks(float (&s)[32], const uint8_t *qs, const uint8_t *kt, int c0, int c1,
                                          bool clear) {
  fence_regs(s);
  const uint64_t qa = desc_sw128(qs, 16, 1024), kb = desc_sw128(kt, 16, 1024);
  wg_fence();
#pragma unroll
  for (int ch = c0; ch < c1; ++ch) {
#pragma unroll
    for (int k4 = 0; k4 < 4; ++k4) {
      const uint32_t off = ch * kChunk + k4 * 32;
      wgmma_m64n64k16_ss(s, desc_add(qa, off), desc_add(kb, off), (clear && ch == c0 && k4 == 0) ? 0 : 1);
    }
  }
}

// O += P V over a 64-key tile, P from registers (the bf16 pairs of the thread's S fragment).
__device__ __forceinline__ void pv_regs(float (&o)[128], const uint32_t (&pa)[16], const uint8_t *vt) {
  const uint64_t vb = desc_sw128(vt, kChunk, 1024);
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    const uint32_t a[4] = {pa[4 * kk], pa[4 * kk + 1], pa[4 * kk + 2], pa[4 * kk + 3]};
    wgmma_m64n256k16_rs_tb(o, a, desc_add(vb, kk * 2048));
  }
}
// O += P V over a 64-key tile, P from shared memory (a 64 x 64 swizzled chunk).
__device__ __forceinline__ void pv_smem(float (&o)[128], const uint8_t *ps, const uint8_t *vt) {
  const uint64_t pb = desc_sw128(ps, 16, 1024), vb = desc_sw128(vt, kChunk, 1024);
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) wgmma_m64n256k16_ss_tb(o, desc_add(pb, kk * 32), desc_add(vb, kk * 2048), 1);
}

// Scores to log2 units, keys without a row to -inf; the rows' maxima of this tile (quad-reduced).
__device__ __forceinline__ void mask_scale(float (&s)[32], const uint8_t *valid, int quad, float sl2, float (&mx)[2]) {
  mx[0] = mx[1] = dev::neg_inf();
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const bool v = valid[j * 8 + quad * 2 + e] != 0;
      s[4 * j + e] = v ? s[4 * j + e] * sl2 : dev::neg_inf();
      s[4 * j + 2 + e] = v ? s[4 * j + 2 + e] * sl2 : dev::neg_inf();
      mx[0] = fmaxf(mx[0], s[4 * j + e]);
      mx[1] = fmaxf(mx[1], s[4 * j + 2 + e]);
    }
  }
  quad_max(mx);
}
// Moves the running state to the new row maxima m: O and the row sums rescaled, S -> P = exp2(S - m)
// (fp32, in place), the thread's share of the row sums added.
__device__ __forceinline__ void softmax_to(float (&s)[32], MathAcc &acc, const float (&m)[2]) {
  float alpha[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    alpha[i] = rescale_factor(acc.m[i], m[i]);
    acc.m[i] = m[i];
  }
  if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
    acc.scale_o(alpha);
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) acc.l[i] *= alpha[i];  // per-thread partial sums, reduced at the end
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = e >> 1;
      const float pv = ex2(s[4 * j + e] - exp_base(m[i]));
      s[4 * j + e] = pv;
      acc.l[i] += pv;
    }
  }
}
// P (fp32 in s, times f per row) as the bf16 A fragments of P V.
__device__ __forceinline__ void pack_p(const float (&s)[32], const float (&f)[2], uint32_t (&pa)[16]) {
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    pa[2 * j] = dev::pack_bf16x2(s[4 * j] * f[0], s[4 * j + 1] * f[0]);
    pa[2 * j + 1] = dev::pack_bf16x2(s[4 * j + 2] * f[1], s[4 * j + 3] * f[1]);
  }
}
// The fragments into a 64 x 64 swizzled chunk (the A operand of the other warpgroup's P V).
__device__ __forceinline__ void store_p(const uint32_t (&pa)[16], uint8_t *ps, int r0, int quad) {
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int col = j * 8 + quad * 2;
    *reinterpret_cast<uint32_t *>(ps + swz(r0, col)) = pa[2 * j];
    *reinterpret_cast<uint32_t *>(ps + swz(r0 + 8, col)) = pa[2 * j + 1];
  }
}

// ---- FP8 sources: the producer dequantizes. Thread pt = (group = pt >> 3, lane8 = pt & 7) owns,
// as in the BF16 producer, rows lr * 16 + group (lr < 4) of each tile, and in each half of such a
// row the 16-byte units c0 + 8 j + lane8 (c0 = 0 in the low half, units [0, 16) = value dims
// [0, 256); c0 = 16 in the high half, RoPE included). A warp's load reads 4 rows x 128 contiguous
// bytes, and its first store covers all eight 16-byte bank groups of a row. A pair is a fixed
// sequence of kSteps unit steps: the halves in the order the compute warpgroups read them (K0 low,
// K1 high, K0 high, K1 low), row by row, unit by unit. The sequence is unrolled at compile time
// (static_for), so the kAhead loads in flight sit in registers named at compile time (no copies
// between stages, no per-unit index arithmetic), and they run on across the pair boundary into
// the next pair. Before (session 11: parts of 256 units in a runtime loop, each thread's units
// spread over the half) the loop cost about 250-485 SASS instructions per two units, and the
// loads drained at every pair boundary: V4.1 prefill ran at 200 TFLOP/s against the BF16 pair's
// 558 (H100, session 12).
template <int Layout, int kRows = 4>
struct PairSteps {
  static constexpr int kUnits = Fp8Rows<Layout>::kUnits;
  static constexpr int kLoN = 2, kHiN = (kUnits - 16 + 7) / 8;  // units per row and thread in a half
  // 4 halves x kRows rows (4; 2 in a cluster of two, each CTA taking half of every half tile)
  static constexpr int kSteps = 2 * kRows * (kLoN + kHiN);
  // Loads in flight: 7 of 16 bytes (V32, D 576: 3; with 5 stages the E4M3FNUZ producer spills at 88
  // registers).
  static constexpr int kStages = Layout == kern::kV32 ? 4 : 8, kAhead = kStages - 1;
  static_assert(kSteps % kStages == 0, "the stages rotate a whole number of times per pair");
  __host__ __device__ static constexpr bool low(int h) { return h == 0 || h == 3; }
  __host__ __device__ static constexpr int per_row(int h) { return low(h) ? kLoN : kHiN; }
  __host__ __device__ static constexpr int first_of(int h) {
    return h == 0 ? 0 : h == 1 ? kRows * kLoN : h == 2 ? kRows * (kLoN + kHiN) : kRows * (kLoN + 2 * kHiN);
  }
  __host__ __device__ static constexpr int half_of(int s) { return s < first_of(1) ? 0 : s < first_of(2) ? 1 : s < first_of(3) ? 2 : 3; }
  __host__ __device__ static constexpr int tile_of(int h) { return h == 0 || h == 2 ? 0 : 1; }
  __host__ __device__ static constexpr int bar_of(int h) { return 2 * tile_of(h) + (low(h) ? 0 : 1); }
  // Step s: row lr_of(s) * 16 + group of its half's tile, unit unit0_of(s) + lane8.
  __host__ __device__ static constexpr int lr_of(int s) { return (s - first_of(half_of(s))) / per_row(half_of(s)); }
  __host__ __device__ static constexpr int unit0_of(int s) {
    return (low(half_of(s)) ? 0 : 16) + 8 * ((s - first_of(half_of(s))) % per_row(half_of(s)));
  }
  // Whether some lanes' unit lies past the row (V4: units 36..39).
  __host__ __device__ static constexpr bool ragged(int s) { return unit0_of(s) + 8 > kUnits; }
  __host__ __device__ static constexpr bool first(int s) { return s == first_of(half_of(s)); }
  __host__ __device__ static constexpr bool last(int s) { return s + 1 == kSteps || half_of(s + 1) != half_of(s); }
};
// f(std::integral_constant<int, I>) for I in [I0, N), unrolled by the compiler front end.
template <int I, int N, class F>
__device__ __forceinline__ void static_for(F &&f) {
  if constexpr (I < N) {
    f(std::integral_constant<int, I>{});
    static_for<I + 1, N>(f);
  }
}
struct UnitStage {
  uint4 v;
  uint32_t scale;
  bool fp4;  // V41_FP4 codes (from the row's scale address, not from memory: see Fp8Stage::fp4)
};
// The raw bytes of step S of the pair whose row table is rows / auxs (each already offset by the
// thread's group, so the entry is an immediate offset).
template <int Layout, class P, int S>
__device__ __forceinline__ void step_load(UnitStage &st, const uint8_t *const *rows, const uint8_t *const *auxs,
                                          uint32_t lane8) {
  constexpr int e = P::tile_of(P::half_of(S)) * 64 + P::lr_of(S) * 16;
  const int c = P::unit0_of(S) + (int)lane8;
  const uint8_t *row = rows[e];
  if (P::ragged(S) && c >= P::kUnits) row = nullptr;
  st.fp4 = fp8_load_unit<Layout>(row, Layout == kern::kV32 ? nullptr : auxs[e], c, st.v, st.scale);
}
// Where a thread's steps store, as offsets from the tile: a NoPE unit c of row lr * 16 + group
// holds value dims [16 c, 16 c + 16), two 16-byte pieces of chunk c >> 2. The thread's unit is
// c = unit0 + lane8 with unit0 a multiple of 8, so both pieces sit at (c0 / 4) * kChunk +
// lr * 2048 (the step's immediate) plus a per-thread offset. Lanes 4..7 (units of odd chunks)
// store their second piece first: a warp's first store then covers all eight 16-byte bank groups
// of a row (fp8_store_unit does the same). A RoPE unit (8 bf16) is one piece of chunk kRopeElem / 64.
struct StepOffsets {
  uint32_t first, second, rope;
  bool odd;
  template <int Layout>
  __device__ __forceinline__ static StepOffsets of(int group, uint32_t lane8) {
    using G = Fp8Rows<Layout>;
    const uint32_t g7 = (uint32_t)group & 7u, q = lane8 & 3u, odd = lane8 >> 2;
    const uint32_t row = (uint32_t)group * 128u + odd * (uint32_t)kChunk;
    StepOffsets o;
    o.odd = odd != 0u;
    o.first = row + ((((2u * q) | odd) ^ g7) << 4);
    o.second = row + ((((2u * q) | (odd ^ 1u)) ^ g7) << 4);
    const uint32_t rp = ((uint32_t)(G::kRopeElem / 8 - G::kNope) + lane8) & 7u;
    o.rope = (uint32_t)group * 128u + ((rp ^ g7) << 4);
    return o;
  }
};
__device__ __forceinline__ void sts128(uint32_t a, uint4 v) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(a), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
               : "memory");
}
// Step S's unit dequantized into its tile (kt: the tile's shared address), RoPE units copied.
template <int Layout, class P, int S, bool kRemote = false>
__device__ __forceinline__ void step_store(const UnitStage &st, uint32_t kt, const StepOffsets &o, int flavor,
                                           uint32_t lane8, uint32_t rkt = 0, uint32_t rbar = 0) {
  using G = Fp8Rows<Layout>;
  constexpr int u0 = P::unit0_of(S);
  constexpr uint32_t lr = (uint32_t)P::lr_of(S) * 2048u;
  const int c = u0 + (int)lane8;
  if (P::ragged(S) && c >= P::kUnits) return;
  // Which of a step's lanes hold NoPE units: all (V41; V32 below unit 32), none, or (V4) some.
  constexpr bool kAllNope = u0 + 8 <= G::kNope, kNoNope = u0 >= G::kNope;
  if (kAllNope || (!kNoNope && c < G::kNope)) {
    // fp8_store_unit's decoding, with the raw words swapped for lanes 4..7 instead of the decoded
    // halves (4 selects instead of 8).
    uint4 first, second;
    const uint4 v = st.v;
    if (Layout == kV41 && st.fp4) {
      const uint32_t s2 = e4m3_scale_bf16x2(st.scale);
      first = dequant_fp4x8_bf16(o.odd ? v.y : v.x, s2);
      second = dequant_fp4x8_bf16(o.odd ? v.x : v.y, s2);
    } else {
      const float sc = Layout == kern::kV32 ? __uint_as_float(st.scale) : dev::ue8m0_to_f32(st.scale);
      first = dequant8_bf16(o.odd ? v.z : v.x, o.odd ? v.w : v.y, sc, flavor);
      second = dequant8_bf16(o.odd ? v.x : v.z, o.odd ? v.y : v.w, sc, flavor);
    }
    constexpr uint32_t imm = (uint32_t)(u0 / 4) * (uint32_t)kChunk + lr;
    sts128(kt + imm + o.first, first);
    sts128(kt + imm + o.second, second);
    if constexpr (kRemote) {
      st_async_v4(rkt + imm + o.first, first, rbar);
      st_async_v4(rkt + imm + o.second, second, rbar);
    }
  } else {
    constexpr uint32_t imm = (uint32_t)(G::kRopeElem / 64) * (uint32_t)kChunk + lr;
    sts128(kt + imm + o.rope, st.v);
    if constexpr (kRemote) st_async_v4(rkt + imm + o.rope, st.v, rbar);
  }
}
__device__ __forceinline__ void producer_sync() { bar_sync_n(kBarProducer, 128); }

// Entry v's row and scale-row addresses (row null: no key).
template <int Layout>
__device__ __forceinline__ void entry_at(const kern::AttnParams &p, int t, const Range &r, int v, const uint8_t *&row,
                                         const uint8_t *&aux) {
  entry_addresses<Layout>(p, tile_entry(p, t, r, v, 0), row, aux);
}

// The kernel's mbarriers: Q ready; half h of tile k full / free at [2 * k + h]; the pair's mask.
struct Bars {
  uint64_t *q, *full, *free, *valid;
  __device__ __forceinline__ explicit Bars(uint64_t *b) : q(b), full(b + 1), free(b + 5), valid(b + 9) {}
};

// Q rows h0 .. h0 + 63 into the swizzled tile (zeros past H), then Q's barrier.
template <int D>
__device__ __forceinline__ void produce_q(const kern::AttnParams &p, int t, int h0, uint8_t *qs, int pt,
                                          uint64_t policy, uint64_t *bar_q) {
  const uint16_t *qt = p.q + (int64_t)t * p.q_stride_t;
  const uint32_t q_u32 = smem_u32(qs);
  for (int u = pt; u < kBM * (D / 8); u += 128) {
    const int r = u / (D / 8), c = u - r * (D / 8);
    const bool ok = h0 + r < p.H;
    cp16(q_u32 + swz(r, c * 8), ok ? (const void *)(qt + (int64_t)(h0 + r) * p.q_stride_h + c * 8) : (const void *)p.q,
         ok, policy);
  }
  mbar_arrive_cp_async(bar_q);
}

// BF16 sources: per pair the four half tiles by cp.async, in the order the compute warpgroups
// read them (K0 low, K1 high, K0 high, K1 low), each behind its free barrier and completed on its
// full barrier by the copies themselves; then the pair's mask.
template <int D, bool kFlat>
__device__ __forceinline__ void produce_bf16(const kern::AttnParams &p, int t, const Range &range, int npairs, int pt,
                                             uint8_t *const *ks, uint8_t *valid, const Bars &bars, uint64_t policy) {
  constexpr int kC = D / 64, kHalf = 4;
  const int group = pt >> 3, lane8 = pt & 7;  // rows lr * 16 + group, 16 bytes lane8 of a chunk
  // This thread's 16 bytes of row lr * 16 + group, chunk c sit at k_u32[k] + lr * 2048 +
  // c * kChunk in the swizzled tile (row & 7 = group & 7 for every lr), and come from byte
  // lane8 * 16 + c * 128 of the row: constant offsets, so no address stays live across rounds.
  const uint32_t my = (uint32_t)(group * 128 + ((lane8 ^ (group & 7)) << 4));
  const uint32_t k_u32[2] = {smem_u32(ks[0]) + my, smem_u32(ks[1]) + my};
  // The pair's rows come from its entries, loaded one pair earlier (eight index loads in flight at
  // once, a pair's time to land), so a producer that runs ahead never waits on the index list.
  const uint8_t *rows[2][4], *unused;
  // Only the slots are kept between the two steps (8 registers); an entry's source (main or
  // extra list) follows from its position and is recomputed with the addresses.
  int32_t slot[2][4];
  auto entry_of = [&](int pi, int k, int lr) {
    return tile_entry(p, t, range, range.begin + (2 * pi + k) * kBN, lr * 16 + group);
  };
  // This thread's first entry of pair 0 in the main list: a pair wholly inside the main list (the
  // prefill case, and every pair before a decode's window) takes its eight entries at immediate
  // offsets of one pointer, predicated on the split's end only (about 30 SASS instructions a
  // pair, against a source select and a 64-bit address per entry).
  const int32_t *const idx_main = p.idx[0] + (int64_t)t * p.idx_stride[0] + range.begin + group;
  auto load_entries = [&](int pi) {
    const int first = range.begin + 2 * pi * kBN;  // the pair's first entry
    if (first + 2 * kBN <= range.end0) {
      const int32_t *ip = idx_main + 2 * pi * kBN;
      const int left = range.stop - first - group;  // entries [0, left) of this thread's offsets exist
#pragma unroll
      for (int k = 0; k < 2; ++k)
#pragma unroll
        for (int lr = 0; lr < 4; ++lr) slot[k][lr] = ldg_or_minus1(ip + k * kBN + lr * 16, k * kBN + lr * 16 < left);
    } else {
#pragma unroll
      for (int k = 0; k < 2; ++k)
#pragma unroll
        for (int lr = 0; lr < 4; ++lr) slot[k][lr] = entry_of(pi, k, lr).slot;
    }
  };
  // rows[k][lr]: this thread's first byte of the row (its 16 bytes lane8 of chunk 0), or of Q for
  // a missing row, which copies nothing (src-size 0 fills zeros and reads no byte); bit k * 4 + lr
  // of `have`: the row exists. The thread's offset is added here, a pair ahead, so each chunk is an
  // immediate offset of one register pair (one LDGSTS per chunk, as in FlashMLA's producer; with
  // the offset added at the copy, ptxas built a 64-bit address per chunk and spilled).
  uint32_t have = 0u;
  const uint8_t *const base[2] = {p.src[0].base, p.src[1].base};
  const uint32_t lim[2] = {p.src[0].slot_limit, p.src[1].slot_limit};
  const uint32_t flat[2] = {(uint32_t)p.src[0].flat_row, (uint32_t)p.src[1].flat_row};
  auto rows_from_entries = [&](int pi) {
    have = 0u;
#pragma unroll
    for (int k = 0; k < 2; ++k)
#pragma unroll
      for (int lr = 0; lr < 4; ++lr) {
        const int v = range.begin + (2 * pi + k) * kBN + lr * 16 + group;
        const uint8_t *row = nullptr;
        if constexpr (kFlat) {  // packed pages (entry_addresses' fast path, without its branch)
          const bool x = v >= range.end0;
          row = flat_row_at(x ? base[1] : base[0], x ? lim[1] : lim[0], x ? flat[1] : flat[0], slot[k][lr]);
        } else {
          entry_addresses<kern::kBF16>(p, Entry{slot[k][lr], v < range.end0 ? 0 : 1}, row, unused);
        }
        have |= (uint32_t)(row != nullptr) << (k * 4 + lr);
        rows[k][lr] = (row ? row : reinterpret_cast<const uint8_t *>(p.q)) + lane8 * 16;
      }
  };

  auto copy_half = [&](int k, int c0, int c1) {
#pragma unroll
    for (int lr = 0; lr < 4; ++lr) {
      const bool ok = (have >> (k * 4 + lr)) & 1u;
#pragma unroll
      for (int c = c0; c < c1; ++c) cp16(k_u32[k] + lr * 2048 + c * kChunk, rows[k][lr] + c * 128, ok, policy);
    }
  };
  if (npairs > 0) {
    load_entries(0);
    rows_from_entries(0);
    if (npairs > 1) load_entries(1);
  }
  uint32_t ph = 1;  // the free barriers' first wait passes at once
  for (int pi = 0; pi < npairs; ++pi) {
    mbar_wait(bars.free + 0, ph);
    copy_half(0, 0, kHalf);
    mbar_arrive_cp_async(bars.full + 0);
    mbar_wait(bars.free + 3, ph);
    copy_half(1, kHalf, kC);
    mbar_arrive_cp_async(bars.full + 3);
    mbar_wait(bars.free + 1, ph);
    copy_half(0, kHalf, kC);
    mbar_arrive_cp_async(bars.full + 1);
    mbar_wait(bars.free + 2, ph);
    copy_half(1, 0, kHalf);
    mbar_arrive_cp_async(bars.full + 2);
    // Both compute warpgroups are past the previous pair's masks (each read its mask before
    // releasing K1's halves): publish this pair's.
    if (lane8 == 0) {
#pragma unroll
      for (int k = 0; k < 2; ++k)
#pragma unroll
        for (int lr = 0; lr < 4; ++lr) valid[k * 64 + lr * 16 + group] = (have >> (k * 4 + lr)) & 1u;
      mbar_arrive(bars.valid);
    }
    ph ^= 1u;
    if (pi + 1 < npairs) {
      rows_from_entries(pi + 1);
      if (pi + 2 < npairs) load_entries(pi + 2);
    }
  }
}

// Bytes the peer writes into half h (producer order) of this CTA's tiles per pair: its unit steps
// of that half, 16 groups x 8 lanes, 32 bytes a NoPE unit and 16 a RoPE unit (both ranks alike).
template <int Layout>
constexpr uint32_t pair_c2_bytes(int h) {
  using P = PairSteps<Layout, 2>;
  using G = Fp8Rows<Layout>;
  uint32_t bytes = 0;
  for (int s = 0; s < P::kSteps; ++s)
    if (P::half_of(s) == h)
      for (int lane8 = 0; lane8 < 8; ++lane8) {
        const int c = P::unit0_of(s) + lane8;
        if (c < P::kUnits) bytes += 16u * (c < G::kNope ? 32u : 16u);
      }
  return bytes;
}

// FP8 sources: the pair's row table (thread pt writes entry pt: tile pt >> 6, row pt & 63), read
// by every thread's steps (PairSteps), then the pair's mask. The next pair's entry is loaded at the
// start of a pair and turned into addresses kAhead steps before its end, between two producer
// barriers (every load of this pair has read the table; the next pair's rows are in it), so the
// loads of the next pair's first steps go out while this pair's last units are stored.
// kC2 (variant "sm90pairc2"): the CTAs of a token's two head blocks form a cluster and each
// dequantizes rows lr * 16 + group with lr in {2 rank, 2 rank + 1} of every half tile, storing each
// unit into both CTAs' tiles (the peer's by st.async, completing the peer's full barrier of the
// half, whose expected bytes this CTA's thread 0 adds: pair_c2_bytes). Both CTAs read the same
// rows (the same token), so each still builds the whole row table and mask itself.
template <int D, int Layout, int Flavor, bool kC2 = false>
__device__ __forceinline__ void produce_fp8(const kern::AttnParams &p, int t, const Range &range, int npairs, int pt,
                                            uint8_t *row_table, uint8_t *aux_table, uint8_t *const *ks,
                                            uint8_t *valid, const Bars &bars) {
  using P = PairSteps<Layout, kC2 ? 2 : 4>;
  constexpr int kStages = P::kStages, kAhead = P::kAhead, kSteps = P::kSteps;
  const uint8_t **rows = reinterpret_cast<const uint8_t **>(row_table);
  const uint8_t **auxs = reinterpret_cast<const uint8_t **>(aux_table);  // D 512 only
  const int group = pt >> 3;
  const uint32_t lane8 = (uint32_t)pt & 7u;
  const uint32_t rank = kC2 ? cluster_ctarank() : 0u;
  StepOffsets off = StepOffsets::of<Layout>(group, lane8);
  off.first += rank * 4096u;  // rows 2 rank * 16 + ...: 2 rank x 2048 bytes further
  off.second += rank * 4096u;
  off.rope += rank * 4096u;
  // K1 and the full barriers sit at fixed offsets from K0 (Smem), here and in the peer (kC2).
  using S = Smem<D, true>;
  constexpr uint32_t kK1 = (uint32_t)S::kTile, kFull = (uint32_t)(S::kOffBar + 8 - S::kOffK);
  const uint32_t k0 = smem_u32(ks[0]);
  const uint32_t rk0 = kC2 ? mapa_shared(k0, rank ^ 1u) : 0u;
  const uint8_t *const *rows_g = rows + group + rank * 32u, *const *auxs_g = auxs + group + rank * 32u;
  const uint8_t *row = nullptr, *aux = nullptr;
  if (npairs > 0) entry_at<Layout>(p, t, range, range.begin + pt, row, aux);
  rows[pt] = row;
  if (D == 512) auxs[pt] = aux;
  bool have = row != nullptr;
  producer_sync();
  UnitStage st[kStages];
  if (npairs > 0)
    static_for<0, kAhead>(
        [&](auto si) { step_load<Layout, P, decltype(si)::value>(st[decltype(si)::value], rows_g, auxs_g, lane8); });
  uint32_t ph = 1;  // the free barriers' first wait passes at once
  for (int pi = 0; pi < npairs; ++pi) {
    const Entry next = tile_entry(p, t, range, range.begin + (pi + 1) * 2 * kBN, pt);
    const bool more = pi + 1 < npairs;
    bool have_next = false;
    static_for<0, kSteps>([&](auto si) {
      constexpr int s = decltype(si)::value, h = P::half_of(s), sl = s + kAhead;
      if constexpr (s == kSteps - kAhead) {
        producer_sync();  // every load of this pair has read the table
        entry_addresses<Layout>(p, next, row, aux);
        rows[pt] = row;
        if (D == 512) auxs[pt] = aux;
        have_next = row != nullptr;
        producer_sync();
      }
      // The load of step sl (this pair's, or the next pair's step sl - kSteps: same stage).
      if constexpr (sl < kSteps)
        step_load<Layout, P, sl>(st[sl % kStages], rows_g, auxs_g, lane8);
      else if (more)
        step_load<Layout, P, sl - kSteps>(st[sl % kStages], rows_g, auxs_g, lane8);
      if constexpr (P::first(s)) {
        // kC2: the free barrier also counts the peer's readers (its compute warpgroup arrives on
        // it remotely), so the peer's copy of the half is free too.
        mbar_wait(bars.free + P::bar_of(h), ph);
        if constexpr (kC2) {
          constexpr uint32_t kPeerBytes = pair_c2_bytes<Layout>(h);
          if (pt == 0) mbar_arrive_expect_tx(bars.full + P::bar_of(h), kPeerBytes);
        }
      }
      constexpr uint32_t kt = P::tile_of(h) * kK1, bar = kFull + 8u * (uint32_t)P::bar_of(h);
      step_store<Layout, P, s, kC2>(st[s % kStages], k0 + kt, off, Flavor, lane8, rk0 + kt, rk0 + bar);
      if constexpr (P::last(s)) {
        fence_async_smem();  // generic-proxy stores, read next by wgmma
        mbar_arrive(bars.full + P::bar_of(h));
      }
    });
    // Both compute warpgroups are past the previous pair's masks (see produce_bf16).
    valid[pt] = have;
    mbar_arrive(bars.valid);
    have = have_next;
    ph ^= 1u;
  }
}

// Layout kBF16 (Flavor 0): rows gathered by cp.async; V32 (D 576), V4 and V41 (D 512): rows
// dequantized by the producer (Flavor: the FP8 decoder, as in the sm90 kernel).
// kCluster 2 (variant "sm90pairc2", V32 / V41 sources): see produce_fp8.
template <int D, int Layout, int Flavor, int kCluster = 1>
__global__ void __launch_bounds__(kThreads, 1) sparse_attention_sm90pair_kernel(const kern::AttnParams p) {
#if defined(SPMLA_SM90A_DEVICE)
  constexpr bool kFp8 = Layout != kern::kBF16;
  constexpr bool kC2 = kCluster == 2;
  static_assert(kCluster == 1 || (kC2 && (Layout == kern::kV32 || Layout == kV41)),
                "clusters share the V32 / V41 dequantization only");
  using S = Smem<D, kFp8>;
  constexpr int kC = S::kChunks, kHalf = 4;  // chunks [0, 4): V dims [0, 256); [4, kC): the rest
  extern __shared__ uint8_t smem_raw[];
  uint8_t *base = smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u);
  uint8_t *qs = base + S::kOffQ;
  uint8_t *ks[2] = {base + S::kOffK, base + S::kOffK + S::kTile};
  uint8_t *ps[2] = {base + S::kOffS0, base + S::kOffS1};
  uint8_t *valid = base + S::kOffValid;
  float *smax = reinterpret_cast<float *>(base + S::kOffMax);
  float *xrow = reinterpret_cast<float *>(base + S::kOffRow);
  const Bars bars(reinterpret_cast<uint64_t *>(base + S::kOffBar));

  const int tid = threadIdx.x;
  const CtaCoord cta = cta_coord(p);
  const int t = cta.t, h0 = cta.h0, split = cta.split;
  const Range range = kern::token_range<kBN>(p, t, split);
  const int npairs = (range.stop - range.begin + 2 * kBN - 1) / (2 * kBN);

  if (tid == 0) {
    mbar_init(bars.q, 128);
    for (int i = 0; i < 4; ++i) {
      // the producer's 128 threads (BF16: as their cp.async land); kC2: + thread 0's expect_tx
      mbar_init(bars.full + i, kC2 ? 129 : 128);
      // the last reader: one compute warpgroup (kC2: and the peer's, arriving remotely)
      mbar_init(bars.free + i, kC2 ? 256 : 128);
    }
    mbar_init(bars.valid, kFp8 ? 128 : 16);  // the producer threads that write the mask
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  // kC2: both CTAs' barriers are initialised before either touches the other's.
  uint32_t rfree = 0u;
  if constexpr (kC2) {
    cluster_arrive_relaxed();
    cluster_wait();
    rfree = mapa_shared(smem_u32(bars.free), cluster_ctarank() ^ 1u);
  }
  // Frees half i of the pair's tiles: this CTA's barrier, and (kC2) the peer's.
  auto release = [&](int i) {
    mbar_arrive(bars.free + i);
    if constexpr (kC2) mbar_arrive_remote(rfree + 8u * (uint32_t)i);
  };

  if (tid >= 256) {
    // ---- producer: Q, then per pair the four tile halves in the order the compute warpgroups
    // read them (K0 low, K1 high, K0 high, K1 low), each behind its free barrier.
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProdRegs));
    const int pt = tid - 256;
    const uint64_t policy = policy_evict_last();
    produce_q<D>(p, t, h0, qs, pt, policy_evict_first(), bars.q);
    if constexpr (kFp8)
      produce_fp8<D, Layout, Flavor, kC2>(p, t, range, npairs, pt, base + S::kOffRows, base + S::kOffAux, ks, valid, bars);
    else if (p.src[0].flat_row > 0 && (p.K[1] == 0 || p.src[1].flat_row > 0))  // packed pages
      produce_bf16<D, true>(p, t, range, npairs, pt, ks, valid, bars, policy);
    else
      produce_bf16<D, false>(p, t, range, npairs, pt, ks, valid, bars, policy);
    dev::async_wait_all();
  } else {
    // ---- compute warpgroups
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kMathRegs));
    const MathThread th(tid);
    const int wg = th.wg, quad = th.quad, r0 = th.r0;
    const float sl2 = p.scale * kern::kLog2e;
    MathAcc acc;
    acc.init();
    float s[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) s[i] = 0.f;
    uint32_t pa[16];
    uint32_t ph = 0;
    mbar_wait(bars.q, 0);
    if (wg == 0) {
      // WG0: S0 = Q K0^T; O[:, 0:256) += P0 V0 (registers) + P1 V1 (S1).
      if (npairs > 0) {
        mbar_wait(bars.full + 0, 0);
        qk_chunks(s, qs, ks[0], 0, kHalf, true);
        mbar_wait(bars.full + 1, 0);
        qk_chunks(s, qs, ks[0], kHalf, kC, false);
        wg_commit();
        wg_wait0();
        fence_regs(s);
      }
      for (int pi = 0; pi < npairs; ++pi) {
        float mx[2];
        mbar_wait(bars.valid, ph);
        mask_scale(s, valid, quad, sl2, mx);
        const float m_new[2] = {fmaxf(acc.m[0], mx[0]), fmaxf(acc.m[1], mx[1])};
        softmax_to(s, acc, m_new);
        if (quad == 0) {
          smax[r0] = m_new[0];
          smax[r0 + 8] = m_new[1];
        }
        bar_arrive_n(kBarMax0, 256);
        const float one[2] = {1.f, 1.f};
        pack_p(s, one, pa);
        wg_fence();
        pv_regs(acc.o, pa, ks[0]);
        wg_commit();
        wg_wait0();
        fence_regs(acc.o);
        release(0);  // K0 low half read (QK^T, P0 V0)

        // The combined maximum from WG1: P0 rescaled to it goes to S0 for WG1's half of O.
        bar_sync_n(kBarMax1, 256);
        float beta[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const float mc = smax[r0 + 8 * i];
          beta[i] = rescale_factor(acc.m[i], mc);
          acc.m[i] = mc;
        }
        pack_p(s, beta, pa);
        store_p(pa, ps[0], r0, quad);
        fence_async_smem();
        bar_arrive_n(kBarP0, 256);
        bar_sync_n(kBarP1, 256);
        acc.scale_o(beta);
        acc.l[0] *= beta[0];
        acc.l[1] *= beta[1];
        wg_fence();
        pv_smem(acc.o, ps[1], ks[1]);
        wg_commit();
        ph ^= 1u;
        if (pi + 1 < npairs) {
          // The next pair's S0 while P1 V1 runs.
          mbar_wait(bars.full + 0, ph);
          qk_chunks(s, qs, ks[0], 0, kHalf, true);
          wg_commit();
          wg_wait1();
          fence_regs(acc.o);
          release(2);  // K1 low half read (QK^T by WG1, P1 V1)
          mbar_wait(bars.full + 1, ph);
          qk_chunks(s, qs, ks[0], kHalf, kC, false);
          wg_commit();
          wg_wait0();
          fence_regs(s);
        } else {
          wg_wait0();
          fence_regs(acc.o);
          release(2);
        }
      }
    } else {
      // WG1: S1 = Q K1^T; O[:, 256:512) += P1 V1 (registers) + P0 V0 (S0).
      for (int pi = 0; pi < npairs; ++pi) {
        mbar_wait(bars.full + 3, ph);
        qk_chunks(s, qs, ks[1], kHalf, kC, true);
        mbar_wait(bars.full + 2, ph);
        qk_chunks(s, qs, ks[1], 0, kHalf, false);
        wg_commit();
        wg_wait0();
        fence_regs(s);
        float mx[2];
        mbar_wait(bars.valid, ph);
        mask_scale(s, valid + 64, quad, sl2, mx);
        bar_sync_n(kBarMax0, 256);
        // WG0's maximum already includes the previous combined one (acc.m here).
        const float m_new[2] = {fmaxf(smax[r0], mx[0]), fmaxf(smax[r0 + 8], mx[1])};
        __syncwarp();  // every row's readers (one warp) have read sM before it is overwritten
        softmax_to(s, acc, m_new);
        if (quad == 0) {
          smax[r0] = m_new[0];
          smax[r0 + 8] = m_new[1];
        }
        bar_arrive_n(kBarMax1, 256);
        const float one[2] = {1.f, 1.f};
        pack_p(s, one, pa);
        wg_fence();
        pv_regs(acc.o, pa, ks[1] + kHalf * kChunk);
        wg_commit();
        store_p(pa, ps[1], r0, quad);
        bar_sync_n(kBarP0, 256);
        pv_smem(acc.o, ps[0], ks[0] + kHalf * kChunk);
        wg_commit();
        fence_async_smem();
        bar_arrive_n(kBarP1, 256);
        wg_wait1();
        release(3);  // K1 high half read (QK^T, P1 V1)
        wg_wait0();
        fence_regs(acc.o);
        release(1);  // K0 high half (and S0) read (P0 V0)
        ph ^= 1u;
      }
    }
    // Row sums: the thread's partial sums over its quad, then attn_epilogue adds the two
    // warpgroups' (both hold the same final maxima).
    quad_sum(acc.l);
    attn_epilogue<true>(p, acc, th, xrow, t, h0, split);
  }
  // kC2: neither CTA leaves while the other may still write to it or arrive on its barriers.
  if constexpr (kC2) {
    asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
    cluster_wait();
  }
#endif
}

}  // namespace pair
}  // namespace sm90
}  // namespace cuda
}  // namespace spmla
