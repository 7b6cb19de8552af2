#include "engine/model/host_ops.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/parallel.h"
#include "tests/support/random_opt.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::NormalRng;

std::vector<float> random_values(NormalRng& rng, std::int64_t n) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = static_cast<float>(rng.next());
  return v;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(HostOps, LayerNormOfOneTwoThreeFour) {
  // mean 2.5, biased variance 1.25.
  const std::vector<float> x = {1, 2, 3, 4};
  std::vector<float> y(4);
  layer_norm(x, std::vector<float>{1, 1, 1, 1}, std::vector<float>{0, 0, 0, 0}, 1, 4, 0.0, y);
  EXPECT_NEAR(y[0], -1.3416407864998738, 1e-6);  // -1.5 / sqrt(1.25)
  EXPECT_NEAR(y[1], -0.4472135954999579, 1e-6);
  EXPECT_NEAR(y[2], 0.4472135954999579, 1e-6);
  EXPECT_NEAR(y[3], 1.3416407864998738, 1e-6);

  // With gamma, beta and an eps that makes the variance 2.
  layer_norm(x, std::vector<float>{2, 1, 0.5f, -1}, std::vector<float>{1, 0, -1, 0.5f}, 1, 4, 0.75,
             y);
  EXPECT_NEAR(y[0], 2 * -1.0606601717798212 + 1, 1e-6);  // -1.5 / sqrt(2)
  EXPECT_NEAR(y[1], -0.35355339059327373, 1e-6);
  EXPECT_NEAR(y[2], 0.5 * 0.35355339059327373 - 1, 1e-6);
  EXPECT_NEAR(y[3], -1.0606601717798212 + 0.5, 1e-6);
}

TEST(HostOps, LayerNormRowsAreIndependentAndMayBeInPlace) {
  std::vector<float> x = {1, 2, 3, 4, 10, 10, 10, 10};  // second row constant: normalises to 0
  layer_norm(x, std::vector<float>{1, 1, 1, 1}, std::vector<float>{0, 0, 0, 3}, 2, 4, 1e-5, x);
  EXPECT_NEAR(x[0], -1.3416354, 1e-5);
  EXPECT_FLOAT_EQ(x[4], 0.0f);
  EXPECT_FLOAT_EQ(x[7], 3.0f);
}

TEST(HostOps, SoftmaxOfKnownValues) {
  std::vector<float> row = {1, 2, 3};
  softmax(row);
  EXPECT_NEAR(row[0], 0.09003057317038046, 1e-7);
  EXPECT_NEAR(row[1], 0.24472847105479764, 1e-7);
  EXPECT_NEAR(row[2], 0.6652409557748219, 1e-7);

  std::vector<float> masked = {-std::numeric_limits<float>::infinity(), 0.0f, 0.0f};
  softmax(masked);
  EXPECT_EQ(masked[0], 0.0f);
  EXPECT_FLOAT_EQ(masked[1], 0.5f);
  EXPECT_FLOAT_EQ(masked[2], 0.5f);

  std::vector<float> large = {1000.0f, 1001.0f};  // no overflow: 1 / (1 + e), e / (1 + e)
  softmax(large);
  EXPECT_NEAR(large[0], 0.2689414213699951, 1e-7);
  EXPECT_NEAR(large[1], 0.7310585786300049, 1e-7);
}

TEST(HostOps, LinearTwoByThree) {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};      // [2 rows, 3 in]
  const std::vector<float> w = {1, 0, -1, 2, 1, 0.5f};  // [2 out, 3 in]
  const std::vector<float> b = {0.5f, -1};
  std::vector<float> y(4);
  linear(x, 2, 3, w, b, 2, y);
  EXPECT_EQ(y, (std::vector<float>{-1.5f, 4.5f, -1.5f, 15.0f}));
  linear(x, 2, 3, w, {}, 2, y);
  EXPECT_EQ(y, (std::vector<float>{-2.0f, 5.5f, -2.0f, 16.0f}));
}

