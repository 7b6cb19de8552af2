// The cost model, memory model, search and simulator on LLaMA models: FLOPs and bytes of the
// schedule's tasks worked out by hand for llama-2-70b (grouped-query attention, SwiGLU, untied LM
// head), the memory model against the memory plan, the folded estimate against the full schedule,
// and a search on a machine too small to hold the model on one tier.
#include <gtest/gtest.h>

#include "engine/costmodel/estimate.h"
#include "engine/costmodel/memory_model.h"
#include "engine/costmodel/shares.h"
#include "engine/costmodel/task_cost.h"
#include "engine/runtime/memory_plan.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"
#include "engine/search/policy_search.h"
#include "simulator/cost_durations.h"
#include "simulator/simulator.h"
#include "support/random_llama.h"

namespace flexgen {
namespace {

const HardwareSpec& h200() {
  static const HardwareSpec hw =
      HardwareSpec::from_file(std::string(FLEXGEN_SOURCE_DIR) + "/experiments/hardware/h200.json");
  return hw;
}

Plan plan_of(const ModelSpec& spec, std::array<double, 6> percent, std::int64_t gbs, std::int64_t ngb,
             std::int64_t prompt, std::int64_t gen, bool delegate = false, bool compress_weight = false,
             bool compress_cache = false) {
  PolicyConfig c;
  c.gpu_batch_size = gbs;
  c.num_gpu_batches = ngb;
  c.set_percent(percent);
  c.cpu_cache_compute = delegate;
  c.compress_weight = compress_weight;
  c.compress_cache = compress_cache;
  Workload w;
  w.prompt_len = prompt;
  w.gen_len = gen;
  w.num_sequences = gbs * ngb;
  return make_plan(spec, w, Policy::create(c));
}

const Task& find(const Schedule& s, TaskKind kind, int token, int layer, int batch) {
  for (const Task& t : s.tasks) {
    if (t.kind == kind && t.token == token && t.layer == layer && t.batch == batch) return t;
  }
  ADD_FAILURE() << "no task " << task_kind_name(kind) << " " << token << " " << layer << " " << batch;
  static const Task none;
  return none;
}

// llama-2-70b: h 8192, 64 heads of 128 over 8 key/value heads (g = 8), kv_dim 1024, ffn 28672,
// vocab 32000; fp16. One gpu batch of 2 sequences, prompt 4, 3 tokens; units 2 * 8 = 16.
//   prefill compute (T = 4): GEMM 2 * 2 * 4 * 8192 * (8192 + 2 * 1024) = 1342177280;
//     attention g * units * 2 * 128 * (4 * 5 / 2) * 2 = 8 * 16 * 256 * 10 * 2 = 655360
//   prefill post: 2 * 2 * 4 * 8192^2 + 6 * 2 * 4 * 8192 * 28672 = 1073741824 + 11274289152
//     = 12348030976
//   decode step 1 compute (T = 1, 4 cached + 1 positions): GEMM 2 * 2 * 8192 * 10240 = 335544320;
//     attention 8 * 16 * 256 * 5 * 2 = 327680
//   output layer: 2 * 2 * 8192 * 32000 = 1048576000
TEST(LlamaCostModel, ScheduleFlopsByHand) {
  const ModelSpec spec = ModelSpec::from_name("llama-2-70b");
  const Plan plan = plan_of(spec, {100, 0, 100, 0, 100, 0}, 2, 1, 4, 3);
  EXPECT_EQ(plan.cache.units, 16);
  EXPECT_EQ(plan.cache.queries_per_unit, 8);
  EXPECT_EQ(plan.cache.row_bytes, 256);
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  EXPECT_EQ(find(s, TaskKind::kCompute, 0, 1, 0).gemm_flops, 1342177280.0);
  EXPECT_EQ(find(s, TaskKind::kCompute, 0, 1, 0).attention_flops, 655360.0);
  EXPECT_EQ(find(s, TaskKind::kComputePost, 0, 1, 0).gemm_flops, 12348030976.0);
  EXPECT_EQ(find(s, TaskKind::kCompute, 1, 5, 0).gemm_flops, 335544320.0);
  EXPECT_EQ(find(s, TaskKind::kCompute, 1, 5, 0).attention_flops, 327680.0);
  EXPECT_EQ(find(s, TaskKind::kCompute, 2, 81, 0).gemm_flops, 1048576000.0);
}

// The same model, everything on the GPU, h200.json: a decode step's GEMMs are memory-bound. The
// compute task reads q, k, v: (8192^2 + 2 * 1024 * 8192) * 2 B = 167772160 B; the post task o,
// gate, up, down: (8192^2 + 3 * 8192 * 28672) * 2 B = 1543503872 B; the output layer lm_head
// 32000 * 8192 * 2 B = 524288000 B. Decode attention at step 1: 327680 FLOPs at 1.44e12, or the
// K and V rows (16 units, 5 positions, 256 B each) = 40960 B at 4.8e12 B/s; the FLOP term wins.
TEST(LlamaCostModel, DecodeTaskCostsByHand) {
  const ModelSpec spec = ModelSpec::from_name("llama-2-70b");
  const Plan plan = plan_of(spec, {100, 0, 100, 0, 100, 0}, 2, 1, 4, 3);
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  const TaskCostModel model(plan, h200());
  const TaskCost compute = model.cost(find(s, TaskKind::kCompute, 1, 5, 0));
  EXPECT_DOUBLE_EQ(compute.gemm, 167772160.0 / 4.8e12);
  EXPECT_DOUBLE_EQ(compute.attention, 327680.0 / 1.44e12);
  const TaskCost post = model.cost(find(s, TaskKind::kComputePost, 1, 5, 0));
  EXPECT_DOUBLE_EQ(post.gemm, 1543503872.0 / 4.8e12);
  const TaskCost output = model.cost(find(s, TaskKind::kCompute, 1, 81, 0));
  EXPECT_DOUBLE_EQ(output.gemm, 524288000.0 / 4.8e12);
}

// Weights on the CPU: a decoder layer loads all its bytes, 2 * 855654400 = 1711308800 B
// (layer_params by hand in LlamaSpec.ExactParameterCounts); cache on the CPU: the decode step
// loads 2 * 16 units * 4 positions * 256 B = 32768 B per layer and batch (1/8 of what 64 heads
// would load).
TEST(LlamaCostModel, TransferBytesByHand) {
  const ModelSpec spec = ModelSpec::from_name("llama-2-70b");
  const Plan plan = plan_of(spec, {0, 100, 0, 100, 100, 0}, 2, 1, 4, 3);
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  for (const Task& t : s.tasks) {
    if (t.kind == TaskKind::kWeightLoad && t.layer == 3) {
      EXPECT_EQ(t.bytes.h2d, 1711308800);
      EXPECT_DOUBLE_EQ(TaskCostModel(plan, h200()).cost(t).link, 1711308800.0 / 50.4e9);
    }
  }
  EXPECT_EQ(find(s, TaskKind::kCacheLoad, 1, 3, 0).bytes.h2d, 32768);
  // Delegation: per decode step the 8 query heads, new key and value of 16 units go to the CPU
  // ((8 + 2) * 16 * 256 B = 40960 B) and 8 output heads come back (8 * 16 * 256 B = 32768 B);
  // the CPU reads the 5 rows of key and value of 16 units serving 8 queries each:
  // 8 * 16 * 256 * (5 + 5) = 327680 FLOPs.
  const Plan deleg = plan_of(spec, {100, 0, 0, 100, 100, 0}, 2, 1, 4, 3, true);
  const Schedule d = make_schedule(deleg, ScheduleKind::kZigZag);
  EXPECT_EQ(find(d, TaskKind::kDelegateStore, 1, 3, 0).bytes.d2h, 40960);
  EXPECT_EQ(find(d, TaskKind::kDelegateLoad, 1, 3, 0).bytes.h2d, 32768);
  EXPECT_EQ(find(d, TaskKind::kCpuAttention, 1, 3, 0).attention_flops, 327680.0);
}

// The memory model counts exactly the buffers the memory plan lists, for LLaMA too (delegation
// buffers with query groups, untied LM head, 4-bit weights and cache).
TEST(LlamaCostModel, MemoryModelMatchesTheMemoryPlan) {
  struct Case {
    std::array<double, 6> percent;
    std::int64_t gbs, ngb;
    bool delegate = false, compress_weight = false, compress_cache = false;
  };
  const Case cases[] = {
      {{100, 0, 100, 0, 100, 0}, 2, 1},
      {{0, 100, 100, 0, 100, 0}, 2, 3},
      {{30, 30, 40, 30, 0, 100}, 2, 3},
      {{20, 80, 0, 100, 0, 100}, 3, 2, true},
      {{50, 25, 25, 50, 0, 0}, 2, 2, true, true, true},
      {{10, 10, 10, 10, 100, 0}, 3, 3, false, true, false},
  };
  for (const char* name : {"llama-2-7b", "llama-2-70b", "llama-3-8b"}) {
    const ModelSpec spec = ModelSpec::from_name(name);
    for (const Case& c : cases) {
      const Plan plan = plan_of(spec, c.percent, c.gbs, c.ngb, 512, 32, c.delegate, c.compress_weight, c.compress_cache);
      const TierValues predicted =
          predict_memory(MemorySizes::of_plan(plan), PlacementShares::of_plan(plan), c.ngb, c.delegate);
      const TierBytes actual = plan_memory(plan).total;
      for (Tier t : kAllTiers) {
        const double a = static_cast<double>(actual[t]);
        EXPECT_NEAR(predicted[t], a, 1e-12 * std::max(a, 1.0)) << name << " " << plan.policy.to_string() << " "
                                                               << tier_name(t);
      }
    }
  }
}

// GPU workspace: llama-2-70b, gpu batch 4, prompt 128, 8 tokens: the CUDA backend's 145170944
// bytes (by hand in tests/engine/runtime/cuda_workspace_test.cc) plus the 64 MiB padding allowance.
TEST(LlamaCostModel, GpuWorkspaceByHand) {
  const Plan plan = plan_of(ModelSpec::from_name("llama-2-70b"), {100, 0, 100, 0, 100, 0}, 4, 1, 128, 8);
  const GpuWorkspace w = gpu_workspace(plan.spec, plan.workload, plan.policy);
  EXPECT_EQ(w.prefill, 145170944.0 + 67108864.0);
  EXPECT_EQ(w.decode, w.prefill);
}

TEST(LlamaCostModel, FoldedEstimateEqualsTheFullSchedule) {
  const ModelSpec spec = testing::tiny_llama_spec();
  for (const auto& percent : std::vector<std::array<double, 6>>{
           {100, 0, 100, 0, 100, 0}, {0, 50, 0, 100, 0, 100}, {30, 30, 40, 30, 0, 0}}) {
    for (bool delegate : {false, true}) {
      for (ScheduleKind kind : {ScheduleKind::kZigZag, ScheduleKind::kRowByRow}) {
        const Plan plan = plan_of(spec, percent, 2, 3, 12, 5, delegate);
        const Estimate full = estimate_schedule(plan, make_schedule(plan, kind), h200());
        const Estimate folded = estimate_policy(spec, plan.workload, plan.policy, h200(), kind);
        EXPECT_NEAR(folded.total_s, full.total_s, 1e-12 * full.total_s) << plan.policy.to_string();
        for (int r = 0; r < kNumResources; ++r) {
          EXPECT_NEAR(folded.busy[r], full.busy[r], 1e-12 * std::max(full.busy[r], 1e-12));
        }
      }
    }
  }
}

// The simulator replays a LLaMA schedule with the cost model's durations: with overlap off its
// makespan is the sum of the task costs (to the nanosecond rounding of each task).
TEST(LlamaCostModel, SimulatorWithOverlapOffSumsTheTaskCosts) {
  const ModelSpec spec = testing::tiny_llama_spec();
  PolicyConfig c;
  c.gpu_batch_size = 2;
  c.num_gpu_batches = 2;
  c.set_percent({0, 50, 0, 100, 100, 0});
  c.cpu_cache_compute = true;
  c.overlap = false;
  Workload w;
  w.prompt_len = 10;
  w.gen_len = 4;
  w.num_sequences = 4;
  const Plan plan = make_plan(spec, w, Policy::create(c));
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  const CostModelDurations durations(plan, h200());
  const SimResult r = simulate(plan, s, durations);
  Nanoseconds total = 0;
  for (const Task& t : s.tasks) total += durations.duration(t);
  EXPECT_EQ(r.makespan, total);
  EXPECT_GT(r.busy[static_cast<std::size_t>(Resource::kCpuCompute)], 0);
}

// llama-2-70b in fp16 (128.5 GiB of weights) on an H200-class machine whose GPU is given 76 GiB,
// its host 96 GiB and its disk 40 GiB: no tier holds the model, so the policy spreads it; its
// predicted peak fits every tier. In 4 bits (about 36 GB) it fits the GPU.
TEST(LlamaCostModel, SearchSplitsA70bModelAcrossTheTiers) {
  const ModelSpec spec = ModelSpec::from_name("llama-2-70b");
  HardwareSpec hw = h200();
  hw.gpu_memory_bytes = Bytes{76} << 30;
  hw.cpu_memory_bytes = Bytes{96} << 30;
  hw.disk_bytes = Bytes{40} << 30;
  Workload workload;
  workload.prompt_len = 128;
  workload.gen_len = 8;
  SearchOptions options;
  const SearchResult r = search_policy(spec, workload, hw, options);
  ASSERT_FALSE(r.candidates.empty());
  const SearchCandidate& best = r.candidates.front();
  const TierValues peak = best.estimate.memory.peak();
  EXPECT_LE(peak[Tier::kGpu], static_cast<double>(hw.gpu_memory_bytes));
  EXPECT_LE(peak[Tier::kCpu], static_cast<double>(hw.cpu_memory_bytes));
  EXPECT_LE(peak[Tier::kDisk], static_cast<double>(hw.disk_bytes));
  EXPECT_LT(best.policy.weights().gpu_percent, 100.0);
  EXPECT_GT(best.estimate.throughput_tok_s, 0.0);
  options.compress_weight = true;
  const SearchResult q = search_policy(spec, workload, hw, options);
  ASSERT_FALSE(q.candidates.empty());
  EXPECT_GT(q.candidates.front().estimate.throughput_tok_s, best.estimate.throughput_tok_s);
  EXPECT_LE(q.candidates.front().estimate.memory.peak()[Tier::kGpu], static_cast<double>(hw.gpu_memory_bytes));
}

}  // namespace
}  // namespace flexgen
