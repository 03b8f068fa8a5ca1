// indexer_fx.cuh — the CUDA plugin's lightning-indexer kernel (NVIDIA-only: mma.sync f16, cp.async,
// PTX conversions). The portable matrix-policy kernel of backends/common/indexer.cuh stays the
// path of the HIP plugin.
#pragma once
#include "../common/indexer.cuh"

namespace spmla {
namespace kern {

// ================================================================== CUDA: fused f16-MMA kernel
// Hopper runs mma.sync with FP8 operands only through an FP16 emulation, so the CUDA kernel
// converts the FP8 bytes to f16 itself, once per use site that is reused many times (exact: every
// E4M3FN and E4M3FNUZ value is an f16 value), and runs mma.sync.m16n8k16 f16 x f16 -> f32.
//
// GEMM per CTA work item (a group of <= kFxGroup rows sharing one key source x a block of
// kFxKeys keys): C^T[key, head] = K Q^T, keys on M, heads on N, K = Di.
//  - every warp keeps its 32 keys (2 m16 tiles x Di) as A fragments in registers for the whole
//    item; the rows' q (64 heads, f16) stream through a double-buffered shared tile, kFxTps rows
//    per stage (one barrier per stage), loaded to registers one stage ahead;
//  - the k tile of the next item lands by cp.async while the current item runs (its addresses,
//    with the paged block-table lookups, are computed one item earlier still);
//  - epilogue per row: relu(k_scale * s) as |k_scale| * max(s', 0) where the sign of k_scale is
//    folded into the key's A fragment (exact sign flips), weights * that summed over the heads in
//    registers, the 4 lanes of a quad reduced transposed so every lane writes one key: -inf outside
//    [lo, hi) and for missing keys.
// K-order permutation: lane quad position c reads its key bytes as Di/4 contiguous bytes
// [c*Di/4, (c+1)*Di/4); 32-bit word i of them (bytes e = 0..3) is k-step i: bytes 0,1 feed the
// fragment slots k = 2c, 2c+1 and bytes 2,3 the slots 8+2c, 9+2c. The q rows are written to shared
// memory in that logical order, so the dot product is the same sum, permuted.
// CTAs are persistent (grid <= SMs); work items are dealt round-robin.
constexpr int kFxWarps = 8;
constexpr int kFxThreads = kFxWarps * 32;
constexpr int kFxKeys = kFxWarps * 32;  // keys per item
constexpr int kFxTps = 2;               // rows per stage
constexpr int kFxGroup = 64;            // rows per item

template <int Di>
struct FxSmem {
  static constexpr int kKP = Di == 128 ? 144 : 64;  // key row pitch (bytes): conflict-free LDS.128
  static constexpr int kQP = Di + 8;                // q row pitch (halves): conflict-free ldmatrix
  static constexpr int kOffK = 0;                                       // [2][kFxKeys][kKP] fp8
  static constexpr int kOffKs = kOffK + 2 * kFxKeys * kKP;              // [2][kFxKeys] f32
  static constexpr int kOffKv = kOffKs + 2 * kFxKeys * 4;               // [2][kFxKeys] int
  static constexpr int kOffKa = kOffKv + 2 * kFxKeys * 4;               // [2][kFxKeys] key ptr
  static constexpr int kOffKsa = kOffKa + 2 * kFxKeys * 8;              // [2][kFxKeys] scale ptr
  static constexpr int kOffQ = kOffKsa + 2 * kFxKeys * 8;               // [2][kFxTps][64][kQP] f16
  static constexpr int kOffW = kOffQ + 2 * kFxTps * kIdxMaxHi * kQP * 2;  // [2][kFxTps][64] f32
  static constexpr int kOffR = kOffW + 2 * kFxTps * kIdxMaxHi * 4;      // [2][kFxTps][4] int
  static constexpr int kBytes = kOffR + 2 * kFxTps * 4 * 4;
};

// 4 FP8 bytes -> 2 x f16x2 (bytes 0,1 -> lo; 2,3 -> hi; lower byte in the lower half). Exact.
SPMLA_DEVICE void fx_fp8x4_to_f16(uint32_t w, int flavor, uint32_t &lo, uint32_t &hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm("{\n .reg .b16 l, h;\n mov.b32 {l, h}, %2;\n cvt.rn.f16x2.e4m3x2 %0, l;\n cvt.rn.f16x2.e4m3x2 %1, h;\n}\n"
      : "=r"(lo), "=r"(hi)
      : "r"(w));
  if (flavor != 2) return;
  // FNUZ value = E4M3FN value / 2 (exact in f16), except 0x80 (FNUZ NaN, FN -0) and 0x7F / 0xFF
  // (FNUZ +-240, FN NaN): those words take the software decode.
  const uint32_t t = w & 0x7F7F7F7Fu;
  const uint32_t low7_all = (t + 0x01010101u) & 0x80808080u;  // bytes with low bits 0x7F
  const uint32_t nonzero = (t + 0x7F7F7F7Fu) & 0x80808080u;   // bytes with low bits != 0
  if ((low7_all | (w & ~nonzero & 0x80808080u)) == 0u) {
    asm("mul.rn.f16x2 %0, %0, %1;\n" : "+r"(lo) : "r"(0x38003800u));
    asm("mul.rn.f16x2 %0, %0, %1;\n" : "+r"(hi) : "r"(0x38003800u));
    return;
  }
#endif
  float f[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) f[i] = dev::fp8_to_f32((w >> (8 * i)) & 0xffu, flavor);
  asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(lo) : "f"(f[1]), "f"(f[0]));
  asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(hi) : "f"(f[3]), "f"(f[2]));
}

