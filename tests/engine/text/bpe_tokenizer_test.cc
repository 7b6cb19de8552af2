#include "engine/text/bpe_tokenizer.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<std::int32_t>;
using ::testing::HasSubstr;
using testing::TempDir;

// UTF-8 for code points below U+0800, written independently of the engine's encoder.
std::string utf8_2(char32_t cp) {
  if (cp < 0x80) return std::string(1, static_cast<char>(cp));
  return {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
}

// GPT-2's byte symbols, stated independently: unprintable bytes 0x00..0x20 -> U+0100.., 0x7F..0xA0
// -> U+0121.., 0xAD -> U+0143; others map to themselves.
std::string byte_symbol(unsigned byte) {
  char32_t cp = byte;
  if (byte <= 0x20) cp = 0x100 + byte;
  else if (byte >= 0x7F && byte <= 0xA0) cp = 0x121 + (byte - 0x7F);
  else if (byte == 0xAD) cp = 0x143;
  return utf8_2(cp);
}

// Appends the pieces to `out` (GCC 12 raises a false -Wrestrict on chains of std::string +).
template <typename... Parts>
void append(std::string& out, const Parts&... parts) {
  (out.append(parts), ...);
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// The hand-made tokenizer: ids 0..255 are the byte symbols (id == byte value), then merge results
// in merge order (skipping "qu" and "xy", which are deliberately not in the vocab), then special
// tokens and a token that is not made of byte symbols.
const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"\u0120", "t"},        // 0  Ġt     -> 256
    {"h", "e"},             // 1  he     -> 257
    {"\u0120t", "he"},      // 2  Ġthe   -> 258
    {"t", "he"},            // 3  the    -> 259
    {"c", "a"},             // 4  ca     -> 260
    {"ca", "t"},            // 5  cat    -> 261
    {"\u0120", "c"},        // 6  Ġc     -> 262
    {"\u0120", "cat"},      // 7  Ġcat   -> 263
    {"\u0120", "\u0120"},   // 8  ĠĠ     -> 264
    {"\u010A", "\u010A"},   // 9  ĊĊ     -> 265
    {"t", "'"},             // 10 t'     -> 266
    {"'", "s"},             // 11 's     -> 267
    {"4", "5"},             // 12 45     -> 268
    {"3", "\u0120"},        // 13 3Ġ     -> 269
    {"\u00C3", "\u00A9"},   // 14 Ã©     -> 270 (é = C3 A9)
    {"\u00E6", "\u0139"},   // 15 æĹ     -> 271 (E6 97, first two bytes of 日)
    {"\u0120", "\u00F0"},   // 16 Ġð     -> 272 (space + first byte of 😀)
    {"a", "a"},             // 17 aa     -> 273
    {"q", "u"},             // 18 qu     (not in the vocab)
    {"qu", "i"},            // 19 qui    -> 274
    {"\u010D", "\u010A"},   // 20 čĊ     -> 275 (\r\n)
    {"x", "y"},             // 21 xy     (not in the vocab)
};
const std::vector<std::string> kTailTokens = {
    "\u0120t", "he", "\u0120the", "the", "ca", "cat", "\u0120c", "\u0120cat", "\u0120\u0120",
    "\u010A\u010A", "t'", "'s", "45", "3\u0120", "\u00C3\u00A9", "\u00E6\u0139", "\u0120\u00F0",
    "aa", "qui", "\u010D\u010A",
    "<s>", "<pad>", "</s>", "<unk>", "<extra>", "\u65E5"};
constexpr std::int32_t kBos = 276, kPad = 277, kEos = 278, kUnk = 279, kExtra = 280, kCjk = 281;

std::string make_vocab_json() {
  std::string json = "{";
  std::int32_t id = 0;
  const auto add = [&](const std::string& token) {
    if (id > 0) json += ",\n";
    append(json, "\"", json_escape(token), "\": ", std::to_string(id++));
  };
  for (unsigned byte = 0; byte < 256; ++byte) add(byte_symbol(byte));
  for (const std::string& token : kTailTokens) add(token);
  json += "}\n";
  return json;
}

