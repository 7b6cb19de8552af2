#pragma once
// The LLaMA family's part of ModelSpec (model_spec.cc dispatches here): its table of well-known
// sizes, its HF config.json reader, its parameter counts and checks. See docs/llama.md.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "engine/core/model_spec.h"

namespace flexgen {

namespace llama_spec {

// The table entry for a lower-case name ("llama-2-7b"; also "meta-llama/llama-2-7b-hf" and
// "meta-llama/meta-llama-3-8b"), or nothing.
std::optional<ModelSpec> from_table(const std::string& lower_name);
std::vector<std::string> table_names();

// A LlamaForCausalLM config.json (model_type "llama"); errors start with `origin` and name the field.
ModelSpec from_config(const nlohmann::json& config, const std::string& name, const std::string& origin);

std::int64_t layer_params(const ModelSpec& spec);
std::int64_t embedding_params(const ModelSpec& spec);

// LLaMA-only checks (head_dim even, rope parameters); messages start with `prefix`.
void check(const ModelSpec& spec, const std::string& prefix);

}  // namespace llama_spec

namespace spec_detail {
// Shared with the OPT reader in model_spec.cc.
DType parse_dtype_field(const nlohmann::json& value, std::string_view field, const std::string& origin);
void check_spec_fields(const ModelSpec& spec, const std::string& prefix);
}  // namespace spec_detail

}  // namespace flexgen
