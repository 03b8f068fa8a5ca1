// cpu_backend.h — the built-in CPU reference backend, registered by the core as "cpu".
#pragma once
#include "spmla_backend.h"

namespace spmla {
// The CPU backend's function table (static, never NULL). It fills the same plugin table as
// the GPU plugins, so dispatch is one code path.
const spmla_backend_table_t *cpu_backend_table();
}  // namespace spmla
