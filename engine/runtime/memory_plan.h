#pragma once
// Every buffer a run allocates on each tier, computed from the Plan before anything is allocated.
// The runtime allocates exactly these buffers, once, at the start of a run, so a plan that does not
// fit is refused before the first byte is taken, and the peak use of each tier is the plan's total.
//
// Counted: weights at home, the two weight slots on the GPU (off-GPU weights of a layer are copied
// in), the KV cache at home, the two GPU cache slots (cached positions of off-GPU units), the
// activations (at home, plus two GPU slots when home is not the GPU), the CPU staging buffers that
// disk traffic passes through, and the CPU buffers of delegated attention. Not counted: the
// backend's compute workspace (the host backend's float32 temporaries; the CUDA backend adds its
// own workspace entry).
#include <string>
#include <vector>

#include "engine/runtime/plan.h"
#include "engine/runtime/tier.h"

namespace flexgen {

enum class BufferRole : std::uint8_t {
  kWeightHome, kWeightSlot, kWeightStaging,
  kCacheHome, kCacheSlot, kCacheStaging,
  kActHome, kActSlot, kActStaging,
  kDelegation,
  kWorkspace,  // a backend's compute workspace and alignment padding (the CUDA backend's)
};

struct BufferRequest {
  BufferRole role;
  Tier tier;
  Bytes bytes;
  std::string label;
};

struct MemoryPlan {
  std::vector<BufferRequest> buffers;
  TierBytes total;
};

MemoryPlan plan_memory(const Plan& plan);

// Throws flexgen::Error when a tier's total exceeds its budget: which tier, by how much, and what
// to change.
void check_budgets(const MemoryPlan& memory, const TierBytes& budgets);

// Sizes shared by the planner and the runtime.
Bytes weight_slot_bytes(const Plan& plan);    // the largest off-GPU weight bytes of any layer
Bytes weight_staging_bytes(const Plan& plan); // the largest disk weight bytes of any layer
std::int64_t cache_slot_units(const Plan& plan);  // off-GPU units that pass through the GPU slot

}  // namespace flexgen
