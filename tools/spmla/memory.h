// memory.h — what a `run` or `bench` invocation will allocate, checked before it allocates.
//
// Each option is range-checked on its own, but their products are not: `spmla run
// --tokens-per-request 16777216 --context 16777216` asks for petabytes, and on Linux such an
// allocation "succeeds" (overcommit) until the pages are touched and the OOM killer ends the
// process without a word. So `run` and `bench` add up the bytes they will allocate (products
// checked for int64 overflow) and refuse, naming the options and the estimate, when it exceeds
//   - host memory: min(physical memory, the cgroup limit (v2 memory.max or v1
//     memory.limit_in_bytes)), or SPMLA_CLI_MEMORY_LIMIT (bytes, or with a K/M/G/T suffix, binary)
//     when that is set (to test the refusal, or to keep a run inside a budget);
//   - device memory (GPU backends): the device's total_memory_bytes from spmla_device_get_info.
// On the cpu backend "device" buffers are host memory, so both sums count against the host.
// An estimate above MemAvailable (but within the limit) is only a warning: memory that is in use
// now may be freed, swapped or reclaimed.
#pragma once
#include <spmla.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "check.h"
#include "cli.h"

namespace spmla_cli {

// Sums of byte counts whose every product and sum is checked for int64 overflow.
class MemoryEstimate {
 public:
  struct Item {
    std::string what;
    bool device;
    int64_t bytes;
  };

  // Adds the product of `factors` (element counts and the element size) as one allocation.
  void device(const std::string &what, std::initializer_list<int64_t> factors) { add(what, true, factors); }
  void host(const std::string &what, std::initializer_list<int64_t> factors) { add(what, false, factors); }

  bool overflow() const { return overflow_; }
  const std::string &overflow_item() const { return overflow_item_; }
  int64_t device_bytes() const { return dev_; }
  int64_t host_bytes() const { return host_; }
  // The largest allocations, for the message ("indexer logits [T x C] fp32 2.0 PiB, ...").
  std::string largest(size_t n = 3) const {
    std::vector<Item> v = items_;
    std::sort(v.begin(), v.end(), [](const Item &a, const Item &b) { return a.bytes > b.bytes; });
    std::string s;
    for (size_t i = 0; i < v.size() && i < n; ++i)
      s += (i ? ", " : "") + std::string(v[i].device ? "" : "host ") + v[i].what + " " + format_bytes(double(v[i].bytes));
    return s;
  }

 private:
  void add(const std::string &what, bool dev, std::initializer_list<int64_t> factors) {
    if (overflow_) return;
    int64_t p = 1;
    for (int64_t f : factors) {
      if (f < 0 || __builtin_mul_overflow(p, f, &p)) return set_overflow(what);
    }
    int64_t &sum = dev ? dev_ : host_;
    if (__builtin_add_overflow(sum, p, &sum)) return set_overflow(what);
    items_.push_back({what, dev, p});
  }
  void set_overflow(const std::string &what) {
    overflow_ = true;
    overflow_item_ = what;
  }
  std::vector<Item> items_;
  int64_t dev_ = 0, host_ = 0;
  bool overflow_ = false;
  std::string overflow_item_;
};

struct MemoryLimit {
  int64_t bytes = 0;   // 0 = unknown
  std::string source;  // "physical memory", "cgroup memory.max", "SPMLA_CLI_MEMORY_LIMIT"
};

namespace memory_detail {
// The first number of a file (-1 if absent or not a number, e.g. cgroup v2's "max").
inline int64_t read_number(const char *path) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s) || s.empty() || !std::isdigit(static_cast<unsigned char>(s[0]))) return -1;
  errno = 0;
  const unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
  if (errno || v > uint64_t(std::numeric_limits<int64_t>::max())) return -1;
  return int64_t(v);
}
// "123", "64G", "1.5GiB" -> bytes (binary units); -1 if not understood.
inline int64_t parse_bytes(const std::string &s) {
  char *end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (errno || end == s.c_str() || !(v >= 0)) return -1;
  std::string unit(end);
  unit.erase(std::remove_if(unit.begin(), unit.end(), [](unsigned char c) { return std::isspace(c); }), unit.end());
  for (char &c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  double mul = 1;
  if (unit.empty() || unit == "B") mul = 1;
  else if (unit == "K" || unit == "KIB" || unit == "KB") mul = 1024.0;
  else if (unit == "M" || unit == "MIB" || unit == "MB") mul = 1024.0 * 1024;
  else if (unit == "G" || unit == "GIB" || unit == "GB") mul = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "TIB" || unit == "TB") mul = 1024.0 * 1024 * 1024 * 1024;
  else return -1;
  const double b = v * mul;
  if (!(b < 9.2e18)) return -1;
  return int64_t(b);
}
}  // namespace memory_detail

