#include "engine/text/unicode_class.h"

#include <algorithm>
#include <iterator>

namespace flexgen {
namespace {

struct CodePointRange {
  char32_t first;
  char32_t last;  // inclusive
};

#include "engine/text/unicode_tables.inc"

template <std::size_t N>
bool in_ranges(const CodePointRange (&ranges)[N], char32_t cp) {
  // First range whose last >= cp; cp is inside iff that range starts at or before cp.
  const CodePointRange* it = std::lower_bound(
      std::begin(ranges), std::end(ranges), cp,
      [](const CodePointRange& range, char32_t value) { return range.last < value; });
  return it != std::end(ranges) && it->first <= cp;
}

}  // namespace

bool is_unicode_letter(char32_t cp) {
  if (cp < 0x80) return (cp >= U'a' && cp <= U'z') || (cp >= U'A' && cp <= U'Z');
  return in_ranges(kLetterRanges, cp);
}

bool is_unicode_number(char32_t cp) {
  if (cp < 0x80) return cp >= U'0' && cp <= U'9';
  return in_ranges(kNumberRanges, cp);
}

bool is_unicode_white_space(char32_t cp) {
  if (cp < 0x80) return cp == U' ' || (cp >= U'\t' && cp <= U'\r');
  return in_ranges(kWhiteSpaceRanges, cp);
}

const char* unicode_tables_version() { return kUnicodeTablesVersion; }

}  // namespace flexgen
