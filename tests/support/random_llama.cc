#include "tests/support/random_llama.h"

#include <utility>

namespace flexgen::testing {

ModelSpec tiny_llama_spec() {
  ModelSpec spec;
  spec.name = "tiny-llama";
  spec.family = ModelFamily::kLlama;
  spec.num_layers = 2;
  spec.hidden_size = 32;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.ffn_dim = 48;
  spec.vocab_size = 40;
  spec.max_positions = 64;
  spec.pad_token_id = 0;
  spec.bos_token_id = 1;
  spec.eos_token_id = 2;
  spec.layer_norm_eps = 1e-5;
  spec.dtype = DType::kF32;
  spec.rope_theta = 10000.0;
  spec.tie_word_embeddings = false;
  return spec;
}

LlamaWeights random_llama_weights(const ModelSpec& spec, std::uint64_t seed, double stddev) {
  NormalRng rng(seed);
  const std::int64_t h = spec.hidden_size, f = spec.ffn_dim, kv = spec.kv_dim();
  LlamaWeights w;
  w.embed_tokens = random_tensor(rng, {spec.vocab_size, h}, 0.0, stddev);
  w.final_norm = random_tensor(rng, {h}, 1.0, 0.1);
  if (!spec.tie_word_embeddings) w.lm_head = random_tensor(rng, {spec.vocab_size, h}, 0.0, stddev);
  for (std::int64_t j = 0; j < spec.num_layers; ++j) {
    LlamaLayerWeights l;
    l.input_norm = random_tensor(rng, {h}, 1.0, 0.1);
    l.q_weight = random_tensor(rng, {h, h}, 0.0, stddev);
    l.k_weight = random_tensor(rng, {kv, h}, 0.0, stddev);
    l.v_weight = random_tensor(rng, {kv, h}, 0.0, stddev);
    l.o_weight = random_tensor(rng, {h, h}, 0.0, stddev);
    l.post_norm = random_tensor(rng, {h}, 1.0, 0.1);
    l.gate_weight = random_tensor(rng, {f, h}, 0.0, stddev);
    l.up_weight = random_tensor(rng, {f, h}, 0.0, stddev);
    l.down_weight = random_tensor(rng, {h, f}, 0.0, stddev);
    w.layers.push_back(std::move(l));
  }
  return w;
}

}  // namespace flexgen::testing
