// The prompt file of `flexgen batch`: good lines with their defaults, and every kind of bad line
// reported with its line number and what is wrong.
#include "engine/batch/prompt_file.h"

#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "support/fixture.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;

// The tiny fixture: vocabulary 767, 128 positions, start token 2.
const ModelSpec& spec() {
  static const ModelSpec s = ModelSpec::from_config_json(testing::tiny_opt_dir() / "config.json");
  return s;
}

const BpeTokenizer& tokenizer() {
  static const BpeTokenizer t = BpeTokenizer::from_dir(testing::tiny_opt_dir());
  return t;
}

PromptDefaults defaults() {
  PromptDefaults d;
  d.max_new_tokens = 9;
  d.sampling.temperature = 0.5f;  // greedy: normalised away
  d.sampling.seed = 4;
  return d;
}

PromptFile parse(const std::string& text, const BpeTokenizer* tok = &tokenizer(),
                 const PromptDefaults& d = defaults()) {
  std::istringstream in(text);
  return parse_prompt_lines(in, "in.jsonl", spec(), tok, d);
}

TEST(PromptFile, GoodLinesWithDefaultsAndOverrides) {
  const PromptFile f = parse(
      "{\"id\": \"a\", \"prompt\": \"Hello world\"}\n"
      "\n"
      "   \n"
      "{\"id\": 7, \"prompt\": [2, 5, 766], \"max_new_tokens\": 3, \"stop\": \"\\n\"}\n"
      "{\"id\": \"s\", \"prompt\": [0], \"do_sample\": true, \"top_k\": 5, \"top_p\": 0.5, \"seed\": 11, "
      "\"stop\": [\"x\", \"yz\"]}\n"
      "{\"id\": \"g\", \"prompt\": [3], \"do_sample\": false, \"temperature\": 2}");
  ASSERT_TRUE(f.bad.empty()) << f.bad[0].message;
  EXPECT_EQ(f.lines, 4);
  ASSERT_EQ(f.prompts.size(), 4u);

  const BatchPrompt& a = f.prompts[0];
  EXPECT_EQ(a.id, "a");
  EXPECT_EQ(a.key, "a");
  EXPECT_EQ(a.line, 1);
  std::vector<std::int32_t> expected = {2};  // the start token, then the text's tokens
  for (std::int32_t id : tokenizer().encode("Hello world")) expected.push_back(id);
  EXPECT_EQ(a.tokens, expected);
  EXPECT_EQ(a.max_new_tokens, 9);
  EXPECT_TRUE(a.stop.empty());
  EXPECT_EQ(a.sampling, SamplingConfig{});  // greedy, normalised

  const BatchPrompt& b = f.prompts[1];
  EXPECT_EQ(b.id, 7);
  EXPECT_EQ(b.key, "7");
  EXPECT_EQ(b.line, 4);
  EXPECT_EQ(b.tokens, (std::vector<std::int32_t>{2, 5, 766}));
  EXPECT_EQ(b.max_new_tokens, 3);
  EXPECT_EQ(b.stop, std::vector<std::string>{"\n"});

  const BatchPrompt& s = f.prompts[2];
  EXPECT_EQ(s.line, 5);
  EXPECT_TRUE(s.sampling.do_sample);
  EXPECT_EQ(s.sampling.temperature, 0.5f);  // the command's
  EXPECT_EQ(s.sampling.top_k, 5);
  EXPECT_EQ(s.sampling.top_p, 0.5f);
  EXPECT_EQ(s.sampling.seed, 11u);
  EXPECT_EQ(s.stop, (std::vector<std::string>{"x", "yz"}));

  EXPECT_EQ(f.prompts[3].sampling, SamplingConfig{});
}

