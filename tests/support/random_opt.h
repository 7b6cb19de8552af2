#pragma once
// Seeded random OPT models for tests: a tiny spec and weights filled from a platform-independent
// normal generator (mt19937_64 + Box-Muller written here), so test data is the same everywhere.
#include <cstdint>
#include <random>

#include "engine/core/model_spec.h"
#include "engine/model/opt_weights.h"
#include "engine/tensor/tensor.h"

namespace flexgen::testing {

// A normal(0, 1) stream that gives the same values on every platform.
class NormalRng {
 public:
  explicit NormalRng(std::uint64_t seed) : rng_(seed) {}
  double next();
  double uniform();                    // [0, 1)
  std::int32_t below(std::int32_t n);  // uniform integer in [0, n)

 private:
  std::mt19937_64 rng_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

// Fills a tensor of `shape` with mean + stddev * normal.
Tensor random_tensor(NormalRng& rng, Shape shape, double mean, double stddev);

// The test model of the briefs: 2 layers, hidden 16, 4 heads, ffn 64, vocab 40, 32 positions,
// f32, pad id 1.
ModelSpec tiny_opt_spec();

// Linear weights and embeddings normal(0, stddev), biases normal(0, 0.1), LayerNorm weights
// 1 + normal(0, 0.1) and biases normal(0, 0.1).
OptWeights random_opt_weights(const ModelSpec& spec, std::uint64_t seed, double stddev);

}  // namespace flexgen::testing
