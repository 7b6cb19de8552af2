#pragma once
// One stage of a pipeline as a runtime sees it (RuntimeOptions::stage): which layers it holds, its
// channel to the other stages, and optionally a device link for the hidden states.
#include <cstdint>
#include <vector>

#include "engine/pipeline/partition.h"
#include "engine/pipeline/stage_channel.h"

namespace flexgen {

class DeviceLink;  // engine/cuda/device_link.cuh (CUDA backend)

struct PipelineStage {
  std::int32_t index = 0;  // this stage, 0 .. count - 1
  std::int32_t count = 1;  // stages (GPUs)
  std::vector<std::int32_t> stage_of_layer;  // pipeline_stages(plan, count)
  LayerRange layers;                         // this stage's schedule layers
  StageChannel* channel = nullptr;           // to the other stages (required when count > 1)
  DeviceLink* device_link = nullptr;         // CUDA backend: hidden states over NCCL; null: in the channel

  bool is_first() const { return index == 0; }
  bool is_last() const { return index == count - 1; }
  bool holds(std::int64_t layer) const { return layer >= layers.first && layer <= layers.last; }
  // The first layer of a stage after the first receives its input from the previous stage; the last
  // layer of a stage before the last sends its output to the next one.
  bool receives_hidden(std::int64_t layer) const { return index > 0 && layer == layers.first; }
  bool sends_hidden(std::int64_t layer) const { return index < count - 1 && layer == layers.last; }
};

// Stage `index` of `count` for the plan; throws flexgen::Error for an invalid pipeline or a missing
// channel.
PipelineStage make_pipeline_stage(const Plan& plan, std::int32_t count, std::int32_t index, StageChannel* channel,
                                  DeviceLink* device_link = nullptr);

}  // namespace flexgen
