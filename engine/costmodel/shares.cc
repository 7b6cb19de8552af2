#include "engine/costmodel/shares.h"

#include <cassert>

namespace flexgen {

const char* layer_kind_name(LayerKind kind) {
  switch (kind) {
    case LayerKind::kEmbedding: return "embedding";
    case LayerKind::kDecoder: return "decoder";
    case LayerKind::kOutput: return "output";
  }
  return "?";
}

LayerKind layer_kind(const Plan& plan, std::int64_t schedule_layer) {
  assert(schedule_layer >= 0 && schedule_layer <= plan.spec.num_layers + 1);
  if (schedule_layer == 0) return LayerKind::kEmbedding;
  return plan.is_decoder_layer(schedule_layer) ? LayerKind::kDecoder : LayerKind::kOutput;
}

PlacementShares PlacementShares::uniform(const TierValues& weights, const TierValues& cache, Tier activations) {
  PlacementShares s;
  s.weights = {weights, weights, weights};
  s.cache = cache;
  s.activations = activations;
  return s;
}

PlacementShares PlacementShares::of_plan(const Plan& plan) {
  PlacementShares s;
  std::array<TierValues, 3> bytes{};
  for (std::size_t j = 0; j < plan.layers.size(); ++j) {
    TierValues& b = bytes[static_cast<std::size_t>(layer_kind(plan, static_cast<std::int64_t>(j)))];
    for (Tier t : kAllTiers) b[t] += static_cast<double>(plan.layers[j].home_bytes[t]);
  }
  for (std::size_t k = 0; k < 3; ++k) {
    const double total = bytes[k].sum();
    for (Tier t : kAllTiers) s.weights[k][t] = total > 0 ? bytes[k][t] / total : (t == Tier::kGpu ? 1.0 : 0.0);
  }
  const double units = static_cast<double>(plan.cache.units);
  for (Tier t : kAllTiers) {
    s.cache[t] = units > 0 ? static_cast<double>(plan.cache.units_on_tier(t)) / units : (t == Tier::kGpu ? 1.0 : 0.0);
  }
  s.activations = plan.activation_home;
  return s;
}

}  // namespace flexgen
