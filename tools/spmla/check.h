// check.h — error handling of the spmla CLI: every failing library call becomes an exception that
// carries the call, the status string and spmla_last_error_message(); main() prints it and exits 1.
#pragma once
#include <spmla.h>

#include <stdexcept>
#include <string>

namespace spmla_cli {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline void check(spmla_status_t st, const char *what) {
  if (st == SPMLA_STATUS_SUCCESS) return;
  std::string msg = std::string(what) + " failed: " + spmla_status_string(st);
  const char *detail = spmla_last_error_message();
  if (detail && *detail) msg += ": " + std::string(detail);
  throw Error(msg);
}

// SPMLA_CHECK(spmla_foo(...)) names the call in the message.
#define SPMLA_CHECK(call) ::spmla_cli::check((call), #call)

}  // namespace spmla_cli
