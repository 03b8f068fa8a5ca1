// fp4_exhaustive.cu — the device side of the exhaustive FP4 test (test_gpu_fp4.cpp): every
// float32 bit pattern of a chunk through numerics.h's E2M1 encoder and the V41_FP4 tile-scale
// rule as nvcc compiles them for the GPU, folded into two position-weighted sums (so the host
// need not copy 2^32 results back; the host computes the same sums with the host compiler's code).
#include <cuda_runtime.h>
#include <stdint.h>

#include "numerics.h"
#include "test_gpu_fp4.h"

namespace {

__global__ void fp4_chunk_sums(uint32_t base, uint32_t n, unsigned long long *sums) {
  unsigned long long sc = 0, ss = 0;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const uint32_t u = base + i;
    const float x = spmla::f32_from_bits(u);
    const float a = fabsf(x);
    const uint64_t w = fp4_test::weight(u);
    sc += w * spmla::f32_to_fp4_e2m1(x);
    ss += w * spmla::fp4_tile_scale_e4m3(a, !(a <= 3.402823466e38f));
  }
  for (int o = 16; o > 0; o >>= 1) {
    sc += __shfl_xor_sync(0xffffffffu, sc, o);
    ss += __shfl_xor_sync(0xffffffffu, ss, o);
  }
  if ((threadIdx.x & 31) == 0) {
    atomicAdd(&sums[0], sc);
    atomicAdd(&sums[1], ss);
  }
}

__global__ void fp4_chunk_values(uint32_t base, uint32_t n, uint8_t *codes, uint8_t *scales) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const float x = spmla::f32_from_bits(base + i);
    const float a = fabsf(x);
    codes[i] = spmla::f32_to_fp4_e2m1(x);
    scales[i] = spmla::fp4_tile_scale_e4m3(a, !(a <= 3.402823466e38f));
  }
}

}  // namespace

int fp4_test::device_sums(uint32_t first_chunk, uint32_t chunks, unsigned long long *out) {
  unsigned long long *d = nullptr;
  cudaError_t e = cudaMalloc(&d, 2 * sizeof(unsigned long long) * chunks);
  if (e == cudaSuccess) e = cudaMemset(d, 0, 2 * sizeof(unsigned long long) * chunks);
  for (uint32_t c = 0; c < chunks && e == cudaSuccess; ++c) {
    fp4_chunk_sums<<<1024, 256>>>((first_chunk + c) * kChunk, kChunk, d + 2 * c);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) e = cudaMemcpy(out, d, 2 * sizeof(unsigned long long) * chunks, cudaMemcpyDeviceToHost);
  if (d) cudaFree(d);
  return (int)e;
}

int fp4_test::device_values(uint32_t chunk, uint8_t *codes, uint8_t *scales) {
  uint8_t *d = nullptr;
  cudaError_t e = cudaMalloc(&d, 2 * (size_t)kChunk);
  if (e == cudaSuccess) {
    fp4_chunk_values<<<1024, 256>>>(chunk * kChunk, kChunk, d, d + kChunk);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) e = cudaMemcpy(codes, d, kChunk, cudaMemcpyDeviceToHost);
  if (e == cudaSuccess) e = cudaMemcpy(scales, d + kChunk, kChunk, cudaMemcpyDeviceToHost);
  if (d) cudaFree(d);
  return (int)e;
}
