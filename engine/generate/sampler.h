#pragma once
// Next-token selection: greedy argmax, or seeded sampling with temperature, top-k and top-p.
//
// Sampling is reproducible across platforms: each sequence index draws from its own
// std::mt19937_64 stream, seeded from (SamplingConfig::seed, sequence index) through SplitMix64,
// and uniforms are built from the generator's top 53 bits (not std::uniform_real_distribution,
// whose algorithm is implementation-defined). A sequence's tokens therefore depend only on the
// seed, its index and its logits, not on which other sequences share the batch.
//
// A sampling step (do_sample):
//  1. weights w_i = exp((logit_i - max) / temperature), in double (-inf logits get weight 0);
//  2. top_k > 0: keep the k tokens of largest weight (ties: lower id first);
//  3. top_p < 1: of those, ordered by weight (ties: lower id first), keep the shortest prefix whose
//     weight is >= top_p of the kept total (at least one token); HF applies the same order
//     (temperature, then top-k, then top-p on the renormalised top-k set);
//  4. draw u in [0, 1) and return the first kept token at which the running sum of weights exceeds
//     u times their total (kept tokens in id order when nothing was truncated, else in the order
//     of step 3).
#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>

#include "engine/core/workload.h"

namespace flexgen {

// Index of the largest logit; ties go to the lowest id. Throws flexgen::Error for an empty row, a
// NaN or +inf logit, or a row of only -inf.
std::int32_t argmax_token(std::span<const float> logits);

// A uniform double in [0, 1) from the top 53 bits of one 64-bit draw.
double uniform_double(std::mt19937_64& rng);

class Sampler {
 public:
  // Throws flexgen::Error for do_sample with a temperature that is not a finite value > 0, a
  // negative top_k, or a top_p outside (0, 1]. Greedy configs are not checked further.
  explicit Sampler(const SamplingConfig& config);

  // The next token of sequence `sequence` (>= 0) from its logits row. Greedy when
  // !config.do_sample. Throws flexgen::Error as argmax_token does for bad logits.
  std::int32_t next(std::span<const float> logits, std::int64_t sequence);

  const SamplingConfig& config() const { return config_; }

 private:
  std::mt19937_64& stream(std::int64_t sequence);

  SamplingConfig config_;
  std::unordered_map<std::int64_t, std::mt19937_64> streams_;
};

}  // namespace flexgen
