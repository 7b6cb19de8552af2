#pragma once
// Runs a Schedule. With overlap off, the tasks run one after another in list order on the calling
// thread. With overlap on, one worker thread per resource runs that resource's tasks in list order,
// each as soon as its dependencies are done. The first task to throw stops the run: the other
// workers finish the task in hand, start no new one, and the error is rethrown to the caller.
#include <chrono>
#include <functional>
#include <vector>

#include "engine/runtime/schedule.h"

namespace flexgen {

// What happened to one task, for traces and the cost-model validation.
struct TaskTiming {
  double start_s = 0;  // seconds since the run began
  double end_s = 0;
};

class Executor {
 public:
  using RunTask = std::function<void(const Task& task, TaskId id)>;

  // Runs every task through `run`; returns the timing of each task (indexed by TaskId).
  static std::vector<TaskTiming> execute(const Schedule& schedule, bool overlap, const RunTask& run);
};

}  // namespace flexgen
