#include "engine/costmodel/estimate.h"

#include <algorithm>
#include <unordered_map>

namespace flexgen {
namespace {

std::uint64_t step_key(std::int32_t token, std::int32_t layer, std::int32_t batch) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(token)) << 42) ^
         (static_cast<std::uint64_t>(static_cast<std::uint32_t>(layer)) << 21) ^
         static_cast<std::uint64_t>(static_cast<std::uint32_t>(batch + 1));
}

void finish(Estimate& e, std::int64_t block, std::int64_t gen_len) {
  e.total_s = e.prefill_s + e.decode_s;
  e.generated_tokens = block * gen_len;
  e.throughput_tok_s = e.total_s > 0 ? static_cast<double>(e.generated_tokens) / e.total_s : 0.0;
  e.decode_throughput_tok_s = e.decode_s > 0 ? static_cast<double>(block * (gen_len - 1)) / e.decode_s : 0.0;
}

// Steps of a one-batch schedule, each split in two: the per-layer tasks (batch -1) and the
// per-batch tasks, as consecutive entries.
std::vector<StepCost> step_costs_split(const Plan& plan, const Schedule& schedule, const HardwareSpec& hardware) {
  const TaskCostModel model(plan, hardware);
  std::vector<StepCost> steps;
  std::unordered_map<std::uint64_t, std::size_t> index;
  for (const Task& t : schedule.tasks) {
    const auto [it, inserted] = index.try_emplace(step_key(t.token, t.layer, -1), steps.size());
    if (inserted) {
      StepCost s;
      s.token = t.token;
      s.layer = t.layer;
      steps.push_back(s);
      steps.push_back(s);
    }
    const TaskCost c = model.cost(t);
    // A layer's weight dequantization is once per step, whatever the number of gpu batches.
    const auto r = static_cast<std::size_t>(c.resource);
    steps[it->second + (t.batch < 0 ? 0 : 1)].busy[r] += c.seconds - c.weight_dequant;
    steps[it->second].busy[r] += c.weight_dequant;
  }
  return steps;
}

// Sums steps into an estimate; decoder-layer steps count `decoder_repeat` times.
Estimate sum_steps(const Plan& plan, const std::vector<StepCost>& steps, bool overlap, std::int64_t decoder_repeat) {
  Estimate e;
  for (const StepCost& s : steps) {
    const double times = plan.is_decoder_layer(s.layer) ? static_cast<double>(decoder_repeat) : 1.0;
    (s.token == 0 ? e.prefill_s : e.decode_s) += times * step_seconds(s.busy, overlap);
    for (int r = 0; r < kNumResources; ++r) e.busy[r] += times * s.busy[r];
  }
  finish(e, plan.policy.block_size(), plan.workload.gen_len);
  return e;
}

}  // namespace

Seconds step_seconds(const ResourceSeconds& busy, bool overlap) {
  Seconds out = 0;
  for (Seconds s : busy) out = overlap ? std::max(out, s) : out + s;
  return out;
}

std::vector<StepCost> step_costs(const Plan& plan, const Schedule& schedule, const HardwareSpec& hardware) {
  const TaskCostModel model(plan, hardware, schedule.kind);
  const bool per_batch = schedule.kind == ScheduleKind::kRowByRow;
  const std::size_t n = schedule.tasks.size();
  // Row-by-row: a weight task (batch -1) belongs to the next visit of its (token, layer).
  std::vector<std::int32_t> batch_of(n, -1);
  if (per_batch) {
    std::unordered_map<std::uint64_t, std::int32_t> next_visit;
    for (std::size_t i = n; i-- > 0;) {
      const Task& t = schedule.tasks[i];
      const std::uint64_t key = step_key(t.token, t.layer, -1);
      if (t.batch >= 0) {
        next_visit[key] = t.batch;
        batch_of[i] = t.batch;
      } else {
        const auto it = next_visit.find(key);
        batch_of[i] = it != next_visit.end() ? it->second : 0;
      }
    }
  }
  std::vector<StepCost> steps;
  std::unordered_map<std::uint64_t, std::size_t> index;
  for (std::size_t i = 0; i < n; ++i) {
    const Task& t = schedule.tasks[i];
    const std::int32_t batch = per_batch ? batch_of[i] : -1;
    const auto [it, inserted] = index.try_emplace(step_key(t.token, t.layer, batch), steps.size());
    if (inserted) {
      StepCost s;
      s.token = t.token;
      s.layer = t.layer;
      s.batch = batch;
      steps.push_back(s);
    }
    const TaskCost c = model.cost(t);
    steps[it->second].busy[static_cast<std::size_t>(c.resource)] += c.seconds;
  }
  for (StepCost& s : steps) s.seconds = step_seconds(s.busy, schedule.overlap);
  return steps;
}

Estimate estimate_schedule(const Plan& plan, const Schedule& schedule, const HardwareSpec& hardware) {
  Estimate e = sum_steps(plan, step_costs(plan, schedule, hardware), schedule.overlap, 1);
  e.memory = estimate_memory(plan);
  return e;
}

Estimate estimate_policy(const ModelSpec& spec, const Workload& workload, const Policy& policy,
                         const HardwareSpec& hardware, ScheduleKind kind) {
  // One decoder layer and one gpu batch: the per-layer tasks (weights) and the per-batch tasks
  // (everything else) of every step, priced once.
  ModelSpec one_layer = spec;
  one_layer.num_layers = 1;
  PolicyConfig one_batch = policy.config();
  one_batch.num_gpu_batches = 1;
  Workload w = workload;
  w.num_sequences = one_batch.gpu_batch_size;
  const Plan plan = make_plan(one_layer, w, Policy::create(one_batch));
  const Schedule schedule = make_schedule(plan, ScheduleKind::kZigZag);
  const std::vector<StepCost> steps = step_costs_split(plan, schedule, hardware);

  const std::int64_t batches = policy.num_gpu_batches();
  const bool zig_zag = kind == ScheduleKind::kZigZag;
  std::vector<StepCost> whole;
  for (std::size_t i = 0; i + 1 < steps.size(); i += 2) {
    // steps[i]: the per-layer part of a (token, layer); steps[i + 1]: its per-batch part.
    StepCost s = steps[i];
    for (int r = 0; r < kNumResources; ++r) {
      s.busy[r] += (zig_zag ? static_cast<double>(batches) : 1.0) * steps[i + 1].busy[r];
    }
    whole.push_back(s);
  }
  const double repeat = zig_zag ? 1.0 : static_cast<double>(batches);
  Estimate e;
  for (const StepCost& s : whole) {
    const double times = repeat * (plan.is_decoder_layer(s.layer) ? static_cast<double>(spec.num_layers) : 1.0);
    (s.token == 0 ? e.prefill_s : e.decode_s) += times * step_seconds(s.busy, policy.overlap());
    for (int r = 0; r < kNumResources; ++r) e.busy[r] += times * s.busy[r];
  }
  finish(e, policy.block_size(), workload.gen_len);
  e.memory = estimate_memory(MemorySizes::of_plan(plan, spec.num_layers), PlacementShares::of_plan(plan), spec,
                             workload, policy);
  return e;
}

}  // namespace flexgen
