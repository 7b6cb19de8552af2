#include "engine/runtime/memory_plan.h"

#include <algorithm>

#include "engine/core/error.h"
#include "engine/core/format.h"

namespace flexgen {

Bytes weight_slot_bytes(const Plan& plan) {
  Bytes most = 0;
  for (const PlannedLayer& l : plan.layers) most = std::max(most, l.load_bytes());
  return most;
}

Bytes weight_staging_bytes(const Plan& plan) {
  Bytes most = 0;
  for (const PlannedLayer& l : plan.layers) most = std::max(most, l.home_bytes[Tier::kDisk]);
  return most;
}

std::int64_t cache_slot_units(const Plan& plan) {
  // Prefill passes every off-GPU unit through the slot (delegation is a decode-only path).
  return plan.cache.units_on_tier(Tier::kCpu) + plan.cache.units_on_tier(Tier::kDisk);
}

MemoryPlan plan_memory(const Plan& plan) {
  MemoryPlan m;
  auto add = [&m](BufferRole role, Tier tier, Bytes bytes, std::string label) {
    if (bytes <= 0) return;
    m.buffers.push_back({role, tier, bytes, std::move(label)});
    m.total[tier] += bytes;
  };
  // Weights.
  for (std::size_t j = 0; j < plan.layers.size(); ++j) {
    for (const PlannedTensor& t : plan.layers[j].tensors) {
      add(BufferRole::kWeightHome, t.home, t.bytes, str_cat("weight layer ", j, " ", t.name));
    }
  }
  for (int s = 0; s < 2; ++s) {
    add(BufferRole::kWeightSlot, Tier::kGpu, weight_slot_bytes(plan), str_cat("weight slot ", s));
    add(BufferRole::kWeightStaging, Tier::kCpu, weight_staging_bytes(plan), str_cat("weight staging ", s));
  }
  // KV cache: key and value of every (decoder layer, gpu batch), split by units over the tiers.
  const CachePlan& c = plan.cache;
  const std::int64_t batches = plan.policy.num_gpu_batches();
  for (std::int64_t j = 1; j <= plan.spec.num_layers; ++j) {
    for (std::int64_t k = 0; k < batches; ++k) {
      for (Tier tier : kAllTiers) {
        for (const char* kv : {"key", "value"}) {
          add(BufferRole::kCacheHome, tier, c.units_on_tier(tier) * c.capacity * c.row_bytes,
              str_cat("cache ", kv, " layer ", j, " batch ", k, " ", tier_name(tier)));
        }
      }
    }
  }
  const std::int64_t slot_units = cache_slot_units(plan);
  const std::int64_t disk_units = c.units_on_tier(Tier::kDisk);
  for (int s = 0; s < 2; ++s) {
    for (const char* kv : {"key", "value"}) {
      add(BufferRole::kCacheSlot, Tier::kGpu, slot_units * c.capacity * c.row_bytes,
          str_cat("cache slot ", s, " ", kv));
      add(BufferRole::kCacheStaging, Tier::kCpu, disk_units * c.capacity * c.row_bytes,
          str_cat("cache staging ", s, " ", kv));
    }
  }
  // Activations: one hidden state per gpu batch at home; two GPU slots when home is elsewhere.
  const Bytes hidden = plan.activation_bytes(plan.workload.prompt_len);
  for (std::int64_t k = 0; k < batches; ++k) {
    add(BufferRole::kActHome, plan.activation_home, hidden, str_cat("activations batch ", k));
  }
  if (plan.activation_home != Tier::kGpu) {
    for (int s = 0; s < 2; ++s) add(BufferRole::kActSlot, Tier::kGpu, hidden, str_cat("activation slot ", s));
  }
  if (plan.activation_home == Tier::kDisk) {
    for (int s = 0; s < 2; ++s) {
      add(BufferRole::kActStaging, Tier::kCpu, hidden, str_cat("activation staging ", s));
    }
  }
  // Delegated attention: query, new key, new value and output of the CPU-homed units (the query
  // and output of a unit are queries_per_unit head vectors with grouped-query attention).
  if (plan.policy.cpu_cache_compute()) {
    const Bytes vec = c.units_on_tier(Tier::kCpu) * plan.spec.head_dim() *
                      (plan.weight_dtype == Encoding::kF32 ? 4 : 2);
    for (const char* what : {"query", "new key", "new value", "output"}) {
      const bool per_query = what[0] == 'q' || what[0] == 'o';
      add(BufferRole::kDelegation, Tier::kCpu, per_query ? vec * c.queries_per_unit : vec, str_cat("delegation ", what));
    }
  }
  return m;
}

void check_budgets(const MemoryPlan& memory, const TierBytes& budgets) {
  for (Tier tier : kAllTiers) {
    const Bytes need = memory.total[tier];
    const Bytes have = budgets[tier];
    if (need <= have) continue;
    const char* flag = tier == Tier::kGpu ? "--gpu-mem" : tier == Tier::kCpu ? "--cpu-mem" : "--disk-mem";
    const char* advice =
        tier == Tier::kGpu
            ? "move weights or cache off the GPU (--percent), use a smaller --gpu-batch-size, or "
              "compress (--compress-weight, --compress-cache)"
        : tier == Tier::kCpu
            ? "move weights or cache to disk (--percent), use fewer gpu batches, or compress"
            : "raise --disk-mem, free space in --offload-dir, or keep more in memory (--percent)";
    fail("plan does not fit: the ", tier_name(tier), " tier needs ", format_bytes(need), " but ", flag,
         " is ", format_bytes(have), " (", format_bytes(need - have), " over); ", advice);
  }
}

}  // namespace flexgen
