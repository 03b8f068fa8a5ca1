// plugin_loader.h — finds and loads backend plugins (libspmla_backend_<name>.so).
#pragma once
#include <string>
#include <vector>

#include "spmla_backend.h"

namespace spmla {

// The outcome of loading one plugin; never throws for a bad plugin (a bad plugin is
// "unavailable" with a reason).
struct LoadedPlugin {
  std::string name;
  std::string library;  // path that was dlopen'ed ("" if not found)
  bool available = false;
  std::string reason;   // why not available
  int32_t device_count = 0;
  const spmla_backend_table_t *table = nullptr;
  void *dl = nullptr;   // dlopen handle, kept for the process lifetime
};

// The directories searched, in order: each entry of SPMLA_BACKEND_PATH, then the directory
// of libspmla.so itself. Empty entries are skipped; duplicates are kept once.
std::vector<std::string> plugin_search_dirs();

// Names of every libspmla_backend_<name>.so in `dirs`, in directory order then by name,
// each name once.
std::vector<std::string> discover_plugin_names(const std::vector<std::string> &dirs);

// Finds libspmla_backend_<name>.so in `dirs` (first hit), loads and initialises it.
LoadedPlugin load_plugin(const std::string &name, const std::vector<std::string> &dirs);

// Checks and initialises a table (shared by plugins and the built-in CPU backend).
// Fills available/reason/device_count/table.
void init_backend_table(const spmla_backend_table_t *table, LoadedPlugin *out);

// True if `table` has member `m` inside its struct_size and the member is non-NULL.
template <class M>
bool table_has(const spmla_backend_table_t *table, M spmla_backend_table_t::*m) {
  if (!table) return false;
  const char *base = reinterpret_cast<const char *>(table);
  const char *field = reinterpret_cast<const char *>(&(table->*m));
  const size_t end = static_cast<size_t>(field - base) + sizeof(M);
  return end <= table->struct_size && table->*m != nullptr;
}

}  // namespace spmla
