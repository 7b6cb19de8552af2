// The simulator on the paper's T4 (experiments/hardware/t4-paper.json, FlexGen's fitted constants)
// against the paper's Table 2 (prompt 512, generation 32; tokens/s): FlexGen's policies against
// DeepSpeed-style row-by-row placements, and the aggregate cost model against the simulator.
#include <cmath>

#include <gtest/gtest.h>

#include "engine/core/hardware_spec.h"
#include "engine/core/input_lookup.h"
#include "engine/costmodel/estimate.h"
#include "simulator/cost_durations.h"
#include "simulator/simulator.h"

namespace flexgen {
namespace {

struct PaperRun {
  const char* model;
  std::int64_t gbs, ngb;
  std::array<double, 6> percent;
  bool delegate;
  bool pin;
};

double simulate_throughput(const PaperRun& r, const HardwareSpec& hw, double* decode = nullptr,
                           double* estimated_decode = nullptr) {
  PolicyConfig c;
  c.gpu_batch_size = r.gbs;
  c.num_gpu_batches = r.ngb;
  c.set_percent(r.percent);
  c.cpu_cache_compute = r.delegate;
  c.pin_weight = r.pin;
  const Policy policy = Policy::create(c);
  Workload w;
  w.prompt_len = 512;
  w.gen_len = 32;
  w.num_sequences = policy.block_size();
  const ModelSpec spec = ModelSpec::from_name(r.model);
  const Plan plan = make_plan(spec, w, policy);
  const Schedule schedule = make_schedule(plan, ScheduleKind::kZigZag);
  SimOptions options;
  options.capacities = tier_capacities(hw);
  const SimResult result = simulate(plan, schedule, CostModelDurations(plan, hw), options);
  if (decode) *decode = result.decode_throughput_tok_s;
  if (estimated_decode) *estimated_decode = estimate_schedule(plan, schedule, hw).decode_throughput_tok_s;
  return result.throughput_tok_s;
}

// Paper, Table 2 (and FlexGen's benchmark/batch_size_table.md): FlexGen 25.26 / 7.32 / 0.69,
// DeepSpeed ZeRO-Inference 9.28 / 0.60 / 0.01 tok/s for OPT-6.7B / 30B / 175B on the T4. The
// tolerances and why each row differs are in docs/simulator.md ("The paper's Table 2").
TEST(PaperShapes, FlexGenBeatsDeepSpeedStylePlacementsByThePapersFactors) {
  const HardwareSpec hw = load_hardware("t4-paper");
  struct Case {
    PaperRun flexgen, deepspeed;
    double paper_ratio, tolerance;  // accepted: paper_ratio / tolerance .. paper_ratio * tolerance
  };
  const Case cases[] = {
      {{"opt-6.7b", 2, 1, {100, 0, 100, 0, 100, 0}, false, true},
       {"opt-6.7b", 16, 1, {0, 100, 100, 0, 100, 0}, false, true}, 25.26 / 9.28, 2.0},
      {{"opt-30b", 48, 3, {20, 80, 0, 100, 0, 100}, true, true},
       {"opt-30b", 8, 1, {0, 100, 100, 0, 100, 0}, false, true}, 7.32 / 0.60, 3.0},
      // 0.01 is the paper's rounding of something between 0.005 and 0.015.
      {{"opt-175b", 32, 8, {0, 50, 0, 0, 0, 100}, true, false},
       {"opt-175b", 2, 1, {0, 0, 100, 0, 100, 0}, false, true}, 0.69 / 0.01, 4.0},
  };
  for (const Case& c : cases) {
    const double f = simulate_throughput(c.flexgen, hw);
    const double d = simulate_throughput(c.deepspeed, hw);
    const double ratio = f / d;
    EXPECT_GT(ratio, c.paper_ratio / c.tolerance) << c.flexgen.model << ": FlexGen " << f << " tok/s, DeepSpeed-style " << d;
    EXPECT_LT(ratio, c.paper_ratio * c.tolerance) << c.flexgen.model << ": FlexGen " << f << " tok/s, DeepSpeed-style " << d;
  }
}

// Where one resource dominates every decode step (the LP's max-of-terms assumption), the simulated
// steady-state decode throughput equals the aggregate model's within 2%.
TEST(PaperShapes, SimulatedDecodeMatchesTheAggregateModelWhenOneResourceDominates) {
  const HardwareSpec hw = load_hardware("t4-paper");
  const PaperRun runs[] = {
      {"opt-30b", 4, 2, {0, 100, 100, 0, 100, 0}, false, true},   // weights over PCIe dominate
      {"opt-6.7b", 4, 2, {100, 0, 100, 0, 100, 0}, false, true},  // all on the GPU: compute
  };
  for (const PaperRun& r : runs) {
    double decode = 0, estimated = 0;
    simulate_throughput(r, hw, &decode, &estimated);
    EXPECT_NEAR(decode / estimated, 1.0, 0.02) << r.model << ": simulated " << decode << ", aggregate " << estimated;
  }
}

}  // namespace
}  // namespace flexgen
