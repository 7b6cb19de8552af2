#pragma once
// The cost model as the simulator's duration model: each task's time from TaskCostModel on a
// HardwareSpec. One implementation of the cost model serves the LP, the simulator and validation.
#include "engine/core/hardware_spec.h"
#include "engine/costmodel/task_cost.h"
#include "engine/runtime/plan.h"
#include "simulator/duration_model.h"

namespace flexgen {

class CostModelDurations : public DurationModel {
 public:
  // Keeps references to both: they must outlive this object.
  CostModelDurations(const Plan& plan, const HardwareSpec& hardware, ScheduleKind kind = ScheduleKind::kZigZag)
      : model_(plan, hardware, kind) {}
  Nanoseconds duration(const Task& task) const override;

 private:
  TaskCostModel model_;
};

}  // namespace flexgen
