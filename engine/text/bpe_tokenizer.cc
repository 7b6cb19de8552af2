#include "engine/text/bpe_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_set>

#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/core/json_fields.h"
#include "engine/text/byte_level.h"
#include "engine/text/gpt2_pretokenizer.h"
#include "engine/text/utf8.h"

namespace flexgen {
namespace {

constexpr const char* kDefaultSpecialTokens[] = {"<s>", "</s>", "<pad>", "<unk>", "<|endoftext|>"};

std::string read_file(const std::filesystem::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  FLEXGEN_REQUIRE(in.is_open(), "BpeTokenizer: cannot open ", what, " file '", path.string(), "'");
  std::ostringstream contents;
  contents << in.rdbuf();
  FLEXGEN_REQUIRE(!in.bad(), "BpeTokenizer: cannot read ", what, " file '", path.string(), "'");
  return contents.str();
}

std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
         static_cast<std::uint32_t>(right);
}

// The bytes that a byte-level token string stands for; false if it has another character.
bool token_bytes(const std::string& token, std::string& bytes) {
  bytes.clear();
  std::size_t pos = 0;
  while (pos < token.size()) {
    const Utf8Char c = decode_utf8_char(token, pos);
    if (c.length == 0) return false;
    const int byte = unicode_to_byte(c.code_point);
    if (byte < 0) return false;
    bytes.push_back(static_cast<char>(byte));
    pos += c.length;
  }
  return true;
}

}  // namespace

// Scratch space of one encode call: a doubly linked list of the piece's symbols and a min-heap of
// candidate merges ordered by (rank, position of the left symbol).
struct BpeTokenizer::Workspace {
  struct Node {
    std::int32_t symbol;  // -1 once merged into its left neighbour
    std::int32_t prev;
    std::int32_t next;
  };
  struct Candidate {
    std::uint32_t rank;
    std::int32_t pos;
    std::int32_t left;
    std::int32_t right;
    std::int32_t result;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };
  std::vector<Node> nodes;
  std::vector<Candidate> heap;
};

BpeTokenizer BpeTokenizer::from_dir(const std::filesystem::path& dir) {
  return BpeTokenizer(dir / "vocab.json", dir / "merges.txt");
}

BpeTokenizer::BpeTokenizer(const std::filesystem::path& vocab_json,
                           const std::filesystem::path& merges_txt)
    : vocab_path_(vocab_json) {
  read_vocab(vocab_json);
  symbols_ = id_to_token_;
  symbol_ids_ = token_to_id_;
  for (int byte = 0; byte < 256; ++byte) {
    std::string symbol;
    append_utf8(symbol, byte_to_unicode(static_cast<std::uint8_t>(byte)));
    byte_symbols_[static_cast<std::size_t>(byte)] = intern_symbol(symbol);
  }
  read_merges(merges_txt);

  const std::size_t n = id_to_token_.size();
  id_to_bytes_.resize(n);
  id_decodable_.resize(n);
  special_.assign(n, false);
  for (std::size_t id = 0; id < n; ++id) {
    id_decodable_[id] = token_bytes(id_to_token_[id], id_to_bytes_[id]);
  }
  for (const char* token : kDefaultSpecialTokens) {
    const std::int32_t id = token_id(token);
    if (id >= 0) special_[static_cast<std::size_t>(id)] = true;
  }
}

