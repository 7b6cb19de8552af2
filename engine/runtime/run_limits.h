#pragma once
// Limits of the index types a run goes through, checked up front (by make_plan) so that a run too
// large for them is refused with one clear line instead of overflowing somewhere inside:
//   - tokens of one gpu batch, gpu_batch_size x prompt_len: at most 2^31 - 1 (cuBLAS's int
//     dimensions; the embedding and LayerNorm kernels launch one block per token row);
//   - attention units of one gpu batch, gpu_batch_size x num_heads: at most 2^31 - 1 (the
//     attention and top-k kernels launch one block per (sequence, head));
//   - prompt_len at most 65535 x 32 (the prefill attention kernel's grid.y: 32 queries per block);
//   - tasks of the block schedule (TaskId and the task fields are 32-bit): at most 2^31 - 1,
//     bounded by gen_len x (num_layers + 2) x (16 x num_gpu_batches + 2);
//   - bytes of the run (weights, the whole KV cache, activations): below 2^62, so that every
//     Bytes count of the plan, the memory plan and the schedule is exact in 64 bits.
// The positions check (prompt_len + gen_len <= max_positions) comes first, in make_plan.
#include <cstdint>

#include "engine/core/model_spec.h"
#include "engine/core/policy.h"
#include "engine/core/workload.h"

namespace flexgen {

inline constexpr std::int64_t kMaxKernelRows = 2147483647;        // 2^31 - 1
inline constexpr std::int64_t kMaxPrefillTokens = 65535 * 32;     // grid.y x queries per block
inline constexpr std::int64_t kMaxScheduleTasks = 2147483647;     // TaskId is std::int32_t
inline constexpr std::int64_t kMaxRunBytes = std::int64_t{1} << 62;

// Throws flexgen::Error "invalid run: ..." naming the product, its factors and the limit. Expects
// a validated spec and workload with prompt_len + gen_len <= spec.max_positions.
void check_run_limits(const ModelSpec& spec, const Workload& workload, const Policy& policy);

}  // namespace flexgen
