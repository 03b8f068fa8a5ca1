// thread_pool.h — a small fixed-size thread pool for the CPU reference backend.
//
// run(n, fn) calls fn(task, worker) for every task in [0, n) exactly once, spread over the pool's
// threads (the calling thread is worker 0), and returns when all are done. Tasks are handed out
// dynamically, so *which* thread runs a task varies; the backend therefore only ever writes a
// task's results to memory owned by that task and never splits a reduction across tasks, which
// makes every result independent of the thread count and of scheduling.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace spmla {
namespace cpu {

class ThreadPool {
 public:
  using Task = std::function<void(int64_t task, int worker)>;

  // `threads` >= 1 is the total number of threads, the caller included.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  int size() const { return size_; }
  void run(int64_t ntasks, const Task &fn);

  // Convenience: splits [0, n) into chunks of `grain` and calls fn(begin, end, worker).
  template <class F>
  void parallel_for(int64_t n, int64_t grain, F &&fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    const int64_t chunks = (n + grain - 1) / grain;
    run(chunks, [&](int64_t c, int worker) {
      const int64_t b = c * grain;
      const int64_t e = b + grain < n ? b + grain : n;
      fn(b, e, worker);
    });
  }

 private:
  void worker_loop(int id);
  void drain(int worker);

  int size_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_start_;
  std::condition_variable cv_done_;
  uint64_t generation_ = 0;
  bool stop_ = false;
  const Task *job_ = nullptr;
  int64_t ntasks_ = 0;
  std::atomic<int64_t> next_{0};
  int busy_ = 0;
};

// Thread count from the environment: SPMLA_NUM_THREADS when it is a positive integer, else
// std::thread::hardware_concurrency() (at least 1); capped at 1024.
int default_thread_count();

}  // namespace cpu
}  // namespace spmla
