#include "engine/core/policy.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <string_view>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/json_fields.h"

namespace flexgen {
namespace {

constexpr const char* kPrefix = "invalid policy: ";
constexpr double kPercentTolerance = 1e-9;
constexpr int kSupportedBits = 4;
constexpr int kSupportedGroupSize = 64;

// Shortest text that reads back as the same double: 20, 12.5, 33.333333333333336.
std::string format_number(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

void check_placement(const Placement& placement, std::string_view what) {
  const auto check_range = [&](double percent, std::string_view tier) {
    FLEXGEN_REQUIRE(percent >= 0.0 && percent <= 100.0, kPrefix, what, " placement ", tier, " ",
                    format_number(percent), "% is outside [0, 100]");
  };
  check_range(placement.gpu_percent, "gpu");
  check_range(placement.cpu_percent, "cpu");
  FLEXGEN_REQUIRE(placement.gpu_percent + placement.cpu_percent <= 100.0 + kPercentTolerance,
                  kPrefix, what, " placement gpu ", format_number(placement.gpu_percent),
                  "% + cpu ", format_number(placement.cpu_percent), "% exceeds 100%");
}

}  // namespace

void PolicyConfig::set_percent(const std::array<double, 6>& percent) {
  weights = {percent[0], percent[1]};
  cache = {percent[2], percent[3]};
  activations = {percent[4], percent[5]};
}

Policy Policy::create(const PolicyConfig& config) {
  FLEXGEN_REQUIRE(config.gpu_batch_size >= 1, kPrefix, "--gpu-batch-size must be at least 1 (got ",
                  config.gpu_batch_size, ")");
  FLEXGEN_REQUIRE(config.num_gpu_batches >= 1, kPrefix,
                  "--num-gpu-batches must be at least 1 (got ", config.num_gpu_batches, ")");
  std::int64_t block = 0;
  FLEXGEN_REQUIRE(!__builtin_mul_overflow(config.gpu_batch_size, config.num_gpu_batches, &block),
                  kPrefix, "block size --gpu-batch-size ", config.gpu_batch_size,
                  " x --num-gpu-batches ", config.num_gpu_batches, " is too large");
  check_placement(config.weights, "weight");
  check_placement(config.cache, "cache");
  check_placement(config.activations, "activation");
  FLEXGEN_REQUIRE(config.attn_sparsity > 0.0 && config.attn_sparsity <= 1.0, kPrefix,
                  "--attn-sparsity must be in (0, 1] (got ", format_number(config.attn_sparsity),
                  ")");
  FLEXGEN_REQUIRE(config.compress_bits == kSupportedBits, kPrefix, "only ", kSupportedBits,
                  "-bit compression is supported (got compress_bits ", config.compress_bits, ")");
  FLEXGEN_REQUIRE(config.compress_group_size == kSupportedGroupSize, kPrefix,
                  "only compression groups of ", kSupportedGroupSize,
                  " are supported (got compress_group_size ", config.compress_group_size, ")");
  return Policy(config);
}

std::array<double, 6> Policy::percent() const {
  return {config_.weights.gpu_percent,     config_.weights.cpu_percent,
          config_.cache.gpu_percent,       config_.cache.cpu_percent,
          config_.activations.gpu_percent, config_.activations.cpu_percent};
}

std::string Policy::to_string() const {
  std::string out = str_cat("--gpu-batch-size ", config_.gpu_batch_size, " --num-gpu-batches ",
                            config_.num_gpu_batches, " --percent");
  for (const double value : percent()) {
    out += ' ';
    out += format_number(value);
  }
  const PolicyConfig defaults;
  if (config_.overlap != defaults.overlap) {
    out += config_.overlap ? " --overlap true" : " --overlap false";
  }
  if (config_.pin_weight != defaults.pin_weight) {
    out += config_.pin_weight ? " --pin-weight true" : " --pin-weight false";
  }
  if (config_.cpu_cache_compute) out += " --cpu-cache-compute";
  if (config_.compress_weight) out += " --compress-weight";
  if (config_.compress_cache) out += " --compress-cache";
  if (config_.attn_sparsity != defaults.attn_sparsity) {
    out += " --attn-sparsity ";
    out += format_number(config_.attn_sparsity);
  }
  return out;
}

nlohmann::json Policy::to_json() const {
  nlohmann::json json;
  json["gpu_batch_size"] = config_.gpu_batch_size;
  json["num_gpu_batches"] = config_.num_gpu_batches;
  json["percent"] = percent();
  json["overlap"] = config_.overlap;
  json["pin_weight"] = config_.pin_weight;
  json["cpu_cache_compute"] = config_.cpu_cache_compute;
  json["compress_weight"] = config_.compress_weight;
  json["compress_cache"] = config_.compress_cache;
  json["attn_sparsity"] = config_.attn_sparsity;
  json["compress_bits"] = config_.compress_bits;
  json["compress_group_size"] = config_.compress_group_size;
  return json;
}

Policy Policy::from_json(const nlohmann::json& json, const std::string& origin) {
  FLEXGEN_REQUIRE(json.is_object(), origin, ": expected a JSON object (got ", json_preview(json),
                  ")");
  reject_unknown_keys(json,
                      {"gpu_batch_size", "num_gpu_batches", "percent", "overlap", "pin_weight",
                       "cpu_cache_compute", "compress_weight", "compress_cache", "attn_sparsity",
                       "compress_bits", "compress_group_size"},
                      origin);
  const auto integer = [&](std::string_view key) {
    const nlohmann::json& value = require_key(json, key, origin);
    const auto number = json_as_int64(value);
    FLEXGEN_REQUIRE(number.has_value(), origin, ": field '", key, "': expected an integer (got ",
                    json_preview(value), ")");
    return *number;
  };
  const auto small_integer = [&](std::string_view key) {
    const std::int64_t number = integer(key);
    FLEXGEN_REQUIRE(
        number >= std::numeric_limits<int>::min() && number <= std::numeric_limits<int>::max(),
        origin, ": field '", key, "': out of range (got ", number, ")");
    return static_cast<int>(number);
  };
  const auto optional_bool = [&](std::string_view key, bool& target) {
    const auto it = json.find(key);
    if (it == json.end()) return;
    FLEXGEN_REQUIRE(it->is_boolean(), origin, ": field '", key, "': expected true or false (got ",
                    json_preview(*it), ")");
    target = it->get<bool>();
  };

  PolicyConfig config;
  config.gpu_batch_size = integer("gpu_batch_size");
  config.num_gpu_batches = integer("num_gpu_batches");
  const nlohmann::json& percent = require_key(json, "percent", origin);
  bool percent_ok = percent.is_array() && percent.size() == 6;
  for (std::size_t i = 0; percent_ok && i < 6; ++i) percent_ok = percent[i].is_number();
  FLEXGEN_REQUIRE(percent_ok, origin,
                  ": field 'percent': expected an array of 6 numbers \"wg wc cg cc hg hc\" (got ",
                  json_preview(percent), ")");
  std::array<double, 6> values{};
  for (std::size_t i = 0; i < 6; ++i) values[i] = percent[i].get<double>();
  config.set_percent(values);
  optional_bool("overlap", config.overlap);
  optional_bool("pin_weight", config.pin_weight);
  optional_bool("cpu_cache_compute", config.cpu_cache_compute);
  optional_bool("compress_weight", config.compress_weight);
  optional_bool("compress_cache", config.compress_cache);
  if (const auto it = json.find("attn_sparsity"); it != json.end()) {
    FLEXGEN_REQUIRE(it->is_number(), origin, ": field 'attn_sparsity': expected a number (got ",
                    json_preview(*it), ")");
    config.attn_sparsity = it->get<double>();
  }
  if (json.contains("compress_bits")) config.compress_bits = small_integer("compress_bits");
  if (json.contains("compress_group_size")) {
    config.compress_group_size = small_integer("compress_group_size");
  }
  try {
    return create(config);
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
}

}  // namespace flexgen
