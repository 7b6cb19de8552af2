#include "engine/core/hardware_spec.h"

#include <filesystem>
#include <functional>
#include <limits>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/json_fields.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;
using testing::TempDir;

const std::filesystem::path kHardwareDir =
    std::filesystem::path(FLEXGEN_SOURCE_DIR) / "experiments" / "hardware";

// Golden values worked out by hand from the published numbers (FLEXGEN-NOTES.md; GB = 2^30 =
// 1073741824, T = 1e12):
//   GPU 16 GB      = 16 * 1073741824                                   = 17179869184
//   DRAM 208 GB    = 200 * 1073741824 + 8 * 1073741824
//                  = 214748364800 + 8589934592                         = 223338299392
//   SSD 1.5 TB     = 1.5e12 (decimal)                                  = 1500000000000
//   h2d 12.89 GB/s = 12 * 1073741824 + 0.89 * 1073741824
//                  = 12884901888 + 955630223.36                        = 13840532111.36
//   d2h 4.82 GB/s  = 4294967296 + 0.82 * 1073741824 = 4294967296 + 880468295.68 = 5175435591.68
//   disk read 0.473 GB/s = 429496729.6 + 75161927.68 + 3221225.472    = 507879882.752
//   disk write 0.746 GB/s = 751619276.8 + 42949672.96 + 6442450.944   = 801011400.704
TEST(HardwareSpec, T4PaperFileHasThePublishedNumbers) {
  const HardwareSpec spec = HardwareSpec::from_file(kHardwareDir / "t4-paper.json");
  EXPECT_EQ(spec.name, "t4-paper");
  EXPECT_THAT(spec.description, HasSubstr("T4"));
  EXPECT_EQ(spec.gpu_memory_bytes, 17179869184);
  EXPECT_EQ(spec.cpu_memory_bytes, 223338299392);
  EXPECT_EQ(spec.disk_bytes, 1500000000000);
  EXPECT_DOUBLE_EQ(spec.h2d_bytes_per_s, 13840532111.36);
  EXPECT_DOUBLE_EQ(spec.d2h_bytes_per_s, 5175435591.68);
  EXPECT_DOUBLE_EQ(spec.disk_read_bytes_per_s, 507879882.752);
  EXPECT_DOUBLE_EQ(spec.disk_write_bytes_per_s, 801011400.704);
  EXPECT_DOUBLE_EQ(spec.gpu_gemm_prefill_flops_per_s, 21240000000000.0);
  EXPECT_DOUBLE_EQ(spec.gpu_gemm_decode_flops_per_s, 4300000000000.0);
  EXPECT_DOUBLE_EQ(spec.gpu_attention_prefill_flops_per_s, 9970000000000.0);
  EXPECT_DOUBLE_EQ(spec.gpu_attention_decode_flops_per_s, 79000000000.0);
  EXPECT_DOUBLE_EQ(spec.cpu_attention_flops_per_s, 12300000000.0);
  EXPECT_DOUBLE_EQ(spec.gpu_memory_bytes_per_s, 320000000000.0);
  EXPECT_DOUBLE_EQ(spec.cpu_memory_bytes_per_s, 100000000000.0);
  EXPECT_NO_THROW(spec.validate());
}

// 81559 MiB = 80000 * 1048576 + 1559 * 1048576 = 83886080000 + 1634729984 = 85520809984.
TEST(HardwareSpec, H100FileLoads) {
  const HardwareSpec spec = HardwareSpec::from_file(kHardwareDir / "h100-sxm.json");
  EXPECT_EQ(spec.name, "h100-sxm");
  EXPECT_EQ(spec.gpu_memory_bytes, 85520809984);
  EXPECT_EQ(spec.cpu_memory_bytes, 137438953472);  // 128 * 1073741824
  EXPECT_EQ(spec.disk_bytes, 68719476736);         // 64 * 1073741824
  EXPECT_DOUBLE_EQ(spec.gpu_memory_bytes_per_s, 3350000000000.0);
  EXPECT_THAT(spec.description, HasSubstr("flexgen profile"));
}

// A complete valid object written out by hand; the cases below break one thing each.
nlohmann::json valid_json() {
  return nlohmann::json::parse(R"({
    "name": "test-machine",
    "description": "for tests",
    "gpu_memory_bytes": 1000,
    "cpu_memory_bytes": 2000,
    "disk_bytes": 3000,
    "h2d_bytes_per_s": 1.5,
    "d2h_bytes_per_s": 2.5,
    "disk_read_bytes_per_s": 3.5,
    "disk_write_bytes_per_s": 4.5,
    "gpu_gemm_prefill_flops_per_s": 5.5,
    "gpu_gemm_decode_flops_per_s": 6.5,
    "gpu_attention_prefill_flops_per_s": 7.5,
    "gpu_attention_decode_flops_per_s": 8.5,
    "cpu_attention_flops_per_s": 9.5,
    "gpu_memory_bytes_per_s": 10.5,
    "cpu_memory_bytes_per_s": 11.5
  })");
}

