#include "engine/core/format.h"

#include <string>

#include <gtest/gtest.h>

namespace flexgen {
namespace {

TEST(FormatBytes, SmallCountsInBytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1), "1 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
}

TEST(FormatBytes, BinaryUnitsWithOneDecimal) {
  EXPECT_EQ(format_bytes(1024), "1.0 KiB");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");             // 1.5 * 1024
  EXPECT_EQ(format_bytes(3 * 1024 * 1024), "3.0 MiB");
  EXPECT_EQ(format_bytes(1610612736), "1.5 GiB");       // 1.5 * 2^30
  EXPECT_EQ(format_bytes(1099511627776), "1.0 TiB");    // 2^40
  EXPECT_EQ(format_bytes(1100585369600), "1.0 TiB");    // 1.0009765625 TiB rounds to 1.0
}

TEST(FormatBytes, RoundingThatReaches1024MovesUpAUnit) {
  EXPECT_EQ(format_bytes(1048575), "1.0 MiB");  // 1023.999 KiB would print as 1024.0 KiB
  EXPECT_EQ(format_bytes(1048524), "1023.9 KiB");  // 1023.95 KiB - 1 byte: 1023.949... KiB
}

TEST(FormatBytes, NegativeCounts) {
  EXPECT_EQ(format_bytes(-1536), "-1.5 KiB");
  EXPECT_EQ(format_bytes(-7), "-7 B");
}

TEST(Printable, EscapesControlCharactersAndCutsAtACharacterBoundary) {
  EXPECT_EQ(printable("plain text"), "plain text");
  EXPECT_EQ(printable("a\nb\rc\td"), "a\\nb\\rc\\td");
  EXPECT_EQ(printable(std::string("x\0y\x1b\x7fz", 6)), "x\\x00y\\x1b\\x7fz");
  EXPECT_EQ(printable("abcdef", 4), "abcd...");
  // "h\xc3\xa9llo": cutting after 2 bytes would split the two-byte e-acute; the cut backs up.
  EXPECT_EQ(printable("h\xc3\xa9llo", 2), "h...");
  EXPECT_EQ(printable("h\xc3\xa9llo", 3), "h\xc3\xa9...");
  EXPECT_EQ(printable(""), "");
}

}  // namespace
}  // namespace flexgen
