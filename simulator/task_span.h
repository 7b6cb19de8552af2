#pragma once
// When a task ran: integer nanoseconds since the run began. The simulator predicts these; the
// engine's measured TaskTiming converts to them, so both can be written to one trace and
// compared task by task.
#include <vector>

#include "engine/core/units.h"
#include "engine/runtime/executor.h"

namespace flexgen {

struct TaskSpan {
  Nanoseconds start = 0;
  Nanoseconds end = 0;
  Nanoseconds length() const { return end - start; }
  bool operator==(const TaskSpan&) const = default;
};

// The engine's measured timings (seconds since the run began) in nanoseconds, rounded to nearest.
// Throws flexgen::Error for a timing that is negative, not finite, or ends before it starts.
std::vector<TaskSpan> measured_spans(const std::vector<TaskTiming>& timings);

}  // namespace flexgen
