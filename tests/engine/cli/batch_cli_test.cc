// `flexgen batch` end to end on the tiny fixture model: every greedy completion is the one
// `flexgen generate` gives for that prompt alone; a run killed part-way (SIGKILL) and restarted,
// or restarted from an output cut inside a block and inside a line, ends with exactly the lines
// of an uninterrupted run; bad input lines are refused or skipped with their line numbers.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/text/bpe_tokenizer.h"
#include "support/fixture.h"
#include "support/run_command.h"
#include "support/test_util.h"

extern char** environ;

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::run_flexgen;
using testing::shell_quote;
using testing::TempDir;
using testing::tiny_opt_dir;

std::string tiny() { return "--model " + shell_quote(tiny_opt_dir().string()); }
std::string q(const std::filesystem::path& p) { return shell_quote(p.string()); }

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::multiset<std::string> line_set(const std::filesystem::path& p) {
  const auto v = lines_of(slurp(p));
  return {v.begin(), v.end()};
}

// Completion lines by id (as text).
std::map<std::string, nlohmann::json> by_id(const std::filesystem::path& p) {
  std::map<std::string, nlohmann::json> out;
  for (const std::string& line : lines_of(slurp(p))) {
    const auto j = nlohmann::json::parse(line);
    const std::string key = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
    EXPECT_TRUE(out.emplace(key, j).second) << "id twice: " << key;
  }
  return out;
}

// Prompt texts of 0 to 11 words, seeded.
std::vector<std::string> prompt_texts(int count) {
  static const char* kWords[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Hello", "world",
                                 "once", "upon", "a", "time", "there", "was", "little", "cat", "who", "sat",
                                 "on", "mat", "and", "said", "nothing", "at", "all", "today", "rain", "sun"};
  std::mt19937 rng(2024);
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    const int n = static_cast<int>(rng() % 12);
    std::string t;
    for (int w = 0; w < n; ++w) {
      if (w) t.push_back(' ');
      t.append(kWords[rng() % std::size(kWords)]);
    }
    if (i % 7 == 3) t.append("\n\"quoted\"");
    out.push_back(t);
  }
  return out;
}

constexpr int kGenLen = 16;

