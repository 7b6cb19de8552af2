// Every fuzz target's seed corpus and regression inputs, run through the target's body in the
// ordinary test build: the contract (return, or flexgen::Error with one line) must hold on each.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "fuzz/fuzz_target.h"

namespace flexgen {
namespace {

namespace fs = std::filesystem;

const fs::path kFuzzDir = fs::path(FLEXGEN_SOURCE_DIR) / "tests" / "fuzz";

std::vector<fs::path> inputs_of(const std::string& target) {
  std::vector<fs::path> files;
  for (const char* kind : {"corpus", "regressions"}) {
    const fs::path dir = kFuzzDir / kind / target;
    if (!fs::is_directory(dir)) continue;
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
  }
  return files;
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(FuzzReplay, EveryTargetFileIsRegisteredAndHasSeeds) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(kFuzzDir)) {
    const std::string name = entry.path().filename().string();
    const std::string suffix = "_fuzz.cc";
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      files.push_back(name.substr(0, name.size() - suffix.size()));
    }
  }
  ASSERT_FALSE(files.empty());
  for (const std::string& name : files) {
    EXPECT_EQ(fuzz::registry().count(name), 1u) << name << "_fuzz.cc does not register target '" << name << "'";
    EXPECT_GE(inputs_of(name).size(), 3u) << "target " << name << " needs seeds in tests/fuzz/corpus/" << name;
  }
  EXPECT_EQ(fuzz::registry().size(), files.size());
}

TEST(FuzzReplay, CorporaAndRegressionsKeepTheContract) {
  ASSERT_FALSE(fuzz::registry().empty());
  for (const auto& [name, body] : fuzz::registry()) {
    for (const fs::path& file : inputs_of(name)) {
      EXPECT_EQ(fuzz::run_one(body, slurp(file)), "") << name << ": " << file.string();
    }
  }
}

// The harness itself: a non-Error exception and a multi-line message are findings.
TEST(FuzzReplay, HarnessReportsFindings) {
  using ::testing::HasSubstr;
  EXPECT_EQ(fuzz::run_one([](std::string_view) {}, "x"), "");
  EXPECT_EQ(fuzz::run_one([](std::string_view) { throw Error("bad field 'x'"); }, "x"), "");
  EXPECT_THAT(fuzz::run_one([](std::string_view) { throw Error("two\nlines"); }, "x"), HasSubstr("not one line"));
  EXPECT_THAT(fuzz::run_one([](std::string_view) { throw Error(""); }, "x"), HasSubstr("empty message"));
  EXPECT_THAT(fuzz::run_one([](std::string_view) { throw std::out_of_range("at"); }, "x"),
              HasSubstr("other than flexgen::Error"));
  EXPECT_THAT(fuzz::run_one([](std::string_view) { FLEXGEN_FUZZ_CHECK(1 + 1 == 3, "arithmetic"); }, "x"),
              HasSubstr("property violated: arithmetic"));
  const fuzz::MemFile file("abc");
  EXPECT_EQ(slurp(file.path()), "abc");
}

}  // namespace
}  // namespace flexgen
