// The multi-GPU pipeline model: layer split, a hand-worked two-stage run, equivalence with the
// single-GPU simulator for one stage, and invariants over offloaded schedules.
#include "simulator/pipeline.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <tuple>

#include "engine/core/error.h"
#include "tests/simulator/sim_fixtures.h"

namespace flexgen {
namespace {

using simtest::HashModel;
using simtest::LinearModel;
using simtest::PlanArgs;
using simtest::tiny_plan;
using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Pipeline, StagesSplitDecoderLayersLikeFlexGen) {
  PlanArgs a;
  a.layers = 2;
  EXPECT_EQ(pipeline_stages(tiny_plan(a), 1), (std::vector<std::int32_t>{0, 0, 0, 0}));
  EXPECT_EQ(pipeline_stages(tiny_plan(a), 2), (std::vector<std::int32_t>{0, 0, 1, 1}));
  a.layers = 5;  // 3 + 2
  EXPECT_EQ(pipeline_stages(tiny_plan(a), 2), (std::vector<std::int32_t>{0, 0, 0, 0, 1, 1, 1}));
  // 2 + 2 + 1: embedding with the first stage, output with the last
  EXPECT_EQ(pipeline_stages(tiny_plan(a), 3), (std::vector<std::int32_t>{0, 0, 0, 1, 1, 2, 2}));
  EXPECT_THAT(error_of([&] { pipeline_stages(tiny_plan(a), 6); }),
              HasSubstr("invalid pipeline: 6 stages for a model of 5 decoder layers"));
  EXPECT_THAT(error_of([&] { pipeline_stages(tiny_plan(a), 0); }), HasSubstr("0 stages"));
}

// Two stages, everything on the GPU, 2 gpu batches of 1, prompt 4, gen 2. Every compute takes
// c = 1000 ns, compute_post 0. The link moves 1 byte per ns: a prefill hidden state is 4 x 16 x 4 =
// 256 B (a), a decode one 64 B (b), the sampled tokens 4 B (w). Stage 0 holds layers {0, 1},
// stage 1 {2, 3}. Worked by hand, visit (token, layer, batch):
//   stage 0: (0,0,0) [0,c) (0,0,1) [c,2c) (0,1,0) [2c,3c) (0,1,1) [3c,4c)
//   link:    (0,2,0) [3c, 3c+a)  (0,2,1) [4c, 4c+a)
//   stage 1: (0,2,0) [3c+a, 4c+a) (0,2,1) [4c+a, 5c+a) (0,3,0) [5c+a, 6c+a) (0,3,1) [6c+a, 7c+a)
//   back:    (1,0,0) [6c+a, 6c+a+w)  (1,0,1) [7c+a, 7c+a+w)
//   stage 0: (1,0,0) from 6c+a+w, then back to back until (1,1,1) ends at 10c+a+w
//   link:    (1,2,0) [9c+a+w, +b)  (1,2,1) [10c+a+w, +b)
//   stage 1: (1,2,0) from 9c+a+w+b, back to back until (1,3,1) ends at 13c+a+w+b.
TEST(Pipeline, TwoStagesByHand) {
  PlanArgs args;
  args.ngb = 2;
  args.gen = 2;
  const Plan plan = tiny_plan(args);
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  PipelineOptions o;
  o.num_stages = 2;
  o.link_bytes_per_s = 1e9;
  const PipelineResult r = simulate_pipeline(plan, s, LinearModel(0, 1000, 0, 0), o);
  const Nanoseconds c = 1000, a = 256, b = 64, w = 4;
  EXPECT_EQ(r.makespan, 13 * c + a + w + b);
  EXPECT_EQ(r.prefill_ns, 7 * c + a);
  ASSERT_EQ(r.transfers.size(), 6u);
  std::map<std::tuple<int, int, int>, TaskSpan> visit;
  for (std::size_t i = 0; i < s.tasks.size(); ++i) {
    const Task& t = s.tasks[i];
    if (t.kind == TaskKind::kCompute) visit[{t.token, t.layer, t.batch}] = r.tasks[i];
  }
  EXPECT_EQ((visit[{0, 1, 1}]), (TaskSpan{3 * c, 4 * c}));
  EXPECT_EQ((visit[{0, 2, 0}]), (TaskSpan{3 * c + a, 4 * c + a}));
  EXPECT_EQ((visit[{0, 3, 1}]), (TaskSpan{6 * c + a, 7 * c + a}));
  EXPECT_EQ((visit[{1, 0, 0}]), (TaskSpan{6 * c + a + w, 7 * c + a + w}));
  EXPECT_EQ((visit[{1, 1, 1}]), (TaskSpan{9 * c + a + w, 10 * c + a + w}));
  EXPECT_EQ((visit[{1, 2, 0}]), (TaskSpan{9 * c + a + w + b, 10 * c + a + w + b}));
  std::map<std::tuple<int, int, int>, std::pair<PipelineTransfer, TaskSpan>> tr;
  for (std::size_t x = 0; x < r.transfers.size(); ++x) {
    const PipelineTransfer& t = r.transfers[x];
    tr[{t.token, t.layer, t.batch}] = {t, r.transfer_spans[x]};
  }
  EXPECT_EQ((tr[{0, 2, 1}].second), (TaskSpan{4 * c, 4 * c + a}));
  EXPECT_EQ((tr[{0, 2, 1}].first.bytes), 256);
  EXPECT_EQ((tr[{1, 0, 0}].second), (TaskSpan{6 * c + a, 6 * c + a + w}));
  EXPECT_EQ((tr[{1, 0, 0}].first.from_stage), 1);
  EXPECT_EQ((tr[{1, 0, 0}].first.to_stage), 0);
  EXPECT_EQ((tr[{1, 2, 0}].second), (TaskSpan{9 * c + a + w, 9 * c + a + w + b}));
  // Lanes: 6 per GPU and the two link directions.
  ASSERT_EQ(r.lanes.size(), 14u);
  EXPECT_EQ(r.lanes[0].name, "gpu0 gpu_compute");
  EXPECT_EQ(r.lanes[8].name, "gpu1 h2d");
  EXPECT_EQ(r.lanes[12].name, "link 0->1");
  EXPECT_EQ(r.lanes[13].name, "link 1->0");
  EXPECT_EQ(r.lanes[0].busy, 8 * c);
  EXPECT_EQ(r.lanes[12].busy, 2 * a + 2 * b);
  EXPECT_EQ(r.lanes[13].busy, 2 * w);
  EXPECT_EQ(r.lanes[13].decode_busy, 2 * w);  // the sampled tokens feed token 1
  EXPECT_EQ(r.prefill_critical_lane, 0);      // ties go to the first lane
  EXPECT_DOUBLE_EQ(r.throughput_tok_s, 4 / (static_cast<double>(r.makespan) * 1e-9));
}

// With one stage the pipeline is the single-GPU simulator.
TEST(Pipeline, OneStageIsTheSingleGpuSimulator) {
  for (ScheduleKind kind : {ScheduleKind::kZigZag, ScheduleKind::kRowByRow}) {
    PlanArgs a;
    a.percent = {0, 50, 25, 25, 0, 0};
    a.ngb = 3;
    a.gen = 3;
    const Plan plan = tiny_plan(a);
    const Schedule s = make_schedule(plan, kind);
    const SimResult single = simulate(plan, s, HashModel());
    const PipelineResult pipe = simulate_pipeline(plan, s, HashModel(), PipelineOptions{});
    EXPECT_EQ(pipe.tasks, single.tasks);
    EXPECT_EQ(pipe.makespan, single.makespan);
    EXPECT_TRUE(pipe.transfers.empty());
    ASSERT_EQ(pipe.stage_memory.size(), 1u);
    for (Tier t : kAllTiers) EXPECT_EQ(pipe.stage_memory[0].total[t], single.peak[t]);
  }
}

TEST(Pipeline, OneStageWithASharedPcieBudgetIsTheSingleGpuSimulator) {
  PlanArgs a;
  a.percent = {0, 100, 0, 100, 0, 100};
  a.ngb = 2;
  const Plan plan = tiny_plan(a);
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  SimOptions so;
  so.shared_pcie_fraction = 0.6;
  PipelineOptions po;
  po.shared_pcie_fraction = 0.6;
  const SimResult single = simulate(plan, s, LinearModel(2, 300, 200, 500), so);
  const PipelineResult pipe = simulate_pipeline(plan, s, LinearModel(2, 300, 200, 500), po);
  EXPECT_EQ(pipe.tasks, single.tasks);
  EXPECT_GT(single.makespan, simulate(plan, s, LinearModel(2, 300, 200, 500)).makespan);  // the budget bites
}

// The most tasks of one lane's intervals that overlap at any instant (touching ends do not).
int max_overlap(std::vector<TaskSpan> spans) {
  std::vector<std::pair<Nanoseconds, int>> ev;
  for (const TaskSpan& s : spans) {
    if (s.end == s.start) continue;
    ev.emplace_back(s.start, 1);
    ev.emplace_back(s.end, -1);
  }
  std::sort(ev.begin(), ev.end());  // ends (-1) before starts (+1) at equal times
  int now = 0, most = 0;
  for (const auto& e : ev) most = std::max(most, now += e.second);
  return most;
}

// Stores to the CPU much slower than anything else, so that slots wait for them.
class SlowStoreModel : public DurationModel {
 public:
  explicit SlowStoreModel(bool fast_rest) : fast_(fast_rest) {}
  Nanoseconds duration(const Task& t) const override {
    if (t.resource() == Resource::kD2H) return 40 * simtest::task_bytes(t);
    return fast_ ? 1 : HashModel().duration(t);
  }

