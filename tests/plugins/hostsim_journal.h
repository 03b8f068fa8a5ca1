// hostsim_journal.h — what the simulated GPU vendor (hostsim_vendor.cpp) records of each launch,
// shared with the test that reads it (tests/test_host_layer.cpp).
#pragma once
#include "common/params.h"

namespace hostsim {

struct Launch {
  char what[24];     // "attention", "combine", "indices_to_slots", "indexer", "topk", ...
  char variant[16];  // the attention variant or the launcher's configuration name
  unsigned grid[3];
  int q_vec;  // attention: vector loads of Q; store/gather: 16-byte rows
  spmla::kern::AttnParams attn;
  spmla::kern::IndicesToSlotsParams slots;
  spmla::kern::WindowParams window;
  spmla::kern::IndexerParams indexer;
  spmla::kern::TopkParams topk;
  spmla::kern::StoreParams store;
  spmla::kern::GatherParams gather;
};

constexpr int kMaxLaunches = 64;
struct Journal {
  int count;  // launches since the last reset (may exceed kMaxLaunches; only the first are kept)
  Launch launches[kMaxLaunches];
};

}  // namespace hostsim

// Exported by libspmla_backend_hostsim.so.
extern "C" hostsim::Journal *hostsim_journal();
