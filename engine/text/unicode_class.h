#pragma once
// Unicode character classes used by GPT-2's pre-tokenization pattern, from range tables generated
// by scripts/gen_unicode_tables.py (engine/text/unicode_tables.inc, which states its Unicode
// version). Look-ups are a fast path for ASCII and a binary search otherwise.
namespace flexgen {

// General category L* (\p{L}).
bool is_unicode_letter(char32_t cp);
// General category N* (\p{N}).
bool is_unicode_number(char32_t cp);
// Property White_Space (\s in Unicode regex engines such as Oniguruma and Rust's regex).
bool is_unicode_white_space(char32_t cp);
// The Unicode version of the tables, e.g. "14.0.0".
const char* unicode_tables_version();

}  // namespace flexgen
