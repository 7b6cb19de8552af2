#pragma once
// Workload: what is generated. Prompt length, generation length, number of sequences and the
// sampling settings.
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace flexgen {

struct SamplingConfig {
  bool do_sample = false;   // false: greedy (argmax)
  float temperature = 1.0f; // > 0
  int top_k = 0;            // 0: off
  float top_p = 1.0f;       // in (0, 1]; 1: off
  std::uint64_t seed = 0;   // sampling is deterministic for a given seed

  // Throws flexgen::Error "invalid sampling: --temperature must be positive (got 0)" etc. The
  // settings are checked even when do_sample is false.
  void validate() const;
  bool operator==(const SamplingConfig&) const = default;
};

struct Workload {
  std::int64_t prompt_len = 512;
  std::int64_t gen_len = 32;
  std::int64_t num_sequences = 1;  // = gpu_batch_size * num_gpu_batches for a block run
  SamplingConfig sampling;
  std::optional<std::int64_t> stop_token;  // generation of a sequence ends after this token

  // Throws flexgen::Error "invalid workload: --prompt-len must be at least 1 (got 0)" etc., and
  // the sampling errors. Does not know the model: the caller checks prompt_len + gen_len against
  // the model's max_positions and stop_token against its vocabulary.
  void validate() const;
  bool operator==(const Workload&) const = default;

  // For results rows: {"prompt_len", "gen_len", "num_sequences", "stop_token" (null when unset),
  // "sampling": {"do_sample", "temperature", "top_k", "top_p", "seed"}}.
  nlohmann::json to_json() const;
  // Strict: every key above is required, unknown keys are rejected; the result is validated.
  // Throws flexgen::Error "<origin>: ..." (also for validation errors).
  static Workload from_json(const nlohmann::json& json, const std::string& origin = "workload");
};

}  // namespace flexgen
