// Limits checked up front by `flexgen generate`: an offload directory without room for the plan,
// a prompt longer than the model's positions, a batch beyond the kernels' index types. Each is
// one stderr line, exit status 1, nothing on stdout, and nothing left in the offload directory.
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/fixture.h"
#include "support/run_command.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::run_flexgen;
using testing::shell_quote;
using testing::TempDir;

std::string tiny() { return "--model " + shell_quote(testing::tiny_opt_dir().string()); }

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

void expect_one_error(const testing::CommandResult& r, const std::string& what) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_THAT(r.err, StartsWith("flexgen generate: error: ")) << r.err;
  EXPECT_THAT(r.err, HasSubstr(what)) << r.err;
  EXPECT_EQ(r.out, "");
}

// Free bytes of the file system holding `dir`, or -1.
double free_bytes_of(const std::filesystem::path& dir) {
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) != 0) return -1;
  return static_cast<double>(fs.f_bavail) * static_cast<double>(fs.f_frsize);
}

TEST(LimitsCli, AnOffloadDirWithoutRoomIsRefusedBeforeAllocating) {
  // The smaller of the temp directory's file system and /dev/shm (often small in containers).
  std::filesystem::path parent = std::filesystem::temp_directory_path();
  const std::filesystem::path shm = "/dev/shm";
  std::error_code ec;
  if (std::filesystem::is_directory(shm, ec) && ::access(shm.c_str(), W_OK) == 0 &&
      free_bytes_of(shm) >= 0 && free_bytes_of(shm) < free_bytes_of(parent)) {
    parent = shm;
  }
  TempDir dir(parent);
  const double free_bytes = free_bytes_of(dir.path());
  ASSERT_GE(free_bytes, 0);
  // The tiny fixture (3 layers, 4 heads, head dim 16, float32) with the cache on disk: a sequence
  // of prompt "Hello" (2 tokens) and 120 generated tokens holds 121 positions x 2 (key, value) x
  // 3 layers x 4 heads x 16 x 4 B = 185856 B. Enough sequences to need twice the free space.
  const double per_sequence = 121.0 * 2 * 3 * 4 * 16 * 4;
  const double sequences = std::max(1.0, 2.0 * free_bytes / per_sequence);
  if (sequences > 4e6) GTEST_SKIP() << "the temp file systems are too large to fill with a test plan";
  const auto b = static_cast<long long>(sequences);
  const auto r = run_flexgen("generate " + tiny() + " --prompt Hello --gen-len 120 --backend host --percent 100 0 0 0 100 0"
                             " --gpu-batch-size " + std::to_string(b) + " --offload-dir " + shell_quote(dir.path().string()));
  expect_one_error(r, "disk tier: offload dir " + dir.path().string() + " has ");
  EXPECT_THAT(r.err, HasSubstr(" free, the plan needs "));
  EXPECT_TRUE(dir.empty());
}

TEST(LimitsCli, APromptLongerThanTheModelsPositionsIsRefused) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "hello ";
  expect_one_error(run_flexgen("generate " + tiny() + " --backend host --prompt " + shell_quote(text)),
                   "tokens, more than the 128 positions of model tiny-opt");
  expect_one_error(run_flexgen("generate " + tiny() + " --backend host --prompt Hello --gen-len 127"),
                   "invalid run: prompt 2 + generation 127 tokens exceed the model's 128 positions");
  // Dummy prompts are refused before they are built.
  expect_one_error(run_flexgen("generate " + tiny() + " --backend host --prompt-len 100000000000"),
                   "--prompt-len 100000000000 is more than the 128 positions of model tiny-opt");
}

TEST(LimitsCli, ABatchBeyondTheKernelsIndexTypesIsRefusedBeforeTheBlockIsBuilt) {
  // 2^30 sequences x 2 tokens = 2^31 rows; the block of 2^30 prompts is never built.
  expect_one_error(run_flexgen("generate " + tiny() + " --backend host --prompt Hello --gpu-batch-size 1073741824"),
                   "gpu batch size 1073741824 x prompt length 2 = 2147483648 tokens per gpu batch");
}

}  // namespace
}  // namespace flexgen
