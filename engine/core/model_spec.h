#pragma once
// ModelSpec: the architecture of a decoder-only model and its exact parameter and byte counts.
// Two families: OPT (LayerNorm, learned positions, ReLU MLP, biases, tied LM head) and LLaMA
// (RMSNorm, rotary positions, SwiGLU MLP, grouped-query attention, no biases, tied or untied LM
// head; docs/llama.md). Each comes from a built-in table (opt-125m ... opt-175b, llama-2-7b ...
// llama-3-70b) or from an HF config.json.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "engine/core/units.h"

namespace flexgen {

enum class ModelFamily { kOpt, kLlama };
const char* family_name(ModelFamily family);  // "opt", "llama"

// Rotary position scaling of LLaMA models (HF's rope_scaling / rope_parameters): none ("default"),
// "linear" (positions divided by factor) or "llama3" (Llama 3.1's frequency-dependent factor).
enum class RopeScalingType { kNone, kLinear, kLlama3 };
struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;                      // linear and llama3
  double low_freq_factor = 1.0;             // llama3
  double high_freq_factor = 4.0;            // llama3
  std::int64_t original_max_positions = 0;  // llama3: original_max_position_embeddings
  bool operator==(const RopeScaling&) const = default;
};

enum class DType { kF32, kF16, kBF16 };
Bytes dtype_bytes(DType dtype);
const char* dtype_name(DType dtype);  // "f32", "f16", "bf16"

struct ModelSpec {
  std::string name;                 // "opt-6.7b", or the directory name for a config.json model
  ModelFamily family = ModelFamily::kOpt;
  std::int64_t num_layers = 0;      // decoder layers
  std::int64_t hidden_size = 0;     // h1 in the paper
  std::int64_t num_heads = 0;       // query heads
  // Key/value heads (grouped-query attention: num_heads / num_kv_heads query heads share each);
  // 0 means num_heads (every OPT model). Use kv_heads().
  std::int64_t num_kv_heads = 0;
  std::int64_t ffn_dim = 0;         // h2 in the paper (4 * hidden for OPT; intermediate_size for LLaMA)
  std::int64_t vocab_size = 0;
  std::int64_t max_positions = 0;   // max_position_embeddings (OPT stores max_positions + 2 rows)
  std::int64_t pad_token_id = 1;
  std::int64_t bos_token_id = 2;
  std::int64_t eos_token_id = 2;
  // Epsilon of the normalisation layers: LayerNorm's for OPT, RMSNorm's (rms_norm_eps) for LLaMA.
  double layer_norm_eps = 1e-5;
  DType dtype = DType::kF16;        // storage type of the weights for byte counts
  // LLaMA only: rotary base (rope_theta) and scaling; whether lm_head is the token embedding.
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = true;  // OPT: always

  std::int64_t head_dim() const { return hidden_size / num_heads; }
  std::int64_t kv_heads() const { return num_kv_heads > 0 ? num_kv_heads : num_heads; }
  std::int64_t kv_dim() const { return kv_heads() * head_dim(); }  // width of k and v
  std::int64_t queries_per_kv_head() const { return num_heads / kv_heads(); }
  // OPT's learned position table has max_positions + 2 rows (its offset of 2).
  std::int64_t position_rows() const { return max_positions + 2; }

  // Exact parameter counts (a tied LM head is the token embedding and not counted twice).
  // OPT layer: q, k, v, out projections with biases, fc1 and fc2 with biases, two LayerNorms.
  // LLaMA layer: q [h, h], k and v [kv_dim, h], o [h, h], gate and up [f, h], down [h, f], two
  // RMSNorm weights; no biases.
  std::int64_t layer_params() const;
  // Everything outside the decoder layers: OPT token + position embeddings + final LayerNorm;
  // LLaMA token embedding + final RMSNorm (+ lm_head when untied).
  std::int64_t embedding_params() const;
  std::int64_t total_params() const;
  Bytes layer_bytes() const { return layer_params() * dtype_bytes(dtype); }
  Bytes total_bytes() const { return total_params() * dtype_bytes(dtype); }
  // KV cache bytes for one token of one sequence in one layer (key and value, kv_heads heads).
  Bytes cache_bytes_per_token_per_layer() const { return 2 * kv_dim() * dtype_bytes(dtype); }

  // Throws flexgen::Error for an inconsistent spec: a non-positive size, hidden_size not divisible
  // by num_heads, num_heads not divisible by num_kv_heads, a token id outside the vocabulary, or a
  // size beyond the limits that keep every count above exact in 64 bits (layers <= 65536, hidden
  // <= 262144, ffn <= 1048576, vocab and positions <= 16777216); for LLaMA also an odd head_dim
  // (rotary pairs), a rope_theta or scaling parameter out of range. The counts above assume a
  // validated spec.
  void validate() const;

  bool operator==(const ModelSpec&) const = default;
  bool is_llama() const { return family == ModelFamily::kLlama; }

  // "opt-6.7b", also "facebook/opt-6.7b"; "llama-2-7b", also "meta-llama/Llama-2-7b-hf"; any
  // case; throws flexgen::Error listing the known names.
  static ModelSpec from_name(const std::string& name);
  // Reads an HF config.json of an OPTForCausalLM or a LlamaForCausalLM (or the directory holding
  // it); the name is the directory's name. Only pre-LayerNorm OPT without an embedding projection
  // is supported (not opt-350m); LLaMA as docs/llama.md lists. Throws flexgen::Error
  // "<path>: ..." naming the bad field.
  static ModelSpec from_config_json(const std::filesystem::path& config_path);
  // The same from an already parsed config; `origin` starts every error message.
  static ModelSpec from_config(const nlohmann::json& config, const std::string& name,
                               const std::string& origin);
  // "opt-125m", "opt-1.3b" ... "opt-175b", then "llama-2-7b" ... (the LLaMA table).
  static std::vector<std::string> known_names();
};

}  // namespace flexgen