// Host memory this process may use (see the header comment).
inline MemoryLimit host_memory_limit() {
  MemoryLimit m;
  if (const char *env = std::getenv("SPMLA_CLI_MEMORY_LIMIT")) {
    const int64_t b = memory_detail::parse_bytes(env);
    if (b < 0) throw Error(std::string("SPMLA_CLI_MEMORY_LIMIT: expected bytes (e.g. 8G), got '") + env + "'");
    m.bytes = b;
    m.source = "SPMLA_CLI_MEMORY_LIMIT";
    return m;
  }
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0) {
    m.bytes = int64_t(pages) * page;
    m.source = "physical memory";
  }
  const struct {
    const char *path, *name;
  } cgroups[] = {{"/sys/fs/cgroup/memory.max", "cgroup memory.max"},
                 {"/sys/fs/cgroup/memory/memory.limit_in_bytes", "cgroup memory.limit_in_bytes"}};
  for (const auto &c : cgroups) {
    const int64_t v = memory_detail::read_number(c.path);
    if (v > 0 && (m.bytes == 0 || v < m.bytes)) {
      m.bytes = v;
      m.source = c.name;
    }
  }
  return m;
}

// MemAvailable of /proc/meminfo in bytes (-1 if unknown).
inline int64_t host_memory_available() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return -1;
}

// Throws Error (main prints it, exit 1) when `e` overflows or exceeds the host or the device;
// prints a warning when the host estimate exceeds what is available right now.
//   cmd:   "spmla run" / "spmla bench"
//   flags: the options that set the sizes, with their values ("--batch 2 --tokens-per-request ...")
//   host_is_device: the backend's device memory is host memory (cpu)
inline void check_memory(const std::string &cmd, const std::string &flags, const MemoryEstimate &e,
                         bool host_is_device, const spmla_device_info_t &dev, bool quiet) {
  if (e.overflow())
    throw Error(cmd + ": " + flags + ": the sizes overflow 64-bit byte counts (" + e.overflow_item() +
                "); lower them");
  int64_t host = e.host_bytes(), device = e.device_bytes();
  if (host_is_device) {
    if (__builtin_add_overflow(host, device, &host))
      throw Error(cmd + ": " + flags + ": the sizes overflow 64-bit byte counts; lower them");
    device = 0;
  }
  const MemoryLimit lim = host_memory_limit();
  if (lim.bytes > 0 && host > lim.bytes)
    throw Error(cmd + ": " + flags + " needs about " + format_bytes(double(host)) + " of host memory (largest: " +
                e.largest() + "), more than the " + format_bytes(double(lim.bytes)) + " of " + lim.source +
                "; lower these options");
  if (!host_is_device && dev.total_memory_bytes > 0 && device > dev.total_memory_bytes)
    throw Error(cmd + ": " + flags + " needs about " + format_bytes(double(device)) + " of device memory (largest: " +
                e.largest() + "), more than the " + format_bytes(double(dev.total_memory_bytes)) + " of " +
                std::string(dev.name) + "; lower these options");
  const int64_t avail = lim.source == "SPMLA_CLI_MEMORY_LIMIT" ? -1 : host_memory_available();  // a given budget rules
  if (!quiet && avail > 0 && host > avail)
    std::fprintf(stderr, "%s: warning: %s needs about %s of host memory, more than the %s available now (MemAvailable)\n",
                 cmd.c_str(), flags.c_str(), format_bytes(double(host)).c_str(), format_bytes(double(avail)).c_str());
}

}  // namespace spmla_cli
