#pragma once
// Replays a Schedule on the discrete-event core: the single-GPU simulator.
//
// Semantics are the engine executor's (engine/runtime/executor.h). With overlap on (the
// schedule's `overlap`), each of the six resources runs its tasks one at a time in list order,
// each starting when the resource is free and all its dependencies have ended. With overlap off,
// the tasks run one after another in list order, nothing concurrent. Task durations come from a
// DurationModel (the cost model, or a fitted one) or directly from a vector (a measured run).
//
// Memory: the engine allocates every buffer of the MemoryPlan once, before the first task, and
// frees them at the end; so does the simulator. A plan over the capacities fails before the run
// with the engine's own error (check_budgets in engine/runtime/memory_plan.h).
#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "engine/core/hardware_spec.h"
#include "engine/runtime/memory_plan.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"
#include "simulator/duration_model.h"
#include "simulator/task_span.h"

namespace flexgen {

inline constexpr Bytes kUnlimitedBytes = std::numeric_limits<Bytes>::max();

// Every tier unlimited.
TierBytes unlimited_capacities();
// A machine's capacities: gpu_memory_bytes, cpu_memory_bytes, disk_bytes.
TierBytes tier_capacities(const HardwareSpec& hardware);

struct SimOptions {
  TierBytes capacities = unlimited_capacities();  // per tier; checked before the run
  // Shared PCIe budget, off by default: when set to f in (0, 1], an h2d and a d2h task running at
  // the same time each progress at f of their own speed (0.5: one half-duplex budget; 1: the same
  // as off), and at full speed while alone. Ignored with overlap off (nothing runs at once).
  std::optional<double> shared_pcie_fraction;
};

using ResourceTimes = std::array<Nanoseconds, kNumResources>;  // indexed by Resource

// One phase: prefill (the tasks of token 0) or decode (the rest).
struct PhaseSummary {
  std::int64_t tasks = 0;
  ResourceTimes busy{};                       // time each resource spent on the phase's tasks
  Resource critical = Resource::kGpuCompute;  // the resource with the most busy time (ties: the
                                              // first in Resource order); meaningless with no tasks
};

// Memory in use on each tier from `time` on (a step function).
struct MemoryStep {
  Nanoseconds time = 0;
  TierBytes in_use;
};

struct SimResult {
  std::vector<TaskSpan> tasks;  // per TaskId
  Nanoseconds makespan = 0;     // end of the last task (the run starts at 0)
  // As the engine's RunReport: prefill ends with the last task of token 0; decode is the rest.
  Nanoseconds prefill_ns = 0;
  Nanoseconds decode_ns = 0;
  std::int64_t generated_tokens = 0;                // block size x gen_len
  double throughput_tok_s = 0;                      // generated_tokens / makespan
  double decode_throughput_tok_s = 0;               // block size x (gen_len - 1) / decode time
  ResourceTimes busy{};                             // time each resource was running a task
  std::array<double, kNumResources> utilization{};  // busy / makespan
  PhaseSummary prefill, decode;
  MemoryPlan memory;                        // every buffer, as the engine would allocate it
  TierBytes peak;                           // = memory.total: all allocated up front
  std::vector<MemoryStep> memory_timeline;  // {0: memory.total}, {makespan: nothing}
  std::int64_t events = 0;                  // events the core handled
};

// Replays the schedule of `plan` (block size and gen_len come from the plan). Throws
// flexgen::Error for a plan over the capacities (the engine's message), a negative duration, a
// dependency that does not point to an earlier task, or a bad shared PCIe fraction.
SimResult simulate(const Plan& plan, const Schedule& schedule, const DurationModel& model,
                   const SimOptions& options = {});
// The same with the durations given per task (e.g. measured_durations of an engine run).
SimResult simulate(const Plan& plan, const Schedule& schedule, const std::vector<Nanoseconds>& durations,
                   const SimOptions& options = {});

// The critical resource: the most busy time, ties to the first in Resource order.
Resource critical_resource(const ResourceTimes& busy);

}  // namespace flexgen