TEST(PromptFile, TheCommandsSamplingIsTheDefault) {
  PromptDefaults d = defaults();
  d.sampling.do_sample = true;
  const PromptFile f = parse("{\"id\": 1, \"prompt\": [2]}\n{\"id\": 2, \"prompt\": [2], \"temperature\": 1.5}\n",
                             &tokenizer(), d);
  ASSERT_EQ(f.prompts.size(), 2u);
  EXPECT_EQ(f.prompts[0].sampling, d.sampling);
  EXPECT_EQ(f.prompts[1].sampling.temperature, 1.5f);
  EXPECT_EQ(f.prompts[1].sampling.seed, 4u);
}

// One bad line (line 2, after a good one); its message.
std::string bad_message(const std::string& line, const BpeTokenizer* tok = &tokenizer()) {
  const PromptFile f = parse("{\"id\": \"ok\", \"prompt\": [2]}\n" + line + "\n", tok);
  EXPECT_EQ(f.prompts.size(), 1u) << line;
  if (f.bad.size() != 1) {
    ADD_FAILURE() << "expected one bad line for " << line;
    return "";
  }
  EXPECT_EQ(f.bad[0].line, 2);
  EXPECT_THAT(f.bad[0].message, ::testing::StartsWith("in.jsonl:2: "));
  return f.bad[0].message;
}

TEST(PromptFile, EachBadLineIsReportedWithItsLineNumber) {
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": "), HasSubstr("malformed JSON"));
  EXPECT_THAT(bad_message("not json"), HasSubstr("malformed JSON"));
  EXPECT_THAT(bad_message("[1, 2]"), HasSubstr("expected a JSON object"));
  EXPECT_THAT(bad_message("{\"prompt\": [2]}"), HasSubstr("missing id"));
  EXPECT_THAT(bad_message("{\"id\": 1.5, \"prompt\": [2]}"), HasSubstr("id must be a string or an integer"));
  EXPECT_THAT(bad_message("{\"id\": null, \"prompt\": [2]}"), HasSubstr("id must be a string or an integer"));
  EXPECT_THAT(bad_message("{\"id\": \"ok\", \"prompt\": [3]}"), HasSubstr("duplicate id \"ok\" (first on line 1)"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"id\": 2, \"prompt\": [3]}"), HasSubstr("duplicate key 'id'"));
  EXPECT_THAT(bad_message("{\"id\": 1}"), HasSubstr("missing prompt"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": 5}"), HasSubstr("prompt must be a string or an array"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": []}"), HasSubstr("empty array"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2, 767]}"),
              HasSubstr("prompt token 1 (767) is not a token id in [0, 767)"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [-1]}"), HasSubstr("is not a token id"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2.5]}"), HasSubstr("is not a token id"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"max_new_tokens\": 0}"),
              HasSubstr("max_new_tokens must be at least 1 (got 0)"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"max_new_tokens\": \"4\"}"),
              HasSubstr("max_new_tokens must be an integer"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"stop\": 3}"), HasSubstr("stop must be a string or an array"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"stop\": [\"\"]}"), HasSubstr("non-empty strings"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"temperature\": 0}"),
              HasSubstr("temperature must be positive"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"top_p\": 1.5}"), HasSubstr("top_p must be in (0, 1]"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"top_k\": -1}"), HasSubstr("top_k must be 0 (off)"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"seed\": -3}"), HasSubstr("seed must not be negative"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"do_sample\": 1}"), HasSubstr("do_sample must be true or false"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"max_new_token\": 4}"),
              HasSubstr("unknown key 'max_new_token'; did you mean 'max_new_tokens'?"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"meta\": {}}"), HasSubstr("unknown key 'meta'"));
}

