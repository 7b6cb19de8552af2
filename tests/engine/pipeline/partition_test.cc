// The partitioning of layers over pipeline stages (worked by hand, including the paper's models),
// each stage's memory plan, and the schedule of a stage against an independent enumeration of the
// single-GPU schedule's tasks restricted to the stage's layers.
#include "engine/pipeline/partition.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <tuple>

#include "engine/core/error.h"
#include "engine/core/model_spec.h"
#include "support/random_opt.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// Stage sizes (decoder layers per stage) of a split.
std::vector<int> sizes(const std::vector<std::int32_t>& stage_of_layer, int stages) {
  std::vector<int> n(static_cast<std::size_t>(stages), 0);
  for (std::size_t j = 1; j + 1 < stage_of_layer.size(); ++j) ++n[static_cast<std::size_t>(stage_of_layer[j])];
  return n;
}

TEST(PipelinePartition, SplitsDecoderLayersLikeFlexGen) {
  EXPECT_EQ(pipeline_stages(2, 1), (std::vector<std::int32_t>{0, 0, 0, 0}));
  EXPECT_EQ(pipeline_stages(2, 2), (std::vector<std::int32_t>{0, 0, 1, 1}));
  EXPECT_EQ(pipeline_stages(3, 2), (std::vector<std::int32_t>{0, 0, 0, 1, 1}));  // 2 + 1
  EXPECT_EQ(pipeline_stages(3, 3), (std::vector<std::int32_t>{0, 0, 1, 2, 2}));
  EXPECT_EQ(pipeline_stages(5, 3), (std::vector<std::int32_t>{0, 0, 0, 1, 1, 2, 2}));  // 2 + 2 + 1
  EXPECT_EQ(pipeline_stages(7, 4), (std::vector<std::int32_t>{0, 0, 0, 1, 1, 2, 2, 3, 3}));  // 2 + 2 + 2 + 1
  // The paper's models: OPT-30B has 48 decoder layers, OPT-175B 96, OPT-6.7B 32.
  EXPECT_EQ(sizes(pipeline_stages(48, 4), 4), (std::vector<int>{12, 12, 12, 12}));
  EXPECT_EQ(sizes(pipeline_stages(96, 4), 4), (std::vector<int>{24, 24, 24, 24}));
  EXPECT_EQ(sizes(pipeline_stages(32, 3), 3), (std::vector<int>{11, 11, 10}));
  EXPECT_EQ(sizes(pipeline_stages(96, 8), 8), (std::vector<int>(8, 12)));
  EXPECT_THAT(error_of([] { pipeline_stages(5, 6); }),
              HasSubstr("invalid pipeline: 6 stages for a model of 5 decoder layers"));
  EXPECT_THAT(error_of([] { pipeline_stages(5, 0); }), HasSubstr("0 stages"));
}

TEST(PipelinePartition, StageLayersAreTheContiguousRanges) {
  const auto s = pipeline_stages(5, 3);  // layers 0..6: {0,1,2} {3,4} {5,6}
  EXPECT_EQ(stage_layers(s, 0).first, 0);
  EXPECT_EQ(stage_layers(s, 0).last, 2);
  EXPECT_EQ(stage_layers(s, 1).first, 3);
  EXPECT_EQ(stage_layers(s, 1).last, 4);
  EXPECT_EQ(stage_layers(s, 2).first, 5);
  EXPECT_EQ(stage_layers(s, 2).last, 6);
  EXPECT_THAT(error_of([&] { stage_layers(s, 3); }), HasSubstr("stage 3 holds no layer"));
  EXPECT_THAT(error_of([] { stage_layers({0, 1, 0}, 0); }), HasSubstr("not contiguous"));
}

Plan tiny_plan(std::int64_t layers, std::array<double, 6> percent, std::int64_t ngb) {
  ModelSpec spec = testing::tiny_opt_spec();
  spec.num_layers = layers;
  PolicyConfig c;
  c.gpu_batch_size = 2;
  c.num_gpu_batches = ngb;
  c.set_percent(percent);
  Workload w;
  w.prompt_len = 5;
  w.gen_len = 4;
  w.num_sequences = 2 * ngb;
  return make_plan(spec, w, Policy::create(c));
}

// Stage memory: the tiny model (h 16, ffn 64, vocab 40, 34 positions, f32). A decoder layer holds
// q, k, v, out (16x16 + 16 each), LN (2 x 16), fc1 (64x16 + 64), fc2 (16x64 + 16), final LN
// (2 x 16): 1088 + 32 + 1088 + 1040 + 32 = 3280 values = 13120 bytes. The embedding: 40 x 16 +
// 34 x 16 = 1184 values = 4736 bytes; the output layer: the final LayerNorm (32 values = 128
// bytes) and, the LM head being tied to the embedding, its own copy of the token embedding (as
// FlexGen: 40 x 16 values = 2560 bytes). Cache of a (layer, batch): 2 sequences x 4 heads
// x 8 positions (5 + 4 - 1) x 4 values x 4 bytes x (key, value) = 2048 bytes.
TEST(PipelinePartition, StageMemoryHoldsItsLayersAndItsOwnCopyOfTheRest) {
  const Plan plan = tiny_plan(3, {100, 0, 100, 0, 100, 0}, 2);
  const MemoryPlan whole = plan_memory(plan);
  const auto stages = pipeline_stages(plan, 2);  // {0, 1, 2} and {3, 4}
  const MemoryPlan m0 = stage_memory(plan, whole, stages, 0);
  const MemoryPlan m1 = stage_memory(plan, whole, stages, 1);
  Bytes others = 0;  // every buffer but weight and cache homes (the activations here: 2 x 2 x 5 x 16 x 4)
  for (const BufferRequest& b : whole.buffers) {
    if (b.role != BufferRole::kWeightHome && b.role != BufferRole::kCacheHome) others += b.bytes;
  }
  EXPECT_EQ(others, 2 * 2 * 5 * 16 * 4);
  EXPECT_EQ(m0.total[Tier::kGpu], 4736 + 2 * 13120 + 2 * 2 * 2048 + others);
  EXPECT_EQ(m1.total[Tier::kGpu], 13120 + 128 + 2560 + 2 * 2048 + others);
  EXPECT_EQ(m0.total[Tier::kGpu] + m1.total[Tier::kGpu], whole.total[Tier::kGpu] + others);
  for (Tier t : {Tier::kCpu, Tier::kDisk}) EXPECT_EQ(m0.total[t] + m1.total[t], 0);
  // One stage holds the whole plan.
  const MemoryPlan one = stage_memory(plan, whole, pipeline_stages(plan, 1), 0);
  for (Tier t : kAllTiers) EXPECT_EQ(one.total[t], whole.total[t]);
}

