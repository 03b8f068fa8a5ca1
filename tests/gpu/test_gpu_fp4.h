// test_gpu_fp4.h — shared by the exhaustive FP4 test's host (test_gpu_fp4.cpp) and device
// (fp4_exhaustive.cu) sides.
#pragma once
#include <stdint.h>

namespace fp4_test {

constexpr uint32_t kChunk = 1u << 24;  // float32 patterns per chunk (256 chunks)
constexpr uint32_t kChunks = 256;

// The weight of pattern u in a chunk's sums: odd and spread, so one differing code changes the sum.
#if defined(__CUDACC__)
__host__ __device__
#endif
inline uint64_t weight(uint32_t u) {
  uint64_t z = (uint64_t)u * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  z ^= z >> 29;
  return z | 1u;
}

// Chunk sums {sum w * code, sum w * scale byte} for chunks [first, first + chunks), on the GPU
// (the current CUDA device). Returns a cudaError_t.
int device_sums(uint32_t first_chunk, uint32_t chunks, unsigned long long *out);
// One chunk's codes and scale bytes, for a report.
int device_values(uint32_t chunk, uint8_t *codes, uint8_t *scales);

}  // namespace fp4_test
