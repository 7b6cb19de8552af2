#include "engine/text/byte_level.h"

#include <gtest/gtest.h>

namespace flexgen {
namespace {

// Independent statement of GPT-2's map: the unprintable ranges 0x00..0x20 -> U+0100..U+0120,
// 0x7F..0xA0 -> U+0121..U+0142 and 0xAD -> U+0143; every other byte maps to itself.
char32_t expected_symbol(unsigned byte) {
  if (byte <= 0x20) return 0x100 + byte;
  if (byte >= 0x7F && byte <= 0xA0) return 0x121 + (byte - 0x7F);
  if (byte == 0xAD) return 0x143;
  return byte;
}

TEST(ByteLevel, KnownSymbols) {
  EXPECT_EQ(byte_to_unicode(' '), char32_t{0x120});   // Ġ
  EXPECT_EQ(byte_to_unicode('\n'), char32_t{0x10A});  // Ċ
  EXPECT_EQ(byte_to_unicode('\t'), char32_t{0x109});  // ĉ
  EXPECT_EQ(byte_to_unicode('\r'), char32_t{0x10D});  // č
  EXPECT_EQ(byte_to_unicode(0x00), char32_t{0x100});  // Ā
  EXPECT_EQ(byte_to_unicode(0x7F), char32_t{0x121});  // ġ
  EXPECT_EQ(byte_to_unicode(0xA0), char32_t{0x142});  // ł
  EXPECT_EQ(byte_to_unicode(0xAD), char32_t{0x143});  // Ń
  EXPECT_EQ(byte_to_unicode('!'), U'!');
  EXPECT_EQ(byte_to_unicode('~'), U'~');
  EXPECT_EQ(byte_to_unicode(0xA1), char32_t{0xA1});
  EXPECT_EQ(byte_to_unicode(0xAC), char32_t{0xAC});
  EXPECT_EQ(byte_to_unicode(0xAE), char32_t{0xAE});
  EXPECT_EQ(byte_to_unicode(0xFF), char32_t{0xFF});
}

TEST(ByteLevel, AllBytesAndInverse) {
  for (unsigned byte = 0; byte < 256; ++byte) {
    EXPECT_EQ(byte_to_unicode(static_cast<std::uint8_t>(byte)), expected_symbol(byte)) << byte;
    EXPECT_EQ(unicode_to_byte(expected_symbol(byte)), static_cast<int>(byte)) << byte;
  }
  EXPECT_EQ(unicode_to_byte(0x20), -1);  // the space byte is written as U+0120
  EXPECT_EQ(unicode_to_byte(0x0A), -1);
  EXPECT_EQ(unicode_to_byte(0xAD), -1);
  EXPECT_EQ(unicode_to_byte(0x144), -1);
  EXPECT_EQ(unicode_to_byte(0x65E5), -1);
  EXPECT_EQ(unicode_to_byte(0x10FFFF), -1);
}

}  // namespace
}  // namespace flexgen
