#include "tests/support/random_opt.h"

#include <cmath>
#include <numbers>
#include <utility>
#include <vector>

namespace flexgen::testing {

double NormalRng::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

std::int32_t NormalRng::below(std::int32_t n) {
  return static_cast<std::int32_t>(rng_() % static_cast<std::uint64_t>(n));
}

double NormalRng::next() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  const double u1 = 1.0 - uniform();  // (0, 1]
  const double u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  spare_ = r * std::sin(2.0 * std::numbers::pi * u2);
  has_spare_ = true;
  return r * std::cos(2.0 * std::numbers::pi * u2);
}

Tensor random_tensor(NormalRng& rng, Shape shape, double mean, double stddev) {
  Tensor t(std::move(shape));
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    t[i] = static_cast<float>(mean + stddev * rng.next());
  }
  return t;
}

ModelSpec tiny_opt_spec() {
  ModelSpec spec;
  spec.name = "tiny-opt";
  spec.num_layers = 2;
  spec.hidden_size = 16;
  spec.num_heads = 4;
  spec.ffn_dim = 64;
  spec.vocab_size = 40;
  spec.max_positions = 32;
  spec.pad_token_id = 1;
  spec.bos_token_id = 2;
  spec.eos_token_id = 2;
  spec.layer_norm_eps = 1e-5;
  spec.dtype = DType::kF32;
  return spec;
}

OptWeights random_opt_weights(const ModelSpec& spec, std::uint64_t seed, double stddev) {
  NormalRng rng(seed);
  const std::int64_t h = spec.hidden_size;
  const std::int64_t f = spec.ffn_dim;
  OptWeights w;
  w.embed_tokens = random_tensor(rng, {spec.vocab_size, h}, 0.0, stddev);
  w.embed_positions = random_tensor(rng, {spec.max_positions + 2, h}, 0.0, stddev);
  w.final_ln_weight = random_tensor(rng, {h}, 1.0, 0.1);
  w.final_ln_bias = random_tensor(rng, {h}, 0.0, 0.1);
  for (std::int64_t j = 0; j < spec.num_layers; ++j) {
    OptLayerWeights l;
    l.attn_ln_weight = random_tensor(rng, {h}, 1.0, 0.1);
    l.attn_ln_bias = random_tensor(rng, {h}, 0.0, 0.1);
    l.q_weight = random_tensor(rng, {h, h}, 0.0, stddev);
    l.q_bias = random_tensor(rng, {h}, 0.0, 0.1);
    l.k_weight = random_tensor(rng, {h, h}, 0.0, stddev);
    l.k_bias = random_tensor(rng, {h}, 0.0, 0.1);
    l.v_weight = random_tensor(rng, {h, h}, 0.0, stddev);
    l.v_bias = random_tensor(rng, {h}, 0.0, 0.1);
    l.out_weight = random_tensor(rng, {h, h}, 0.0, stddev);
    l.out_bias = random_tensor(rng, {h}, 0.0, 0.1);
    l.mlp_ln_weight = random_tensor(rng, {h}, 1.0, 0.1);
    l.mlp_ln_bias = random_tensor(rng, {h}, 0.0, 0.1);
    l.fc1_weight = random_tensor(rng, {f, h}, 0.0, stddev);
    l.fc1_bias = random_tensor(rng, {f}, 0.0, 0.1);
    l.fc2_weight = random_tensor(rng, {h, f}, 0.0, stddev);
    l.fc2_bias = random_tensor(rng, {h}, 0.0, 0.1);
    w.layers.push_back(std::move(l));
  }
  return w;
}

}  // namespace flexgen::testing
