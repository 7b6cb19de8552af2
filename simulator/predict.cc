#include "simulator/predict.h"

#include <cmath>
#include <string>

#include "engine/core/error.h"
#include "engine/core/json_fields.h"
#include "simulator/cost_durations.h"

namespace flexgen {

KindTimes kind_times(const Schedule& schedule, const std::vector<TaskSpan>& spans) {
  KindTimes k;
  for (std::size_t i = 0; i < spans.size() && i < schedule.tasks.size(); ++i) {
    const auto kind = static_cast<std::size_t>(schedule.tasks[i].kind);
    k.busy_s[kind] += to_seconds(spans[i].length());
    ++k.tasks[kind];
  }
  return k;
}

nlohmann::json kind_times_json(const KindTimes& times) {
  nlohmann::json j = nlohmann::json::object();
  for (int k = 0; k < kNumTaskKinds; ++k) {
    const auto i = static_cast<std::size_t>(k);
    if (times.tasks[i] == 0) continue;
    j[task_kind_name(static_cast<TaskKind>(k))] = {{"tasks", times.tasks[i]}, {"busy_s", times.busy_s[i]}};
  }
  return j;
}

KindTimes kind_times_from_json(const nlohmann::json& json, const std::string& origin) {
  FLEXGEN_REQUIRE(json.is_object(), origin, ": task times must be an object of task kinds");
  KindTimes k;
  for (const auto& item : json.items()) {
    int found = -1;
    for (int i = 0; i < kNumTaskKinds; ++i) {
      if (item.key() == task_kind_name(static_cast<TaskKind>(i))) found = i;
    }
    FLEXGEN_REQUIRE(found >= 0, origin, ": unknown task kind '", item.key(), "'");
    const nlohmann::json& v = item.value();
    FLEXGEN_REQUIRE(v.is_object() && v.contains("tasks") && v.contains("busy_s") && v["busy_s"].is_number() &&
                        json_as_int64(v["tasks"]) && std::isfinite(v["busy_s"].get<double>()) &&
                        v["busy_s"].get<double>() >= 0,
                    origin, ": task kind '", item.key(), "' needs {\"tasks\": n, \"busy_s\": seconds}");
    k.tasks[static_cast<std::size_t>(found)] = *json_as_int64(v["tasks"]);
    k.busy_s[static_cast<std::size_t>(found)] = v["busy_s"].get<double>();
  }
  return k;
}

Prediction predict_run(const Plan& plan, const Schedule& schedule, const HardwareSpec& hardware,
                       const SimOptions& options) {
  const CostModelDurations durations(plan, hardware, schedule.kind);
  Prediction p;
  p.result = simulate(plan, schedule, durations, options);
  p.kinds = kind_times(schedule, p.result.tasks);
  return p;
}

Estimate simulated_estimate(const ModelSpec& spec, const Workload& workload, const Policy& policy,
                            const HardwareSpec& hardware, ScheduleKind kind) {
  Workload w = workload;
  w.num_sequences = policy.block_size();
  const Plan plan = make_plan(spec, w, policy);
  const Schedule schedule = make_schedule(plan, kind);
  const SimResult r = predict_run(plan, schedule, hardware).result;
  Estimate e;
  e.prefill_s = to_seconds(r.prefill_ns);
  e.decode_s = to_seconds(r.decode_ns);
  e.total_s = to_seconds(r.makespan);
  e.generated_tokens = r.generated_tokens;
  e.throughput_tok_s = r.throughput_tok_s;
  e.decode_throughput_tok_s = r.decode_throughput_tok_s;
  for (int i = 0; i < kNumResources; ++i) e.busy[static_cast<std::size_t>(i)] = to_seconds(r.busy[static_cast<std::size_t>(i)]);
  return e;
}

nlohmann::json prediction_json(const Prediction& prediction) {
  const SimResult& r = prediction.result;
  nlohmann::json resources = nlohmann::json::object();
  for (int i = 0; i < kNumResources; ++i) {
    const auto res = static_cast<Resource>(i);
    resources[resource_name(res)] = {{"busy_s", to_seconds(r.busy[static_cast<std::size_t>(i)])},
                                     {"utilization", r.utilization[static_cast<std::size_t>(i)]}};
  }
  return {
      {"prefill_s", to_seconds(r.prefill_ns)},
      {"decode_s", to_seconds(r.decode_ns)},
      {"total_s", to_seconds(r.makespan)},
      {"generated_tokens", r.generated_tokens},
      {"throughput_tok_s", r.throughput_tok_s},
      {"decode_throughput_tok_s", r.decode_throughput_tok_s},
      {"resources", resources},
      {"critical_resource",
       {{"prefill", resource_name(r.prefill.critical)}, {"decode", resource_name(r.decode.critical)}}},
      {"peak_memory",
       {{"gpu_bytes", r.peak[Tier::kGpu]}, {"cpu_bytes", r.peak[Tier::kCpu]}, {"disk_bytes", r.peak[Tier::kDisk]}}},
      {"task_times", kind_times_json(prediction.kinds)},
  };
}

}  // namespace flexgen
