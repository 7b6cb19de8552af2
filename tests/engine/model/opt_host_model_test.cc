#include "engine/model/opt_host_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/parallel.h"
#include "tests/support/opt_reference.h"
#include "tests/support/random_opt.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;
using testing::NormalRng;
using testing::random_opt_weights;
using testing::reference_left_pad;
using testing::reference_opt_logits;
using testing::tiny_opt_spec;

std::vector<std::int32_t> random_tokens(NormalRng& rng, std::size_t n) {
  std::vector<std::int32_t> ids;
  for (std::size_t i = 0; i < n; ++i) ids.push_back(3 + rng.below(37));
  return ids;
}

// ||got - ref|| / ||ref|| over one row of `n` logits.
double relative_error(const float* got, const std::vector<double>& ref) {
  double diff = 0.0, norm = 0.0;
  for (std::size_t v = 0; v < ref.size(); ++v) {
    diff += (got[v] - ref[v]) * (got[v] - ref[v]);
    norm += ref[v] * ref[v];
  }
  return std::sqrt(diff / norm);
}

bool all_finite(const Tensor& t) {
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    if (!std::isfinite(t[i])) return false;
  }
  return true;
}

class OptHostModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NormalRng rng(42);
    for (std::size_t len : {5u, 2u, 7u}) prompts_.push_back(random_tokens(rng, len));
  }

  ModelSpec spec_ = tiny_opt_spec();
  OptWeights weights_ = random_opt_weights(spec_, 2024, 0.3);
  std::vector<std::vector<std::int32_t>> prompts_;
};

TEST_F(OptHostModelTest, PrefillOfAPaddedBatchMatchesTheReference) {
  OptHostModel model(spec_, weights_);
  const Tensor logits = model.prefill(prompts_, 4);
  ASSERT_EQ(logits.shape(), (Shape{3, 7, 40}));
  EXPECT_TRUE(all_finite(logits));  // padding rows included
  EXPECT_EQ(model.state().pad_len, (std::vector<std::int64_t>{2, 5, 0}));
  EXPECT_EQ(model.state().past_len, 7);
  EXPECT_EQ(model.capacity(), 11);

  std::vector<std::vector<std::int32_t>> ids;
  std::vector<std::vector<int>> mask;
  reference_left_pad(spec_, prompts_, ids, mask);
  const auto ref = reference_opt_logits(spec_, weights_, ids, mask);
  double spread = 0.0;  // logits are far from flat
  for (std::int64_t b = 0; b < 3; ++b) {
    for (std::int64_t t = 0; t < 7; ++t) {
      if (mask[static_cast<std::size_t>(b)][static_cast<std::size_t>(t)] == 0) continue;
      const auto& row = ref[static_cast<std::size_t>(b)][static_cast<std::size_t>(t)];
      EXPECT_LT(relative_error(logits.data() + (b * 7 + t) * 40, row), 1e-4)
          << "sequence " << b << " position " << t;
      spread = std::max(spread, *std::max_element(row.begin(), row.end()) -
                                    *std::min_element(row.begin(), row.end()));
    }
  }
  EXPECT_GT(spread, 2.0);
}

TEST_F(OptHostModelTest, DecodeStepsMatchTheReferenceRecomputedFromScratch) {
  OptHostModel model(spec_, weights_);
  model.prefill(prompts_, 7);
  NormalRng rng(77);
  std::vector<std::vector<std::int32_t>> sequences = prompts_;
  for (int step = 0; step < 6; ++step) {
    const std::vector<std::int32_t> next = random_tokens(rng, 3);
    const Tensor logits = model.decode(next);
    ASSERT_EQ(logits.shape(), (Shape{3, 40}));
    ASSERT_TRUE(all_finite(logits));
    for (std::size_t b = 0; b < 3; ++b) sequences[b].push_back(next[b]);
    std::vector<std::vector<std::int32_t>> ids;
    std::vector<std::vector<int>> mask;
    reference_left_pad(spec_, sequences, ids, mask);
    const auto ref = reference_opt_logits(spec_, weights_, ids, mask);
    for (std::int64_t b = 0; b < 3; ++b) {
      EXPECT_LT(relative_error(logits.data() + b * 40, ref[static_cast<std::size_t>(b)].back()),
                1e-4)
          << "step " << step << " sequence " << b;
    }
  }
  EXPECT_EQ(model.state().past_len, 13);
}

TEST_F(OptHostModelTest, ASingleSequenceMatchesItsRowsInAPaddedBatch) {
  OptHostModel batch(spec_, weights_);
  const Tensor batch_logits = batch.prefill(prompts_, 3);
  OptHostModel single(spec_, weights_);
  const Tensor single_logits = single.prefill({prompts_[0]}, 3);
  ASSERT_EQ(single_logits.shape(), (Shape{1, 5, 40}));
  for (std::int64_t t = 0; t < 5; ++t) {  // sequence 0 is padded by 2 in the batch
    for (std::int64_t v = 0; v < 40; ++v) {
      EXPECT_NEAR(single_logits[t * 40 + v], batch_logits[(t + 2) * 40 + v], 1e-5);
    }
  }
  for (std::int32_t token : {7, 30}) {
    const Tensor b = batch.decode({token, 4, 5});
    const Tensor s = single.decode({token});
    for (std::int64_t v = 0; v < 40; ++v) EXPECT_NEAR(s[v], b[v], 1e-5);
  }
}

