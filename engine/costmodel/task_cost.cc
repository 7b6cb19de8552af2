#include "engine/costmodel/task_cost.h"

#include <algorithm>
#include <string_view>

namespace flexgen {
namespace {

bool contains(std::string_view name, std::string_view part) { return name.find(part) != std::string_view::npos; }

// Which GPU task of its layer reads a weight tensor: 0 `compute`, 1 `compute_post`, -1 none (the
// embedding tables, which are gathered rather than multiplied, and the normalisations). OPT and
// LLaMA names: q, k, v go with `compute`; the output projection and the MLP with `compute_post`;
// the LM head (the output layer's copy of the tied embedding, or LLaMA's lm_head) with the
// output layer's `compute`.
int gemm_task_of(const std::string& name, bool output_layer) {
  if (output_layer) return name == "embed_tokens.weight" || name == "lm_head.weight" ? 0 : -1;
  if (contains(name, ".self_attn.q_proj.") || contains(name, ".self_attn.k_proj.") ||
      contains(name, ".self_attn.v_proj.")) {
    return 0;
  }
  if (contains(name, ".self_attn.out_proj.") || contains(name, ".fc1.") || contains(name, ".fc2.")) return 1;
  if (contains(name, ".self_attn.o_proj.") || contains(name, ".mlp.gate_proj.") || contains(name, ".mlp.up_proj.") ||
      contains(name, ".mlp.down_proj.")) {
    return 1;
  }
  return -1;
}

double ratio(double amount, double rate) { return amount > 0 ? amount / rate : 0.0; }

}  // namespace

TaskCostModel::TaskCostModel(const Plan& plan, const HardwareSpec& hardware, ScheduleKind kind)
    : hardware_(hardware), kind_(kind) {
  const double dense_element = plan.weight_dtype == Encoding::kF32 ? 4.0 : 2.0;
  const bool measured_dequant = hardware.gpu_dequant_bytes_per_s > 0;
  compute_gemm_bytes_.assign(plan.layers.size(), 0.0);
  post_gemm_bytes_.assign(plan.layers.size(), 0.0);
  q4_dense_bytes_.assign(plan.layers.size(), 0.0);
  const std::size_t output = plan.layers.size() - 1;
  for (std::size_t j = 1; j < plan.layers.size(); ++j) {
    for (const PlannedTensor& t : plan.layers[j].tensors) {
      const int task = gemm_task_of(t.name, j == output);
      if (task < 0) continue;
      const double dense = static_cast<double>(shape_numel(t.shape)) * dense_element;
      // A 4-bit tensor is decompressed first (packed bytes read, dense bytes written), then read
      // densely by the product.
      // With a measured dequantization rate, that step is priced on its own (q4_dense_bytes_).
      const bool q4 = t.encoding == Encoding::kQ4;
      const double bytes = q4 && !measured_dequant ? static_cast<double>(t.bytes) + 2.0 * dense : dense;
      (task == 0 ? compute_gemm_bytes_ : post_gemm_bytes_)[j] += bytes;
    }
    for (const PlannedTensor& t : plan.layers[j].tensors) {
      if (t.encoding == Encoding::kQ4) q4_dense_bytes_[j] += static_cast<double>(shape_numel(t.shape)) * dense_element;
    }
  }
  disk_weight_requests_.assign(plan.layers.size(), 0.0);
  for (std::size_t j = 0; j < plan.layers.size(); ++j) {
    for (const PlannedTensor& t : plan.layers[j].tensors) {
      if (t.home == Tier::kDisk) disk_weight_requests_[j] += 1.0;
    }
  }
  const double head_dim = static_cast<double>(plan.spec.head_dim());
  double row_read = static_cast<double>(plan.cache.row_bytes);
  // A row serves the unit's queries_per_unit query heads (grouped-query attention), 2 head_dim
  // FLOPs each.
  const double flops_per_row = 2.0 * head_dim * static_cast<double>(plan.cache.queries_per_unit);
  compressed_cache_ = plan.policy.compress_cache();
  sparse_ = plan.policy.attn_sparsity() < 1.0;
  if (plan.policy.compress_cache()) {
    const double dense_row = head_dim * dense_element;
    if (measured_dequant) {
      row_read = dense_row;  // attention reads the dequantized rows
      cache_dequant_bytes_per_flop_ = dense_row / flops_per_row;
    } else {
      row_read += 2.0 * dense_row;
    }
  }
  bytes_per_attention_flop_ = row_read / flops_per_row;
}

double TaskCostModel::disk_requests(const Task& task) const {
  switch (task.kind) {
    case TaskKind::kWeightRead: {
      const auto j = static_cast<std::size_t>(task.layer);
      return j < disk_weight_requests_.size() ? disk_weight_requests_[j] : 0.0;
    }
    case TaskKind::kCacheRead:
    case TaskKind::kCacheWrite: return 2.0;  // the keys' region, then the values'
    default: return 1.0;                     // a hidden state
  }
}

double TaskCostModel::gemm_bytes(const Task& task) const {
  const auto j = static_cast<std::size_t>(task.layer);
  if (j >= compute_gemm_bytes_.size()) return 0.0;
  if (task.kind == TaskKind::kCompute) return compute_gemm_bytes_[j];
  if (task.kind == TaskKind::kComputePost) return post_gemm_bytes_[j];
  return 0.0;
}

TaskCost TaskCostModel::cost(const Task& task) const {
  const HardwareSpec& hw = hardware_;
  TaskCost c;
  c.resource = task.resource();
  const bool prefill = task.token == 0;
  switch (c.resource) {
    case Resource::kH2D: c.link = ratio(static_cast<double>(task.bytes.h2d), hw.h2d_bytes_per_s); break;
    case Resource::kD2H: c.link = ratio(static_cast<double>(task.bytes.d2h), hw.d2h_bytes_per_s); break;
    case Resource::kDiskRead:
      c.link = ratio(static_cast<double>(task.bytes.disk_read), hw.disk_read_bytes_per_s);
      if (task.bytes.disk_read > 0) c.latency = disk_requests(task) * hw.disk_read_latency_s;
      break;
    case Resource::kDiskWrite:
      c.link = ratio(static_cast<double>(task.bytes.disk_write), hw.disk_write_bytes_per_s);
      if (task.bytes.disk_write > 0) c.latency = disk_requests(task) * hw.disk_write_latency_s;
      break;
    case Resource::kGpuCompute: {
      if (task.gemm_flops > 0) {
        const double rate = prefill ? hw.gpu_gemm_prefill_flops_per_s : hw.gpu_gemm_decode_flops_per_s;
        c.gemm = std::max(task.gemm_flops / rate, gemm_bytes(task) / hw.gpu_memory_bytes_per_s);
      }
      if (task.attention_flops > 0) {
        const double rate = prefill ? hw.gpu_attention_prefill_flops_per_s : hw.gpu_attention_decode_flops_per_s;
        const double memory =
            prefill ? 0.0 : task.attention_flops * bytes_per_attention_flop_ / hw.gpu_memory_bytes_per_s;
        c.attention = std::max(task.attention_flops / rate, memory);
        if (!prefill && cache_dequant_bytes_per_flop_ > 0) {
          const double dequant_rate =
              hw.gpu_cache_dequant_bytes_per_s > 0 ? hw.gpu_cache_dequant_bytes_per_s : hw.gpu_dequant_bytes_per_s;
          c.cache_dequant = task.attention_flops * cache_dequant_bytes_per_flop_ / dequant_rate;
        }
      }
      const auto j = static_cast<std::size_t>(task.layer);
      if (task.kind == TaskKind::kCompute && hw.gpu_dequant_bytes_per_s > 0 && j < q4_dense_bytes_.size() &&
          (kind_ == ScheduleKind::kRowByRow || task.batch == 0)) {
        c.weight_dequant = q4_dense_bytes_[j] / hw.gpu_dequant_bytes_per_s;
      }
      c.overhead = hw.gpu_task_overhead_s;
      break;
    }
    case Resource::kCpuCompute:
      if (task.attention_flops > 0) {
        // A 4-bit cache: the kernel dequantizes the rows as it reads them, at its own rate; top-k
        // over fp16 rows (selection, scattered value rows) at its own too.
        double rate = hw.cpu_attention_flops_per_s;
        if (compressed_cache_ && hw.cpu_cache_attention_flops_per_s > 0) {
          rate = hw.cpu_cache_attention_flops_per_s;
        } else if (!compressed_cache_ && sparse_ && hw.cpu_sparse_attention_flops_per_s > 0) {
          rate = hw.cpu_sparse_attention_flops_per_s;
        }
        c.attention = std::max(task.attention_flops / rate,
                               task.attention_flops * bytes_per_attention_flop_ / hw.cpu_memory_bytes_per_s);
      }
      break;
  }
  c.seconds = c.link + c.latency + c.gemm + c.attention + c.weight_dequant + c.cache_dequant + c.overhead;
  return c;
}

TaskCost task_cost(const Task& task, const Plan& plan, const HardwareSpec& hardware) {
  return TaskCostModel(plan, hardware).cost(task);
}

std::vector<TaskCost> task_costs(const Plan& plan, const Schedule& schedule, const HardwareSpec& hardware) {
  const TaskCostModel model(plan, hardware);
  std::vector<TaskCost> out;
  out.reserve(schedule.tasks.size());
  for (const Task& t : schedule.tasks) out.push_back(model.cost(t));
  return out;
}

}  // namespace flexgen
