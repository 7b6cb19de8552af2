#include "engine/text/unicode_class.h"

#include <cstring>

#include <gtest/gtest.h>

namespace flexgen {
namespace {

// Expected classes written out by hand from the Unicode Character Database.
TEST(UnicodeClass, Letters) {
  for (char32_t cp : {U'a', U'z', U'A', U'Z', char32_t{0xAA} /* ª Lo */, char32_t{0xB5} /* µ Ll */,
                      char32_t{0xE9} /* é */, char32_t{0xDF} /* ß */, char32_t{0x1C5} /* ǅ Lt */,
                      char32_t{0x2B0} /* ʰ Lm */, char32_t{0x3A9} /* Ω */, char32_t{0x436} /* ж */,
                      char32_t{0x5D0} /* א */, char32_t{0x4E00} /* 一 */, char32_t{0x65E5} /* 日 */,
                      char32_t{0x30C6} /* テ */, char32_t{0xAC00} /* 가 */,
                      char32_t{0x10400} /* 𐐀 Deseret */, char32_t{0x20000} /* CJK ext. B */}) {
    EXPECT_TRUE(is_unicode_letter(cp)) << std::hex << static_cast<unsigned>(cp);
    EXPECT_FALSE(is_unicode_number(cp)) << std::hex << static_cast<unsigned>(cp);
    EXPECT_FALSE(is_unicode_white_space(cp)) << std::hex << static_cast<unsigned>(cp);
  }
  for (char32_t cp : {U'0', U'_', U'\'', U' ', U'@', U'[', U'`', U'{', char32_t{0xD7} /* × */,
                      char32_t{0x301} /* combining acute, Mn */, char32_t{0x3002} /* 。 */,
                      char32_t{0x1F600} /* 😀 */, char32_t{0x0}, char32_t{0x10FFFF}}) {
    EXPECT_FALSE(is_unicode_letter(cp)) << std::hex << static_cast<unsigned>(cp);
  }
}

TEST(UnicodeClass, Numbers) {
  for (char32_t cp : {U'0', U'9', char32_t{0xB2} /* ² No */, char32_t{0xBD} /* ½ No */,
                      char32_t{0x663} /* Arabic-Indic 3, Nd */, char32_t{0x2167} /* Ⅷ Nl */,
                      char32_t{0x3007} /* 〇 Nl */, char32_t{0x1D7CE} /* bold digit 0 */}) {
    EXPECT_TRUE(is_unicode_number(cp)) << std::hex << static_cast<unsigned>(cp);
    EXPECT_FALSE(is_unicode_letter(cp)) << std::hex << static_cast<unsigned>(cp);
  }
  for (char32_t cp : {U'a', U'/', U':', char32_t{0x4E00} /* 一 is Lo */, char32_t{0x2190} /* ← */}) {
    EXPECT_FALSE(is_unicode_number(cp)) << std::hex << static_cast<unsigned>(cp);
  }
}

TEST(UnicodeClass, WhiteSpace) {
  // PropList.txt White_Space, every entry.
  for (char32_t cp : {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2005,
                      0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000}) {
    EXPECT_TRUE(is_unicode_white_space(cp)) << std::hex << static_cast<unsigned>(cp);
  }
  // Not White_Space, though some are "space" elsewhere (Python's str.isspace accepts 0x1C..0x1F).
  for (char32_t cp : {0x00, 0x08, 0x0E, 0x1C, 0x1F, 0x21, 0x84, 0x86, 0x180E, 0x200B, 0x2060,
                      0xFEFF, 0x3001, 0x10FFFF}) {
    EXPECT_FALSE(is_unicode_white_space(cp)) << std::hex << static_cast<unsigned>(cp);
  }
}

TEST(UnicodeClass, VersionIsStated) {
  EXPECT_GT(std::strlen(unicode_tables_version()), 3u);
  EXPECT_NE(std::strchr(unicode_tables_version(), '.'), nullptr);
}

}  // namespace
}  // namespace flexgen
