#include "engine/model/llama_host_model.h"

#include <algorithm>
#include <utility>

#include "engine/core/error.h"

namespace flexgen {

LlamaHostModel::LlamaHostModel(ModelSpec spec, const LlamaWeights& weights)
    : spec_(std::move(spec)), weights_(weights) {
  FLEXGEN_REQUIRE(spec_.family == ModelFamily::kLlama, "model ", spec_.name, " is not a LLaMA model");
  spec_.validate();
  check_llama_weights(spec_, weights_);
}

Tensor LlamaHostModel::run(const std::vector<std::int32_t>& token_ids) {
  Tensor hidden = llama_embed(spec_, weights_, token_ids, state_);
  for (std::size_t j = 0; j < caches_.size(); ++j) {
    llama_layer_forward(spec_, weights_.layers[j], hidden, caches_[j], state_);
  }
  state_.past_len += hidden.dim(1);
  return hidden;
}

Tensor LlamaHostModel::start(const std::vector<std::vector<std::int32_t>>& prompts, std::int64_t max_new_tokens) {
  FLEXGEN_REQUIRE(max_new_tokens >= 0, "prefill: max_new_tokens ", max_new_tokens, " is negative");
  FLEXGEN_REQUIRE(!prompts.empty(), "prefill: no prompts");
  std::vector<std::int64_t> lengths;
  for (std::size_t b = 0; b < prompts.size(); ++b) {
    FLEXGEN_REQUIRE(!prompts[b].empty(), "prefill: prompt ", b, " is empty");
    lengths.push_back(static_cast<std::int64_t>(prompts[b].size()));
  }
  BatchState state = BatchState::left_padded(lengths);
  const std::int64_t prompt_len = *std::max_element(lengths.begin(), lengths.end());
  const std::int64_t positions = prompt_len + std::max<std::int64_t>(max_new_tokens - 1, 0);
  FLEXGEN_REQUIRE(positions <= spec_.max_positions, "prefill: a prompt of ", prompt_len, " tokens and ",
                  max_new_tokens, " new tokens need ", positions, " positions, beyond max_positions ",
                  spec_.max_positions);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(prompt_len) * prompts.size(),
                                static_cast<std::int32_t>(spec_.pad_token_id));
  for (std::size_t b = 0; b < prompts.size(); ++b) {
    std::copy(prompts[b].begin(), prompts[b].end(),
              ids.begin() + static_cast<std::ptrdiff_t>((b + 1) * prompt_len - prompts[b].size()));
  }
  state_ = std::move(state);
  capacity_ = prompt_len + max_new_tokens;
  caches_.clear();
  for (std::int64_t j = 0; j < spec_.num_layers; ++j) {
    caches_.push_back(LayerKvCache::allocate(state_.batch_size(), capacity_, spec_.kv_dim()));
  }
  try {
    return run(ids);
  } catch (...) {
    capacity_ = 0;
    caches_.clear();
    state_ = BatchState();
    throw;
  }
}

Tensor LlamaHostModel::prefill(const std::vector<std::vector<std::int32_t>>& prompts, std::int64_t max_new_tokens) {
  return llama_final(spec_, weights_, start(prompts, max_new_tokens));
}

Tensor LlamaHostModel::prefill_last(const std::vector<std::vector<std::int32_t>>& prompts,
                                    std::int64_t max_new_tokens) {
  return llama_final_last(spec_, weights_, start(prompts, max_new_tokens));
}

Tensor LlamaHostModel::decode(const std::vector<std::int32_t>& next_tokens) {
  FLEXGEN_REQUIRE(capacity_ > 0, "decode: no batch; call prefill first");
  FLEXGEN_REQUIRE(static_cast<std::int64_t>(next_tokens.size()) == state_.batch_size(), "decode: got ",
                  next_tokens.size(), " tokens for a batch of ", state_.batch_size(), " sequences");
  FLEXGEN_REQUIRE(state_.past_len < capacity_, "decode: all ", capacity_,
                  " positions reserved by prefill are used; prefill with a larger max_new_tokens");
  return llama_final_last(spec_, weights_, run(next_tokens));
}

}  // namespace flexgen
