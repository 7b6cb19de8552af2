#pragma once
// Workload: what is generated. Prompt length, generation length, number of sequences and the
// sampling settings.
#include <cstdint>
#include <optional>

namespace flexgen {

struct SamplingConfig {
  bool do_sample = false;   // false: greedy (argmax)
  float temperature = 1.0f; // > 0
  int top_k = 0;            // 0: off
  float top_p = 1.0f;       // in (0, 1]; 1: off
  std::uint64_t seed = 0;   // sampling is deterministic for a given seed

  void validate() const;    // throws flexgen::Error
};

struct Workload {
  std::int64_t prompt_len = 512;
  std::int64_t gen_len = 32;
  std::int64_t num_sequences = 1;  // = gpu_batch_size * num_gpu_batches for a block run
  SamplingConfig sampling;
  std::optional<std::int64_t> stop_token;  // generation of a sequence ends after this token

  void validate() const;  // throws flexgen::Error
};

}  // namespace flexgen
