#include "engine/generate/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/core/error.h"

namespace flexgen {
namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Checks a logits row; returns its maximum.
float check_logits(std::span<const float> logits) {
  FLEXGEN_REQUIRE(!logits.empty(), "sampler: empty logits row");
  float max_value = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const float v = logits[i];
    FLEXGEN_REQUIRE(!std::isnan(v) && v != std::numeric_limits<float>::infinity(),
                    "sampler: logit of token ", i, " is ", v);
    max_value = std::max(max_value, v);
  }
  FLEXGEN_REQUIRE(max_value != -std::numeric_limits<float>::infinity(),
                  "sampler: every logit is -inf");
  return max_value;
}

struct Candidate {
  double weight;
  std::int32_t id;
};

// Larger weight first, then lower id: a strict total order, so the sort is deterministic.
bool before(const Candidate& a, const Candidate& b) {
  return a.weight != b.weight ? a.weight > b.weight : a.id < b.id;
}

}  // namespace

std::int32_t argmax_token(std::span<const float> logits) {
  check_logits(logits);
  std::size_t best = 0;
  for (std::size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<std::int32_t>(best);
}

double uniform_double(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

Sampler::Sampler(const SamplingConfig& config) : config_(config) {
  if (!config_.do_sample) return;
  FLEXGEN_REQUIRE(std::isfinite(config_.temperature) && config_.temperature > 0.0f,
                  "sampling: temperature ", config_.temperature, " must be a finite value > 0");
  FLEXGEN_REQUIRE(config_.top_k >= 0, "sampling: top_k ", config_.top_k, " must be >= 0 (0: off)");
  FLEXGEN_REQUIRE(config_.top_p > 0.0f && config_.top_p <= 1.0f, "sampling: top_p ", config_.top_p,
                  " must be in (0, 1]");
}

std::mt19937_64& Sampler::stream(std::int64_t sequence) {
  auto it = streams_.find(sequence);
  if (it == streams_.end()) {
    const std::uint64_t seed =
        splitmix64(splitmix64(config_.seed) ^ static_cast<std::uint64_t>(sequence));
    it = streams_.emplace(sequence, std::mt19937_64(seed)).first;
  }
  return it->second;
}

std::int32_t Sampler::next(std::span<const float> logits, std::int64_t sequence) {
  FLEXGEN_REQUIRE(sequence >= 0, "sampler: sequence index ", sequence, " is negative");
  if (!config_.do_sample) return argmax_token(logits);
  const float max_value = check_logits(logits);
  const double inv_temperature = 1.0 / static_cast<double>(config_.temperature);

  std::vector<Candidate> kept;
  kept.reserve(logits.size());
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const double z = static_cast<double>(logits[i]) - static_cast<double>(max_value);
    // z == 0 keeps the maximum at weight 1 even if z * inv_temperature would be 0 * inf.
    const double w = z == 0.0 ? 1.0 : std::exp(z * inv_temperature);
    if (w > 0.0) kept.push_back({w, static_cast<std::int32_t>(i)});
  }
  const bool truncate_k =
      config_.top_k > 0 && static_cast<std::size_t>(config_.top_k) < kept.size();
  const bool truncate_p = config_.top_p < 1.0f;
  if (truncate_k) {
    const auto k = static_cast<std::ptrdiff_t>(config_.top_k);
    std::partial_sort(kept.begin(), kept.begin() + k, kept.end(), before);
    kept.resize(static_cast<std::size_t>(k));
  } else if (truncate_p) {
    std::sort(kept.begin(), kept.end(), before);
  }
  if (truncate_p) {
    double total = 0.0;
    for (const Candidate& c : kept) total += c.weight;
    const double target = static_cast<double>(config_.top_p) * total;
    double running = 0.0;
    std::size_t count = 0;
    while (count < kept.size()) {
      running += kept[count].weight;
      ++count;
      if (running >= target) break;
    }
    kept.resize(count);
  }
  double total = 0.0;
  for (const Candidate& c : kept) total += c.weight;
  const double u = uniform_double(stream(sequence)) * total;
  double running = 0.0;
  for (const Candidate& c : kept) {
    running += c.weight;
    if (u < running) return c.id;
  }
  return kept.back().id;  // u within rounding of the total
}

}  // namespace flexgen
