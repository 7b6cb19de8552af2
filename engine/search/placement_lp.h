#pragma once
// The LP of the policy search for one class (gpu batch size and switches in the LayerModel, a
// number of gpu batches, the activations' tier): the shares of each layer kind's weights and/or of
// the KV cache on CPU and disk (the GPU keeps the rest) that minimise the run's time
//   sum over (step group, layer kind) of count * T[group][kind],
//   T[group][kind] >= busy of each resource (overlap) or >= their sum (no overlap),
// subject to the memory model on every tier (the GPU's side with the compute workspace). The time
// coefficients are the LayerModel evaluated at a unit placement minus its value at the base
// placement (it is affine in the shares, so this is exact, not a linearisation); the memory rows
// are the memory model's own (MemoryForm). Each layer kind has its own weight shares, so the LP
// relaxes every placement a Policy can express (whose layer kinds split differently under one
// percent setting): its optimum bounds what whole tensors and whole cache units can achieve.
#include <cstdint>

#include "engine/costmodel/layer_model.h"
#include "engine/costmodel/shares.h"
#include "engine/search/linear_program.h"

namespace flexgen {

struct PlacementLp {
  bool feasible = false;
  Seconds seconds = 0;     // the run's time at `shares` (0 for a feasibility check)
  PlacementShares shares;  // the optimum
};

// `fixed` gives the activations' tier and the placement of whatever is not free. A tier with
// capacity 0 (the disk under --no-disk) gets no variables. The LP keeps a 1e-6 fraction of every
// tier free against rounding. `per_kind_weights` false gives every layer kind the same weight
// shares (FlexGen's LP, and what a brute-force grid can check). A `workspace` kept across calls
// of the same kind (same model, free kinds of data, activation tier and flags) warm-starts GLPK.
// Throws flexgen::Error if GLPK fails.
PlacementLp solve_placement_lp(const LayerModel& model, const PlacementShares& fixed, bool free_weights,
                               bool free_cache, std::int64_t num_gpu_batches, const TierValues& capacities,
                               bool feasibility_only = false, bool per_kind_weights = true,
                               LinearProgram* workspace = nullptr);

}  // namespace flexgen