void BpeTokenizer::read_vocab(const std::filesystem::path& path) {
  const std::string text = read_file(path, "vocab");
  const std::string name = path.string();
  // Duplicate keys would silently collapse in the parsed object: catch them while parsing.
  std::unordered_set<std::string> keys;
  std::string duplicate;
  const auto on_event = [&](int depth, nlohmann::json::parse_event_t event,
                            nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!keys.insert(key).second) duplicate = key;
    }
    return true;
  };
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text, on_event);
  } catch (const nlohmann::json::exception& e) {
    fail("BpeTokenizer: vocab file '", name, "' is not valid JSON: ", e.what());
  }
  FLEXGEN_REQUIRE(json.is_object(), "BpeTokenizer: vocab file '", name,
                  "' must be a JSON object of token -> id, not a ", json.type_name());
  FLEXGEN_REQUIRE(duplicate.empty(), "BpeTokenizer: vocab file '", name, "' lists token \"",
                  printable(duplicate), "\" twice");
  const std::size_t n = json.size();
  FLEXGEN_REQUIRE(n > 0, "BpeTokenizer: vocab file '", name, "' is empty");
  FLEXGEN_REQUIRE(n <= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()),
                  "BpeTokenizer: vocab file '", name, "' has too many tokens");
  id_to_token_.assign(n, std::string());
  std::vector<bool> assigned(n, false);
  token_to_id_.reserve(n);
  for (const auto& [token, value] : json.items()) {
    FLEXGEN_REQUIRE(value.is_number_integer(), "BpeTokenizer: vocab file '", name, "': token \"",
                    printable(token), "\" has id ", json_preview(value), ", expected an integer");
    const bool negative = value.is_number_unsigned() ? false : value.get<std::int64_t>() < 0;
    FLEXGEN_REQUIRE(!negative, "BpeTokenizer: vocab file '", name, "': token \"", printable(token),
                    "\" has negative id ", json_preview(value));
    const std::uint64_t id = value.is_number_unsigned()
                                 ? value.get<std::uint64_t>()
                                 : static_cast<std::uint64_t>(value.get<std::int64_t>());
    FLEXGEN_REQUIRE(id < n, "BpeTokenizer: vocab file '", name, "': token \"", printable(token), "\" has id ",
                    id, ", out of range for ", n, " tokens (ids must be 0..", n - 1, ")");
    FLEXGEN_REQUIRE(!assigned[id], "BpeTokenizer: vocab file '", name, "': id ", id,
                    " is used by both \"", printable(id_to_token_[id]), "\" and \"", printable(token), "\"");
    assigned[id] = true;
    id_to_token_[id] = token;
    token_to_id_.emplace(token, static_cast<std::int32_t>(id));
  }
}

std::int32_t BpeTokenizer::intern_symbol(const std::string& symbol) {
  const auto [it, inserted] =
      symbol_ids_.emplace(symbol, static_cast<std::int32_t>(symbols_.size()));
  if (inserted) symbols_.push_back(symbol);
  return it->second;
}

void BpeTokenizer::read_merges(const std::filesystem::path& path) {
  const std::string text = read_file(path, "merges");
  const std::string name = path.string();
  std::uint32_t rank = 0;
  std::size_t line_number = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.starts_with("#version")) continue;
    const std::size_t space = line.find(' ');
    const bool two_symbols = space != std::string_view::npos && space > 0 &&
                             space + 1 < line.size() &&
                             line.find(' ', space + 1) == std::string_view::npos;
    FLEXGEN_REQUIRE(two_symbols, "BpeTokenizer: merges file '", name, "' line ", line_number,
                    ": expected two symbols separated by one space, got \"", printable(line), "\"");
    FLEXGEN_REQUIRE(rank < std::numeric_limits<std::uint32_t>::max(), "BpeTokenizer: merges file '",
                    name, "' has too many merges");
    const std::string left(line.substr(0, space));
    const std::string right(line.substr(space + 1));
    const std::int32_t left_id = intern_symbol(left);
    const std::int32_t right_id = intern_symbol(right);
    const std::int32_t result_id = intern_symbol(left + right);
    merges_.insert_or_assign(pair_key(left_id, right_id), Merge{rank, result_id});
    ++rank;
  }
}

const BpeTokenizer::Merge* BpeTokenizer::find_merge(std::int32_t left, std::int32_t right) const {
  const auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

std::vector<std::int32_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<TextSpan> spans;
  gpt2_pretokenize_spans(text, spans);
  std::vector<std::int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  Workspace ws;
  for (const TextSpan& span : spans) {
    encode_piece(text.substr(span.begin, span.end - span.begin), ws, ids);
  }
  return ids;
}