// ---- the schedule of a stage -------------------------------------------------------------

// kind, token, layer, batch, and which of the tasks with those four it is (row-by-row loads a
// layer's weights once per gpu batch: batch -1 each time).
using Key = std::tuple<int, int, int, int, int>;

std::map<Key, LinkBytes> tasks_by_key(const Schedule& s) {
  std::map<Key, LinkBytes> out;
  std::map<std::tuple<int, int, int, int>, int> seen;
  for (const Task& t : s.tasks) {
    const int n = seen[{static_cast<int>(t.kind), t.token, t.layer, t.batch}]++;
    out[Key{static_cast<int>(t.kind), t.token, t.layer, t.batch, n}] = t.bytes;
  }
  return out;
}

// The tasks of a stage's schedule are the whole schedule's tasks of its layers, less the activation
// loads into its first layer and the stores after its last (those cross to the neighbouring stage);
// the dependencies stay inside the stage and point backward; the weight and cache slots alternate
// among the stage's own steps and visits.
TEST(PipelinePartition, StageScheduleIsTheWholeScheduleRestrictedToItsLayers) {
  const std::array<double, 6> placements[] = {
      {100, 0, 100, 0, 100, 0}, {0, 100, 0, 100, 0, 100}, {0, 50, 0, 50, 0, 0}, {50, 50, 50, 50, 0, 100}};
  for (const auto& pct : placements) {
    for (std::int64_t ngb : {1, 3}) {
      for (ScheduleKind kind : {ScheduleKind::kZigZag, ScheduleKind::kRowByRow}) {
        const Plan plan = tiny_plan(4, pct, ngb);
        const Schedule whole = make_schedule(plan, kind);
        const auto all = tasks_by_key(whole);
        for (int g : {1, 2, 3}) {
          const auto stages = pipeline_stages(plan, g);
          std::size_t total = 0;
          for (int s = 0; s < g; ++s) {
            const LayerRange r = stage_layers(stages, s);
            const Schedule part = make_schedule(plan, kind, r);
            SCOPED_TRACE(::testing::Message() << pct[0] << "/" << pct[2] << "/" << pct[4] << " ngb " << ngb << " "
                                            << schedule_kind_name(kind) << " stage " << s << " of " << g);
            const auto mine = tasks_by_key(part);
            std::map<Key, LinkBytes> expected;
            for (const auto& [k, bytes] : all) {
              const auto kd = static_cast<TaskKind>(std::get<0>(k));
              const int layer = std::get<2>(k);
              if (layer < r.first || layer > r.last) continue;
              const bool load_in = (kd == TaskKind::kActLoad || kd == TaskKind::kActRead) && layer == r.first;
              const bool store_out = (kd == TaskKind::kActStore || kd == TaskKind::kActWrite) && layer == r.last;
              if (!load_in && !store_out) expected[k] = bytes;
            }
            EXPECT_EQ(mine.size(), expected.size());
            for (const auto& [k, bytes] : expected) {
              auto it = mine.find(k);
              ASSERT_NE(it, mine.end()) << task_kind_name(static_cast<TaskKind>(std::get<0>(k))) << " token "
                                        << std::get<1>(k) << " layer " << std::get<2>(k) << " batch " << std::get<3>(k);
              EXPECT_TRUE(it->second == bytes);
            }
            total += part.tasks.size();
            // Dependencies point backward within the list; slots alternate per own step.
            std::int32_t last_token = -1, last_layer = -1, step = -1;
            for (std::size_t i = 0; i < part.tasks.size(); ++i) {
              const Task& t = part.tasks[i];
              for (TaskId d : t.deps) EXPECT_LT(d, static_cast<TaskId>(i));
              if (t.kind != TaskKind::kCompute) continue;
              if (kind == ScheduleKind::kRowByRow || t.token != last_token || t.layer != last_layer) ++step;
              last_token = t.token;
              last_layer = t.layer;
              EXPECT_EQ(t.weight_slot, step % 2);
            }
          }
          if (g == 1) {
            EXPECT_EQ(total, whole.tasks.size());
          }
        }
      }
    }
  }
  EXPECT_THAT(error_of([] { make_schedule(tiny_plan(4, {100, 0, 100, 0, 100, 0}, 1), ScheduleKind::kZigZag, {3, 6}); }),
              HasSubstr("invalid layer range [3, 6] for a model of 4 decoder layers"));
}

}  // namespace
}  // namespace flexgen