TEST(HostOps, LinearMatchesDoubleReferenceAcrossTilesAndTails) {
  NormalRng rng(7);
  for (std::int64_t rows : {1, 3, 4, 5, 9}) {
    for (std::int64_t in : {1, 7, 8, 37, 130}) {
      for (std::int64_t out : {1, 19, 33}) {
        const auto x = random_values(rng, rows * in);
        const auto w = random_values(rng, out * in);
        const auto b = random_values(rng, out);
        std::vector<float> y(static_cast<std::size_t>(rows * out));
        linear(x, rows, in, w, b, out, y);
        for (std::int64_t r = 0; r < rows; ++r) {
          for (std::int64_t o = 0; o < out; ++o) {
            double ref = b[static_cast<std::size_t>(o)];
            double magnitude = std::abs(ref);
            for (std::int64_t i = 0; i < in; ++i) {
              const double term = static_cast<double>(x[static_cast<std::size_t>(r * in + i)]) *
                                  w[static_cast<std::size_t>(o * in + i)];
              ref += term;
              magnitude += std::abs(term);
            }
            ASSERT_NEAR(y[static_cast<std::size_t>(r * out + o)], ref, 1e-6 * magnitude + 1e-7)
                << "rows " << rows << " in " << in << " out " << out << " at " << r << "," << o;
          }
        }
      }
    }
  }
}

TEST(HostOps, ResultsDoNotDependOnThreadCount) {
  NormalRng rng(11);
  const std::int64_t rows = 37, in = 130, out = 257;
  const auto x = random_values(rng, rows * in);
  const auto w = random_values(rng, out * in);
  const auto b = random_values(rng, out);
  const std::int64_t ln_rows = 600, ln_cols = 128;
  const auto ln_x = random_values(rng, ln_rows * ln_cols);
  const auto gamma = random_values(rng, ln_cols);
  const auto beta = random_values(rng, ln_cols);
  AttentionShape shape;
  shape.batch = 2;
  shape.new_tokens = 20;
  shape.num_heads = 4;
  shape.head_dim = 16;
  shape.capacity = 32;
  shape.past_len = 10;
  const std::int64_t hidden = shape.num_heads * shape.head_dim;
  const auto q = random_values(rng, shape.batch * shape.new_tokens * hidden);
  const auto key = random_values(rng, shape.batch * shape.capacity * hidden);
  const auto value = random_values(rng, shape.batch * shape.capacity * hidden);
  const std::vector<std::int64_t> pads = {0, 13};

  auto run = [&](int threads) {
    ScopedParallelThreads scope(threads);
    std::vector<float> y(static_cast<std::size_t>(rows * out));
    linear(x, rows, in, w, b, out, y);
    std::vector<float> ln(ln_x.size());
    layer_norm(ln_x, gamma, beta, ln_rows, ln_cols, 1e-5, ln);
    std::vector<float> att(q.size());
    attention(q, key, value, pads, shape, att);
    y.insert(y.end(), ln.begin(), ln.end());
    y.insert(y.end(), att.begin(), att.end());
    return y;
  };
  const std::vector<float> one = run(1);
  EXPECT_TRUE(bitwise_equal(one, run(2)));
  EXPECT_TRUE(bitwise_equal(one, run(4)));
  EXPECT_TRUE(bitwise_equal(one, run(7)));
}

TEST(HostOps, ReluAddScale) {
  std::vector<float> x = {-1.5f, 0.0f, 2.0f};
  relu(x);
  EXPECT_EQ(x, (std::vector<float>{0.0f, 0.0f, 2.0f}));
  add_inplace(x, std::vector<float>{1.0f, -1.0f, 0.5f});
  EXPECT_EQ(x, (std::vector<float>{1.0f, -1.0f, 2.5f}));
  scale_inplace(x, 2.0f);
  EXPECT_EQ(x, (std::vector<float>{2.0f, -2.0f, 5.0f}));
}

TEST(HostOps, EmbeddingCopiesRows) {
  const std::vector<float> table = {0, 1, 10, 11, 20, 21};  // [3, 2]
  std::vector<float> out(6);
  embedding(table, 3, 2, std::vector<std::int32_t>{2, 0, 2}, out);
  EXPECT_EQ(out, (std::vector<float>{20, 21, 0, 1, 20, 21}));
}

TEST(HostOps, EmbeddingRejectsAnIdOutsideTheTable) {
  const std::vector<float> table = {0, 1, 10, 11, 20, 21};
  std::vector<float> out(4);
  for (std::int32_t bad : {3, -1}) {
    try {
      embedding(table, 3, 2, std::vector<std::int32_t>{0, bad}, out);
      FAIL() << "expected flexgen::Error";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("id " + std::to_string(bad)));
      EXPECT_THAT(e.what(), HasSubstr("index 1"));
      EXPECT_THAT(e.what(), HasSubstr("[0, 3)"));
    }
  }
}

