#include "engine/core/units_parse.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;

TEST(ParseBytes, PlainAndScientific) {
  EXPECT_EQ(parse_bytes("0"), 0);
  EXPECT_EQ(parse_bytes("1024"), 1024);
  EXPECT_EQ(parse_bytes(" 1073741824 "), 1073741824);
  EXPECT_EQ(parse_bytes("32e9"), 32000000000);
  EXPECT_EQ(parse_bytes("1.5e12"), 1500000000000);
  EXPECT_EQ(parse_bytes("2E+3"), 2000);
  EXPECT_EQ(parse_bytes("12500e-2"), 125);
  EXPECT_EQ(parse_bytes("9223372036854775807"), 9223372036854775807);  // the largest Bytes
  EXPECT_EQ(parse_bytes("007"), 7);
}

TEST(ParseBytes, Units) {
  EXPECT_EQ(parse_bytes("512B"), 512);
  EXPECT_EQ(parse_bytes("4kB"), 4000);
  EXPECT_EQ(parse_bytes("3MB"), 3000000);
  EXPECT_EQ(parse_bytes("16GB"), 16000000000);
  EXPECT_EQ(parse_bytes("1.5TB"), 1500000000000);
  EXPECT_EQ(parse_bytes("2PB"), 2000000000000000);
  EXPECT_EQ(parse_bytes("4KiB"), 4096);
  EXPECT_EQ(parse_bytes("1.5KiB"), 1536);
  EXPECT_EQ(parse_bytes("3MiB"), 3145728);       // 3 * 1048576
  EXPECT_EQ(parse_bytes("24GiB"), 25769803776);  // 24 * 1073741824
  EXPECT_EQ(parse_bytes("24 GiB"), 25769803776);
  EXPECT_EQ(parse_bytes("16gib"), 17179869184);      // 16 * 1073741824
  EXPECT_EQ(parse_bytes("2TiB"), 2199023255552);     // 2 * 1099511627776
  EXPECT_EQ(parse_bytes("1PiB"), 1125899906842624);  // 1024^5
  EXPECT_EQ(parse_bytes("0.5GiB"), 536870912);
  EXPECT_EQ(parse_bytes(".25KiB"), 256);
  EXPECT_EQ(parse_bytes("1e3KiB"), 1024000);
  EXPECT_EQ(parse_bytes("7EiB"), 8070450532247928832);  // 7 * 2^60
  EXPECT_EQ(parse_bytes("2EB"), 2000000000000000000);
  EXPECT_EQ(parse_bytes("1e-1EB"), 100000000000000000);  // exponent, then unit
}

TEST(ParseBytes, Errors) {
  const struct {
    const char* text;
    const char* expected;
  } cases[] = {
      {"12XB", "invalid byte count '12XB': unknown unit 'XB'"},
      {"", "invalid byte count '': expected a number of bytes"},
      {"   ", "expected a number of bytes"},
      {"GiB", "invalid byte count 'GiB': expected a number of bytes"},
      {"-1", "invalid byte count '-1': must not be negative"},
      {"-2GiB", "must not be negative"},
      {"9223372036854775808", "invalid byte count '9223372036854775808': too large"},
      {"8EiB", "invalid byte count '8EiB': too large"},  // 2^63
      {"10EB", "too large"},
      {"3ZB", "unknown unit 'ZB'"},
      {"9000PiB", "too large"},
      {"1e19", "too large"},
      {"1e400", "too large"},
      {"0.1KiB", "invalid byte count '0.1KiB': not a whole number of bytes"},
      {"1.5", "not a whole number of bytes"},
      {"1e-50", "not a whole number of bytes"},
      {"1e", "unknown unit 'e'"},
      {"1e+", "unknown unit 'e+'"},
      {"1e99999999999", "exponent out of range"},
      {"inf", "expected a number of bytes"},
      {"nan", "expected a number of bytes"},
      {"+5", "expected a number of bytes"},
      {"1 2", "unknown unit '2'"},
      {"12345678901234567890123", "too many significant digits"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_THAT(error_of([&] { parse_bytes(c.text); }), HasSubstr(c.expected));
  }
}

}  // namespace
}  // namespace flexgen
