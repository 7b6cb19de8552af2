#include "engine/core/llama_spec.h"

#include <array>
#include <cmath>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/json_fields.h"

namespace flexgen::llama_spec {
namespace {

struct LlamaSize {
  std::string_view name;
  std::int64_t num_layers, hidden_size, num_heads, num_kv_heads, ffn_dim, vocab_size, max_positions;
  double rope_theta;
  std::int64_t bos, eos;
  bool llama3_scaling;  // Llama 3.1's rope scaling: factor 8, low 1, high 4, original 8192
};

// The published architectures of Meta's models as HF configures them (config.json of
// meta-llama/Llama-2-*-hf, Meta-Llama-3-*, Llama-3.1-8B): sizes, heads, vocabulary, positions,
// rope_theta, special ids. All untied, rms_norm_eps 1e-5.
constexpr std::array<LlamaSize, 6> kLlamaSizes = {{
    {"llama-2-7b", 32, 4096, 32, 32, 11008, 32000, 4096, 10000.0, 1, 2, false},
    {"llama-2-13b", 40, 5120, 40, 40, 13824, 32000, 4096, 10000.0, 1, 2, false},
    {"llama-2-70b", 80, 8192, 64, 8, 28672, 32000, 4096, 10000.0, 1, 2, false},
    {"llama-3-8b", 32, 4096, 32, 8, 14336, 128256, 8192, 500000.0, 128000, 128001, false},
    {"llama-3-70b", 80, 8192, 64, 8, 28672, 128256, 8192, 500000.0, 128000, 128001, false},
    {"llama-3.1-8b", 32, 4096, 32, 8, 14336, 128256, 131072, 500000.0, 128000, 128001, true},
}};

bool strip_prefix(std::string& s, std::string_view prefix) {
  if (s.rfind(prefix, 0) != 0) return false;
  s.erase(0, prefix.size());
  return true;
}

bool strip_suffix(std::string& s, std::string_view suffix) {
  if (s.size() < suffix.size() || s.compare(s.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
  s.erase(s.size() - suffix.size());
  return true;
}

const char* scaling_name(RopeScalingType t) {
  switch (t) {
    case RopeScalingType::kNone: return "default";
    case RopeScalingType::kLinear: return "linear";
    case RopeScalingType::kLlama3: return "llama3";
  }
  return "?";
}

}  // namespace

std::optional<ModelSpec> from_table(const std::string& lower_name) {
  std::string key = lower_name;
  if (strip_prefix(key, "meta-llama/")) {
    strip_prefix(key, "meta-");
    strip_suffix(key, "-hf");
  }
  for (const LlamaSize& size : kLlamaSizes) {
    if (key != size.name) continue;
    ModelSpec spec;
    spec.name = std::string(size.name);
    spec.family = ModelFamily::kLlama;
    spec.num_layers = size.num_layers;
    spec.hidden_size = size.hidden_size;
    spec.num_heads = size.num_heads;
    spec.num_kv_heads = size.num_kv_heads;
    spec.ffn_dim = size.ffn_dim;
    spec.vocab_size = size.vocab_size;
    spec.max_positions = size.max_positions;
    spec.bos_token_id = size.bos;
    spec.eos_token_id = size.eos;
    spec.pad_token_id = size.eos;  // the models define no pad token; padding is masked anyway
    spec.layer_norm_eps = 1e-5;
    spec.dtype = DType::kF16;
    spec.rope_theta = size.rope_theta;
    if (size.llama3_scaling) {
      spec.rope_scaling = {RopeScalingType::kLlama3, 8.0, 1.0, 4.0, 8192};
    }
    spec.tie_word_embeddings = false;
    return spec;
  }
  return std::nullopt;
}

std::vector<std::string> table_names() {
  std::vector<std::string> names;
  for (const LlamaSize& size : kLlamaSizes) names.emplace_back(size.name);
  return names;
}

std::int64_t layer_params(const ModelSpec& spec) {
  const std::int64_t h = spec.hidden_size;
  const std::int64_t f = spec.ffn_dim;
  const std::int64_t kv = spec.kv_dim();
  const std::int64_t attention = 2 * h * h + 2 * h * kv;  // q, o [h, h]; k, v [kv, h]
  const std::int64_t mlp = 3 * h * f;                     // gate, up [f, h]; down [h, f]
  const std::int64_t norms = 2 * h;                       // input and post-attention RMSNorm
  return attention + mlp + norms;
}

std::int64_t embedding_params(const ModelSpec& spec) {
  const std::int64_t table = spec.vocab_size * spec.hidden_size;
  return table + spec.hidden_size + (spec.tie_word_embeddings ? 0 : table);
}

void check(const ModelSpec& spec, const std::string& prefix) {
  FLEXGEN_REQUIRE(spec.head_dim() % 2 == 0, prefix, ": head_dim ", spec.head_dim(),
                  " is odd; rotary embeddings rotate pairs of dimensions");
  FLEXGEN_REQUIRE(std::isfinite(spec.rope_theta) && spec.rope_theta > 1.0, prefix, ": rope_theta ",
                  spec.rope_theta, " must be finite and greater than 1");
  const RopeScaling& r = spec.rope_scaling;
  if (r.type == RopeScalingType::kNone) return;
  FLEXGEN_REQUIRE(std::isfinite(r.factor) && r.factor > 0.0, prefix, ": rope scaling (", scaling_name(r.type),
                  ") factor ", r.factor, " must be positive");
  if (r.type == RopeScalingType::kLlama3) {
    FLEXGEN_REQUIRE(std::isfinite(r.low_freq_factor) && std::isfinite(r.high_freq_factor) &&
                        r.low_freq_factor > 0.0 && r.high_freq_factor > r.low_freq_factor,
                    prefix, ": rope scaling (llama3) needs 0 < low_freq_factor < high_freq_factor (got ",
                    r.low_freq_factor, " and ", r.high_freq_factor, ")");
    FLEXGEN_REQUIRE(r.original_max_positions > 0, prefix,
                    ": rope scaling (llama3) original_max_position_embeddings must be positive (got ",
                    r.original_max_positions, ")");
  }
}

ModelSpec from_config(const nlohmann::json& config, const std::string& name, const std::string& origin) {
  const auto optional = [&](const nlohmann::json& object, std::string_view key) -> const nlohmann::json* {
    const auto it = object.find(key);
    return it == object.end() || it->is_null() ? nullptr : &*it;
  };
  const auto integer_value = [&](const nlohmann::json& value, std::string_view key, bool positive) {
    const auto number = json_as_int64(value);
    const bool ok = number && (positive ? *number > 0 : *number >= 0);
    FLEXGEN_REQUIRE(ok, origin, ": field '", key, "': expected a ", positive ? "positive" : "non-negative",
                    " integer (got ", json_preview(value), ")");
    return *number;
  };
  const auto integer = [&](std::string_view key, bool positive) {
    return integer_value(require_key(config, key, origin), key, positive);
  };
  const auto number_value = [&](const nlohmann::json& value, std::string_view key) {
    FLEXGEN_REQUIRE(value.is_number(), origin, ": field '", key, "': expected a number (got ",
                    json_preview(value), ")");
    return value.get<double>();
  };
  const auto boolean = [&](const nlohmann::json& value, std::string_view key) {
    FLEXGEN_REQUIRE(value.is_boolean(), origin, ": field '", key, "': expected true or false (got ",
                    json_preview(value), ")");
    return value.get<bool>();
  };

  ModelSpec spec;
  spec.name = name;
  spec.family = ModelFamily::kLlama;
  spec.num_layers = integer("num_hidden_layers", true);
  spec.hidden_size = integer("hidden_size", true);
  spec.num_heads = integer("num_attention_heads", true);
  spec.num_kv_heads = spec.num_heads;
  if (const auto* v = optional(config, "num_key_value_heads")) {
    spec.num_kv_heads = integer_value(*v, "num_key_value_heads", true);
  }
  spec.ffn_dim = integer("intermediate_size", true);
  spec.vocab_size = integer("vocab_size", true);
  spec.max_positions = integer("max_position_embeddings", true);
  spec.bos_token_id = 1;
  spec.eos_token_id = 2;
  if (const auto* v = optional(config, "bos_token_id")) spec.bos_token_id = integer_value(*v, "bos_token_id", false);
  if (const auto* v = optional(config, "eos_token_id")) {
    // Llama 3.1 instruct lists several end tokens; the engine stops on one: the first.
    if (v->is_array()) {
      FLEXGEN_REQUIRE(!v->empty(), origin, ": field 'eos_token_id': an empty list");
      spec.eos_token_id = integer_value(v->front(), "eos_token_id", false);
    } else {
      spec.eos_token_id = integer_value(*v, "eos_token_id", false);
    }
  }
  // LLaMA defines no pad token; padding is masked, so any id serves: the end token, as HF generate.
  spec.pad_token_id = spec.eos_token_id;
  if (const auto* v = optional(config, "pad_token_id")) spec.pad_token_id = integer_value(*v, "pad_token_id", false);
  spec.layer_norm_eps = 1e-6;  // LlamaConfig's default
  if (const auto* v = optional(config, "rms_norm_eps")) spec.layer_norm_eps = number_value(*v, "rms_norm_eps");
  spec.dtype = DType::kF16;
  for (const std::string_view key : {"torch_dtype", "dtype"}) {
    if (const auto* v = optional(config, key)) spec.dtype = spec_detail::parse_dtype_field(*v, key, origin);
  }
  spec.tie_word_embeddings = false;  // LlamaConfig's default
  if (const auto* v = optional(config, "tie_word_embeddings")) {
    spec.tie_word_embeddings = boolean(*v, "tie_word_embeddings");
  }

  // Architecture switches this implementation does not have.
  if (const auto* v = optional(config, "head_dim")) {
    const std::int64_t head_dim = integer_value(*v, "head_dim", true);
    FLEXGEN_REQUIRE(spec.hidden_size % spec.num_heads == 0 && head_dim == spec.hidden_size / spec.num_heads, origin,
                    ": field 'head_dim': ", head_dim, " differs from hidden_size / num_attention_heads (",
                    spec.hidden_size, " / ", spec.num_heads, "); not supported");
  }
  for (const std::string_view key : {"attention_bias", "mlp_bias"}) {
    if (const auto* v = optional(config, key)) {
      FLEXGEN_REQUIRE(!boolean(*v, key), origin, ": field '", key, "': biases in LLaMA layers are not supported");
    }
  }
  if (const auto* v = optional(config, "hidden_act")) {
    FLEXGEN_REQUIRE(v->is_string() && v->get<std::string>() == "silu", origin,
                    ": field 'hidden_act': only \"silu\" is supported (got ", json_preview(*v), ")");
  }

  // Rotary embeddings: transformers 4 writes rope_theta and rope_scaling (null or an object with
  // "type" or "rope_type"); transformers 5 writes rope_parameters (an object with rope_type,
  // rope_theta and the scaling parameters).
  const nlohmann::json* rope = optional(config, "rope_parameters");
  std::string rope_field = "rope_parameters";
  if (rope == nullptr) {
    rope = optional(config, "rope_scaling");
    rope_field = "rope_scaling";
  }
  if (const auto* v = optional(config, "rope_theta")) spec.rope_theta = number_value(*v, "rope_theta");
  if (rope != nullptr) {
    FLEXGEN_REQUIRE(rope->is_object(), origin, ": field '", rope_field, "': expected an object or null (got ",
                    json_preview(*rope), ")");
    const auto field = [&](std::string_view key) { return std::string(rope_field) + "." + std::string(key); };
    if (const auto* v = optional(*rope, "rope_theta")) spec.rope_theta = number_value(*v, field("rope_theta"));
    std::string type = "default";
    for (const std::string_view key : {"type", "rope_type"}) {
      if (const auto* v = optional(*rope, key)) {
        FLEXGEN_REQUIRE(v->is_string(), origin, ": field '", field(key), "': expected a string (got ",
                        json_preview(*v), ")");
        type = v->get<std::string>();
      }
    }
    if (const auto* v = optional(*rope, "partial_rotary_factor")) {
      FLEXGEN_REQUIRE(number_value(*v, field("partial_rotary_factor")) == 1.0, origin, ": field '",
                      field("partial_rotary_factor"), "': only 1 (rotary over the whole head) is supported");
    }
    const auto number = [&](std::string_view key) {
      return number_value(require_key(*rope, key, origin + ": field '" + rope_field + "'"), field(key));
    };
    RopeScaling& r = spec.rope_scaling;
    if (type == "default") {
      r = RopeScaling{};
    } else if (type == "linear") {
      r.type = RopeScalingType::kLinear;
      r.factor = number("factor");
    } else if (type == "llama3") {
      r.type = RopeScalingType::kLlama3;
      r.factor = number("factor");
      r.low_freq_factor = number("low_freq_factor");
      r.high_freq_factor = number("high_freq_factor");
      r.original_max_positions = integer_value(
          require_key(*rope, "original_max_position_embeddings", origin + ": field '" + rope_field + "'"),
          field("original_max_position_embeddings"), true);
    } else {
      fail(origin, ": field '", field("rope_type"), "': rope type \"", type,
           "\" is not supported (supported: default, linear, llama3)");
    }
  }
  spec_detail::check_spec_fields(spec, origin);
  return spec;
}

}  // namespace flexgen::llama_spec
