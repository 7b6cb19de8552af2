#include "simulator/duration_model.h"

#include <cmath>

#include "engine/core/error.h"
#include "simulator/task_span.h"

namespace flexgen {

Nanoseconds to_nanoseconds(Seconds seconds, const char* what) {
  FLEXGEN_REQUIRE(std::isfinite(seconds) && seconds >= 0, "invalid ", what, ": ", seconds,
                  " s (must be a finite number >= 0)");
  const double ns = std::round(seconds * 1e9);
  FLEXGEN_REQUIRE(ns < 9.2e18, "invalid ", what, ": ", seconds, " s is too long for the simulator's clock");
  return static_cast<Nanoseconds>(ns);
}

std::vector<Nanoseconds> task_durations(const Schedule& schedule, const DurationModel& model) {
  std::vector<Nanoseconds> out(schedule.tasks.size());
  for (std::size_t i = 0; i < schedule.tasks.size(); ++i) {
    const Task& t = schedule.tasks[i];
    const Nanoseconds d = model.duration(t);
    FLEXGEN_REQUIRE(d >= 0, "duration model: task ", i, " (", task_kind_name(t.kind), ", token ", t.token, ", layer ",
                    t.layer, ", batch ", t.batch, ") has a negative duration (", d, " ns)");
    out[i] = d;
  }
  return out;
}

std::vector<Nanoseconds> measured_durations(const std::vector<TaskTiming>& timings) {
  const std::vector<TaskSpan> spans = measured_spans(timings);
  std::vector<Nanoseconds> out(spans.size());
  for (std::size_t i = 0; i < spans.size(); ++i) out[i] = spans[i].length();
  return out;
}

}  // namespace flexgen