SPMLA_DEVICE void fx_mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

SPMLA_DEVICE void fx_ldmatrix4(uint32_t (&r)[4], const void *p) {
  const uint32_t s = (uint32_t)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

SPMLA_DEVICE void fx_cp_async4(void *smem, const void *gmem) {
  const uint32_t s = (uint32_t)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(gmem));
}

struct FxItem {
  int row0, nrows, kb, b;
};

SPMLA_DEVICE FxItem fx_item(const IndexerParams &p, int item, int nkb) {
  FxItem it;
  const int g = item / nkb;
  it.kb = item - g * nkb;
  if (p.paged) {
    const int sub = (p.next_n + kFxGroup - 1) / kFxGroup;
    it.b = g / sub;
    const int s = g - it.b * sub;
    it.row0 = it.b * p.next_n + s * kFxGroup;
    it.nrows = min(kFxGroup, p.next_n - s * kFxGroup);
  } else {
    it.b = 0;
    it.row0 = g * kFxGroup;
    it.nrows = min(kFxGroup, p.rows - it.row0);
  }
  return it;
}

// Key j of an item: its Di bytes and its scale, or nullptr for "no key". `page` is the block-table
// entry of j's page (paged; loaded earlier by fx_key_page so the load latency is off the path).
SPMLA_DEVICE int fx_key_page(const IndexerParams &p, const FxItem &it, int64_t j) {
  if (!p.paged || j >= p.C) return -1;
  const int64_t pi = j / p.cache.block_size;
  if (pi >= p.max_pages) return -1;
  return p.block_table[(int64_t)it.b * p.bt_stride + pi];
}
template <int Di>
SPMLA_DEVICE void fx_key_addr(const IndexerParams &p, int64_t j, int page, const uint8_t *&kp, const uint8_t *&sp) {
  kp = nullptr;
  sp = nullptr;
  if (p.paged) {
    if (page < 0 || page >= p.cache.num_pages) return;
    const int bs = p.cache.block_size;
    const int64_t off = j - (j / bs) * bs;
    const uint8_t *base = p.cache.base + (int64_t)page * p.cache.page_stride;
    kp = base + off * Di;
    sp = base + (int64_t)bs * Di + off * 4;
  } else {
    if (j >= p.S || j >= p.C) return;
    kp = p.k + j * p.k_stride;
    sp = reinterpret_cast<const uint8_t *>(p.k_scale + j * p.ks_stride);
  }
}

