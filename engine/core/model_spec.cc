#include "engine/core/model_spec.h"

#include <array>
#include <cassert>
#include <cctype>
#include <string_view>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/core/json_fields.h"
#include "engine/core/llama_spec.h"

namespace flexgen {
namespace {

// Sizes that keep every parameter and byte count exact in 64 bits (see ModelSpec::validate).
constexpr std::int64_t kMaxLayers = std::int64_t{1} << 16;
constexpr std::int64_t kMaxHidden = std::int64_t{1} << 18;
constexpr std::int64_t kMaxFfn = std::int64_t{1} << 20;
constexpr std::int64_t kMaxRows = std::int64_t{1} << 24;  // vocabulary and positions

struct OptSize {
  std::string_view name;
  std::int64_t num_layers;
  std::int64_t hidden_size;
  std::int64_t num_heads;
  std::int64_t ffn_dim;
};

// HF's published architectures of facebook/opt-*. opt-350m is left out on purpose: it projects
// embeddings to 512 dimensions and uses post-LayerNorm.
constexpr std::array<OptSize, 8> kOptSizes = {{
    {"opt-125m", 12, 768, 12, 3072},
    {"opt-1.3b", 24, 2048, 32, 8192},
    {"opt-2.7b", 32, 2560, 32, 10240},
    {"opt-6.7b", 32, 4096, 32, 16384},
    {"opt-13b", 40, 5120, 40, 20480},
    {"opt-30b", 48, 7168, 56, 28672},
    {"opt-66b", 64, 9216, 72, 36864},
    {"opt-175b", 96, 12288, 96, 49152},
}};
constexpr std::int64_t kOptVocab = 50272;
constexpr std::int64_t kOptMaxPositions = 2048;

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string known_names_list() {
  std::string list;
  for (const std::string& name : ModelSpec::known_names()) {
    if (!list.empty()) list += ", ";
    list += name;
  }
  return list;
}

// The checks of validate(); messages start with `prefix`.
void check_spec(const ModelSpec& spec, const std::string& prefix) {
  const auto check_size = [&](std::string_view field, std::int64_t value, std::int64_t max) {
    FLEXGEN_REQUIRE(value > 0, prefix, ": ", field, " must be positive (got ", value, ")");
    FLEXGEN_REQUIRE(value <= max, prefix, ": ", field, " ", value, " is too large (at most ", max,
                    ")");
  };
  check_size("num_layers", spec.num_layers, kMaxLayers);
  check_size("hidden_size", spec.hidden_size, kMaxHidden);
  check_size("num_heads", spec.num_heads, spec.hidden_size);
  check_size("ffn_dim", spec.ffn_dim, kMaxFfn);
  check_size("vocab_size", spec.vocab_size, kMaxRows);
  check_size("max_positions", spec.max_positions, kMaxRows);
  FLEXGEN_REQUIRE(spec.hidden_size % spec.num_heads == 0, prefix, ": hidden_size ",
                  spec.hidden_size, " is not divisible by the number of heads ", spec.num_heads);
  FLEXGEN_REQUIRE(spec.num_kv_heads >= 0 && spec.num_kv_heads <= spec.num_heads &&
                      spec.num_heads % spec.kv_heads() == 0,
                  prefix, ": num_kv_heads ", spec.num_kv_heads,
                  " must divide the number of heads ", spec.num_heads);
  FLEXGEN_REQUIRE(spec.family == ModelFamily::kLlama || spec.kv_heads() == spec.num_heads, prefix,
                  ": OPT models have as many key/value heads as heads (num_kv_heads ",
                  spec.num_kv_heads, ", num_heads ", spec.num_heads, ")");
  const auto check_token = [&](std::string_view field, std::int64_t id) {
    FLEXGEN_REQUIRE(id >= 0 && id < spec.vocab_size, prefix, ": ", field, " ", id,
                    " is outside the vocabulary [0, ", spec.vocab_size, ")");
  };
  check_token("pad_token_id", spec.pad_token_id);
  check_token("bos_token_id", spec.bos_token_id);
  check_token("eos_token_id", spec.eos_token_id);
  FLEXGEN_REQUIRE(spec.layer_norm_eps > 0 && spec.layer_norm_eps < 1, prefix,
                  ": layer_norm_eps must be in (0, 1) (got ", spec.layer_norm_eps, ")");
  if (spec.family == ModelFamily::kLlama) llama_spec::check(spec, prefix);
}

DType parse_dtype(const nlohmann::json& value, std::string_view field, const std::string& origin) {
  FLEXGEN_REQUIRE(value.is_string(), origin, ": field '", field, "': expected a string (got ",
                  json_preview(value), ")");
  const std::string name = lower(value.get<std::string>());
  if (name == "float16" || name == "fp16" || name == "half") return DType::kF16;
  if (name == "bfloat16" || name == "bf16") return DType::kBF16;
  if (name == "float32" || name == "fp32" || name == "float") return DType::kF32;
  fail(origin, ": field '", field, "': unsupported dtype ", json_preview(value),
       " (expected float16, bfloat16 or float32)");
}

}  // namespace

const char* family_name(ModelFamily family) {
  return family == ModelFamily::kLlama ? "llama" : "opt";
}

Bytes dtype_bytes(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
      return 2;
    case DType::kBF16:
      return 2;
  }
  assert(false && "unknown DType");
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
  }
  assert(false && "unknown DType");
  return "?";
}

