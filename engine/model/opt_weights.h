#pragma once
// The weights of an OPT decoder, one float32 host tensor per HF tensor. Linear weights keep HF's
// [out_features, in_features] layout (y = x W^T + b).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/core/model_spec.h"
#include "engine/tensor/tensor.h"

namespace flexgen {

struct OptLayerWeights {
  Tensor attn_ln_weight, attn_ln_bias;  // [h]        self_attn_layer_norm
  Tensor q_weight, q_bias;              // [h, h], [h]
  Tensor k_weight, k_bias;              // [h, h], [h]
  Tensor v_weight, v_bias;              // [h, h], [h]
  Tensor out_weight, out_bias;          // [h, h], [h]  self_attn.out_proj
  Tensor mlp_ln_weight, mlp_ln_bias;    // [h]        final_layer_norm (of the layer)
  Tensor fc1_weight, fc1_bias;          // [f, h], [f]
  Tensor fc2_weight, fc2_bias;          // [h, f], [h]
};

struct OptWeights {
  Tensor embed_tokens;     // [vocab, h]; also the LM head (tied)
  Tensor embed_positions;  // [max_positions + 2, h]
  Tensor final_ln_weight, final_ln_bias;  // [h]
  std::vector<OptLayerWeights> layers;
};

// HF tensor names, relative to the "model.decoder." prefix, with their expected shapes: the
// embeddings, the final LayerNorm, then per layer q, k, v, out_proj, self_attn_layer_norm, fc1,
// fc2, final_layer_norm (each weight before its bias); 4 + 16 * num_layers slots. Resizes
// weights.layers to spec.num_layers; `target` points into `weights` and stays valid until it is
// moved or its layers resized. Used by the loader, the dummy-weight maker and the fixture checks.
struct TensorSlot {
  std::string name;  // e.g. "layers.3.fc1.weight"
  Shape shape;
  Tensor* target;
};
std::vector<TensorSlot> opt_tensor_slots(const ModelSpec& spec, OptWeights& weights);

// What load_opt_weights did, for logs and tests.
struct OptWeightsLoadReport {
  std::vector<std::filesystem::path> files_opened;  // each safetensors file, in opening order
  std::int64_t tensors_read = 0;
};

// Loads the weights of `spec` from a model directory holding model.safetensors (preferred when
// both exist, as in HF transformers), or model.safetensors.index.json
// ({"metadata": ..., "weight_map": {"tensor name": "shard file name"}}) plus its shards; each file
// is opened once. Tensor names may carry the "model.decoder." (OPTForCausalLM) or "decoder."
// (OPTModel) prefix. Accepts F32, F16 and BF16 tensors (widened to float32). An lm_head.weight,
// if present, must have the embedding's shape [vocab, h]; its values are ignored (tied).
// Every tensor's presence, dtype and shape is checked before any data is read. Throws
// flexgen::Error naming the file and the tensor for a missing tensor, a wrong shape or dtype, a
// tensor under the decoder prefix that the spec does not have (e.g. more layers than the spec, or
// OPT-350m's project_in/out), no weights file, malformed index JSON or a missing shard.
OptWeights load_opt_weights(const ModelSpec& spec, const std::filesystem::path& model_dir,
                            OptWeightsLoadReport* report = nullptr);

// Seeded random weights for benchmarking models nobody has on disk: linear weights, embeddings
// and biases ~ N(0, 0.02), LayerNorm weights 1 + N(0, 0.02), LayerNorm biases N(0, 0.02); never
// all-ones or all-zeros. Identical on every platform (integer arithmetic and IEEE operations only):
// for the tensor named `name` (relative to "model.decoder."), an std::mt19937_64 is seeded with
// splitmix64(seed ^ fnv1a64(name)); each element takes two draws r0, r1 and sums their six
// 21-bit fields, s = sum_{j<2,k<3} (2 * ((r_j >> 21k) & (2^21 - 1)) + 1), an Irwin-Hall
// approximation of the normal (six uniforms), and is float((s - 6 * 2^21) * (0.02 * sqrt(2) / 2^22))
// (variance 0.02^2, bounded by 4.24 sigma), plus 1.0f for LayerNorm weights. A tensor's values depend only on seed, name and size, not on the
// number of layers. Needs 4 * total_params bytes of host memory (26.8 GB for OPT-6.7b, 700 GB for
// OPT-175b): the caller must decide whether the model fits before calling.
OptWeights make_dummy_opt_weights(const ModelSpec& spec, std::uint64_t seed);

}  // namespace flexgen
