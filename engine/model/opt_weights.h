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

// HF tensor names, relative to the "model.decoder." prefix, with their expected shapes, in file
// order. Used by the loader, the dummy-weight maker and the fixture checks.
struct TensorSlot {
  std::string name;  // e.g. "layers.3.fc1.weight"
  Shape shape;
  Tensor* target;
};
std::vector<TensorSlot> opt_tensor_slots(const ModelSpec& spec, OptWeights& weights);

// Loads the weights of `spec` from a model directory holding model.safetensors, or
// model.safetensors.index.json plus its shards. Accepts F32, F16 and BF16 tensors, with or without
// the "model." prefix; an lm_head.weight, if present, must equal the tied embedding's shape.
// Throws flexgen::Error naming the file and tensor for a missing tensor, a wrong shape or dtype.
OptWeights load_opt_weights(const ModelSpec& spec, const std::filesystem::path& model_dir);

// Seeded random weights for benchmarking models nobody has on disk: normal(0, 0.02)-like linear
// weights and embeddings, LayerNorm weights near 1; never all-ones or all-zeros.
OptWeights make_dummy_opt_weights(const ModelSpec& spec, std::uint64_t seed);

}  // namespace flexgen