TEST(PromptFile, NumbersAtTheirLimits) {
  // An integer id must fit int64 (it is compared as its digits); a larger one is refused as such.
  EXPECT_THAT(bad_message("{\"id\": 9223372036854775808, \"prompt\": [2]}"),
              HasSubstr("id 9223372036854775808 is too large for an integer id (at most 9223372036854775807); give "
                        "it as a string"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"max_new_tokens\": 18446744073709551615}"),
              HasSubstr("max_new_tokens is too large (got 18446744073709551615)"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"top_k\": 2147483648}"),
              HasSubstr("top_k must be 0 (off) or from 1 to 1000000000 (got 2147483648)"));
  // Settings whose float would be 0 or infinite.
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"do_sample\": true, \"temperature\": 1e-50}"),
              HasSubstr("temperature must be positive, from 1e-30 to 1e30 (got 1e-50)"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"temperature\": 1e31}"),
              HasSubstr("temperature must be positive, from 1e-30 to 1e30"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"do_sample\": true, \"top_p\": 1e-300}"),
              HasSubstr("top_p must be in (0, 1], at least 1e-30 (got 1e-300)"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"seed\": 1.5}"), HasSubstr("seed must be an integer"));

  // Any 64-bit seed, as --seed takes; the largest integer id; the settings' bounds.
  const PromptFile f = parse(
      "{\"id\": 9223372036854775807, \"prompt\": [2], \"do_sample\": true, \"seed\": 18446744073709551615, "
      "\"temperature\": 1e30, \"top_p\": 1e-30, \"top_k\": 1000000000}\n"
      "{\"id\": -9223372036854775808, \"prompt\": [2], \"do_sample\": true, \"temperature\": 1e-30}\n");
  ASSERT_TRUE(f.bad.empty()) << f.bad[0].message;
  ASSERT_EQ(f.prompts.size(), 2u);
  EXPECT_EQ(f.prompts[0].key, "9223372036854775807");
  EXPECT_EQ(f.prompts[0].sampling.seed, 18446744073709551615u);
  EXPECT_EQ(f.prompts[0].sampling.top_k, 1000000000);
  EXPECT_GT(f.prompts[0].sampling.top_p, 0.0f);
  EXPECT_EQ(f.prompts[1].key, "-9223372036854775808");
  EXPECT_GT(f.prompts[1].sampling.temperature, 0.0f);
}

TEST(PromptFile, PromptsThatDoNotFitTheContextAreBad) {
  // 128 positions: a prompt of 128 tokens leaves none to generate; 120 + 9 (the default) is 129.
  auto ids = [](int n) {
    std::string s = "[2";
    for (int i = 1; i < n; ++i) s += ",5";
    return s + "]";
  };
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": " + ids(128) + "}"),
              HasSubstr("prompt of 128 tokens is longer than the model's context (128 positions"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": " + ids(120) + "}"),
              HasSubstr("prompt of 120 tokens + max_new_tokens 9 exceed the model's context of 128 positions"));
  // prompt + max_new_tokens beyond int64 (found by the prompt_file fuzz target: the sum overflowed,
  // wrapped to a negative number and the prompt was accepted).
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2, 5], \"max_new_tokens\": 9223372036854775807}"),
              HasSubstr("prompt of 2 tokens + max_new_tokens 9223372036854775807 exceed the model's context of 128 "
                        "positions"));
  const PromptFile fits = parse("{\"id\": 1, \"prompt\": " + ids(120) + ", \"max_new_tokens\": 8}");
  EXPECT_TRUE(fits.bad.empty());
  // A long text prompt: "a" x 200 tokenizes to many tokens.
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": \"" + std::string(400, 'a') + " " + std::string(400, 'b') + "\"}"),
              HasSubstr("longer than the model's context"));
}

TEST(PromptFile, WithoutATokenizerTextPromptsAndStopStringsAreBad) {
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": \"Hello\"}", nullptr), HasSubstr("a text prompt needs a tokenizer"));
  EXPECT_THAT(bad_message("{\"id\": 1, \"prompt\": [2], \"stop\": \"x\"}", nullptr),
              HasSubstr("stop strings need a tokenizer"));
  const PromptFile ok = parse("{\"id\": 1, \"prompt\": [2, 9]}", nullptr);
  ASSERT_EQ(ok.prompts.size(), 1u);
  EXPECT_EQ(ok.prompts[0].tokens, (std::vector<std::int32_t>{2, 9}));
}

