// mma_policy_amd.h — the AMD matrix-multiply policy for the shared tile algorithms
// (backends/common/indexer.cuh): the same names as backends/cuda/mma_policy_sm80.cuh
// (FragA/FragB/kRegsC, load_a, load_b_nk, load_b_kn, mma, c_row, c_col, kLanesPerRow) on
//   CDNA (gfx90a, gfx942, gfx950; wave64): v_mfma_f32_16x16x16_bf16 (one instruction per step);
//   everything else (RDNA wave32, the HIP-on-NVIDIA build): a portable scalar 16x16x16 step that
//   works for any warp size, so the shared code is proven not to assume one.
// One struct name for every target: the kernels instantiated with it must mangle the same in
// the host pass and in each device pass of a multi-target compile.
#pragma once
#include "common/compat.h"


namespace spmla {
namespace hip {

#if defined(SPMLA_AMD_MFMA)
SPMLA_EXT_VECTOR_TYPEDEF(short, 4, bf16x4_t);
SPMLA_EXT_VECTOR_TYPEDEF(float, 4, f32x4_t);

// 16x16x16 MFMA operand layout (lane l of 64): A[i = l%16][k = 4*(l/16) + 0..3],
// B[k = 4*(l/16) + 0..3][n = l%16], C[row = 4*(l/16) + 0..3][col = l%16].
struct MmaPolicyAmd {
  static constexpr int kRegsC = 4;
  static constexpr int kLanesPerRow = 16;  // lanes l with the same l/16 share C rows
  struct FragA { bf16x4_t v; };
  struct FragB { bf16x4_t v; };
  static SPMLA_DEVICE int lane() { return (int)(threadIdx.x & 63); }
  static SPMLA_DEVICE void load_a(FragA &a, const uint16_t *p, int ld) {
    const int l = lane();
    a.v = *reinterpret_cast<const bf16x4_t *>(p + (l & 15) * ld + 4 * (l >> 4));
  }
  static SPMLA_DEVICE void load_b_nk(FragB &b, const uint16_t *p, int ld) {
    const int l = lane();
    b.v = *reinterpret_cast<const bf16x4_t *>(p + (l & 15) * ld + 4 * (l >> 4));
  }
  static SPMLA_DEVICE void load_b_kn(FragB &b, const uint16_t *p, int ld) {
    const int l = lane();
    const uint16_t *q = p + 4 * (l >> 4) * ld + (l & 15);
    b.v = bf16x4_t{(short)q[0], (short)q[ld], (short)q[2 * ld], (short)q[3 * ld]};
  }
  static SPMLA_DEVICE void mma(float (&c)[kRegsC], const FragA &a, const FragB &b) {
    f32x4_t acc = {c[0], c[1], c[2], c[3]};
    acc = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(a.v, b.v, acc, 0, 0, 0);
    c[0] = acc[0];
    c[1] = acc[1];
    c[2] = acc[2];
    c[3] = acc[3];
  }
  static SPMLA_DEVICE int c_row(int l, int i) { return 4 * (l >> 4) + i; }
  static SPMLA_DEVICE int c_col(int l, int) { return l & 15; }
};
#else
// Portable: lane l owns C row l / L (L = 16 / kRegsC lanes per row) and kRegsC consecutive columns.
struct MmaPolicyAmd {
  static constexpr int kRegsC = 256 / SPMLA_WARP_SIZE;
  static constexpr int kLanesPerRow = 16 / kRegsC;
  struct FragA { uint16_t v[16]; };
  struct FragB { uint16_t v[kRegsC][16]; };
  static SPMLA_DEVICE void load_a(FragA &a, const uint16_t *p, int ld) {
    const uint16_t *r = p + c_row(dev::lane_id(), 0) * ld;
#pragma unroll
    for (int k = 0; k < 16; ++k) a.v[k] = r[k];
  }
  static SPMLA_DEVICE void load_b_nk(FragB &b, const uint16_t *p, int ld) {
    const int n0 = c_col(dev::lane_id(), 0);
#pragma unroll
    for (int i = 0; i < kRegsC; ++i)
#pragma unroll
      for (int k = 0; k < 16; ++k) b.v[i][k] = p[(n0 + i) * ld + k];
  }
  static SPMLA_DEVICE void load_b_kn(FragB &b, const uint16_t *p, int ld) {
    const int n0 = c_col(dev::lane_id(), 0);
#pragma unroll
    for (int i = 0; i < kRegsC; ++i)
#pragma unroll
      for (int k = 0; k < 16; ++k) b.v[i][k] = p[k * ld + n0 + i];
  }
  static SPMLA_DEVICE void mma(float (&c)[kRegsC], const FragA &a, const FragB &b) {
#pragma unroll
    for (int i = 0; i < kRegsC; ++i) {
      float s = c[i];
#pragma unroll
      for (int k = 0; k < 16; ++k) s = fmaf(dev::bf16_to_f32(a.v[k]), dev::bf16_to_f32(b.v[i][k]), s);
      c[i] = s;
    }
  }
  static SPMLA_DEVICE int c_row(int l, int) { return l / kLanesPerRow; }
  static SPMLA_DEVICE int c_col(int l, int i) { return (l % kLanesPerRow) * kRegsC + i; }
};
#endif

}  // namespace hip
}  // namespace spmla
