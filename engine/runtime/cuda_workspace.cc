#include "engine/runtime/cuda_workspace.h"

#include <algorithm>
#include <cmath>

#include "engine/runtime/memory_plan.h"

namespace flexgen {

namespace {
Bytes round_up(Bytes n, Bytes a) { return (n + a - 1) / a * a; }
}  // namespace

namespace cuda {

std::size_t decode_attention_workspace_bytes(std::int64_t units, int head_dim, int splits) {
  return static_cast<std::size_t>(units) * static_cast<std::size_t>(splits) *
         static_cast<std::size_t>(head_dim + 2) * sizeof(float);
}

std::size_t prefill_attention_gemm_workspace_bytes(std::int64_t chunk_units, std::int64_t tokens,
                                                   std::int64_t past) {
  const auto scores = static_cast<std::size_t>(chunk_units * tokens * (past + tokens)) * 2;  // fp16
  return (scores + 255) / 256 * 256 + static_cast<std::size_t>(chunk_units) * kPrefillPointerArrays * sizeof(void*);
}

}  // namespace cuda

CudaWorkspaceSizes cuda_workspace_sizes(const Plan& plan) {
  const ModelSpec& spec = plan.spec;
  const std::int64_t b = plan.policy.gpu_batch_size(), T = plan.workload.prompt_len;
  const std::int64_t h = spec.hidden_size, f = spec.ffn_dim, hd = spec.head_dim(), nh = spec.num_heads;
  const std::int64_t units = plan.cache.units, cap = plan.cache.capacity;
  // Attention kernels run over query units: b * num_heads (the cache units with grouped-query
  // attention are b * kv_heads); nkv is the cache's heads per sequence.
  const std::int64_t query_units = b * nh, nkv = spec.kv_heads();
  CudaWorkspaceSizes w;
  const Bytes hidden = b * T * h * 2;
  w.ln = w.q = w.k = w.v = w.attn = w.tmp = hidden;
  w.mlp = b * T * f * 2;
  if (spec.family == ModelFamily::kLlama) {
    w.k = w.v = b * T * spec.kv_dim() * 2;
    w.up = b * T * f * 2;  // SwiGLU's up projection next to the gate in w.mlp
  }
  if (plan.policy.compress_cache()) {
    w.new_rows = 2 * b * T * nkv * plan.cache.row_bytes;
    // Every unit of one (layer, batch) is dequantized: those at home on the GPU and those in the slot.
    const std::int64_t dq_units = plan.cache.units_on_tier(Tier::kGpu) + cache_slot_units(plan);
    w.cache_dq = 2 * cap * dq_units * hd * 2;
  }
  for (const PlannedLayer& l : plan.layers) {
    Bytes layer = 0;
    for (const PlannedTensor& t : l.tensors) {
      if (t.encoding == Encoding::kQ4) layer += round_up(shape_numel(t.shape) * 2, kCudaGpuAlign);
    }
    w.weights_dq = std::max(w.weights_dq, layer);
  }
  w.logits = b * spec.vocab_size * 2;
  w.last = b * h * 2;
  w.ids = b * T * 4;
  w.pad_len = plan.policy.block_size() * 4;
  w.splits = static_cast<Bytes>(cuda::decode_attention_workspace_bytes(query_units, static_cast<int>(hd),
                                                                       kCudaMaxDecodeSplits));
  if (T >= kCudaGemmPrefillMinTokens) {
    const Bytes one = static_cast<Bytes>(cuda::prefill_attention_gemm_workspace_bytes(1, T, 0));
    const std::int64_t chunk = std::clamp<std::int64_t>(kCudaPrefillScoresBudget / one, 1, query_units);
    w.prefill = static_cast<Bytes>(cuda::prefill_attention_gemm_workspace_bytes(chunk, T, 0));
  }
  if (plan.policy.attn_sparsity() < 1.0) {
    const auto most = static_cast<std::int64_t>(std::floor(plan.policy.attn_sparsity() * static_cast<double>(cap)));
    w.kept = units * std::max<std::int64_t>(1, most) * 4;
  }
  w.cublas = kCudaCublasWorkspace;
  w.next = b * 4;
  return w;
}

std::vector<CudaWorkspaceSizes::Part> CudaWorkspaceSizes::parts() const {
  const Part all[] = {
      {"workspace layernorm", ln},           {"workspace query", q},
      {"workspace key", k},                  {"workspace value", v},
      {"workspace attention", attn},         {"workspace residual", tmp},
      {"workspace mlp", mlp},                {"workspace new cache rows", new_rows},
      {"workspace dequantized cache", cache_dq}, {"workspace dequantized weights", weights_dq},
      {"workspace logits", logits},          {"workspace last hidden", last},
      {"workspace token ids", ids},          {"workspace pad lengths", pad_len},
      {"workspace attention splits", splits}, {"workspace prefill attention", prefill},
      {"workspace top-k", kept},             {"workspace cuBLAS", cublas},
      {"workspace mlp up", up},              {"workspace next tokens", next}};
  std::vector<Part> out;
  for (const Part& p : all) {
    if (p.bytes > 0) out.push_back(p);
  }
  return out;
}

Bytes CudaWorkspaceSizes::total() const {
  Bytes sum = 0;
  for (const Part& p : parts()) sum += round_up(p.bytes, kCudaGpuAlign);
  return sum;
}

}  // namespace flexgen
