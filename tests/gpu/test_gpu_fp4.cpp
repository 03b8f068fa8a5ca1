// GPU tier: the FP4 E2M1 encoder and the V41_FP4 tile-scale rule of numerics/numerics.h as the
// GPU computes them, against the host's, on all 2^32 float32 bit patterns (the kernels'
// kv_cache_store quantizes with these functions; the CPU tier checks them against an independent
// model, tests/test_fp4.cpp). The device folds each chunk of 2^24 patterns into position-weighted
// sums; a chunk whose sums differ is fetched whole and its first differing pattern reported.
#include <thread>
#include <vector>

#include "gpu_test.h"
#include "test_gpu_fp4.h"

#if defined(SPMLA_GPU_TESTS_HAVE_FP4_KERNEL)
namespace {

void host_sums(uint32_t chunk, unsigned long long *out) {
  unsigned long long sc = 0, ss = 0;
  const uint32_t base = chunk * fp4_test::kChunk;
  for (uint32_t i = 0; i < fp4_test::kChunk; ++i) {
    const uint32_t u = base + i;
    const float x = spmla::f32_from_bits(u);
    const float a = std::fabs(x);
    const uint64_t w = fp4_test::weight(u);
    sc += w * spmla::f32_to_fp4_e2m1(x);
    ss += w * spmla::fp4_tile_scale_e4m3(a, !(a <= 3.402823466e38f));
  }
  out[0] = sc;
  out[1] = ss;
}

}  // namespace

TEST_CASE("gpu fp4: E2M1 encode and the V41_FP4 tile scale equal the host's on all 2^32 float32 patterns",
          "[gpu][fp4]") {
  if (std::string(gpu_test::backend_name()) != "cuda") return;  // one run per GPU is enough
  // Under compute-sanitizer (quick): 4 chunks spread over the range (signs, exponents).
  std::vector<uint32_t> chunks;
  if (gpu_test::quick())
    chunks = {0, 63, 128, 255};
  else
    for (uint32_t c = 0; c < fp4_test::kChunks; ++c) chunks.push_back(c);
  std::vector<unsigned long long> dev(2 * fp4_test::kChunks), host(2 * fp4_test::kChunks);
  for (uint32_t c : chunks) REQUIRE(fp4_test::device_sums(c, 1, &dev[2 * c]) == 0);
  const unsigned nt = std::max(1u, std::min(32u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < nt; ++t)
    pool.emplace_back([&, t] {
      for (size_t k = t; k < chunks.size(); k += nt) host_sums(chunks[k], &host[2 * chunks[k]]);
    });
  for (auto &th : pool) th.join();
  int bad = 0;
  for (uint32_t c : chunks) {
    if (dev[2 * c] == host[2 * c] && dev[2 * c + 1] == host[2 * c + 1]) continue;
    ++bad;
    if (bad > 3) continue;
    std::vector<uint8_t> codes(fp4_test::kChunk), scales(fp4_test::kChunk);
    REQUIRE(fp4_test::device_values(c, codes.data(), scales.data()) == 0);
    for (uint32_t i = 0; i < fp4_test::kChunk; ++i) {
      const uint32_t u = c * fp4_test::kChunk + i;
      const float x = spmla::f32_from_bits(u), a = std::fabs(x);
      const uint8_t hc = spmla::f32_to_fp4_e2m1(x), hs = spmla::fp4_tile_scale_e4m3(a, !(a <= 3.402823466e38f));
      if (codes[i] != hc || scales[i] != hs) {
        FAIL_CHECK("pattern 0x" << std::hex << u << ": device code " << (int)codes[i] << " scale " << (int)scales[i]
                                << ", host code " << (int)hc << " scale " << (int)hs);
        break;
      }
    }
  }
  INFO(chunks.size() << " chunks of 2^24 patterns compared");
  CHECK(bad == 0);
  // Not vacuous: chunk 63 (0x3F000000.., values 0.5 .. 1) has non-zero codes and scales.
  CHECK(dev[2 * 63] != 0);
  CHECK(dev[2 * 63 + 1] != 0);
}
#endif
