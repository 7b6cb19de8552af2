#pragma once
// The simulator's executor: tasks on lanes (one lane per resource instance), replayed on the
// event core with the engine executor's semantics (engine/runtime/executor.h, overlap on):
// each lane runs its tasks one at a time in increasing task id (list order), each starting as
// soon as its lane is free and every task it depends on has ended. Dependencies must point to
// earlier tasks; then the earliest unfinished task can always start and a run cannot deadlock.
//
// Shared link budget (optional): lanes paired in `shared_pairs` model two directions of one link
// with a common budget. A task's duration is its time alone; while both lanes of a pair run a
// task, each progresses at `shared_rate` of its own speed (0.5: half-duplex, 1: independent), and
// at full speed again once the other ends. Remaining work is kept in nanoseconds of solo time;
// end times are rounded up to whole nanoseconds.
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

#include "engine/core/units.h"
#include "simulator/task_span.h"

namespace flexgen {

struct TaskGraph {
  std::int32_t num_lanes = 0;
  std::vector<std::int32_t> lane;          // per task
  std::vector<Nanoseconds> duration;       // per task, >= 0
  std::vector<std::int64_t> dep_begin{0};  // deps of task i: dep_ids[dep_begin[i], dep_begin[i + 1])
  std::vector<std::int32_t> dep_ids;
  std::vector<std::pair<std::int32_t, std::int32_t>> shared_pairs;  // lanes sharing one budget
  double shared_rate = 1.0;                                         // in (0, 1]

  std::int32_t size() const { return static_cast<std::int32_t>(lane.size()); }
  void reserve(std::size_t tasks, std::size_t deps);
  // Appends a task; returns its id. Deps are added with add_dep before the next add_task.
  std::int32_t add_task(std::int32_t lane_id, Nanoseconds task_duration);
  void add_dep(std::int32_t dep) {
    dep_ids.push_back(dep);
    ++dep_begin.back();
  }
};

struct GraphRun {
  std::vector<TaskSpan> spans;  // per task
  std::int64_t events = 0;      // events handled
};

// Throws flexgen::Error for an invalid graph: a lane out of range, a negative duration, a
// dependency that is not an earlier task, a shared pair naming a bad or the same lane or a lane
// twice, or a shared rate outside (0, 1].
GraphRun run_task_graph(const TaskGraph& graph);

}  // namespace flexgen