std::string make_merges_txt() {
  std::string text = "#version: 0.2\n";
  for (const auto& [left, right] : kMerges) append(text, left, " ", right, "\n");
  return text;
}

class BpeTokenizerTest : public ::testing::Test {
 protected:
  static BpeTokenizer load(const TempDir& dir) {
    dir.write("vocab.json", make_vocab_json());
    dir.write("merges.txt", make_merges_txt());
    return BpeTokenizer::from_dir(dir.path());
  }
  TempDir dir_;
  BpeTokenizer tok_ = load(dir_);
};

TEST_F(BpeTokenizerTest, VocabLoaded) {
  EXPECT_EQ(tok_.vocab_size(), 282);
  EXPECT_EQ(tok_.token_id("\u0120"), 32);  // Ġ: space
  EXPECT_EQ(tok_.token_id("\u010A"), 10);  // Ċ: newline
  EXPECT_EQ(tok_.token_id("\u0109"), 9);   // ĉ: tab
  EXPECT_EQ(tok_.token_id("\u0120cat"), 263);
  EXPECT_EQ(tok_.token_id("qu"), -1);
  EXPECT_EQ(tok_.token(258), "\u0120the");
  EXPECT_EQ(tok_.token_id("</s>"), kEos);
}

// Expected ids worked out by hand from kMerges (lowest rank first, leftmost among equals).
TEST_F(BpeTokenizerTest, EncodeHandWorkedExamples) {
  // " cat": (c,a) rank 4 beats (Ġ,c) rank 6; then ca+t, then Ġ+cat.
  EXPECT_EQ(tok_.encode("the cat"), (Ids{259, 263}));
  EXPECT_EQ(tok_.encode("the the"), (Ids{259, 258}));
  EXPECT_EQ(tok_.encode("  two  spaces"), (Ids{32, 256, 119, 111, 32, 32, 115, 112, 97, 99, 101, 115}));
  EXPECT_EQ(tok_.encode("a   "), (Ids{97, 264, 32}));
  EXPECT_EQ(tok_.encode("tab\there"), (Ids{116, 97, 98, 9, 257, 114, 101}));
  EXPECT_EQ(tok_.encode("line\nbreak\n\n"), (Ids{108, 105, 110, 101, 10, 98, 114, 101, 97, 107, 265}));
  EXPECT_EQ(tok_.encode("it's I'll"), (Ids{105, 116, 267, 32, 73, 39, 108, 108}));
  EXPECT_EQ(tok_.encode("123 4567"), (Ids{49, 50, 51, 32, 268, 54, 55}));
  EXPECT_EQ(tok_.encode("h\u00E9llo w\u00F6rld"),
            (Ids{104, 270, 108, 108, 111, 32, 119, 195, 182, 114, 108, 100}));
  EXPECT_EQ(tok_.encode("\u65E5\u672C\u8A9E"), (Ids{271, 165, 230, 156, 172, 232, 170, 158}));
  EXPECT_EQ(tok_.encode("emoji \U0001F600!"), (Ids{101, 109, 111, 106, 105, 272, 159, 152, 128, 33}));
  EXPECT_EQ(tok_.encode("aaaaa"), (Ids{273, 273, 97}));
  EXPECT_EQ(tok_.encode("quiz"), (Ids{274, 122}));  // through "qu", which is not in the vocab
  EXPECT_EQ(tok_.encode("a\r\n\r\nb"), (Ids{97, 275, 13, 10, 98}));
  EXPECT_EQ(tok_.encode("a\r\n"), (Ids{97, 275}));
  EXPECT_EQ(tok_.encode("DON'T"), (Ids{68, 79, 78, 39, 84}));
  EXPECT_EQ(tok_.encode(""), Ids{});
  // Special-token strings are ordinary text.
  EXPECT_EQ(tok_.encode("</s>"), (Ids{60, 47, 115, 62}));
  EXPECT_EQ(tok_.encode(std::string("\0\x7F", 2)), (Ids{0, 127}));
}

