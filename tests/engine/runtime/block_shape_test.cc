// BlockShape: one runtime, planned for the largest block, runs smaller blocks in its buffers. A
// smaller shape must give exactly the tokens of a runtime planned for that shape (every placement,
// both schedules), the all-GPU case the tokens of the float64 reference, the traffic of the
// smaller schedule; shapes that do not fit are refused with a clear error.
#include <array>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "engine/runtime/host_runtime.h"
#include "engine/runtime/runtime.h"
#include "support/opt_reference.h"
#include "support/random_opt.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

constexpr std::int64_t kPlanPrompt = 7, kPlanGen = 6;  // the big plan: 13 positions

const ModelSpec& spec() {
  static const ModelSpec s = testing::tiny_opt_spec();
  return s;
}

const OptWeights& weights() {
  static const OptWeights w = testing::random_opt_weights(spec(), 777, 0.3);
  return w;
}

struct Placed {
  const char* name;
  std::array<double, 6> percent;
  bool delegate = false, compress_cache = false;
};

const Placed kSetups[] = {
    {"all-gpu", {100, 0, 100, 0, 100, 0}},
    {"cpu-cache", {100, 0, 0, 100, 100, 0}},
    {"disk-cache", {100, 0, 0, 0, 100, 0}},
    {"split-cache-cpu-weights", {0, 100, 30, 40, 100, 0}},
    {"disk-weights-cpu-acts", {0, 0, 50, 50, 0, 100}},
    {"disk-acts", {50, 50, 0, 100, 0, 0}},
    {"cpu-delegation", {100, 0, 25, 75, 100, 0}, true},
    {"compressed-cache", {100, 0, 50, 0, 100, 0}, false, true},
};

Plan plan_for(const Placed& s, std::int64_t ngb, std::int64_t prompt_len, std::int64_t gen_len) {
  PolicyConfig c;
  c.gpu_batch_size = 2;
  c.num_gpu_batches = ngb;
  c.set_percent(s.percent);
  c.cpu_cache_compute = s.delegate;
  c.compress_cache = s.compress_cache;
  Workload w;
  w.prompt_len = prompt_len;
  w.gen_len = gen_len;
  w.num_sequences = 2 * ngb;
  return make_plan(spec(), w, Policy::create(c));
}

RuntimeOptions options_in(const TempDir& dir, ScheduleKind kind) {
  RuntimeOptions o;
  o.budgets[Tier::kGpu] = o.budgets[Tier::kCpu] = o.budgets[Tier::kDisk] = Bytes{1} << 40;
  o.offload_dir = dir.path();
  o.schedule = kind;
  return o;
}

// `count` prompts of up to `max_len` tokens, lengths varying, starting with </s>.
std::vector<std::vector<std::int32_t>> prompts(std::int64_t count, std::int64_t max_len, std::uint64_t seed) {
  testing::NormalRng rng(seed);
  std::vector<std::vector<std::int32_t>> out;
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t len = i == 0 ? max_len : 1 + rng.below(static_cast<std::int32_t>(max_len));
    std::vector<std::int32_t> p = {2};
    while (static_cast<std::int64_t>(p.size()) < len) p.push_back(3 + rng.below(37));
    out.push_back(p);
  }
  return out;
}

struct Shape {
  std::int64_t prompt_len, gen_len;
};
// Smaller in prompt, in generation, in both, with more generation than the plan (the cache
// capacity allows it), and the plan's own, in an order that reuses buffers a larger run filled.
const Shape kShapes[] = {{5, 3}, {3, 10}, {7, 6}, {2, 1}, {7, 2}, {4, 4}};

class BlockShapePlacements : public ::testing::TestWithParam<int> {};

