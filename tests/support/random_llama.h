#pragma once
// Seeded random LLaMA models for tests (the NormalRng of random_opt.h).
#include <cstdint>

#include "engine/core/model_spec.h"
#include "engine/model/llama_weights.h"
#include "tests/support/random_opt.h"

namespace flexgen::testing {

// 2 layers, hidden 32, 4 heads of 8 over 2 key/value heads (grouped-query attention, 2 query
// heads per key/value head), ffn 48, vocab 40, 64 positions, f32, rope_theta 10000, pad id 0,
// untied LM head.
ModelSpec tiny_llama_spec();

// Linear weights and the embedding normal(0, stddev), RMSNorm weights 1 + normal(0, 0.1); the LM
// head unless spec.tie_word_embeddings.
LlamaWeights random_llama_weights(const ModelSpec& spec, std::uint64_t seed, double stddev);

}  // namespace flexgen::testing
