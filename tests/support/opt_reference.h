#pragma once
// An independent float64 reference of the HF OPT forward (OPTForCausalLM, pre-LN), for tests.
// Plain double loops over the whole sequence, no KV cache, nothing shared with the engine but the
// weight struct. Follows HF's semantics: position ids cumsum(mask) * mask - 1 looked up at + 2,
// an additive mask of -1e30 on keys that are in the future or padding, q scaled after its bias.
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/core/model_spec.h"
#include "engine/model/opt_weights.h"

namespace flexgen::testing {

// Variations the offloading runtime supports, specified independently here.
struct ReferenceOptions {
  // Applied to every key and value row of one head (head_dim values) as soon as it is computed:
  // e.g. a 4-bit quantize-dequantize of the cache.
  std::function<void(std::vector<double>& row)> kv_row_transform;
  // Top-k sparse attention for queries at positions >= first_decode_position (the generated
  // tokens): keep max(1, floor(attn_sparsity * t)) real positions before t with the highest
  // scores (ties to the lower position) and t itself, softmax over those.
  double attn_sparsity = 1.0;
  std::size_t first_decode_position = 0;
};

// logits[b][t][v] for a batch of token rows of equal length with their attention masks (1 real,
// 0 padding), every position computed from scratch.
using Logits3 = std::vector<std::vector<std::vector<double>>>;
Logits3 reference_opt_logits(const ModelSpec& spec, const OptWeights& weights,
                             const std::vector<std::vector<std::int32_t>>& ids,
                             const std::vector<std::vector<int>>& mask,
                             const ReferenceOptions& options = {});

// Left-pads prompts to the longest with spec.pad_token_id; fills ids and mask.
void reference_left_pad(const ModelSpec& spec,
                        const std::vector<std::vector<std::int32_t>>& sequences,
                        std::vector<std::vector<std::int32_t>>& ids,
                        std::vector<std::vector<int>>& mask);

// Teacher-forced deficits: per sequence and generated token, how far its logit is below the best
// one when the reference is fed the prompt and the tokens generated before it (prompts and tokens
// left-padded together, as the greedy references pad them; options.first_decode_position set to
// the longest prompt). `logits` computes the reference's logits (reference_opt_logits or
// reference_llama_logits bound to their weights).
using ReferenceLogits = std::function<Logits3(const std::vector<std::vector<std::int32_t>>& ids,
                                              const std::vector<std::vector<int>>& mask,
                                              const ReferenceOptions& options)>;
std::vector<std::vector<double>> teacher_forced_deficits(const ModelSpec& spec,
                                                         const std::vector<std::vector<std::int32_t>>& prompts,
                                                         const std::vector<std::vector<std::int32_t>>& generated,
                                                         ReferenceOptions options, const ReferenceLogits& logits);

// Greedy decoding the slow way: at every step left-pads the prompts plus the tokens so far,
// recomputes the whole forward and takes the argmax of the last position (ties: lowest id).
// Returns new_tokens tokens per sequence (no stop token).
std::vector<std::vector<std::int32_t>> reference_greedy(
    const ModelSpec& spec, const OptWeights& weights,
    const std::vector<std::vector<std::int32_t>>& prompts, int new_tokens,
    const ReferenceOptions& options = {});

}  // namespace flexgen::testing
