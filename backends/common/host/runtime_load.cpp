// runtime_load.cpp — loads a plugin's runtime table once (thread-safe), through the vendor's
// runtime_fill (backends/cuda/runtime_cuda.cu, backends/hip/runtime_rocm.cpp).
#include <atomic>
#include <mutex>
#include <string>

#include "gpu_runtime.h"

namespace spmla {
namespace gpu {
namespace {
std::mutex g_mu;
bool g_tried;
std::atomic<bool> g_loaded{false};
Runtime g_table;
std::string g_why;
}  // namespace

const Runtime *runtime_load(std::string *why) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_tried) {
    g_tried = true;
    g_loaded = runtime_fill(&g_table, &g_why);
  }
  if (!g_loaded && why) *why = g_why;
  return g_loaded ? &g_table : nullptr;
}

const Runtime *runtime() { return g_loaded ? &g_table : nullptr; }

}  // namespace gpu
}  // namespace spmla
