// `flexgen simulate` end to end: what-if overrides, JSON, trace, errors.
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/run_command.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::run_flexgen;

const char* kRun = "simulate --model opt-30b --prompt-len 512 --gen-len 8 --gpu-batch-size 4 --num-gpu-batches 2 "
                   "--percent 0 100 100 0 100 0 --hardware t4-paper --json";

double decode_throughput(const std::string& extra) {
  const auto r = run_flexgen(std::string(kRun) + " " + extra);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out)["decode_throughput_tok_s"].get<double>();
}

TEST(SimulateCli, ReportsThroughputCriticalResourceAndMemory) {
  const auto r = run_flexgen(kRun);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["hardware"], "t4-paper");
  EXPECT_EQ(j["critical_resource"]["decode"], "h2d");  // 60 GB of weights over PCIe each step
  EXPECT_GT(j["peak_memory"]["cpu_bytes"].get<double>(), 55e9);
  EXPECT_LE(j["resources"]["h2d"]["utilization"].get<double>(), 1.0);
}

TEST(SimulateCli, DoublingTheLinkSpeedsUpALinkBoundRun) {
  // Decode moves every weight over PCIe each step: twice the link (2 x 12.89 GiB/s) nearly
  // doubles it.
  const double base = decode_throughput("");
  const double fast = decode_throughput("--set h2d_bytes_per_s=27.68e9");
  EXPECT_GT(fast, 1.8 * base);
  EXPECT_LT(fast, 2.01 * base);
  const double small_gpu = run_flexgen(std::string(kRun) + " --set gpu_memory_bytes=1GiB").exit_code;
  EXPECT_EQ(small_gpu, 1);  // the plan no longer fits the GPU
}

TEST(SimulateCli, WritesAChromeTrace) {
  testing::TempDir dir;
  const auto r = run_flexgen(std::string(kRun) + " --trace " + (dir / "trace.json").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream in(dir / "trace.json");
  const auto trace = nlohmann::json::parse(in);
  ASSERT_TRUE(trace.contains("traceEvents"));
  EXPECT_GT(trace["traceEvents"].size(), 100u);
}

TEST(SimulateCli, BadOverridesAreOneLine) {
  for (const char* bad : {"--set h2d=1", "--set h2d_bytes_per_s=fast", "--set gpu_memory_bytes=12XB", "--set name=x"}) {
    const auto r = run_flexgen(std::string(kRun) + " " + bad);
    EXPECT_EQ(r.exit_code, 1) << bad;
    EXPECT_THAT(r.err, HasSubstr("--set")) << bad << ": " << r.err;
    EXPECT_EQ(r.out, "");
  }
}

}  // namespace
}  // namespace flexgen
