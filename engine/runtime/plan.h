#pragma once
// The Plan: where every tensor of a run lives and how many bytes each holds, derived once from
// ModelSpec + Workload + Policy. The schedule generator, the runtime's allocations, the cost model
// and the simulator all read sizes from here, so the bytes they count agree by construction.
//
// Schedule layers: 0 is the input embedding, 1..L the decoder layers, L+1 the output layer (final
// normalisation and the LM head: for OPT tied to the token embedding, for LLaMA tied or not). Weights are placed per layer as whole
// tensors by FlexGen's rule: walking the layer's tensors in HF order, a tensor goes to the tier in
// which the midpoint of its cumulative byte share falls, tiers ordered disk, CPU, GPU. The KV cache
// of each (decoder layer, gpu batch) is split across tiers by "units": one unit is one (sequence,
// key/value head) pair (with grouped-query attention, LLaMA, num_heads / num_kv_heads query heads
// read each unit); units [0, g) live on the GPU, [g, g + c) on the CPU, the rest on disk. Activations
// between layers live on one tier.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/model_spec.h"
#include "engine/core/policy.h"
#include "engine/core/workload.h"
#include "engine/runtime/tier.h"
#include "engine/tensor/tensor.h"

namespace flexgen {

enum class Encoding : std::uint8_t { kF32, kF16, kQ4 };  // how a tensor is stored on its tier
const char* encoding_name(Encoding e);

struct PlannedTensor {
  // HF name relative to "model.decoder." (OPT, e.g. "layers.0.fc1.weight") or "model." (LLaMA,
  // e.g. "layers.0.mlp.up_proj.weight"; the untied LM head is "lm_head.weight")
  std::string name;
  Shape shape;
  Encoding encoding = Encoding::kF32;
  Bytes bytes = 0;   // stored bytes (4-bit: packed nibbles plus per-group min and scale)
  Tier home = Tier::kGpu;
};

struct PlannedLayer {
  std::vector<PlannedTensor> tensors;
  TierBytes home_bytes;                  // bytes of this layer's weights on each tier
  Bytes load_bytes() const { return home_bytes[Tier::kCpu] + home_bytes[Tier::kDisk]; }
};

struct CachePlan {
  std::int64_t units = 0;                   // gpu_batch_size * kv_heads per (layer, batch)
  std::int64_t queries_per_unit = 1;        // query heads reading each unit (num_heads / kv_heads)
  std::int64_t units_on[3] = {0, 0, 0};     // per Tier
  std::int64_t capacity = 0;                // positions: prompt_len + gen_len - 1
  Bytes row_bytes = 0;                      // one position of one unit, key or value (head_dim values)
  std::int64_t units_on_tier(Tier t) const { return units_on[static_cast<int>(t)]; }
};

struct Plan {
  ModelSpec spec;
  Workload workload;
  Policy policy;
  Encoding weight_dtype = Encoding::kF16;   // the model's dtype (F32 or F16)
  std::vector<PlannedLayer> layers;         // num_layers + 2
  CachePlan cache;
  Tier activation_home = Tier::kGpu;
  Bytes activation_bytes_per_token = 0;     // hidden_size values of the model dtype

  std::int64_t num_schedule_layers() const { return static_cast<std::int64_t>(layers.size()); }
  bool is_decoder_layer(std::int64_t j) const { return j >= 1 && j <= spec.num_layers; }

  // Cache bytes (key and value together) for `positions` positions of `units` units.
  Bytes cache_bytes(std::int64_t units, std::int64_t positions) const {
    return 2 * units * positions * cache.row_bytes;
  }
  // Activation bytes of one gpu batch over `tokens` positions.
  Bytes activation_bytes(std::int64_t tokens) const {
    return policy.gpu_batch_size() * tokens * activation_bytes_per_token;
  }
};

// Builds the plan; throws flexgen::Error for a policy the runtime cannot carry out.
Plan make_plan(const ModelSpec& spec, const Workload& workload, const Policy& policy);

}  // namespace flexgen
