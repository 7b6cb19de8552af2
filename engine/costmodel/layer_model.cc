#include "engine/costmodel/layer_model.h"

#include <algorithm>

#include "engine/core/error.h"
#include "engine/costmodel/task_cost.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"

namespace flexgen {
namespace {

constexpr std::int64_t kProbeTokens = 4;

std::array<double, 6> percent_of(const TierValues& weights, const TierValues& cache, Tier activations) {
  return {100.0 * weights[Tier::kGpu],
          100.0 * weights[Tier::kCpu],
          100.0 * cache[Tier::kGpu],
          100.0 * cache[Tier::kCpu],
          activations == Tier::kGpu ? 100.0 : 0.0,
          activations == Tier::kCpu ? 100.0 : 0.0};
}

void add_to(ResourceSeconds& out, const ResourceSeconds& in, double scale) {
  for (std::size_t r = 0; r < out.size(); ++r) out[r] += scale * in[r];
}

}  // namespace

LayerModel::LayerModel(const ModelSpec& spec, const Workload& workload, const HardwareSpec& hardware,
                       const PolicyConfig& switches)
    : spec_(spec), workload_(workload), hardware_(hardware), switches_(switches) {
  switches_.num_gpu_batches = 1;
  switches_.set_percent({100, 0, 100, 0, 100, 0});
  workload_.num_sequences = switches_.gpu_batch_size;
  // The sizes of the real workload (cache capacity prompt + gen_len - 1) on a one-layer copy.
  ModelSpec one_layer = spec_;
  one_layer.num_layers = 1;
  const Policy policy = Policy::create(switches_);
  const Plan sizes_plan = make_plan(one_layer, workload_, policy);
  sizes_ = MemorySizes::of_plan(sizes_plan, spec_.num_layers);
  for (const PlannedTensor& t : sizes_plan.layers[1].tensors) decoder_tensor_bytes_.push_back(t.bytes);
  workspace_ = gpu_workspace(spec_, workload_, policy).peak();

  // Decode steps 1 .. gen_len - 1 in up to kDecodeGroups groups of consecutive steps.
  const std::int64_t steps = workload_.gen_len - 1;
  const auto groups = static_cast<std::int64_t>(std::min<std::int64_t>(steps, kDecodeGroups));
  group_steps_[kPrefillGroup] = 1;
  for (std::int64_t g = 0; g < groups; ++g) {
    const std::int64_t first = 1 + g * steps / groups, last = (g + 1) * steps / groups;
    group_first_[static_cast<std::size_t>(g + 1)] = first;
    group_steps_[static_cast<std::size_t>(g + 1)] = last - first + 1;
  }

  const TierValues gpu = TierValues::all_on(Tier::kGpu);
  base_ = probe(gpu, gpu, Tier::kGpu);
  for (Tier t : {Tier::kCpu, Tier::kDisk}) {
    const auto i = static_cast<std::size_t>(t);
    weights_[i] = probe(TierValues::all_on(t), gpu, Tier::kGpu);
    cache_[i] = probe(gpu, TierValues::all_on(t), Tier::kGpu);
    activations_[i] = probe(gpu, gpu, t);
  }
}

LayerModel::ProbeTimes LayerModel::probe(const TierValues& weights, const TierValues& cache, Tier activations) const {
  ModelSpec one_layer = spec_;
  one_layer.num_layers = 1;
  Workload w = workload_;
  w.gen_len = std::min(workload_.gen_len, kProbeTokens);
  PolicyConfig config = switches_;
  config.set_percent(percent_of(weights, cache, activations));
  const Plan plan = make_plan(one_layer, w, Policy::create(config));
  const Schedule schedule = make_schedule(plan, ScheduleKind::kZigZag);
  const TaskCostModel model(plan, hardware_);

  // [token][kind][part]
  std::array<std::array<std::array<ResourceSeconds, 2>, 3>, kProbeTokens> per_token{};
  for (const Task& t : schedule.tasks) {
    const TaskCost c = model.cost(t);
    const auto kind = static_cast<std::size_t>(layer_kind(plan, t.layer));
    const std::size_t part = t.batch < 0 ? 0 : 1;
    // A layer's weight dequantization is once per step (per-layer part), not per gpu batch.
    auto& token = per_token[static_cast<std::size_t>(t.token)][kind];
    token[part][static_cast<std::size_t>(c.resource)] += c.seconds - c.weight_dequant;
    token[0][static_cast<std::size_t>(c.resource)] += c.weight_dequant;
  }

  ProbeTimes out{};
  out[kPrefillGroup] = per_token[0];
  const std::int64_t n = workload_.gen_len;
  for (std::size_t g = 1; g < kStepGroups; ++g) {
    const std::int64_t count = group_steps_[g];
    if (count == 0) continue;
    for (std::size_t k = 0; k < 3; ++k) {
      for (std::size_t part = 0; part < 2; ++part) {
        ResourceSeconds& avg = out[g][k][part];
        for (std::int64_t i = group_first_[g]; i < group_first_[g] + count; ++i) {
          if (n <= kProbeTokens) {
            // The probe ran every decode step.
            add_to(avg, per_token[static_cast<std::size_t>(i)][k][part], 1.0);
            continue;
          }
          // Steps 1 .. n-2 store their cache and cost R1 + (i - 1) (R2 - R1); the last step, n - 1,
          // costs R3 + (n - 4) (R2 - R1) (the probe's step 3 was its last).
          const ResourceSeconds& r1 = per_token[1][k][part];
          const ResourceSeconds& r2 = per_token[2][k][part];
          const ResourceSeconds& r3 = per_token[3][k][part];
          const bool last = i == n - 1;
          const double slope_weight = static_cast<double>(last ? n - 4 : i - 1);
          for (std::size_t r = 0; r < avg.size(); ++r) {
            avg[r] += (last ? r3[r] : r1[r]) + slope_weight * (r2[r] - r1[r]);
          }
        }
        for (double& v : avg) v /= static_cast<double>(count);
      }
    }
  }
  return out;
}

LayerTimes LayerModel::layer_times(const PlacementShares& shares, std::int64_t num_gpu_batches) const {
  LayerTimes out;
  const double batches = static_cast<double>(num_gpu_batches);
  for (std::size_t p = 0; p < kStepGroups; ++p) {
    for (std::size_t k = 0; k < 3; ++k) {
      for (std::size_t part = 0; part < 2; ++part) {
        const double scale = part == 0 ? 1.0 : batches;
        ResourceSeconds mixed = base_[p][k][part];
        const auto mix = [&](const ProbeTimes& pure, double share) {
          if (share == 0.0) return;
          for (std::size_t r = 0; r < mixed.size(); ++r) mixed[r] += share * (pure[p][k][part][r] - base_[p][k][part][r]);
        };
        for (Tier t : {Tier::kCpu, Tier::kDisk}) {
          const auto i = static_cast<std::size_t>(t);
          mix(weights_[i], shares.weights[k][t]);
          mix(cache_[i], shares.cache[t]);
          mix(activations_[i], shares.activations == t ? 1.0 : 0.0);
        }
        // Shares are non-negative and each term is too; clamp rounding noise.
        for (double& v : mixed) v = std::max(0.0, v);
        add_to(out.busy[p][k], mixed, scale);
      }
    }
  }
  return out;
}

double LayerModel::step_count(std::size_t group, LayerKind kind) const {
  const double layers = kind == LayerKind::kDecoder ? static_cast<double>(spec_.num_layers) : 1.0;
  return layers * static_cast<double>(group_steps_[group]);
}

Seconds LayerModel::total_seconds(const LayerTimes& times) const {
  Seconds total = 0;
  for (std::size_t g = 0; g < kStepGroups; ++g) {
    for (LayerKind k : kAllLayerKinds) total += step_count(g, k) * step_seconds(times.at(g, k), switches_.overlap);
  }
  return total;
}

MemoryForm LayerModel::memory_form(Tier activations, std::int64_t num_gpu_batches) const {
  return flexgen::memory_form(sizes_, activations, num_gpu_batches, switches_.cpu_cache_compute);
}

TierValues LayerModel::memory(const PlacementShares& shares, std::int64_t num_gpu_batches) const {
  return predict_memory(sizes_, shares, num_gpu_batches, switches_.cpu_cache_compute);
}

}  // namespace flexgen
