#pragma once
// The generation loop: prefill a batch of prompts, then decode one token per sequence per step,
// choosing tokens with a Sampler, until every sequence has max_new_tokens tokens or has emitted
// the stop token.
#include <cstdint>
#include <optional>
#include <vector>

#include "engine/core/workload.h"
#include "engine/model/causal_lm.h"

namespace flexgen {

struct GenerateOptions {
  std::int64_t max_new_tokens = 32;
  SamplingConfig sampling;
  std::optional<std::int64_t> stop_token;  // a sequence ends after emitting it (kept in its output)
};

// gen_len, sampling and stop_token of a workload.
GenerateOptions generate_options(const Workload& workload);

struct GenerationResult {
  std::vector<std::vector<std::int32_t>> tokens;  // per sequence: the generated ids only
  double prefill_seconds = 0.0;                   // the prefill call, first token choice included
  double decode_seconds = 0.0;                    // every decode step, token choice included
  std::int64_t decode_steps = 0;                  // decode calls made
};

// Runs prompts (token ids) through `model`. Sequence b samples from stream b of the sampler, so
// its tokens do not depend on the other sequences of the batch. A finished sequence keeps being
// fed its last token (the stop token) while others continue; those outputs are ignored. Stops
// early when every sequence has finished. The last token is chosen but never fed back.
// Throws flexgen::Error for a negative max_new_tokens, bad sampling settings (see Sampler), and
// whatever the model throws for the prompts.
GenerationResult generate(CausalLm& model, const std::vector<std::vector<std::int32_t>>& prompts,
                          const GenerateOptions& options);

}  // namespace flexgen
