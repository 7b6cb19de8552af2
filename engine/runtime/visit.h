#pragma once
// What a task's visit covers, shared by the backends: the tokens it feeds, the cached positions
// before it, and whether its attention is delegated to the CPU or sparse. `run` is the run's plan
// (its workload may be a BlockShape smaller than the runtime's; the policy and cache split are the
// same).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/error.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"

namespace flexgen {

// Step 0 feeds the whole (padded) prompt, every later step one token.
inline std::int64_t visit_tokens(const Plan& run, const Task& t) { return t.token == 0 ? run.workload.prompt_len : 1; }
// Cached positions before the visit's tokens.
inline std::int64_t visit_past(const Plan& run, const Task& t) {
  return t.token == 0 ? 0 : run.workload.prompt_len + t.token - 1;
}
// Decode attention of the CPU-homed units runs on the CPU (--cpu-cache-compute).
inline bool visit_delegated(const Plan& run, const Task& t) {
  return run.policy.cpu_cache_compute() && t.token > 0 && run.cache.units_on_tier(Tier::kCpu) > 0;
}
// Decode attention keeps the top-k cached positions (--attn-sparsity < 1).
inline bool visit_sparse(const Plan& run, const Task& t) { return run.policy.attn_sparsity() < 1.0 && t.token > 0; }
// k of the top-k: max(1, floor(sparsity x cached positions)).
inline std::int64_t visit_kept_positions(const Plan& run, const Task& t) {
  return std::max<std::int64_t>(
      1, static_cast<std::int64_t>(std::floor(run.policy.attn_sparsity() * static_cast<double>(visit_past(run, t)))));
}

// The prompts of a block, left-padded per gpu batch: ids [batch size, prompt_len] filled with
// `pad_token` before each prompt, and each sequence's padding length.
struct PaddedBatch {
  std::vector<std::int32_t> ids;
  std::vector<std::int64_t> pad_len;
};

// Checks the count (gpu batch size x gpu batches) and each prompt's length (1..prompt_len);
// flexgen::Error otherwise.
inline std::vector<PaddedBatch> left_pad_block(const std::vector<std::vector<std::int32_t>>& prompts,
                                               std::int64_t gpu_batch_size, std::int64_t num_gpu_batches,
                                               std::int64_t prompt_len, std::int64_t pad_token) {
  const std::int64_t block = gpu_batch_size * num_gpu_batches;
  FLEXGEN_REQUIRE(static_cast<std::int64_t>(prompts.size()) == block, "the run needs ", block,
                  " prompts (gpu batch size x gpu batches), got ", prompts.size());
  std::vector<PaddedBatch> out(static_cast<std::size_t>(num_gpu_batches));
  for (std::int64_t k = 0; k < num_gpu_batches; ++k) {
    PaddedBatch& pb = out[static_cast<std::size_t>(k)];
    pb.ids.assign(static_cast<std::size_t>(gpu_batch_size * prompt_len), static_cast<std::int32_t>(pad_token));
    pb.pad_len.resize(static_cast<std::size_t>(gpu_batch_size));
    for (std::int64_t s = 0; s < gpu_batch_size; ++s) {
      const auto& p = prompts[static_cast<std::size_t>(k * gpu_batch_size + s)];
      FLEXGEN_REQUIRE(!p.empty() && static_cast<std::int64_t>(p.size()) <= prompt_len, "prompt ", k * gpu_batch_size + s,
                      " has ", p.size(), " tokens; prompts must have 1 to ", prompt_len, " tokens");
      const std::int64_t pad = prompt_len - static_cast<std::int64_t>(p.size());
      pb.pad_len[static_cast<std::size_t>(s)] = pad;
      std::copy(p.begin(), p.end(), pb.ids.begin() + s * prompt_len + pad);
    }
  }
  return out;
}

}  // namespace flexgen
