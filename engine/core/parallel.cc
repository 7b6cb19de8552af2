#include "engine/core/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/core/error.h"

namespace flexgen {
namespace {

using Body = std::function<void(std::int64_t, std::int64_t)>;

// Set while a thread runs a chunk: a nested parallel_for then runs inline.
thread_local bool t_inside_body = false;

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

// The caller plus threads - 1 workers. One job at a time; a job is `chunks` contiguous pieces of
// [0, n) claimed through an atomic counter by the caller and every worker.
class ThreadPool {
 public:
  explicit ThreadPool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& worker : workers_) worker.join();
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs the job on the pool; returns false, doing nothing, when another thread holds the pool.
  bool try_run(std::int64_t n, std::int64_t chunks, const Body& body) {
    std::unique_lock<std::mutex> run_lock(run_mutex_, std::try_to_lock);
    if (!run_lock.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      body_ = &body;
      n_ = n;
      chunks_ = chunks;
      next_chunk_.store(0);
      error_ = nullptr;
      pending_workers_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    work_cv_.notify_all();
    run_chunks();
    std::exception_ptr error;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_cv_.wait(lock, [this] { return pending_workers_ == 0; });
      body_ = nullptr;
      error = error_;
      error_ = nullptr;
    }
    if (error) std::rethrow_exception(error);
    return true;
  }

 private:
  void worker_loop() {
    std::uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      lock.unlock();
      run_chunks();
      lock.lock();
      if (--pending_workers_ == 0) done_cv_.notify_one();
    }
  }

  // Claims and runs chunks until none is left. The job fields are stable while any thread is in
  // here: the caller changes them only after every worker has checked back in.
  void run_chunks() {
    t_inside_body = true;
    for (;;) {
      const std::int64_t c = next_chunk_.fetch_add(1);
      if (c >= chunks_) break;
      const std::int64_t begin = n_ * c / chunks_;
      const std::int64_t end = n_ * (c + 1) / chunks_;
      try {
        (*body_)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
    t_inside_body = false;
  }

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // held by the thread whose job the pool runs
  std::mutex mutex_;      // guards everything below
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
  int pending_workers_ = 0;
  const Body* body_ = nullptr;
  std::int64_t n_ = 0;
  std::int64_t chunks_ = 0;
  std::atomic<std::int64_t> next_chunk_{0};
  std::exception_ptr error_;
};

std::mutex g_pool_mutex;
int g_requested_threads = 0;  // 0: hardware default
std::shared_ptr<ThreadPool> g_pool;

std::shared_ptr<ThreadPool> pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (!g_pool) {
    g_pool = std::make_shared<ThreadPool>(g_requested_threads > 0 ? g_requested_threads
                                                                  : hardware_threads());
  }
  return g_pool;
}

}  // namespace

int parallel_threads() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (g_pool) return g_pool->threads();
  return g_requested_threads > 0 ? g_requested_threads : hardware_threads();
}

void set_parallel_threads(int threads) {
  FLEXGEN_REQUIRE(threads >= 0, "parallel thread count must be >= 0 (0: hardware default), got ",
                  threads);
  std::shared_ptr<ThreadPool> old;
  {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    g_requested_threads = threads;
    old = std::move(g_pool);  // the next parallel_for builds a pool of the new size
  }
}

void parallel_for(std::int64_t n, std::int64_t grain, const Body& body) {
  if (n <= 0) return;
  grain = std::max<std::int64_t>(grain, 1);
  if (t_inside_body) {
    body(0, n);
    return;
  }
  std::shared_ptr<ThreadPool> p = pool();
  const std::int64_t chunks = std::min<std::int64_t>(p->threads(), (n + grain - 1) / grain);
  if (chunks <= 1 || !p->try_run(n, chunks, body)) body(0, n);
}

ScopedParallelThreads::ScopedParallelThreads(int threads) : previous_(parallel_threads()) {
  set_parallel_threads(threads);
}

ScopedParallelThreads::~ScopedParallelThreads() { set_parallel_threads(previous_); }

}  // namespace flexgen
