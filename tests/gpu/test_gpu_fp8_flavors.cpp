// GPU tier: the FP8 flavor tests of tests/gpu/fp8_flavor_suite.h on the GPU backend under test
// (SPMLA_GPU_BACKEND: cuda, or hip through the HIP-on-NVIDIA build). Everything is compared with
// the suite's independent model (not with the CPU backend), so a backend that agreed with a wrong
// CPU reference would still fail here.
#include "fp8_flavor_suite.h"
#include "gpu_test.h"

using namespace gpu_test;

TEST_CASE("gpu fp8 flavors: V32_FP8, V4_FP8 and V41_FP8 written and read in one flavor give the model's bytes and numbers",
          "[gpu][fp8]") {
  fp8flav::same_flavor_roundtrip(G());
}

TEST_CASE("gpu fp8 flavors: FNUZ store scales by 240, E4M3FN by 448", "[gpu][fp8]") {
  fp8flav::no_448_240_misscaling(G());
}

TEST_CASE("gpu fp8 flavors: the same bytes declared in the other flavor read other numbers", "[gpu][fp8]") {
  fp8flav::mislabelled_reads_differ(G());
}

TEST_CASE("gpu fp8 flavors: main and extra sources of different flavors", "[gpu][fp8]") {
  fp8flav::per_source_flavors(G());
}

TEST_CASE("gpu fp8 flavors: mixing refused where one call sees both; NONE / unknown flavors refused",
          "[gpu][fp8]") {
  fp8flav::mixing_is_caught(G());
  fp8flav::missing_or_unknown_flavor_refused(G());
}
