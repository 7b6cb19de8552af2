#include "engine/generate/sampler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "engine/core/error.h"
#include "tests/support/random_opt.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;

SamplingConfig sampling(float temperature, int top_k, float top_p, std::uint64_t seed = 1) {
  SamplingConfig c;
  c.do_sample = true;
  c.temperature = temperature;
  c.top_k = top_k;
  c.top_p = top_p;
  c.seed = seed;
  return c;
}

constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(Sampler, GreedyTakesTheLowestIdAmongTies) {
  EXPECT_EQ(argmax_token(std::vector<float>{1, 3, 3, 2}), 1);
  EXPECT_EQ(argmax_token(std::vector<float>{-kInf, -5, -5}), 1);
  EXPECT_EQ(argmax_token(std::vector<float>{7}), 0);
  Sampler greedy(SamplingConfig{});  // do_sample false
  for (std::int64_t seq = 0; seq < 3; ++seq) {
    EXPECT_EQ(greedy.next(std::vector<float>{0, 2, -1, 2}, seq), 1);
  }
}

TEST(Sampler, UniformDoubleUsesTheTop53Bits) {
  // The standard fixes mt19937_64's 10000th output for the default seed: 9981545732273789042.
  std::mt19937_64 rng;
  rng.discard(9999);
  EXPECT_EQ(uniform_double(rng),
            static_cast<double>(9981545732273789042ULL >> 11) / 9007199254740992.0);
  std::mt19937_64 other(3);
  for (int i = 0; i < 1000; ++i) {
    const double u = uniform_double(other);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

// Random rows, each with one pair of equal values (sometimes the maximum).
std::vector<std::vector<float>> random_rows() {
  testing::NormalRng rng(8);
  std::vector<std::vector<float>> rows;
  for (int r = 0; r < 50; ++r) {
    std::vector<float> row;
    for (int v = 0; v < 30; ++v) row.push_back(static_cast<float>(2.0 * rng.next()));
    row[static_cast<std::size_t>(r % 30)] = row[static_cast<std::size_t>((r + 7) % 30)];
    rows.push_back(row);
  }
  return rows;
}

TEST(Sampler, TopKOneIsGreedy) {
  Sampler sampler(sampling(1.5f, 1, 1.0f));
  for (const auto& row : random_rows()) {
    for (int i = 0; i < 5; ++i) EXPECT_EQ(sampler.next(row, i), argmax_token(row));
  }
  EXPECT_EQ(sampler.next(std::vector<float>{0, 2, -1, 2}, 0), 1);  // tie: lowest id
}

TEST(Sampler, TinyTopPIsGreedy) {
  Sampler sampler(sampling(1.0f, 0, 1e-6f));
  for (const auto& row : random_rows()) {
    for (int i = 0; i < 5; ++i) EXPECT_EQ(sampler.next(row, i), argmax_token(row));
  }
  EXPECT_EQ(sampler.next(std::vector<float>{0, 2, -1, 2}, 0), 1);
}

TEST(Sampler, TemperatureTowardsZeroIsGreedy) {
  for (float t : {1e-3f, 1e-6f, 1e-30f, std::numeric_limits<float>::denorm_min()}) {
    Sampler sampler(sampling(t, 0, 1.0f));
    for (const auto& row : random_rows()) {
      const float top = row[static_cast<std::size_t>(argmax_token(row))];
      if (std::count(row.begin(), row.end(), top) > 1) continue;  // tied maxima: see below
      EXPECT_EQ(sampler.next(row, 0), argmax_token(row));
    }
    // With two maxima the choice stays between them, both chosen sometimes.
    std::map<std::int32_t, int> counts;
    for (int i = 0; i < 200; ++i) counts[sampler.next(std::vector<float>{0, 2, -1, 2}, 1)]++;
    EXPECT_EQ(counts.size(), 2u);
    EXPECT_GT(counts[1], 0);
    EXPECT_GT(counts[3], 0);
  }
}

// Frequencies of 20000 draws against probabilities p (zero outside the kept set), 3 sigma.
void expect_frequencies(const SamplingConfig& config, const std::vector<float>& logits,
                        const std::vector<double>& p) {
  Sampler sampler(config);
  const int n = 20000;
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < n; ++i) counts[static_cast<std::size_t>(sampler.next(logits, 0))]++;
  for (std::size_t v = 0; v < logits.size(); ++v) {
    if (p[v] == 0.0) {
      EXPECT_EQ(counts[v], 0) << "token " << v << " is outside the kept set";
      continue;
    }
    const double sigma = std::sqrt(n * p[v] * (1 - p[v]));
    EXPECT_NEAR(counts[v], n * p[v], 3 * sigma) << "token " << v << " T " << config.temperature
                                                << " k " << config.top_k << " p " << config.top_p;
  }
}

// softmax(logits / t) restricted to `kept` and renormalised.
std::vector<double> expected(const std::vector<float>& logits, double t,
                             const std::vector<int>& kept) {
  std::vector<double> p(logits.size(), 0.0);
  double sum = 0.0;
  for (int v : kept)
    sum += (p[static_cast<std::size_t>(v)] = std::exp(logits[static_cast<std::size_t>(v)] / t));
  for (double& x : p) x /= sum;
  return p;
}

TEST(Sampler, FrequenciesMatchTheTruncatedSoftmax) {
  // softmax of the logits at T = 1: 0.1719 0.4674 0.0773 0.2835; by weight: 1, 3, 0, 2 with
  // running sums 0.4674, 0.7509, 0.9227, 1.
  const std::vector<float> logits = {0.5f, 1.5f, -0.3f, 1.0f};
  expect_frequencies(sampling(1.0f, 0, 1.0f), logits, expected(logits, 1.0, {0, 1, 2, 3}));
  expect_frequencies(sampling(0.7f, 0, 1.0f), logits, expected(logits, 0.7, {0, 1, 2, 3}));
  expect_frequencies(sampling(2.5f, 0, 1.0f), logits, expected(logits, 2.5, {0, 1, 2, 3}));
  expect_frequencies(sampling(1.0f, 2, 1.0f), logits, expected(logits, 1.0, {1, 3}));
  expect_frequencies(sampling(1.0f, 0, 0.7f), logits, expected(logits, 1.0, {1, 3}));
  expect_frequencies(sampling(1.0f, 0, 0.8f), logits, expected(logits, 1.0, {1, 3, 0}));
  // top-p on the renormalised top-3 set: 0.5066, 0.3073 (running 0.8139 >= 0.8), 0.1861.
  expect_frequencies(sampling(1.0f, 3, 0.8f), logits, expected(logits, 1.0, {1, 3}));
  expect_frequencies(sampling(1.0f, 3, 0.9f), logits, expected(logits, 1.0, {1, 3, 0}));
  // A -inf logit is never drawn; top_k larger than the vocabulary is no truncation.
  const std::vector<float> masked = {0.5f, 1.5f, -kInf, 1.0f};
  expect_frequencies(sampling(1.0f, 10, 1.0f), masked, expected(masked, 1.0, {0, 1, 3}));
}

std::vector<std::int32_t> draws(Sampler& sampler, std::int64_t seq, int n) {
  const std::vector<float> logits = {0.1f, 0.3f, 0.0f, 0.2f, -0.1f, 0.25f};
  std::vector<std::int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(sampler.next(logits, seq));
  return out;
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  Sampler a(sampling(1.0f, 0, 1.0f, 99));
  Sampler b(sampling(1.0f, 0, 1.0f, 99));
  Sampler c(sampling(1.0f, 0, 1.0f, 100));
  const auto ta = draws(a, 0, 200);
  EXPECT_EQ(ta, draws(b, 0, 200));
  EXPECT_NE(ta, draws(c, 0, 200));
  // Different sequences of one sampler draw from different streams.
  Sampler d(sampling(1.0f, 0, 1.0f, 99));
  EXPECT_NE(ta, draws(d, 1, 200));
}

TEST(Sampler, ASequenceStreamDoesNotDependOnTheOthers) {
  Sampler alone(sampling(1.0f, 0, 0.95f, 5));
  const auto expected_tokens = draws(alone, 2, 100);
  Sampler mixed(sampling(1.0f, 0, 0.95f, 5));
  std::vector<std::int32_t> got;
  for (int i = 0; i < 100; ++i) {
    draws(mixed, 0, 1);
    got.push_back(draws(mixed, 2, 1)[0]);
    draws(mixed, 7, 2);
  }
  EXPECT_EQ(got, expected_tokens);
}

TEST(Sampler, RejectsBadSettings) {
  EXPECT_THAT(error_of([] { Sampler s(sampling(0.0f, 0, 1.0f)); }),
              HasSubstr("temperature 0 must be a finite value > 0"));
  EXPECT_THAT(error_of([] { Sampler s(sampling(std::nanf(""), 0, 1.0f)); }),
              HasSubstr("temperature"));
  EXPECT_THAT(error_of([] { Sampler s(sampling(kInf, 0, 1.0f)); }), HasSubstr("temperature"));
  EXPECT_THAT(error_of([] { Sampler s(sampling(1.0f, -1, 1.0f)); }),
              HasSubstr("top_k -1 must be >= 0"));
  EXPECT_THAT(error_of([] { Sampler s(sampling(1.0f, 0, 0.0f)); }),
              HasSubstr("top_p 0 must be in (0, 1]"));
  EXPECT_THAT(error_of([] { Sampler s(sampling(1.0f, 0, 1.5f)); }),
              HasSubstr("top_p 1.5 must be in (0, 1]"));
  SamplingConfig greedy;  // greedy configs ignore the sampling fields
  greedy.temperature = 0.0f;
  EXPECT_NO_THROW(Sampler s(greedy));
}

TEST(Sampler, RejectsBadLogits) {
  for (bool do_sample : {false, true}) {
    SamplingConfig config = sampling(1.0f, 0, 1.0f);
    config.do_sample = do_sample;
    Sampler sampler(config);
    EXPECT_THAT(error_of([&] { sampler.next(std::vector<float>{}, 0); }),
                HasSubstr("empty logits"));
    EXPECT_THAT(error_of([&] {
                  sampler.next(std::vector<float>{1, std::nanf(""), 2}, 0);
                }),
                HasSubstr("logit of token 1 is nan"));
    EXPECT_THAT(error_of([&] {
                  sampler.next(std::vector<float>{1, 2, kInf}, 0);
                }),
                HasSubstr("logit of token 2 is inf"));
    EXPECT_THAT(error_of([&] {
                  sampler.next(std::vector<float>{-kInf, -kInf}, 0);
                }),
                HasSubstr("every logit is -inf"));
    EXPECT_THAT(error_of([&] {
                  sampler.next(std::vector<float>{1, 2}, -1);
                }),
                HasSubstr("sequence index -1 is negative"));
  }
}

}  // namespace
}  // namespace flexgen
