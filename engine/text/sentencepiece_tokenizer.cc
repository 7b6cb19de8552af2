#include "engine/text/sentencepiece_tokenizer.h"

#include "engine/core/error.h"
#include "engine/text/utf8.h"

#ifdef FLEXGEN_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace flexgen {

bool sentencepiece_available() {
#ifdef FLEXGEN_HAVE_SENTENCEPIECE
  return true;
#else
  return false;
#endif
}

#ifdef FLEXGEN_HAVE_SENTENCEPIECE

struct SentencePieceTokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
  std::filesystem::path path;
};

namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's whitespace mark

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

SentencePieceTokenizer SentencePieceTokenizer::from_file(const std::filesystem::path& model_file, bool add_bos) {
  auto impl = std::make_unique<Impl>();
  impl->path = model_file;
  std::error_code ec;
  FLEXGEN_REQUIRE(std::filesystem::is_regular_file(model_file, ec), model_file.string(), ": cannot read file");
  const auto status = impl->sp.Load(model_file.string());
  FLEXGEN_REQUIRE(status.ok(), model_file.string(), ": not a SentencePiece model (", status.ToString(), ")");
  FLEXGEN_REQUIRE(impl->sp.GetPieceSize() > 0, model_file.string(), ": a SentencePiece model without pieces");
  return SentencePieceTokenizer(std::move(impl), add_bos);
}

SentencePieceTokenizer::SentencePieceTokenizer(std::unique_ptr<Impl> impl, bool add_bos)
    : impl_(std::move(impl)), add_bos_(add_bos) {}
SentencePieceTokenizer::~SentencePieceTokenizer() = default;
SentencePieceTokenizer::SentencePieceTokenizer(SentencePieceTokenizer&&) noexcept = default;
SentencePieceTokenizer& SentencePieceTokenizer::operator=(SentencePieceTokenizer&&) noexcept = default;

std::vector<std::int32_t> SentencePieceTokenizer::encode(std::string_view text) const {
  const std::size_t bad = find_invalid_utf8(text);
  FLEXGEN_REQUIRE(bad == text.size(), "tokenizer: the text is not valid UTF-8 (byte offset ", bad, ")");
  std::vector<int> ids;
  const auto status = impl_->sp.Encode(text, &ids);
  FLEXGEN_REQUIRE(status.ok(), impl_->path.string(), ": encoding failed (", status.ToString(), ")");
  return {ids.begin(), ids.end()};
}

std::string SentencePieceTokenizer::decode(const std::vector<std::int32_t>& ids, bool skip_special) const {
  const sentencepiece::SentencePieceProcessor& sp = impl_->sp;
  std::string out;
  for (const std::int32_t id : ids) {
    FLEXGEN_REQUIRE(id >= 0 && id < sp.GetPieceSize(), "tokenizer: id ", id, " is outside the vocabulary [0, ",
                    sp.GetPieceSize(), ")");
    const std::string& piece = sp.IdToPiece(id);
    if (sp.IsControl(id) || sp.IsUnknown(id) || sp.IsUnused(id)) {
      if (!skip_special) out += piece;
      continue;
    }
    if (sp.IsByte(id) && piece.size() == 6 && hex_digit(piece[3]) >= 0 && hex_digit(piece[4]) >= 0) {
      out += static_cast<char>(hex_digit(piece[3]) * 16 + hex_digit(piece[4]));  // "<0xAB>"
      continue;
    }
    for (std::size_t i = 0; i < piece.size();) {
      if (piece.compare(i, kSpace.size(), kSpace) == 0) {
        out += ' ';
        i += kSpace.size();
      } else {
        out += piece[i++];
      }
    }
  }
  return out;
}

std::int64_t SentencePieceTokenizer::vocab_size() const { return impl_->sp.GetPieceSize(); }
std::int32_t SentencePieceTokenizer::bos_id() const { return impl_->sp.bos_id(); }
std::int32_t SentencePieceTokenizer::eos_id() const { return impl_->sp.eos_id(); }

std::string SentencePieceTokenizer::piece(std::int32_t id) const {
  FLEXGEN_REQUIRE(id >= 0 && id < impl_->sp.GetPieceSize(), "tokenizer: id ", id, " is outside the vocabulary");
  return impl_->sp.IdToPiece(id);
}

#else  // no SentencePiece in this build

struct SentencePieceTokenizer::Impl {};

SentencePieceTokenizer SentencePieceTokenizer::from_file(const std::filesystem::path& model_file, bool) {
  fail(model_file.string(), ": this build has no SentencePiece (install libsentencepiece-dev and reconfigure)");
}
SentencePieceTokenizer::SentencePieceTokenizer(std::unique_ptr<Impl> impl, bool add_bos)
    : impl_(std::move(impl)), add_bos_(add_bos) {}
SentencePieceTokenizer::~SentencePieceTokenizer() = default;
SentencePieceTokenizer::SentencePieceTokenizer(SentencePieceTokenizer&&) noexcept = default;
SentencePieceTokenizer& SentencePieceTokenizer::operator=(SentencePieceTokenizer&&) noexcept = default;
std::vector<std::int32_t> SentencePieceTokenizer::encode(std::string_view) const { return {}; }
std::string SentencePieceTokenizer::decode(const std::vector<std::int32_t>&, bool) const { return {}; }
std::int64_t SentencePieceTokenizer::vocab_size() const { return 0; }
std::int32_t SentencePieceTokenizer::bos_id() const { return -1; }
std::int32_t SentencePieceTokenizer::eos_id() const { return -1; }
std::string SentencePieceTokenizer::piece(std::int32_t) const { return {}; }

#endif

}  // namespace flexgen
