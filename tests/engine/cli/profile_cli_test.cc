// `flexgen profile` end to end (host parts; the GPU parts run where a GPU is) and its errors.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/hardware_spec.h"
#include "engine/cuda/profile_gpu.h"
#include "support/run_command.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::run_flexgen;
using testing::shell_quote;

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

class ScratchDir {
 public:
  ScratchDir()
      : dir_(std::filesystem::temp_directory_path() /
             ("flexgen-profile-cli-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++))) {
    std::filesystem::create_directories(dir_);
  }
  ~ScratchDir() { std::filesystem::remove_all(dir_); }
  std::filesystem::path operator/(const std::string& name) const { return dir_ / name; }
  const std::filesystem::path& path() const { return dir_; }

 private:
  static inline int counter_ = 0;
  std::filesystem::path dir_;
};

void expect_clean_failure(const std::string& args, const std::string& needle) {
  const auto r = run_flexgen(args);
  EXPECT_NE(r.exit_code, 0) << args;
  EXPECT_LT(r.exit_code, 128) << "crashed: " << args;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr(needle)) << args;
  EXPECT_EQ(r.out, "") << args;
}

TEST(ProfileCli, HelpListsTheFlags) {
  const auto r = run_flexgen("profile --help");
  ASSERT_EQ(r.exit_code, 0);
  for (const char* flag : {"--output", "--details", "--name", "--offload-dir", "--disk-bytes",
                           "--quick", "--host-only", "--json"}) {
    EXPECT_THAT(r.out, HasSubstr(flag));
  }
}

TEST(ProfileCli, BadDiskBytes) {
  expect_clean_failure("profile --host-only --disk-bytes lots", "--disk-bytes: invalid byte count 'lots'");
  expect_clean_failure("profile --host-only --disk-bytes 1KiB", "--disk-bytes must be at least 1 MiB");
  expect_clean_failure("profile --host-only --disk-bytes -5", "--disk-bytes");
}

TEST(ProfileCli, UnwritableOutputFailsBeforeMeasuring) {
  ScratchDir dir;
  const std::string missing = (dir / "no-such-dir" / "spec.json").string();
  expect_clean_failure("profile --host-only --output " + shell_quote(missing), "cannot write --output");
  expect_clean_failure("profile --host-only --output " + shell_quote(dir.path().string()), "is a directory");
  expect_clean_failure("profile --host-only --details " + shell_quote(dir.path().string()),
                       "cannot write --details");
}

TEST(ProfileCli, WithoutAGpuTheFullProfileStopsAtOnce) {
  if (gpu_profiling_available()) GTEST_SKIP() << "a GPU is visible";
  expect_clean_failure("profile --quick", "no GPU: the GPU parts of the profile need the CUDA backend and a device");
}

TEST(ProfileCli, HostOnlyWritesAPartialSpecAndTheMeasurements) {
  ScratchDir dir;
  const auto output = dir / "host.json";
  const std::string args = "profile --host-only --quick --disk-bytes 8MiB --json --name test-host --offload-dir " +
                           shell_quote((dir / "offload").string()) + " --output " + shell_quote(output.string());
  const auto r = run_flexgen(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("PARTIAL"));
  EXPECT_THAT(r.err, HasSubstr("cpu_memory_bytes_per_s"));

  std::ifstream in(output);
  const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const nlohmann::json spec = nlohmann::json::parse(raw);
  // Written in the order of the hand-written files: name, description, capacities, rates.
  EXPECT_LT(raw.find("\"name\""), raw.find("\"description\""));
  EXPECT_LT(raw.find("\"description\""), raw.find("\"cpu_memory_bytes\""));
  EXPECT_LT(raw.find("\"disk_bytes\""), raw.find("\"disk_read_bytes_per_s\""));
  EXPECT_EQ(spec["name"], "test-host");
  for (const char* key : {"cpu_memory_bytes", "disk_bytes", "disk_read_bytes_per_s", "disk_write_bytes_per_s",
                          "cpu_attention_flops_per_s", "cpu_memory_bytes_per_s"}) {
    ASSERT_TRUE(spec.contains(key)) << key;
    EXPECT_GT(spec[key].get<double>(), 0) << key;
  }
  EXPECT_GT(spec["cpu_memory_bytes_per_s"].get<double>(), 1e8);
  EXPECT_LT(spec["cpu_memory_bytes_per_s"].get<double>(), 1e13);
  EXPECT_THROW(HardwareSpec::from_json(spec, "host.json"), Error);  // partial: no GPU fields
  // The small disk requests' latencies: measured (16 with --quick), never negative.
  EXPECT_THAT(r.err, HasSubstr("disk_write_latency_s"));
  for (const char* key : {"disk_read_latency_s", "disk_write_latency_s"}) {
    ASSERT_TRUE(spec.contains(key)) << key;
    EXPECT_GE(spec[key].get<double>(), 0) << key;
    EXPECT_LT(spec[key].get<double>(), 1.0) << key;
  }

  // The raw numbers went next to it, under measurements/.
  std::ifstream details_in(dir / "measurements" / "host.json");
  ASSERT_TRUE(details_in.good());
  const nlohmann::json details = nlohmann::json::parse(details_in);
  EXPECT_EQ(details["host"]["disk"]["total_bytes"], 8 * 1024 * 1024);
  EXPECT_EQ(details["host"]["disk"]["small_write_seconds"].size(), 16u);
  EXPECT_FALSE(details.contains("gpu"));

  // --json: the same on stdout.
  const nlohmann::json both = nlohmann::json::parse(r.out);
  EXPECT_EQ(both["hardware"], spec);
  EXPECT_EQ(both["measurements"], details);
  // Nothing but the two files (the offload file has no name).
  int files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 2);
}

}  // namespace
}  // namespace flexgen
