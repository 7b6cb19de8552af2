#include "engine/runtime/io_pool.h"

#include <cassert>
#include <utility>

namespace flexgen {

IoPool::IoPool(std::size_t threads) : count_(threads) {
  assert(threads > 0);
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this, i] { work(i); });
}

IoPool::~IoPool() { shutdown(); }

void IoPool::submit(Task task) {
  {
    std::lock_guard lock(mutex_);
    assert(!stopping_);
    queue_.push_back(std::move(task));
  }
  wake_.notify_one();
}

void IoPool::submit(std::vector<Task> tasks) {
  if (tasks.empty()) return;
  {
    std::lock_guard lock(mutex_);
    assert(!stopping_);
    for (Task& task : tasks) queue_.push_back(std::move(task));
  }
  if (tasks.size() == 1) {
    wake_.notify_one();
  } else {
    wake_.notify_all();
  }
}

void IoPool::shutdown() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
}

void IoPool::work(std::size_t worker) {
  for (;;) {
    Task task;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task(worker);
  }
}

}  // namespace flexgen
