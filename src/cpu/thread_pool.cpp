// thread_pool.cpp — see thread_pool.h.
#include "cpu/thread_pool.h"

#include <cstdlib>
#if defined(__linux__)
#include <sched.h>
#endif

namespace spmla {
namespace cpu {

ThreadPool::ThreadPool(int threads) : size_(threads < 1 ? 1 : threads) {
  threads_.reserve(static_cast<size_t>(size_ - 1));
  for (int i = 1; i < size_; ++i) threads_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto &t : threads_) t.join();
}

void ThreadPool::drain(int worker) {
  for (;;) {
    const int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
    if (t >= ntasks_) break;
    (*job_)(t, worker);
  }
}

void ThreadPool::run(int64_t ntasks, const Task &fn) {
  if (ntasks <= 0) return;
  if (size_ == 1 || ntasks == 1) {
    for (int64_t t = 0; t < ntasks; ++t) fn(t, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    job_ = &fn;
    ntasks_ = ntasks;
    next_.store(0, std::memory_order_relaxed);
    busy_ = size_ - 1;
    ++generation_;
  }
  cv_start_.notify_all();
  drain(0);
  std::unique_lock<std::mutex> lk(mu_);
  cv_done_.wait(lk, [this] { return busy_ == 0; });
  job_ = nullptr;
}

void ThreadPool::worker_loop(int id) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_start_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    drain(id);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (--busy_ == 0) cv_done_.notify_one();
    }
  }
}

int default_thread_count() {
  if (const char *s = std::getenv("SPMLA_NUM_THREADS")) {
    char *end = nullptr;
    long v = std::strtol(s, &end, 10);
    if (end != s && *end == '\0' && v > 0) return v > 1024 ? 1024 : static_cast<int>(v);
  }
  // The CPUs this process may run on (taskset, cgroup cpusets, sched_setaffinity), not every
  // CPU of the machine: more workers than allowed CPUs only time-slice against each other.
  unsigned hc = 0;
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) hc = static_cast<unsigned>(CPU_COUNT(&set));
#endif
  if (hc == 0) hc = std::thread::hardware_concurrency();
  if (hc == 0) hc = 1;
  return hc > 1024 ? 1024 : static_cast<int>(hc);
}

}  // namespace cpu
}  // namespace spmla
