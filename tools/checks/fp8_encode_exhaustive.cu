// fp8_encode_exhaustive.cu — checks the store's FP8 encoders (backends/common/kv_ops.cuh, quant8)
// against the reference encoder (numerics/numerics.h) on the GPU, exhaustively:
//   1. every fp32 bit pattern q (2^32): quant8<E4M3FN, kQMul>(q, 1) (the V32_FP8 / V4_FP8 path:
//      q = x * 2^-k is exact, so this covers every q it can form; E4M3FNUZ stays on the software
//      encoder, `./fp8check fnuz` sweeps it too);
//   2. every bf16 x and every INDEXER_FP8 scale max(amax, 1e-4) / fp8_max with amax a positive
//      bf16 value or inf: quant8<E4M3FN, kQRcp> against f32_to_fp8_e4m3(x / scale).
// Build (from the repository root; sm_90a, any sm_89+ works):
//   nvcc -O3 -std=c++17 --expt-relaxed-constexpr -arch=sm_90a -Iinclude -Isrc -Inumerics -Ibackends \
//        tools/checks/fp8_encode_exhaustive.cu -o fp8check && ./fp8check
// Prints the mismatch counts (and the first few mismatches); exit code 0 iff there are none.
#include <cstdio>
#include <string>

#include "common/kv_ops.cuh"

using namespace spmla;
using namespace spmla::kern;

struct Result {
  unsigned long long bad, checked;
  unsigned first[8][3];
};

__device__ void record(Result *r, unsigned a, unsigned b, unsigned got, unsigned want) {
  const unsigned long long i = atomicAdd(&r->bad, 1ull);
  if (i < 8) {
    r->first[i][0] = a;
    r->first[i][1] = b;
    r->first[i][2] = (got << 8) | want;
  }
}

template <bool kFnuz>
__global__ void all_fp32(Result *r) {
  const Fp8Kind kind = kFnuz ? Fp8Kind::E4M3FNUZ : Fp8Kind::E4M3FN;
  unsigned long long n = 0;
  for (unsigned long long c = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; c < (1ull << 29);
       c += (unsigned long long)gridDim.x * blockDim.x) {
    float x[8];
    for (int i = 0; i < 8; ++i) x[i] = __uint_as_float((unsigned)(c * 8 + i));
    const uint2 w = quant8<kFnuz, kQMul>(x, 1.0f);
    for (int i = 0; i < 8; ++i) {
      const unsigned got = ((i < 4 ? w.x : w.y) >> (8 * (i & 3))) & 0xffu;
      const unsigned want = f32_to_fp8_e4m3(x[i], kind);
      if (got != want) record(r, (unsigned)(c * 8 + i), 0u, got, want);
    }
    n += 8;
  }
  atomicAdd(&r->checked, n);
}

// amax index a: bf16 patterns 1 .. 0x7F80 (inf), and a = 0 for the 1e-4 floor itself.
__global__ void indexer_pairs(Result *r) {
  const unsigned kAmax = 0x7F81u;  // 0 (floor) + 0x0001 .. 0x7F80
  unsigned long long n = 0;
  for (unsigned long long c = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; c < (unsigned long long)kAmax * 8192;
       c += (unsigned long long)gridDim.x * blockDim.x) {
    const unsigned a = (unsigned)(c / 8192), xb = (unsigned)(c % 8192) * 8;
    float amax = a == 0 ? 1e-4f : __uint_as_float(a << 16);
    if (!(amax > 1e-4f)) amax = 1e-4f;
    const float scale = amax / fp8_max_finite(Fp8Kind::E4M3FN);
    float x[8];
    for (int i = 0; i < 8; ++i) x[i] = __uint_as_float((xb + i) << 16);
    const uint2 w = quant8<false, kQRcp>(x, scale, quant8_rcp(scale));
    for (int i = 0; i < 8; ++i) {
      const unsigned got = ((i < 4 ? w.x : w.y) >> (8 * (i & 3))) & 0xffu;
      // A NaN quotient encodes with x's sign (the store's rule, as the software encoder's
      // sign_of: the host reference keeps a NaN x's sign through its division; a GPU division
      // returns the unsigned canonical NaN). Note inf / inf: an x86 host makes the negative
      // default NaN (0xFF) for +inf too, where the store writes 0x7F; not a case of this check.
      const float q = x[i] / scale;
      const unsigned want = q != q ? 0x7Fu | ((__float_as_uint(x[i]) >> 24) & 0x80u) : f32_to_fp8_e4m3(q, Fp8Kind::E4M3FN);
      if (got != want) record(r, xb + i, __float_as_uint(scale), got, want);
    }
    n += 8;
  }
  atomicAdd(&r->checked, n);
}

int report(const char *what, Result *d) {
  Result h;
  cudaError_t e = cudaDeviceSynchronize();
  if (e == cudaSuccess) e = cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost);
  if (e != cudaSuccess) {
    std::printf("%s: CUDA error %s\n", what, cudaGetErrorString(e));
    return 1;
  }
  std::printf("%s: %llu mismatches in %llu values\n", what, h.bad, h.checked);
  for (unsigned long long i = 0; i < h.bad && i < 8; ++i)
    std::printf("  input 0x%08x scale 0x%08x: got 0x%02x want 0x%02x\n", h.first[i][0], h.first[i][1],
                h.first[i][2] >> 8, h.first[i][2] & 0xffu);
  cudaMemset(d, 0, sizeof h);
  return h.bad != 0;
}

int main(int argc, char **argv) {
  Result *d = nullptr;
  if (cudaMalloc(&d, sizeof(Result)) != cudaSuccess) return 2;
  cudaMemset(d, 0, sizeof(Result));
  int fails = 0;
  all_fp32<false><<<132 * 16, 256>>>(d);
  fails += report("E4M3FN quant8 (x * 1), all 2^32 fp32", d);
  if (argc > 1 && std::string(argv[1]) == "fnuz") {
    all_fp32<true><<<132 * 16, 256>>>(d);
    fails += report("E4M3FNUZ quant8 (x * 1), all 2^32 fp32", d);
  }
  indexer_pairs<<<132 * 16, 256>>>(d);
  fails += report("E4M3FN quant8 kQRcp, all bf16 x, all indexer scales", d);
  return fails ? 1 : 0;
}
