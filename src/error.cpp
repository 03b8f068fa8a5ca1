// error.cpp — per-thread last error and message formatting.
#include "error.h"
#include "kv_layout_traits.h"

#include <cinttypes>
#include <cstdio>

namespace spmla {
namespace {
thread_local std::string t_last_error;
thread_local uint64_t t_generation = 0;

extern "C" void host_set_error(const char *message) {
  try {
    set_error(message ? std::string(message) : std::string("(backend gave no message)"));
  } catch (...) {
    // Nothing may escape into a plugin; an allocation failure loses the message only.
  }
}

const spmla_backend_host_t k_host = {sizeof(spmla_backend_host_t), SPMLA_BACKEND_ABI_VERSION,
                                     host_set_error};
}  // namespace

void set_error(std::string message) {
  t_last_error = std::move(message);
  ++t_generation;
}

const char *last_error() { return t_last_error.c_str(); }

void clear_error() {
  t_last_error.clear();
  t_last_error.shrink_to_fit();
}

uint64_t error_generation() { return t_generation; }

spmla_status_t fail(spmla_status_t status, const char *fn, const std::string &arg,
                    const std::string &expected, const std::string &got) {
  try {
    std::string m;
    m.reserve(64 + arg.size() + expected.size() + got.size());
    m += fn;
    m += ": ";
    m += arg;
    m += ": expected ";
    m += expected;
    m += ", got ";
    m += got;
    set_error(std::move(m));
  } catch (...) {
  }
  return status;
}

spmla_status_t fail_msg(spmla_status_t status, const char *fn, const std::string &message) {
  try {
    set_error(std::string(fn) + ": " + message);
  } catch (...) {
  }
  return status;
}

std::string str(int64_t v) { return std::to_string(v); }

std::string str_float(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string ptr_str(const void *p) {
  if (!p) return "NULL";
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%" PRIxPTR, reinterpret_cast<uintptr_t>(p));
  return buf;
}

const char *dtype_str(int64_t d) {
  return d >= SPMLA_DTYPE_INVALID && d <= SPMLA_DTYPE_UE8M0
             ? spmla_dtype_name(static_cast<spmla_dtype_t>(d))
             : "invalid";
}

std::string layout_str(int64_t l) {
  // names from numerics/kv_layout_traits.h
  const KvLayoutInfo i = l >= kKvLayoutFirst && l <= kKvLayoutLastAbi ? kv_layout_info(static_cast<int32_t>(l), 0)
                                                                       : kv_layout_info(0, 0);
  return i.known ? std::string(i.name) : "unknown layout " + str(l);
}

std::string arrangement_str(int64_t a) {
  switch (a) {
    case SPMLA_KV_ARRANGEMENT_DEFAULT: return "DEFAULT";
    case SPMLA_KV_ARRANGEMENT_PER_TOKEN: return "PER_TOKEN";
    case SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED: return "PAGE_BLOCKED";
    default: return "unknown arrangement " + str(a);
  }
}

std::string flavor_str(int64_t f) {
  switch (f) {
    case SPMLA_FP8_NONE: return "NONE";
    case SPMLA_FP8_E4M3FN: return "E4M3FN";
    case SPMLA_FP8_E4M3FNUZ: return "E4M3FNUZ";
    default: return "unknown flavor " + str(f);
  }
}

const spmla_backend_host_t *backend_host() { return &k_host; }

}  // namespace spmla
