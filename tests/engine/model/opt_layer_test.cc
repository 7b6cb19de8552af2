#include "engine/model/opt_layer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/core/error.h"
#include "tests/support/random_opt.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;
using testing::NormalRng;
using testing::random_opt_weights;
using testing::tiny_opt_spec;

TEST(BatchState, LeftPaddedPositionsFollowHfOpt) {
  const BatchState state = BatchState::left_padded({5, 2, 7});
  EXPECT_EQ(state.pad_len, (std::vector<std::int64_t>{2, 5, 0}));
  EXPECT_EQ(state.past_len, 0);
  EXPECT_EQ(state.batch_size(), 3);
  // HF: mask 0 0 1 1 1 1 1 -> cumsum*mask-1 = -1 -1 0 1 2 3 4 -> rows 1 1 2 3 4 5 6.
  const std::vector<std::int64_t> rows0 = {1, 1, 2, 3, 4, 5, 6};
  for (std::int64_t p = 0; p < 7; ++p) EXPECT_EQ(state.position_row(0, p), rows0[p]) << p;
  EXPECT_EQ(state.position_row(1, 4), 1);
  EXPECT_EQ(state.position_row(1, 5), 2);
  EXPECT_EQ(state.position_row(2, 0), 2);
  // The first decode token (padded position 7) follows 5, 2 and 7 real tokens.
  EXPECT_EQ(state.position_row(0, 7), 7);
  EXPECT_EQ(state.position_row(1, 7), 4);
  EXPECT_EQ(state.position_row(2, 7), 9);
}

TEST(BatchState, RejectsNoSequencesAndEmptyOnes) {
  EXPECT_THAT(error_of([] { BatchState::left_padded({}); }), HasSubstr("no sequences"));
  EXPECT_THAT(error_of([] {
                BatchState::left_padded({3, 0});
              }),
              HasSubstr("sequence 1 has length 0"));
}

class OptLayerTest : public ::testing::Test {
 protected:
  ModelSpec spec_ = tiny_opt_spec();
  OptWeights weights_ = random_opt_weights(spec_, 1234, 0.3);
};

TEST_F(OptLayerTest, EmbedAddsTokenAndPositionRows) {
  BatchState state = BatchState::left_padded({3, 1});  // pads {0, 2}
  const std::vector<std::int32_t> ids = {5, 6, 7, 1, 1, 9};
  const Tensor hidden = opt_embed(spec_, weights_, ids, state);
  ASSERT_EQ(hidden.shape(), (Shape{2, 3, 16}));
  // Expected position rows, by hand: sequence 0 -> 2 3 4; sequence 1 -> 1 1 2.
  const std::int64_t rows[2][3] = {{2, 3, 4}, {1, 1, 2}};
  for (std::int64_t b = 0; b < 2; ++b) {
    for (std::int64_t t = 0; t < 3; ++t) {
      const std::int64_t id = ids[static_cast<std::size_t>(b * 3 + t)];
      for (std::int64_t c = 0; c < 16; ++c) {
        EXPECT_EQ(hidden[(b * 3 + t) * 16 + c], weights_.embed_tokens[id * 16 + c] +
                                                    weights_.embed_positions[rows[b][t] * 16 + c]);
      }
    }
  }
  // A decode step at padded position 3: positions 3 and 1 -> rows 5 and 3.
  state.past_len = 3;
  const Tensor next = opt_embed(spec_, weights_, std::vector<std::int32_t>{11, 12}, state);
  ASSERT_EQ(next.shape(), (Shape{2, 1, 16}));
  for (std::int64_t c = 0; c < 16; ++c) {
    EXPECT_EQ(next[c], weights_.embed_tokens[11 * 16 + c] + weights_.embed_positions[5 * 16 + c]);
    EXPECT_EQ(next[16 + c],
              weights_.embed_tokens[12 * 16 + c] + weights_.embed_positions[3 * 16 + c]);
  }
}

