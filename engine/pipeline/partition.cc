#include "engine/pipeline/partition.h"

#include <string>

#include "engine/core/error.h"

namespace flexgen {

std::vector<std::int32_t> pipeline_stages(std::int64_t num_decoder_layers, std::int32_t num_stages) {
  const std::int64_t L = num_decoder_layers;
  FLEXGEN_REQUIRE(num_stages >= 1 && num_stages <= L, "invalid pipeline: ", num_stages, " stages for a model of ", L,
                  " decoder layers (each stage needs at least one)");
  std::vector<std::int32_t> stage(static_cast<std::size_t>(L + 2), 0);
  std::int64_t j = 1;
  for (std::int32_t s = 0; s < num_stages; ++s) {
    const std::int64_t size = L / num_stages + (s < L % num_stages ? 1 : 0);
    for (std::int64_t n = 0; n < size; ++n) stage[static_cast<std::size_t>(j++)] = s;
  }
  stage.back() = num_stages - 1;
  return stage;
}

std::vector<std::int32_t> pipeline_stages(const Plan& plan, std::int32_t num_stages) {
  return pipeline_stages(plan.spec.num_layers, num_stages);
}

LayerRange stage_layers(const std::vector<std::int32_t>& stage_of_layer, std::int32_t stage) {
  LayerRange r{-1, -1};
  for (std::size_t j = 0; j < stage_of_layer.size(); ++j) {
    if (stage_of_layer[j] != stage) continue;
    if (r.first < 0) r.first = static_cast<std::int32_t>(j);
    FLEXGEN_REQUIRE(r.last < 0 || r.last == static_cast<std::int32_t>(j) - 1, "invalid pipeline: the layers of stage ",
                    stage, " are not contiguous");
    r.last = static_cast<std::int32_t>(j);
  }
  FLEXGEN_REQUIRE(r.first >= 0, "invalid pipeline: stage ", stage, " holds no layer");
  return r;
}

MemoryPlan stage_memory(const Plan& plan, const MemoryPlan& whole, const std::vector<std::int32_t>& stage_of_layer,
                        std::int32_t s) {
  MemoryPlan m;
  auto add = [&m](BufferRole role, Tier tier, Bytes bytes, std::string label) {
    if (bytes <= 0) return;
    m.buffers.push_back({role, tier, bytes, std::move(label)});
    m.total[tier] += bytes;
  };
  const CachePlan& c = plan.cache;
  for (std::size_t j = 0; j < plan.layers.size(); ++j) {
    if (stage_of_layer[j] != s) continue;
    for (const PlannedTensor& t : plan.layers[j].tensors) {
      add(BufferRole::kWeightHome, t.home, t.bytes, str_cat("weight layer ", j, " ", t.name));
    }
    if (!plan.is_decoder_layer(static_cast<std::int64_t>(j))) continue;
    for (std::int64_t k = 0; k < plan.policy.num_gpu_batches(); ++k) {
      for (Tier tier : kAllTiers) {
        // Key and value.
        add(BufferRole::kCacheHome, tier, 2 * c.units_on_tier(tier) * c.capacity * c.row_bytes,
            str_cat("cache layer ", j, " batch ", k, " ", tier_name(tier)));
      }
    }
  }
  for (const BufferRequest& b : whole.buffers) {
    if (b.role != BufferRole::kWeightHome && b.role != BufferRole::kCacheHome) add(b.role, b.tier, b.bytes, b.label);
  }
  return m;
}

}  // namespace flexgen
