// The SentencePiece tokenizer wrapper: a LLaMA-style model (BPE, identity normalization, dummy
// prefix, byte fallback) trained here with the library's trainer; decoding worked out by hand
// from the pieces; which tokenizer a model directory gets. The ids against HF's LlamaTokenizer
// are checked by the tiny-llama fixture (TinyLlamaFixture.*).
#include "engine/text/sentencepiece_tokenizer.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "engine/text/tokenizer.h"
#include "support/test_util.h"

#ifdef FLEXGEN_HAVE_SENTENCEPIECE_TRAINER
#include <sentencepiece_trainer.h>
#endif

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;
using testing::TempDir;

#ifdef FLEXGEN_HAVE_SENTENCEPIECE_TRAINER

// Trains a small model like LLaMA's tokenizer.model into dir/tokenizer.model.
void train(const TempDir& dir) {
  std::string corpus;
  const char* lines[] = {
      "The quick brown fox jumps over the lazy dog.", "Hello world, hello there, hello again.",
      "Offloading moves weights between the GPU, the CPU and the disk.",
      "A large language model generates text one token at a time.", "Numbers 0 1 2 3 4 5 6 7 8 9 10 42.",
      "  two  spaces and\ttabs\nand new lines", "Caf\xC3\xA9 na\xC3\xAFve r\xC3\xA9sum\xC3\xA9"};
  for (int r = 0; r < 20; ++r) {
    for (const char* l : lines) corpus += std::string(l) + "\n";
  }
  const auto input = dir.write("corpus.txt", corpus);
  const std::string args = "--input=" + input.string() + " --model_prefix=" + (dir / "tokenizer").string() +
                           " --vocab_size=320 --model_type=bpe --byte_fallback=true --character_coverage=1.0"
                           " --normalization_rule_name=identity --remove_extra_whitespaces=false"
                           " --add_dummy_prefix=true --split_digits=true --allow_whitespace_only_pieces=true"
                           " --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --hard_vocab_limit=false"
                           " --minloglevel=2";
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  ASSERT_TRUE(status.ok()) << status.ToString();
}

class SentencePieceTest : public ::testing::Test {
 protected:
  void SetUp() override { train(dir_); }
  TempDir dir_;
};

TEST_F(SentencePieceTest, EncodesAndDecodesWithTheDummyPrefix) {
  const SentencePieceTokenizer tok = SentencePieceTokenizer::from_file(dir_ / "tokenizer.model");
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_GT(tok.vocab_size(), 259);  // 3 specials, 256 bytes, merges
  for (const std::string text : {"Hello world", "The quick brown fox", "  two  spaces\tand a tab", "line\nbreak",
                                 "3.14159", "Caf\xC3\xA9"}) {
    const auto ids = tok.encode(text);
    ASSERT_FALSE(ids.empty()) << text;
    // The pieces carry the dummy prefix "\u2581": decode keeps it as a leading space.
    EXPECT_EQ(tok.decode(ids), " " + text) << text;
    // Id by id gives the same bytes.
    std::string joined;
    for (std::int32_t id : ids) joined += tok.decode({id});
    EXPECT_EQ(joined, " " + text);
  }
  EXPECT_TRUE(tok.encode("").empty());
}

TEST_F(SentencePieceTest, UnseenCharactersFallBackToBytes) {
  const SentencePieceTokenizer tok = SentencePieceTokenizer::from_file(dir_ / "tokenizer.model");
  const std::string text = "\xE2\x88\x9E \xF0\x9F\x9A\x80";  // U+221E, U+1F680: not in the corpus
  const auto ids = tok.encode(text);
  int bytes = 0;
  for (std::int32_t id : ids) {
    const std::string piece = tok.piece(id);
    if (piece.rfind("<0x", 0) == 0) ++bytes;
  }
  EXPECT_EQ(bytes, 7);  // 3 + 4 UTF-8 bytes
  EXPECT_EQ(tok.decode(ids), " " + text);
  // A multi-byte character cut after its first byte piece decodes to that raw byte.
  std::vector<std::int32_t> first_byte;
  for (std::int32_t id : ids) {
    if (tok.piece(id) == "<0xE2>") first_byte.push_back(id);
  }
  ASSERT_EQ(first_byte.size(), 1u);
  EXPECT_EQ(tok.decode(first_byte), "\xE2");
}

TEST_F(SentencePieceTest, SpecialTokens) {
  const SentencePieceTokenizer tok = SentencePieceTokenizer::from_file(dir_ / "tokenizer.model");
  const auto hello = tok.encode("Hello");
  std::vector<std::int32_t> ids = {1};
  ids.insert(ids.end(), hello.begin(), hello.end());
  ids.push_back(2);
  EXPECT_EQ(tok.decode(ids), " Hello");
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/false), "<s> Hello</s>");
  EXPECT_THAT(error_of([&] { tok.decode({static_cast<std::int32_t>(tok.vocab_size())}); }),
              HasSubstr("outside the vocabulary"));
  EXPECT_THAT(error_of([&] { tok.encode("bad \xFF byte"); }), HasSubstr("not valid UTF-8 (byte offset 4)"));
}

TEST_F(SentencePieceTest, ModelDirectoryTokenizer) {
  // tokenizer.model, and tokenizer_config.json's add_bos_token.
  ModelTokenizer t = load_model_tokenizer(dir_.path());
  ASSERT_NE(t.tokenizer, nullptr);
  EXPECT_TRUE(t.tokenizer->add_bos());
  EXPECT_EQ(t.tokenizer->decode(t.tokenizer->encode("Hello world")), " Hello world");
  dir_.write("tokenizer_config.json", R"({"add_bos_token": false, "tokenizer_class": "LlamaTokenizer"})");
  t = load_model_tokenizer(dir_.path());
  ASSERT_NE(t.tokenizer, nullptr);
  EXPECT_FALSE(t.tokenizer->add_bos());
  dir_.write("tokenizer_config.json", R"({"add_bos_token": "yes"})");
  EXPECT_THAT(error_of([&] { load_model_tokenizer(dir_.path()); }),
              HasSubstr("field 'add_bos_token': expected true or false"));
}

#endif  // FLEXGEN_HAVE_SENTENCEPIECE_TRAINER

TEST(ModelTokenizer, SaysWhyThereIsNone) {
  TempDir dir;
  ModelTokenizer t = load_model_tokenizer(dir.path());
  EXPECT_EQ(t.tokenizer, nullptr);
  EXPECT_THAT(t.unavailable, HasSubstr("no tokenizer files (vocab.json + merges.txt, or tokenizer.model)"));
  dir.write("tokenizer.json", "{}");
  t = load_model_tokenizer(dir.path());
  EXPECT_EQ(t.tokenizer, nullptr);
  EXPECT_THAT(t.unavailable, HasSubstr("only tokenizer.json (Llama 3 style) is present"));
  if (sentencepiece_available()) {
    dir.write("tokenizer.model", "not a model");
    EXPECT_THAT(error_of([&] { load_model_tokenizer(dir.path()); }), HasSubstr("not a SentencePiece model"));
  }
}

}  // namespace
}  // namespace flexgen
