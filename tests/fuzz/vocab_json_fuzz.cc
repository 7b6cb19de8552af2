// The tokenizer's vocab.json reader (with the tiny fixture's merges.txt), then encoding and
// decoding with what it read.
#include "engine/text/bpe_tokenizer.h"
#include "fuzz/bpe_check.h"
#include "fuzz/fuzz_target.h"

FLEXGEN_FUZZ_TARGET(vocab_json) {
  using namespace flexgen;
  const fuzz::MemFile vocab(input);
  const BpeTokenizer tokenizer(vocab.path(), fuzz::tiny_opt_dir() / "merges.txt");
  fuzz::check_samples(tokenizer);
}
