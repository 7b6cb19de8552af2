#pragma once
// Shared by the tokenizer targets: encodes sample texts with a tokenizer that was read without
// error, and checks that decoding gives the text back.
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/error.h"
#include "engine/text/bpe_tokenizer.h"
#include "fuzz/fuzz_target.h"

namespace flexgen::fuzz {

// decode(encode(text)) == text when encode succeeds (it may refuse with flexgen::Error, e.g. for
// a vocabulary that lacks a byte symbol).
inline void check_round_trip(const BpeTokenizer& tokenizer, std::string_view text) {
  std::vector<std::int32_t> ids;
  try {
    ids = tokenizer.encode(text);
  } catch (const Error&) {
    return;
  }
  for (std::int32_t id : ids) {
    FLEXGEN_FUZZ_CHECK(id >= 0 && id < tokenizer.vocab_size(), "encode gives ids of the vocabulary");
  }
  FLEXGEN_FUZZ_CHECK(tokenizer.decode(ids, /*skip_special=*/false) == text, "decode(encode(text)) == text");
}

inline void check_samples(const BpeTokenizer& tokenizer) {
  static const char* const kSamples[] = {
      "Hello world", "The quick brown fox's 12345 jumps!", "  two  spaces\n\ttab\r\n",
      "h\xc3\xa9llo w\xc3\xb6rld \xe2\x80\x94 \xf0\x9f\x98\x80", "</s>Hello<pad>", "",
  };
  for (const char* text : kSamples) check_round_trip(tokenizer, text);
  // Every id decodes or is refused with flexgen::Error.
  for (std::int32_t id = 0; id < tokenizer.vocab_size() && id < 4096; ++id) {
    try {
      (void)tokenizer.decode({id}, /*skip_special=*/false);
    } catch (const Error&) {
    }
  }
}

}  // namespace flexgen::fuzz
