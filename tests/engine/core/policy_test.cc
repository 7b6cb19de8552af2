#include "engine/core/policy.h"

#include <functional>
#include <limits>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;

PolicyConfig config_of(std::int64_t gbs, std::int64_t batches, std::array<double, 6> percent) {
  PolicyConfig config;
  config.gpu_batch_size = gbs;
  config.num_gpu_batches = batches;
  config.set_percent(percent);
  return config;
}

// The paper's main-table policies (T4, prompt 512, generation 32), FLEXGEN-NOTES.md.
TEST(Policy, PaperOpt30b) {
  PolicyConfig config = config_of(48, 3, {20, 80, 0, 100, 0, 100});
  config.cpu_cache_compute = true;
  const Policy policy = Policy::create(config);
  EXPECT_EQ(policy.gpu_batch_size(), 48);
  EXPECT_EQ(policy.num_gpu_batches(), 3);
  EXPECT_EQ(policy.block_size(), 144);
  EXPECT_EQ(policy.weights().gpu_percent, 20.0);
  EXPECT_EQ(policy.weights().cpu_percent, 80.0);
  EXPECT_EQ(policy.weights().disk_percent(), 0.0);
  EXPECT_EQ(policy.cache().gpu_percent, 0.0);
  EXPECT_EQ(policy.cache().cpu_percent, 100.0);
  EXPECT_EQ(policy.activations().cpu_percent, 100.0);
  EXPECT_TRUE(policy.cpu_cache_compute());
  EXPECT_TRUE(policy.overlap());
  EXPECT_TRUE(policy.pin_weight());
  EXPECT_FALSE(policy.compress_weight());
  EXPECT_FALSE(policy.compress_cache());
  EXPECT_EQ(policy.attn_sparsity(), 1.0);
  EXPECT_EQ(policy.to_string(),
            "--gpu-batch-size 48 --num-gpu-batches 3 --percent 20 80 0 100 0 100 "
            "--cpu-cache-compute");
}

TEST(Policy, PaperOpt175bUsesDisk) {
  PolicyConfig config = config_of(32, 8, {0, 50, 0, 0, 0, 100});
  config.cpu_cache_compute = true;
  config.pin_weight = false;
  const Policy policy = Policy::create(config);
  EXPECT_EQ(policy.block_size(), 256);
  EXPECT_EQ(policy.weights().disk_percent(), 50.0);
  EXPECT_EQ(policy.cache().disk_percent(), 100.0);
  EXPECT_EQ(policy.activations().disk_percent(), 0.0);
  EXPECT_FALSE(policy.pin_weight());
  EXPECT_EQ(policy.to_string(),
            "--gpu-batch-size 32 --num-gpu-batches 8 --percent 0 50 0 0 0 100 --pin-weight false "
            "--cpu-cache-compute");
}

TEST(Policy, PaperOpt67bAndBaselines) {
  const Policy all_gpu = Policy::create(config_of(2, 1, {100, 0, 100, 0, 100, 0}));
  EXPECT_EQ(all_gpu.block_size(), 2);
  EXPECT_EQ(all_gpu.weights().disk_percent(), 0.0);
  EXPECT_EQ(all_gpu.to_string(),
            "--gpu-batch-size 2 --num-gpu-batches 1 --percent 100 0 100 0 100 0");

  PolicyConfig compressed = config_of(72, 1, {100, 0, 100, 0, 100, 0});
  compressed.compress_weight = true;
  compressed.compress_cache = true;
  const Policy c = Policy::create(compressed);
  EXPECT_TRUE(c.compress_weight());
  EXPECT_TRUE(c.compress_cache());
  EXPECT_EQ(c.compress_bits(), 4);
  EXPECT_EQ(c.compress_group_size(), 64);
  EXPECT_EQ(c.to_string(),
            "--gpu-batch-size 72 --num-gpu-batches 1 --percent 100 0 100 0 100 0 "
            "--compress-weight --compress-cache");

  const Policy deepspeed30 = Policy::create(config_of(8, 1, {0, 100, 100, 0, 100, 0}));
  EXPECT_EQ(deepspeed30.weights().cpu_percent, 100.0);
  EXPECT_EQ(deepspeed30.cache().gpu_percent, 100.0);
  const Policy deepspeed175 = Policy::create(config_of(2, 1, {0, 0, 100, 0, 100, 0}));
  EXPECT_EQ(deepspeed175.weights().disk_percent(), 100.0);
}

