#pragma once
// Pipeline parallelism over G GPUs ("stages"), as FlexGen's dist_flex_opt.py: each stage holds a
// contiguous range of decoder layers and runs the block schedule over them with its own memory
// hierarchy; hidden states go from stage s to s + 1 and the sampled tokens from the last stage back
// to stage 0 (docs/multi-gpu.md). This file is the partitioning, shared by the engine's stage
// runtimes and the simulator's pipeline model (simulator/pipeline.h): one function, one answer.
//
// Layers to stages: the L decoder layers split into G contiguous ranges of L / G layers, the first
// L % G stages one more; the input embedding (schedule layer 0) joins stage 0 and the output layer
// (schedule layer L + 1) stage G - 1.
#include <cstdint>
#include <vector>

#include "engine/runtime/memory_plan.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"

namespace flexgen {

// Schedule layer (0 .. L + 1) -> stage. Throws flexgen::Error unless 1 <= num_stages <= L.
std::vector<std::int32_t> pipeline_stages(std::int64_t num_decoder_layers, std::int32_t num_stages);
std::vector<std::int32_t> pipeline_stages(const Plan& plan, std::int32_t num_stages);

// The schedule layers of `stage` (contiguous by construction). Throws flexgen::Error for a stage
// that holds no layer.
LayerRange stage_layers(const std::vector<std::int32_t>& stage_of_layer, std::int32_t stage);

// What stage s allocates up front: its own layers' weights and KV cache at home, and its own copy
// of every other buffer of the single-GPU memory plan `whole` (weight, cache and activation slots
// and staging, activations at home, delegation buffers; the weight slots sized for the largest
// layer of the whole model, slightly conservative). The stage runtimes allocate exactly this; the
// simulator checks each stage's budgets with it.
MemoryPlan stage_memory(const Plan& plan, const MemoryPlan& whole, const std::vector<std::int32_t>& stage_of_layer,
                        std::int32_t stage);

}  // namespace flexgen
