// cdna_emu_instr.h — the device side (cdna_emu_instr.cu, compiled only in the emulated
// HIP-on-NVIDIA build) of the CDNA instruction tests (test_gpu_cdna_emu.cpp): each runs the
// emulated instruction (backends/hip/emu/cdna_emu.cuh, by the names the kernels use) on the
// current CUDA device and returns a cudaError_t.
#pragma once
#include <stdint.h>

namespace cdna_emu_test {

int emulated_target();  // 942 or 950
int device_warp_size();  // SPMLA_WARP_SIZE as the device pass saw it

// `waves` wavefronts, `threads` per block (a multiple of 64): wavefront w computes
// d[w] = mfma_f32_16x16x16bf16_1k(a[w], b[w], c[w]); arrays [waves][64][4].
int run_mfma(int waves, int threads, const uint16_t *a, const uint16_t *b, const float *c, float *d);
// gfx950 emulation only (else returns -1 and runs nothing): wavefront w computes
// d[w] = mfma_f32_16x16x32_bf16(a[w], b[w], c[w]); a, b [waves][64][8], c, d [waves][64][4].
int run_mfma_x32(int waves, int threads, const uint16_t *a, const uint16_t *b, const float *c, float *d);
// out[4 i + 2 s + e] = __builtin_amdgcn_cvt_pk_f32_fp8(src[i], s)[e].
int run_cvt(int n, const uint32_t *src, float *out);
// Shuffles through spmla::dev:: (compat.h) and spmla::emu:: on blocks of `threads`:
// op 0 shfl (arg per lane: args[t]), 1 up, 2 down, 3 xor (arg: args[0], wavefront-uniform),
// 4 readlane (args[0]); 64-bit values when wide.
int run_shfl(int op, int width, int threads, const int *args, const uint64_t *in, uint64_t *out, bool wide);
// Wavefront w swaps its halves w % 3 times (shfl_xor 32, width 64), then out = shfl_xor(v, 1, 64):
// different exchange counts per wavefront between block barriers.
int run_uneven(int threads, const uint64_t *in, uint64_t *out);
// out[w] = ballot(pred[t]) for each wavefront w of one block of `threads` (any multiple of 32).
int run_ballot(int threads, const uint8_t *pred, uint64_t *out);

}  // namespace cdna_emu_test
