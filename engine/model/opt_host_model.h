#pragma once
// OptHostModel: the reference whole-model driver on the host. Holds the spec, a reference to the
// weights and every layer's KV cache for one batch, and runs embed -> layers -> LM head through
// the per-layer functions of opt_layer.h. The offloading runtime drives those functions itself.
#include <cstdint>
#include <vector>

#include "engine/core/model_spec.h"
#include "engine/model/causal_lm.h"
#include "engine/model/opt_layer.h"
#include "engine/model/opt_weights.h"
#include "engine/tensor/tensor.h"

namespace flexgen {

class OptHostModel : public CausalLm {
 public:
  // Keeps a reference to `weights`, which must outlive the model. Throws flexgen::Error for a spec
  // the host kernels cannot run or a weight whose shape does not match it (naming the tensor and
  // the layer).
  OptHostModel(ModelSpec spec, const OptWeights& weights);
  OptHostModel(ModelSpec spec, OptWeights&& weights) = delete;  // would dangle

  std::int64_t vocab_size() const override { return spec_.vocab_size; }

  // Starts a new batch: left-pads the prompts to the longest with spec.pad_token_id, allocates
  // every layer's cache for prompt_len + max_new_tokens positions and runs the prompts. Returns
  // logits for every padded position, [B, T, vocab] (rows of padding positions are finite but
  // meaningless). Throws flexgen::Error for no prompts, an empty prompt, a token outside the
  // vocabulary, a negative max_new_tokens, or a length beyond max_positions.
  Tensor prefill(const std::vector<std::vector<std::int32_t>>& prompts,
                 std::int64_t max_new_tokens);

  // As prefill, returning only the logits of each sequence's last prompt token, [B, vocab].
  Tensor prefill_last(const std::vector<std::vector<std::int32_t>>& prompts,
                      std::int64_t max_new_tokens) override;

  // Feeds one token per sequence; returns the logits of the new position, [B, vocab]. Throws
  // flexgen::Error before a prefill, for a wrong number of tokens, or when the max_new_tokens
  // positions reserved by prefill are used up.
  Tensor decode(const std::vector<std::int32_t>& next_tokens) override;

  const ModelSpec& spec() const { return spec_; }
  const BatchState& state() const { return state_; }
  std::int64_t batch_size() const { return state_.batch_size(); }
  // Positions reserved per sequence by the last prefill (0 before any).
  std::int64_t capacity() const { return capacity_; }
  const std::vector<LayerKvCache>& caches() const { return caches_; }

 private:
  // Runs the embedding and every layer on [B, T] token ids; advances the state. Returns hidden.
  Tensor run(const std::vector<std::int32_t>& token_ids);
  Tensor start(const std::vector<std::vector<std::int32_t>>& prompts, std::int64_t max_new_tokens);

  ModelSpec spec_;
  const OptWeights& weights_;
  BatchState state_;
  std::int64_t capacity_ = 0;
  std::vector<LayerKvCache> caches_;
};

}  // namespace flexgen