TEST(HostOps, AttentionByHand) {
  // One sequence, one head of dimension 2, two new tokens, empty cache before.
  // Query 0 sees key 0 only -> value 0. Query 1 = [1, 0] scores k0 = [0, 0] -> 0 and
  // k1 = [ln 3, 0] -> ln 3, weights 1/4 and 3/4 -> 1/4 [4, 0] + 3/4 [0, 8] = [1, 6].
  AttentionShape shape{1, 2, 1, 2, 3, 0};
  const std::vector<float> q = {5, 5, 1, 0};
  const std::vector<float> key = {0, 0, std::log(3.0f), 0, 99, 99};
  const std::vector<float> value = {4, 0, 0, 8, 99, 99};
  std::vector<float> out(4);
  attention(q, key, value, std::vector<std::int64_t>{0}, shape, out);
  EXPECT_FLOAT_EQ(out[0], 4.0f);
  EXPECT_FLOAT_EQ(out[1], 0.0f);
  EXPECT_NEAR(out[2], 1.0f, 1e-6);
  EXPECT_NEAR(out[3], 6.0f, 1e-6);

  // The same second query in decode (past_len 1, one new token) and with the first position
  // padded: it then sees key 1 only.
  AttentionShape decode{1, 1, 1, 2, 3, 1};
  std::vector<float> one(2);
  attention(std::vector<float>{1, 0}, key, value, std::vector<std::int64_t>{0}, decode, one);
  EXPECT_NEAR(one[0], 1.0f, 1e-6);
  EXPECT_NEAR(one[1], 6.0f, 1e-6);
  attention(std::vector<float>{1, 0}, key, value, std::vector<std::int64_t>{1}, decode, one);
  EXPECT_FLOAT_EQ(one[0], 0.0f);
  EXPECT_FLOAT_EQ(one[1], 8.0f);
}

TEST(HostOps, AttentionMatchesDoubleReferenceWithPaddingAndCache) {
  NormalRng rng(5);
  AttentionShape shape;
  shape.batch = 3;
  shape.new_tokens = 4;
  shape.num_heads = 3;
  shape.head_dim = 5;
  shape.capacity = 9;
  shape.past_len = 3;
  const std::int64_t h = shape.num_heads * shape.head_dim;
  const std::vector<std::int64_t> pads = {0, 2, 5};  // sequence 2: queries at 3, 4 are padding
  const auto q = random_values(rng, shape.batch * shape.new_tokens * h);
  const auto key = random_values(rng, shape.batch * shape.capacity * h);
  const auto value = random_values(rng, shape.batch * shape.capacity * h);
  std::vector<float> out(q.size());
  attention(q, key, value, pads, shape, out);
  auto idx = [](std::int64_t i) { return static_cast<std::size_t>(i); };
  for (std::int64_t b = 0; b < shape.batch; ++b) {
    for (std::int64_t t = 0; t < shape.new_tokens; ++t) {
      const std::int64_t pos = shape.past_len + t;
      for (std::int64_t head = 0; head < shape.num_heads; ++head) {
        std::vector<double> expected(idx(shape.head_dim), 0.0);
        const std::int64_t col = head * shape.head_dim;
        if (pos < pads[idx(b)]) {
          for (std::int64_t c = 0; c < shape.head_dim; ++c) {
            expected[idx(c)] = value[idx((b * shape.capacity + pos) * h + col + c)];
          }
        } else {
          std::vector<double> weights;
          double mx = -1e300;
          for (std::int64_t s = pads[idx(b)]; s <= pos; ++s) {
            double dotp = 0.0;
            for (std::int64_t c = 0; c < shape.head_dim; ++c) {
              dotp += static_cast<double>(q[idx((b * shape.new_tokens + t) * h + col + c)]) *
                      key[idx((b * shape.capacity + s) * h + col + c)];
            }
            weights.push_back(dotp);
            mx = std::max(mx, dotp);
          }
          double sum = 0.0;
          for (double& wt : weights) sum += (wt = std::exp(wt - mx));
          for (std::int64_t s = pads[idx(b)]; s <= pos; ++s) {
            const double wt = weights[idx(s - pads[idx(b)])] / sum;
            for (std::int64_t c = 0; c < shape.head_dim; ++c) {
              expected[idx(c)] += wt * value[idx((b * shape.capacity + s) * h + col + c)];
            }
          }
        }
        for (std::int64_t c = 0; c < shape.head_dim; ++c) {
          const float got = out[idx((b * shape.new_tokens + t) * h + col + c)];
          ASSERT_TRUE(std::isfinite(got));
          ASSERT_NEAR(got, expected[idx(c)], 1e-5)
              << "b " << b << " t " << t << " head " << head << " c " << c;
        }
      }
    }
  }
}

}  // namespace
}  // namespace flexgen
