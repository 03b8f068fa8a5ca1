// cli.h — the subcommands of the spmla CLI and the small pieces they share.
#pragma once
#include <spmla.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace spmla_cli {

struct InfoOptions {
  bool json = false;
};

struct RunOptions {
  std::string model = "v32";     // v32 | v4 | v41
  std::string phase = "decode";  // decode | prefill
  std::string backend = "auto";
  int device = 0;
  bool json = false;
  int verbose = 0;  // -1 quiet, 0 progress after 1 s, 1 always
  // 0 / -1 = the model's default for the phase (see cmd_run.cpp)
  int batch = 0, tokens_per_request = 0, heads = 0, topk = 0, context = 0, block_size = 64;
  int window = -1, indexer_heads = 64, indexer_dim = 128;
  int check_tokens = 4, repeats = 1;
  uint64_t seed = 1234;
  std::string fp8_flavor = "e4m3fn";
  std::string arrangement = "per_token";  // v41's caches: per_token | page_blocked
};

struct BenchOptions {
  std::string op = "all";
  std::string backend = "auto";
  int device = 0;
  bool json = false;
  int repeats = 5, warmup = 1;
  std::string sizes = "auto";  // auto | small | spec
  double peak_tflops = 0, peak_gbps = 0;  // 0 = measure (or unknown)
  uint64_t seed = 1234;
  std::string shape;  // substring filter on the shape labels ("" = every case)
  std::string l2_flush = "memset";  // memset: 256 MiB overwritten before each timed call (GPU); none
  std::string batch_invariant = "off";  // SPMLA_OPTION_BATCH_INVARIANT: off | on | both (each case twice)
};

int cmd_info(const InfoOptions &o);
int cmd_run(const RunOptions &o);
int cmd_bench(const BenchOptions &o);

// Milliseconds since construction.
class Stopwatch {
 public:
  Stopwatch() : t0_(std::chrono::steady_clock::now()) {}
  double ms() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
  }

 private:
  std::chrono::steady_clock::time_point t0_;
};

// Progress lines on stderr ("[spmla run] storing ..."). Quiet runs print nothing; by default the
// lines are held back until the command has run for a second (a watcher thread then prints the
// held lines and every later one as it comes), so quick runs stay silent.
class Progress {
 public:
  Progress(std::string prefix, int verbose) : prefix_(std::move(prefix)), live_(verbose > 0), off_(verbose < 0) {
    if (!off_ && !live_) watcher_ = std::thread([this] { watch(); });
  }
  ~Progress() { finish(); }
  void operator()(const std::string &line) {
    if (off_) return;
    std::lock_guard<std::mutex> lk(m_);
    const std::string s = "[" + prefix_ + "] " + line + "\n";
    if (live_) {
      std::fputs(s.c_str(), stderr);
      std::fflush(stderr);
    } else {
      held_ += s;
    }
  }
  void finish() {
    {
      std::lock_guard<std::mutex> lk(m_);
      done_ = true;
    }
    cv_.notify_all();
    if (watcher_.joinable()) watcher_.join();
  }

 private:
  void watch() {
    std::unique_lock<std::mutex> lk(m_);
    if (cv_.wait_for(lk, std::chrono::seconds(1), [this] { return done_; })) return;
    live_ = true;
    std::fputs(held_.c_str(), stderr);
    std::fflush(stderr);
    held_.clear();
  }
  std::string prefix_;
  bool live_, off_;
  bool done_ = false;
  std::string held_;
  std::mutex m_;
  std::condition_variable cv_;
  std::thread watcher_;
};

// Counter-based random numbers: row r of stream s under a seed is the same wherever it is drawn,
// so the checker regenerates inputs instead of keeping host copies of large tensors.
class Rng {
 public:
  Rng(uint64_t seed, uint64_t stream, uint64_t row)
      : s_(mix(seed * 0x9E3779B97F4A7C15ull ^ mix(stream + 0x632BE59BD9B4E019ull) ^ mix(row * 0xD1B54A32D192ED03ull + 1))) {}
  uint64_t next() { return mix(s_ += 0x9E3779B97F4A7C15ull); }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double r = std::sqrt(-2.0 * std::log(u1)), a = 6.283185307179586 * u2;
    spare_ = r * std::sin(a);
    has_spare_ = true;
    return r * std::cos(a);
  }
  uint64_t below(uint64_t n) { return next() % n; }

  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t s_;
  bool has_spare_ = false;
  double spare_ = 0;
};

// Median of a non-empty list of timings.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs f(i) for i in [0, n) on all hardware threads. An exception of f (std::bad_alloc of a
// per-row buffer, say) or of starting a thread is rethrown here, after every started thread has
// been joined, instead of ending the process through std::terminate.
template <class F>
void parallel_for(int64_t n, F f) {
  const int nt = int(std::max<int64_t>(1, std::min<int64_t>(std::thread::hardware_concurrency(), n)));
  std::exception_ptr first;
  std::mutex m;
  std::atomic<bool> stop{false};
  auto work = [&](int w) {
    try {
      for (int64_t i = w; i < n && !stop.load(std::memory_order_relaxed); i += nt) f(i);
    } catch (...) {
      std::lock_guard<std::mutex> lk(m);
      if (!first) first = std::current_exception();
      stop = true;
    }
  };
  std::vector<std::thread> th;
  try {
    th.reserve(size_t(nt));
    for (int w = 1; w < nt; ++w) th.emplace_back(work, w);
  } catch (...) {
    stop = true;
    for (auto &x : th) x.join();
    throw;
  }
  work(0);  // this thread is worker 0
  for (auto &x : th) x.join();
  if (first) std::rethrow_exception(first);
}

std::string format_bytes(double bytes);

}  // namespace spmla_cli
