// registry.h — the backend registry: built once, thread-safely, on first use.
// Order: the built-in "cpu", then "cuda" and "hip" (always listed, available or not), then
// every other libspmla_backend_<name>.so found on the search path.
#pragma once
#include <string>
#include <vector>

#include "plugin_loader.h"

namespace spmla {

using BackendEntry = LoadedPlugin;

const std::vector<BackendEntry> &registry();
// NULL if no backend of that name is known.
const BackendEntry *find_backend(const char *name);
// "cpu, cuda, hip, ..." for messages.
std::string known_backend_names();

}  // namespace spmla
