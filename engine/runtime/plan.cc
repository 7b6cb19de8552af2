#include "engine/runtime/plan.h"

#include <algorithm>
#include <cmath>

#include "engine/compress/quant4.h"
#include "engine/core/error.h"
#include "engine/model/decoder.h"
#include "engine/runtime/run_limits.h"

namespace flexgen {

const char* encoding_name(Encoding e) {
  switch (e) {
    case Encoding::kF32: return "f32";
    case Encoding::kF16: return "f16";
    case Encoding::kQ4: return "q4";
  }
  return "?";
}

namespace {

Bytes element_bytes(Encoding e) {
  assert(e != Encoding::kQ4);
  return e == Encoding::kF32 ? 4 : 2;
}

// FlexGen's rule: the tier in which the midpoint of the tensor's cumulative byte share falls,
// tiers ordered disk, CPU, GPU.
Tier choose_home(double mid_percent, const Placement& placement) {
  const double disk = placement.disk_percent();
  if (mid_percent < disk) return Tier::kDisk;
  if (mid_percent < disk + placement.cpu_percent) return Tier::kCpu;
  return Tier::kGpu;
}

// The HF tensors of schedule layer j, in file order, with their shapes (engine/model/decoder.h).
std::vector<std::pair<std::string, Shape>> layer_tensors(const ModelSpec& spec, std::int64_t j) {
  return schedule_layer_tensors(spec, j);
}

}  // namespace

Plan make_plan(const ModelSpec& spec, const Workload& workload, const Policy& policy) {
  spec.validate();
  workload.validate();
  FLEXGEN_REQUIRE(workload.num_sequences == policy.block_size(), "invalid run: ",
                  workload.num_sequences, " sequences do not fill a block of gpu batch size ",
                  policy.gpu_batch_size(), " x ", policy.num_gpu_batches(), " batches");
  FLEXGEN_REQUIRE(workload.prompt_len <= spec.max_positions, "invalid run: the prompt has ", workload.prompt_len,
                  " tokens, more than the ", spec.max_positions, " positions of model ", spec.name);
  FLEXGEN_REQUIRE(workload.gen_len <= spec.max_positions - workload.prompt_len, "invalid run: prompt ",
                  workload.prompt_len, " + generation ", workload.gen_len, " tokens exceed the model's ",
                  spec.max_positions, " positions");
  check_run_limits(spec, workload, policy);
  const Placement& act = policy.activations();
  Tier act_home;
  if (act.gpu_percent == 100.0) {
    act_home = Tier::kGpu;
  } else if (act.cpu_percent == 100.0) {
    act_home = Tier::kCpu;
  } else if (act.disk_percent() == 100.0) {
    act_home = Tier::kDisk;
  } else {
    fail("invalid policy: activations live on one tier: the last two --percent numbers must be "
         "100 0 (GPU), 0 100 (CPU) or 0 0 (disk); got ", act.gpu_percent, " ", act.cpu_percent);
  }

  Plan plan{spec, workload, policy, Encoding::kF16, {}, {}, Tier::kGpu, 0};
  plan.weight_dtype = spec.dtype == DType::kF32 ? Encoding::kF32 : Encoding::kF16;
  FLEXGEN_REQUIRE(spec.dtype != DType::kBF16, "bf16 models are not supported yet (use f16 or f32)");
  const ScaleType scale_type = plan.weight_dtype == Encoding::kF32 ? ScaleType::kFloat32 : ScaleType::kFloat16;

  // Weights.
  for (std::int64_t j = 0; j < spec.num_layers + 2; ++j) {
    PlannedLayer layer;
    for (auto& [name, shape] : layer_tensors(spec, j)) {
      PlannedTensor t;
      t.name = name;
      t.shape = shape;
      const bool compress = policy.compress_weight() && shape.size() >= 2;
      t.encoding = compress ? Encoding::kQ4 : plan.weight_dtype;
      t.bytes = compress ? quantized_bytes(shape, weight_quant_spec(scale_type))
                         : shape_numel(shape) * element_bytes(t.encoding);
      layer.tensors.push_back(std::move(t));
    }
    // FlexGen splits an OPT decoder layer into two layers of its own, self-attention (q, k, v, out,
    // attention LayerNorm) and MLP (fc1, fc2, final LayerNorm), and applies the rule to each.
    // LLaMA likewise: attention (q, k, v, o, input_layernorm) and MLP (gate, up, down,
    // post_attention_layernorm).
    auto group_of = [&spec](const std::string& name) { return is_mlp_part(spec, name); };
    for (const bool mlp : {false, true}) {
      Bytes total = 0;
      for (const PlannedTensor& t : layer.tensors) {
        if (group_of(t.name) == mlp) total += t.bytes;
      }
      Bytes cumulative = 0;
      for (PlannedTensor& t : layer.tensors) {
        if (group_of(t.name) != mlp) continue;
        cumulative += t.bytes;
        const double mid = (static_cast<double>(cumulative) - static_cast<double>(t.bytes) / 2.0) /
                           static_cast<double>(total) * 100.0;
        t.home = choose_home(mid, policy.weights());
        layer.home_bytes[t.home] += t.bytes;
      }
    }
    plan.layers.push_back(std::move(layer));
  }

  // KV cache.
  CachePlan& cache = plan.cache;
  cache.units = policy.gpu_batch_size() * spec.kv_heads();
  cache.queries_per_unit = spec.queries_per_kv_head();
  // Boundaries by rounding the cumulative shares, so that shares summing to 100% leave no unit on
  // disk by truncation.
  const double units = static_cast<double>(cache.units);
  const auto gpu_end = static_cast<std::int64_t>(std::llround(units * policy.cache().gpu_percent / 100.0));
  const auto cpu_end = std::min(cache.units, static_cast<std::int64_t>(std::llround(
      units * (policy.cache().gpu_percent + policy.cache().cpu_percent) / 100.0)));
  cache.units_on[static_cast<int>(Tier::kGpu)] = gpu_end;
  cache.units_on[static_cast<int>(Tier::kCpu)] = cpu_end - gpu_end;
  cache.units_on[static_cast<int>(Tier::kDisk)] = cache.units - cpu_end;
  cache.capacity = workload.prompt_len + workload.gen_len - 1;
  cache.row_bytes = policy.compress_cache()
                        ? quantized_bytes(Shape{1, spec.head_dim()}, cache_quant_spec(scale_type))
                        : spec.head_dim() * element_bytes(plan.weight_dtype);

  plan.activation_home = act_home;
  plan.activation_bytes_per_token = spec.hidden_size * element_bytes(plan.weight_dtype);
  return plan;
}

}  // namespace flexgen