void BpeTokenizer::encode_piece(std::string_view piece, Workspace& ws,
                                std::vector<std::int32_t>& out) const {
  using Candidate = Workspace::Candidate;
  auto& nodes = ws.nodes;
  auto& heap = ws.heap;
  const auto n = static_cast<std::int32_t>(piece.size());
  nodes.clear();
  heap.clear();
  for (std::int32_t i = 0; i < n; ++i) {
    const auto byte = static_cast<unsigned char>(piece[static_cast<std::size_t>(i)]);
    nodes.push_back({byte_symbols_[byte], i - 1, i + 1 < n ? i + 1 : -1});
  }
  const auto push_candidate = [&](std::int32_t pos) {
    const std::int32_t next = nodes[static_cast<std::size_t>(pos)].next;
    if (next < 0) return;
    const std::int32_t left = nodes[static_cast<std::size_t>(pos)].symbol;
    const std::int32_t right = nodes[static_cast<std::size_t>(next)].symbol;
    if (const Merge* merge = find_merge(left, right)) {
      heap.push_back({merge->rank, pos, left, right, merge->result});
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  for (std::int32_t i = 0; i + 1 < n; ++i) push_candidate(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const Candidate top = heap.back();
    heap.pop_back();
    auto& node = nodes[static_cast<std::size_t>(top.pos)];
    // Stale when either symbol has been merged since (a node's symbol only ever grows).
    if (node.symbol != top.left || node.next < 0) continue;
    auto& right = nodes[static_cast<std::size_t>(node.next)];
    if (right.symbol != top.right) continue;
    node.symbol = top.result;
    node.next = right.next;
    right.symbol = -1;
    if (node.next >= 0) nodes[static_cast<std::size_t>(node.next)].prev = top.pos;
    if (node.prev >= 0) push_candidate(node.prev);
    push_candidate(top.pos);
  }

  const auto vocab = static_cast<std::int32_t>(id_to_token_.size());
  for (std::int32_t i = n > 0 ? 0 : -1; i >= 0; i = nodes[static_cast<std::size_t>(i)].next) {
    const std::int32_t symbol = nodes[static_cast<std::size_t>(i)].symbol;
    FLEXGEN_REQUIRE(symbol < vocab, "BpeTokenizer: symbol \"", printable(symbols_[static_cast<std::size_t>(symbol)]),
                    "\" (from text piece \"", printable(piece, 32), "\") is not in vocab file '",
                    vocab_path_.string(), "'");
    out.push_back(symbol);
  }
}

std::string BpeTokenizer::decode(const std::vector<std::int32_t>& ids, bool skip_special) const {
  std::string text;
  for (const std::int32_t id : ids) {
    FLEXGEN_REQUIRE(id >= 0 && id < vocab_size(), "BpeTokenizer::decode: token id ", id,
                    " is outside [0, ", vocab_size(), ")");
    const auto index = static_cast<std::size_t>(id);
    if (skip_special && special_[index]) continue;
    FLEXGEN_REQUIRE(id_decodable_[index], "BpeTokenizer::decode: token ", id, " \"",
                    printable(id_to_token_[index]), "\" has a character that is not a byte-level symbol");
    text += id_to_bytes_[index];
  }
  return text;
}

std::int32_t BpeTokenizer::token_id(const std::string& token) const {
  const auto it = token_to_id_.find(token);
  return it == token_to_id_.end() ? -1 : it->second;
}

const std::string& BpeTokenizer::token(std::int32_t id) const {
  FLEXGEN_REQUIRE(id >= 0 && id < vocab_size(), "BpeTokenizer::token: token id ", id,
                  " is outside [0, ", vocab_size(), ")");
  return id_to_token_[static_cast<std::size_t>(id)];
}

void BpeTokenizer::add_special_token(std::int32_t id) {
  FLEXGEN_REQUIRE(id >= 0 && id < vocab_size(), "BpeTokenizer::add_special_token: token id ", id,
                  " is outside [0, ", vocab_size(), ")");
  special_[static_cast<std::size_t>(id)] = true;
}

bool BpeTokenizer::is_special(std::int32_t id) const {
  return id >= 0 && id < vocab_size() && special_[static_cast<std::size_t>(id)];
}

}  // namespace flexgen
