#pragma once
// Tokenizer: what the commands need from a model's tokenizer, whichever kind the model ships:
// GPT-2 byte-level BPE (vocab.json + merges.txt, OPT: bpe_tokenizer.h) or SentencePiece
// (tokenizer.model, LLaMA: sentencepiece_tokenizer.h).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace flexgen {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text`, without BOS/EOS; throws flexgen::Error for invalid UTF-8.
  virtual std::vector<std::int32_t> encode(std::string_view text) const = 0;
  // The text of `ids` as raw bytes (a cut multi-byte character stays cut), special tokens left out
  // with `skip_special`; decoding a continuation id by id and concatenating gives the same bytes
  // as decoding it at once.
  virtual std::string decode(const std::vector<std::int32_t>& ids, bool skip_special = true) const = 0;
  virtual std::int64_t vocab_size() const = 0;
  // Whether a prompt starts with the model's BOS id before its encoded text (OPT's tokenizer
  // prepends </s>; LLaMA's <s> unless tokenizer_config.json sets add_bos_token false).
  virtual bool add_bos() const { return true; }
};

// The tokenizer of an HF model directory, or why there is none.
struct ModelTokenizer {
  std::shared_ptr<const Tokenizer> tokenizer;  // null when the directory has none usable
  std::string unavailable;                     // then: one line saying why
};

// vocab.json + merges.txt: BpeTokenizer; tokenizer.model: SentencePieceTokenizer (when built with
// SentencePiece); only tokenizer.json (Llama 3's tiktoken-style BPE): none, with the reason.
// Throws flexgen::Error for a tokenizer file that exists but cannot be read.
ModelTokenizer load_model_tokenizer(const std::filesystem::path& model_dir);

}  // namespace flexgen
