#include "engine/text/utf8.h"

#include <string>

#include <gtest/gtest.h>

namespace flexgen {
namespace {

// Byte sequences written out by hand from RFC 3629.
TEST(Utf8, DecodesValidSequences) {
  const std::string text = "a\xC3\xA9\xE6\x97\xA5\xF0\x9F\x98\x80";  // a é 日 😀
  Utf8Char c = decode_utf8_char(text, 0);
  EXPECT_EQ(c.code_point, U'a');
  EXPECT_EQ(c.length, 1u);
  c = decode_utf8_char(text, 1);
  EXPECT_EQ(c.code_point, char32_t{0xE9});
  EXPECT_EQ(c.length, 2u);
  c = decode_utf8_char(text, 3);
  EXPECT_EQ(c.code_point, char32_t{0x65E5});
  EXPECT_EQ(c.length, 3u);
  c = decode_utf8_char(text, 6);
  EXPECT_EQ(c.code_point, char32_t{0x1F600});
  EXPECT_EQ(c.length, 4u);
  EXPECT_EQ(find_invalid_utf8(text), text.size());
  const std::string edges = "\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xF0\x90\x80\x80"
                            "\xF4\x8F\xBF\xBF";  // U+007F, 0080, 07FF, 0800, D7FF, E000, 10000, 10FFFF
  EXPECT_EQ(find_invalid_utf8(edges), edges.size());
}

TEST(Utf8, RejectsInvalidSequences) {
  EXPECT_EQ(find_invalid_utf8("ab\x80"), 2u);                // stray continuation byte
  EXPECT_EQ(find_invalid_utf8("\xC3"), 0u);                  // truncated
  EXPECT_EQ(find_invalid_utf8("x\xE6\x97"), 1u);             // truncated
  EXPECT_EQ(find_invalid_utf8("\xC3\x41"), 0u);              // bad continuation
  EXPECT_EQ(find_invalid_utf8("\xC0\x80"), 0u);              // overlong NUL
  EXPECT_EQ(find_invalid_utf8("\xE0\x9F\xBF"), 0u);          // overlong U+07FF
  EXPECT_EQ(find_invalid_utf8("\xF0\x8F\xBF\xBF"), 0u);      // overlong U+FFFF
  EXPECT_EQ(find_invalid_utf8("\xED\xA0\x80"), 0u);          // surrogate U+D800
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u);      // U+110000
  EXPECT_EQ(find_invalid_utf8("\xFF"), 0u);
  EXPECT_EQ(decode_utf8_char("\xF5\x80\x80\x80", 0).length, 0u);
}

TEST(Utf8, Encodes) {
  std::string out;
  append_utf8(out, U'a');
  append_utf8(out, char32_t{0xE9});
  append_utf8(out, char32_t{0x120});
  append_utf8(out, char32_t{0x65E5});
  append_utf8(out, char32_t{0x1F600});
  EXPECT_EQ(out, "a\xC3\xA9\xC4\xA0\xE6\x97\xA5\xF0\x9F\x98\x80");
}

}  // namespace
}  // namespace flexgen
