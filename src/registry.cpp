// registry.cpp — builds the backend list once (std::call_once) and looks backends up.
#include "registry.h"

#include <cstring>
#include <mutex>

#include "cpu/cpu_backend.h"

namespace spmla {
namespace {

std::vector<BackendEntry> *g_registry = nullptr;
std::once_flag g_once;

void build() {
  // Never destroyed: plugins stay loaded and entries stay valid until the process exits
  // (names and reasons are handed out as static strings).
  auto *reg = new std::vector<BackendEntry>();
  BackendEntry cpu;
  cpu.name = "cpu";
  init_backend_table(cpu_backend_table(), &cpu);
  reg->push_back(std::move(cpu));

  const std::vector<std::string> dirs = plugin_search_dirs();
  reg->push_back(load_plugin("cuda", dirs));
  reg->push_back(load_plugin("hip", dirs));
  for (const std::string &name : discover_plugin_names(dirs)) {
    if (name == "cpu" || name == "cuda" || name == "hip" || name == "auto") continue;
    reg->push_back(load_plugin(name, dirs));
  }
  g_registry = reg;
}

}  // namespace

const std::vector<BackendEntry> &registry() {
  std::call_once(g_once, build);
  return *g_registry;
}

const BackendEntry *find_backend(const char *name) {
  for (const auto &b : registry())
    if (b.name == name) return &b;
  return nullptr;
}

std::string known_backend_names() {
  std::string s;
  for (const auto &b : registry()) {
    if (!s.empty()) s += ", ";
    s += b.name;
  }
  return s;
}

}  // namespace spmla
