#pragma once
// The memory model: bytes each tier holds, written analytically in the placement shares so that the
// policy search can use it as linear constraints. It predicts exactly the buffers the runtime
// allocates (memory_plan.h) — weights at home and their two GPU slots and two CPU staging buffers,
// the KV cache at home and its two GPU slots and CPU staging buffers, the activations and their
// slots and staging, the delegation vectors — when given a plan's effective shares; with uniform
// shares it is affine in them, because every decoder layer has the same bytes.
//
// With W_k the bytes of one layer of kind k (n_k layers: 1, L, 1), w_k its shares, C one (layer,
// batch)'s cache (key and value, all positions, all units), c the cache shares, A one gpu batch's
// hidden state over the prompt, B the number of gpu batches, U the units of one gpu batch and v
// one unit's head vector:
//   gpu  = sum_k n_k w_k,gpu W_k + 2 max_k (1 - w_k,gpu) W_k + L B c_gpu C + 2 (c_cpu + c_disk) C
//          + (activations on gpu ? B A : 2 A)
//   cpu  = sum_k n_k w_k,cpu W_k + 2 max_k w_k,disk W_k + L B c_cpu C + 2 c_disk C
//          + (activations on cpu ? B A : 0) + (activations on disk ? 2 A : 0)
//          + (cpu_cache_compute ? 4 c_cpu U v : 0)
//   disk = sum_k n_k w_k,disk W_k + L B c_disk C + (activations on disk ? B A : 0)
// The GPU also needs a compute workspace that the memory plan leaves to the backend: estimated by
// gpu_workspace() below, and added by the search to the GPU's side.
#include <array>
#include <cstdint>

#include "engine/core/model_spec.h"
#include "engine/core/policy.h"
#include "engine/core/workload.h"
#include "engine/costmodel/shares.h"
#include "engine/runtime/plan.h"

namespace flexgen {

// The sizes the memory model is written in, for one gpu batch size and one set of switches.
struct MemorySizes {
  std::array<double, 3> layer_weight_bytes{};  // W_k: stored bytes of one layer of each LayerKind
  std::int64_t num_decoder_layers = 0;         // L
  std::int64_t cache_units = 0;                // U = gpu batch size x key/value heads
  double cache_bytes_per_layer_batch = 0;      // C: key and value, all positions, all U units
  double activation_bytes_per_batch = 0;       // A: gpu batch size x prompt x hidden x element
  double delegation_bytes_per_unit = 0;        // v: head_dim x element x (queries per unit + 1) / 2

  double total_weight_bytes() const;  // sum_k n_k W_k
  double largest_layer_bytes() const;  // max_k W_k

  // Sizes of a plan's model and policy. `num_decoder_layers` overrides the plan's layer count (for
  // a plan built on a one-layer copy of the model); 0 keeps it.
  static MemorySizes of_plan(const Plan& plan, std::int64_t num_decoder_layers = 0);
};

// The equations above as coefficients of the shares, for one activation tier and batch count:
//   bytes on tier T = constant[T] + sum_k sum_t weights[k][t][T] w_k,t + sum_t cache[t][T] c_t
//                     + (T = gpu ? 2 max_k (1 - w_k,gpu) slot_bytes[k] : 0)
//                     + (T = cpu ? 2 max_k w_k,disk staging_bytes[k] : 0).
// The policy search's LP uses these rows directly (the maxima through one auxiliary variable each).
struct MemoryForm {
  TierValues constant;                               // activations and their buffers
  std::array<std::array<TierValues, 3>, 3> weights;  // [LayerKind][share's tier] -> bytes per tier
  std::array<TierValues, 3> cache;                   // [share's tier] -> bytes per tier
  std::array<double, 3> slot_bytes{};                // W_k (GPU weight slots)
  std::array<double, 3> staging_bytes{};             // W_k (CPU weight staging)

  TierValues evaluate(const PlacementShares& shares) const;
};
MemoryForm memory_form(const MemorySizes& sizes, Tier activations, std::int64_t num_gpu_batches,
                       bool cpu_cache_compute);

// Bytes each tier holds for B = num_gpu_batches gpu batches (the equations above). The runtime
// allocates all of it up front, so this is the peak in prefill and in decode alike.
TierValues predict_memory(const MemorySizes& sizes, const PlacementShares& shares, std::int64_t num_gpu_batches,
                          bool cpu_cache_compute);

// The GPU compute workspace the backend holds besides the planned buffers: the CUDA backend's own
// sizes (runtime/cuda_workspace.h: LayerNorm out, q, k, v, attention out, residual, MLP, the
// tensor-core prefill attention's score chunk, logits, decode-attention splits, cuBLAS, and with
// 4-bit weights one layer's dense weights, with a 4-bit cache one (layer, gpu batch)'s dense cache
// and new rows), each rounded up to the GPU alignment, plus kCudaPaddingAllowance for the alignment
// padding of the planned buffers. The backend allocates all of it once, for
// prefill and decode alike, so prefill == decode.
struct GpuWorkspace {
  double prefill = 0;
  double decode = 0;
  double peak() const { return prefill > decode ? prefill : decode; }
};
GpuWorkspace gpu_workspace(const ModelSpec& spec, const Workload& workload, const Policy& policy);

// What the cost model predicts a run holds.
struct MemoryEstimate {
  TierValues buffers;          // the planned buffers (predict_memory)
  GpuWorkspace gpu_workspace;  // the backend's GPU workspace (estimate)
  TierValues peak_prefill;     // buffers + the prefill workspace on the GPU
  TierValues peak_decode;      // buffers + the decode workspace on the GPU
  TierValues peak() const;     // the larger of the two per tier
};

// The memory of a plan (its effective shares and sizes).
MemoryEstimate estimate_memory(const Plan& plan);
// The same from sizes and shares, for `policy`'s number of gpu batches and switches.
MemoryEstimate estimate_memory(const MemorySizes& sizes, const PlacementShares& shares, const ModelSpec& spec,
                               const Workload& workload, const Policy& policy);

}  // namespace flexgen
