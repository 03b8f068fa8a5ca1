// GPU tier: the FP8 flavour tests of tests/gpu/fp8_flavour_suite.h on the GPU backend under test
// (SPMLA_GPU_BACKEND: cuda, or hip through the HIP-on-NVIDIA build). Everything is compared with
// the suite's independent model (not with the CPU backend), so a backend that agreed with a wrong
// CPU reference would still fail here.
#include "fp8_flavour_suite.h"
#include "gpu_test.h"

using namespace gpu_test;

TEST_CASE("gpu fp8 flavours: V32_FP8 and V4_FP8 written and read in one flavour give the model's bytes and numbers",
          "[gpu][fp8]") {
  fp8flav::same_flavour_roundtrip(G());
}

TEST_CASE("gpu fp8 flavours: FNUZ store scales by 240, E4M3FN by 448", "[gpu][fp8]") {
  fp8flav::no_448_240_misscaling(G());
}

TEST_CASE("gpu fp8 flavours: the same bytes declared in the other flavour read other numbers", "[gpu][fp8]") {
  fp8flav::mislabelled_reads_differ(G());
}

TEST_CASE("gpu fp8 flavours: main and extra sources of different flavours", "[gpu][fp8]") {
  fp8flav::per_source_flavours(G());
}

TEST_CASE("gpu fp8 flavours: mixing refused where one call sees both; NONE / unknown flavours refused",
          "[gpu][fp8]") {
  fp8flav::mixing_is_caught(G());
  fp8flav::missing_or_unknown_flavour_refused(G());
}
