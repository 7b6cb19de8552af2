#pragma once
// GPT-2 byte-level BPE, as used by OPT: reads HF vocab.json + merges.txt. Text is split by GPT-2's
// pre-tokenization pattern, each piece mapped byte-wise to printable code points, then merged by
// rank. decode(encode(s)) == s for every valid UTF-8 string.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace flexgen {

class BpeTokenizer {
 public:
  // Reads <dir>/vocab.json and <dir>/merges.txt; throws flexgen::Error for missing/malformed files.
  static BpeTokenizer from_dir(const std::filesystem::path& dir);
  BpeTokenizer(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt);

  // Token ids of `text` without special tokens.
  std::vector<std::int32_t> encode(std::string_view text) const;
  // Text of the ids; special tokens (e.g. "</s>") are skipped when `skip_special` is set.
  std::string decode(const std::vector<std::int32_t>& ids, bool skip_special = true) const;

  std::int64_t vocab_size() const { return static_cast<std::int64_t>(id_to_token_.size()); }
  std::int32_t token_id(const std::string& token) const;  // -1 if absent

 private:
  std::vector<std::string> bpe(const std::string& piece) const;
  std::unordered_map<std::string, std::int32_t> token_to_id_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, std::int32_t> merge_ranks_;  // "a b" -> rank
  mutable std::unordered_map<std::string, std::vector<std::int32_t>> cache_;
};

}  // namespace flexgen
