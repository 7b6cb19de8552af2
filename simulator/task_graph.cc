#include "simulator/task_graph.h"

#include <cmath>

#include "engine/core/error.h"
#include "simulator/event_queue.h"

namespace flexgen {

void TaskGraph::reserve(std::size_t tasks, std::size_t deps) {
  lane.reserve(tasks);
  duration.reserve(tasks);
  dep_begin.reserve(tasks + 1);
  dep_ids.reserve(deps);
}

std::int32_t TaskGraph::add_task(std::int32_t lane_id, Nanoseconds task_duration) {
  lane.push_back(lane_id);
  duration.push_back(task_duration);
  dep_begin.push_back(dep_begin.back());
  return size() - 1;
}

namespace {

// Event types. At equal times every end is handled before any start, so a task that starts at t
// sees the links as they are after everything ending at t has ended.
constexpr std::int32_t kEnd = 0;
constexpr std::int32_t kStart = 1;

void validate(const TaskGraph& g) {
  const std::int32_t n = g.size();
  FLEXGEN_REQUIRE(g.num_lanes >= 0, "task graph: negative lane count ", g.num_lanes);
  FLEXGEN_REQUIRE(g.duration.size() == g.lane.size() && g.dep_begin.size() == g.lane.size() + 1 &&
                      g.dep_begin.front() == 0 && g.dep_begin.back() == static_cast<std::int64_t>(g.dep_ids.size()),
                  "task graph: inconsistent arrays");
  for (std::int32_t i = 0; i < n; ++i) {
    const std::size_t u = static_cast<std::size_t>(i);
    FLEXGEN_REQUIRE(g.lane[u] >= 0 && g.lane[u] < g.num_lanes, "task graph: task ", i, " is on lane ", g.lane[u],
                    " but there are ", g.num_lanes, " lanes");
    FLEXGEN_REQUIRE(g.duration[u] >= 0, "task graph: task ", i, " has a negative duration (", g.duration[u], " ns)");
    for (std::int64_t e = g.dep_begin[u]; e < g.dep_begin[u + 1]; ++e) {
      const std::int32_t d = g.dep_ids[static_cast<std::size_t>(e)];
      FLEXGEN_REQUIRE(d >= 0 && d < i, "task graph: task ", i, " depends on task ", d,
                      ", which does not come before it in the list");
    }
  }
  std::vector<char> paired(static_cast<std::size_t>(g.num_lanes), 0);
  for (const auto& [a, b] : g.shared_pairs) {
    FLEXGEN_REQUIRE(a >= 0 && a < g.num_lanes && b >= 0 && b < g.num_lanes && a != b, "task graph: shared pair (", a,
                    ", ", b, ") must name two different lanes of ", g.num_lanes);
    FLEXGEN_REQUIRE(!paired[static_cast<std::size_t>(a)] && !paired[static_cast<std::size_t>(b)],
                    "task graph: a lane is in more than one shared pair (", a, ", ", b, ")");
    paired[static_cast<std::size_t>(a)] = paired[static_cast<std::size_t>(b)] = 1;
  }
  FLEXGEN_REQUIRE(std::isfinite(g.shared_rate) && g.shared_rate > 0 && g.shared_rate <= 1, "task graph: shared rate ",
                  g.shared_rate, " must be in (0, 1]");
}

// Compressed rows: items of row r are items[begin[r], begin[r + 1]).
struct Rows {
  std::vector<std::int64_t> begin;
  std::vector<std::int32_t> items;
};

class Replay {
 public:
  explicit Replay(const TaskGraph& g) : g_(g) {
    const std::size_t n = g.lane.size();
    const std::size_t lanes = static_cast<std::size_t>(g.num_lanes);
    // Each lane's tasks in list order.
    lane_tasks_.begin.assign(lanes + 1, 0);
    for (std::int32_t l : g.lane) ++lane_tasks_.begin[static_cast<std::size_t>(l) + 1];
    for (std::size_t l = 0; l < lanes; ++l) lane_tasks_.begin[l + 1] += lane_tasks_.begin[l];
    lane_tasks_.items.resize(n);
    std::vector<std::int64_t> fill(lane_tasks_.begin.begin(), lane_tasks_.begin.end() - 1);
    for (std::size_t i = 0; i < n; ++i) {
      lane_tasks_.items[static_cast<std::size_t>(fill[static_cast<std::size_t>(g.lane[i])]++)] =
          static_cast<std::int32_t>(i);
    }
    head_.assign(lane_tasks_.begin.begin(), lane_tasks_.begin.end() - 1);
    // Dependents of each task, and how many dependencies each task still waits for.
    dependents_.begin.assign(n + 1, 0);
    waiting_.assign(n, 0);
    for (std::size_t i = 0; i < n; ++i) {
      waiting_[i] = static_cast<std::int32_t>(g.dep_begin[i + 1] - g.dep_begin[i]);
      for (std::int64_t e = g.dep_begin[i]; e < g.dep_begin[i + 1]; ++e) {
        ++dependents_.begin[static_cast<std::size_t>(g.dep_ids[static_cast<std::size_t>(e)]) + 1];
      }
    }
    for (std::size_t i = 0; i < n; ++i) dependents_.begin[i + 1] += dependents_.begin[i];
    dependents_.items.resize(g.dep_ids.size());
    fill.assign(dependents_.begin.begin(), dependents_.begin.end() - 1);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::int64_t e = g.dep_begin[i]; e < g.dep_begin[i + 1]; ++e) {
        const auto d = static_cast<std::size_t>(g.dep_ids[static_cast<std::size_t>(e)]);
        dependents_.items[static_cast<std::size_t>(fill[d]++)] = static_cast<std::int32_t>(i);
      }
    }
    busy_.assign(lanes, 0);
    partner_.assign(lanes, -1);
    for (const auto& [a, b] : g.shared_pairs) {
      partner_[static_cast<std::size_t>(a)] = b;
      partner_[static_cast<std::size_t>(b)] = a;
    }
    if (!g.shared_pairs.empty()) {
      running_.assign(lanes, -1);
      remaining_.assign(lanes, 0);
      rate_.assign(lanes, 1);
      since_.assign(lanes, 0);
      version_.assign(lanes, 0);
    }
    spans_.assign(n, TaskSpan{});
  }

