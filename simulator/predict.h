#pragma once
// A run as the simulator predicts it on the cost model, in the shape every command reports it:
// `flexgen simulate --json`, the rows of `flexgen sweep` (the simulator's figures, and the
// prediction beside each engine measurement) and `flexgen validate`.
#include <array>
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/hardware_spec.h"
#include "engine/costmodel/estimate.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"
#include "simulator/simulator.h"

namespace flexgen {

// Per task kind: how many tasks ran and their summed durations (busy seconds).
struct KindTimes {
  std::array<double, kNumTaskKinds> busy_s{};
  std::array<std::int64_t, kNumTaskKinds> tasks{};
};

// From the simulator's spans (indexed by TaskId).
KindTimes kind_times(const Schedule& schedule, const std::vector<TaskSpan>& spans);
// {"<kind>": {"tasks": n, "busy_s": s}, ...} for the kinds with tasks (the shape of the engine's
// --task-times) and back; from_json refuses unknown kinds and malformed entries.
nlohmann::json kind_times_json(const KindTimes& times);
KindTimes kind_times_from_json(const nlohmann::json& json, const std::string& origin);

struct Prediction {
  SimResult result;
  KindTimes kinds;
};

// Plans the schedule of `plan` and replays it with the cost model's durations on `hardware`.
// Throws flexgen::Error for a plan over `options.capacities` (the engine's message).
Prediction predict_run(const Plan& plan, const Schedule& schedule, const HardwareSpec& hardware,
                       const SimOptions& options = {});

// The simulator's figures as a cost-model Estimate (times, throughputs, busy per resource; no
// memory), for the policy search's reprice (SearchOptions::reprice).
Estimate simulated_estimate(const ModelSpec& spec, const Workload& workload, const Policy& policy,
                            const HardwareSpec& hardware, ScheduleKind kind = ScheduleKind::kZigZag);

// The figures of a prediction: prefill_s, decode_s, total_s, generated_tokens, throughput_tok_s,
// decode_throughput_tok_s, resources {name: {busy_s, utilization}}, critical_resource {prefill,
// decode}, peak_memory {gpu_bytes, cpu_bytes, disk_bytes}, task_times (kind_times_json).
nlohmann::json prediction_json(const Prediction& prediction);

}  // namespace flexgen
