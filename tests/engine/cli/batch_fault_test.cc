// `flexgen batch` under injected faults (engine/runtime/fault_injection.h, FLEXGEN_FAULT): a fault
// that strikes part-way through a run, after some blocks are written, ends it with one clear
// error, no hang and an empty offload directory, and loses nothing already written: every line in
// the output is whole and is the line an uninterrupted run writes for that id, and a restart
// completes the file to exactly the uninterrupted run's lines. Needs the fault points (`test`
// and `asan` presets); skipped in other builds.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/runtime/fault_injection.h"
#include "support/faults.h"
#include "support/fixture.h"
#include "support/run_command.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::shell_quote;
using testing::TempDir;

constexpr int kPrompts = 30;

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

std::multiset<std::string> line_set(const std::string& text) {
  const auto v = lines_of(text);
  return {v.begin(), v.end()};
}

// 30 prompts of token ids, lengths 1 to 24, some with fewer new tokens, some sampled: blocks of 4
// in two sampling classes, 9 blocks.
std::string input_text() {
  std::mt19937 rng(31);
  std::string out;
  for (int i = 0; i < kPrompts; ++i) {
    nlohmann::json ids = nlohmann::json::array({2});
    const int len = 1 + static_cast<int>(rng() % 24);
    for (int k = 1; k < len; ++k) ids.push_back(4 + rng() % 700);
    nlohmann::json line = {{"id", std::to_string(i).insert(0, 1, 'p')}, {"prompt", ids}};  // not "p" + ...: gcc 12 -Wrestrict
    if (i % 3 == 0) line["max_new_tokens"] = 1 + static_cast<int>(rng() % 5);
    if (i % 4 == 1) {
      line["do_sample"] = true;
      line["seed"] = 3;
    }
    out += line.dump() + "\n";
  }
  return out;
}

class BatchFault : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fault::kCompiledIn) return;
    dir_ = new TempDir;
    input_ = dir_->write("prompts.jsonl", input_text());
    const TempDir offload;
    const auto r = run(dir_->path() / "reference.jsonl", offload, "");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(offload.empty());
    reference_ = new std::map<std::string, std::string>;
    for (const std::string& line : lines_of(slurp(dir_->path() / "reference.jsonl"))) {
      (*reference_)[nlohmann::json::parse(line)["id"].get<std::string>()] = line;
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete reference_;
    dir_ = nullptr;
    reference_ = nullptr;
  }
  void SetUp() override {
    FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
    ASSERT_TRUE(reference_ != nullptr && reference_->size() == static_cast<std::size_t>(kPrompts)) << "the uninterrupted run failed";
  }

  // The batch with everything on disk (weights, cache, activations) in `offload`, FLEXGEN_FAULT=
  // `fault` (none when empty), stopped after 120 s (exit status 124) if it hangs.
  static testing::CommandResult run(const std::filesystem::path& out, const TempDir& offload,
                                    const std::string& fault) {
    return testing::run_flexgen_env(
        "FLEXGEN_FAULT=" + shell_quote(fault),
        "batch --model " + shell_quote(testing::tiny_opt_dir().string()) + " --input " + shell_quote(input_.string()) +
            " --output " + shell_quote(out.string()) +
            " --gen-len 6 --gpu-batch-size 2 --num-gpu-batches 2 --percent 0 0 0 0 0 0 --backend host --offload-dir " +
            shell_quote(offload.path().string()),
        120);
  }

  std::string reference_text() const { return slurp(dir_->path() / "reference.jsonl"); }

  // What a run left: `before` (the output when it started) unchanged at the start, then whole
  // lines only, each the uninterrupted run's line for its id, no id twice.
  static void expect_nothing_lost(const std::string& before, const std::string& after) {
    ASSERT_GE(after.size(), before.size());
    EXPECT_EQ(after.substr(0, before.size()), before) << "a run changed lines already written";
    EXPECT_TRUE(after.empty() || after.back() == '\n') << "a line cut short";
    std::set<std::string> ids;
    for (const std::string& line : lines_of(after)) {
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      ASSERT_TRUE(j.is_object() && j.contains("id") && j["id"].is_string()) << "not a completion line: " << line;
      const std::string id = j["id"].get<std::string>();
      EXPECT_TRUE(ids.insert(id).second) << "id twice: " << id;
      ASSERT_TRUE(reference_->count(id)) << "unknown id " << id;
      EXPECT_EQ(line, reference_->at(id)) << "not the uninterrupted run's line";
    }
  }

  static TempDir* dir_;
  static std::filesystem::path input_;
  static std::map<std::string, std::string>* reference_;  // the uninterrupted run's lines by id
};
TempDir* BatchFault::dir_ = nullptr;
std::filesystem::path BatchFault::input_;
std::map<std::string, std::string>* BatchFault::reference_ = nullptr;

