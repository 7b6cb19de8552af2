#include "engine/costmodel/memory_model.h"

#include <algorithm>

#include "engine/runtime/cuda_workspace.h"

namespace flexgen {
double MemorySizes::total_weight_bytes() const {
  return layer_weight_bytes[0] + static_cast<double>(num_decoder_layers) * layer_weight_bytes[1] +
         layer_weight_bytes[2];
}

double MemorySizes::largest_layer_bytes() const {
  return std::max({layer_weight_bytes[0], layer_weight_bytes[1], layer_weight_bytes[2]});
}

MemorySizes MemorySizes::of_plan(const Plan& plan, std::int64_t num_decoder_layers) {
  MemorySizes s;
  const auto layer_total = [&](std::size_t j) {
    Bytes total = 0;
    for (const PlannedTensor& t : plan.layers[j].tensors) total += t.bytes;
    return static_cast<double>(total);
  };
  s.layer_weight_bytes = {layer_total(0), layer_total(1), layer_total(plan.layers.size() - 1)};
  s.num_decoder_layers = num_decoder_layers > 0 ? num_decoder_layers : plan.spec.num_layers;
  s.cache_units = plan.cache.units;
  s.cache_bytes_per_layer_batch =
      2.0 * static_cast<double>(plan.cache.units) * static_cast<double>(plan.cache.capacity) *
      static_cast<double>(plan.cache.row_bytes);
  s.activation_bytes_per_batch = static_cast<double>(plan.activation_bytes(plan.workload.prompt_len));
  // The four delegation buffers hold per unit its queries and output (queries_per_unit head
  // vectors each) and its new key and value (one each): 4 v with v the mean of the four.
  s.delegation_bytes_per_unit = static_cast<double>(plan.spec.head_dim()) *
                                (plan.weight_dtype == Encoding::kF32 ? 4.0 : 2.0) *
                                (static_cast<double>(plan.cache.queries_per_unit) + 1.0) / 2.0;
  return s;
}

MemoryForm memory_form(const MemorySizes& z, Tier activations, std::int64_t num_gpu_batches, bool cpu_cache_compute) {
  const double batches = static_cast<double>(num_gpu_batches);
  const double layers = static_cast<double>(z.num_decoder_layers);
  const std::array<double, 3> count = {1.0, layers, 1.0};
  MemoryForm f;
  // Weights at home; the two GPU slots hold a layer's off-GPU weights, the two CPU staging
  // buffers its disk weights (the largest layer sets their size).
  for (std::size_t k = 0; k < 3; ++k) {
    for (Tier t : kAllTiers) f.weights[k][static_cast<std::size_t>(t)][t] = count[k] * z.layer_weight_bytes[k];
    f.slot_bytes[k] = z.layer_weight_bytes[k];
    f.staging_bytes[k] = z.layer_weight_bytes[k];
  }
  // KV cache at home for every (decoder layer, gpu batch); two GPU slots for the off-GPU units of
  // one (layer, batch); two CPU staging buffers for its disk units; the delegation vectors.
  const double cache = z.cache_bytes_per_layer_batch;
  for (Tier t : kAllTiers) f.cache[static_cast<std::size_t>(t)][t] = layers * batches * cache;
  const auto cpu = static_cast<std::size_t>(Tier::kCpu);
  const auto disk = static_cast<std::size_t>(Tier::kDisk);
  f.cache[cpu][Tier::kGpu] += 2.0 * cache;
  f.cache[disk][Tier::kGpu] += 2.0 * cache;
  f.cache[disk][Tier::kCpu] += 2.0 * cache;
  if (cpu_cache_compute) {
    f.cache[cpu][Tier::kCpu] += 4.0 * static_cast<double>(z.cache_units) * z.delegation_bytes_per_unit;
  }
  // Activations: every batch's hidden state at home; two GPU slots when home is elsewhere; two CPU
  // staging buffers when home is the disk.
  const double act = z.activation_bytes_per_batch;
  f.constant[activations] += batches * act;
  if (activations != Tier::kGpu) f.constant[Tier::kGpu] += 2.0 * act;
  if (activations == Tier::kDisk) f.constant[Tier::kCpu] += 2.0 * act;
  return f;
}

TierValues MemoryForm::evaluate(const PlacementShares& x) const {
  TierValues m = constant;
  double slot = 0, staging = 0;
  for (std::size_t k = 0; k < 3; ++k) {
    for (Tier share : kAllTiers) {
      for (Tier t : kAllTiers) m[t] += x.weights[k][share] * weights[k][static_cast<std::size_t>(share)][t];
    }
    slot = std::max(slot, (1.0 - x.weights[k][Tier::kGpu]) * slot_bytes[k]);
    staging = std::max(staging, x.weights[k][Tier::kDisk] * staging_bytes[k]);
  }
  for (Tier share : kAllTiers) {
    for (Tier t : kAllTiers) m[t] += x.cache[share] * cache[static_cast<std::size_t>(share)][t];
  }
  m[Tier::kGpu] += 2.0 * slot;
  m[Tier::kCpu] += 2.0 * staging;
  return m;
}

TierValues predict_memory(const MemorySizes& z, const PlacementShares& x, std::int64_t num_gpu_batches,
                          bool cpu_cache_compute) {
  return memory_form(z, x.activations, num_gpu_batches, cpu_cache_compute).evaluate(x);
}

GpuWorkspace gpu_workspace(const ModelSpec& spec, const Workload& workload, const Policy& policy) {
  // The sizes depend on the gpu batch, the lengths, the switches and one layer's tensors, not on
  // the placement or the number of layers: a one-layer plan of the same policy gives them.
  ModelSpec one_layer = spec;
  one_layer.num_layers = 1;
  Workload block = workload;
  block.num_sequences = policy.block_size();
  const double bytes =
      static_cast<double>(cuda_workspace_sizes(make_plan(one_layer, block, policy)).total() + kCudaPaddingAllowance);
  return {bytes, bytes};
}

TierValues MemoryEstimate::peak() const {
  TierValues p;
  for (Tier t : kAllTiers) p[t] = std::max(peak_prefill[t], peak_decode[t]);
  return p;
}

MemoryEstimate estimate_memory(const MemorySizes& sizes, const PlacementShares& shares, const ModelSpec& spec,
                               const Workload& workload, const Policy& policy) {
  MemoryEstimate m;
  m.buffers = predict_memory(sizes, shares, policy.num_gpu_batches(), policy.cpu_cache_compute());
  m.gpu_workspace = gpu_workspace(spec, workload, policy);
  m.peak_prefill = m.buffers;
  m.peak_decode = m.buffers;
  m.peak_prefill[Tier::kGpu] += m.gpu_workspace.prefill;
  m.peak_decode[Tier::kGpu] += m.gpu_workspace.decode;
  return m;
}

MemoryEstimate estimate_memory(const Plan& plan) {
  return estimate_memory(MemorySizes::of_plan(plan), PlacementShares::of_plan(plan), plan.spec, plan.workload,
                         plan.policy);
}

}  // namespace flexgen