TEST_P(BlockShapePlacements, SmallerShapesGiveTheTokensOfARuntimePlannedForThem) {
  const Placed& s = kSetups[GetParam()];
  {
    for (const std::int64_t ngb : {1, 2}) {
      for (const ScheduleKind kind : {ScheduleKind::kZigZag, ScheduleKind::kRowByRow}) {
        SCOPED_TRACE(std::string(s.name) + " ngb " + std::to_string(ngb) + " " + schedule_kind_name(kind));
        TempDir big_dir;
        const Plan big_plan = plan_for(s, ngb, kPlanPrompt, kPlanGen);
        HostRuntime big(big_plan, weights(), options_in(big_dir, kind));
        std::uint64_t seed = 5;
        for (const Shape& shape : kShapes) {
          SCOPED_TRACE("shape " + std::to_string(shape.prompt_len) + " + " + std::to_string(shape.gen_len));
          const auto ps = prompts(2 * ngb, shape.prompt_len, seed++);
          TempDir small_dir;
          const Plan small_plan = plan_for(s, ngb, shape.prompt_len, shape.gen_len);
          HostRuntime small(small_plan, weights(), options_in(small_dir, kind));
          const RunReport expected = small.generate(ps, SamplingConfig{}, std::nullopt);
          const RunReport got =
              big.generate(ps, SamplingConfig{}, std::nullopt, BlockShape{shape.prompt_len, shape.gen_len});
          EXPECT_EQ(got.tokens, expected.tokens);
          for (const auto& t : got.tokens) EXPECT_EQ(static_cast<std::int64_t>(t.size()), shape.gen_len);
          // The traffic of the smaller schedule, in the buffers of the big plan.
          EXPECT_EQ(got.moved, small.schedule().total_bytes());
          EXPECT_EQ(got.generated_tokens, 2 * ngb * shape.gen_len);
          for (Tier t : kAllTiers) EXPECT_EQ(got.peak[t], big.memory_plan().total[t]);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Placements, BlockShapePlacements, ::testing::Range(0, static_cast<int>(std::size(kSetups))),
                         [](const ::testing::TestParamInfo<int>& param) {
                           std::string name = kSetups[param.param].name;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

TEST(BlockShape, AllGpuSmallerShapeMatchesTheFloat64Reference) {
  TempDir dir;
  const Plan plan = plan_for(kSetups[0], 2, kPlanPrompt, kPlanGen);
  HostRuntime runtime(plan, weights(), options_in(dir, ScheduleKind::kZigZag));
  const auto ps = prompts(4, 4, 11);
  const RunReport r = runtime.generate(ps, SamplingConfig{}, std::nullopt, BlockShape{4, 9});
  EXPECT_EQ(r.tokens, testing::reference_greedy(spec(), weights(), ps, 9));
}

TEST(BlockShape, ZeroFieldsMeanThePlansValues) {
  TempDir dir;
  const Plan plan = plan_for(kSetups[2], 1, kPlanPrompt, kPlanGen);
  HostRuntime runtime(plan, weights(), options_in(dir, ScheduleKind::kZigZag));
  const auto ps = prompts(2, kPlanPrompt, 3);
  const auto expected = testing::reference_greedy(spec(), weights(), ps, static_cast<int>(kPlanGen));
  EXPECT_EQ(runtime.generate(ps, SamplingConfig{}, std::nullopt, BlockShape{0, kPlanGen}).tokens, expected);
  EXPECT_EQ(runtime.generate(ps, SamplingConfig{}, std::nullopt, BlockShape{kPlanPrompt, 0}).tokens, expected);
  const auto short_gen = runtime.generate(prompts(2, 3, 4), SamplingConfig{}, std::nullopt, BlockShape{3, 0});
  EXPECT_EQ(short_gen.tokens[0].size(), static_cast<std::size_t>(kPlanGen));
}

TEST(BlockShape, ShapesThatDoNotFitThePlanAreRefused) {
  TempDir dir;
  const Plan plan = plan_for(kSetups[1], 1, kPlanPrompt, kPlanGen);
  const std::unique_ptr<Runtime> runtime =
      make_runtime(Backend::kHost, plan, WeightsSource{&weights(), 0}, options_in(dir, ScheduleKind::kZigZag));
  const auto ps = prompts(2, 3, 9);
  auto run = [&](BlockShape shape) { runtime->generate(ps, SamplingConfig{}, std::nullopt, shape); };
  // A longer prompt than the plan's, even with room left in the cache.
  std::string msg = testing::error_of([&] { run({8, 1}); });
  EXPECT_THAT(msg, HasSubstr("prompt_len 8 + gen_len 1 does not fit the runtime's plan (prompt_len 7, "
                             "prompt_len + gen_len 13)"));
  // More positions than the cache holds.
  EXPECT_THAT(testing::error_of([&] { run({7, 7}); }), HasSubstr("does not fit the runtime's plan"));
  EXPECT_THAT(testing::error_of([&] { run({3, 11}); }), HasSubstr("prompt_len 3 + gen_len 11 does not fit"));
  EXPECT_THAT(testing::error_of([&] { run({-1, 3}); }), HasSubstr("must be at least 1"));
  EXPECT_THAT(testing::error_of([&] { run({3, -2}); }), HasSubstr("must be at least 1"));
  // Prompts longer than the shape's prompt_len.
  EXPECT_THAT(testing::error_of([&] { run({2, 3}); }), HasSubstr("prompts must have 1 to 2 tokens"));
  // The runtime still works after the refusals.
  const auto ok = runtime->generate(ps, SamplingConfig{}, std::nullopt, BlockShape{3, 10});
  EXPECT_EQ(ok.tokens, testing::reference_greedy(spec(), weights(), ps, 10));
}

}  // namespace
}  // namespace flexgen
