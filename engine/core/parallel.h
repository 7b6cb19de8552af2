#pragma once
// A deterministic parallel-for over an index range on a process-wide pool of worker threads.
//
// parallel_for(n, grain, body) splits [0, n) into contiguous chunks and calls body(begin, end)
// once per chunk, on the calling thread and the pool's workers. Which thread runs a chunk varies;
// what a chunk computes must not: the kernels built on it compute every output element inside
// exactly one chunk, in a fixed order, so results do not depend on the number of threads.
//
// A call made from inside a body, or while another thread is using the pool, runs its chunks on
// the calling thread (same results, no deadlock).
#include <cstdint>
#include <functional>

namespace flexgen {

// Threads used by parallel_for (the caller included). Defaults to
// std::thread::hardware_concurrency() (at least 1).
int parallel_threads();

// Sets the number of threads (>= 1); 0 restores the hardware default. Throws flexgen::Error for a
// negative count. Not to be called while a parallel_for is running.
void set_parallel_threads(int threads);

// Runs body(begin, end) over [0, n) split evenly into min(parallel_threads(), ceil(n / grain))
// contiguous chunks; runs body(0, n) inline when that makes one chunk. An exception thrown by a
// body is rethrown to the caller after every chunk has finished.
void parallel_for(std::int64_t n, std::int64_t grain,
                  const std::function<void(std::int64_t begin, std::int64_t end)>& body);

// Sets the thread count for a scope and restores the previous one (tests, benchmarks).
class ScopedParallelThreads {
 public:
  explicit ScopedParallelThreads(int threads);
  ~ScopedParallelThreads();
  ScopedParallelThreads(const ScopedParallelThreads&) = delete;
  ScopedParallelThreads& operator=(const ScopedParallelThreads&) = delete;

 private:
  int previous_;
};

}  // namespace flexgen