TEST(PromptFile, IntegerAndStringIdsAreTheSameIdAndEveryLaterRepeatIsBad) {
  const PromptFile f = parse(
      "{\"id\": 7, \"prompt\": [2]}\n"
      "{\"id\": \"7\", \"prompt\": [2]}\n"
      "{\"id\": \"x\", \"prompt\": []}\n"   // bad, but its id counts
      "{\"id\": \"x\", \"prompt\": [2]}\n");
  ASSERT_EQ(f.prompts.size(), 1u);
  ASSERT_EQ(f.bad.size(), 3u);
  EXPECT_EQ(f.bad[0].line, 2);
  EXPECT_THAT(f.bad[0].message, HasSubstr("in.jsonl:2: duplicate id \"7\" (first on line 1)"));
  EXPECT_EQ(f.bad[1].line, 3);
  EXPECT_EQ(f.bad[2].line, 4);
  EXPECT_THAT(f.bad[2].message, HasSubstr("duplicate id \"x\" (first on line 3)"));
  EXPECT_EQ(prompt_id_key(nlohmann::json(-12)), "-12");
  EXPECT_THAT(testing::error_of([] { prompt_id_key(nlohmann::json(true)); }), HasSubstr("id must be a string"));
}

TEST(PromptFile, BadLinesRefuseTheRunUnlessSkipped) {
  const PromptFile mixed = parse("{\"id\": 1, \"prompt\": [2]}\n{\"id\": 2}\n{\"id\": 3, \"prompt\": [2, 5]}\n");
  ASSERT_EQ(mixed.bad.size(), 1u);
  EXPECT_EQ(testing::error_of([&] { prompts_to_run(mixed, "in.jsonl", false); }),
            "1 bad line(s) in in.jsonl (listed above); fix them, or pass --skip-bad to run the other lines");
  const std::vector<BatchPrompt>& run = prompts_to_run(mixed, "in.jsonl", true);
  ASSERT_EQ(run.size(), 2u);
  EXPECT_EQ(run[1].line, 3);
  EXPECT_EQ(prompts_to_run(parse("{\"id\": 1, \"prompt\": [2]}"), "in.jsonl", false).size(), 1u);

  const PromptFile all_bad = parse("\n{\"id\": 2}\n\n");
  EXPECT_EQ(testing::error_of([&] { prompts_to_run(all_bad, "in.jsonl", true); }),
            "in.jsonl: no prompts to run (1 non-blank lines, 1 bad)");
  EXPECT_EQ(testing::error_of([&] { prompts_to_run(parse(" \r\n"), "in.jsonl", false); }),
            "in.jsonl: no prompts to run (0 non-blank lines, 0 bad)");
}

TEST(PromptFile, AMissingFileIsAnError) {
  testing::TempDir dir;
  EXPECT_THAT(testing::error_of([&] { read_prompt_file(dir / "none.jsonl", spec(), nullptr, defaults()); }),
              HasSubstr("none.jsonl: cannot read file"));
  EXPECT_THAT(testing::error_of([&] { read_prompt_file(dir.path(), spec(), nullptr, defaults()); }),
              HasSubstr("is a directory"));
  const auto path = dir.write("p.jsonl", "{\"id\": 1, \"prompt\": [2]}\n{\"id\": 2}\n");
  const PromptFile f = read_prompt_file(path, spec(), nullptr, defaults());
  EXPECT_EQ(f.prompts.size(), 1u);
  ASSERT_EQ(f.bad.size(), 1u);
  EXPECT_THAT(f.bad[0].message, HasSubstr(path.string() + ":2: missing prompt"));
}

}  // namespace
}  // namespace flexgen
