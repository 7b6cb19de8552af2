#pragma once
// A fixed pool of worker threads for blocking I/O (the disk tier's preads and pwrites). Tasks run
// in FIFO order; each receives the index of the worker running it, so that callers can keep
// per-worker resources (staging buffers) without locking.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace flexgen {

class IoPool {
 public:
  // A task must not throw: an escaping exception terminates the process.
  using Task = std::function<void(std::size_t worker)>;

  explicit IoPool(std::size_t threads);
  ~IoPool();  // shutdown()
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  std::size_t size() const { return count_; }

  void submit(Task task);
  void submit(std::vector<Task> tasks);  // one lock, one wake-up round for a batch

  // Runs every task already queued, then joins the workers. Idempotent; submit() afterwards is a
  // programming error.
  void shutdown();

 private:
  void work(std::size_t worker);

  std::size_t count_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Task> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace flexgen
