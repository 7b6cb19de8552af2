#pragma once
// How long each task of a Schedule takes: the simulator's only source of time. The analytical
// cost model (engine/costmodel, over a HardwareSpec) implements DurationModel; so can a model
// fitted to measurements. A run measured by the engine can also be replayed directly from its
// per-task durations (measured_durations below).
#include <vector>

#include "engine/core/units.h"
#include "engine/runtime/executor.h"
#include "engine/runtime/schedule.h"

namespace flexgen {

class DurationModel {
 public:
  virtual ~DurationModel() = default;
  // The time `task` occupies its resource when it runs alone (a task on a shared PCIe link may
  // take longer, see SimOptions::shared_pcie_fraction). Must be >= 0.
  virtual Nanoseconds duration(const Task& task) const = 0;
};

// Seconds to integer nanoseconds, rounded to nearest. Throws flexgen::Error naming `what` for a
// negative, NaN or infinite value, or one beyond about 292 years.
Nanoseconds to_nanoseconds(Seconds seconds, const char* what = "duration");
inline Seconds to_seconds(Nanoseconds ns) { return static_cast<Seconds>(ns) * 1e-9; }

// The model's duration of every task, indexed by TaskId. Throws flexgen::Error naming the task
// (id, kind, token, layer, batch) when the model returns a negative duration.
std::vector<Nanoseconds> task_durations(const Schedule& schedule, const DurationModel& model);

// The engine's measured durations (end_s - start_s of each task, as in RunReport::task_timings),
// indexed by TaskId. Throws flexgen::Error for a timing whose end precedes its start or that is
// not finite.
std::vector<Nanoseconds> measured_durations(const std::vector<TaskTiming>& timings);

}  // namespace flexgen
