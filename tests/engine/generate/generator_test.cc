#include "engine/generate/generator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "engine/core/error.h"
#include "engine/model/opt_host_model.h"
#include "tests/support/opt_reference.h"
#include "tests/support/random_opt.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;
using testing::NormalRng;
using testing::random_opt_weights;
using testing::reference_greedy;
using testing::tiny_opt_spec;

class GeneratorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NormalRng rng(42);
    for (std::size_t len : {5u, 2u, 7u}) {
      std::vector<std::int32_t> p;
      for (std::size_t i = 0; i < len; ++i) p.push_back(3 + rng.below(37));
      prompts_.push_back(p);
    }
  }

  ModelSpec spec_ = tiny_opt_spec();
  OptWeights weights_ = random_opt_weights(spec_, 2024, 0.3);
  std::vector<std::vector<std::int32_t>> prompts_;
};

TEST_F(GeneratorTest, GreedyTokensEqualTheReferenceGreedyTokens) {
  const auto expected = reference_greedy(spec_, weights_, prompts_, 8);
  OptHostModel model(spec_, weights_);
  GenerateOptions options;
  options.max_new_tokens = 8;
  const GenerationResult result = generate(model, prompts_, options);
  EXPECT_EQ(result.tokens, expected);
  EXPECT_EQ(result.decode_steps, 7);
  EXPECT_GE(result.prefill_seconds, 0.0);
  EXPECT_GE(result.decode_seconds, 0.0);
  // The tokens are not all the same (the test would be weak on a flat model).
  std::vector<std::int32_t> all;
  for (const auto& t : expected) all.insert(all.end(), t.begin(), t.end());
  std::sort(all.begin(), all.end());
  EXPECT_GT(std::unique(all.begin(), all.end()) - all.begin(), 3);
}

TEST_F(GeneratorTest, ASequenceStopsAfterItsStopTokenAndTheOthersAreUnaffected) {
  const auto full = reference_greedy(spec_, weights_, prompts_, 8);
  const std::int32_t stop = full[0][2];
  std::vector<std::vector<std::int32_t>> expected;
  for (const auto& tokens : full) {
    auto end = std::find(tokens.begin(), tokens.end(), stop);
    expected.emplace_back(tokens.begin(), end == tokens.end() ? end : end + 1);
  }
  ASSERT_LE(expected[0].size(), 3u);
  OptHostModel model(spec_, weights_);
  GenerateOptions options;
  options.max_new_tokens = 8;
  options.stop_token = stop;
  EXPECT_EQ(generate(model, prompts_, options).tokens, expected);
}

// A scripted model: sequence b's logits at step s put their maximum on script[b][s]. Records the
// tokens fed to decode.
class ScriptedLm : public CausalLm {
 public:
  explicit ScriptedLm(std::vector<std::vector<std::int32_t>> script) : script_(std::move(script)) {}
  std::int64_t vocab_size() const override { return 5; }
  Tensor prefill_last(const std::vector<std::vector<std::int32_t>>& prompts,
                      std::int64_t) override {
    ++prefills;
    step_ = 0;
    EXPECT_EQ(prompts.size(), script_.size());
    return logits();
  }
  Tensor decode(const std::vector<std::int32_t>& next_tokens) override {
    fed.push_back(next_tokens);
    ++step_;
    return logits();
  }
  int prefills = 0;
  std::vector<std::vector<std::int32_t>> fed;
  Shape shape_override;

 private:
  Tensor logits() const {
    Tensor t({static_cast<std::int64_t>(script_.size()), 5});
    for (std::size_t b = 0; b < script_.size(); ++b) {
      t[static_cast<std::int64_t>(b) * 5 + script_[b][step_]] = 1.0f;
    }
    if (!shape_override.empty()) t.reshape(shape_override);
    return t;
  }
  std::vector<std::vector<std::int32_t>> script_;
  std::size_t step_ = 0;
};

