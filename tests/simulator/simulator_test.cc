// The single-GPU simulator against closed forms worked out by hand on the tiny model, and against
// an independent list-scheduling computation.
#include "simulator/simulator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "engine/core/error.h"
#include "tests/simulator/sim_fixtures.h"

namespace flexgen {
namespace {

using simtest::HashModel;
using simtest::LinearModel;
using simtest::PlanArgs;
using simtest::tiny_plan;
using ::testing::HasSubstr;

constexpr Bytes kTokenWeightBytes = simtest::kEmbeddingBytes + 2 * simtest::kDecoderBytes + simtest::kOutputBytes;

TEST(Simulator, OverlapOffRunsTheListBackToBack) {
  PlanArgs a;
  a.percent = {0, 100, 0, 100, 0, 100};
  a.ngb = 2;
  a.gen = 3;
  a.overlap = false;
  const Plan plan = tiny_plan(a);
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  const HashModel model;
  const SimResult r = simulate(plan, s, model);
  Nanoseconds t = 0;
  for (std::size_t i = 0; i < s.tasks.size(); ++i) {
    const Nanoseconds d = model.duration(s.tasks[i]);
    ASSERT_EQ(r.tasks[i], (TaskSpan{t, t + d})) << "task " << i;
    t += d;
  }
  EXPECT_EQ(r.makespan, t);
  Nanoseconds busy = 0;
  for (Nanoseconds b : r.busy) busy += b;
  EXPECT_EQ(busy, t);
}

// Weights on the CPU, everything else on the GPU, 1 ns per byte over h2d, 100 ns per GPU task.
// Each (token, layer) loads its layer's weights once (zig-zag). The link never waits: a load only
// waits for the GPU work of the step two back (at most 2 batches x 2 tasks x 100 ns), shorter than
// any load (the smallest is the output layer's 2688 bytes). So h2d is busy from 0 to
// gen_len x 35712 ns; after the last load the output layer computes its 2 batches: fill 200 ns.
TEST(Simulator, LinkBoundRunIsTheLinkBusyTimePlusTheLastLayersCompute) {
  PlanArgs a;
  a.percent = {0, 100, 100, 0, 100, 0};
  a.ngb = 2;
  a.gen = 2;
  const Plan plan = tiny_plan(a);
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  const SimResult r = simulate(plan, s, LinearModel(1, 100, 100, 0));
  ASSERT_EQ(kTokenWeightBytes, 35712);
  const auto h2d = static_cast<std::size_t>(Resource::kH2D);
  const auto gpu = static_cast<std::size_t>(Resource::kGpuCompute);
  EXPECT_EQ(r.busy[h2d], 2 * 35712);
  EXPECT_EQ(r.makespan, 2 * 35712 + 200);
  // Prefill ends with token 0's output layer: its weights are in at 35712, then 2 x 100 ns.
  EXPECT_EQ(r.prefill_ns, 35712 + 200);
  EXPECT_EQ(r.decode_ns, r.makespan - r.prefill_ns);
  // GPU: 2 batches x (embedding 1 + 2 decoder layers x 2 + output 1) tasks x 100 ns per token.
  EXPECT_EQ(r.busy[gpu], 2 * 2 * 6 * 100);
  EXPECT_EQ(r.prefill.critical, Resource::kH2D);
  EXPECT_EQ(r.decode.critical, Resource::kH2D);
  EXPECT_DOUBLE_EQ(r.utilization[h2d], 71424.0 / 71624.0);
  EXPECT_EQ(r.generated_tokens, 4);
  EXPECT_DOUBLE_EQ(r.throughput_tok_s, 4 / 71624e-9);
  EXPECT_DOUBLE_EQ(r.decode_throughput_tok_s, 2 / (static_cast<double>(r.decode_ns) * 1e-9));
}

// The same placement with GPU tasks of 100 us: the GPU waits only for the first layer's weights
// (6784 ns); every later load finishes under the previous step's GPU work.
TEST(Simulator, ComputeBoundRunIsTheComputeBusyTimePlusTheFirstLoad) {
  PlanArgs a;
  a.percent = {0, 100, 100, 0, 100, 0};
  a.ngb = 2;
  a.gen = 2;
  const Plan plan = tiny_plan(a);
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  const SimResult r = simulate(plan, s, LinearModel(1, 100000, 100000, 0));
  const auto gpu = static_cast<std::size_t>(Resource::kGpuCompute);
  EXPECT_EQ(r.busy[gpu], 2 * 2 * 6 * 100000);
  EXPECT_EQ(r.makespan, simtest::kEmbeddingBytes + 2 * 2 * 6 * 100000);
  EXPECT_EQ(r.prefill.critical, Resource::kGpuCompute);
  EXPECT_EQ(r.decode.critical, Resource::kGpuCompute);
}

// Row-by-row loads every layer's weights once per gpu batch, zig-zag once per block.
TEST(Simulator, RowByRowMovesNumGpuBatchesTimesTheWeightsOfZigZag) {
  for (std::int64_t ngb : {1, 2, 4}) {
    PlanArgs a;
    a.percent = {0, 100, 100, 0, 100, 0};
    a.ngb = ngb;
    a.gen = 3;
    const Plan plan = tiny_plan(a);
    const Schedule zz = make_schedule(plan, ScheduleKind::kZigZag);
    const Schedule rr = make_schedule(plan, ScheduleKind::kRowByRow);
    const LinearModel model(1, 10, 10, 0);
    const SimResult z = simulate(plan, zz, model), r = simulate(plan, rr, model);
    const auto h2d = static_cast<std::size_t>(Resource::kH2D);
    EXPECT_EQ(z.busy[h2d], 3 * kTokenWeightBytes);
    EXPECT_EQ(r.busy[h2d], ngb * z.busy[h2d]);
    EXPECT_EQ(rr.total_bytes().h2d, ngb * zz.total_bytes().h2d);
  }
}

// A random schedule of random kinds and dependencies, replayed with overlap on, against the
// straightforward list scheduling: each resource in list order, each task at max(resource free,
// dependencies ended).
TEST(Simulator, RandomScheduleMatchesListScheduling) {
  const Plan plan = tiny_plan(PlanArgs{});
  for (unsigned seed = 1; seed <= 10; ++seed) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int> kind(0, kNumTaskKinds - 1), ndeps(0, 4);
    std::uniform_int_distribution<Nanoseconds> dur(0, 1000);
    Schedule s;
    s.overlap = true;
    std::vector<Nanoseconds> durations;
    for (int i = 0; i < 300; ++i) {
      Task t;
      t.kind = static_cast<TaskKind>(kind(gen));
      t.token = i < 100 ? 0 : 1;
      if (i > 0) {
        std::uniform_int_distribution<int> pick(0, i - 1);
        for (int k = ndeps(gen); k > 0; --k) t.deps.push_back(pick(gen));
        std::sort(t.deps.begin(), t.deps.end());
        t.deps.erase(std::unique(t.deps.begin(), t.deps.end()), t.deps.end());
      }
      s.tasks.push_back(t);
      durations.push_back(dur(gen));
    }
    const SimResult r = simulate(plan, s, durations);
    std::array<Nanoseconds, kNumResources> free{};
    std::vector<TaskSpan> want(s.tasks.size());
    Nanoseconds prefill = 0, end = 0;
    for (std::size_t i = 0; i < s.tasks.size(); ++i) {
      auto& f = free[static_cast<std::size_t>(task_resource(s.tasks[i].kind))];
      Nanoseconds start = f;
      for (TaskId d : s.tasks[i].deps) start = std::max(start, want[static_cast<std::size_t>(d)].end);
      want[i] = {start, start + durations[i]};
      f = want[i].end;
      end = std::max(end, want[i].end);
      if (i < 100) prefill = std::max(prefill, want[i].end);
    }
    for (std::size_t i = 0; i < want.size(); ++i) ASSERT_EQ(r.tasks[i], want[i]) << "seed " << seed << " task " << i;
    EXPECT_EQ(r.makespan, end);
    EXPECT_EQ(r.prefill_ns, prefill);
  }
}

// Every offloading path (disk weights, cache, activations; delegation; sparse attention) in both
// orders: the replay starts each task exactly when its resource (in list order) is free and its
// dependencies have ended.
TEST(Simulator, OffloadedSchedulesObeyDependenciesAndResourceOrder) {
  struct Case {
    std::array<double, 6> percent;
    bool delegate;
    double sparsity;
  };
  for (const Case& c : {Case{{0, 50, 0, 50, 0, 0}, false, 1.0}, Case{{20, 30, 0, 100, 0, 100}, true, 1.0},
                        Case{{0, 0, 25, 25, 0, 100}, false, 0.5}}) {
    for (ScheduleKind kind : {ScheduleKind::kZigZag, ScheduleKind::kRowByRow}) {
      PlanArgs a;
      a.percent = c.percent;
      a.ngb = 3;
      a.gen = 3;
      a.cpu_cache_compute = c.delegate;
      a.attn_sparsity = c.sparsity;
      const Plan plan = tiny_plan(a);
      const Schedule s = make_schedule(plan, kind);
      const HashModel model;
      const SimResult r = simulate(plan, s, model);
      std::array<Nanoseconds, kNumResources> last_end{};
      for (std::size_t i = 0; i < s.tasks.size(); ++i) {
        const Task& t = s.tasks[i];
        ASSERT_EQ(r.tasks[i].length(), model.duration(t));
        // It starts exactly when both its resource is free and its dependencies have ended.
        Nanoseconds ready = 0;
        for (TaskId d : t.deps) ready = std::max(ready, r.tasks[static_cast<std::size_t>(d)].end);
        auto& e = last_end[static_cast<std::size_t>(t.resource())];
        ASSERT_EQ(r.tasks[i].start, std::max(ready, e)) << "task " << i;
        e = r.tasks[i].end;
      }
    }
  }
}

TEST(Simulator, MemoryIsThePlanAllocatedUpFront) {
  // All on the GPU, gbs 1, prompt 4, gen 2: weights 35712 B; cache 2 layers x (key, value) x
  // 4 units x 5 positions x 16 B = 1280 B; activations 4 positions x 16 x 4 B = 256 B.
  const Plan plan = tiny_plan(PlanArgs{});
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  const SimResult r = simulate(plan, s, LinearModel(1, 10, 10, 10));
  EXPECT_EQ(r.peak[Tier::kGpu], 35712 + 1280 + 256);
  EXPECT_EQ(r.peak[Tier::kCpu], 0);
  EXPECT_EQ(r.peak[Tier::kDisk], 0);
  ASSERT_EQ(r.memory_timeline.size(), 2u);
  EXPECT_EQ(r.memory_timeline[0].time, 0);
  EXPECT_EQ(r.memory_timeline[0].in_use[Tier::kGpu], 35712 + 1280 + 256);
  EXPECT_EQ(r.memory_timeline[1].time, r.makespan);
  EXPECT_EQ(r.memory_timeline[1].in_use[Tier::kGpu], 0);
}

TEST(Simulator, APlanOverTheCapacitiesFailsWithTheEnginesMessage) {
  const Plan plan = tiny_plan(PlanArgs{});
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  SimOptions o;
  o.capacities[Tier::kGpu] = 30000;
  std::string engine;
  try {
    check_budgets(plan_memory(plan), o.capacities);
  } catch (const Error& e) {
    engine = e.what();
  }
  try {
    simulate(plan, s, LinearModel(1, 1, 1, 1), o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), engine);
    EXPECT_THAT(e.what(), HasSubstr("plan does not fit: the gpu tier needs"));
    EXPECT_THAT(e.what(), HasSubstr("--gpu-mem"));
  }
  o.capacities[Tier::kGpu] = 35712 + 1280 + 256;  // exactly enough
  EXPECT_NO_THROW(simulate(plan, s, LinearModel(1, 1, 1, 1), o));
}

