#include "simulator/cost_durations.h"

namespace flexgen {

Nanoseconds CostModelDurations::duration(const Task& task) const {
  return to_nanoseconds(model_.cost(task).seconds, task_kind_name(task.kind));
}

}  // namespace flexgen