TEST(Generator, FinishedSequencesAreFedTheirLastTokenUntilAllFinish) {
  ScriptedLm model({{3, 4, 4, 4, 4}, {1, 2, 3, 0, 0}});
  GenerateOptions options;
  options.max_new_tokens = 5;
  options.stop_token = 3;
  const GenerationResult result = generate(model, {{1}, {2}}, options);
  EXPECT_EQ(result.tokens, (std::vector<std::vector<std::int32_t>>{{3}, {1, 2, 3}}));
  EXPECT_EQ(model.fed, (std::vector<std::vector<std::int32_t>>{{3, 1}, {3, 2}}));
  EXPECT_EQ(result.decode_steps, 2);
}

TEST(Generator, ZeroOrOneNewTokens) {
  ScriptedLm model({{2, 4}});
  GenerateOptions options;
  options.max_new_tokens = 0;
  EXPECT_EQ(generate(model, {{1}}, options).tokens, (std::vector<std::vector<std::int32_t>>{{}}));
  EXPECT_EQ(model.prefills, 0);
  options.max_new_tokens = 1;
  const GenerationResult result = generate(model, {{1}}, options);
  EXPECT_EQ(result.tokens, (std::vector<std::vector<std::int32_t>>{{2}}));
  EXPECT_EQ(model.prefills, 1);
  EXPECT_TRUE(model.fed.empty());
  EXPECT_EQ(result.decode_steps, 0);
}

TEST_F(GeneratorTest, SamplingIsReproducibleAndIndependentOfTheRestOfTheBatch) {
  GenerateOptions options;
  options.max_new_tokens = 10;
  options.sampling.do_sample = true;
  options.sampling.temperature = 1.3f;
  options.sampling.top_p = 0.95f;
  options.sampling.seed = 17;
  OptHostModel model(spec_, weights_);
  const auto first = generate(model, prompts_, options).tokens;
  EXPECT_EQ(generate(model, prompts_, options).tokens, first);
  OptHostModel alone(spec_, weights_);
  const auto single = generate(alone, {prompts_[0]}, options).tokens;
  EXPECT_EQ(single[0], first[0]);
  options.sampling.seed = 18;
  EXPECT_NE(generate(model, prompts_, options).tokens, first);
  // Sampled output differs from greedy output somewhere.
  EXPECT_NE(first, reference_greedy(spec_, weights_, prompts_, 10));
}

TEST(Generator, OptionsFromAWorkload) {
  Workload w;
  w.gen_len = 12;
  w.sampling.do_sample = true;
  w.sampling.seed = 5;
  w.stop_token = 2;
  const GenerateOptions options = generate_options(w);
  EXPECT_EQ(options.max_new_tokens, 12);
  EXPECT_TRUE(options.sampling.do_sample);
  EXPECT_EQ(options.sampling.seed, 5u);
  EXPECT_EQ(options.stop_token, 2);
}

TEST(Generator, RejectsBadSettingsAndBadModelOutput) {
  ScriptedLm model({{2, 4}});
  GenerateOptions options;
  options.max_new_tokens = -1;
  EXPECT_THAT(error_of([&] { generate(model, {{1}}, options); }),
              HasSubstr("max_new_tokens -1 is negative"));
  options.max_new_tokens = 2;
  EXPECT_THAT(error_of([&] { generate(model, {}, options); }), HasSubstr("no prompts"));
  options.sampling.do_sample = true;
  options.sampling.temperature = -1.0f;
  EXPECT_THAT(error_of([&] { generate(model, {{1}}, options); }), HasSubstr("temperature -1"));
  options.sampling = SamplingConfig{};
  model.shape_override = {5, 1};
  EXPECT_THAT(error_of([&] { generate(model, {{1}}, options); }),
              HasSubstr("logits of shape [5, 1], expected [1, 5]"));
}

}  // namespace
}  // namespace flexgen
