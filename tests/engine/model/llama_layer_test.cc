// The host LLaMA forward: its kernels against values worked out by hand, the whole model against
// the independent float64 reference (tests/support/llama_reference.h).
#include "engine/model/llama_layer.h"

#include <cmath>
#include <numbers>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "engine/generate/generator.h"
#include "engine/model/host_ops.h"
#include "engine/model/llama_host_model.h"
#include "support/test_util.h"
#include "tests/support/llama_reference.h"
#include "tests/support/random_llama.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;
using testing::NormalRng;
using testing::random_llama_weights;
using testing::reference_left_pad;
using testing::reference_llama_greedy;
using testing::reference_llama_logits;
using testing::tiny_llama_spec;

TEST(LlamaKernels, RmsNormByHand) {
  // Row [3, 4]: mean square 12.5, 1 / sqrt(12.5 + 0.5) = 1 / sqrt(13).
  const std::vector<float> x = {3.0f, 4.0f, -1.0f, 1.0f};
  const std::vector<float> w = {2.0f, 0.5f};
  std::vector<float> y(4);
  rms_norm(x, w, 2, 2, 0.5, y);
  EXPECT_FLOAT_EQ(y[0], static_cast<float>(3.0 / std::sqrt(13.0) * 2.0));
  EXPECT_FLOAT_EQ(y[1], static_cast<float>(4.0 / std::sqrt(13.0) * 0.5));
  // Row [-1, 1]: mean square 1, 1 / sqrt(1.5).
  EXPECT_FLOAT_EQ(y[2], static_cast<float>(-1.0 / std::sqrt(1.5) * 2.0));
  EXPECT_FLOAT_EQ(y[3], static_cast<float>(1.0 / std::sqrt(1.5) * 0.5));
}

TEST(LlamaKernels, SiluMulByHand) {
  std::vector<float> gate = {0.0f, 1.0f, -2.0f};
  const std::vector<float> up = {5.0f, 3.0f, 0.5f};
  silu_mul(gate, up);
  EXPECT_FLOAT_EQ(gate[0], 0.0f);
  EXPECT_FLOAT_EQ(gate[1], static_cast<float>(1.0 / (1.0 + std::exp(-1.0)) * 3.0));
  EXPECT_FLOAT_EQ(gate[2], static_cast<float>(-2.0 / (1.0 + std::exp(2.0)) * 0.5));
}

TEST(LlamaKernels, RopeFrequencies) {
  ModelSpec s = tiny_llama_spec();  // head_dim 8, theta 10000: 10000^(-i/4)
  std::vector<double> f = rope_inv_freq(s);
  ASSERT_EQ(f.size(), 4u);
  EXPECT_DOUBLE_EQ(f[0], 1.0);
  EXPECT_DOUBLE_EQ(f[1], 0.1);
  EXPECT_NEAR(f[2], 0.01, 1e-17);
  EXPECT_NEAR(f[3], 0.001, 1e-18);
  s.rope_scaling = {RopeScalingType::kLinear, 4.0, 1.0, 4.0, 0};
  f = rope_inv_freq(s);
  EXPECT_DOUBLE_EQ(f[1], 0.025);
  // llama3 with original context 64, low 1, high 4, factor 8: wavelengths 2 pi / f are
  // 6.28, 62.8, 628, 6283. High-frequency bound 64 / 4 = 16, low-frequency bound 64 / 1 = 64.
  // f0: 6.28 < 16, unchanged. f1: 62.8 in [16, 64]: smooth = (64 / 62.83 - 1) / 3 = 0.006198...,
  // f = (1 - smooth) * 0.1 / 8 + smooth * 0.1. f2, f3: beyond 64, divided by 8.
  s.rope_scaling = {RopeScalingType::kLlama3, 8.0, 1.0, 4.0, 64};
  f = rope_inv_freq(s);
  EXPECT_DOUBLE_EQ(f[0], 1.0);
  const double smooth = (64.0 / (2.0 * std::numbers::pi / 0.1) - 1.0) / 3.0;
  EXPECT_NEAR(smooth, 0.0062, 1e-4);
  EXPECT_NEAR(f[1], (1.0 - smooth) * 0.0125 + smooth * 0.1, 1e-15);
  EXPECT_NEAR(f[2], 0.00125, 1e-17);
  EXPECT_NEAR(f[3], 0.000125, 1e-18);
}