TEST(Policy, PercentRoundTripAndDisk) {
  const std::array<double, 6> percent = {12.5, 30, 0, 33.25, 60, 40};
  PolicyConfig config;
  config.set_percent(percent);
  EXPECT_EQ(config.weights.gpu_percent, 12.5);
  EXPECT_EQ(config.weights.cpu_percent, 30.0);
  EXPECT_EQ(config.cache.gpu_percent, 0.0);
  EXPECT_EQ(config.cache.cpu_percent, 33.25);
  EXPECT_EQ(config.activations.gpu_percent, 60.0);
  EXPECT_EQ(config.activations.cpu_percent, 40.0);
  const Policy policy = Policy::create(config);
  EXPECT_EQ(policy.percent(), percent);
  EXPECT_EQ(policy.weights().disk_percent(), 57.5);  // 100 - 12.5 - 30
  EXPECT_EQ(policy.cache().disk_percent(), 66.75);   // 100 - 0 - 33.25
  EXPECT_EQ(policy.activations().disk_percent(), 0.0);
  EXPECT_THAT(policy.to_string(), HasSubstr("--percent 12.5 30 0 33.25 60 40"));
}

TEST(Policy, ToStringPrintsNonDefaultSwitches) {
  PolicyConfig config;
  config.overlap = false;
  config.attn_sparsity = 0.25;
  EXPECT_EQ(Policy::create(config).to_string(),
            "--gpu-batch-size 1 --num-gpu-batches 1 --percent 100 0 100 0 100 0 --overlap false "
            "--attn-sparsity 0.25");
}

TEST(Policy, InvalidPoliciesNameTheProblem) {
  struct Case {
    const char* what;
    std::function<void(PolicyConfig&)> edit;
    const char* expected;
  };
  const Case cases[] = {
      {"batch size", [](PolicyConfig& c) { c.gpu_batch_size = 0; },
       "invalid policy: --gpu-batch-size must be at least 1 (got 0)"},
      {"num batches", [](PolicyConfig& c) { c.num_gpu_batches = -3; },
       "invalid policy: --num-gpu-batches must be at least 1 (got -3)"},
      {"block overflow",
       [](PolicyConfig& c) {
         c.gpu_batch_size = std::int64_t{1} << 40;
         c.num_gpu_batches = std::int64_t{1} << 40;
       },
       "invalid policy: block size --gpu-batch-size 1099511627776 x --num-gpu-batches "
       "1099511627776 is too large"},
      {"weights sum",
       [](PolicyConfig& c) {
         c.weights = {80, 30};
       },
       "invalid policy: weight placement gpu 80% + cpu 30% exceeds 100%"},
      {"cache sum",
       [](PolicyConfig& c) {
         c.cache = {50, 50.5};
       },
       "invalid policy: cache placement gpu 50% + cpu 50.5% exceeds 100%"},
      {"activation sum",
       [](PolicyConfig& c) {
         c.activations = {100, 1};
       },
       "invalid policy: activation placement gpu 100% + cpu 1% exceeds 100%"},
      {"negative",
       [](PolicyConfig& c) {
         c.cache = {-5, 0};
       },
       "invalid policy: cache placement gpu -5% is outside [0, 100]"},
      {"above 100",
       [](PolicyConfig& c) {
         c.weights = {0, 120};
       },
       "invalid policy: weight placement cpu 120% is outside [0, 100]"},
      {"nan",
       [](PolicyConfig& c) {
         c.activations = {std::numeric_limits<double>::quiet_NaN(), 0};
       },
       "invalid policy: activation placement gpu nan% is outside [0, 100]"},
      {"sparsity zero", [](PolicyConfig& c) { c.attn_sparsity = 0; },
       "invalid policy: --attn-sparsity must be in (0, 1] (got 0)"},
      {"sparsity above 1", [](PolicyConfig& c) { c.attn_sparsity = 1.5; },
       "invalid policy: --attn-sparsity must be in (0, 1] (got 1.5)"},
      {"bits", [](PolicyConfig& c) { c.compress_bits = 8; },
       "invalid policy: only 4-bit compression is supported (got compress_bits 8)"},
      {"group", [](PolicyConfig& c) { c.compress_group_size = 32; },
       "invalid policy: only compression groups of 64 are supported (got compress_group_size 32)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    PolicyConfig config;
    c.edit(config);
    EXPECT_THAT(error_of([&] { Policy::create(config); }), HasSubstr(c.expected));
  }
}

TEST(Policy, RoundingToleranceOnTheSum) {
  // 100/3 three ways sums to 100 up to rounding; the tolerance accepts it, a real excess does not.
  PolicyConfig config;
  config.weights = {100.0 / 3.0 + 100.0 / 3.0, 100.0 / 3.0};
  EXPECT_NO_THROW(Policy::create(config));
  config.weights = {50.0, 50.0 + 1e-6};
  EXPECT_THROW(Policy::create(config), Error);
}

TEST(Policy, JsonMatchesHandWrittenRow) {
  PolicyConfig config = config_of(48, 3, {20, 80, 0, 100, 0, 100});
  config.cpu_cache_compute = true;
  const nlohmann::json expected = nlohmann::json::parse(R"({
    "gpu_batch_size": 48, "num_gpu_batches": 3, "percent": [20, 80, 0, 100, 0, 100],
    "overlap": true, "pin_weight": true, "cpu_cache_compute": true, "compress_weight": false,
    "compress_cache": false, "attn_sparsity": 1.0, "compress_bits": 4, "compress_group_size": 64
  })");
  const Policy policy = Policy::create(config);
  EXPECT_EQ(policy.to_json(), expected);
  EXPECT_EQ(Policy::from_json(expected), policy);
  EXPECT_EQ(Policy::from_json(nlohmann::json::parse(policy.to_json().dump())), policy);
}

