// `flexgen search` end to end: its JSON and text, the generate command it prints actually runs, and
// its errors are one line with a non-zero exit.
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/fixture.h"
#include "support/run_command.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::run_flexgen;
using testing::shell_quote;

TEST(SearchCli, JsonForOpt30bOnTheDefaultHardware) {
  const auto r = run_flexgen("search --model opt-30b --json --top 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["model"], "opt-30b");
  EXPECT_EQ(j["hardware"], "t4-paper");
  EXPECT_EQ(j["workload"]["prompt_len"], 512);
  EXPECT_EQ(j["workload"]["gen_len"], 32);
  EXPECT_EQ(j["capacities"]["gpu"], 17179869184LL);
  ASSERT_EQ(j["candidates"].size(), 2u);
  const nlohmann::json& best = j["best"];
  EXPECT_EQ(best, j["candidates"][0]);
  EXPECT_GT(best["throughput_tok_s"].get<double>(), 0.0);
  EXPECT_GE(best["throughput_tok_s"].get<double>(), j["candidates"][1]["throughput_tok_s"].get<double>());
  EXPECT_NEAR(best["total_s"].get<double>(), best["prefill_s"].get<double>() + best["decode_s"].get<double>(), 1e-6);
  for (const char* tier : {"gpu", "cpu", "disk"}) {
    EXPECT_LE(best["peak_bytes"][tier].get<double>(), j["capacities"][tier].get<double>()) << tier;
  }
  const std::string command = best["command"];
  EXPECT_THAT(command, StartsWith("flexgen generate --model opt-30b --prompt-len 512 --gen-len 32 --gpu-batch-size "));
  EXPECT_THAT(command, HasSubstr(" --percent "));
  EXPECT_THAT(command, HasSubstr(" --gpu-mem 17179869184 --cpu-mem 223338299392 --disk-mem 1500000000000"));
  EXPECT_GT(j["search"]["lp_solves"].get<int>(), 0);
}

TEST(SearchCli, TextSummaryAndNamedHardware) {
  const auto r = run_flexgen("search --model opt-6.7b --hardware h100-sxm --gen-len 16 --no-disk");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("flexgen search: opt-6.7b on h100-sxm, prompt 512 tokens, generate 16"));
  EXPECT_THAT(r.out, HasSubstr("best policy: gpu batch size "));
  EXPECT_THAT(r.out, HasSubstr("predicted: "));
  EXPECT_THAT(r.out, HasSubstr("flexgen generate --model opt-6.7b --prompt-len 512 --gen-len 16"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("--disk-mem")));
  EXPECT_TRUE(r.err.empty()) << r.err;
}

// The policy found for the tiny fixture model under small budgets runs through `flexgen generate`
// as printed (its budgets included).
TEST(SearchCli, PrintedCommandRuns) {
  const std::string model = shell_quote(testing::tiny_opt_dir().string());
  const auto r = run_flexgen("search --model " + model +
                             " --prompt-len 8 --gen-len 4 --gpu-mem 97MiB --cpu-mem 500KiB --disk-mem 64MiB "
                             "--gpu-batch-size 4 --num-gpu-batches 3 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  std::string command = j["best"]["command"];
  const std::string prefix = "flexgen ";
  ASSERT_THAT(command, StartsWith(prefix));
  command = command.substr(prefix.size());
  // Off the GPU and the CPU: the budgets above do not hold the 835 KB of weights on two tiers (of
  // the 97 MiB on the GPU, the CUDA backend's workspace takes 96 MiB: cuBLAS's 32 MiB and the
  // 64 MiB padding allowance).
  EXPECT_GT(j["best"]["peak_bytes"]["disk"].get<double>(), 0.0);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("flexgen-search-cli-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  // (--prompt: `generate` on a model directory without --prompt crashes at the time of writing.)
  const auto g = run_flexgen(command + " --offload-dir " + shell_quote(dir.string()) + " --prompt Hello --json");
  std::filesystem::remove_all(dir);
  ASSERT_EQ(g.exit_code, 0) << command << "\n" << g.err;
  const nlohmann::json run = nlohmann::json::parse(g.out);
  EXPECT_EQ(run["policy"], j["best"]["policy"]);
  EXPECT_EQ(run["peak_memory"]["gpu_bytes"].get<double>(), j["best"]["buffer_bytes"]["gpu"].get<double>());
  EXPECT_EQ(run["peak_memory"]["disk_bytes"].get<double>(), j["best"]["buffer_bytes"]["disk"].get<double>());
}

TEST(SearchCli, ErrorsAreOneLine) {
  const auto expect_error = [](const std::string& args, const std::string& message) {
    const auto r = run_flexgen(args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_TRUE(r.out.empty()) << args << ": " << r.out;
    EXPECT_THAT(r.err, HasSubstr(message)) << args;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  };
  expect_error("search --model opt-175b --no-disk", "(104.8 GiB short)");
  expect_error("search --model opt-7t", "opt-7t");
  expect_error("search --model opt-1.3b --hardware no-such-machine", "no such hardware file");
  expect_error("search --model opt-1.3b --cpu-cache-compute --no-cpu-cache-compute", "exclude each other");
  expect_error("search --model opt-1.3b --top 0", "--top");
  expect_error("search --model opt-1.3b --gpu-mem lots", "invalid byte count");
  expect_error("search --model opt-1.3b --gen-len 0", "--gen-len");
  expect_error("search --prompt-len 8", "model");
}

}  // namespace
}  // namespace flexgen