// idx_row_range split in two: the loads (issued a stage ahead) and the arithmetic on the loaded
// values (after the stage's compute, so no warp waits on the loads before its MMAs).
SPMLA_DEVICE void fx_range_load(const IndexerParams &p, int row, int &a, int &b) {
  if (p.paged) {
    a = p.context_lens[(int64_t)(row / p.next_n) * p.cl_stride];
    b = 0;
  } else {
    a = p.k_start[(int64_t)row * p.ks_start_stride];
    b = p.k_end[(int64_t)row * p.ks_end_stride];
  }
}
SPMLA_DEVICE void fx_range(const IndexerParams &p, int row, int a, int b, int &lo, int &hi) {
  if (p.paged) {
    const int i = row - (row / p.next_n) * p.next_n;
    const int64_t lim = (int64_t)a - p.next_n + i + 1;
    lo = 0;
    hi = (int)max((int64_t)0, min(lim, (int64_t)p.C));
  } else {
    lo = max(a, 0);
    const int64_t h = min((int64_t)b, min(p.S, (int64_t)p.C));
    hi = (int)max(h, (int64_t)0);
  }
}

// NG = ceil(Hi / 16) groups of 16 heads (a template parameter: the stage's compute is straight-line
// code, so the epilogue of one 32-head chunk overlaps the MMAs of the next).
template <int Di, int NG>
__global__ void __launch_bounds__(kFxThreads, 1) indexer_fx_kernel(const IndexerParams p, int nkb, int nitems) {
  using L = FxSmem<Di>;
  constexpr int KS = Di / 16;   // k16 steps
  constexpr int QW = Di / 64;   // 16-byte q loads per (row, head, quad position)
  extern __shared__ __align__(16) uint8_t smem[];
  uint8_t *kbuf = smem + L::kOffK;
  float *kscale = reinterpret_cast<float *>(smem + L::kOffKs);
  int *kval = reinterpret_cast<int *>(smem + L::kOffKv);
  const uint8_t **kaddr = reinterpret_cast<const uint8_t **>(smem + L::kOffKa);
  const uint8_t **ksaddr = reinterpret_cast<const uint8_t **>(smem + L::kOffKsa);
  uint16_t *qbuf = reinterpret_cast<uint16_t *>(smem + L::kOffQ);
  float *wbuf = reinterpret_cast<float *>(smem + L::kOffW);
  int *rinfo = reinterpret_cast<int *>(smem + L::kOffR);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int r = lane >> 2, c = lane & 3;
  const int Hi = p.Hi;
  const int G = gridDim.x;
  int item = blockIdx.x;
  if (item >= nitems) return;

  // thread (h = tid / 4, c = tid % 4) owns q bytes [c*Di/4, (c+1)*Di/4) of head h of each row
  const int qh = tid >> 2, qc = tid & 3;

  struct QRegs {
    uint4 q[kFxTps][QW];
    float w[kFxTps];
    int row, ra, rb;  // thread tid < kFxTps: its row of the stage and fx_range_load's values
  };
  auto load_q = [&](const FxItem &it, int stage, QRegs &R) {
    R.row = -1;
    R.ra = R.rb = 0;
#pragma unroll
    for (int tt = 0; tt < kFxTps; ++tt) {
      const int rr = stage * kFxTps + tt;
      const bool act = rr < it.nrows && qh < Hi;
      const int row = it.row0 + rr;
#pragma unroll
      for (int u = 0; u < QW; ++u) R.q[tt][u] = make_uint4(0u, 0u, 0u, 0u);
      R.w[tt] = 0.f;
      if (act) {
        const uint8_t *src = p.q + (int64_t)row * p.q_stride_row + (int64_t)qh * p.q_stride_h + qc * (Di / 4);
#pragma unroll
        for (int u = 0; u < QW; ++u) R.q[tt][u] = dev::ld16(src + 16 * u);
        if (qc == 0) R.w[tt] = p.weights[(int64_t)row * p.w_stride_row + (int64_t)qh * p.w_stride_h];
      }
      if (tid == tt && rr < it.nrows) {
        R.row = row;
        fx_range_load(p, row, R.ra, R.rb);
      }
    }
  };
  auto store_q = [&](const QRegs &R, int sel) {
#pragma unroll
    for (int tt = 0; tt < kFxTps; ++tt) {
      uint16_t *qrow = qbuf + ((sel * kFxTps + tt) * kIdxMaxHi + qh) * L::kQP;
#pragma unroll
      for (int u = 0; u < QW; ++u) {
        const uint32_t wv[4] = {R.q[tt][u].x, R.q[tt][u].y, R.q[tt][u].z, R.q[tt][u].w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = 4 * u + e;  // k-step
          uint32_t lo, hi;
          fx_fp8x4_to_f16(wv[e], p.flavor, lo, hi);
          *reinterpret_cast<uint32_t *>(qrow + 16 * i + 2 * qc) = lo;
          *reinterpret_cast<uint32_t *>(qrow + 16 * i + 8 + 2 * qc) = hi;
        }
      }
      if (qc == 0) wbuf[(sel * kFxTps + tt) * kIdxMaxHi + qh] = R.w[tt];
      if (tid == tt) {
        int lo = 0, hi = 0;
        if (R.row >= 0) fx_range(p, R.row, R.ra, R.rb, lo, hi);
        int *ri = rinfo + (sel * kFxTps + tt) * 4;
        ri[0] = R.row;
        ri[1] = lo;
        ri[2] = hi;
      }
    }
  };
  // key addresses of item `it` into slot `sel` (thread tid: key tid)
  auto put_addr = [&](const FxItem &it, int page, int sel) {
    const uint8_t *kp, *sp;
    fx_key_addr<Di>(p, (int64_t)it.kb * kFxKeys + tid, page, kp, sp);
    kaddr[sel * kFxKeys + tid] = kp;
    ksaddr[sel * kFxKeys + tid] = sp;
  };
  // the k tile of the item whose addresses are in slot `sel` -> k buffer `sel` (coalesced chunks)
  // Paged INDEXER_FP8 pages of (Di + 4) * bs bytes leave key rows 4-byte aligned only (bs % 4 != 0):
  // those copy in 4-byte pieces.
  const bool k16 = !p.paged || (p.cache.page_stride & 15) == 0;
  auto issue_k = [&](int sel) {
    if (k16) {
      constexpr int kChunks = Di / 16;
#pragma unroll
      for (int u = 0; u < kChunks; ++u) {
        const int q = tid + kFxThreads * u;
        const int key = q / kChunks, part = q - key * kChunks;
        const uint8_t *src = kaddr[sel * kFxKeys + key];
        uint8_t *dst = kbuf + (sel * kFxKeys + key) * L::kKP + 16 * part;
        if (src) dev::async_copy16(dst, src + 16 * part);
        else *reinterpret_cast<uint4 *>(dst) = make_uint4(0u, 0u, 0u, 0u);
      }
    } else {
      constexpr int kWords = Di / 4;
#pragma unroll 4
      for (int u = 0; u < kWords; ++u) {
        const int q = tid + kFxThreads * u;
        const int key = q / kWords, part = q - key * kWords;
        const uint8_t *src = kaddr[sel * kFxKeys + key];
        uint8_t *dst = kbuf + (sel * kFxKeys + key) * L::kKP + 4 * part;
        if (src) fx_cp_async4(dst, src + 4 * part);
        else *reinterpret_cast<uint32_t *>(dst) = 0u;
      }
    }
    const uint8_t *sp = ksaddr[sel * kFxKeys + tid];
    kval[sel * kFxKeys + tid] = sp != nullptr;
    if (sp) fx_cp_async4(kscale + sel * kFxKeys + tid, sp);
    else kscale[sel * kFxKeys + tid] = 0.f;
    dev::async_commit();
  };

  // ---- prologue: addresses of the first two items, the first k tile, the first q stage
  FxItem cur = fx_item(p, item, nkb);
  put_addr(cur, fx_key_page(p, cur, (int64_t)cur.kb * kFxKeys + tid), 0);
  if (item + G < nitems) {
    const FxItem nx = fx_item(p, item + G, nkb);
    put_addr(nx, fx_key_page(p, nx, (int64_t)nx.kb * kFxKeys + tid), 1);
  }
  __syncthreads();
  issue_k(0);
  {
    QRegs R;
    load_q(cur, 0, R);
    store_q(R, 0);
  }
  dev::async_wait_all();
  __syncthreads();

  int local = 0;  // index of the item within this CTA's sequence (k buffers by parity)
  int stage = 0, qsel = 0;
  uint32_t afr[2][KS][4];
  float my_ks = 0.f;
  bool my_ok = false;
  const float ninf = dev::neg_inf();
  while (true) {
    const int ns = (cur.nrows + kFxTps - 1) / kFxTps;
    const int ksel = local & 1;
    int pend_page = -1;
    FxItem far = cur;
    const bool has_far = stage == 0 && item + 2 * G < nitems;
    if (stage == 0) {
      // A fragments of this warp's 32 keys, sign of k_scale folded in
      const float *ksb = kscale + ksel * kFxKeys + warp * 32;
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int rh = 0; rh < 2; ++rh) {
          const int m = mt * 16 + rh * 8 + r;
          const uint8_t *kr = kbuf + (ksel * kFxKeys + warp * 32 + m) * L::kKP + c * (Di / 4);
          const uint32_t flip = ksb[m] < 0.f ? 0x80008000u : 0u;
#pragma unroll
          for (int u = 0; u < QW; ++u) {
            const uint4 v = *reinterpret_cast<const uint4 *>(kr + 16 * u);
            const uint32_t wv[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              uint32_t lo, hi;
              fx_fp8x4_to_f16(wv[e], p.flavor, lo, hi);
              afr[mt][4 * u + e][rh] = lo ^ flip;
              afr[mt][4 * u + e][2 + rh] = hi ^ flip;
            }
          }
        }
      {
        const float s = ksb[8 * c + r];
        my_ks = s == s ? fabsf(s) : 0.f;  // NaN scale: relu(NaN) = 0 in the reference
        my_ok = kval[ksel * kFxKeys + warp * 32 + 8 * c + r] != 0;
      }
      // the next item's k tile (its addresses were written one item ago)
      if (item + G < nitems) issue_k(ksel ^ 1);
      // the block-table entry for the item after next (consumed after this stage's compute)
      if (has_far) {
        far = fx_item(p, item + 2 * G, nkb);
        pend_page = fx_key_page(p, far, (int64_t)far.kb * kFxKeys + tid);
      }
    }
    // next iteration
    int nitem = item, nstage = stage + 1;
    if (nstage == ns) {
      nitem = item + G;
      nstage = 0;
    }
    const bool has_next = nitem < nitems;
    FxItem nxt = cur;
    if (nstage == 0 && has_next) nxt = fx_item(p, nitem, nkb);
    QRegs R;
    if (has_next) load_q(nxt, nstage, R);

    // ---- compute the rows of this stage (all of them when any needs this warp's keys)
    const int kw0 = cur.kb * kFxKeys + warp * 32;
    const int j = kw0 + 8 * c + r;
    bool need = false;
#pragma unroll
    for (int tt = 0; tt < kFxTps; ++tt) {
      const int *ri = rinfo + (qsel * kFxTps + tt) * 4;
      need |= ri[0] >= 0 && max(ri[1], kw0) < min(ri[2], kw0 + 32);
    }
#pragma unroll 1
    for (int tt = 0; tt < kFxTps; ++tt) {
      const int *ri = rinfo + (qsel * kFxTps + tt) * 4;
      const int row = ri[0], lo = ri[1], hi = ri[2];
      if (row < 0) continue;  // warp-uniform
      float out = ninf;
      if (need) {  // warp-uniform
        const uint16_t *qb = qbuf + (qsel * kFxTps + tt) * kIdxMaxHi * L::kQP;
        const uint16_t *qlane = qb + ((lane >> 4) * 8 + (lane & 7)) * L::kQP + ((lane >> 3) & 1) * 8;
        const float *wrow = wbuf + (qsel * kFxTps + tt) * kIdxMaxHi + 2 * c;
        // relu * weight summed over this lane's heads: v[mt*2 + rh] for key row mt*16 + rh*8 + r
        float v[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int ch = 0; ch < (NG + 1) / 2; ++ch) {  // 32 heads (two 16-head groups) per chunk
          float acc[2][4][4];
#pragma unroll
          for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int n = 0; n < 4; ++n)
#pragma unroll
              for (int e = 0; e < 4; ++e) acc[mt][n][e] = 0.f;
#pragma unroll
          for (int i = 0; i < KS; ++i) {
#pragma unroll
            for (int g = 0; g < 2; ++g) {
              if (2 * ch + g < NG) {  // compile-time
                uint32_t b[4];
                fx_ldmatrix4(b, qlane + (2 * ch + g) * 16 * L::kQP + 16 * i);
#pragma unroll
                for (int mt = 0; mt < 2; ++mt) {
                  fx_mma(acc[mt][2 * g], afr[mt][i], b[0], b[1]);
                  fx_mma(acc[mt][2 * g + 1], afr[mt][i], b[2], b[3]);
                }
              }
            }
          }
#pragma unroll
          for (int nl = 0; nl < 4; ++nl) {
            if (4 * ch + nl < 2 * NG) {  // compile-time
              const float2 w2 = *reinterpret_cast<const float2 *>(wrow + 8 * (4 * ch + nl));
#pragma unroll
              for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int rh = 0; rh < 2; ++rh) {
                  v[mt * 2 + rh] = fmaf(w2.x, fmaxf(acc[mt][nl][2 * rh], 0.f), v[mt * 2 + rh]);
                  v[mt * 2 + rh] = fmaf(w2.y, fmaxf(acc[mt][nl][2 * rh + 1], 0.f), v[mt * 2 + rh]);
                }
            }
          }
        }
        // transposed quad reduction: lane c ends with the total of v[c] (key 8c + r)
        const bool b0 = (lane & 1) != 0, b1 = (lane & 2) != 0;
        float pa = b0 ? v[1] : v[0], pb = b0 ? v[3] : v[2];
        pa += dev::shfl_xor(b0 ? v[0] : v[1], 1);
        pb += dev::shfl_xor(b0 ? v[2] : v[3], 1);
        float tot = b1 ? pb : pa;
        tot += dev::shfl_xor(b1 ? pa : pb, 2);
        if (my_ok && j >= lo && j < hi) out = tot * my_ks;
      }
      if (j < p.C) __stcs(p.logits + (int64_t)row * p.logits_stride + j, out);
    }

    if (has_next) store_q(R, qsel ^ 1);
    if (has_far) put_addr(far, pend_page, ksel);  // slot of the item after next (= this parity)
    if (nstage == 0) dev::async_wait_all();        // the next item's k tile has landed
    __syncthreads();
    if (!has_next) break;
    if (nstage == 0) {
      ++local;
      cur = nxt;
    }
    item = nitem;
    stage = nstage;
    qsel ^= 1;
  }
}

// Key blocks per row group (the launcher's work items: row groups x key blocks).
SPMLA_HOST_DEVICE int fx_key_blocks(const IndexerParams &p) { return (p.C + kFxKeys - 1) / kFxKeys; }

}  // namespace kern
}  // namespace spmla