TEST_F(BpeTokenizerTest, DecodeSkipsSpecialTokens) {
  EXPECT_EQ(tok_.decode({kEos, 259, 263, kEos}), "the cat");
  EXPECT_EQ(tok_.decode({kBos, kPad, kUnk, 97}), "a");
  EXPECT_EQ(tok_.decode({kEos, 259, 263, kEos}, /*skip_special=*/false), "</s>the cat</s>");
  EXPECT_EQ(tok_.decode({kBos, kPad, kUnk}, false), "<s><pad><unk>");
  EXPECT_TRUE(tok_.is_special(kEos));
  EXPECT_FALSE(tok_.is_special(kExtra));
  EXPECT_FALSE(tok_.is_special(-1));
  EXPECT_EQ(tok_.decode({kExtra, 97}), "<extra>a");
  tok_.add_special_token(kExtra);
  EXPECT_TRUE(tok_.is_special(kExtra));
  EXPECT_EQ(tok_.decode({kExtra, 97}), "a");
  EXPECT_EQ(tok_.decode({kExtra, 97}, false), "<extra>a");
  // Byte symbols decode to their bytes; a cut multi-byte character stays raw bytes.
  EXPECT_EQ(tok_.decode({32, 10, 9, 0, 127, 173, 271}), std::string(" \n\t\0\x7F\xAD\xE6\x97", 8));
  EXPECT_EQ(tok_.decode({}), "");
}

TEST_F(BpeTokenizerTest, DecodeErrors) {
  for (std::int32_t bad : {-1, 282, 100000}) {
    try {
      tok_.decode({97, bad});
      ADD_FAILURE() << "no error for " << bad;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(str_cat("token id ", bad, " is outside [0, 282)")));
    }
  }
  try {
    tok_.decode({kCjk});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("token 281"));
    EXPECT_THAT(e.what(), HasSubstr("not a byte-level symbol"));
  }
  EXPECT_THROW(tok_.add_special_token(282), Error);
  EXPECT_THROW(tok_.token(-1), Error);
}

TEST_F(BpeTokenizerTest, MergeResultMissingFromVocabThrows) {
  try {
    tok_.encode("say xy");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("symbol \"xy\""));
    EXPECT_THAT(e.what(), HasSubstr("not in vocab file"));
    EXPECT_THAT(e.what(), HasSubstr("vocab.json"));
  }
}

TEST_F(BpeTokenizerTest, InvalidUtf8Throws) {
  for (const std::string& bad : {std::string("the \xFF"), std::string("the \xE6\x97"),
                                 std::string("the \xF4\x90\x80\x80"), std::string("the \x80")}) {
    try {
      tok_.encode(bad);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("invalid UTF-8 at byte offset 4"));
    }
  }
}