// Text as it reads back from JSON output: bytes that are not valid UTF-8 (a character cut by the
// end of the completion; the tiny model's output is byte soup) replaced by U+FFFD.
std::string as_json_text(const std::string& raw) {
  return nlohmann::json::parse(nlohmann::json(raw).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
      .get<std::string>();
}

TEST(BatchCli, EveryGreedyCompletionIsWhatGenerateGivesForThePromptAlone) {
  // 40 texts, each run alone through `flexgen generate`; 200 prompts built from them: the text
  // (default max_new_tokens, or given), its token ids as generate reports them, and a shorter
  // max_new_tokens. Greedy decoding is causal, so generate --gen-len n gives the first n tokens of
  // --gen-len 16 (checked below for a few n).
  const auto texts = prompt_texts(40);
  std::vector<nlohmann::json> alone;
  for (const std::string& t : texts) {
    const auto r = run_flexgen("generate " + tiny() + " --prompt " + shell_quote(t) + " --gen-len 16 --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    alone.push_back(nlohmann::json::parse(r.out)["sequences"][0]);
  }
  struct Expected {
    std::vector<int> tokens;
    std::string text;
    std::string finish;
    std::size_t prompt_tokens;
  };
  const BpeTokenizer tok = BpeTokenizer::from_dir(tiny_opt_dir());
  std::map<std::string, Expected> expected;
  std::vector<nlohmann::json> lines;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto full = alone[i]["output_tokens"].get<std::vector<int>>();
    const auto prompt_tokens = alone[i]["prompt_tokens"].get<std::vector<int>>();
    const std::string id = "t" + std::to_string(i);
    auto expect = [&](const std::string& key, std::size_t n) {
      Expected e;
      e.tokens.assign(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(std::min(n, full.size())));
      e.text = as_json_text(tok.decode(std::vector<std::int32_t>(e.tokens.begin(), e.tokens.end())));
      e.finish = !e.tokens.empty() && e.tokens.back() == 2 ? "end_token" : "length";
      e.prompt_tokens = prompt_tokens.size();
      if (n == full.size() || e.finish == "end_token") {
        EXPECT_EQ(e.text, alone[i]["output"].get<std::string>());
      }
      expected[key] = e;
    };
    const std::size_t short_n = 1 + i % 15;
    lines.push_back({{"id", id + "a"}, {"prompt", texts[i]}});
    expect(id + "a", kGenLen);
    lines.push_back({{"id", id + "b"}, {"prompt", texts[i]}, {"max_new_tokens", kGenLen}});
    expect(id + "b", kGenLen);
    lines.push_back({{"id", id + "c"}, {"prompt", prompt_tokens}});
    expect(id + "c", kGenLen);
    lines.push_back({{"id", id + "d"}, {"prompt", texts[i]}, {"max_new_tokens", short_n}});
    expect(id + "d", short_n);
    lines.push_back({{"id", static_cast<int>(1000 + i)}, {"prompt", prompt_tokens}, {"max_new_tokens", short_n}});
    expect(std::to_string(1000 + i), short_n);
  }
  // generate --gen-len n is the prefix of --gen-len 16.
  for (std::size_t i : {0u, 5u, 13u}) {
    const auto r = run_flexgen("generate " + tiny() + " --prompt " + shell_quote(texts[i]) + " --gen-len " +
                               std::to_string(1 + i % 15) + " --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["sequences"][0]["output_tokens"].get<std::vector<int>>(),
              expected["t" + std::to_string(i) + "d"].tokens);
  }
  std::shuffle(lines.begin(), lines.end(), std::mt19937(7));
  TempDir dir;
  std::string input;
  for (const auto& l : lines) input += l.dump() + "\n";
  const auto in = dir.write("prompts.jsonl", input);
  ASSERT_GE(lines.size(), 200u);

  const auto r = run_flexgen("batch " + tiny() + " --input " + q(in) + " --output " + q(dir / "out.jsonl") +
                             " --gen-len 16 --gpu-batch-size 8 --num-gpu-batches 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto got = by_id(dir / "out.jsonl");
  ASSERT_EQ(got.size(), expected.size());
  for (const auto& [key, e] : expected) {
    ASSERT_TRUE(got.count(key)) << key;
    const nlohmann::json& g = got.at(key);
    EXPECT_EQ(g["tokens"].get<std::vector<int>>(), e.tokens) << key;
    EXPECT_EQ(g["text"].get<std::string>(), e.text) << key;
    EXPECT_EQ(g["finish_reason"], e.finish) << key;
    EXPECT_EQ(g["prompt_tokens"], e.prompt_tokens) << key;
    EXPECT_EQ(g["completion_tokens"], e.tokens.size()) << key;
  }
  // The summary: 200 prompts in 13 blocks of 16 (the classes are all greedy).
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["prompts"], 200);
  EXPECT_EQ(j["written"], 200);
  EXPECT_EQ(j["blocks_run"], 13);
  EXPECT_EQ(j["block_size"], 16);
  EXPECT_GT(j["padding_waste"].get<double>(), 0.0);
  EXPECT_LT(j["padding_waste"].get<double>(), 0.6);
  EXPECT_GT(j["peak_memory"]["gpu_bytes"].get<double>(), 0.0);
  EXPECT_THAT(r.err, HasSubstr("200/200 prompts"));
  EXPECT_THAT(r.err, HasSubstr("padding waste"));
}

// ---- interruption and resume ------------------------------------------------------------------

// 240 prompts of token ids, lengths 1 to 40, mixed max_new_tokens, stop strings and sampled ones.
std::string resume_input() {
  std::mt19937 rng(99);
  std::string out;
  for (int i = 0; i < 240; ++i) {
    const int len = 1 + static_cast<int>(rng() % 40);
    nlohmann::json ids = nlohmann::json::array({2});
    for (int k = 1; k < len; ++k) ids.push_back(4 + rng() % 700);
    nlohmann::json line = {{"id", std::to_string(i).insert(0, 1, 'r')}, {"prompt", ids}};
    if (i % 3 == 0) line["max_new_tokens"] = 1 + static_cast<int>(rng() % 12);
    if (i % 5 == 0) line["stop"] = nlohmann::json::array({"\xC3\xA9", "at"});
    if (i % 4 == 1) {
      line["do_sample"] = true;
      line["seed"] = i % 8;
      line["top_k"] = 20;
    }
    out += line.dump() + "\n";
  }
  return out;
}

constexpr const char* kResumeFlags = " --gen-len 12 --gpu-batch-size 2 --num-gpu-batches 2";

class BatchResume : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    input_ = dir_->write("prompts.jsonl", resume_input());
    const auto r = run_flexgen("batch " + tiny() + " --input " + q(input_) + " --output " + q(reference()) +
                               kResumeFlags);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::filesystem::path reference() { return *dir_ / "reference.jsonl"; }
  static std::string args(const std::filesystem::path& out) {
    return "batch " + tiny() + " --input " + q(input_) + " --output " + q(out) + kResumeFlags;
  }

  static TempDir* dir_;
  static std::filesystem::path input_;
};
TempDir* BatchResume::dir_ = nullptr;
std::filesystem::path BatchResume::input_;