TEST(Simulator, HardwareCapacitiesAreTheTierBudgets) {
  HardwareSpec hw;
  hw.gpu_memory_bytes = 16;
  hw.cpu_memory_bytes = 208;
  hw.disk_bytes = 1500;
  const TierBytes t = tier_capacities(hw);
  EXPECT_EQ(t[Tier::kGpu], 16);
  EXPECT_EQ(t[Tier::kCpu], 208);
  EXPECT_EQ(t[Tier::kDisk], 1500);
}

// Shared PCIe through simulate: an h2d and a d2h task with no dependencies.
TEST(Simulator, SharedPcieFractionSlowsConcurrentTransfers) {
  const Plan plan = tiny_plan(PlanArgs{});
  Schedule s;
  s.overlap = true;
  Task load, store;
  load.kind = TaskKind::kWeightLoad;
  store.kind = TaskKind::kCacheStore;
  s.tasks = {load, store};
  SimOptions o;
  EXPECT_EQ(simulate(plan, s, std::vector<Nanoseconds>{100, 300}, o).makespan, 300);
  o.shared_pcie_fraction = 0.5;
  const SimResult r = simulate(plan, s, std::vector<Nanoseconds>{100, 300}, o);
  EXPECT_EQ(r.tasks[0], (TaskSpan{0, 200}));
  EXPECT_EQ(r.tasks[1], (TaskSpan{0, 400}));
  EXPECT_EQ(r.busy[static_cast<std::size_t>(Resource::kD2H)], 400);
  s.overlap = false;  // serial: nothing shares
  EXPECT_EQ(simulate(plan, s, std::vector<Nanoseconds>{100, 300}, o).makespan, 400);
  EXPECT_EQ(simulate(plan, s, std::vector<Nanoseconds>{100, 300}, o).tasks[1], (TaskSpan{100, 400}));
}