  GraphRun run() {
    std::vector<Event> initial;
    for (std::int32_t l = 0; l < g_.num_lanes; ++l) try_start(l, 0, initial);
    // Live events at once: at most one start or end per lane, plus stale ends of shared lanes.
    const std::int64_t events = run_events(
        initial, [this](const Event& e, std::vector<Event>& caused) { handle(e, caused); },
        static_cast<std::size_t>(2 * g_.num_lanes + 16));
    return GraphRun{std::move(spans_), events};
  }

 private:
  void handle(const Event& e, std::vector<Event>& caused) {
    const auto task = static_cast<std::int32_t>(e.subject);
    const std::int32_t lane = g_.lane[static_cast<std::size_t>(task)];
    if (e.type == kStart) {
      start(task, lane, e.time, caused);
    } else {
      end(task, lane, e, caused);
    }
  }

  // Starts the lane's next task at `now` if the lane is free and the task's dependencies are done.
  void try_start(std::int32_t lane, Nanoseconds now, std::vector<Event>& out) {
    const auto l = static_cast<std::size_t>(lane);
    if (busy_[l] || head_[l] == lane_tasks_.begin[l + 1]) return;
    const std::int32_t next = lane_tasks_.items[static_cast<std::size_t>(head_[l])];
    if (waiting_[static_cast<std::size_t>(next)] > 0) return;
    busy_[l] = 1;
    ++head_[l];
    out.push_back(Event{now, kStart, kStart, next, 0, 0});
  }

  void start(std::int32_t task, std::int32_t lane, Nanoseconds now, std::vector<Event>& caused) {
    const auto t = static_cast<std::size_t>(task);
    spans_[t].start = now;
    const std::int32_t partner = partner_[static_cast<std::size_t>(lane)];
    if (partner < 0) {
      caused.push_back(Event{now + g_.duration[t], kEnd, kEnd, task, 0, 0});
      return;
    }
    const auto l = static_cast<std::size_t>(lane);
    running_[l] = task;
    remaining_[l] = static_cast<double>(g_.duration[t]);
    since_[l] = now;
    const bool both = running_[static_cast<std::size_t>(partner)] >= 0;
    if (both) reschedule(partner, now, g_.shared_rate, caused);
    rate_[l] = both ? g_.shared_rate : 1.0;
    schedule_end(lane, now, caused);
  }

  void end(std::int32_t task, std::int32_t lane, const Event& e, std::vector<Event>& caused) {
    const auto l = static_cast<std::size_t>(lane);
    const std::int32_t partner = partner_[l];
    if (partner >= 0) {
      if (e.data != version_[l]) return;  // superseded: the lane's rate changed since
      running_[l] = -1;
      if (running_[static_cast<std::size_t>(partner)] >= 0) reschedule(partner, e.time, 1.0, caused);
    }
    spans_[static_cast<std::size_t>(task)].end = e.time;
    busy_[l] = 0;
    const auto t = static_cast<std::size_t>(task);
    for (std::int64_t i = dependents_.begin[t]; i < dependents_.begin[t + 1]; ++i) {
      const std::int32_t d = dependents_.items[static_cast<std::size_t>(i)];
      if (--waiting_[static_cast<std::size_t>(d)] == 0) try_start(g_.lane[static_cast<std::size_t>(d)], e.time, caused);
    }
    try_start(lane, e.time, caused);
  }

  // Shared lanes: account the work done at the old rate since the last change, switch to `rate`
  // and replace the pending end event.
  void reschedule(std::int32_t lane, Nanoseconds now, double rate, std::vector<Event>& caused) {
    const auto l = static_cast<std::size_t>(lane);
    remaining_[l] -= static_cast<double>(now - since_[l]) * rate_[l];
    if (remaining_[l] < 1e-6) remaining_[l] = 0;
    since_[l] = now;
    rate_[l] = rate;
    schedule_end(lane, now, caused);
  }

  void schedule_end(std::int32_t lane, Nanoseconds now, std::vector<Event>& caused) {
    const auto l = static_cast<std::size_t>(lane);
    ++version_[l];
    // Round up, forgiving the rounding error of the division.
    const auto left = static_cast<Nanoseconds>(std::ceil(remaining_[l] / rate_[l] - 1e-6));
    caused.push_back(Event{now + (left > 0 ? left : 0), kEnd, kEnd, running_[l], version_[l], 0});
  }

  const TaskGraph& g_;
  Rows lane_tasks_, dependents_;
  std::vector<std::int64_t> head_;     // per lane: index into lane_tasks_.items of the next task
  std::vector<std::int32_t> waiting_;  // per task: dependencies not yet ended
  std::vector<char> busy_;             // per lane: a task is starting or running
  std::vector<std::int32_t> partner_;  // per lane: the lane sharing its budget, or -1
  // Shared lanes only.
  std::vector<std::int32_t> running_;
  std::vector<double> remaining_, rate_;
  std::vector<Nanoseconds> since_;
  std::vector<std::int64_t> version_;
  std::vector<TaskSpan> spans_;
};

}  // namespace

GraphRun run_task_graph(const TaskGraph& graph) {
  validate(graph);
  return Replay(graph).run();
}

}  // namespace flexgen
