// Finishing a completion: end token, stop strings (across tokens, earliest match), max_new_tokens,
// and the output line, with expected tokens and text written by hand.
#include "engine/batch/completion.h"

#include <sstream>

#include <gtest/gtest.h>

#include "support/fixture.h"

namespace flexgen {
namespace {

const BpeTokenizer& tokenizer() {
  static const BpeTokenizer t = BpeTokenizer::from_dir(testing::tiny_opt_dir());
  return t;
}

std::int32_t id(const char* token) {
  const std::int32_t i = tokenizer().token_id(token);
  EXPECT_GE(i, 0) << token;
  return i;
}

BatchPrompt prompt(std::int64_t max_new, std::vector<std::string> stop = {}) {
  BatchPrompt p;
  p.id = "q";
  p.key = prompt_id_key(p.id);
  p.tokens = {2, 5, 6};
  p.max_new_tokens = max_new;
  p.stop = std::move(stop);
  return p;
}

constexpr std::int32_t kEnd = 2;  // </s>

TEST(Completion, LengthWhenNothingStopsIt) {
  const std::vector<std::int32_t> gen = {id("A"), id("B"), id("C")};
  Completion c = finish_completion(gen, prompt(3), kEnd, &tokenizer());
  EXPECT_EQ(c.tokens, gen);
  EXPECT_EQ(c.text, "ABC");
  EXPECT_EQ(c.finish, FinishReason::kLength);
  c = finish_completion(gen, prompt(2), kEnd, &tokenizer());  // the block ran longer than asked
  EXPECT_EQ(c.tokens, (std::vector<std::int32_t>{id("A"), id("B")}));
  EXPECT_EQ(c.text, "AB");
  EXPECT_EQ(c.finish, FinishReason::kLength);
}

TEST(Completion, EndTokenIsKeptWithoutText) {
  Completion c = finish_completion({id("A"), kEnd, id("B")}, prompt(5), kEnd, &tokenizer());
  EXPECT_EQ(c.tokens, (std::vector<std::int32_t>{id("A"), kEnd}));
  EXPECT_EQ(c.text, "A");
  EXPECT_EQ(c.finish, FinishReason::kEndToken);
  // Past max_new_tokens it does not count; without an end token it is an ordinary token.
  c = finish_completion({id("A"), id("B"), kEnd}, prompt(2), kEnd, &tokenizer());
  EXPECT_EQ(c.finish, FinishReason::kLength);
  c = finish_completion({id("A"), kEnd, id("B")}, prompt(3), std::nullopt, &tokenizer());
  EXPECT_EQ(c.tokens.size(), 3u);
  EXPECT_EQ(c.text, "AB");
  EXPECT_EQ(c.finish, FinishReason::kLength);
}

TEST(Completion, StopStringsAcrossTokensCutTheTextBeforeThem) {
  const std::vector<std::int32_t> gen = {id("A"), id("B"), id("C"), id("D")};
  Completion c = finish_completion(gen, prompt(4, {"BC"}), kEnd, &tokenizer());
  EXPECT_EQ(c.tokens, (std::vector<std::int32_t>{id("A"), id("B"), id("C")}));
  EXPECT_EQ(c.text, "A");
  EXPECT_EQ(c.finish, FinishReason::kStop);
  // The first token after which any stop string appears decides; "B" appears before "CD" ends.
  c = finish_completion(gen, prompt(4, {"CD", "B"}), kEnd, &tokenizer());
  EXPECT_EQ(c.tokens.size(), 2u);
  EXPECT_EQ(c.text, "A");
  // Two stop strings completed by the same token: the text ends before the earlier one.
  c = finish_completion(gen, prompt(4, {"CD", "BCD"}), kEnd, &tokenizer());
  EXPECT_EQ(c.tokens.size(), 4u);
  EXPECT_EQ(c.text, "A");
  // A stop string at the very start leaves no text.
  c = finish_completion(gen, prompt(4, {"A"}), kEnd, &tokenizer());
  EXPECT_EQ(c.tokens.size(), 1u);
  EXPECT_EQ(c.text, "");
  EXPECT_EQ(c.finish, FinishReason::kStop);
  // Not found within max_new_tokens.
  c = finish_completion(gen, prompt(3, {"CD"}), kEnd, &tokenizer());
  EXPECT_EQ(c.finish, FinishReason::kLength);
  EXPECT_EQ(c.text, "ABC");
}

TEST(Completion, WithoutATokenizerThereIsNoText) {
  const Completion c = finish_completion({7, 8, kEnd, 9}, prompt(4), kEnd, nullptr);
  EXPECT_EQ(c.tokens, (std::vector<std::int32_t>{7, 8, kEnd}));
  EXPECT_FALSE(c.text.has_value());
  EXPECT_EQ(c.finish, FinishReason::kEndToken);
}

// Concatenation through a stream (GCC 12 warns falsely on chains of std::string +).
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

TEST(Completion, LineIsOneCompactJsonObject) {
  Completion c;
  c.tokens = {id("A"), kEnd};
  c.text = "A\n\"x\"";
  c.finish = FinishReason::kEndToken;
  EXPECT_EQ(completion_line(prompt(4), c),
            cat("{\"completion_tokens\":2,\"finish_reason\":\"end_token\",\"id\":\"q\",\"prompt_tokens\":3,"
                "\"text\":\"A\\n\\\"x\\\"\",\"tokens\":[", id("A"), ",2]}\n"));
  // A character cut in the middle becomes U+FFFD; no text is null; an integer id stays one.
  BatchPrompt p = prompt(4);
  p.id = 12;
  c.text = std::string("ok\xC3");
  c.finish = FinishReason::kStop;
  EXPECT_EQ(completion_line(p, c),
            cat("{\"completion_tokens\":2,\"finish_reason\":\"stop\",\"id\":12,\"prompt_tokens\":3,"
                "\"text\":\"ok\xEF\xBF\xBD\",\"tokens\":[", id("A"), ",2]}\n"));
  c.text.reset();
  c.finish = FinishReason::kLength;
  EXPECT_EQ(completion_line(p, c), cat("{\"completion_tokens\":2,\"finish_reason\":\"length\",\"id\":12,"
                                       "\"prompt_tokens\":3,\"text\":null,\"tokens\":[", id("A"), ",2]}\n"));
  EXPECT_STREQ(finish_reason_name(FinishReason::kStop), "stop");
}

}  // namespace
}  // namespace flexgen