TEST(LlamaKernels, RotaryByHand) {
  // One sequence padded by 1, head_dim 4, 2 heads, tokens at padded positions 1 and 2: rotary
  // positions 0 (no rotation) and 1. Pair (x0, x2) turns by 1 * f0 = 1 rad, (x1, x3) by f1.
  BatchState state;
  state.pad_len = {1};
  state.past_len = 1;
  const std::vector<double> f = {1.0, 0.01};
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8,    // token at rotary position 0
                          1, 2, 3, 4, 5, 6, 7, 8};   // position 1
  apply_rotary(x, 1, 2, 2, 4, f, state);
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(x[static_cast<std::size_t>(i)], static_cast<float>(i + 1));
  EXPECT_FLOAT_EQ(x[8], static_cast<float>(1 * std::cos(1.0) - 3 * std::sin(1.0)));
  EXPECT_FLOAT_EQ(x[10], static_cast<float>(3 * std::cos(1.0) + 1 * std::sin(1.0)));
  EXPECT_FLOAT_EQ(x[9], static_cast<float>(2 * std::cos(0.01) - 4 * std::sin(0.01)));
  EXPECT_FLOAT_EQ(x[11], static_cast<float>(4 * std::cos(0.01) + 2 * std::sin(0.01)));
  EXPECT_FLOAT_EQ(x[12], static_cast<float>(5 * std::cos(1.0) - 7 * std::sin(1.0)));
  EXPECT_FLOAT_EQ(x[15], static_cast<float>(8 * std::cos(0.01) + 6 * std::sin(0.01)));
}

// Grouped-query attention equals multi-head attention over key/value heads repeated per group.
TEST(LlamaKernels, GroupedAttentionEqualsRepeatedHeads) {
  NormalRng rng(7);
  const std::int64_t B = 2, T = 3, cap = 5, past = 2, H = 4, K = 2, d = 8;
  std::vector<float> q(static_cast<std::size_t>(B * T * H * d)), key(static_cast<std::size_t>(B * cap * K * d)),
      value(key.size());
  for (float& v : q) v = static_cast<float>(rng.next());
  for (float& v : key) v = static_cast<float>(rng.next());
  for (float& v : value) v = static_cast<float>(rng.next());
  std::vector<float> key_rep(static_cast<std::size_t>(B * cap * H * d)), value_rep(key_rep.size());
  for (std::int64_t r = 0; r < B * cap; ++r) {
    for (std::int64_t h = 0; h < H; ++h) {
      for (std::int64_t c = 0; c < d; ++c) {
        key_rep[static_cast<std::size_t>((r * H + h) * d + c)] = key[static_cast<std::size_t>((r * K + h / 2) * d + c)];
        value_rep[static_cast<std::size_t>((r * H + h) * d + c)] =
            value[static_cast<std::size_t>((r * K + h / 2) * d + c)];
      }
    }
  }
  const std::vector<std::int64_t> pad = {0, 3};
  AttentionShape shape{B, T, H, d, cap, past, K};
  std::vector<float> grouped(q.size()), repeated(q.size());
  attention(q, key, value, pad, shape, grouped);
  shape.num_kv_heads = 0;
  attention(q, key_rep, value_rep, pad, shape, repeated);
  EXPECT_EQ(grouped, repeated);
}

std::vector<std::int32_t> random_tokens(NormalRng& rng, std::size_t n) {
  std::vector<std::int32_t> ids;
  for (std::size_t i = 0; i < n; ++i) ids.push_back(3 + rng.below(37));
  return ids;
}

double relative_error(const float* got, const std::vector<double>& ref) {
  double diff = 0.0, norm = 0.0;
  for (std::size_t v = 0; v < ref.size(); ++v) {
    diff += (got[v] - ref[v]) * (got[v] - ref[v]);
    norm += ref[v] * ref[v];
  }
  return std::sqrt(diff / norm);
}

class LlamaHostModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NormalRng rng(42);
    for (std::size_t len : {5u, 2u, 7u}) prompts_.push_back(random_tokens(rng, len));
  }

  // Prefill logits of a padded batch against the float64 reference, at every real position.
  void check_prefill(const ModelSpec& spec, const LlamaWeights& weights) {
    LlamaHostModel model(spec, weights);
    const Tensor logits = model.prefill(prompts_, 4);
    ASSERT_EQ(logits.shape(), (Shape{3, 7, 40}));
    for (std::int64_t i = 0; i < logits.numel(); ++i) ASSERT_TRUE(std::isfinite(logits[i]));
    std::vector<std::vector<std::int32_t>> ids;
    std::vector<std::vector<int>> mask;
    reference_left_pad(spec, prompts_, ids, mask);
    const auto ref = reference_llama_logits(spec, weights, ids, mask);
    double spread = 0.0;
    int rows = 0;
    for (std::int64_t b = 0; b < 3; ++b) {
      for (std::int64_t t = 0; t < 7; ++t) {
        if (mask[static_cast<std::size_t>(b)][static_cast<std::size_t>(t)] == 0) continue;
        const auto& row = ref[static_cast<std::size_t>(b)][static_cast<std::size_t>(t)];
        EXPECT_LT(relative_error(logits.data() + (b * 7 + t) * 40, row), 1e-5) << "b " << b << " t " << t;
        spread = std::max(spread, *std::max_element(row.begin(), row.end()) - *std::min_element(row.begin(), row.end()));
        ++rows;
      }
    }
    EXPECT_EQ(rows, 14);
    EXPECT_GT(spread, 1.0);  // far from flat logits
  }

  ModelSpec spec_ = tiny_llama_spec();
  LlamaWeights weights_ = random_llama_weights(spec_, 2024, 0.3);
  std::vector<std::vector<std::int32_t>> prompts_;
};

TEST_F(LlamaHostModelTest, PrefillOfAPaddedBatchMatchesTheReference) { check_prefill(spec_, weights_); }

TEST_F(LlamaHostModelTest, TiedEmbeddingsAndMultiHeadAttentionMatchTheReference) {
  ModelSpec spec = spec_;
  spec.tie_word_embeddings = true;
  spec.num_kv_heads = 4;  // plain multi-head attention
  check_prefill(spec, random_llama_weights(spec, 5, 0.3));
  spec.num_kv_heads = 1;  // multi-query attention
  check_prefill(spec, random_llama_weights(spec, 6, 0.3));
}

TEST_F(LlamaHostModelTest, RopeScalingMatchesTheReference) {
  ModelSpec spec = spec_;
  spec.rope_theta = 500.0;
  spec.rope_scaling = {RopeScalingType::kLinear, 2.5, 1.0, 4.0, 0};
  check_prefill(spec, weights_);
  spec.rope_scaling = {RopeScalingType::kLlama3, 8.0, 1.0, 4.0, 64};
  check_prefill(spec, weights_);
}

TEST_F(LlamaHostModelTest, GreedyDecodingMatchesTheReference) {
  LlamaHostModel model(spec_, weights_);
  GenerateOptions options;
  options.max_new_tokens = 6;
  const GenerationResult result = generate(model, prompts_, options);
  EXPECT_EQ(result.tokens, reference_llama_greedy(spec_, weights_, prompts_, 6));
}

TEST_F(LlamaHostModelTest, ASequenceAloneEqualsItselfInAPaddedBatch) {
  LlamaHostModel batch(spec_, weights_);
  const Tensor all = batch.prefill_last(prompts_, 3);
  const Tensor step = batch.decode({5, 6, 7});
  for (std::size_t b = 0; b < prompts_.size(); ++b) {
    LlamaHostModel alone(spec_, weights_);
    const Tensor one = alone.prefill_last({prompts_[b]}, 3);
    const Tensor one_step = alone.decode({static_cast<std::int32_t>(5 + b)});
    for (std::int64_t v = 0; v < 40; ++v) {
      EXPECT_EQ(one[v], all[static_cast<std::int64_t>(b) * 40 + v]);
      EXPECT_EQ(one_step[v], step[static_cast<std::int64_t>(b) * 40 + v]);
    }
  }
}

TEST_F(LlamaHostModelTest, RefusesBadInput) {
  LlamaHostModel model(spec_, weights_);
  EXPECT_THAT(error_of([&] { model.prefill({{1, 99}}, 1); }), HasSubstr("token id 99"));
  EXPECT_THAT(error_of([&] { model.prefill({std::vector<std::int32_t>(60, 3)}, 10); }),
              HasSubstr("beyond max_positions 64"));
  LlamaWeights bad = weights_;
  bad.layers[1].k_weight = Tensor({32, 32});
  EXPECT_THAT(error_of([&] { LlamaHostModel m(spec_, bad); }), HasSubstr("layer 1 weights: k_weight has shape [32, 32], expected [16, 32]"));
  ModelSpec opt = spec_;
  opt.family = ModelFamily::kOpt;
  EXPECT_THAT(error_of([&] { LlamaHostModel m(opt, weights_); }), HasSubstr("is not a LLaMA model"));
}

}  // namespace
}  // namespace flexgen