 private:
  bool fast_;
};

// Offloaded runs over 2 and 3 stages: each lane runs one task at a time; same-stage dependencies
// hold; each transfer follows its producer's last GPU task and precedes the consumer's compute;
// every resource's total busy time equals the single-GPU one; and no stage ever holds more than
// two weight steps, two cache visits or two activation visits in its GPU slots.
void check_offloaded(const DurationModel& model, const std::array<double, 6>& percent, ScheduleKind kind,
                     std::int64_t ngb, std::int32_t stages, bool overlap) {
  PlanArgs a;
  a.overlap = overlap;
  a.percent = percent;
  a.layers = 5;
  a.ngb = ngb;
  a.gen = 3;
  const Plan plan = tiny_plan(a);
  const Schedule s = make_schedule(plan, kind);
  PipelineOptions o;
  o.num_stages = stages;
  o.link_bytes_per_s = 0.5e9;
  o.link_latency_ns = 30;
  const PipelineResult r = simulate_pipeline(plan, s, model, o);
  const SimResult single = simulate(plan, s, model);
  SCOPED_TRACE(testing::Message() << schedule_kind_name(kind) << " percent " << percent[0] << " " << percent[1] << " "
                                  << percent[2] << " " << percent[3] << " " << percent[4] << " " << percent[5]
                                  << " ngb " << ngb << " stages " << stages << " overlap " << overlap);
  std::vector<std::vector<TaskSpan>> lane_spans(r.lanes.size());
  std::array<Nanoseconds, kNumResources> busy{};
  for (std::size_t i = 0; i < s.tasks.size(); ++i) {
    const Task& t = s.tasks[i];
    ASSERT_EQ(r.tasks[i].length(), model.duration(t));
    lane_spans[static_cast<std::size_t>(r.task_lane[i])].push_back(r.tasks[i]);
    busy[static_cast<std::size_t>(t.resource())] += r.tasks[i].length();
    const std::int32_t stage = r.stage_of_layer[static_cast<std::size_t>(t.layer)];
    EXPECT_EQ(r.lanes[static_cast<std::size_t>(r.task_lane[i])].stage, stage);
    for (TaskId d : t.deps) {
      const Task& dt = s.tasks[static_cast<std::size_t>(d)];
      if (r.stage_of_layer[static_cast<std::size_t>(dt.layer)] == stage) {
        ASSERT_GE(r.tasks[i].start, r.tasks[static_cast<std::size_t>(d)].end) << i << " on " << d;
      }
    }
  }
  EXPECT_EQ(busy, single.busy);
  for (std::size_t x = 0; x < r.transfers.size(); ++x) {
    lane_spans[static_cast<std::size_t>(r.transfer_lane[x])].push_back(r.transfer_spans[x]);
  }
  for (const auto& spans : lane_spans) EXPECT_LE(max_overlap(spans), 1);
  // Transfers: after the producer's last GPU task, before the consumer's compute.
  std::map<std::tuple<int, int, int>, TaskSpan> last_gpu, compute;
  for (std::size_t i = 0; i < s.tasks.size(); ++i) {
    const Task& t = s.tasks[i];
    if (t.resource() == Resource::kGpuCompute) last_gpu[{t.token, t.layer, t.batch}] = r.tasks[i];
    if (t.kind == TaskKind::kCompute) compute[{t.token, t.layer, t.batch}] = r.tasks[i];
  }
  const int last_layer = static_cast<int>(plan.spec.num_layers) + 1;
  EXPECT_EQ(r.transfers.size(), stages == 1 ? 0u : static_cast<std::size_t>(ngb * (3 * (stages - 1) + 2)));
  for (std::size_t x = 0; x < r.transfers.size(); ++x) {
    const PipelineTransfer& tr = r.transfers[x];
    const auto from = tr.layer > 0 ? std::tuple<int, int, int>{tr.token, tr.layer - 1, tr.batch}
                                   : std::tuple<int, int, int>{tr.token - 1, last_layer, tr.batch};
    EXPECT_GE(r.transfer_spans[x].start, last_gpu[from].end);
    EXPECT_LE(r.transfer_spans[x].end, (compute[{tr.token, tr.layer, tr.batch}].start));
    EXPECT_EQ(tr.to_stage, (tr.from_stage + 1) % stages);
  }
  // GPU slots per stage: a weight step occupies a slot from its load's start to its last
  // GPU task's end; a decode cache visit from its cache load's start to the end of its
  // cache store (or last GPU task).
  std::map<std::pair<int, std::tuple<int, int, int>>, TaskSpan> weight_use, cache_use, act_use;
  auto widen = [](TaskSpan& u, const TaskSpan& s2, bool first) {
    if (first) u = s2;
    u.start = std::min(u.start, s2.start);
    u.end = std::max(u.end, s2.end);
  };
  for (std::size_t i = 0; i < s.tasks.size(); ++i) {
    const Task& t = s.tasks[i];
    const int stage = r.stage_of_layer[static_cast<std::size_t>(t.layer)];
    if (t.kind == TaskKind::kWeightLoad || t.resource() == Resource::kGpuCompute) {
      // The weight step: (token, layer) in zig-zag; (batch, token, layer) in row-by-row,
      // whose weight load carries batch -1 and belongs to the batch of the next compute.
      int batch = kind == ScheduleKind::kZigZag ? 0 : t.batch;
      if (kind == ScheduleKind::kRowByRow && t.kind == TaskKind::kWeightLoad) {
        for (std::size_t n = i + 1; n < s.tasks.size(); ++n) {
          const Task& u = s.tasks[n];
          if (u.kind == TaskKind::kCompute &&
              std::find(u.deps.begin(), u.deps.end(), static_cast<TaskId>(i)) != u.deps.end()) {
            batch = u.batch;
            break;
          }
        }
      }
      const auto k = std::make_pair(stage, std::tuple<int, int, int>{batch, t.token, t.layer});
      widen(weight_use[k], r.tasks[i], !weight_use.count(k));
    }
    if (t.token > 0 && (t.kind == TaskKind::kCacheLoad || t.kind == TaskKind::kCacheStore ||
                        (t.resource() == Resource::kGpuCompute && plan.is_decoder_layer(t.layer)))) {
      const auto k = std::make_pair(stage, std::tuple<int, int, int>{t.token, t.layer, t.batch});
      widen(cache_use[k], r.tasks[i], !cache_use.count(k));
    }
    // Activation slot (activations live off the GPU): from the load (or the embedding's
    // compute) to the store (or the output layer's compute).
    if (t.kind == TaskKind::kActLoad || t.kind == TaskKind::kActStore || t.resource() == Resource::kGpuCompute) {
      const auto k = std::make_pair(stage, std::tuple<int, int, int>{t.token, t.layer, t.batch});
      widen(act_use[k], r.tasks[i], !act_use.count(k));
    }
  }
  for (int st = 0; st < stages; ++st) {
    std::vector<TaskSpan> w, c, h;
    for (const auto& [k, u] : weight_use)
      if (k.first == st) w.push_back(u);
    for (const auto& [k, u] : cache_use)
      if (k.first == st) c.push_back(u);
    for (const auto& [k, u] : act_use)
      if (k.first == st) h.push_back(u);
    EXPECT_LE(max_overlap(w), 2) << "stage " << st;
    EXPECT_LE(max_overlap(c), 2) << "stage " << st;
    EXPECT_LE(max_overlap(h), 2) << "stage " << st;
  }
}

TEST(Pipeline, OffloadedStagesKeepDependenciesLanesAndDoubleBuffers) {
  const HashModel hash;
  const SlowStoreModel slow_store(false), only_stores(true);
  for (const DurationModel* model : std::vector<const DurationModel*>{&hash, &slow_store, &only_stores}) {
    for (const auto& percent :
         {std::array<double, 6>{0, 60, 0, 50, 0, 100}, std::array<double, 6>{0, 60, 0, 100, 0, 0}}) {
      for (ScheduleKind kind : {ScheduleKind::kZigZag, ScheduleKind::kRowByRow}) {
        for (std::int64_t ngb : {1, 2, 3}) {
          for (std::int32_t stages : {1, 2, 3}) {
            for (bool overlap : {true, false}) check_offloaded(*model, percent, kind, ngb, stages, overlap);
          }
        }
      }
    }
  }
}

// Each stage allocates its own layers' weights and cache, and its own copy of everything else.
TEST(Pipeline, StageMemoryByHand) {
  PlanArgs a;
  a.ngb = 2;  // all on the GPU, gbs 1, prompt 4, gen 2
  const Plan plan = tiny_plan(a);
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  PipelineOptions o;
  o.num_stages = 2;
  o.link_bytes_per_s = 1e9;
  const PipelineResult r = simulate_pipeline(plan, s, LinearModel(1, 1, 1, 1), o);
  // Cache of one decoder layer: 2 batches x (key, value) x 4 units x 5 positions x 16 B = 1280 B;
  // activations of 2 batches x 4 positions x 16 x 4 B = 512 B on every stage.
  ASSERT_EQ(r.stage_memory.size(), 2u);
  EXPECT_EQ(r.stage_memory[0].total[Tier::kGpu], simtest::kEmbeddingBytes + simtest::kDecoderBytes + 1280 + 512);
  EXPECT_EQ(r.stage_memory[1].total[Tier::kGpu], simtest::kDecoderBytes + simtest::kOutputBytes + 1280 + 512);
  o.capacities[Tier::kGpu] = simtest::kEmbeddingBytes + simtest::kDecoderBytes + 1280 + 511;
  EXPECT_THAT(error_of([&] { simulate_pipeline(plan, s, LinearModel(1, 1, 1, 1), o); }),
              HasSubstr("pipeline stage 0: plan does not fit: the gpu tier needs"));
}

TEST(Pipeline, SharedHostSharesHostLanesAndMemory) {
  PlanArgs a;
  a.percent = {0, 100, 0, 100, 0, 100};
  a.ngb = 2;
  a.cpu_cache_compute = true;
  const Plan plan = tiny_plan(a);
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  PipelineOptions o;
  o.num_stages = 2;
  o.link_bytes_per_s = 1e9;
  o.shared_host = true;
  const PipelineResult r = simulate_pipeline(plan, s, HashModel(), o);
  std::vector<std::string> names;
  for (const PipelineLane& l : r.lanes) names.push_back(l.name);
  EXPECT_EQ(names, (std::vector<std::string>{"gpu0 gpu_compute", "host cpu_compute", "gpu0 h2d", "gpu0 d2h",
                                             "host disk_read", "host disk_write", "gpu1 gpu_compute", "gpu1 h2d",
                                             "gpu1 d2h", "link 0->1", "link 1->0"}));
  const Bytes cpu = r.stage_memory[0].total[Tier::kCpu] + r.stage_memory[1].total[Tier::kCpu];
  o.capacities[Tier::kCpu] = cpu - 1;  // each stage fits alone, not both
  EXPECT_THAT(error_of([&] { simulate_pipeline(plan, s, HashModel(), o); }),
              HasSubstr("pipeline host (all 2 stages): plan does not fit: the cpu tier needs"));
  o.shared_host = false;
  EXPECT_NO_THROW(simulate_pipeline(plan, s, HashModel(), o));
}

TEST(Pipeline, TraceHasOneTrackPerLaneAndTheTransfers) {
  PlanArgs a;
  a.ngb = 2;
  const Plan plan = tiny_plan(a);
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  PipelineOptions o;
  o.num_stages = 2;
  o.link_bytes_per_s = 1e9;
  const PipelineResult r = simulate_pipeline(plan, s, LinearModel(1, 10, 10, 10), o);
  const TraceProcess p = trace_process("pipeline", s, r);
  EXPECT_EQ(p.tracks.size(), r.lanes.size());
  EXPECT_EQ(p.slices.size(), s.tasks.size() + r.transfers.size());
  EXPECT_EQ(p.slices.back().name, "transfer");
  EXPECT_EQ(p.slices.back().track, r.transfer_lane.back());
}

TEST(Pipeline, BadOptionsAreRefused) {
  const Plan plan = tiny_plan(PlanArgs{});
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  PipelineOptions o;
  o.num_stages = 2;
  EXPECT_THAT(error_of([&] { simulate_pipeline(plan, s, HashModel(), o); }),
              HasSubstr("inter-GPU link bandwidth must be positive (got 0 bytes/s)"));
  o.link_bytes_per_s = 1e9;
  o.link_latency_ns = -1;
  EXPECT_THAT(error_of([&] { simulate_pipeline(plan, s, HashModel(), o); }), HasSubstr("negative link latency"));
  o.link_latency_ns = 0;
  o.shared_pcie_fraction = 2.0;
  EXPECT_THAT(error_of([&] { simulate_pipeline(plan, s, HashModel(), o); }),
              HasSubstr("invalid shared PCIe fraction 2"));
  o.shared_pcie_fraction.reset();
  o.num_stages = 3;
  EXPECT_THAT(error_of([&] { simulate_pipeline(plan, s, HashModel(), o); }), HasSubstr("3 stages for a model of 2"));
  // A schedule of another plan (longer generation).
  PlanArgs longer;
  longer.gen = 4;
  const Schedule other = make_schedule(tiny_plan(longer), ScheduleKind::kZigZag);
  o.num_stages = 2;
  EXPECT_THAT(error_of([&] { simulate_pipeline(plan, other, HashModel(), o); }),
              HasSubstr("the schedule does not belong to the plan"));
  EXPECT_THAT(error_of([&] { simulate_pipeline(plan, s, std::vector<Nanoseconds>{1}, o); }),
              HasSubstr("1 durations for a schedule of"));
}

}  // namespace
}  // namespace flexgen
