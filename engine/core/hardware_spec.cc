#include "engine/core/hardware_spec.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/core/json_fields.h"

namespace flexgen {
namespace {

struct ByteField {
  std::string_view key;
  Bytes HardwareSpec::*member;
};

struct RateField {
  std::string_view key;
  double HardwareSpec::*member;
};

constexpr std::array<ByteField, 3> kByteFields = {{
    {"gpu_memory_bytes", &HardwareSpec::gpu_memory_bytes},
    {"cpu_memory_bytes", &HardwareSpec::cpu_memory_bytes},
    {"disk_bytes", &HardwareSpec::disk_bytes},
}};

constexpr std::array<RateField, 11> kRateFields = {{
    {"h2d_bytes_per_s", &HardwareSpec::h2d_bytes_per_s},
    {"d2h_bytes_per_s", &HardwareSpec::d2h_bytes_per_s},
    {"disk_read_bytes_per_s", &HardwareSpec::disk_read_bytes_per_s},
    {"disk_write_bytes_per_s", &HardwareSpec::disk_write_bytes_per_s},
    {"gpu_gemm_prefill_flops_per_s", &HardwareSpec::gpu_gemm_prefill_flops_per_s},
    {"gpu_gemm_decode_flops_per_s", &HardwareSpec::gpu_gemm_decode_flops_per_s},
    {"gpu_attention_prefill_flops_per_s", &HardwareSpec::gpu_attention_prefill_flops_per_s},
    {"gpu_attention_decode_flops_per_s", &HardwareSpec::gpu_attention_decode_flops_per_s},
    {"cpu_attention_flops_per_s", &HardwareSpec::cpu_attention_flops_per_s},
    {"gpu_memory_bytes_per_s", &HardwareSpec::gpu_memory_bytes_per_s},
    {"cpu_memory_bytes_per_s", &HardwareSpec::cpu_memory_bytes_per_s},
}};

const std::initializer_list<std::string_view> kKnownKeys = {
    "name",
    "description",
    "gpu_memory_bytes",
    "cpu_memory_bytes",
    "disk_bytes",
    "h2d_bytes_per_s",
    "d2h_bytes_per_s",
    "disk_read_bytes_per_s",
    "disk_write_bytes_per_s",
    "gpu_gemm_prefill_flops_per_s",
    "gpu_gemm_decode_flops_per_s",
    "gpu_attention_prefill_flops_per_s",
    "gpu_attention_decode_flops_per_s",
    "cpu_attention_flops_per_s",
    "gpu_memory_bytes_per_s",
    "cpu_memory_bytes_per_s",
    "gpu_task_overhead_s",
    "gpu_dequant_bytes_per_s",
    "gpu_cache_dequant_bytes_per_s",
    "cpu_cache_attention_flops_per_s",
    "cpu_sparse_attention_flops_per_s",
    "disk_read_latency_s",
    "disk_write_latency_s",
};

// Optional refinements (absent: 0, the term is left out of the cost model).
constexpr std::array<RateField, 7> kOptionalFields = {{
    {"gpu_task_overhead_s", &HardwareSpec::gpu_task_overhead_s},
    {"gpu_dequant_bytes_per_s", &HardwareSpec::gpu_dequant_bytes_per_s},
    {"gpu_cache_dequant_bytes_per_s", &HardwareSpec::gpu_cache_dequant_bytes_per_s},
    {"cpu_cache_attention_flops_per_s", &HardwareSpec::cpu_cache_attention_flops_per_s},
    {"cpu_sparse_attention_flops_per_s", &HardwareSpec::cpu_sparse_attention_flops_per_s},
    {"disk_read_latency_s", &HardwareSpec::disk_read_latency_s},
    {"disk_write_latency_s", &HardwareSpec::disk_write_latency_s},
}};

// A positive whole number of bytes: an integer, or a float with no fractional part (16e9) below
// 2^63.
Bytes read_bytes(const nlohmann::json& json, std::string_view key, const std::string& origin) {
  const nlohmann::json& value = require_key(json, key, origin);
  std::optional<Bytes> bytes = json_as_int64(value);
  if (!bytes && value.is_number_float()) {
    const double number = value.get<double>();
    // 2^63 is exactly representable; every double below it converts to int64 exactly.
    constexpr double kLimit = 9223372036854775808.0;
    if (std::isfinite(number) && std::floor(number) == number && std::abs(number) < kLimit) {
      bytes = static_cast<Bytes>(number);
    }
  }
  FLEXGEN_REQUIRE(bytes && *bytes > 0, origin, ": field '", key,
                  "': expected a positive whole number of bytes (got ", json_preview(value), ")");
  return *bytes;
}

double read_rate(const nlohmann::json& json, std::string_view key, const std::string& origin) {
  const nlohmann::json& value = require_key(json, key, origin);
  const bool ok =
      value.is_number() && std::isfinite(value.get<double>()) && value.get<double>() > 0;
  FLEXGEN_REQUIRE(ok, origin, ": field '", key, "': expected a positive number (got ",
                  json_preview(value), ")");
  return value.get<double>();
}

}  // namespace

void HardwareSpec::validate() const {
  const std::string prefix = "invalid hardware '" + printable(name) + "'";
  FLEXGEN_REQUIRE(!name.empty(), "invalid hardware: field 'name' must not be empty");
  for (const ByteField& field : kByteFields) {
    FLEXGEN_REQUIRE(this->*field.member > 0, prefix, ": field '", field.key,
                    "' must be positive (got ", this->*field.member, ")");
  }
  for (const RateField& field : kRateFields) {
    const double value = this->*field.member;
    FLEXGEN_REQUIRE(std::isfinite(value) && value > 0, prefix, ": field '", field.key,
                    "' must be a positive finite number (got ", value, ")");
  }
  for (const RateField& field : kOptionalFields) {
    const double value = this->*field.member;
    FLEXGEN_REQUIRE(std::isfinite(value) && value >= 0, prefix, ": field '", field.key,
                    "' must be a finite number >= 0 (got ", value, ")");
  }
}

std::vector<std::string> HardwareSpec::numeric_fields() {
  std::vector<std::string> out;
  for (const ByteField& field : kByteFields) out.emplace_back(field.key);
  for (const RateField& field : kRateFields) out.emplace_back(field.key);
  for (const RateField& field : kOptionalFields) out.emplace_back(field.key);
  return out;
}

bool HardwareSpec::optional_field(std::string_view key) {
  return std::any_of(kOptionalFields.begin(), kOptionalFields.end(),
                     [&](const RateField& field) { return field.key == key; });
}

HardwareSpec HardwareSpec::from_json(const nlohmann::json& json, const std::string& origin) {
  FLEXGEN_REQUIRE(json.is_object(), origin, ": expected a JSON object (got ", json_preview(json),
                  ")");
  reject_unknown_keys(json, kKnownKeys, origin);

  HardwareSpec spec;
  const nlohmann::json& name = require_key(json, "name", origin);
  FLEXGEN_REQUIRE(name.is_string() && !name.get<std::string>().empty(), origin,
                  ": field 'name': expected a non-empty string (got ", json_preview(name), ")");
  spec.name = name.get<std::string>();
  if (const auto it = json.find("description"); it != json.end()) {
    FLEXGEN_REQUIRE(it->is_string(), origin, ": field 'description': expected a string (got ",
                    json_preview(*it), ")");
    spec.description = it->get<std::string>();
  }
  for (const ByteField& field : kByteFields) {
    spec.*field.member = read_bytes(json, field.key, origin);
  }
  for (const RateField& field : kRateFields) {
    spec.*field.member = read_rate(json, field.key, origin);
  }
  for (const RateField& field : kOptionalFields) {
    const auto it = json.find(field.key);
    if (it == json.end()) continue;
    const bool ok = it->is_number() && std::isfinite(it->get<double>()) && it->get<double>() >= 0;
    FLEXGEN_REQUIRE(ok, origin, ": field '", field.key, "': expected a number >= 0 (got ", json_preview(*it), ")");
    spec.*field.member = it->get<double>();
  }
  return spec;
}

HardwareSpec HardwareSpec::from_file(const std::filesystem::path& path) {
  return from_json(read_json_file(path), path.string());
}

nlohmann::json HardwareSpec::to_json() const {
  nlohmann::json json;
  json["name"] = name;
  json["description"] = description;
  for (const ByteField& field : kByteFields) json[std::string(field.key)] = this->*field.member;
  for (const RateField& field : kRateFields) json[std::string(field.key)] = this->*field.member;
  for (const RateField& field : kOptionalFields) {
    if (this->*field.member != 0) json[std::string(field.key)] = this->*field.member;
  }
  return json;
}

}  // namespace flexgen
