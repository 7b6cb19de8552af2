#pragma once
// Multi-GPU pipeline parallelism (the FlexGen paper's section 6), simulated over the single-GPU
// Schedule: G GPUs ("stages") each hold a contiguous range of layers and run their part of the
// block schedule with their own resources and double buffers; hidden states cross an inter-GPU
// link between stages.
//
// Layers to stages as FlexGen's dist_flex_opt.py: the decoder layers split into G contiguous
// ranges of L / G layers, the first L % G stages one more; the input embedding joins stage 0 and
// the output layer (LM head) stage G - 1.
//
// Micro-batches: the block's gpu batches. Each stage runs its tasks in the single-GPU list order
// restricted to its layers; the hidden state of (token i, gpu batch k) crosses to the next stage
// as soon as that stage's last layer has produced it, so batch k of token i can run on stage s + 1
// while batch k + 1 runs on stage s. The tokens sampled by the last stage return to stage 0 over a
// link for the next token's embedding. (FlexGen's own dist_flex_opt.py sends a stage's hidden
// states after the whole block of gpu batches and keeps G blocks in flight; see docs/simulator.md.)
//
// The task graph: every task of the schedule runs on its resource of its layer's stage. A
// dependency within a stage is kept. A data dependency across a boundary (a layer's input on the
// previous layer's output, a decode step's embedding on the previous step's sampled tokens) goes
// through an added transfer task on the link lane from the producing stage to the consuming one:
// the transfer waits for every producer task that a consumer task waited for, and the consumer
// tasks wait for the transfer. A double-buffer dependency across a boundary (a slot's previous
// user two visits back belongs to another stage in the single-GPU order) is moved to the same
// task kind of the visit two slot-uses back on the consumer's own stage, as the single-GPU
// generator would emit it for a GPU holding only that stage's layers.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/pipeline/partition.h"  // pipeline_stages, stage_memory: shared with the engine
#include "engine/runtime/memory_plan.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"
#include "simulator/duration_model.h"
#include "simulator/simulator.h"
#include "simulator/task_span.h"
#include "simulator/trace.h"

namespace flexgen {

struct PipelineOptions {
  std::int32_t num_stages = 1;  // GPUs; 1 <= num_stages <= decoder layers
  // Inter-GPU link: a transfer of b bytes takes link_latency_ns + ceil(b / link_bytes_per_s) s,
  // one transfer at a time per direction of each stage boundary. Required when num_stages > 1.
  BytesPerSecond link_bytes_per_s = 0;
  Nanoseconds link_latency_ns = 0;
  // One host for all GPUs: CPU compute, disk read and disk write are one lane each, shared by every
  // stage (in list order), and the CPU and disk tiers hold every stage's buffers. Default: every
  // GPU has its own host resources and memory (FlexGen ran one process per GPU).
  bool shared_host = false;
  // Capacities of each GPU (gpu tier) and of each host (cpu, disk tiers; the one host when shared).
  TierBytes capacities = unlimited_capacities();
  std::optional<double> shared_pcie_fraction;  // per GPU, as SimOptions::shared_pcie_fraction
};

// A transfer of a hidden state (or of the sampled tokens, into layer 0) between stages.
struct PipelineTransfer {
  std::int32_t token = 0, batch = 0;
  std::int32_t layer = 0;  // the consuming layer (first layer of to_stage)
  std::int32_t from_stage = 0, to_stage = 0;
  Bytes bytes = 0;  // activations of the gpu batch; int32 token ids into layer 0
};

struct PipelineLane {
  std::string name;         // "gpu0 h2d", "host disk_read", "link 0->1", "gpu1 serial"
  std::int32_t stage = -1;  // its GPU, or -1 (shared host lane, link)
  Nanoseconds busy = 0;
  Nanoseconds prefill_busy = 0, decode_busy = 0;  // by the task's token (transfers: the consumer's)
  double utilization = 0;                         // busy / makespan
};

struct PipelineResult {
  std::int32_t num_stages = 1;
  std::vector<std::int32_t> stage_of_layer;  // per schedule layer (0 .. L + 1)
  std::vector<PipelineLane> lanes;
  std::vector<std::int32_t> task_lane;  // per schedule task
  std::vector<TaskSpan> tasks;          // per schedule task
  std::vector<PipelineTransfer> transfers;
  std::vector<std::int32_t> transfer_lane;
  std::vector<TaskSpan> transfer_spans;
  // As SimResult (prefill: the last task or transfer of token 0).
  Nanoseconds makespan = 0, prefill_ns = 0, decode_ns = 0;
  std::int64_t generated_tokens = 0;
  double throughput_tok_s = 0, decode_throughput_tok_s = 0;
  std::int32_t prefill_critical_lane = 0, decode_critical_lane = 0;  // most busy; ties: the first
  // What each GPU's process allocates up front: its layers' weights and KV cache at home, and its
  // own copy of every other buffer of the single-GPU plan (weight, cache and activation slots and
  // staging, activations at home, delegation buffers; the weight slots sized for the largest
  // layer of the whole model).
  std::vector<MemoryPlan> stage_memory;
  std::int64_t events = 0;
};

// Throws flexgen::Error for bad options (stages, link bandwidth, latency, PCIe fraction), a stage
// or host over its capacities (the engine's budget message, prefixed with the stage), a negative
// duration, or a schedule that does not belong to the plan.
PipelineResult simulate_pipeline(const Plan& plan, const Schedule& schedule, const DurationModel& model,
                                 const PipelineOptions& options);
PipelineResult simulate_pipeline(const Plan& plan, const Schedule& schedule, const std::vector<Nanoseconds>& durations,
                                 const PipelineOptions& options);

// The trace of a pipeline run: one track per lane; transfers appear as "transfer" slices (id =
// the transfer's index, bytes = its bytes).
TraceProcess trace_process(const std::string& process_name, const Schedule& schedule, const PipelineResult& result);

}  // namespace flexgen
