#include "engine/text/gpt2_pretokenizer.h"

#include <cstdint>

#include "engine/core/error.h"
#include "engine/text/unicode_class.h"
#include "engine/text/utf8.h"

namespace flexgen {
namespace {

enum class CharClass : std::uint8_t { kLetter, kNumber, kSpace, kOther };

struct Char {
  char32_t cp;
  CharClass cls;
  std::size_t offset;  // byte offset in the text
};

CharClass classify(char32_t cp) {
  if (is_unicode_letter(cp)) return CharClass::kLetter;
  if (is_unicode_number(cp)) return CharClass::kNumber;
  if (is_unicode_white_space(cp)) return CharClass::kSpace;
  return CharClass::kOther;
}

std::vector<Char> decode(std::string_view text) {
  std::vector<Char> chars;
  chars.reserve(text.size());
  std::size_t pos = 0;
  while (pos < text.size()) {
    const Utf8Char c = decode_utf8_char(text, pos);
    FLEXGEN_REQUIRE(c.length != 0, "GPT-2 pre-tokenizer: invalid UTF-8 at byte offset ", pos,
                    " (byte 0x", std::hex, static_cast<unsigned>(static_cast<unsigned char>(text[pos])),
                    ")");
    chars.push_back({c.code_point, classify(c.code_point), pos});
    pos += c.length;
  }
  return chars;
}

// Length in code points of the contraction ('s 't 're 've 'm 'll 'd) starting at i, or 0.
std::size_t contraction_length(const std::vector<Char>& chars, std::size_t i) {
  const std::size_t n = chars.size();
  if (chars[i].cp != U'\'' || i + 1 >= n) return 0;
  const char32_t a = chars[i + 1].cp;
  if (a == U's' || a == U't' || a == U'm' || a == U'd') return 2;
  if (i + 2 >= n) return 0;
  const char32_t b = chars[i + 2].cp;
  if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) return 3;
  return 0;
}

// Length of ` ?X+` at i for class X, or 0 when it does not match.
std::size_t optional_space_run(const std::vector<Char>& chars, std::size_t i, CharClass cls) {
  const std::size_t n = chars.size();
  std::size_t j = i;
  if (chars[j].cp == U' ' && j + 1 < n && chars[j + 1].cls == cls) ++j;
  if (chars[j].cls != cls) return 0;
  while (j < n && chars[j].cls == cls) ++j;
  return j - i;
}

// Length of the match starting at code point i (always >= 1).
std::size_t match_length(const std::vector<Char>& chars, std::size_t i) {
  if (const std::size_t len = contraction_length(chars, i)) return len;
  for (CharClass cls : {CharClass::kLetter, CharClass::kNumber, CharClass::kOther}) {
    if (const std::size_t len = optional_space_run(chars, i, cls)) return len;
  }
  // chars[i] is white space: \s+(?!\S) takes the run but leaves its last character when a
  // non-space follows (unless that would leave nothing); otherwise \s+ takes the whole run.
  const std::size_t n = chars.size();
  std::size_t j = i;
  while (j < n && chars[j].cls == CharClass::kSpace) ++j;
  if (j < n && j - i >= 2) return j - i - 1;
  return j - i;
}

}  // namespace

void gpt2_pretokenize_spans(std::string_view text, std::vector<TextSpan>& spans) {
  const std::vector<Char> chars = decode(text);
  std::size_t i = 0;
  while (i < chars.size()) {
    const std::size_t next = i + match_length(chars, i);
    spans.push_back({chars[i].offset, next < chars.size() ? chars[next].offset : text.size()});
    i = next;
  }
}

std::vector<std::string> gpt2_pretokenize(std::string_view text) {
  std::vector<TextSpan> spans;
  gpt2_pretokenize_spans(text, spans);
  std::vector<std::string> pieces;
  pieces.reserve(spans.size());
  for (const TextSpan& span : spans) {
    pieces.emplace_back(text.substr(span.begin, span.end - span.begin));
  }
  return pieces;
}

}  // namespace flexgen