std::int64_t ModelSpec::layer_params() const {
  if (family == ModelFamily::kLlama) return llama_spec::layer_params(*this);
  const std::int64_t h = hidden_size;
  const std::int64_t f = ffn_dim;
  const std::int64_t attention = 4 * (h * h + h);      // q, k, v, out projections with biases
  const std::int64_t mlp = (h * f + f) + (f * h + h);  // fc1 and fc2 with biases
  const std::int64_t layer_norms = 2 * (2 * h);        // before attention and before MLP
  return attention + mlp + layer_norms;
}

std::int64_t ModelSpec::embedding_params() const {
  if (family == ModelFamily::kLlama) return llama_spec::embedding_params(*this);
  return vocab_size * hidden_size + position_rows() * hidden_size + 2 * hidden_size;
}

std::int64_t ModelSpec::total_params() const {
  return num_layers * layer_params() + embedding_params();
}

void ModelSpec::validate() const { check_spec(*this, "invalid model '" + name + "'"); }

ModelSpec ModelSpec::from_name(const std::string& name) {
  std::string key = lower(name);
  if (auto llama = llama_spec::from_table(key)) return *llama;
  if (key.rfind("facebook/", 0) == 0) key.erase(0, std::string_view("facebook/").size());
  for (const OptSize& size : kOptSizes) {
    if (key != size.name) continue;
    ModelSpec spec;
    spec.name = std::string(size.name);
    spec.family = ModelFamily::kOpt;
    spec.num_layers = size.num_layers;
    spec.hidden_size = size.hidden_size;
    spec.num_heads = size.num_heads;
    spec.num_kv_heads = size.num_heads;
    spec.ffn_dim = size.ffn_dim;
    spec.vocab_size = kOptVocab;
    spec.max_positions = kOptMaxPositions;
    spec.pad_token_id = 1;
    spec.bos_token_id = 2;
    spec.eos_token_id = 2;
    spec.layer_norm_eps = 1e-5;
    spec.dtype = DType::kF16;
    return spec;
  }
  if (key == "opt-350m") {
    fail(
        "model 'opt-350m' is not supported (it projects embeddings to 512 dimensions and uses "
        "post-LayerNorm); known models: ",
        known_names_list());
  }
  fail("unknown model '", printable(name), "'; known models: ", known_names_list());
}

std::vector<std::string> ModelSpec::known_names() {
  std::vector<std::string> names;
  for (const OptSize& size : kOptSizes) names.emplace_back(size.name);
  for (const std::string& name : llama_spec::table_names()) names.push_back(name);
  return names;
}

