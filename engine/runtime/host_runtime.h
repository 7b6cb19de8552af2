#pragma once
// The offloading runtime on the host backend: the whole system of FlexGen — three memory tiers,
// placement from a Policy, the block schedule, double buffers, 4-bit compression, top-k sparse
// attention, CPU delegation — with the "GPU" tier a separate pool of host memory with its own
// budget, so that placement, capacity and traffic behave exactly as on a GPU and every path is
// tested without one. The CUDA backend plugs into the same Plan, Schedule and Executor.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/model/llama_weights.h"
#include "engine/model/opt_weights.h"
#include "engine/runtime/executor.h"
#include "engine/runtime/memory_plan.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"

namespace flexgen {

struct PipelineStage;  // engine/pipeline/stage.h

struct RuntimeOptions {
  TierBytes budgets;                    // --gpu-mem, --cpu-mem, --disk-mem
  std::filesystem::path offload_dir;    // --offload-dir (disk tier)
  ScheduleKind schedule = ScheduleKind::kZigZag;
  bool keep_task_timings = false;       // fill RunReport::task_timings
  bool keep_op_timings = false;         // CUDA backend: fill RunReport::op_timings (events around each op)
  // Pipeline parallelism (docs/multi-gpu.md): run only this stage's layers, with its own memory
  // plan (stage_memory) and schedule (make_schedule over its layer range), exchanging hidden states
  // and tokens with the other stages through its channel. Null: the whole model.
  std::shared_ptr<const PipelineStage> stage;
};

// The shape of one run within the plan's: prompts of up to prompt_len tokens, gen_len steps.
// Zero fields mean the plan's value. A run may be smaller than the plan (prompt_len <= the
// plan's, prompt_len + gen_len <= the plan's prompt_len + gen_len, the cache capacity): it reuses
// the buffers allocated for the plan, so one runtime (one placement of the weights) serves blocks
// of different prompt lengths, as `flexgen batch` needs.
struct BlockShape {
  std::int64_t prompt_len = 0;
  std::int64_t gen_len = 0;
};

// GPU time of one kind of op in one phase (CUDA backend, RuntimeOptions::keep_op_timings): the
// summed time between CUDA events recorded on the compute stream just before and just after each
// call. Ops do not overlap on that stream, so their sum is the compute stream's busy time.
struct OpTiming {
  std::string op;         // "qkv_proj", "attention", ... (docs/runtime.md)
  bool decode = false;    // false: prefill (token 0); true: decode steps
  std::int64_t calls = 0;
  double busy_s = 0;
};

struct RunReport {
  // Generated tokens per sequence (block order: batch 0's sequences first), truncated after the
  // stop token when one is set.
  std::vector<std::vector<std::int32_t>> tokens;
  double prefill_s = 0;        // from the start to the end of the last prefill task
  double decode_s = 0;         // the rest
  double total_s = 0;
  // Tokens computed: gpu batch size x the steps each batch ran (gen_len, or fewer when every
  // sequence of a batch produced the stop token: the rest of its work is skipped, EarlyStop).
  std::int64_t generated_tokens = 0;
  std::int64_t tasks_skipped = 0;     // tasks skipped by the early finish
  double throughput_tok_s = 0;        // generated_tokens / total_s
  double decode_throughput_tok_s = 0; // block size x (gen_len - 1) / decode_s
  TierBytes peak;                     // bytes allocated on each tier (the peak: all up front)
  TierBytes planned;                  // what the memory plan predicted
  LinkBytes moved;                    // bytes the runtime moved over each link
  Bytes gpu_device_bytes = 0;         // CUDA backend: device memory the runtime holds (cudaMemGetInfo)
  std::vector<TaskTiming> task_timings;
  std::vector<OpTiming> op_timings;   // CUDA backend with keep_op_timings; empty otherwise
};

class HostRuntime {
 public:
  // Checks the plan against the budgets (throws flexgen::Error before allocating anything), then
  // allocates every buffer and places the weights on their home tiers.
  HostRuntime(const Plan& plan, const OptWeights& weights, const RuntimeOptions& options);
  // The same for a LLaMA plan (plan.spec.family == kLlama).
  HostRuntime(const Plan& plan, const LlamaWeights& weights, const RuntimeOptions& options);
  ~HostRuntime();
  HostRuntime(const HostRuntime&) = delete;
  HostRuntime& operator=(const HostRuntime&) = delete;

  // Runs the block: `prompts` holds block_size prompts of at most prompt_len tokens each (left-
  // padded to prompt_len). Sampling per sequence is seeded from `sampling.seed` and the sequence's
  // index in the block. With a `shape` smaller than the plan's, prompt_len and gen_len are the
  // shape's and the run follows the schedule of make_plan(spec, that workload, same policy) in the
  // buffers of the plan; throws flexgen::Error for a shape that does not fit the plan.
  RunReport generate(const std::vector<std::vector<std::int32_t>>& prompts, const SamplingConfig& sampling,
                     std::optional<std::int32_t> stop_token, const BlockShape& shape = {});

  const Schedule& schedule() const;
  const MemoryPlan& memory_plan() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flexgen
