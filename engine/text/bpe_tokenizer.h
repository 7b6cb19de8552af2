#pragma once
// GPT-2 byte-level BPE, as used by OPT: reads HF vocab.json + merges.txt and gives the ids of HF
// `tokenizers`' ByteLevel BPE (add_prefix_space=false, no normalizer, no added-token matching).
// Text is split by GPT-2's pre-tokenization pattern (engine/text/gpt2_pretokenizer.h), each
// piece's bytes become byte-level symbols (engine/text/byte_level.h), and adjacent symbols are
// merged, lowest merges.txt rank first (leftmost first among equal ranks) until no pair of the
// piece is in merges.txt. decode(encode(s)) == s for every valid UTF-8 string.
// Unicode classes come from tables of the version named in engine/text/unicode_tables.inc; code
// points assigned only in later versions may split differently from a newer HF build.
//
// Thread safety: encode, decode and the look-ups are const and keep no mutable state (no cache),
// so one tokenizer can serve any number of threads. add_special_token mutates: call it before
// sharing the tokenizer.
#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/text/tokenizer.h"

namespace flexgen {

class BpeTokenizer : public Tokenizer {
 public:
  // Reads <dir>/vocab.json and <dir>/merges.txt; throws flexgen::Error for missing/malformed files.
  static BpeTokenizer from_dir(const std::filesystem::path& dir);
  // vocab.json: a JSON object token -> id whose ids are exactly 0..N-1 (no duplicates, no gaps).
  // merges.txt: one merge "left right" per line (exactly one space, both symbols non-empty); lines
  // starting with "#version" (as HF) and blank lines are skipped; "\r\n" endings are accepted.
  // A merge may name symbols that are not in the vocab (they can only serve as intermediate
  // symbols). When a merge appears twice, its later rank counts (as in HF tokenizers and GPT-2).
  BpeTokenizer(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt);

  // Token ids of `text`; special-token strings in the text (e.g. "</s>") are not recognised but
  // tokenized as ordinary text, and no BOS/EOS is added. Throws flexgen::Error if `text` is not
  // valid UTF-8 (naming the byte offset), or if a piece ends in a symbol that vocab.json lacks
  // (a broken vocab: every one of the 256 byte symbols must be in it).
  std::vector<std::int32_t> encode(std::string_view text) const override;
  // Bytes of the ids concatenated. With `skip_special`, special ids (see is_special) are left out.
  // The result is returned as raw bytes: a sequence cut inside a multi-byte character gives
  // invalid UTF-8 (HF would substitute U+FFFD; raw bytes let a caller stream partial output).
  // Throws flexgen::Error for an id outside [0, vocab_size()) or a token whose string contains a
  // character that is not a byte symbol (and that is not skipped as special).
  std::string decode(const std::vector<std::int32_t>& ids, bool skip_special = true) const override;

  std::int64_t vocab_size() const override { return static_cast<std::int64_t>(id_to_token_.size()); }
  std::int32_t token_id(const std::string& token) const;  // -1 if absent
  // The token string of `id` (byte-level symbols); throws flexgen::Error if out of range.
  const std::string& token(std::int32_t id) const;

  // Special ids: those whose token is "<s>", "</s>", "<pad>", "<unk>" or "<|endoftext|>" (GPT-2's),
  // plus any registered with add_special_token, which throws flexgen::Error for an id outside
  // [0, vocab_size()).
  void add_special_token(std::int32_t id);
  bool is_special(std::int32_t id) const;

 private:
  struct Merge {
    std::uint32_t rank;
    std::int32_t result;  // symbol id of the concatenation
  };
  struct Workspace;

  void read_vocab(const std::filesystem::path& path);
  void read_merges(const std::filesystem::path& path);
  std::int32_t intern_symbol(const std::string& symbol);
  const Merge* find_merge(std::int32_t left, std::int32_t right) const;
  void encode_piece(std::string_view piece, Workspace& ws, std::vector<std::int32_t>& out) const;

  std::filesystem::path vocab_path_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, std::int32_t> token_to_id_;
  // Symbols: ids [0, vocab_size) are the vocab tokens; higher ids are symbols that occur only in
  // merges.txt or as byte symbols missing from the vocab.
  std::vector<std::string> symbols_;
  std::unordered_map<std::string, std::int32_t> symbol_ids_;
  std::array<std::int32_t, 256> byte_symbols_{};  // symbol id of each byte
  std::unordered_map<std::uint64_t, Merge> merges_;  // (left << 32 | right) -> merge
  std::vector<std::string> id_to_bytes_;              // decoded bytes of each token
  std::vector<bool> id_decodable_;                    // false: token has a non-byte character
  std::vector<bool> special_;
};

}  // namespace flexgen
