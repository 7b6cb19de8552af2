#pragma once
// The block schedule as data: a list of tasks, each on one resource, with explicit dependencies.
// Row-by-row and zig-zag differ only in the order in which (token, layer, batch) visits are made;
// one generator emits both. The engine's executor runs the list; the simulator replays it; the
// cost model prices each task. There is no second copy of the generation loop anywhere.
//
// Tokens: step 0 is the prefill (all prompt positions), step i >= 1 a decode step feeding the
// i-th generated token. A run of gen_len tokens has gen_len steps; the last generated token is
// never fed back, so its KV is never stored.
//
// Order of emission, as FlexGen issues work: before the compute of visit (i, j, k) come the loads
// of the next weights (at the first batch of a layer) and of the next batch's cache and activation;
// after it, the stores of this visit. With overlap off the executor runs the list in order; with
// overlap on each resource runs its own tasks in list order as soon as their dependencies are done,
// with two slots (double buffers) for weights, cache and activations.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/units.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/tier.h"

namespace flexgen {

enum class ScheduleKind : std::uint8_t { kRowByRow, kZigZag };
const char* schedule_kind_name(ScheduleKind kind);  // "row-by-row", "zig-zag"

enum class TaskKind : std::uint8_t {
  kWeightRead,     // disk -> CPU staging: disk-homed weights of a layer            (disk_read)
  kWeightLoad,     // CPU -> GPU weight slot: CPU- and disk-homed weights            (h2d)
  kCacheRead,      // disk -> CPU staging: disk-homed cache units                    (disk_read)
  kCacheLoad,      // CPU -> GPU cache slot: cached positions of off-GPU units       (h2d)
  kActRead,        // disk -> CPU staging: a batch's hidden state                    (disk_read)
  kActLoad,        // CPU -> GPU activation slot                                     (h2d)
  kCompute,        // GPU: embedding; LN + QKV + attention over GPU-side units; or LM head + sampling (gpu_compute)
  kValueGather,    // CPU -> GPU: the top-k value rows of off-GPU units (sparse)      (h2d)
  kDelegateStore,  // GPU -> CPU: query and new key/value of CPU-delegated units     (d2h)
  kCpuAttention,   // CPU: decode attention over CPU-homed units (delegation)        (cpu_compute)
  kDelegateLoad,   // CPU -> GPU: attention output of CPU-delegated units            (h2d)
  kComputePost,    // GPU: finish attention, output projection, MLP (decoder layers) (gpu_compute)
  kCacheStore,     // GPU -> CPU: new cache rows of off-GPU units                    (d2h)
  kCacheWrite,     // CPU staging -> disk: new rows of disk-homed units              (disk_write)
  kActStore,       // GPU -> CPU: a batch's hidden state                             (d2h)
  kActWrite,       // CPU staging -> disk                                            (disk_write)
};
inline constexpr int kNumTaskKinds = 16;
const char* task_kind_name(TaskKind kind);
Resource task_resource(TaskKind kind);

using TaskId = std::int32_t;

struct Task {
  TaskKind kind{};
  std::int32_t token = 0;   // step i
  std::int32_t layer = 0;   // schedule layer j (0 embedding, 1..L decoder, L+1 output)
  std::int32_t batch = 0;   // gpu batch k; -1 for per-layer weight tasks
  // Double-buffer slots of the visit (-1 where the visit uses none): weights of its layer, cache
  // of its (layer, batch), activations of its batch.
  std::int8_t weight_slot = -1, cache_slot = -1, act_slot = -1;
  LinkBytes bytes;          // bytes over the task's link (one of the four fields, or none)
  Flops gemm_flops = 0;     // matrix products on the task's compute resource
  Flops attention_flops = 0;  // attention (scores and weighted sums)
  std::int64_t positions = 0;  // cache positions attended to (attention tasks) or rows moved
  std::vector<TaskId> deps; // tasks that must be done first; all earlier in the list

  Resource resource() const { return task_resource(kind); }
};

// Schedule layers [first, last] (inclusive; 0 is the embedding, L + 1 the output layer): the part
// of the model one pipeline stage holds (engine/pipeline/partition.h). last = -1 means L + 1.
struct LayerRange {
  std::int32_t first = 0;
  std::int32_t last = -1;
};

struct Schedule {
  ScheduleKind kind = ScheduleKind::kZigZag;
  bool overlap = true;
  std::vector<Task> tasks;

  LinkBytes total_bytes() const;
  // Tasks of a kind, for tests and reports.
  std::int64_t count(TaskKind kind) const;
};

// Generates the schedule for a plan. Row-by-row runs each gpu batch through every token and layer
// before the next batch starts (weights loaded once per batch); zig-zag runs the block of
// num_gpu_batches batches through each layer (weights loaded once per layer per block).
Schedule make_schedule(const Plan& plan, ScheduleKind kind);

// The schedule of one pipeline stage: what the generator emits for a GPU that holds only the
// schedule layers `layers` (its weight steps, slots and prefetches counted among its own visits).
// The hidden state entering the range's first layer comes from the previous stage (or, into the
// embedding at a decode step, the tokens from the last stage): that visit has no producer in the
// list and no activation load; the hidden state leaving its last layer goes to the next stage: no
// activation store. With the whole range this is make_schedule(plan, kind). Throws
// flexgen::Error for a range outside 0 .. L + 1.
Schedule make_schedule(const Plan& plan, ScheduleKind kind, LayerRange layers);

}  // namespace flexgen
