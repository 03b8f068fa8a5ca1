// fixture_support.h — what the Catch2 tests over op_fixtures.h share: one process-wide handle on
// the CPU backend (created once, never destroyed: tests run on one thread unless they say so) and
// make(), which builds a fixture and gives its run/plan calls the workspace size its query reports.
#pragma once
#include <catch2/catch.hpp>

#include <cstdlib>
#include <memory>

#include "plugins/op_fixtures.h"
#include "spmla.h"

namespace fixtures {

inline spmla_handle_t cpu_handle() {
  static spmla_handle_t h = [] {
    spmla_handle_t x = nullptr;
    if (spmla_handle_create("cpu", 0, &x) != SPMLA_STATUS_SUCCESS) std::abort();
    return x;
  }();
  return h;
}

inline std::unique_ptr<Fixture> make(const Factory &f) {
  auto fx = f();
  for (auto &c : fx->calls())
    if (c.query) {
      REQUIRE(c.f(cpu_handle()) == SPMLA_STATUS_SUCCESS);
      REQUIRE(fx->ws_out <= fx->ws->n);
      fx->ws_bytes = fx->ws_out;
    }
  return fx;
}

}  // namespace fixtures