TEST_F(OptLayerTest, EmbedRejectsBadTokensPositionsAndSizes) {
  BatchState state = BatchState::left_padded({2, 2});
  EXPECT_THAT(error_of([&] {
                opt_embed(spec_, weights_, std::vector<std::int32_t>{1, 2, 40, 3}, state);
              }),
              AllOf(HasSubstr("token id 40"), HasSubstr("sequence 1"), HasSubstr("[0, 40)")));
  EXPECT_THAT(error_of([&] {
                opt_embed(spec_, weights_, std::vector<std::int32_t>{1, 2, 3}, state);
              }),
              HasSubstr("not a positive multiple of the batch size 2"));
  state.past_len = 32;  // position 32 = max_positions
  EXPECT_THAT(error_of([&] {
                opt_embed(spec_, weights_, std::vector<std::int32_t>{1, 2}, state);
              }),
              AllOf(HasSubstr("position 32"), HasSubstr("max_positions 32")));
  state.past_len = 31;  // position 31 is the last one
  EXPECT_NO_THROW(opt_embed(spec_, weights_, std::vector<std::int32_t>{1, 2}, state));
  OptWeights bad = weights_;
  bad.embed_positions = Tensor({32, 16});
  EXPECT_THAT(error_of([&] {
                opt_embed(spec_, bad, std::vector<std::int32_t>{1, 2}, state);
              }),
              AllOf(HasSubstr("embed_positions"), HasSubstr("[32, 16]"), HasSubstr("[34, 16]")));
}

// Hidden states of a padded batch, after the embedding.
Tensor embedded(const ModelSpec& spec, const OptWeights& weights, const BatchState& state,
                std::int64_t tokens, std::uint64_t seed) {
  NormalRng rng(seed);
  std::vector<std::int32_t> ids;
  for (std::int64_t i = 0; i < state.batch_size() * tokens; ++i) ids.push_back(3 + rng.below(37));
  return opt_embed(spec, weights, ids, state);
}

TEST_F(OptLayerTest, WritesKeysAndValuesAtTheirPositions) {
  const BatchState state = BatchState::left_padded({4, 2});
  Tensor hidden = embedded(spec_, weights_, state, 4, 3);
  const Tensor input = hidden;
  LayerKvCache cache = LayerKvCache::allocate(2, 6, 16);
  const OptLayerWeights& l = weights_.layers[0];
  opt_layer_forward(spec_, l, hidden, cache, state);
  EXPECT_EQ(cache.length, 4);
  // Expected k and v rows computed here in double: LN1(x) W^T + b.
  for (std::int64_t b = 0; b < 2; ++b) {
    for (std::int64_t t = 0; t < 4; ++t) {
      const float* x = input.data() + (b * 4 + t) * 16;
      double mean = 0, var = 0;
      for (int c = 0; c < 16; ++c) mean += x[c] / 16.0;
      for (int c = 0; c < 16; ++c) var += (x[c] - mean) * (x[c] - mean) / 16.0;
      std::vector<double> n(16);
      for (int c = 0; c < 16; ++c) {
        n[static_cast<std::size_t>(c)] =
            (x[c] - mean) / std::sqrt(var + 1e-5) * l.attn_ln_weight[c] + l.attn_ln_bias[c];
      }
      for (std::int64_t o = 0; o < 16; ++o) {
        double k = l.k_bias[o], v = l.v_bias[o];
        for (std::int64_t i = 0; i < 16; ++i) {
          k += l.k_weight[o * 16 + i] * n[static_cast<std::size_t>(i)];
          v += l.v_weight[o * 16 + i] * n[static_cast<std::size_t>(i)];
        }
        EXPECT_NEAR(cache.key[(b * 6 + t) * 16 + o], k, 1e-5);
        EXPECT_NEAR(cache.value[(b * 6 + t) * 16 + o], v, 1e-5);
      }
    }
    for (std::int64_t p = 4; p < 6; ++p) {  // untouched beyond the length
      for (std::int64_t c = 0; c < 16; ++c) EXPECT_EQ(cache.key[(b * 6 + p) * 16 + c], 0.0f);
    }
  }
}

TEST_F(OptLayerTest, PrefillAtOnceEqualsOneTokenAtATime) {
  BatchState state = BatchState::left_padded({6, 3, 5});
  const Tensor input = embedded(spec_, weights_, state, 6, 9);
  const OptLayerWeights& l = weights_.layers[1];

  Tensor whole = input;
  LayerKvCache whole_cache = LayerKvCache::allocate(3, 8, 16);
  opt_layer_forward(spec_, l, whole, whole_cache, state);

  LayerKvCache step_cache = LayerKvCache::allocate(3, 8, 16);
  for (std::int64_t t = 0; t < 6; ++t) {
    Tensor one({3, 1, 16});
    for (std::int64_t b = 0; b < 3; ++b) {
      for (std::int64_t c = 0; c < 16; ++c) one[b * 16 + c] = input[(b * 6 + t) * 16 + c];
    }
    state.past_len = t;
    opt_layer_forward(spec_, l, one, step_cache, state);
    for (std::int64_t b = 0; b < 3; ++b) {
      for (std::int64_t c = 0; c < 16; ++c) {
        ASSERT_TRUE(std::isfinite(one[b * 16 + c]));
        EXPECT_NEAR(one[b * 16 + c], whole[(b * 6 + t) * 16 + c], 1e-5)
            << "b " << b << " t " << t << " c " << c;
      }
    }
  }
  EXPECT_EQ(step_cache.length, 6);
  for (std::int64_t i = 0; i < whole_cache.key.numel(); ++i) {
    ASSERT_NEAR(step_cache.key[i], whole_cache.key[i], 1e-6);
    ASSERT_NEAR(step_cache.value[i], whole_cache.value[i], 1e-6);
  }
}