TEST_F(BatchResume, TheReferenceRunCoversEveryPromptAndEveryFinishReason) {
  const auto ref = by_id(reference());
  EXPECT_EQ(ref.size(), 240u);
  std::set<std::string> reasons;
  for (const auto& [id, j] : ref) reasons.insert(j["finish_reason"].get<std::string>());
  EXPECT_TRUE(reasons.count("length"));
  EXPECT_TRUE(reasons.count("stop"));
  // A second run with the same output has nothing to do and leaves the file as it is.
  const std::string before = slurp(reference());
  const auto r = run_flexgen(args(reference()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("240 already in"));
  EXPECT_EQ(slurp(reference()), before);
}

// Starts the batch in the background, waits until it has written at least `min_lines` lines,
// and kills it with SIGKILL. Returns whether it was killed before finishing.
bool run_and_kill(const std::string& batch_args, const std::filesystem::path& out, std::size_t min_lines) {
  const std::string cmd = "exec " + std::string(FLEXGEN_CLI_PATH) + " " + batch_args + " >/dev/null 2>&1";
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  pid_t pid = 0;
  if (posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char* const*>(argv), environ) != 0) {
    ADD_FAILURE() << "cannot start " << cmd;
    return false;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid, &status, WNOHANG) == pid) return false;  // finished before the kill
    std::error_code ec;
    const auto size = std::filesystem::file_size(out, ec);
    if (!ec && size > 0 && lines_of(slurp(out)).size() >= min_lines) break;
    std::this_thread::sleep_for(std::chrono::microseconds(300));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

