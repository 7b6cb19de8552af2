// Unit attention (the runtime's attention on either side of the link) against float64 references
// written here.
#include "engine/runtime/unit_attention.h"

#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace flexgen {
namespace {

std::vector<float> random_rows(std::mt19937_64& rng, std::int64_t n) {
  std::normal_distribution<float> dist(0.0f, 1.0f);  // values only; the check is tolerance-based
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// softmax over the given positions of q.k (double), combined with values.
std::vector<double> reference(const float* q, const std::vector<float>& k, const std::vector<float>& v,
                              std::int64_t d, const std::vector<std::int64_t>& positions) {
  std::vector<double> scores;
  for (std::int64_t s : positions) {
    double dot = 0;
    for (std::int64_t c = 0; c < d; ++c) dot += static_cast<double>(q[c]) * k[static_cast<std::size_t>(s * d + c)];
    scores.push_back(dot);
  }
  double mx = -1e300;
  for (double s : scores) mx = std::max(mx, s);
  double sum = 0;
  for (double& s : scores) sum += (s = std::exp(s - mx));
  std::vector<double> out(static_cast<std::size_t>(d), 0.0);
  for (std::size_t i = 0; i < positions.size(); ++i) {
    for (std::int64_t c = 0; c < d; ++c) {
      out[static_cast<std::size_t>(c)] += scores[i] / sum * v[static_cast<std::size_t>(positions[i] * d + c)];
    }
  }
  return out;
}

TEST(UnitAttention, CausalWithLeftPaddingMatchesFloat64) {
  std::mt19937_64 rng(3);
  const std::int64_t d = 24, past = 9, T = 4, pad = 3;
  const auto k = random_rows(rng, (past + T) * d), v = random_rows(rng, (past + T) * d);
  const auto q = random_rows(rng, T * d);
  std::vector<float> out(static_cast<std::size_t>(T * d), std::nanf(""));
  unit_attention(q.data(), d, k.data(), v.data(), d, T, past, pad, out.data(), d);
  for (std::int64_t t = 0; t < T; ++t) {
    std::vector<std::int64_t> positions;
    for (std::int64_t s = pad; s <= past + t; ++s) positions.push_back(s);
    const auto ref = reference(q.data() + t * d, k, v, d, positions);
    for (std::int64_t c = 0; c < d; ++c) EXPECT_NEAR(out[static_cast<std::size_t>(t * d + c)], ref[static_cast<std::size_t>(c)], 1e-5);
  }
}

TEST(UnitAttention, APaddingQueryReturnsItsOwnValueRow) {
  std::mt19937_64 rng(4);
  const std::int64_t d = 8, T = 3, pad = 2;
  const auto k = random_rows(rng, T * d), v = random_rows(rng, T * d), q = random_rows(rng, T * d);
  std::vector<float> out(static_cast<std::size_t>(T * d));
  unit_attention(q.data(), d, k.data(), v.data(), d, T, 0, pad, out.data(), d);
  for (std::int64_t t = 0; t < pad; ++t) {
    for (std::int64_t c = 0; c < d; ++c) EXPECT_EQ(out[static_cast<std::size_t>(t * d + c)], v[static_cast<std::size_t>(t * d + c)]);
  }
}

TEST(UnitAttention, TopKSelectionByHand) {
  // head_dim 1, q = 1: scores are the keys. Positions 0, 1 are padding.
  const std::vector<float> keys = {9, 9, 0.5f, 3, -1, 3, 2, 7};
  const float q = 1;
  EXPECT_EQ(select_top_k(&q, keys.data(), 1, 7, 2, 3), (std::vector<std::int64_t>{3, 5, 6}));
  EXPECT_EQ(select_top_k(&q, keys.data(), 1, 7, 2, 1), (std::vector<std::int64_t>{3}));  // tie: lower position
  // Asking for more than the real positions fills up with padding positions, which sparse
  // attention then skips.
  EXPECT_EQ(select_top_k(&q, keys.data(), 1, 4, 2, 3), (std::vector<std::int64_t>{0, 2, 3}));
}

TEST(UnitAttention, SparseAttendsToKeptPositionsAndItself) {
  std::mt19937_64 rng(5);
  const std::int64_t d = 16, past = 12, pad = 1;
  const auto k = random_rows(rng, (past + 1) * d), v = random_rows(rng, (past + 1) * d), q = random_rows(rng, d);
  const std::vector<std::int64_t> kept = {0, 4, 7, 11};  // 0 is padding: skipped
  std::vector<float> out(static_cast<std::size_t>(d));
  sparse_unit_attention(q.data(), k.data(), v.data(), d, past, pad, kept, out.data());
  const auto ref = reference(q.data(), k, v, d, {4, 7, 11, past});
  for (std::int64_t c = 0; c < d; ++c) EXPECT_NEAR(out[static_cast<std::size_t>(c)], ref[static_cast<std::size_t>(c)], 1e-5);
}

}  // namespace
}  // namespace flexgen