struct FaultCase {
  const char* name;
  const char* point_effect;  // POINT:EFFECT; the call number and errno are added
  const char* error;         // FLEXGEN_FAULT's errno name, or "" for the default
  const char* what;          // in the error line
};

void PrintTo(const FaultCase& c, std::ostream* os) { *os << c.name; }

class BatchFaultPartWay : public BatchFault, public ::testing::WithParamInterface<FaultCase> {};

// The fault strikes call 0, 1, 3, 7, 15 ... of its point, each time in a rerun that resumes the
// output the last one left, until a run fails after having written lines of its own (blocks
// written, then the fault); every run must end with one error and lose nothing. Then a restart
// without the fault completes the file.
TEST_P(BatchFaultPartWay, EndsWithOneErrorLosesNoLineAndARestartCompletesTheFile) {
  const FaultCase& c = GetParam();
  TempDir work;
  const TempDir offload;
  const auto out = work / "out.jsonl";
  std::string before;
  bool struck_after_lines = false;
  for (std::int64_t call = 0; !struck_after_lines; call = 2 * call + 1) {
    std::string spec = std::string(c.point_effect) + ":" + std::to_string(call);
    if (*c.error) spec += std::string(":") + c.error;
    const auto r = run(out, offload, spec);
    SCOPED_TRACE("FLEXGEN_FAULT=" + spec);
    ASSERT_EQ(r.exit_code, 1) << "the fault did not end the run (exit status 124: it hung)\n" << r.err;
    const auto err = lines_of(r.err);
    ASSERT_FALSE(err.empty());
    EXPECT_THAT(err.back(), StartsWith("flexgen batch: error: "));
    EXPECT_THAT(err.back(), HasSubstr(c.what));
    EXPECT_EQ(std::count_if(err.begin(), err.end(), [](const std::string& l) { return l.find("error") != l.npos; }),
              1)
        << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_TRUE(offload.empty()) << "offload files left behind";
    const std::string after = slurp(out);
    expect_nothing_lost(before, after);
    if (HasFailure()) return;
    struck_after_lines = after.size() > before.size();
    before = after;
  }
  const std::size_t kept = lines_of(before).size();
  EXPECT_LT(kept, static_cast<std::size_t>(kPrompts)) << "the fault struck no run part-way";

  const auto r = run(out, offload, "");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr(std::to_string(kept) + " already in"));
  const std::string done = slurp(out);
  expect_nothing_lost(before, done);
  EXPECT_EQ(line_set(done), line_set(reference_text()));
  EXPECT_TRUE(offload.empty());
}

INSTANTIATE_TEST_SUITE_P(
    Faults, BatchFaultPartWay,
    ::testing::Values(FaultCase{"DiskReadFails", "disk_read:fail", "EIO", "failed: Input/output error"},
                      FaultCase{"DiskWriteFails", "disk_write:fail", "ENOSPC", "failed: No space left on device"},
                      FaultCase{"DiskWriteStalls", "disk_write:stall", "",
                                "No space left on device (the write made no progress)"},
                      FaultCase{"OutputWriteFails", "output_write:fail", "ENOSPC",
                                "cannot write the output file: No space left on device"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

// A write of the output that comes back short is continued: the lines of the uninterrupted run.
TEST_F(BatchFault, AnOutputWriteThatComesBackShortIsContinued) {
  for (const char* spec : {"output_write:short:0", "output_write:short:5"}) {
    TempDir work;
    const TempDir offload;
    const auto r = run(work / "out.jsonl", offload, spec);
    ASSERT_EQ(r.exit_code, 0) << spec << ": " << r.err;
    EXPECT_EQ(slurp(work / "out.jsonl"), reference_text()) << spec;
    EXPECT_TRUE(offload.empty());
  }
}

}  // namespace
}  // namespace flexgen
