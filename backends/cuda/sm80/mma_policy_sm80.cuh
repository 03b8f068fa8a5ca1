// mma_policy_sm80.cuh — the NVIDIA matrix-multiply policy for the shared tile algorithms:
// mma.sync.m16n8k16 (bf16 in, fp32 accumulate) fed by ldmatrix, sm_80 and newer.
//
// The policy works on 16x16x16 steps (two m16n8k16 instructions). Shared code sees only:
//   FragA / FragB / kRegsC, load_a, load_b_nk, load_b_kn, mma, c_row, c_col,
//   kLanesPerRow + row_reduce_* (lanes that share a C row).
// The AMD policy (MFMA, wave64) provides the same names in backends/hip/.
#pragma once
#include "common/compat.h"

namespace spmla {
namespace cuda {

struct MmaPolicySm80 {
  static constexpr int kRegsC = 8;  // floats per lane in a 16x16 fp32 C tile (2 x m16n8)
  struct FragA { uint32_t r[4]; };
  struct FragB { uint32_t r[4]; };  // two n8 halves: {r0,r1} cols 0-7, {r2,r3} cols 8-15

  // A: 16 (rows) x 16 (k) bf16, row-major in shared memory with leading dimension ld (elements).
  static __device__ __forceinline__ void load_a(FragA &a, const uint16_t *p, int ld) {
    const int l = threadIdx.x & 31;
    const uint16_t *src = p + (l & 15) * ld + (l >> 4) * 8;
    uint32_t s = (uint32_t)__cvta_generic_to_shared(src);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(a.r[0]), "=r"(a.r[1]), "=r"(a.r[2]), "=r"(a.r[3])
                 : "r"(s));
  }
  // B given as 16 (n) rows x 16 (k), row-major [n][k] (e.g. key rows for Q K^T).
  static __device__ __forceinline__ void load_b_nk(FragB &b, const uint16_t *p, int ld) {
    const int l = threadIdx.x & 31;
    const uint16_t *src = p + ((l >> 4) * 8 + (l & 7)) * ld + ((l >> 3) & 1) * 8;
    uint32_t s = (uint32_t)__cvta_generic_to_shared(src);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(b.r[0]), "=r"(b.r[1]), "=r"(b.r[2]), "=r"(b.r[3])
                 : "r"(s));
  }
  // B given as 16 (k) rows x 16 (n), row-major [k][n] (e.g. value rows for P V).
  static __device__ __forceinline__ void load_b_kn(FragB &b, const uint16_t *p, int ld) {
    const int l = threadIdx.x & 31;
    const uint16_t *src = p + ((l & 7) + ((l >> 3) & 1) * 8) * ld + (l >> 4) * 8;
    uint32_t s = (uint32_t)__cvta_generic_to_shared(src);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(b.r[0]), "=r"(b.r[1]), "=r"(b.r[2]), "=r"(b.r[3])
                 : "r"(s));
  }
  static __device__ __forceinline__ void mma(float (&c)[kRegsC], const FragA &a, const FragB &b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[0]), "r"(b.r[1]));
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[4]), "+f"(c[5]), "+f"(c[6]), "+f"(c[7])
        : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[2]), "r"(b.r[3]));
  }
  // Row / column (within the 16x16 tile) of C register i of this lane.
  static __device__ __forceinline__ int c_row(int lane, int i) { return (lane >> 2) + ((i >> 1) & 1) * 8; }
  static __device__ __forceinline__ int c_col(int lane, int i) { return (i >> 2) * 8 + (lane & 3) * 2 + (i & 1); }
  // Lanes that hold parts of the same C rows form aligned groups of kLanesPerRow lanes.
  static constexpr int kLanesPerRow = 4;
};

}  // namespace cuda
}  // namespace spmla