TEST_F(OptLayerTest, RejectsMismatchedCacheStateAndShapes) {
  BatchState state = BatchState::left_padded({3, 3});
  const Tensor input = embedded(spec_, weights_, state, 3, 1);
  const OptLayerWeights& l = weights_.layers[0];
  {
    Tensor h = input;
    LayerKvCache cache = LayerKvCache::allocate(2, 8, 16);
    cache.length = 2;
    EXPECT_THAT(error_of([&] { opt_layer_forward(spec_, l, h, cache, state); }),
                HasSubstr("KV cache holds 2 positions but the batch state says 0"));
  }
  {
    Tensor h = input;
    LayerKvCache cache = LayerKvCache::allocate(2, 2, 16);
    EXPECT_THAT(error_of([&] { opt_layer_forward(spec_, l, h, cache, state); }),
                HasSubstr("capacity 2 is too small for 0 + 3 positions"));
  }
  {
    Tensor h = input;
    LayerKvCache cache = LayerKvCache::allocate(3, 8, 16);
    EXPECT_THAT(
        error_of([&] { opt_layer_forward(spec_, l, h, cache, state); }),
        AllOf(HasSubstr("KV cache"), HasSubstr("[3, 8, 16]"), HasSubstr("[2, capacity, 16]")));
  }
  {
    Tensor h({2, 3, 15});
    LayerKvCache cache = LayerKvCache::allocate(2, 8, 16);
    EXPECT_THAT(error_of([&] { opt_layer_forward(spec_, l, h, cache, state); }),
                AllOf(HasSubstr("hidden states have shape [2, 3, 15]"), HasSubstr("[B, T, 16]")));
  }
  {
    Tensor h({3, 3, 16});
    LayerKvCache cache = LayerKvCache::allocate(2, 8, 16);
    EXPECT_THAT(error_of([&] { opt_layer_forward(spec_, l, h, cache, state); }),
                HasSubstr("hidden states hold 3 sequences, the batch state 2"));
  }
  {
    Tensor h = input;
    LayerKvCache cache = LayerKvCache::allocate(2, 8, 16);
    OptLayerWeights bad = l;
    bad.fc1_weight = Tensor({64, 15});
    EXPECT_THAT(error_of([&] { opt_layer_forward(spec_, bad, h, cache, state); }),
                AllOf(HasSubstr("fc1_weight has shape [64, 15]"), HasSubstr("expected [64, 16]")));
  }
  {
    Tensor h = input;
    LayerKvCache cache = LayerKvCache::allocate(2, 8, 16);
    ModelSpec bad = spec_;
    bad.num_heads = 5;
    EXPECT_THAT(error_of([&] { opt_layer_forward(bad, l, h, cache, state); }),
                HasSubstr("hidden_size 16 is not divisible by num_heads 5"));
  }
  {
    Tensor h = input;
    LayerKvCache cache = LayerKvCache::allocate(2, 8, 16);
    BatchState bad = state;
    bad.pad_len[1] = -1;
    EXPECT_THAT(error_of([&] { opt_layer_forward(spec_, l, h, cache, bad); }),
                HasSubstr("pad_len[1] = -1 is negative"));
  }
  EXPECT_THAT(error_of([] { LayerKvCache::allocate(0, 8, 16); }),
              HasSubstr("KV cache: invalid size [0, 8, 16]"));
}

TEST_F(OptLayerTest, FinalRejectsBadShapes) {
  EXPECT_THAT(error_of([&] {
                opt_final(spec_, weights_, Tensor({2, 16}));
              }),
              HasSubstr("LM head: hidden states have shape [2, 16]"));
  OptWeights bad = weights_;
  bad.final_ln_bias = Tensor({15});
  EXPECT_THAT(error_of([&] {
                opt_final_last(spec_, bad, Tensor({1, 2, 16}));
              }),
              HasSubstr("final_ln_bias has shape [15], expected [16]"));
}

}  // namespace
}  // namespace flexgen
