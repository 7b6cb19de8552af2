#pragma once
// GPT-2's pre-tokenization (as in HF tokenizers' ByteLevel pre-tokenizer with use_regex=true and
// add_prefix_space=false): the text is cut into the consecutive matches of
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// evaluated on Unicode code points, with \p{L} = general category L*, \p{N} = N* and
// \s = White_Space. Hand-written matcher; every code point belongs to exactly one piece, so the
// pieces concatenate to the input. Contractions are case-sensitive ("'S" is not one).
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace flexgen {

struct TextSpan {
  std::size_t begin = 0;  // byte offsets into the text, [begin, end)
  std::size_t end = 0;
};

// Appends the pieces of `text` to `spans` as byte ranges. Throws flexgen::Error naming the byte
// offset if `text` is not valid UTF-8.
void gpt2_pretokenize_spans(std::string_view text, std::vector<TextSpan>& spans);

// The pieces of `text` as strings (convenience form of gpt2_pretokenize_spans).
std::vector<std::string> gpt2_pretokenize(std::string_view text);

}  // namespace flexgen