TEST(HardwareSpec, ParsesEveryField) {
  const HardwareSpec spec = HardwareSpec::from_json(valid_json(), "test");
  EXPECT_EQ(spec.name, "test-machine");
  EXPECT_EQ(spec.description, "for tests");
  EXPECT_EQ(spec.gpu_memory_bytes, 1000);
  EXPECT_EQ(spec.cpu_memory_bytes, 2000);
  EXPECT_EQ(spec.disk_bytes, 3000);
  EXPECT_EQ(spec.h2d_bytes_per_s, 1.5);
  EXPECT_EQ(spec.d2h_bytes_per_s, 2.5);
  EXPECT_EQ(spec.disk_read_bytes_per_s, 3.5);
  EXPECT_EQ(spec.disk_write_bytes_per_s, 4.5);
  EXPECT_EQ(spec.gpu_gemm_prefill_flops_per_s, 5.5);
  EXPECT_EQ(spec.gpu_gemm_decode_flops_per_s, 6.5);
  EXPECT_EQ(spec.gpu_attention_prefill_flops_per_s, 7.5);
  EXPECT_EQ(spec.gpu_attention_decode_flops_per_s, 8.5);
  EXPECT_EQ(spec.cpu_attention_flops_per_s, 9.5);
  EXPECT_EQ(spec.gpu_memory_bytes_per_s, 10.5);
  EXPECT_EQ(spec.cpu_memory_bytes_per_s, 11.5);
}

TEST(HardwareSpec, DescriptionIsOptionalAndIntegralFloatsAreBytes) {
  nlohmann::json json = valid_json();
  json.erase("description");
  json["gpu_memory_bytes"] = 16e9;  // a float with no fraction
  const HardwareSpec spec = HardwareSpec::from_json(json, "test");
  EXPECT_EQ(spec.description, "");
  EXPECT_EQ(spec.gpu_memory_bytes, 16000000000);
}

TEST(HardwareSpec, ToJsonRoundTrips) {
  for (const char* file : {"t4-paper.json", "h100-sxm.json"}) {
    SCOPED_TRACE(file);
    const HardwareSpec spec = HardwareSpec::from_file(kHardwareDir / file);
    const nlohmann::json json = spec.to_json();
    EXPECT_EQ(json.at("gpu_memory_bytes").get<std::int64_t>(), spec.gpu_memory_bytes);
    EXPECT_EQ(HardwareSpec::from_json(nlohmann::json::parse(json.dump()), "round trip"), spec);
  }
  // The hand-written object survives to_json unchanged.
  EXPECT_EQ(HardwareSpec::from_json(valid_json(), "test").to_json(), valid_json());
}

TEST(HardwareSpec, TheMeasuredRefinementsAreOptional) {
  const HardwareSpec plain = HardwareSpec::from_json(valid_json(), "test");
  EXPECT_EQ(plain.gpu_task_overhead_s, 0.0);
  EXPECT_EQ(plain.gpu_dequant_bytes_per_s, 0.0);
  nlohmann::json json = valid_json();
  json["gpu_task_overhead_s"] = 4.5e-5;
  json["gpu_dequant_bytes_per_s"] = 1.25e12;
  const HardwareSpec refined = HardwareSpec::from_json(json, "test");
  EXPECT_EQ(refined.gpu_task_overhead_s, 4.5e-5);
  EXPECT_EQ(refined.gpu_dequant_bytes_per_s, 1.25e12);
  EXPECT_EQ(refined.to_json(), json);  // written when set
  EXPECT_FALSE(plain.to_json().contains("gpu_task_overhead_s"));  // and only then
  json["gpu_task_overhead_s"] = 0;  // 0: the term left out
  EXPECT_EQ(HardwareSpec::from_json(json, "test").gpu_task_overhead_s, 0.0);
  for (const nlohmann::json& bad : {nlohmann::json(-1e-6), nlohmann::json("fast"), nlohmann::json(nullptr)}) {
    json["gpu_task_overhead_s"] = bad;
    EXPECT_THAT(error_of([&] { HardwareSpec::from_json(json, "hw.json"); }),
                HasSubstr("hw.json: field 'gpu_task_overhead_s': expected a number >= 0"));
  }
  const std::vector<std::string> fields = HardwareSpec::numeric_fields();
  EXPECT_EQ(fields.size(), 21u);
  EXPECT_EQ(fields.back(), "disk_write_latency_s");
  EXPECT_TRUE(HardwareSpec::optional_field("disk_read_latency_s"));
  EXPECT_TRUE(HardwareSpec::optional_field("gpu_task_overhead_s"));
  EXPECT_FALSE(HardwareSpec::optional_field("disk_read_bytes_per_s"));
  EXPECT_FALSE(HardwareSpec::optional_field("name"));
  EXPECT_EQ(plain.disk_write_latency_s, 0.0);
  EXPECT_EQ(plain.cpu_cache_attention_flops_per_s, 0.0);
  EXPECT_EQ(plain.cpu_sparse_attention_flops_per_s, 0.0);
  EXPECT_TRUE(HardwareSpec::optional_field("cpu_sparse_attention_flops_per_s"));
  EXPECT_EQ(plain.gpu_cache_dequant_bytes_per_s, 0.0);
  json["gpu_task_overhead_s"] = 4.5e-5;
  json["gpu_cache_dequant_bytes_per_s"] = 0.5e12;
  EXPECT_EQ(HardwareSpec::from_json(json, "test").gpu_cache_dequant_bytes_per_s, 0.5e12);
}

