#include "engine/model/llama_weights.h"

#include <cmath>
#include <random>
#include <set>
#include <string>

#include "engine/core/error.h"
#include "engine/model/weight_files.h"

namespace flexgen {
namespace {

constexpr const char* kPrefix = "model.";
constexpr const char* kLmHead = "lm_head.weight";

std::uint64_t fnv1a64(const std::string& text) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_norm_weight(const std::string& name) { return ends_with(name, "norm.weight"); }

// The full HF name of a slot.
std::string full_name(const std::string& slot_name) {
  return slot_name == kLmHead ? slot_name : kPrefix + slot_name;
}

void check_shape(const std::string& owner, const char* name, const Tensor& t, const Shape& expected) {
  FLEXGEN_REQUIRE(t.shape() == expected, owner, ": ", name, " has shape ", shape_to_string(t.shape()), ", expected ",
                  shape_to_string(expected));
}

}  // namespace

std::vector<TensorSlot> llama_tensor_slots(const ModelSpec& spec, LlamaWeights& weights) {
  const std::int64_t h = spec.hidden_size;
  const std::int64_t f = spec.ffn_dim;
  const std::int64_t kv = spec.kv_dim();
  weights.layers.resize(static_cast<std::size_t>(spec.num_layers));
  std::vector<TensorSlot> slots;
  slots.reserve(3 + 9 * weights.layers.size());
  slots.push_back({"embed_tokens.weight", {spec.vocab_size, h}, &weights.embed_tokens});
  slots.push_back({"norm.weight", {h}, &weights.final_norm});
  for (std::size_t i = 0; i < weights.layers.size(); ++i) {
    LlamaLayerWeights& l = weights.layers[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    slots.push_back({p + "self_attn.q_proj.weight", {h, h}, &l.q_weight});
    slots.push_back({p + "self_attn.k_proj.weight", {kv, h}, &l.k_weight});
    slots.push_back({p + "self_attn.v_proj.weight", {kv, h}, &l.v_weight});
    slots.push_back({p + "self_attn.o_proj.weight", {h, h}, &l.o_weight});
    slots.push_back({p + "input_layernorm.weight", {h}, &l.input_norm});
    slots.push_back({p + "mlp.gate_proj.weight", {f, h}, &l.gate_weight});
    slots.push_back({p + "mlp.up_proj.weight", {f, h}, &l.up_weight});
    slots.push_back({p + "mlp.down_proj.weight", {h, f}, &l.down_weight});
    slots.push_back({p + "post_attention_layernorm.weight", {h}, &l.post_norm});
  }
  if (!spec.tie_word_embeddings) slots.push_back({kLmHead, {spec.vocab_size, h}, &weights.lm_head});
  return slots;
}

LlamaWeights load_llama_weights(const ModelSpec& spec, const std::filesystem::path& model_dir,
                                OptWeightsLoadReport* report) {
  FLEXGEN_REQUIRE(spec.family == ModelFamily::kLlama, "model ", spec.name, " is not a LLaMA model");
  spec.validate();
  WeightFiles files(model_dir, report);
  const std::string& source = files.source();

  LlamaWeights weights;
  const std::vector<TensorSlot> slots = llama_tensor_slots(spec, weights);
  struct Read {
    const TensorSlot* slot;
    std::string name;
    const SafetensorsFile* file;
  };
  std::vector<Read> reads;
  std::set<std::string> expected;
  for (const TensorSlot& slot : slots) {
    const std::string name = full_name(slot.name);
    if (!files.has(name)) {
      if (name == kLmHead) {
        fail(source, ": missing tensor ", name, " (config.json says tie_word_embeddings is false)");
      }
      fail(source, ": missing tensor ", name);
    }
    expected.insert(name);
    const SafetensorsFile& file = files.file_for(name);
    file.require_float(name);
    const Shape& got = file.entry(name).shape;
    FLEXGEN_REQUIRE(got == slot.shape, file.path().string(), ": tensor ", name, ": expected ",
                    shape_to_string(slot.shape), ", got ", shape_to_string(got));
    reads.push_back({&slot, name, &file});
  }
  for (const auto& [name, shard] : files.catalog()) {
    if (name.rfind(kPrefix, 0) != 0 || expected.count(name) != 0) continue;
    if (ends_with(name, "rotary_emb.inv_freq")) continue;  // a buffer, recomputed from rope_theta
    fail(source, ": unexpected tensor ", name, " (not part of model ", spec.name, " with ", spec.num_layers,
         " layers, ", spec.kv_heads(), " key/value heads, no biases)");
  }
  if (spec.tie_word_embeddings && files.has(kLmHead)) {
    const SafetensorsFile& file = files.file_for(kLmHead);
    const Shape embedding_shape{spec.vocab_size, spec.hidden_size};
    const Shape& got = file.entry(kLmHead).shape;
    FLEXGEN_REQUIRE(got == embedding_shape, file.path().string(), ": tensor ", kLmHead, ": expected ",
                    shape_to_string(embedding_shape), " (the tied embedding), got ", shape_to_string(got));
  }
  for (const Read& r : reads) {
    *r.slot->target = r.file->read_float(r.name);
    if (report != nullptr) ++report->tensors_read;
  }
  return weights;
}

LlamaWeights make_dummy_llama_weights(const ModelSpec& spec, std::uint64_t seed) {
  FLEXGEN_REQUIRE(spec.family == ModelFamily::kLlama, "model ", spec.name, " is not a LLaMA model");
  spec.validate();
  LlamaWeights weights;
  constexpr std::uint64_t kFieldMask = (std::uint64_t{1} << 21) - 1;
  constexpr std::int64_t kCentre = 6 * (std::int64_t{1} << 21);
  const double scale = 0.02 * std::sqrt(2.0) / static_cast<double>(std::int64_t{1} << 22);
  for (const TensorSlot& slot : llama_tensor_slots(spec, weights)) {
    std::mt19937_64 engine(splitmix64(seed ^ fnv1a64(slot.name)));
    Tensor tensor(slot.shape);
    const bool norm = is_norm_weight(slot.name);
    float* out = tensor.data();
    const std::int64_t n = tensor.numel();
    for (std::int64_t i = 0; i < n; ++i) {
      std::int64_t s = 0;
      for (int j = 0; j < 2; ++j) {
        const std::uint64_t r = engine();
        for (int k = 0; k < 3; ++k) s += 2 * static_cast<std::int64_t>((r >> (21 * k)) & kFieldMask) + 1;
      }
      const auto noise = static_cast<float>(static_cast<double>(s - kCentre) * scale);
      out[i] = norm ? 1.0f + noise : noise;
    }
    *slot.target = std::move(tensor);
  }
  return weights;
}

void check_llama_weights(const ModelSpec& spec, const LlamaWeights& weights) {
  const std::int64_t h = spec.hidden_size, f = spec.ffn_dim, kv = spec.kv_dim();
  check_shape("model weights", "embed_tokens", weights.embed_tokens, {spec.vocab_size, h});
  check_shape("model weights", "final_norm", weights.final_norm, {h});
  if (!spec.tie_word_embeddings) check_shape("model weights", "lm_head", weights.lm_head, {spec.vocab_size, h});
  FLEXGEN_REQUIRE(static_cast<std::int64_t>(weights.layers.size()) == spec.num_layers, "model weights: ",
                  weights.layers.size(), " layers, the spec has ", spec.num_layers);
  for (std::size_t j = 0; j < weights.layers.size(); ++j) {
    const LlamaLayerWeights& l = weights.layers[j];
    const std::string owner = "layer " + std::to_string(j) + " weights";
    check_shape(owner, "input_norm", l.input_norm, {h});
    check_shape(owner, "q_weight", l.q_weight, {h, h});
    check_shape(owner, "k_weight", l.k_weight, {kv, h});
    check_shape(owner, "v_weight", l.v_weight, {kv, h});
    check_shape(owner, "o_weight", l.o_weight, {h, h});
    check_shape(owner, "post_norm", l.post_norm, {h});
    check_shape(owner, "gate_weight", l.gate_weight, {f, h});
    check_shape(owner, "up_weight", l.up_weight, {f, h});
    check_shape(owner, "down_weight", l.down_weight, {h, f});
  }
}

}  // namespace flexgen
