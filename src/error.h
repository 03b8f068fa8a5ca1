// error.h — the per-thread last error of libspmla and helpers to format it.
//
// Every failing entry point sets a status and a message in one call:
//   return spmla::fail(SPMLA_STATUS_INVALID_ARGUMENT, "spmla_foo", "q.dtype", "bf16", "fp32");
// gives "spmla_foo: q.dtype: expected bf16, got fp32".
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "spmla.h"
#include "spmla_backend.h"

namespace spmla {

// Stores `message` as this thread's last error.
void set_error(std::string message);
// This thread's last error ("" if none); valid until the next set_error/clear_error.
const char *last_error();
void clear_error();
// Incremented on every set_error of this thread: lets the core notice whether a backend
// that failed also left a message.
uint64_t error_generation();

// "fn: arg: expected <expected>, got <got>" stored as the last error; returns `status`.
spmla_status_t fail(spmla_status_t status, const char *fn, const std::string &arg,
                    const std::string &expected, const std::string &got);
// "fn: <message>" stored as the last error; returns `status`.
spmla_status_t fail_msg(spmla_status_t status, const char *fn, const std::string &message);

// Formatting helpers for messages.
std::string str(int64_t v);
std::string str_float(double v);
std::string ptr_str(const void *p);
// Enum fields come from C callers and may hold any int: read them as integers (a load of an
// out-of-range value through the enum type is undefined behaviour in C++).
template <class E>
int64_t enum_value(const E &e) {
  typename std::underlying_type<E>::type v;
  std::memcpy(&v, &e, sizeof v);
  return static_cast<int64_t>(v);
}
const char *dtype_str(int64_t d);
std::string layout_str(int64_t l);
std::string flavor_str(int64_t f);
std::string arrangement_str(int64_t a);

// The table the core hands to backends (set_error records the thread's last error).
const spmla_backend_host_t *backend_host();

}  // namespace spmla
