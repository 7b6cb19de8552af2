#pragma once
// ModelSpec: the architecture of a decoder-only model and its exact parameter and byte counts.
// The OPT family comes from a built-in table (opt-125m ... opt-175b) or from any HF config.json.
// The family field leaves room for LLaMA-style models (RMSNorm, rotary, SwiGLU, GQA).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "engine/core/units.h"

namespace flexgen {

enum class ModelFamily { kOpt };

enum class DType { kF32, kF16, kBF16 };
Bytes dtype_bytes(DType dtype);
const char* dtype_name(DType dtype);  // "f32", "f16", "bf16"

struct ModelSpec {
  std::string name;                 // "opt-6.7b", or the directory name for a config.json model
  ModelFamily family = ModelFamily::kOpt;
  std::int64_t num_layers = 0;      // decoder layers
  std::int64_t hidden_size = 0;     // h1 in the paper
  std::int64_t num_heads = 0;
  std::int64_t ffn_dim = 0;         // h2 in the paper (4 * hidden for OPT)
  std::int64_t vocab_size = 0;
  std::int64_t max_positions = 0;   // max_position_embeddings (OPT stores max_positions + 2 rows)
  std::int64_t pad_token_id = 1;
  std::int64_t bos_token_id = 2;
  std::int64_t eos_token_id = 2;
  double layer_norm_eps = 1e-5;
  DType dtype = DType::kF16;        // storage type of the weights for byte counts

  std::int64_t head_dim() const { return hidden_size / num_heads; }
  // OPT's learned position table has max_positions + 2 rows (its offset of 2).
  std::int64_t position_rows() const { return max_positions + 2; }

  // Exact parameter counts (the LM head is tied to the token embedding and not counted twice).
  std::int64_t layer_params() const;      // one decoder layer: attention, MLP, two LayerNorms
  std::int64_t embedding_params() const;  // token + position embeddings + final LayerNorm
  std::int64_t total_params() const;
  Bytes layer_bytes() const { return layer_params() * dtype_bytes(dtype); }
  Bytes total_bytes() const { return total_params() * dtype_bytes(dtype); }
  // KV cache bytes for one token of one sequence in one layer (key and value).
  Bytes cache_bytes_per_token_per_layer() const { return 2 * hidden_size * dtype_bytes(dtype); }

  // Throws flexgen::Error for an inconsistent spec: a non-positive size, hidden_size not divisible
  // by num_heads, a token id outside the vocabulary, or a size beyond the limits that keep every
  // count above exact in 64 bits (layers <= 65536, hidden <= 262144, ffn <= 1048576,
  // vocab and positions <= 16777216). The counts above assume a validated spec.
  void validate() const;

  bool operator==(const ModelSpec&) const = default;

  // "opt-6.7b", also "facebook/opt-6.7b", any case; throws flexgen::Error listing the known names.
  static ModelSpec from_name(const std::string& name);
  // Reads an HF config.json of an OPTForCausalLM (or the directory holding it); the name is the
  // directory's name. Only pre-LayerNorm OPT without an embedding projection is supported (not
  // opt-350m). Throws flexgen::Error "<path>: ..." naming the bad field.
  static ModelSpec from_config_json(const std::filesystem::path& config_path);
  // The same from an already parsed config; `origin` starts every error message.
  static ModelSpec from_config(const nlohmann::json& config, const std::string& name,
                               const std::string& origin);
  static std::vector<std::string> known_names();  // "opt-125m", "opt-1.3b" ... "opt-175b"
};

}  // namespace flexgen
