#pragma once
// Placement as fractions: the share of each kind of data on each tier. The cost model's per-layer
// aggregate and its memory model are affine in these shares, which is what lets the policy search
// hand them to an LP. A real Plan places whole tensors (FlexGen's midpoint rule) and whole cache
// units, so its effective shares (PlacementShares::of_plan) differ from its percent numbers.
#include <array>
#include <cstdint>

#include "engine/runtime/plan.h"
#include "engine/runtime/tier.h"

namespace flexgen {

// The three kinds of schedule layer: 0 the input embedding, 1..L the decoder layers (all alike),
// L+1 the output layer (final LayerNorm and the LM head).
enum class LayerKind : std::uint8_t { kEmbedding, kDecoder, kOutput };
inline constexpr std::array<LayerKind, 3> kAllLayerKinds = {LayerKind::kEmbedding, LayerKind::kDecoder,
                                                            LayerKind::kOutput};
const char* layer_kind_name(LayerKind kind);  // "embedding", "decoder", "output"
LayerKind layer_kind(const Plan& plan, std::int64_t schedule_layer);

// Doubles indexed by Tier: shares of one kind of data, or bytes per tier in the memory model.
struct TierValues {
  std::array<double, 3> values{};
  double& operator[](Tier t) { return values[static_cast<std::size_t>(t)]; }
  double operator[](Tier t) const { return values[static_cast<std::size_t>(t)]; }
  double sum() const { return values[0] + values[1] + values[2]; }
  bool operator==(const TierValues&) const = default;
  static TierValues all_on(Tier t) {
    TierValues v;
    v[t] = 1.0;
    return v;
  }
};

struct PlacementShares {
  std::array<TierValues, 3> weights = {TierValues::all_on(Tier::kGpu), TierValues::all_on(Tier::kGpu),
                                       TierValues::all_on(Tier::kGpu)};  // by LayerKind
  TierValues cache = TierValues::all_on(Tier::kGpu);
  Tier activations = Tier::kGpu;

  TierValues& weights_of(LayerKind k) { return weights[static_cast<std::size_t>(k)]; }
  const TierValues& weights_of(LayerKind k) const { return weights[static_cast<std::size_t>(k)]; }

  // The same weight shares for every layer kind (what the LP optimises over).
  static PlacementShares uniform(const TierValues& weights, const TierValues& cache, Tier activations);
  // The effective shares of a plan: bytes of each layer kind's weights on each tier over its total,
  // cache units on each tier over all units, and the activations' home.
  static PlacementShares of_plan(const Plan& plan);
};

}  // namespace flexgen
