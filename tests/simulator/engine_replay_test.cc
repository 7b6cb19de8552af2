// The engine's measured run replayed in the simulator with its own measured durations. The engine
// starts a task no earlier than its resource's previous task and its dependencies have ended; the
// simulator starts it exactly then. So, by induction over the list, the replay starts and ends
// every task no later than the engine did (the difference is time the engine lost outside tasks),
// and with overlap off it runs the tasks back to back in list order.
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/model/opt_weights.h"
#include "engine/runtime/host_runtime.h"
#include "simulator/simulator.h"
#include "simulator/trace.h"
#include "tests/simulator/sim_fixtures.h"

namespace flexgen {
namespace {

namespace fs = std::filesystem;

TEST(EngineReplay, ReplayWithMeasuredDurationsNeverLagsTheEngine) {
  const fs::path dir = fs::temp_directory_path() / ("flexgen-sim-replay-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (bool overlap : {true, false}) {
    simtest::PlanArgs a;
    a.percent = {0, 50, 0, 50, 0, 100};  // weights and cache half on disk, activations on the CPU
    a.gbs = 2;
    a.ngb = 2;
    a.gen = 3;
    a.overlap = overlap;
    const Plan plan = simtest::tiny_plan(a);
    const OptWeights weights = make_dummy_opt_weights(plan.spec, 7);
    RuntimeOptions o;
    o.budgets[Tier::kGpu] = o.budgets[Tier::kCpu] = o.budgets[Tier::kDisk] = Bytes{1} << 40;
    o.offload_dir = dir;
    o.keep_task_timings = true;
    HostRuntime runtime(plan, weights, o);
    const RunReport report = runtime.generate({{2, 5, 6}, {2, 7}, {2, 9, 9, 4}, {2}}, SamplingConfig{}, std::nullopt);
    const Schedule& s = runtime.schedule();
    ASSERT_EQ(report.task_timings.size(), s.tasks.size());
    const std::vector<TaskSpan> measured = measured_spans(report.task_timings);
    const SimResult sim = simulate(plan, s, measured_durations(report.task_timings));
    Nanoseconds serial_end = 0;
    for (std::size_t i = 0; i < s.tasks.size(); ++i) {
      ASSERT_EQ(sim.tasks[i].length(), measured[i].length()) << i;
      ASSERT_LE(sim.tasks[i].start, measured[i].start) << i;
      if (!overlap) {
        ASSERT_EQ(sim.tasks[i].start, serial_end) << i;
        serial_end = sim.tasks[i].end;
      }
    }
    EXPECT_LE(to_seconds(sim.makespan), report.total_s + 1e-9);
    EXPECT_LE(to_seconds(sim.prefill_ns), report.prefill_s + 1e-9);
    EXPECT_EQ(sim.generated_tokens, report.generated_tokens);
    for (Tier t : kAllTiers) EXPECT_EQ(sim.peak[t], report.peak[t]) << tier_name(t);
    // Both in one trace, task by task.
    std::ostringstream out;
    write_chrome_trace(out, {trace_process("simulated", s, sim), trace_process("measured", s, measured)});
    const nlohmann::json trace = nlohmann::json::parse(out.str());
    int slices = 0;
    for (const auto& e : trace["traceEvents"]) slices += e["ph"] == "X" ? 1 : 0;
    EXPECT_EQ(slices, static_cast<int>(2 * s.tasks.size()));
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace flexgen
