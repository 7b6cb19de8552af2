#include "engine/model/decoder.h"

#include "engine/core/error.h"
#include "engine/model/llama_layer.h"

namespace flexgen {

std::vector<std::pair<std::string, Shape>> schedule_layer_tensors(const ModelSpec& spec, std::int64_t j) {
  std::vector<std::pair<std::string, Shape>> out;
  const std::int64_t last = spec.num_layers + 1;
  const bool llama = spec.family == ModelFamily::kLlama;
  OptWeights opt_unused;
  LlamaWeights llama_unused;
  const std::vector<TensorSlot> slots =
      llama ? llama_tensor_slots(spec, llama_unused) : opt_tensor_slots(spec, opt_unused);
  const std::string prefix = "layers." + std::to_string(j - 1) + ".";
  for (const TensorSlot& slot : slots) {
    const std::string& n = slot.name;
    const bool is_layer = n.rfind("layers.", 0) == 0;
    if (j == 0) {
      if (n == "embed_tokens.weight" || n == "embed_positions.weight") out.emplace_back(n, slot.shape);
    } else if (j == last) {
      if (n == "final_layer_norm.weight" || n == "final_layer_norm.bias" || n == "norm.weight" ||
          n == "lm_head.weight") {
        out.emplace_back(n, slot.shape);
      }
    } else if (is_layer && n.rfind(prefix, 0) == 0) {
      out.emplace_back(n, slot.shape);
    }
  }
  // A tied LM head: the output layer's own copy of the token embedding (as FlexGen).
  if (j == last && (!llama || spec.tie_word_embeddings)) {
    out.emplace_back("embed_tokens.weight", Shape{spec.vocab_size, spec.hidden_size});
  }
  return out;
}

bool is_mlp_part(const ModelSpec& spec, const std::string& name) {
  if (spec.family == ModelFamily::kLlama) {
    return name.find(".mlp.") != std::string::npos || name.find(".post_attention_layernorm.") != std::string::npos;
  }
  return name.find(".fc") != std::string::npos || name.find(".final_layer_norm.") != std::string::npos;
}

std::map<std::string, const Tensor*> named_tensors(const ModelSpec& spec, const OptWeights& weights) {
  std::map<std::string, const Tensor*> out;
  for (const TensorSlot& slot : opt_tensor_slots(spec, const_cast<OptWeights&>(weights))) out[slot.name] = slot.target;
  return out;
}

std::map<std::string, const Tensor*> named_tensors(const ModelSpec& spec, const LlamaWeights& weights) {
  std::map<std::string, const Tensor*> out;
  for (const TensorSlot& slot : llama_tensor_slots(spec, const_cast<LlamaWeights&>(weights))) {
    out[slot.name] = slot.target;
  }
  return out;
}

HostDecoder::HostDecoder(const ModelSpec& spec) : spec_(spec) {
  const std::vector<TensorSlot> slots =
      spec_.family == ModelFamily::kLlama ? llama_tensor_slots(spec_, llama_) : opt_tensor_slots(spec_, opt_);
  for (const TensorSlot& slot : slots) targets_[slot.name] = slot.target;
}

Tensor& HostDecoder::target(const std::string& name) {
  const auto it = targets_.find(name);
  FLEXGEN_REQUIRE(it != targets_.end(), "model ", spec_.name, " has no tensor ", name);
  return *it->second;
}

Tensor HostDecoder::embed(std::span<const std::int32_t> ids, const BatchState& state) const {
  if (spec_.family == ModelFamily::kLlama) return llama_embed(spec_, llama_, ids, state);
  return opt_embed(spec_, opt_, ids, state);
}

void HostDecoder::attention_projections(std::int64_t layer, const Tensor& hidden, const BatchState& state, Tensor& q,
                                        Tensor& k, Tensor& v) const {
  const auto j = static_cast<std::size_t>(layer);
  if (spec_.family == ModelFamily::kLlama) {
    llama_attention_projections(spec_, llama_.layers[j], hidden, state, q, k, v);
  } else {
    opt_attention_projections(spec_, opt_.layers[j], hidden, q, k, v);
  }
}

void HostDecoder::attention_output_and_mlp(std::int64_t layer, const Tensor& attended, Tensor& hidden) const {
  const auto j = static_cast<std::size_t>(layer);
  if (spec_.family == ModelFamily::kLlama) {
    llama_attention_output_and_mlp(spec_, llama_.layers[j], attended, hidden);
  } else {
    opt_attention_output_and_mlp(spec_, opt_.layers[j], attended, hidden);
  }
}

Tensor HostDecoder::final_last(const Tensor& hidden) const {
  if (spec_.family == ModelFamily::kLlama) return llama_final_last(spec_, llama_, hidden);
  return opt_final_last(spec_, opt_, hidden);
}

}  // namespace flexgen
