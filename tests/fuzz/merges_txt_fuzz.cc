// The tokenizer's merges.txt reader (with the tiny fixture's vocab.json), then encoding and
// decoding with what it read.
#include "engine/text/bpe_tokenizer.h"
#include "fuzz/bpe_check.h"
#include "fuzz/fuzz_target.h"

FLEXGEN_FUZZ_TARGET(merges_txt) {
  using namespace flexgen;
  const fuzz::MemFile merges(input);
  const BpeTokenizer tokenizer(fuzz::tiny_opt_dir() / "vocab.json", merges.path());
  fuzz::check_samples(tokenizer);
}
