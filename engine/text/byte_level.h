#pragma once
// GPT-2's reversible byte-to-unicode map used by byte-level BPE: the printable bytes '!'..'~',
// U+00A1..U+00AC and U+00AE..U+00FF stand for themselves; the other 68 bytes (0x00..0x20,
// 0x7F..0xA0, 0xAD), in increasing order, map to U+0100 + n for n = 0..67. So ' ' is 'Ġ'
// (U+0120), '\n' is 'Ċ' (U+010A), '\t' is 'ĉ' (U+0109).
#include <cstdint>

namespace flexgen {

// The code point that stands for `byte` in byte-level BPE token strings.
char32_t byte_to_unicode(std::uint8_t byte);
// The byte that `cp` stands for, or -1 if `cp` is not one of the 256 byte symbols.
int unicode_to_byte(char32_t cp);

}  // namespace flexgen
