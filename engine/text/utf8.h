#pragma once
// Minimal strict UTF-8 decoding and encoding (RFC 3629): no overlong forms, no surrogates
// (U+D800..U+DFFF), nothing above U+10FFFF.
#include <cstddef>
#include <string>
#include <string_view>

namespace flexgen {

struct Utf8Char {
  char32_t code_point = 0;
  std::size_t length = 0;  // bytes consumed; 0 when the sequence at the position is invalid
};

// Decodes the code point starting at byte `pos` of `text` (pos < text.size()).
Utf8Char decode_utf8_char(std::string_view text, std::size_t pos);

// Byte offset of the first invalid sequence in `text`, or text.size() if it is valid UTF-8.
std::size_t find_invalid_utf8(std::string_view text);

// Appends the UTF-8 encoding of a valid code point (not a surrogate, <= U+10FFFF).
void append_utf8(std::string& out, char32_t cp);

}  // namespace flexgen
