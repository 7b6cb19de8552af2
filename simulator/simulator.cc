#include "simulator/simulator.h"

#include <algorithm>
#include <cmath>

#include "engine/core/error.h"
#include "simulator/run_times.h"
#include "simulator/task_graph.h"

namespace flexgen {

TierBytes unlimited_capacities() {
  TierBytes t;
  for (Tier tier : kAllTiers) t[tier] = kUnlimitedBytes;
  return t;
}

TierBytes tier_capacities(const HardwareSpec& hardware) {
  TierBytes t;
  t[Tier::kGpu] = hardware.gpu_memory_bytes;
  t[Tier::kCpu] = hardware.cpu_memory_bytes;
  t[Tier::kDisk] = hardware.disk_bytes;
  return t;
}

Resource critical_resource(const ResourceTimes& busy) {
  std::size_t best = 0;
  for (std::size_t r = 1; r < busy.size(); ++r) {
    if (busy[r] > busy[best]) best = r;
  }
  return static_cast<Resource>(best);
}

SimResult simulate(const Plan& plan, const Schedule& schedule, const DurationModel& model, const SimOptions& options) {
  return simulate(plan, schedule, task_durations(schedule, model), options);
}

SimResult simulate(const Plan& plan, const Schedule& schedule, const std::vector<Nanoseconds>& durations,
                   const SimOptions& options) {
  const std::size_t n = schedule.tasks.size();
  FLEXGEN_REQUIRE(durations.size() == n, "simulate: ", durations.size(), " durations for a schedule of ", n, " tasks");
  if (options.shared_pcie_fraction) {
    const double f = *options.shared_pcie_fraction;
    FLEXGEN_REQUIRE(std::isfinite(f) && f > 0 && f <= 1, "invalid shared PCIe fraction ", f, ": must be in (0, 1]");
  }
  SimResult result;
  // Allocation up front, as the engine does: refuse before the run.
  result.memory = plan_memory(plan);
  check_budgets(result.memory, options.capacities);

  const bool overlap = schedule.overlap;
  TaskGraph graph;
  graph.num_lanes = overlap ? kNumResources : 1;
  std::size_t deps = 0;
  for (const Task& t : schedule.tasks) deps += t.deps.size();
  graph.reserve(n, deps);
  for (std::size_t i = 0; i < n; ++i) {
    const Task& t = schedule.tasks[i];
    graph.add_task(overlap ? static_cast<std::int32_t>(t.resource()) : 0, durations[i]);
    for (TaskId d : t.deps) graph.add_dep(d);
  }
  if (overlap && options.shared_pcie_fraction) {
    graph.shared_pairs.emplace_back(static_cast<std::int32_t>(Resource::kH2D),
                                    static_cast<std::int32_t>(Resource::kD2H));
    graph.shared_rate = *options.shared_pcie_fraction;
  }
  GraphRun run = run_task_graph(graph);
  result.tasks = std::move(run.spans);
  result.events = run.events;

  Nanoseconds makespan = 0, prefill_end = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const Task& t = schedule.tasks[i];
    const TaskSpan& s = result.tasks[i];
    makespan = std::max(makespan, s.end);
    const auto r = static_cast<std::size_t>(t.resource());
    result.busy[r] += s.length();
    PhaseSummary& phase = t.token == 0 ? result.prefill : result.decode;
    if (t.token == 0) prefill_end = std::max(prefill_end, s.end);
    ++phase.tasks;
    phase.busy[r] += s.length();
  }
  const RunTimes times = run_times(plan, makespan, prefill_end);
  result.makespan = times.makespan;
  result.prefill_ns = times.prefill_ns;
  result.decode_ns = times.decode_ns;
  result.generated_tokens = times.generated_tokens;
  result.throughput_tok_s = times.throughput_tok_s;
  result.decode_throughput_tok_s = times.decode_throughput_tok_s;
  for (std::size_t r = 0; r < result.busy.size(); ++r) {
    result.utilization[r] = makespan > 0 ? static_cast<double>(result.busy[r]) / static_cast<double>(makespan) : 0.0;
  }
  result.prefill.critical = critical_resource(result.prefill.busy);
  result.decode.critical = critical_resource(result.decode.busy);
  result.peak = result.memory.total;
  result.memory_timeline = {MemoryStep{0, result.memory.total}, MemoryStep{makespan, TierBytes{}}};
  return result;
}

}  // namespace flexgen