TEST(HardwareSpec, EveryNumericKeyIsRequired) {
  const nlohmann::json valid = valid_json();
  for (const auto& item : valid.items()) {
    if (item.key() == "description") continue;
    SCOPED_TRACE(item.key());
    nlohmann::json json = valid_json();
    json.erase(item.key());
    EXPECT_THAT(error_of([&] { HardwareSpec::from_json(json, "hw.json"); }),
                HasSubstr("hw.json: missing key '" + item.key() + "'"));
  }
}

TEST(HardwareSpec, BadValuesNameTheProblem) {
  struct Case {
    const char* what;
    std::function<void(nlohmann::json&)> edit;
    const char* expected;
  };
  const Case cases[] = {
      {"unknown key", [](nlohmann::json& j) { j["h2d_bytes"] = 5; },
       "hw.json: unknown key 'h2d_bytes'; did you mean 'h2d_bytes_per_s'?"},
      {"typo", [](nlohmann::json& j) { j["disk_bytez"] = 5; },
       "hw.json: unknown key 'disk_bytez'; did you mean 'disk_bytes'?"},
      {"unrelated key", [](nlohmann::json& j) { j["color"] = "red"; },
       "hw.json: unknown key 'color'"},
      {"negative rate", [](nlohmann::json& j) { j["d2h_bytes_per_s"] = -1; },
       "hw.json: field 'd2h_bytes_per_s': expected a positive number (got -1)"},
      {"zero rate", [](nlohmann::json& j) { j["cpu_attention_flops_per_s"] = 0; },
       "hw.json: field 'cpu_attention_flops_per_s': expected a positive number (got 0)"},
      {"string rate", [](nlohmann::json& j) { j["h2d_bytes_per_s"] = "fast"; },
       "hw.json: field 'h2d_bytes_per_s': expected a positive number (got \"fast\")"},
      {"string bytes", [](nlohmann::json& j) { j["gpu_memory_bytes"] = "16GiB"; },
       "hw.json: field 'gpu_memory_bytes': expected a positive whole number of bytes (got "
       "\"16GiB\")"},
      {"fractional bytes", [](nlohmann::json& j) { j["disk_bytes"] = 1.5; },
       "hw.json: field 'disk_bytes': expected a positive whole number of bytes (got 1.5)"},
      {"negative bytes", [](nlohmann::json& j) { j["cpu_memory_bytes"] = -8; },
       "hw.json: field 'cpu_memory_bytes': expected a positive whole number of bytes (got -8)"},
      {"huge bytes", [](nlohmann::json& j) { j["disk_bytes"] = 1e30; },
       "hw.json: field 'disk_bytes': expected a positive whole number of bytes"},
      {"bool bytes", [](nlohmann::json& j) { j["disk_bytes"] = true; },
       "hw.json: field 'disk_bytes': expected a positive whole number of bytes (got true)"},
      {"name type", [](nlohmann::json& j) { j["name"] = 7; },
       "hw.json: field 'name': expected a non-empty string (got 7)"},
      {"empty name", [](nlohmann::json& j) { j["name"] = ""; },
       "hw.json: field 'name': expected a non-empty string"},
      {"description type", [](nlohmann::json& j) { j["description"] = nlohmann::json::array(); },
       "hw.json: field 'description': expected a string (got [])"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    nlohmann::json json = valid_json();
    c.edit(json);
    EXPECT_THAT(error_of([&] { HardwareSpec::from_json(json, "hw.json"); }), HasSubstr(c.expected));
  }
  EXPECT_THAT(error_of([] { HardwareSpec::from_json(nlohmann::json(3), "hw.json"); }),
              HasSubstr("hw.json: expected a JSON object (got 3)"));
}

// Files in a scratch directory, removed at the end of each test.
class HardwareSpecFile : public ::testing::Test {
 protected:
  std::filesystem::path write(const std::string& name, const std::string& text) {
    return dir_.write(name, text);
  }

 private:
  TempDir dir_;
};

TEST_F(HardwareSpecFile, MalformedJsonIsOneLineWithThePath) {
  const auto path = write("bad.json", "{\n  \"name\": \"x\",\n  \"gpu_memory_bytes\": 12,,\n}\n");
  const std::string message = error_of([&] { HardwareSpec::from_file(path); });
  EXPECT_THAT(message, HasSubstr(path.string() + ": malformed JSON"));
  EXPECT_THAT(message, HasSubstr("line 3"));
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

TEST_F(HardwareSpecFile, DuplicateKeyIsRejected) {
  nlohmann::json json = valid_json();
  std::string text = json.dump(2);
  text.insert(text.find('{') + 1, "\n  \"disk_bytes\": 99,");
  const auto path = write("dup.json", text);
  EXPECT_THAT(error_of([&] { HardwareSpec::from_file(path); }),
              HasSubstr(path.string() + ": duplicate key 'disk_bytes'"));
}

TEST_F(HardwareSpecFile, ErrorsFromFileNameThePath) {
  nlohmann::json json = valid_json();
  json["gpu_memory_bytes"] = -1;
  const auto path = write("negative.json", json.dump());
  EXPECT_THAT(error_of([&] { HardwareSpec::from_file(path); }),
              HasSubstr(path.string() + ": field 'gpu_memory_bytes'"));
  EXPECT_THAT(error_of([] { HardwareSpec::from_file("/nonexistent/hw.json"); }),
              HasSubstr("/nonexistent/hw.json: no such file"));
  EXPECT_THAT(error_of([] { HardwareSpec::from_file(kHardwareDir); }),
              HasSubstr(": is a directory"));
  const auto empty = write("empty.json", "");
  EXPECT_THAT(error_of([&] { HardwareSpec::from_file(empty); }),
              HasSubstr(empty.string() + ": malformed JSON"));
}

TEST(HardwareSpec, ValidateNamesTheField) {
  HardwareSpec spec = HardwareSpec::from_json(valid_json(), "test");
  spec.disk_read_bytes_per_s = 0.0;
  EXPECT_THAT(error_of([&] { spec.validate(); }),
              HasSubstr("invalid hardware 'test-machine': field 'disk_read_bytes_per_s' must be a "
                        "positive finite number (got 0)"));
  spec = HardwareSpec::from_json(valid_json(), "test");
  spec.gpu_gemm_decode_flops_per_s = std::numeric_limits<double>::infinity();
  EXPECT_THAT(error_of([&] { spec.validate(); }), HasSubstr("'gpu_gemm_decode_flops_per_s'"));
  spec = HardwareSpec::from_json(valid_json(), "test");
  spec.cpu_memory_bytes = 0;
  EXPECT_THAT(error_of([&] { spec.validate(); }),
              HasSubstr("field 'cpu_memory_bytes' must be positive (got 0)"));
  spec = HardwareSpec::from_json(valid_json(), "test");
  spec.name = "";
  EXPECT_THAT(error_of([&] { spec.validate(); }), HasSubstr("'name' must not be empty"));
  EXPECT_THAT(error_of([] { HardwareSpec{}.validate(); }), HasSubstr("invalid hardware"));
}

TEST(HardwareSpec, NamesInMessagesStayOnOneLine) {
  HardwareSpec spec = HardwareSpec::from_json(valid_json(), "hw.json");
  spec.name = "two\nlines";
  spec.disk_bytes = 0;
  const std::string msg = error_of([&] { spec.validate(); });
  EXPECT_THAT(msg, HasSubstr("invalid hardware 'two\\nlines': field 'disk_bytes' must be positive (got 0)"));
  EXPECT_EQ(msg.find('\n'), std::string::npos);
  nlohmann::json json = valid_json();
  json["h2d_bytes_per_s"] = 123.25;
  std::string text = json.dump();
  ASSERT_NE(text.find("123.25"), std::string::npos);
  text.replace(text.find("123.25"), 6, "1e400");
  EXPECT_THAT(error_of([&] { HardwareSpec::from_json(parse_json_text(text, "hw.json"), "hw.json"); }),
              HasSubstr("hw.json: malformed JSON: number overflow"));
}

}  // namespace
}  // namespace flexgen