TEST(Policy, FromJsonOptionalSwitchesTakeDefaults) {
  const Policy policy = Policy::from_json(nlohmann::json::parse(
      R"({"gpu_batch_size": 32, "num_gpu_batches": 8, "percent": [0, 50, 0, 0, 0, 100],
          "pin_weight": false, "attn_sparsity": 0.5})"));
  EXPECT_EQ(policy.block_size(), 256);
  EXPECT_FALSE(policy.pin_weight());
  EXPECT_TRUE(policy.overlap());
  EXPECT_FALSE(policy.cpu_cache_compute());
  EXPECT_EQ(policy.attn_sparsity(), 0.5);
  EXPECT_EQ(policy.weights().disk_percent(), 50.0);
}

TEST(Policy, FromJsonErrors) {
  const auto base = [] {
    return nlohmann::json::parse(
        R"({"gpu_batch_size": 4, "num_gpu_batches": 2, "percent": [100, 0, 100, 0, 100, 0]})");
  };
  struct Case {
    const char* what;
    std::function<void(nlohmann::json&)> edit;
    const char* expected;
  };
  const Case cases[] = {
      {"unknown key", [](nlohmann::json& j) { j["gpu_batch"] = 4; },
       "row 7: unknown key 'gpu_batch'; did you mean 'gpu_batch_size'?"},
      {"missing", [](nlohmann::json& j) { j.erase("percent"); }, "row 7: missing key 'percent'"},
      {"type", [](nlohmann::json& j) { j["num_gpu_batches"] = "2"; },
       "row 7: field 'num_gpu_batches': expected an integer (got \"2\")"},
      {"percent length",
       [](nlohmann::json& j) {
         j["percent"] = {100, 0};
       },
       "row 7: field 'percent': expected an array of 6 numbers"},
      {"percent type", [](nlohmann::json& j) { j["percent"][3] = "x"; },
       "row 7: field 'percent': expected an array of 6 numbers"},
      {"bool", [](nlohmann::json& j) { j["overlap"] = 1; },
       "row 7: field 'overlap': expected true or false (got 1)"},
      {"sparsity type", [](nlohmann::json& j) { j["attn_sparsity"] = nullptr; },
       "row 7: field 'attn_sparsity': expected a number (got null)"},
      {"bits range", [](nlohmann::json& j) { j["compress_bits"] = 1e3; },
       "row 7: field 'compress_bits': expected an integer (got 1000.0)"},
      {"invalid", [](nlohmann::json& j) { j["percent"] = {60, 60, 100, 0, 100, 0}; },
       "row 7: invalid policy: weight placement gpu 60% + cpu 60% exceeds 100%"},
      {"not object", [](nlohmann::json& j) { j = nlohmann::json::array(); },
       "row 7: expected a JSON object (got [])"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    nlohmann::json json = base();
    c.edit(json);
    EXPECT_THAT(error_of([&] { Policy::from_json(json, "row 7"); }), HasSubstr(c.expected));
  }
}

}  // namespace
}  // namespace flexgen
