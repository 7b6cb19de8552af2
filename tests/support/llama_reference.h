#pragma once
// An independent float64 reference of the HF LLaMA forward (LlamaForCausalLM), for tests. Plain
// double loops over the whole sequence, no KV cache, nothing shared with the engine but the
// weight struct: RMSNorm, rotary embeddings (rotate_half convention, frequencies and their
// linear / llama3 scaling recomputed here), grouped-query attention (query head i reads
// key/value head i / (heads / kv_heads)) with an additive mask of -1e30 on future and padding
// keys, SwiGLU MLP, final RMSNorm and the LM head (tied or not). Positions as HF generate:
// cumsum(mask) - 1 for real tokens.
#include <cstdint>
#include <vector>

#include "engine/core/model_spec.h"
#include "engine/model/llama_weights.h"
#include "tests/support/opt_reference.h"

namespace flexgen::testing {

// logits[b][t][v] for token rows of equal length with their masks (1 real, 0 padding).
// ReferenceOptions (opt_reference.h): kv_row_transform is applied to every key (after rotation)
// and value row of each key/value head; top-k sparse attention keeps, per key/value head, the k
// real positions before t with the highest summed score of the head's query group
// (sum over the group of q_i . k_s; ties to the lower position) and t itself; each query head
// then takes the softmax over the kept positions.
Logits3 reference_llama_logits(const ModelSpec& spec, const LlamaWeights& weights,
                               const std::vector<std::vector<std::int32_t>>& ids,
                               const std::vector<std::vector<int>>& mask, const ReferenceOptions& options = {});

// Greedy decoding recomputing the whole forward at every step (as reference_greedy). With
// `margins`, each step's gap between the best and the second-best logit, per sequence: how
// decisive the choice was (an fp16 run can only be expected to agree where it is clear).
std::vector<std::vector<std::int32_t>> reference_llama_greedy(const ModelSpec& spec, const LlamaWeights& weights,
                                                              const std::vector<std::vector<std::int32_t>>& prompts,
                                                              int new_tokens, const ReferenceOptions& options = {},
                                                              std::vector<std::vector<double>>* margins = nullptr);

}  // namespace flexgen::testing
