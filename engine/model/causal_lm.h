#pragma once
// CausalLm: what the generation loop needs from a model. A batch of prompts is prefilled once,
// then decoded one token per sequence per step. OptHostModel implements it on the host; the
// offloading runtime can implement it too and reuse the same generator.
#include <cstdint>
#include <vector>

#include "engine/tensor/tensor.h"

namespace flexgen {

class CausalLm {
 public:
  virtual ~CausalLm() = default;

  virtual std::int64_t vocab_size() const = 0;

  // Starts a new batch: runs the prompts (left-padded to the longest) and keeps room for
  // max_new_tokens more tokens per sequence. Returns the logits of each sequence's last prompt
  // token, [B, vocab].
  virtual Tensor prefill_last(const std::vector<std::vector<std::int32_t>>& prompts,
                              std::int64_t max_new_tokens) = 0;

  // Appends one token per sequence and returns the logits of that new position, [B, vocab].
  virtual Tensor decode(const std::vector<std::int32_t>& next_tokens) = 0;
};

}  // namespace flexgen