class NegativeModel : public DurationModel {
 public:
  Nanoseconds duration(const Task& t) const override { return t.kind == TaskKind::kComputePost ? -5 : 1; }
};

TEST(Simulator, BadInputsAreRefused) {
  const Plan plan = tiny_plan(PlanArgs{});
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message([&] { simulate(plan, s, NegativeModel()); }),
              HasSubstr("(compute_post, token 0, layer 1, batch 0) has a negative duration (-5 ns)"));
  EXPECT_THAT(message([&] {
                simulate(plan, s, std::vector<Nanoseconds>{1, 2});
              }),
              HasSubstr("2 durations for a schedule of"));
  SimOptions o;
  o.shared_pcie_fraction = 0.0;
  EXPECT_THAT(message([&] { simulate(plan, s, LinearModel(1, 1, 1, 1), o); }),
              HasSubstr("invalid shared PCIe fraction 0: must be in (0, 1]"));
  o.shared_pcie_fraction = 1.5;
  EXPECT_THAT(message([&] { simulate(plan, s, LinearModel(1, 1, 1, 1), o); }),
              HasSubstr("invalid shared PCIe fraction 1.5"));
  Schedule forward;
  Task a, b;
  a.deps = {1};
  forward.tasks = {a, b};
  EXPECT_THAT(message([&] {
                simulate(plan, forward, std::vector<Nanoseconds>{1, 1});
              }),
              HasSubstr("task 0 depends on task 1, which does not come before it"));
}

TEST(DurationModel, SecondsToNanosecondsAndMeasuredTimings) {
  EXPECT_EQ(to_nanoseconds(1.5e-6), 1500);
  EXPECT_EQ(to_nanoseconds(0.0), 0);
  EXPECT_EQ(to_nanoseconds(2.0000000004), 2000000000);
  EXPECT_THROW(to_nanoseconds(-1e-9), Error);
  EXPECT_THROW(to_nanoseconds(std::nan("")), Error);
  EXPECT_THROW(to_nanoseconds(1e12), Error);
  const std::vector<TaskTiming> timings = {{0.0, 1e-6}, {2.5e-6, 4e-6}};
  EXPECT_EQ(measured_durations(timings), (std::vector<Nanoseconds>{1000, 1500}));
  EXPECT_EQ(measured_spans(timings)[1], (TaskSpan{2500, 4000}));
  try {
    measured_spans({{3e-6, 1e-6}});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("invalid timing of task 0: it ends"));
  }
}

}  // namespace
}  // namespace flexgen
