#pragma once
// The per-layer aggregate of the cost model, as an affine function of the placement shares: what
// the policy search's LP optimises. It is not a second set of formulas: for one gpu batch size and
// one set of switches it prices, with TaskCostModel, the tasks of small probe schedules (the model
// with one decoder layer, one gpu batch, at most four tokens) at pure placements — everything on
// the GPU, weights all on the CPU, weights all on disk, cache all on the CPU, cache all on disk,
// activations on the CPU, activations on disk — and mixes them:
//   busy(x) = busy(all GPU) + sum over (kind of data, tier) of x * (busy(that kind all on that
//             tier) - busy(all GPU)).
// This is exact because every task moves or computes bytes of one kind of data only, in proportion
// to that kind's share on a tier (whole tensors and whole units aside), and the cost of a task is
// linear in its bytes and FLOPs (task_cost.h).
//
// Per layer kind (embedding, decoder, output) and group of steps, a step's busy time per resource
// is   per-layer part (weight traffic, once per block) + num_gpu_batches * per-batch part.
// Group 0 is the prefill; the gen_len - 1 decode steps are cut into up to kDecodeGroups groups of
// consecutive steps, each priced at its average step: the probe's steps 1 and 2 give the cost at
// the prompt and one position more (each term is linear in the cached positions), step 3 the last
// step (no cache store), and every decode step's cost follows in closed form. (FlexGen uses one
// decode group; with the cache growing during decode, the bottleneck moves from step to step and a
// single average hides it.)
// A run then takes sum_k n_k sum_g count_g step(g, k), with n_k = 1, L, 1, count_g the steps in
// group g and step = max over resources (overlap) or their sum, for zig-zag: the max of averages
// over each group, a lower bound of the sum of each step's maximum (estimate.h).
#include <array>
#include <cstdint>
#include <vector>

#include "engine/core/hardware_spec.h"
#include "engine/core/model_spec.h"
#include "engine/core/policy.h"
#include "engine/core/workload.h"
#include "engine/costmodel/estimate.h"
#include "engine/costmodel/memory_model.h"
#include "engine/costmodel/shares.h"

namespace flexgen {

inline constexpr std::size_t kDecodeGroups = 4;
inline constexpr std::size_t kStepGroups = 1 + kDecodeGroups;  // group 0: the prefill
inline constexpr std::size_t kPrefillGroup = 0;

// Per-resource busy time of one (average) step of each group and layer kind, for all gpu batches.
struct LayerTimes {
  std::array<std::array<ResourceSeconds, 3>, kStepGroups> busy{};  // [group][LayerKind]
  ResourceSeconds& at(std::size_t group, LayerKind k) { return busy[group][static_cast<std::size_t>(k)]; }
  const ResourceSeconds& at(std::size_t group, LayerKind k) const { return busy[group][static_cast<std::size_t>(k)]; }
};

class LayerModel {
 public:
  // `switches` supplies the gpu batch size and the switches (overlap, compression, sparsity, CPU
  // delegation); its placement and number of gpu batches are not used. Throws flexgen::Error for a
  // spec or workload the runtime cannot plan.
  LayerModel(const ModelSpec& spec, const Workload& workload, const HardwareSpec& hardware,
             const PolicyConfig& switches);

  LayerTimes layer_times(const PlacementShares& shares, std::int64_t num_gpu_batches) const;
  // The whole run's time from its layer times (zig-zag).
  Seconds total_seconds(const LayerTimes& times) const;
  // How often a run takes a step of this group and kind: n_k times the group's steps (0 for an
  // unused group).
  double step_count(std::size_t group, LayerKind kind) const;

  // The memory model (memory_model.h) at these shares; the GPU workspace is not included.
  TierValues memory(const PlacementShares& shares, std::int64_t num_gpu_batches) const;
  MemoryForm memory_form(Tier activations, std::int64_t num_gpu_batches) const;
  double gpu_workspace_bytes() const { return workspace_; }
  const MemorySizes& sizes() const { return sizes_; }
  // Stored bytes of a decoder layer's tensors in HF order (what the midpoint rule walks).
  const std::vector<Bytes>& decoder_tensor_bytes() const { return decoder_tensor_bytes_; }

  const ModelSpec& spec() const { return spec_; }
  const Workload& workload() const { return workload_; }
  const PolicyConfig& switches() const { return switches_; }
  bool overlap() const { return switches_.overlap; }

 private:
  // [group][kind][part: 0 per layer, 1 per gpu batch]
  using ProbeTimes = std::array<std::array<std::array<ResourceSeconds, 2>, 3>, kStepGroups>;
  ProbeTimes probe(const TierValues& weights, const TierValues& cache, Tier activations) const;

  ModelSpec spec_;
  Workload workload_;
  HardwareSpec hardware_;
  PolicyConfig switches_;
  MemorySizes sizes_;
  std::vector<Bytes> decoder_tensor_bytes_;
  double workspace_ = 0;
  std::array<std::int64_t, kStepGroups> group_first_{}, group_steps_{};  // decode steps of each group
  ProbeTimes base_{};
  std::array<ProbeTimes, 3> weights_{};      // by Tier (kGpu unused)
  std::array<ProbeTimes, 3> cache_{};        // by Tier (kGpu unused)
  std::array<ProbeTimes, 3> activations_{};  // by Tier (kGpu unused)
};

}  // namespace flexgen
