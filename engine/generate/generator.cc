#include "engine/generate/generator.h"

#include <chrono>
#include <span>

#include "engine/core/error.h"
#include "engine/generate/sampler.h"

namespace flexgen {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

GenerateOptions generate_options(const Workload& workload) {
  GenerateOptions options;
  options.max_new_tokens = workload.gen_len;
  options.sampling = workload.sampling;
  options.stop_token = workload.stop_token;
  return options;
}

GenerationResult generate(CausalLm& model, const std::vector<std::vector<std::int32_t>>& prompts,
                          const GenerateOptions& options) {
  FLEXGEN_REQUIRE(options.max_new_tokens >= 0, "generate: max_new_tokens ", options.max_new_tokens,
                  " is negative");
  FLEXGEN_REQUIRE(!prompts.empty(), "generate: no prompts");
  Sampler sampler(options.sampling);
  const std::size_t batch = prompts.size();
  GenerationResult result;
  result.tokens.resize(batch);
  if (options.max_new_tokens == 0) return result;

  const std::int64_t vocab = model.vocab_size();
  std::vector<bool> finished(batch, false);
  std::vector<std::int32_t> last(batch, 0);
  std::size_t remaining = batch;
  // Chooses the next token of every unfinished sequence from logits [B, vocab].
  auto choose = [&](const Tensor& logits) {
    FLEXGEN_REQUIRE(logits.rank() == 2 && logits.dim(0) == static_cast<std::int64_t>(batch) &&
                        logits.dim(1) == vocab,
                    "generate: the model returned logits of shape ",
                    shape_to_string(logits.shape()), ", expected [", batch, ", ", vocab, "]");
    for (std::size_t b = 0; b < batch; ++b) {
      if (finished[b]) continue;
      const std::span<const float> row(logits.data() + static_cast<std::int64_t>(b) * vocab,
                                       static_cast<std::size_t>(vocab));
      const std::int32_t token = sampler.next(row, static_cast<std::int64_t>(b));
      result.tokens[b].push_back(token);
      last[b] = token;
      if (options.stop_token && token == *options.stop_token) {
        finished[b] = true;
        --remaining;
      }
    }
  };

  auto start = std::chrono::steady_clock::now();
  choose(model.prefill_last(prompts, options.max_new_tokens));
  result.prefill_seconds = seconds_since(start);

  start = std::chrono::steady_clock::now();
  for (std::int64_t step = 1; step < options.max_new_tokens && remaining > 0; ++step) {
    choose(model.decode(last));
    ++result.decode_steps;
  }
  result.decode_seconds = seconds_since(start);
  return result;
}

}  // namespace flexgen
