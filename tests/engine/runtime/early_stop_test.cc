// Early finish: EarlyStop's bookkeeping by hand, and the host runtime skipping the rest of a batch
// whose sequences all produced the stop token, with the tokens of the full run (truncated after
// the stop token) on every schedule.
#include "engine/runtime/early_stop.h"

#include <algorithm>

#include <gtest/gtest.h>

#include "engine/runtime/host_runtime.h"
#include "support/random_opt.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

Task task(std::int32_t token, std::int32_t batch) {
  Task t;
  t.token = token;
  t.batch = batch;
  return t;
}

TEST(EarlyStop, SkipsABatchAfterAllItsSequencesStopped) {
  EarlyStop e(2, 7);
  e.observe(0, 1, {{3, 4}, {7, 5}});  // sequence 0 not finished
  EXPECT_FALSE(e.skip(task(2, 0)));
  e.observe(0, 2, {{3, 4, 7}, {7, 5, 6}});  // both have produced 7 by step 2
  EXPECT_FALSE(e.skip(task(2, 0)));
  EXPECT_TRUE(e.skip(task(3, 0)));
  EXPECT_FALSE(e.skip(task(3, 1)));
  EXPECT_FALSE(e.skip(task(3, -1)));  // weights: batch 1 still runs
  e.observe(1, 4, {{7}, {7}});
  EXPECT_TRUE(e.skip(task(5, -1)));
  EXPECT_FALSE(e.skip(task(4, -1)));
  EXPECT_EQ(e.steps_run(0, 10), 3);
  EXPECT_EQ(e.steps_run(1, 10), 5);
  EXPECT_EQ(e.steps_run(1, 4), 4);
}

TEST(EarlyStop, WithoutAStopTokenNothingIsSkipped) {
  EarlyStop e(1, std::nullopt);
  e.observe(0, 0, {{1}});
  EXPECT_FALSE(e.skip(task(5, 0)));
  EXPECT_EQ(e.steps_run(0, 6), 6);
}

TEST(EarlyStop, TheHostRuntimeSkipsFinishedBatchesAndKeepsTheTokens) {
  const ModelSpec spec = testing::tiny_opt_spec();
  const OptWeights w = testing::random_opt_weights(spec, 4242, 0.3);
  const std::vector<std::vector<std::int32_t>> prompts = {{2, 11, 5}, {2, 30, 8, 9}};
  constexpr std::int64_t kGen = 8;
  for (bool zigzag : {true, false}) {
    for (bool overlap : {true, false}) {
      SCOPED_TRACE(::testing::Message() << (zigzag ? "zig-zag" : "row-by-row") << (overlap ? " overlap" : " serial"));
      PolicyConfig c;
      c.gpu_batch_size = 1;
      c.num_gpu_batches = 2;
      c.overlap = overlap;
      c.set_percent({0, 100, 0, 100, 100, 0});
      Workload wl;
      wl.prompt_len = 4;
      wl.gen_len = kGen;
      wl.num_sequences = 2;
      const Plan plan = make_plan(spec, wl, Policy::create(c));
      testing::TempDir dir;
      RuntimeOptions o;
      o.budgets[Tier::kGpu] = o.budgets[Tier::kCpu] = o.budgets[Tier::kDisk] = Bytes{1} << 40;
      o.offload_dir = dir.path();
      o.schedule = zigzag ? ScheduleKind::kZigZag : ScheduleKind::kRowByRow;
      HostRuntime runtime(plan, w, o);
      const RunReport full = runtime.generate(prompts, SamplingConfig{}, std::nullopt);
      ASSERT_EQ(full.tasks_skipped, 0);
      ASSERT_EQ(full.generated_tokens, 2 * kGen);
      // Stop at sequence 0's second token: batch 0 finishes at step 1 at the latest.
      const std::int32_t stop = full.tokens[0][1];
      std::vector<std::vector<std::int32_t>> expected = full.tokens;
      std::int64_t computed = 0;
      for (auto& seq : expected) {
        const auto it = std::find(seq.begin(), seq.end(), stop);
        if (it != seq.end()) seq.erase(it + 1, seq.end());
        computed += static_cast<std::int64_t>(seq.size());  // one sequence per gpu batch: its steps
      }
      const RunReport early = runtime.generate(prompts, SamplingConfig{}, stop);
      EXPECT_EQ(early.tokens, expected);
      EXPECT_GT(early.tasks_skipped, 0);
      EXPECT_EQ(early.generated_tokens, computed);
      EXPECT_LT(early.moved.h2d, full.moved.h2d) << "a finished batch loads nothing more";
    }
  }
}

}  // namespace
}  // namespace flexgen
