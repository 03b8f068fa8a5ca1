// FP8 flavors on the CPU reference backend (CPU tier, runs in CI): V32_FP8 and V4_FP8 caches
// written and read in one flavor give an independent model's bytes and numbers, the 448/240
// mis-scaling cannot happen, the same bytes declared in the other flavor read other numbers (the
// flavor is the caller's declaration), and mixing flavors is refused where one call sees both.
// The bodies are in tests/gpu/fp8_flavor_suite.h; the GPU tier runs the same ones on cuda / hip.
#include "gpu/fp8_flavor_suite.h"

namespace {
struct CpuHandle {
  spmla_handle_t h = nullptr;
  CpuHandle() { fp8flav::ok(spmla_handle_create("cpu", 0, &h), "cpu handle"); }
  ~CpuHandle() { spmla_handle_destroy(h); }
};
}  // namespace

TEST_CASE("fp8 flavors: V32_FP8 and V4_FP8 written and read in one flavor give the model's bytes and numbers",
          "[fp8][flavor]") {
  CpuHandle h;
  fp8flav::same_flavor_roundtrip(h.h);
}

TEST_CASE("fp8 flavors: an FNUZ store scales by 240 and an E4M3FN store by 448 (no 448/240 mis-scaling)",
          "[fp8][flavor]") {
  CpuHandle h;
  fp8flav::no_448_240_misscaling(h.h);
}

TEST_CASE("fp8 flavors: the same bytes declared in the other flavor read other numbers", "[fp8][flavor]") {
  CpuHandle h;
  fp8flav::mislabelled_reads_differ(h.h);
}

TEST_CASE("fp8 flavors: main and extra sources of different flavors, each read with its own", "[fp8][flavor]") {
  CpuHandle h;
  fp8flav::per_source_flavors(h.h);
}

TEST_CASE("fp8 flavors: mixing is refused where one call sees both (indexer q vs cache, q vs k)", "[fp8][flavor]") {
  CpuHandle h;
  fp8flav::mixing_is_caught(h.h);
}

TEST_CASE("fp8 flavors: an FP8 layout with fp8_flavor NONE or out of range is refused by every op", "[fp8][flavor]") {
  CpuHandle h;
  fp8flav::missing_or_unknown_flavor_refused(h.h);
}
