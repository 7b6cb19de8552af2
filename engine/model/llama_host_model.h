#pragma once
// LlamaHostModel: the whole-model driver of the host LLaMA forward (llama_layer.h), the analogue
// of OptHostModel: holds the spec, a reference to the weights and every layer's KV cache
// ([B, capacity, kv_dim]) for one batch.
#include <cstdint>
#include <vector>

#include "engine/core/model_spec.h"
#include "engine/model/causal_lm.h"
#include "engine/model/llama_layer.h"
#include "engine/model/llama_weights.h"
#include "engine/tensor/tensor.h"

namespace flexgen {

class LlamaHostModel : public CausalLm {
 public:
  // Keeps a reference to `weights`. Throws flexgen::Error for a spec that is not a valid LLaMA
  // spec or a weight whose shape does not match it.
  LlamaHostModel(ModelSpec spec, const LlamaWeights& weights);
  LlamaHostModel(ModelSpec spec, LlamaWeights&& weights) = delete;  // would dangle

  std::int64_t vocab_size() const override { return spec_.vocab_size; }

  // As OptHostModel::prefill: left-pads with spec.pad_token_id, reserves prompt_len +
  // max_new_tokens positions; logits for every padded position, [B, T, vocab].
  Tensor prefill(const std::vector<std::vector<std::int32_t>>& prompts, std::int64_t max_new_tokens);
  Tensor prefill_last(const std::vector<std::vector<std::int32_t>>& prompts,
                      std::int64_t max_new_tokens) override;
  Tensor decode(const std::vector<std::int32_t>& next_tokens) override;

  const ModelSpec& spec() const { return spec_; }
  const BatchState& state() const { return state_; }

 private:
  Tensor run(const std::vector<std::int32_t>& token_ids);
  Tensor start(const std::vector<std::vector<std::int32_t>>& prompts, std::int64_t max_new_tokens);

  ModelSpec spec_;
  const LlamaWeights& weights_;
  BatchState state_;
  std::int64_t capacity_ = 0;
  std::vector<LayerKvCache> caches_;
};

}  // namespace flexgen
