#pragma once
// The model family behind the offloading runtime: what the runtime needs from OPT or LLaMA, so
// that the Plan, the Schedule and the runtimes dispatch on ModelSpec::family in a few places.
//   - the tensors of each schedule layer (0 embedding, 1..L decoder layers, L+1 output layer), by
//     the plan's names, in the order the placement rule walks them, and which part (attention or
//     MLP) of a decoder layer each belongs to (FlexGen places the two parts separately);
//   - the source tensors of a model by those names;
//   - HostDecoder: float32 weights filled by name, and the four compute pieces of a forward.
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/core/model_spec.h"
#include "engine/model/llama_weights.h"
#include "engine/model/opt_layer.h"
#include "engine/model/opt_weights.h"
#include "engine/tensor/tensor.h"

namespace flexgen {

// The tensors of schedule layer j with their shapes. OPT: layer 0 embed_tokens and
// embed_positions; decoder layer j the 16 tensors of "layers.<j-1>."; output layer the final
// LayerNorm and its own copy of embed_tokens (tied LM head). LLaMA: layer 0 embed_tokens; decoder
// layers the 9 tensors of "layers.<j-1>." (llama_tensor_slots' order); output layer norm.weight
// and lm_head.weight (untied) or its own copy of embed_tokens (tied).
std::vector<std::pair<std::string, Shape>> schedule_layer_tensors(const ModelSpec& spec, std::int64_t j);

// Whether a decoder-layer tensor belongs to the MLP part (OPT fc1, fc2, final_layer_norm; LLaMA
// mlp.*, post_attention_layernorm) rather than the attention part.
bool is_mlp_part(const ModelSpec& spec, const std::string& name);

// The model's float32 tensors by the plan's names.
std::map<std::string, const Tensor*> named_tensors(const ModelSpec& spec, const OptWeights& weights);
std::map<std::string, const Tensor*> named_tensors(const ModelSpec& spec, const LlamaWeights& weights);

// Float32 weights of either family, filled tensor by tensor by the runtime (decoded from wherever
// they live), and the forward pieces over them. Decoder layers are numbered 0..L-1 here.
class HostDecoder {
 public:
  explicit HostDecoder(const ModelSpec& spec);
  HostDecoder(const HostDecoder&) = delete;
  HostDecoder& operator=(const HostDecoder&) = delete;

  // The tensor that receives the plan tensor `name`; throws flexgen::Error for an unknown name.
  Tensor& target(const std::string& name);

  // hidden [B, T, h] of the token ids [B, T] at positions state.past_len ...
  Tensor embed(std::span<const std::int32_t> ids, const BatchState& state) const;
  // Normalisation, then q [B, T, h] (scaled; rotated for LLaMA), k and v [B, T, kv_dim].
  void attention_projections(std::int64_t layer, const Tensor& hidden, const BatchState& state, Tensor& q, Tensor& k,
                             Tensor& v) const;
  // hidden += out projection of `attended`, then the MLP half with its residual.
  void attention_output_and_mlp(std::int64_t layer, const Tensor& attended, Tensor& hidden) const;
  // Final normalisation and LM head for each sequence's last position: [B, vocab].
  Tensor final_last(const Tensor& hidden) const;

 private:
  ModelSpec spec_;
  OptWeights opt_;
  LlamaWeights llama_;
  std::map<std::string, Tensor*> targets_;
};

}  // namespace flexgen
