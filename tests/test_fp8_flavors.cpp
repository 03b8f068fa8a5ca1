// FP8 flavours on the CPU reference backend (CPU tier, runs in CI): V32_FP8 and V4_FP8 caches
// written and read in one flavour give an independent model's bytes and numbers, the 448/240
// mis-scaling cannot happen, the same bytes declared in the other flavour read other numbers (the
// flavour is the caller's declaration), and mixing flavours is refused where one call sees both.
// The bodies are in tests/gpu/fp8_flavour_suite.h; the GPU tier runs the same ones on cuda / hip.
#include "gpu/fp8_flavour_suite.h"

namespace {
struct CpuHandle {
  spmla_handle_t h = nullptr;
  CpuHandle() { fp8flav::ok(spmla_handle_create("cpu", 0, &h), "cpu handle"); }
  ~CpuHandle() { spmla_handle_destroy(h); }
};
}  // namespace

TEST_CASE("fp8 flavours: V32_FP8 and V4_FP8 written and read in one flavour give the model's bytes and numbers",
          "[fp8][flavour]") {
  CpuHandle h;
  fp8flav::same_flavour_roundtrip(h.h);
}

TEST_CASE("fp8 flavours: an FNUZ store scales by 240 and an E4M3FN store by 448 (no 448/240 mis-scaling)",
          "[fp8][flavour]") {
  CpuHandle h;
  fp8flav::no_448_240_misscaling(h.h);
}

TEST_CASE("fp8 flavours: the same bytes declared in the other flavour read other numbers", "[fp8][flavour]") {
  CpuHandle h;
  fp8flav::mislabelled_reads_differ(h.h);
}

TEST_CASE("fp8 flavours: main and extra sources of different flavours, each read with its own", "[fp8][flavour]") {
  CpuHandle h;
  fp8flav::per_source_flavours(h.h);
}

TEST_CASE("fp8 flavours: mixing is refused where one call sees both (indexer q vs cache, q vs k)", "[fp8][flavour]") {
  CpuHandle h;
  fp8flav::mixing_is_caught(h.h);
}

TEST_CASE("fp8 flavours: an FP8 layout with fp8_flavor NONE or out of range is refused by every op", "[fp8][flavour]") {
  CpuHandle h;
  fp8flav::missing_or_unknown_flavour_refused(h.h);
}
