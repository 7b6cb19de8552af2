// Runs too large for the engine's index types are refused by make_plan with one line naming the
// product, its factors and the limit; products are worked out by hand below.
#include "engine/runtime/run_limits.h"

#include <cstdint>
#include <limits>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "engine/runtime/memory_plan.h"
#include "engine/runtime/plan.h"
#include "support/random_opt.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;

Plan plan(const ModelSpec& spec, std::int64_t gbs, std::int64_t batches, std::int64_t prompt, std::int64_t gen) {
  PolicyConfig c;
  c.gpu_batch_size = gbs;
  c.num_gpu_batches = batches;
  Workload w;
  w.prompt_len = prompt;
  w.gen_len = gen;
  w.num_sequences = gbs * batches;
  return make_plan(spec, w, Policy::create(c));
}

TEST(RunLimits, TokensPerGpuBatchBeyond32BitsAreRefused) {
  const ModelSpec opt125 = ModelSpec::from_name("opt-125m");
  // 2^21 x 1024 = 2^31 = 2147483648 > 2^31 - 1.
  EXPECT_THAT(error_of([&] { plan(opt125, 2097152, 1, 1024, 8); }),
              HasSubstr("invalid run: gpu batch size 2097152 x prompt length 1024 = 2147483648 tokens per gpu "
                        "batch, more than the kernels' 32-bit row index allows (2147483647)"));
  // One sequence fewer: (2^21 - 1) x 1024 = 2147482624 fits.
  const Plan ok = plan(opt125, 2097151, 1, 1024, 8);
  EXPECT_EQ(ok.policy.gpu_batch_size() * ok.workload.prompt_len, 2147482624);
  // 2^61 x 8 overflows 64 bits: said so, not wrapped.
  EXPECT_THAT(error_of([&] { plan(opt125, std::int64_t{1} << 61, 1, 8, 8); }),
              HasSubstr("= more than 2^63 tokens per gpu batch"));
}

TEST(RunLimits, AttentionUnitsBeyond32BitsAreRefused) {
  const ModelSpec opt175 = ModelSpec::from_name("opt-175b");
  // 2^25 x 96 heads = 3221225472 > 2^31 - 1 (while 2^25 x 1 token fits).
  EXPECT_THAT(error_of([&] { plan(opt175, 33554432, 1, 1, 8); }),
              HasSubstr("gpu batch size 33554432 x 96 heads = 3221225472 attention units per gpu batch"));
}

TEST(RunLimits, PromptsBeyondThePrefillKernelsGridAreRefused) {
  ModelSpec spec = ModelSpec::from_name("opt-125m");
  spec.max_positions = std::int64_t{1} << 22;
  // 65535 blocks x 32 queries = 2097120 tokens.
  EXPECT_THAT(error_of([&] { plan(spec, 1, 1, 2097121, 1); }),
              HasSubstr("prompt length 2097121 is more than the prefill attention kernel's launch allows "
                        "(2097120 tokens)"));
}

TEST(RunLimits, SchedulesBeyond32BitTaskIdsAreRefused) {
  const ModelSpec opt175 = ModelSpec::from_name("opt-175b");
  // 2000 tokens x 98 schedule layers x (16 x 700 + 2) = 196000 x 11202 = 2195592000 > 2^31 - 1.
  EXPECT_THAT(error_of([&] { plan(opt175, 1, 700, 8, 2000); }),
              HasSubstr("2000 tokens x 98 schedule layers x 700 gpu batches need up to 2195592000 schedule tasks"));
}

TEST(RunLimits, RunsBeyond64BitByteCountsAreRefused) {
  const ModelSpec opt175 = ModelSpec::from_name("opt-175b");
  // Cache alone: 2 x 96 layers x (65536 + 2) batches x 2^20 x 96 units x 16 positions x 128 x 4 B
  // = 1.04e22 B, beyond 2^62 = 4.6e18.
  EXPECT_THAT(error_of([&] { plan(opt175, std::int64_t{1} << 20, 65536, 8, 8); }),
              HasSubstr("of weights, cache and activations, beyond 64-bit byte counts (4.0 EiB)"));
}

TEST(RunLimits, PromptsLongerThanThePositionsAreRefusedWithoutOverflow) {
  const ModelSpec tiny = testing::tiny_opt_spec();  // 32 positions
  EXPECT_THAT(error_of([&] { plan(tiny, 1, 1, 33, 1); }),
              HasSubstr("invalid run: the prompt has 33 tokens, more than the 32 positions of model tiny-opt"));
  EXPECT_THAT(error_of([&] { plan(tiny, 1, 1, 8, 25); }),
              HasSubstr("invalid run: prompt 8 + generation 25 tokens exceed the model's 32 positions"));
  // prompt + generation would overflow 64 bits: still the positions message.
  const std::int64_t huge = std::numeric_limits<std::int64_t>::max();
  EXPECT_THAT(error_of([&] { plan(tiny, 1, 1, 8, huge); }),
              HasSubstr("prompt 8 + generation 9223372036854775807 tokens exceed the model's 32 positions"));
  EXPECT_NO_THROW(plan(tiny, 1, 1, 8, 24));
}

TEST(RunLimits, PaperScaleRunsAreAccepted) {
  // FlexGen's largest: opt-175b, gpu batch 32 x 8 batches, prompt 512 + 32 (and its memory plan).
  const Plan p = plan(ModelSpec::from_name("opt-175b"), 32, 8, 512, 32);
  EXPECT_GT(plan_memory(p).total[Tier::kGpu], 0);
}

}  // namespace
}  // namespace flexgen
