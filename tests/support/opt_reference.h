#pragma once
// An independent float64 reference of the HF OPT forward (OPTForCausalLM, pre-LN), for tests.
// Plain double loops over the whole sequence, no KV cache, nothing shared with the engine but the
// weight struct. Follows HF's semantics: position ids cumsum(mask) * mask - 1 looked up at + 2,
// an additive mask of -1e30 on keys that are in the future or padding, q scaled after its bias.
#include <cstdint>
#include <vector>

#include "engine/core/model_spec.h"
#include "engine/model/opt_weights.h"

namespace flexgen::testing {

// logits[b][t][v] for a batch of token rows of equal length with their attention masks (1 real,
// 0 padding), every position computed from scratch.
using Logits3 = std::vector<std::vector<std::vector<double>>>;
Logits3 reference_opt_logits(const ModelSpec& spec, const OptWeights& weights,
                             const std::vector<std::vector<std::int32_t>>& ids,
                             const std::vector<std::vector<int>>& mask);

// Left-pads prompts to the longest with spec.pad_token_id; fills ids and mask.
void reference_left_pad(const ModelSpec& spec,
                        const std::vector<std::vector<std::int32_t>>& sequences,
                        std::vector<std::vector<std::int32_t>>& ids,
                        std::vector<std::vector<int>>& mask);

// Greedy decoding the slow way: at every step left-pads the prompts plus the tokens so far,
// recomputes the whole forward and takes the argmax of the last position (ties: lowest id).
// Returns new_tokens tokens per sequence (no stop token).
std::vector<std::vector<std::int32_t>> reference_greedy(
    const ModelSpec& spec, const OptWeights& weights,
    const std::vector<std::vector<std::int32_t>>& prompts, int new_tokens);

}  // namespace flexgen::testing
