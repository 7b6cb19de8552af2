#include "engine/core/workload.h"

#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/json_fields.h"

namespace flexgen {
namespace {

constexpr const char* kSamplingPrefix = "invalid sampling: ";
constexpr const char* kWorkloadPrefix = "invalid workload: ";

}  // namespace

void SamplingConfig::validate() const {
  FLEXGEN_REQUIRE(std::isfinite(temperature) && temperature > 0.0f, kSamplingPrefix,
                  "--temperature must be positive (got ", temperature, ")");
  FLEXGEN_REQUIRE(top_k >= 0, kSamplingPrefix, "--top-k must be 0 (off) or positive (got ", top_k,
                  ")");
  FLEXGEN_REQUIRE(top_p > 0.0f && top_p <= 1.0f, kSamplingPrefix, "--top-p must be in (0, 1] (got ",
                  top_p, ")");
}

void Workload::validate() const {
  FLEXGEN_REQUIRE(prompt_len >= 1, kWorkloadPrefix, "--prompt-len must be at least 1 (got ",
                  prompt_len, ")");
  FLEXGEN_REQUIRE(gen_len >= 1, kWorkloadPrefix, "--gen-len must be at least 1 (got ", gen_len,
                  ")");
  FLEXGEN_REQUIRE(num_sequences >= 1, kWorkloadPrefix, "--num-sequences must be at least 1 (got ",
                  num_sequences, ")");
  if (stop_token) {
    FLEXGEN_REQUIRE(*stop_token >= 0, kWorkloadPrefix, "--stop-token must not be negative (got ",
                    *stop_token, ")");
  }
  sampling.validate();
}

nlohmann::json Workload::to_json() const {
  nlohmann::json json;
  json["prompt_len"] = prompt_len;
  json["gen_len"] = gen_len;
  json["num_sequences"] = num_sequences;
  json["stop_token"] = stop_token ? nlohmann::json(*stop_token) : nlohmann::json(nullptr);
  json["sampling"] = {
      {"do_sample", sampling.do_sample}, {"temperature", static_cast<double>(sampling.temperature)},
      {"top_k", sampling.top_k},         {"top_p", static_cast<double>(sampling.top_p)},
      {"seed", sampling.seed},
  };
  return json;
}

Workload Workload::from_json(const nlohmann::json& json, const std::string& origin) {
  FLEXGEN_REQUIRE(json.is_object(), origin, ": expected a JSON object (got ", json_preview(json),
                  ")");
  reject_unknown_keys(json, {"prompt_len", "gen_len", "num_sequences", "stop_token", "sampling"},
                      origin);
  const auto integer = [](const nlohmann::json& object, std::string_view key,
                          const std::string& where) {
    const nlohmann::json& value = require_key(object, key, where);
    const auto number = json_as_int64(value);
    FLEXGEN_REQUIRE(number.has_value(), where, ": field '", key, "': expected an integer (got ",
                    json_preview(value), ")");
    return *number;
  };
  const auto real = [](const nlohmann::json& object, std::string_view key,
                       const std::string& where) {
    const nlohmann::json& value = require_key(object, key, where);
    FLEXGEN_REQUIRE(value.is_number(), where, ": field '", key, "': expected a number (got ",
                    json_preview(value), ")");
    const double number = value.get<double>();
    FLEXGEN_REQUIRE(std::abs(number) <= std::numeric_limits<float>::max(), where, ": field '", key,
                    "': out of range (got ", json_preview(value), ")");
    return static_cast<float>(number);
  };

  Workload workload;
  workload.prompt_len = integer(json, "prompt_len", origin);
  workload.gen_len = integer(json, "gen_len", origin);
  workload.num_sequences = integer(json, "num_sequences", origin);
  if (const nlohmann::json& stop = require_key(json, "stop_token", origin); !stop.is_null()) {
    workload.stop_token = integer(json, "stop_token", origin);
  }

  const nlohmann::json& sampling = require_key(json, "sampling", origin);
  const std::string where = origin + ": sampling";
  FLEXGEN_REQUIRE(sampling.is_object(), origin, ": field 'sampling': expected an object (got ",
                  json_preview(sampling), ")");
  reject_unknown_keys(sampling, {"do_sample", "temperature", "top_k", "top_p", "seed"}, where);
  const nlohmann::json& do_sample = require_key(sampling, "do_sample", where);
  FLEXGEN_REQUIRE(do_sample.is_boolean(), where,
                  ": field 'do_sample': expected true or false (got ", json_preview(do_sample),
                  ")");
  workload.sampling.do_sample = do_sample.get<bool>();
  workload.sampling.temperature = real(sampling, "temperature", where);
  const std::int64_t top_k = integer(sampling, "top_k", where);
  FLEXGEN_REQUIRE(
      top_k >= std::numeric_limits<int>::min() && top_k <= std::numeric_limits<int>::max(), where,
      ": field 'top_k': out of range (got ", top_k, ")");
  workload.sampling.top_k = static_cast<int>(top_k);
  workload.sampling.top_p = real(sampling, "top_p", where);
  const nlohmann::json& seed = require_key(sampling, "seed", where);
  const bool seed_ok =
      seed.is_number_unsigned() || (seed.is_number_integer() && seed.get<std::int64_t>() >= 0);
  FLEXGEN_REQUIRE(seed_ok, where, ": field 'seed': expected a non-negative integer (got ",
                  json_preview(seed), ")");
  workload.sampling.seed = seed.get<std::uint64_t>();

  try {
    workload.validate();
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
  return workload;
}

}  // namespace flexgen