TEST_F(BatchResume, KilledPartWayAndRestartedGivesTheLinesOfAnUninterruptedRun) {
  TempDir dir;
  const auto out = dir / "out.jsonl";
  // Kill it twice, at different points, then let it finish.
  ASSERT_TRUE(run_and_kill(args(out), out, 1)) << "the run finished before it could be killed";
  const std::size_t after_first = lines_of(slurp(out)).size();
  EXPECT_LT(after_first, 240u);
  ASSERT_TRUE(run_and_kill(args(out), out, after_first + 20)) << "the run finished before it could be killed";
  EXPECT_LT(lines_of(slurp(out)).size(), 240u);
  const auto r = run_flexgen(args(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(line_set(out), line_set(reference()));
  EXPECT_EQ(by_id(out).size(), 240u);  // no id twice
}

TEST_F(BatchResume, RestartedFromAnOutputCutInsideABlockAndInsideALine) {
  const auto ref_lines = lines_of(slurp(reference()));
  TempDir dir;
  const auto out = dir / "out.jsonl";
  // 37 whole lines (blocks hold 4: the cut is inside a block), then half of the next line.
  std::string head;
  for (std::size_t i = 0; i < 37; ++i) head += ref_lines[i] + "\n";
  const std::string partial = ref_lines[37].substr(0, ref_lines[37].size() / 2);
  dir.write("out.jsonl", head + partial);
  const auto r = run_flexgen(args(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("dropped an unfinished last line (" + std::to_string(partial.size()) + " bytes)"));
  EXPECT_THAT(r.err, HasSubstr("37 already in"));
  const std::string text = slurp(out);
  EXPECT_EQ(text.substr(0, head.size()), head);  // what was there stays, nothing is written twice
  EXPECT_EQ(line_set(out), line_set(reference()));
}

// ---- bad input -------------------------------------------------------------------------------

std::string bad_input() {
  return "{\"id\": \"a\", \"prompt\": \"Hello\"}\n"
         "{\"id\": \"b\", \"prompt\": \"Hello\"\n"      // line 2: not JSON
         "{\"prompt\": \"Hello\"}\n"                     // line 3: no id
         "{\"id\": \"a\", \"prompt\": \"again\"}\n"      // line 4: duplicate
         "{\"id\": \"c\", \"prompt\": [2, 5], \"max_new_tokens\": 127}\n"  // line 5: past the context
         "{\"id\": \"d\", \"prompt\": [2, 5, 6]}\n";
}

TEST(BatchCli, BadLinesAreRefusedWithTheirLineNumbers) {
  TempDir dir;
  const auto in = dir.write("in.jsonl", bad_input());
  const auto r = run_flexgen("batch " + tiny() + " --input " + q(in) + " --output " + q(dir / "out.jsonl"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  const auto err = lines_of(r.err);
  ASSERT_EQ(err.size(), 5u) << r.err;
  EXPECT_THAT(err[0], HasSubstr("in.jsonl:2: malformed JSON"));
  EXPECT_THAT(err[1], HasSubstr("in.jsonl:3: missing id"));
  EXPECT_THAT(err[2], HasSubstr("in.jsonl:4: duplicate id \"a\" (first on line 1)"));
  EXPECT_THAT(err[3], HasSubstr("in.jsonl:5: prompt of 2 tokens + max_new_tokens 127 exceed the model's context of 128"));
  EXPECT_THAT(err[4], HasSubstr("error: 4 bad line(s) in"));
  EXPECT_THAT(err[4], HasSubstr("--skip-bad"));
  EXPECT_FALSE(std::filesystem::exists(dir / "out.jsonl"));
}

TEST(BatchCli, SkipBadRunsTheOtherLines) {
  TempDir dir;
  const auto in = dir.write("in.jsonl", bad_input());
  const auto r = run_flexgen("batch " + tiny() + " --input " + q(in) + " --output " + q(dir / "out.jsonl") +
                             " --skip-bad --gen-len 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("skipped: " + in.string() + ":2: malformed JSON"));
  EXPECT_THAT(r.err, HasSubstr("4 bad lines skipped"));
  const auto got = by_id(dir / "out.jsonl");
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got.at("a")["prompt_tokens"], 2);  // </s> Hello
  EXPECT_EQ(got.at("d")["tokens"].size(), 3u);
}

TEST(BatchCli, SearchChoosesAPolicyThatGivesTheSameGreedyLines) {
  TempDir dir;
  std::string input;
  const auto texts = prompt_texts(24);
  for (std::size_t i = 0; i < texts.size(); ++i) {
    input.append(nlohmann::json{{"id", i}, {"prompt", texts[i]}}.dump()).push_back('\n');
  }
  const auto in = dir.write("in.jsonl", input);
  const std::string base = "batch " + tiny() + " --input " + q(in) + " --gen-len 6";
  const auto fixed = run_flexgen(base + " --output " + q(dir / "fixed.jsonl") + " --gpu-batch-size 5");
  ASSERT_EQ(fixed.exit_code, 0) << fixed.err;
  const auto hw = std::filesystem::path(FLEXGEN_SOURCE_DIR) / "experiments/hardware/t4-paper.json";
  const auto searched = run_flexgen(base + " --output " + q(dir / "searched.jsonl") + " --search --hardware " + q(hw));
  ASSERT_EQ(searched.exit_code, 0) << searched.err;
  EXPECT_THAT(searched.err, HasSubstr("policy --gpu-batch-size"));
  EXPECT_EQ(line_set(dir / "searched.jsonl"), line_set(dir / "fixed.jsonl"));
}

void expect_clean_failure(const std::string& args, const std::string& needle) {
  const auto r = run_flexgen(args);
  EXPECT_NE(r.exit_code, 0) << args;
  EXPECT_LT(r.exit_code, 128) << "crashed: " << args;
  EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
  EXPECT_THAT(r.err, HasSubstr(needle)) << args;
  EXPECT_EQ(r.out, "") << args;
}

TEST(BatchCli, CommandLineErrors) {
  TempDir dir;
  const auto in = dir.write("in.jsonl", "{\"id\": 1, \"prompt\": [2]}\n");
  const std::string io = " --input " + q(in) + " --output " + q(dir / "out.jsonl");
  expect_clean_failure("batch " + tiny() + " --output " + q(dir / "o.jsonl"), "input");
  expect_clean_failure("batch " + tiny() + " --input " + q(dir / "none.jsonl") + " --output " + q(dir / "o.jsonl"),
                       "none.jsonl: cannot read file");
  expect_clean_failure("batch " + tiny() + io + " --prompt-len 5", "--prompt-len does not apply");
  expect_clean_failure("batch " + tiny() + io + " --search", "--search needs --hardware");
  expect_clean_failure("batch " + tiny() + io + " --gen-len 0", "--gen-len must be at least 1");
  const auto empty = dir.write("empty.jsonl", "\n\n");
  expect_clean_failure("batch " + tiny() + " --input " + q(empty) + " --output " + q(dir / "o.jsonl"),
                       "no prompts to run");
  const auto foreign = dir.write("foreign.jsonl", "some notes\n");
  expect_clean_failure("batch " + tiny() + " --input " + q(in) + " --output " + q(foreign), "foreign.jsonl:1");
  EXPECT_EQ(slurp(foreign), "some notes\n");
}

TEST(BatchCli, HelpDescribesTheFormat) {
  const auto r = run_flexgen("batch --help");
  ASSERT_EQ(r.exit_code, 0);
  for (const char* s : {"--input", "--output", "--skip-bad", "--search", "--hardware", "--gpu-batch-size",
                        "max_new_tokens", "finish_reason"}) {
    EXPECT_THAT(r.out, HasSubstr(s));
  }
  EXPECT_THAT(run_flexgen("--help").out, HasSubstr("batch"));
}

}  // namespace
}  // namespace flexgen