TEST_F(OptHostModelTest, PrefillLastEqualsTheLastRowOfPrefill) {
  OptHostModel model(spec_, weights_);
  const Tensor all = model.prefill(prompts_, 2);
  const Tensor last = model.prefill_last(prompts_, 2);
  ASSERT_EQ(last.shape(), (Shape{3, 40}));
  for (std::int64_t b = 0; b < 3; ++b) {
    for (std::int64_t v = 0; v < 40; ++v) EXPECT_EQ(last[b * 40 + v], all[(b * 7 + 6) * 40 + v]);
  }
}

TEST_F(OptHostModelTest, ResultsDoNotDependOnThreadCount) {
  // Large enough that the kernels split their work across threads.
  ModelSpec spec = spec_;
  spec.num_layers = 1;
  spec.hidden_size = 64;
  spec.ffn_dim = 256;
  spec.vocab_size = 300;
  const OptWeights weights = random_opt_weights(spec, 5, 0.1);
  NormalRng rng(3);
  std::vector<std::vector<std::int32_t>> prompts;
  for (std::size_t len : {20u, 11u, 17u}) prompts.push_back(random_tokens(rng, len));
  auto run = [&](int threads) {
    ScopedParallelThreads scope(threads);
    OptHostModel model(spec, weights);
    Tensor a = model.prefill(prompts, 3);
    Tensor b = model.decode({5, 6, 7});
    std::vector<float> out(a.span().begin(), a.span().end());
    out.insert(out.end(), b.span().begin(), b.span().end());
    return out;
  };
  const std::vector<float> one = run(1);
  const std::vector<float> three = run(3);
  ASSERT_EQ(one.size(), three.size());
  EXPECT_EQ(std::memcmp(one.data(), three.data(), one.size() * sizeof(float)), 0);
}

TEST_F(OptHostModelTest, RejectsBadPromptsAndDecodeCalls) {
  OptHostModel model(spec_, weights_);
  EXPECT_THAT(error_of([&] { model.decode({1, 2, 3}); }), HasSubstr("call prefill first"));
  EXPECT_THAT(error_of([&] { model.prefill({}, 2); }), HasSubstr("no prompts"));
  EXPECT_THAT(error_of([&] { model.prefill({{3, 4}, {}}, 2); }), HasSubstr("prompt 1 is empty"));
  EXPECT_THAT(error_of([&] {
                model.prefill({{3, 4}}, -1);
              }),
              HasSubstr("max_new_tokens -1 is negative"));
  EXPECT_THAT(error_of([&] { model.prefill({{3, 40}}, 1); }), HasSubstr("token id 40"));
  EXPECT_THAT(error_of([&] { model.prefill({std::vector<std::int32_t>(30, 3)}, 4); }),
              AllOf(HasSubstr("33 positions"), HasSubstr("max_positions 32")));
  EXPECT_NO_THROW(model.prefill({std::vector<std::int32_t>(30, 3)}, 3));  // 32 positions fit
  EXPECT_THAT(error_of([&] {
                model.decode({1, 2});
              }),
              HasSubstr("got 2 tokens for a batch of 1 sequences"));
  model.prefill(prompts_, 2);
  EXPECT_NO_THROW(model.decode({3, 4, 5}));
  EXPECT_NO_THROW(model.decode({3, 4, 5}));
  EXPECT_THAT(error_of([&] {
                model.decode({3, 4, 5});
              }),
              AllOf(HasSubstr("all 9 positions"), HasSubstr("larger max_new_tokens")));
  EXPECT_THAT(error_of([&] { model.decode({3, 4, -5}); }), HasSubstr("positions"));
}

TEST_F(OptHostModelTest, RejectsWeightsThatDoNotMatchTheSpec) {
  OptWeights bad = weights_;
  bad.layers[1].q_bias = Tensor({17});
  EXPECT_THAT(error_of([&] { OptHostModel m(spec_, bad); }),
              AllOf(HasSubstr("layer 1"), HasSubstr("q_bias has shape [17], expected [16]")));
  bad = weights_;
  bad.layers.pop_back();
  EXPECT_THAT(error_of([&] { OptHostModel m(spec_, bad); }), HasSubstr("1 layers, the spec has 2"));
  bad = weights_;
  bad.embed_tokens = Tensor({41, 16});
  EXPECT_THAT(error_of([&] { OptHostModel m(spec_, bad); }),
              HasSubstr("embed_tokens has shape [41, 16], expected [40, 16]"));
  ModelSpec bad_spec = spec_;
  bad_spec.vocab_size = 0;
  EXPECT_THAT(error_of([&] { OptHostModel m(bad_spec, weights_); }),
              HasSubstr("vocab_size 0 must be positive"));
}

}  // namespace
}  // namespace flexgen
