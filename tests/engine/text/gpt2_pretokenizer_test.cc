#include "engine/text/gpt2_pretokenizer.h"

#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"

namespace flexgen {
namespace {

using Pieces = std::vector<std::string>;
using ::testing::HasSubstr;

// Expected splits worked out by hand from the pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
TEST(Gpt2Pretokenize, Words) {
  EXPECT_EQ(gpt2_pretokenize(""), Pieces{});
  EXPECT_EQ(gpt2_pretokenize("the cat"), (Pieces{"the", " cat"}));
  EXPECT_EQ(gpt2_pretokenize("hello, world!"), (Pieces{"hello", ",", " world", "!"}));
  EXPECT_EQ(gpt2_pretokenize("Hello World"), (Pieces{"Hello", " World"}));
}

TEST(Gpt2Pretokenize, WhiteSpaceRuns) {
  EXPECT_EQ(gpt2_pretokenize("a  b"), (Pieces{"a", " ", " b"}));
  EXPECT_EQ(gpt2_pretokenize("a \n b"), (Pieces{"a", " \n", " b"}));
  EXPECT_EQ(gpt2_pretokenize("a  "), (Pieces{"a", "  "}));
  EXPECT_EQ(gpt2_pretokenize("x  \n"), (Pieces{"x", "  \n"}));
  EXPECT_EQ(gpt2_pretokenize(" "), (Pieces{" "}));
  EXPECT_EQ(gpt2_pretokenize("   "), (Pieces{"   "}));
  EXPECT_EQ(gpt2_pretokenize("   a"), (Pieces{"  ", " a"}));
  EXPECT_EQ(gpt2_pretokenize("  two  spaces"), (Pieces{" ", " two", " ", " spaces"}));
  EXPECT_EQ(gpt2_pretokenize("tab\there"), (Pieces{"tab", "\t", "here"}));
  EXPECT_EQ(gpt2_pretokenize("\t\tx"), (Pieces{"\t", "\t", "x"}));
  EXPECT_EQ(gpt2_pretokenize("line\nbreak\n\n"), (Pieces{"line", "\n", "break", "\n\n"}));
  EXPECT_EQ(gpt2_pretokenize("a\r\nb"), (Pieces{"a", "\r", "\n", "b"}));
  EXPECT_EQ(gpt2_pretokenize("a\r\n\r\nb"), (Pieces{"a", "\r\n\r", "\n", "b"}));
  EXPECT_EQ(gpt2_pretokenize("a\r\n"), (Pieces{"a", "\r\n"}));
  EXPECT_EQ(gpt2_pretokenize("a\n\n b"), (Pieces{"a", "\n\n", " b"}));
  EXPECT_EQ(gpt2_pretokenize("a \t b"), (Pieces{"a", " \t", " b"}));
  EXPECT_EQ(gpt2_pretokenize("a\t !"), (Pieces{"a", "\t", " !"}));
}

TEST(Gpt2Pretokenize, UnicodeWhiteSpaceIsNotAPrefixSpace) {
  // Only U+0020 may lead a word; other White_Space characters stand alone.
  EXPECT_EQ(gpt2_pretokenize("x\u00A0y"), (Pieces{"x", "\u00A0", "y"}));
  EXPECT_EQ(gpt2_pretokenize("x\u3000\u3000y"), (Pieces{"x", "\u3000", "\u3000", "y"}));
  EXPECT_EQ(gpt2_pretokenize("x \u3000 y"), (Pieces{"x", " \u3000", " y"}));
  EXPECT_EQ(gpt2_pretokenize("x\u2028y"), (Pieces{"x", "\u2028", "y"}));
  // U+200B ZERO WIDTH SPACE and U+001F are not White_Space: they are symbols.
  EXPECT_EQ(gpt2_pretokenize("a\u200Bb"), (Pieces{"a", "\u200B", "b"}));
  EXPECT_EQ(gpt2_pretokenize("a \x1F" "b"), (Pieces{"a", " \x1F", "b"}));
}

TEST(Gpt2Pretokenize, NumbersAndLetters) {
  EXPECT_EQ(gpt2_pretokenize("abc123"), (Pieces{"abc", "123"}));
  EXPECT_EQ(gpt2_pretokenize("123 4567"), (Pieces{"123", " 4567"}));
  EXPECT_EQ(gpt2_pretokenize("3.14"), (Pieces{"3", ".", "14"}));
  EXPECT_EQ(gpt2_pretokenize("$100"), (Pieces{"$", "100"}));
  EXPECT_EQ(gpt2_pretokenize(" $100"), (Pieces{" $", "100"}));
  EXPECT_EQ(gpt2_pretokenize("1\u00BD x\u00B2"), (Pieces{"1\u00BD", " x", "\u00B2"}));  // ½ ² are N
  EXPECT_EQ(gpt2_pretokenize("abc\u216B"), (Pieces{"abc", "\u216B"}));  // Ⅻ is Nl
  EXPECT_EQ(gpt2_pretokenize(" \u0663\u0664"), (Pieces{" \u0663\u0664"}));  // Arabic-Indic digits
}

TEST(Gpt2Pretokenize, Contractions) {
  EXPECT_EQ(gpt2_pretokenize("don't"), (Pieces{"don", "'t"}));
  EXPECT_EQ(gpt2_pretokenize("DON'T"), (Pieces{"DON", "'", "T"}));  // case-sensitive
  EXPECT_EQ(gpt2_pretokenize("it's I'll"), (Pieces{"it", "'s", " I", "'ll"}));
  EXPECT_EQ(gpt2_pretokenize("we're they've I'm you'll he'd"),
            (Pieces{"we", "'re", " they", "'ve", " I", "'m", " you", "'ll", " he", "'d"}));
  EXPECT_EQ(gpt2_pretokenize("'s's"), (Pieces{"'s", "'s"}));
  EXPECT_EQ(gpt2_pretokenize("'sa"), (Pieces{"'s", "a"}));
  EXPECT_EQ(gpt2_pretokenize("'l"), (Pieces{"'", "l"}));
  EXPECT_EQ(gpt2_pretokenize("'"), (Pieces{"'"}));
  EXPECT_EQ(gpt2_pretokenize("'r"), (Pieces{"'", "r"}));
  EXPECT_EQ(gpt2_pretokenize("!!'s"), (Pieces{"!!'", "s"}));  // the symbol run takes the quote
  EXPECT_EQ(gpt2_pretokenize(" 's"), (Pieces{" '", "s"}));
  EXPECT_EQ(gpt2_pretokenize("''s"), (Pieces{"''", "s"}));
}

TEST(Gpt2Pretokenize, UnicodeLettersAndSymbols) {
  EXPECT_EQ(gpt2_pretokenize("h\u00E9llo w\u00F6rld"), (Pieces{"h\u00E9llo", " w\u00F6rld"}));
  EXPECT_EQ(gpt2_pretokenize("\u65E5\u672C\u8A9E"), (Pieces{"\u65E5\u672C\u8A9E"}));
  EXPECT_EQ(gpt2_pretokenize("\u65E5\u672C\u8A9E\u3002\u30C6\u30AD"),
            (Pieces{"\u65E5\u672C\u8A9E", "\u3002", "\u30C6\u30AD"}));
  EXPECT_EQ(gpt2_pretokenize("emoji \U0001F600!"), (Pieces{"emoji", " \U0001F600!"}));
  EXPECT_EQ(gpt2_pretokenize("\U0001F600\U0001F600 ok"), (Pieces{"\U0001F600\U0001F600", " ok"}));
  // A combining mark (Mn) is neither a letter nor a number.
  EXPECT_EQ(gpt2_pretokenize("cafe\u0301 ok"), (Pieces{"cafe", "\u0301", " ok"}));
  EXPECT_EQ(gpt2_pretokenize("\u00D7x"), (Pieces{"\u00D7", "x"}));  // × is Sm
}

TEST(Gpt2Pretokenize, InvalidUtf8Throws) {
  for (const std::string& bad : {std::string("ab\xFF"), std::string("ab\xC3"),
                                 std::string("ab\xC0\x80"), std::string("ab\xED\xA0\x80")}) {
    try {
      gpt2_pretokenize(bad);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("invalid UTF-8 at byte offset 2"));
    }
  }
}

// Property on random text: the pieces are non-empty and concatenate to the input.
TEST(Gpt2Pretokenize, PiecesCoverRandomText) {
  const char* atoms[] = {"a", "Z", " ", "  ", "\t", "\n", "\r\n", "'", "'s", "'ll", "7", "!",
                         "\u00E9", "\u0301", "\u3000", "\u00A0", "\u65E5", "\U0001F600", "\u00BD"};
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::size_t> pick(0, std::size(atoms) - 1);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    for (int i = 0; i < 30; ++i) text += atoms[pick(rng)];
    const Pieces pieces = gpt2_pretokenize(text);
    std::string joined;
    for (const std::string& piece : pieces) {
      EXPECT_FALSE(piece.empty());
      joined += piece;
    }
    EXPECT_EQ(joined, text);
  }
}

}  // namespace
}  // namespace flexgen
