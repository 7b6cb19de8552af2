#include "engine/runtime/executor.h"

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

namespace flexgen {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

std::vector<TaskTiming> Executor::execute(const Schedule& schedule, bool overlap, const RunTask& run) {
  const auto& tasks = schedule.tasks;
  std::vector<TaskTiming> timing(tasks.size());
  const Clock::time_point start = Clock::now();
  if (!overlap) {
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      timing[i].start_s = seconds_since(start);
      run(tasks[i], static_cast<TaskId>(i));
      timing[i].end_s = seconds_since(start);
    }
    return timing;
  }

  std::vector<std::vector<TaskId>> queues(kNumResources);
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    queues[static_cast<std::size_t>(tasks[i].resource())].push_back(static_cast<TaskId>(i));
  }
  std::vector<char> done(tasks.size(), 0);
  std::mutex mutex;
  std::condition_variable changed;
  bool failed = false;
  std::exception_ptr error;

  auto worker = [&](const std::vector<TaskId>& queue) {
    for (TaskId id : queue) {
      const Task& task = tasks[static_cast<std::size_t>(id)];
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] {
          if (failed) return true;
          for (TaskId d : task.deps) {
            if (!done[static_cast<std::size_t>(d)]) return false;
          }
          return true;
        });
        if (failed) return;
      }
      try {
        timing[static_cast<std::size_t>(id)].start_s = seconds_since(start);
        run(task, id);
        timing[static_cast<std::size_t>(id)].end_s = seconds_since(start);
      } catch (...) {
        std::lock_guard lock(mutex);
        if (!failed) error = std::current_exception();
        failed = true;
        changed.notify_all();
        return;
      }
      std::lock_guard lock(mutex);
      done[static_cast<std::size_t>(id)] = 1;
      changed.notify_all();
    }
  };

  std::vector<std::thread> workers;
  for (const auto& queue : queues) {
    if (!queue.empty()) workers.emplace_back(worker, std::cref(queue));
  }
  for (std::thread& t : workers) t.join();
  if (error) std::rethrow_exception(error);
  return timing;
}

}  // namespace flexgen