ModelSpec ModelSpec::from_config(const nlohmann::json& config, const std::string& name,
                                 const std::string& origin) {
  FLEXGEN_REQUIRE(config.is_object(), origin, ": expected a JSON object (got ",
                  json_preview(config), ")");
  const auto field = [&](std::string_view key) -> const nlohmann::json& {
    return require_key(config, key, origin);
  };
  const auto optional = [&](std::string_view key) -> const nlohmann::json* {
    const auto it = config.find(key);
    return it == config.end() ? nullptr : &*it;
  };
  const auto integer = [&](std::string_view key, bool positive) {
    const nlohmann::json& value = field(key);
    const auto number = json_as_int64(value);
    const bool ok = number && (positive ? *number > 0 : *number >= 0);
    FLEXGEN_REQUIRE(ok, origin, ": field '", key, "': expected a ",
                    positive ? "positive" : "non-negative", " integer (got ", json_preview(value),
                    ")");
    return *number;
  };
  const auto boolean = [&](const nlohmann::json& value, std::string_view key) {
    FLEXGEN_REQUIRE(value.is_boolean(), origin, ": field '", key, "': expected true or false (got ",
                    json_preview(value), ")");
    return value.get<bool>();
  };

  const nlohmann::json& model_type = field("model_type");
  FLEXGEN_REQUIRE(model_type.is_string(), origin, ": field 'model_type': expected a string (got ",
                  json_preview(model_type), ")");
  if (model_type.get<std::string>() == "llama") return llama_spec::from_config(config, name, origin);
  FLEXGEN_REQUIRE(model_type.get<std::string>() == "opt", origin, ": model_type ",
                  json_preview(model_type), " is not supported (only \"opt\" and \"llama\")");

  ModelSpec spec;
  spec.name = name;
  spec.family = ModelFamily::kOpt;
  spec.num_layers = integer("num_hidden_layers", true);
  spec.hidden_size = integer("hidden_size", true);
  spec.num_heads = integer("num_attention_heads", true);
  spec.num_kv_heads = spec.num_heads;
  spec.ffn_dim = integer("ffn_dim", true);
  spec.vocab_size = integer("vocab_size", true);
  spec.max_positions = integer("max_position_embeddings", true);
  spec.pad_token_id = integer("pad_token_id", false);
  spec.bos_token_id = integer("bos_token_id", false);
  spec.eos_token_id = integer("eos_token_id", false);
  spec.layer_norm_eps = 1e-5;  // fixed in OPT, not stored in its config
  spec.dtype = DType::kF16;

  if (optional("word_embed_proj_dim") != nullptr) {
    const std::int64_t projection = integer("word_embed_proj_dim", true);
    FLEXGEN_REQUIRE(projection == spec.hidden_size, origin, ": word_embed_proj_dim ", projection,
                    " differs from hidden_size ", spec.hidden_size,
                    "; projected embeddings (as in opt-350m) are not supported");
  }
  if (const auto* value = optional("do_layer_norm_before")) {
    FLEXGEN_REQUIRE(
        boolean(*value, "do_layer_norm_before"), origin,
        ": do_layer_norm_before false (post-LayerNorm, as in opt-350m) is not supported");
  }
  if (const auto* value = optional("layer_norm_elementwise_affine")) {
    FLEXGEN_REQUIRE(boolean(*value, "layer_norm_elementwise_affine"), origin,
                    ": layer_norm_elementwise_affine false (LayerNorm without weights) is not "
                    "supported");
  }
  if (const auto* value = optional("enable_bias")) {
    FLEXGEN_REQUIRE(boolean(*value, "enable_bias"), origin,
                    ": enable_bias false (linear layers without biases) is not supported");
  }
  if (const auto* value = optional("_remove_final_layer_norm")) {
    FLEXGEN_REQUIRE(!boolean(*value, "_remove_final_layer_norm"), origin,
                    ": _remove_final_layer_norm true (no final LayerNorm) is not supported");
  }
  if (const auto* value = optional("activation_function")) {
    FLEXGEN_REQUIRE(value->is_string() && value->get<std::string>() == "relu", origin,
                    ": field 'activation_function': only \"relu\" is supported (got ",
                    json_preview(*value), ")");
  }
  // Newer transformers write "dtype", older ones "torch_dtype".
  for (const std::string_view key : {"torch_dtype", "dtype"}) {
    if (const auto* value = optional(key)) spec.dtype = parse_dtype(*value, key, origin);
  }

  check_spec(spec, origin);
  return spec;
}

ModelSpec ModelSpec::from_config_json(const std::filesystem::path& config_path) {
  std::filesystem::path path = config_path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) path /= "config.json";
  const nlohmann::json config = read_json_file(path);
  const std::filesystem::path directory =
      std::filesystem::absolute(path, ec).lexically_normal().parent_path();
  std::string name = directory.filename().string();
  if (name.empty()) name = "model";
  return from_config(config, name, path.string());
}

}  // namespace flexgen

namespace flexgen::spec_detail {

DType parse_dtype_field(const nlohmann::json& value, std::string_view field, const std::string& origin) {
  return parse_dtype(value, field, origin);
}

void check_spec_fields(const ModelSpec& spec, const std::string& prefix) { check_spec(spec, prefix); }

}  // namespace flexgen::spec_detail
