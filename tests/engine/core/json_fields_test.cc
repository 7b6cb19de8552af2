#include "engine/core/json_fields.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;

TEST(JsonFields, ClosestKey) {
  const auto known = {std::string_view("gpu_memory_bytes"),
                      std::string_view("gpu_memory_bytes_per_s"),
                      std::string_view("h2d_bytes_per_s"), std::string_view("disk_bytes")};
  EXPECT_EQ(closest_key("gpu_memory", known), "gpu_memory_bytes");  // contained, nearer
  EXPECT_EQ(closest_key("h2d_bytes", known), "h2d_bytes_per_s");
  EXPECT_EQ(closest_key("dsik_bytes", known), "disk_bytes");  // two edits
  EXPECT_EQ(closest_key("gpu_memory_bytes_per_sec", known), "gpu_memory_bytes_per_s");
  EXPECT_FALSE(closest_key("colour", known).has_value());
  EXPECT_FALSE(closest_key("", known).has_value());
}

TEST(JsonFields, ParseRejectsDuplicatesAtAnyDepth) {
  EXPECT_NO_THROW(
      parse_json_text(R"({"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 1}, {"x": 2}]})", "t"));
  EXPECT_THAT(error_of([] { parse_json_text(R"({"a": 1, "b": 2, "a": 3})", "t.json"); }),
              HasSubstr("t.json: duplicate key 'a'"));
  EXPECT_THAT(error_of([] { parse_json_text(R"({"a": [{"x": 1, "x": 2}]})", "t.json"); }),
              HasSubstr("t.json: duplicate key 'x'"));
}

TEST(JsonFields, MalformedIsOneLine) {
  const std::string message =
      error_of([] { parse_json_text("{\n\"a\":\n\n\"unterminated\n}", "bad.json"); });
  EXPECT_THAT(message, HasSubstr("bad.json: malformed JSON: parse error at line"));
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_EQ(message.find("[json.exception"), std::string::npos);
}

TEST(JsonFields, RejectUnknownAndRequire) {
  const nlohmann::json object = {{"alpha", 1}, {"betta", 2}};
  EXPECT_THAT(error_of([&] {
                reject_unknown_keys(object, {"alpha", "beta"}, "o");
              }),
              HasSubstr("o: unknown key 'betta'; did you mean 'beta'?"));
  EXPECT_NO_THROW(reject_unknown_keys(object, {"alpha", "betta"}, "o"));
  EXPECT_EQ(require_key(object, "alpha", "o"), 1);
  EXPECT_THAT(error_of([&] { require_key(object, "gamma", "o"); }),
              HasSubstr("o: missing key 'gamma'"));
}

TEST(JsonFields, PreviewAndInt64) {
  EXPECT_EQ(json_preview(nlohmann::json("a\nb")), "\"a\\nb\"");
  EXPECT_EQ(json_preview(nlohmann::json(std::string(100, 'x'))).size(), 40u);
  EXPECT_EQ(json_as_int64(nlohmann::json(5)), 5);
  EXPECT_EQ(json_as_int64(nlohmann::json(-5)), -5);
  EXPECT_EQ(json_as_int64(nlohmann::json::parse("9223372036854775807")), 9223372036854775807);
  EXPECT_FALSE(json_as_int64(nlohmann::json::parse("9223372036854775808")).has_value());
  EXPECT_FALSE(json_as_int64(nlohmann::json(2.0)).has_value());
  EXPECT_FALSE(json_as_int64(nlohmann::json("2")).has_value());
  EXPECT_FALSE(json_as_int64(nlohmann::json(true)).has_value());
}

TEST(JsonFields, NumbersBeyondDoubleAreMalformedNotACrash) {
  // nlohmann reports these as out_of_range, not parse_error: both are the input's fault.
  EXPECT_THAT(error_of([] { parse_json_text(R"({"a": 1e400})", "big.json"); }),
              HasSubstr("big.json: malformed JSON: number overflow parsing '1e400'"));
  EXPECT_THAT(error_of([] { parse_json_text("-1e999", "big.json"); }), HasSubstr("number overflow"));
}

}  // namespace
}  // namespace flexgen
