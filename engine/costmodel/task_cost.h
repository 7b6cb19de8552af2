#pragma once
// The time of one schedule task on its resource: the one place where bytes and FLOPs become
// seconds. Everything else in the cost model (the per-run estimate, the per-layer aggregate the LP
// optimises, the simulator's task durations) is a sum or a max of these.
//
//   link task (h2d, d2h, disk read, disk write):  bytes / that link's rate, and for a disk task
//     with disk_read/write_latency_s in the file, that latency per request it makes: 2 for a
//     cache read or write (the keys' region, then the values'), one per disk-homed tensor for a
//     weight read, 1 for a hidden state. A cache append of a few rows is a small request whose
//     time is mostly that latency (O_DIRECT rewrites its edge blocks), not its bytes.
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
// Two refinements apply when the hardware file has them (flexgen profile measures both):
//   gpu_dequant_bytes_per_s: 4-bit weights cost their dense bytes / that rate once per layer step
//     (the engine dequantizes a layer's weights once for the block; the product then reads them
//     dense), and a 4-bit cache its dequantized rows' dense bytes / gpu_cache_dequant_bytes_per_s
//     (measured on cache-row shapes; absent: the weights' rate) per decode task (attention then
//     reads them dense); without it both are priced as memory traffic as above;
//   cpu_cache_attention_flops_per_s: with a 4-bit cache, CPU attention runs at that rate (its
//     kernel dequantizes the rows as it reads them; absent: cpu_attention_flops_per_s);
//   cpu_sparse_attention_flops_per_s: top-k attention over an fp16 cache likewise (the selection
//     and the scattered value rows make its counted FLOPs slower than the dense kernel's);
//   gpu_task_overhead_s: every GPU compute task costs that much more (its kernel launches and
//     host work, which a decode step of a small batch does not hide).
// Every term is a linear function of the task's bytes and FLOPs (or a constant), so a sum of task
// costs is affine in the placement shares (what makes the LP's coefficients exact), but for the
// disk latency: a disk task exists (and pays it whole) as soon as any share is on disk, which the
// LP's mix of pure placements prorates by the share (layer_model.h) — a lower bound there; the
// per-run estimate and the simulator, which price the run's own tasks, pay it whole.
#include <vector>

#include "engine/core/hardware_spec.h"
#include "engine/core/units.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"

namespace flexgen {

struct TaskCost {
  Resource resource = Resource::kGpuCompute;
  Seconds seconds = 0;         // link + latency + gemm + attention + weight_dequant + cache_dequant + overhead
  Seconds link = 0;            // bytes over the link / its rate
  Seconds latency = 0;         // disk requests * the disk's per-request latency
  Seconds gemm = 0;            // matrix products (roofline of FLOPs and weight bytes)
  Seconds attention = 0;       // attention (roofline of FLOPs and cache bytes)
  Seconds weight_dequant = 0;  // 4-bit weights of the layer, once per layer step (measured rate only)
  Seconds cache_dequant = 0;   // 4-bit cache rows of the task's units (measured rate only)
  Seconds overhead = 0;        // the fixed time of a GPU compute task (gpu_task_overhead_s)
};

// Prices the tasks of one plan on one machine. Construction precomputes the weight bytes each
// layer's matrix products read, so cost() is cheap for schedules of any length.
class TaskCostModel {
 public:
  // `kind` matters only with a measured dequantization rate: zig-zag dequantizes a layer's 4-bit
  // weights once for the block (in gpu batch 0's `compute`), row-by-row once per batch.
  TaskCostModel(const Plan& plan, const HardwareSpec& hardware, ScheduleKind kind = ScheduleKind::kZigZag);

  TaskCost cost(const Task& task) const;

  // Bytes a GPU matrix-product task reads from GPU memory (weights, and for 4-bit weights the
  // decompression traffic).
  double gemm_bytes(const Task& task) const;
  // Requests a disk task makes (what disk_read/write_latency_s is paid for).
  double disk_requests(const Task& task) const;
  // Bytes of cache read per attention FLOP (1 for an fp16 cache, 2 for fp32; a 4-bit cache adds
  // the decompression traffic).
  double bytes_per_attention_flop() const { return bytes_per_attention_flop_; }

 private:
  const HardwareSpec& hardware_;
  std::vector<double> compute_gemm_bytes_;  // per schedule layer: bytes the `compute` task reads
  std::vector<double> post_gemm_bytes_;     // per schedule layer: bytes the `compute_post` task reads
  std::vector<double> q4_dense_bytes_;      // per schedule layer: dense bytes of its 4-bit weights
  std::vector<double> disk_weight_requests_;  // per schedule layer: its disk-homed tensors
  double bytes_per_attention_flop_ = 0;
  double cache_dequant_bytes_per_flop_ = 0; // dense bytes a 4-bit cache dequantizes per attention FLOP
  bool compressed_cache_ = false;           // 4-bit cache: CPU attention at cpu_cache_attention_flops_per_s
  bool sparse_ = false;                     // top-k over fp16 rows: at cpu_sparse_attention_flops_per_s
  ScheduleKind kind_;
};

// One task, for tests and one-off use (builds a TaskCostModel).
TaskCost task_cost(const Task& task, const Plan& plan, const HardwareSpec& hardware);

// Every task of a schedule, indexed by TaskId.
std::vector<TaskCost> task_costs(const Plan& plan, const Schedule& schedule, const HardwareSpec& hardware);

}  // namespace flexgen
