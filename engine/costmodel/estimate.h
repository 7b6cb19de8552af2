#pragma once
// The cost model's prediction for a whole run, from the per-task costs (task_cost.h).
//
// Tasks are grouped into steps: one step is one layer at one token, for the whole block of gpu
// batches under zig-zag (the weights are loaded once for it), or for one gpu batch under
// row-by-row. A weight task belongs to the step whose layer it loads. Within a step each resource
// (GPU, CPU, the four links) is busy for the sum of its tasks' costs; the step takes
//   overlap on:   the largest of the six busy times (the resources run in parallel, FlexGen's
//                 max over its cost terms)
//   overlap off:  their sum (the executor runs the task list in order).
// Prefill is the sum of the token-0 steps, decode the sum of the rest; throughput is
// block size x generation length / total.
#include <array>
#include <cstdint>
#include <vector>

#include "engine/core/hardware_spec.h"
#include "engine/core/model_spec.h"
#include "engine/core/policy.h"
#include "engine/core/workload.h"
#include "engine/costmodel/memory_model.h"
#include "engine/costmodel/task_cost.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"

namespace flexgen {

using ResourceSeconds = std::array<Seconds, kNumResources>;  // indexed by Resource

struct StepCost {
  std::int32_t token = 0;
  std::int32_t layer = 0;
  std::int32_t batch = -1;  // -1 under zig-zag (the step covers every gpu batch)
  ResourceSeconds busy{};
  Seconds seconds = 0;
};

struct Estimate {
  Seconds prefill_s = 0;
  Seconds decode_s = 0;
  Seconds total_s = 0;
  std::int64_t generated_tokens = 0;   // block size x gen_len
  double throughput_tok_s = 0;         // generated_tokens / total_s
  double decode_throughput_tok_s = 0;  // block size x (gen_len - 1) / decode_s (0 without decode)
  ResourceSeconds busy{};              // each resource's total work over the run
  MemoryEstimate memory;
};

// Step time from per-resource busy times: max (overlap) or sum.
Seconds step_seconds(const ResourceSeconds& busy, bool overlap);

// The steps of a schedule, in order of first appearance.
std::vector<StepCost> step_costs(const Plan& plan, const Schedule& schedule, const HardwareSpec& hardware);

// The whole run from its real plan and schedule.
Estimate estimate_schedule(const Plan& plan, const Schedule& schedule, const HardwareSpec& hardware);

// The same prediction without generating the full schedule. Every decoder layer has the same
// tensors, placement and tasks, and every gpu batch of a step the same tasks, so the run is priced
// on the plan of a copy of the model with one decoder layer and one gpu batch (the same rounding
// of tensors and cache units): each step's weight tasks once, its per-batch tasks
// num_gpu_batches times (zig-zag: one step per layer; row-by-row: one step per batch), and each
// decoder step num_layers times. Equal to estimate_schedule on the full plan and schedule (tested)
// at a cost independent of the number of layers and batches.
Estimate estimate_policy(const ModelSpec& spec, const Workload& workload, const Policy& policy,
                         const HardwareSpec& hardware, ScheduleKind kind = ScheduleKind::kZigZag);

}  // namespace flexgen
