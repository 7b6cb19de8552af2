#pragma once
// The time of one schedule task on its resource: the one place where bytes and FLOPs become
// seconds. Everything else in the cost model (the per-run estimate, the per-layer aggregate the LP
// optimises, the simulator's task durations) is a sum or a max of these.
//
//   link task (h2d, d2h, disk read, disk write):  bytes / that link's rate
//   GPU compute:  gemm + attention, where
//       gemm      = max(gemm_flops / gemm rate, gemm bytes / gpu_memory_bytes_per_s)
//       attention = max(attention_flops / attention rate, attention bytes / gpu_memory_bytes_per_s)
//     with the prefill rates for token 0 and the decode rates after it. gemm bytes are the weights
//     the task's matrix products read (q/k/v projections in `compute`, out projection and MLP in
//     `compute_post`, the LM head in the output layer), in the compute dtype, plus for 4-bit
//     weights the decompression (read the packed bytes, write the dense ones). attention bytes are
//     the cache rows read: each (unit, position) row costs 2 * head_dim FLOPs, so bytes =
//     attention_flops * bytes_per_attention_flop; for a 4-bit cache a row is read packed and
//     decompressed (written and read again dense). In prefill the attention term is FLOPs only
//     (the rows were just computed and are reused across queries).
//   CPU attention (delegation):  max(attention_flops / cpu_attention_flops_per_s,
//                                    attention bytes / cpu_memory_bytes_per_s)
// Every term is a linear function of the task's bytes and FLOPs, so a sum of task costs is linear
// in the placement shares (what makes the LP's coefficients exact).
#include <vector>

#include "engine/core/hardware_spec.h"
#include "engine/core/units.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"

namespace flexgen {

struct TaskCost {
  Resource resource = Resource::kGpuCompute;
  Seconds seconds = 0;    // link + gemm + attention
  Seconds link = 0;       // bytes over the link / its rate
  Seconds gemm = 0;       // matrix products (roofline of FLOPs and weight bytes)
  Seconds attention = 0;  // attention (roofline of FLOPs and cache bytes)
};

// Prices the tasks of one plan on one machine. Construction precomputes the weight bytes each
// layer's matrix products read, so cost() is cheap for schedules of any length.
class TaskCostModel {
 public:
  TaskCostModel(const Plan& plan, const HardwareSpec& hardware);

  TaskCost cost(const Task& task) const;

  // Bytes a GPU matrix-product task reads from GPU memory (weights, and for 4-bit weights the
  // decompression traffic).
  double gemm_bytes(const Task& task) const;
  // Bytes of cache read per attention FLOP (1 for an fp16 cache, 2 for fp32; a 4-bit cache adds
  // the decompression traffic).
  double bytes_per_attention_flop() const { return bytes_per_attention_flop_; }

 private:
  const HardwareSpec& hardware_;
  std::vector<double> compute_gemm_bytes_;  // per schedule layer: bytes the `compute` task reads
  std::vector<double> post_gemm_bytes_;     // per schedule layer: bytes the `compute_post` task reads
  double bytes_per_attention_flop_ = 0;
};

// One task, for tests and one-off use (builds a TaskCostModel).
TaskCost task_cost(const Task& task, const Plan& plan, const HardwareSpec& hardware);

// Every task of a schedule, indexed by TaskId.
std::vector<TaskCost> task_costs(const Plan& plan, const Schedule& schedule, const HardwareSpec& hardware);

}  // namespace flexgen
