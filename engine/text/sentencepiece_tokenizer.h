#pragma once
// SentencePiece tokenizer (LLaMA's tokenizer.model) through Debian's libsentencepiece, as HF's
// LlamaTokenizer uses it: encode is the model's own (its normalizer, dummy prefix, byte fallback);
// decode maps each piece to text itself ("\u2581" -> space, <0xAB> byte pieces -> the byte,
// control and unknown pieces skipped or kept as their piece text) and, unlike
// SentencePieceProcessor::Decode and HF's decode, keeps the leading space of the first piece, so
// a continuation decoded on its own, or id by id, joins its prompt with the right spacing.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/text/tokenizer.h"

namespace flexgen {

// Whether this build has SentencePiece (FLEXGEN_HAVE_SENTENCEPIECE).
bool sentencepiece_available();

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // Loads a serialized SentencePiece model; throws flexgen::Error naming the file when it cannot
  // be read or parsed, or when this build has no SentencePiece.
  static SentencePieceTokenizer from_file(const std::filesystem::path& model_file, bool add_bos = true);
  ~SentencePieceTokenizer() override;
  SentencePieceTokenizer(SentencePieceTokenizer&&) noexcept;
  SentencePieceTokenizer& operator=(SentencePieceTokenizer&&) noexcept;

  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<std::int32_t>& ids, bool skip_special = true) const override;
  std::int64_t vocab_size() const override;
  bool add_bos() const override { return add_bos_; }

  std::int32_t bos_id() const;  // the model's own ids (-1 when it has none)
  std::int32_t eos_id() const;
  std::string piece(std::int32_t id) const;  // throws flexgen::Error for an id out of range

 private:
  struct Impl;
  explicit SentencePieceTokenizer(std::unique_ptr<Impl> impl, bool add_bos);
  std::unique_ptr<Impl> impl_;
  bool add_bos_ = true;
};

}  // namespace flexgen