std::string random_utf8(std::mt19937& rng, int length) {
  // Code points from ranges that exercise every class and every UTF-8 length.
  static const char32_t kRanges[][2] = {
      {0x20, 0x7E}, {0x00, 0x1F}, {0x7F, 0xFF}, {0x100, 0x7FF}, {0x300, 0x36F},
      {0x2000, 0x206F}, {0x3000, 0x30FF}, {0x4E00, 0x9FFF}, {0xE000, 0xFFFD}, {0x10000, 0x10FFFF},
      {0x1F300, 0x1F64F}};
  std::uniform_int_distribution<std::size_t> pick_range(0, std::size(kRanges) - 1);
  std::string out;
  for (int i = 0; i < length; ++i) {
    const auto& range = kRanges[pick_range(rng)];
    const char32_t cp = static_cast<char32_t>(
        std::uniform_int_distribution<std::uint32_t>(range[0], range[1])(rng));
    // UTF-8 by hand (no surrogates are in the ranges).
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

TEST_F(BpeTokenizerTest, RoundTrip) {
  const std::string fixed[] = {"the cat", "  two  spaces", "tab\there", "line\nbreak\n\n",
                               "it's I'll", "123 4567", "h\u00E9llo w\u00F6rld",
                               "\u65E5\u672C\u8A9E", "emoji \U0001F600!", "a\r\n\r\nb", "   ",
                               "cafe\u0301 \u3000x\u00A0y", "quiz aaaaa the the"};
  for (const std::string& s : fixed) EXPECT_EQ(tok_.decode(tok_.encode(s)), s);
  std::mt19937 rng(12345);
  for (int trial = 0; trial < 300; ++trial) {
    const std::string s = random_utf8(rng, 1 + trial % 40);
    // Skip texts that contain "xy", whose merge result is deliberately missing from the vocab.
    if (s.find("xy") != std::string::npos) continue;
    EXPECT_EQ(tok_.decode(tok_.encode(s)), s);
  }
}

TEST_F(BpeTokenizerTest, EncodesOneMegabyte) {
  const std::string words[] = {"the", " cat", " sat", "  ", "\n", " 12345", "'s", " h\u00E9llo",
                               " \u65E5\u672C", "!", " aaaa", "\t", " quiz", " \U0001F600"};
  std::mt19937 rng(3);
  std::uniform_int_distribution<std::size_t> pick(0, std::size(words) - 1);
  std::string text;
  while (text.size() < (1u << 20)) text += words[pick(rng)];
  const auto start = std::chrono::steady_clock::now();
  const Ids ids = tok_.encode(text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  RecordProperty("encode_1mb_seconds", std::to_string(seconds));
  EXPECT_GT(ids.size(), text.size() / 8);
  EXPECT_EQ(tok_.decode(ids), text);
}

// ---- malformed files --------------------------------------------------------------------------

std::string load_error(const std::string& vocab, const std::string& merges) {
  TempDir dir;
  dir.write("vocab.json", vocab);
  dir.write("merges.txt", merges);
  try {
    BpeTokenizer::from_dir(dir.path());
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(BpeTokenizerFiles, MissingFiles) {
  TempDir dir;
  try {
    BpeTokenizer::from_dir(dir.path() / "nowhere");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot open vocab file"));
    EXPECT_THAT(e.what(), HasSubstr("nowhere/vocab.json"));
  }
  dir.write("vocab.json", "{\"a\": 0}");
  try {
    BpeTokenizer::from_dir(dir.path());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot open merges file"));
    EXPECT_THAT(e.what(), HasSubstr("merges.txt"));
  }
}

TEST(BpeTokenizerFiles, MalformedVocab) {
  const std::string merges = "a b\n";
  std::string msg = load_error("{\"a\": 0,,}", merges);
  EXPECT_THAT(msg, HasSubstr("vocab.json' is not valid JSON"));
  EXPECT_THAT(msg, HasSubstr("line 1"));
  msg = load_error("{\"a\": 0,\n\"b\": 1\n", merges);
  EXPECT_THAT(msg, HasSubstr("not valid JSON"));
  EXPECT_THAT(msg, HasSubstr("line 3"));
  EXPECT_THAT(load_error("[\"a\", \"b\"]", merges), HasSubstr("must be a JSON object"));
  EXPECT_THAT(load_error("{}", merges), HasSubstr("is empty"));
  EXPECT_THAT(load_error("{\"a\": \"0\"}", merges),
              HasSubstr("token \"a\" has id \"0\", expected an integer"));
  EXPECT_THAT(load_error("{\"a\": 0.5}", merges), HasSubstr("expected an integer"));
  EXPECT_THAT(load_error("{\"a\": null}", merges), HasSubstr("expected an integer"));
  EXPECT_THAT(load_error("{\"a\": 0, \"b\": -1}", merges), HasSubstr("token \"b\" has negative id -1"));
  EXPECT_THAT(load_error("{\"a\": 0, \"b\": 5}", merges),
              HasSubstr("token \"b\" has id 5, out of range for 2 tokens"));
  EXPECT_THAT(load_error("{\"a\": 0, \"b\": 99999999999999999999}", merges), HasSubstr("token \"b\""));
  EXPECT_THAT(load_error("{\"a\": 0, \"b\": 0}", merges),
              HasSubstr("id 0 is used by both \"a\" and \"b\""));
  EXPECT_THAT(load_error("{\"a\": 0, \"b\": 1, \"a\": 2}", merges),
              HasSubstr("lists token \"a\" twice"));
}

TEST(BpeTokenizerFiles, MalformedMerges) {
  const std::string vocab = "{\"a\": 0, \"b\": 1, \"ab\": 2}";
  std::string msg = load_error(vocab, "#version: 0.2\na b\nabc\n");
  EXPECT_THAT(msg, HasSubstr("merges.txt' line 3"));
  EXPECT_THAT(msg, HasSubstr("expected two symbols separated by one space, got \"abc\""));
  EXPECT_THAT(load_error(vocab, "a b c\n"), HasSubstr("line 1"));
  EXPECT_THAT(load_error(vocab, "a b\n\na  b\n"), HasSubstr("line 3"));
  EXPECT_THAT(load_error(vocab, " a\n"), HasSubstr("line 1"));
  EXPECT_THAT(load_error(vocab, "a b\na "), HasSubstr("line 2"));
}

TEST(BpeTokenizerFiles, MergesWithCrLfAndBlankLines) {
  TempDir dir;
  std::string vocab = "{";
  for (unsigned byte = 0; byte < 256; ++byte) {
    append(vocab, "\"", json_escape(byte_symbol(byte)), "\": ", std::to_string(byte), ",");
  }
  vocab += "\"he\": 256, \"hel\": 257}";
  const BpeTokenizer tok(dir.write("v.json", vocab),
                         dir.write("m.txt", "#version: 0.2\r\n\r\nh e\r\n\nhe l\r\n"));
  EXPECT_EQ(tok.encode("help"), (Ids{257, 112}));
  EXPECT_EQ(tok.vocab_size(), 258);
}

TEST(BpeTokenizerFiles, MissingByteSymbolThrowsOnUse) {
  TempDir dir;
  // Only the byte symbols of 'a' and 'b'.
  const BpeTokenizer tok(dir.write("v.json", "{\"a\": 0, \"b\": 1}"), dir.write("m.txt", ""));
  EXPECT_EQ(tok.encode("abba"), (Ids{0, 1, 1, 0}));
  try {
    tok.encode("a b");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("symbol \"\u0120\""));
  }
}

TEST(BpeTokenizerFiles, LaterDuplicateMergeRankCounts) {
  TempDir dir;
  const std::string vocab = "{\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"bc\": 4}";
  // "a b" first outranks "b c"; its repetition after "b c" makes "b c" win (as in HF and GPT-2).
  const BpeTokenizer once(dir.write("v.json", vocab), dir.write("m1.txt", "a b\nb c\n"));
  EXPECT_EQ(once.encode("abc"), (Ids{3, 2}));
  const BpeTokenizer twice(dir.path() / "v.json", dir.write("m2.txt", "a b\nb c\na b\n"));
  EXPECT_EQ(twice.encode("abc"), (Ids{0, 4}));
}

TEST(BpeTokenizerFiles, InputTextInMessagesStaysOnOneLine) {
  // A carriage return inside a merges line (only a trailing one ends the line).
  std::string msg = load_error("{\"a\": 0}", "a b\n \rl.2\n");
  EXPECT_THAT(msg, HasSubstr("line 2: expected two symbols separated by one space, got \" \\rl.2\""));
  EXPECT_EQ(msg.find('\r'), std::string::npos);
  // A token with a newline (JSON escape) in a vocab error.
  msg = load_error("{\"a\\nb\": \"x\"}", "a b\n");
  EXPECT_THAT(msg, HasSubstr("token \"a\\nb\" has id \"x\", expected an integer"));
  EXPECT_EQ(msg.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace flexgen
