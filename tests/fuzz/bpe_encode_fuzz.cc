// Prompt text through the tiny fixture's tokenizer: invalid UTF-8 is refused with flexgen::Error,
// valid text comes back from decode(encode(text)).
#include "engine/text/bpe_tokenizer.h"
#include "fuzz/bpe_check.h"
#include "fuzz/fuzz_target.h"

FLEXGEN_FUZZ_TARGET(bpe_encode) {
  using namespace flexgen;
  static const BpeTokenizer tokenizer = BpeTokenizer::from_dir(fuzz::tiny_opt_dir());
  const std::vector<std::int32_t> ids = tokenizer.encode(input);  // Error for invalid UTF-8
  FLEXGEN_FUZZ_CHECK(tokenizer.decode(ids, /*skip_special=*/false) == input, "decode(encode(text)) == text");
}
