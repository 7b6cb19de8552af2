#pragma once
// The weights of a LLaMA decoder (LlamaForCausalLM), one float32 host tensor per HF tensor.
// Linear weights keep HF's [out_features, in_features] layout (y = x W^T); LLaMA has no biases.
#include <cstdint>
#include <filesystem>
#include <vector>

#include "engine/core/model_spec.h"
#include "engine/model/opt_weights.h"
#include "engine/tensor/tensor.h"

namespace flexgen {

struct LlamaLayerWeights {
  Tensor input_norm;              // [h]  input_layernorm (RMSNorm before attention)
  Tensor q_weight;                // [h, h]
  Tensor k_weight, v_weight;      // [kv_dim, h]  (kv_dim = num_kv_heads * head_dim)
  Tensor o_weight;                // [h, h]
  Tensor post_norm;               // [h]  post_attention_layernorm (RMSNorm before the MLP)
  Tensor gate_weight, up_weight;  // [f, h]
  Tensor down_weight;             // [h, f]
};

struct LlamaWeights {
  Tensor embed_tokens;  // [vocab, h]
  Tensor final_norm;    // [h]  model.norm
  Tensor lm_head;       // [vocab, h]; empty when tied (spec.tie_word_embeddings): embed_tokens serves
  std::vector<LlamaLayerWeights> layers;

  const Tensor& head() const { return lm_head.empty() ? embed_tokens : lm_head; }
};

// Tensor names relative to "model." (as the Plan names them), with their shapes: embed_tokens,
// norm, then per layer self_attn.{q,k,v,o}_proj, input_layernorm, mlp.{gate,up,down}_proj,
// post_attention_layernorm (the attention part then the MLP part, each ending with its norm, the
// order the placement rule walks), and last "lm_head.weight" (its full HF name, outside "model.")
// unless the embeddings are tied. Resizes weights.layers to spec.num_layers.
std::vector<TensorSlot> llama_tensor_slots(const ModelSpec& spec, LlamaWeights& weights);

// Loads a LlamaForCausalLM directory (model.safetensors, or an index and shards; F32, F16 or BF16
// tensors, widened to float32): "model." + each slot's name, and lm_head.weight unless tied (when
// tied, an lm_head.weight present must have the embedding's shape and is ignored). Presence,
// dtype and shape of every tensor are checked before any data is read. Throws flexgen::Error
// naming the file and the tensor for a missing tensor, a wrong shape or dtype, or a tensor under
// "model." the spec does not have (more layers, biases); rotary_emb.inv_freq buffers that old
// conversions saved are ignored.
LlamaWeights load_llama_weights(const ModelSpec& spec, const std::filesystem::path& model_dir,
                                OptWeightsLoadReport* report = nullptr);

// Seeded dummy weights with make_dummy_opt_weights' distribution and seeding (per tensor name,
// the name relative to "model."): linear weights and the embedding N(0, 0.02), RMSNorm weights
// 1 + N(0, 0.02). Needs 4 * total_params bytes of host memory.
LlamaWeights make_dummy_llama_weights(const ModelSpec& spec, std::uint64_t seed);

// Checks every tensor's shape against the spec; flexgen::Error names the layer and tensor.
void check_llama_weights(const ModelSpec& spec, const LlamaWeights& weights);

}  // namespace flexgen
