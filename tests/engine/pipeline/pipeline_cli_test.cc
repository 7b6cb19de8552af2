// `flexgen generate --num-gpus G` end to end on the host backend: G stage processes started by the
// local launcher (or by mpirun), each holding its layers of the fixture OPT model (3 decoder
// layers), give exactly the tokens of the one-process run and of HF transformers' greedy
// generation (tests/fixtures/tiny-opt-reference.json); a stage that fails or dies ends the run
// with one error line, a non-zero exit, no output and no file left in the offload directory.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/pipeline/mpi_bootstrap.h"
#include "engine/runtime/fault_injection.h"
#include "support/faults.h"
#include "support/fixture.h"
#include "support/run_command.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::run_flexgen;
using testing::run_flexgen_env;
using testing::shell_quote;
using testing::TempDir;
using testing::tiny_opt_dir;
using testing::tiny_opt_reference;

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// The fixture's four prompts in two gpu batches of two, greedy, 20 new tokens (HF's run).
std::string four_prompts() {
  std::string a = "generate --backend host --model " + shell_quote(tiny_opt_dir().string()) +
                  " --gen-len 20 --stop-token -1 --gpu-batch-size 2 --num-gpu-batches 2";
  for (const auto& p : tiny_opt_reference()["prompts"]) a += " --prompt " + shell_quote(p.get<std::string>());
  return a;
}

std::vector<std::vector<int>> output_tokens(const std::string& json_text) {
  const auto j = nlohmann::json::parse(json_text);
  std::vector<std::vector<int>> out;
  for (const auto& s : j["sequences"]) out.push_back(s["output_tokens"].get<std::vector<int>>());
  return out;
}

TEST(PipelineCli, TwoAndThreeStagesGiveHfGreedyTokensOverPlacementsSchedulesAndCompression) {
  const auto expected = tiny_opt_reference()["greedy_new_tokens"].get<std::vector<std::vector<int>>>();
  TempDir offload;
  const std::string dir = " --offload-dir " + shell_quote(offload.path().string());
  struct Case {
    const char* name;
    std::string flags;
    bool exact;  // 4-bit compression changes the tokens: compared with the one-process run only
  };
  const Case cases[] = {
      {"all on the GPU", "", true},
      {"weights on CPU and disk, cache on CPU, activations on disk", " --percent 0 50 0 100 0 0", true},
      {"4-bit weights and cache, weights on CPU", " --percent 0 100 100 0 100 0 --compress-weight --compress-cache",
       false},
  };
  for (const Case& c : cases) {
    for (const char* schedule : {"zig-zag", "row-by-row"}) {
      const std::string run = four_prompts() + c.flags + dir + " --schedule " + schedule + " --json";
      const auto one = run_flexgen(run);
      ASSERT_EQ(one.exit_code, 0) << one.err;
      const auto one_tokens = output_tokens(one.out);
      if (c.exact) {
        EXPECT_EQ(one_tokens, expected) << c.name << ", " << schedule;
      }
      for (int g : {2, 3}) {
        const auto r = run_flexgen(run + " --num-gpus " + std::to_string(g));
        ASSERT_EQ(r.exit_code, 0) << c.name << ", " << schedule << ", " << g << " stages: " << r.err;
        EXPECT_EQ(output_tokens(r.out), one_tokens) << c.name << ", " << schedule << ", " << g << " stages";
        const auto j = nlohmann::json::parse(r.out);
        ASSERT_TRUE(j.contains("pipeline"));
        EXPECT_EQ(j["pipeline"]["num_gpus"], g);
        EXPECT_EQ(j["pipeline"]["stages"].size(), static_cast<std::size_t>(g));
      }
      EXPECT_TRUE(offload.empty()) << c.name;
    }
  }
}

// The text output is the one-process run's, byte for byte.
TEST(PipelineCli, TextOutputIsTheOneProcessRun) {
  const std::string run = four_prompts();
  const auto one = run_flexgen(run);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  for (int g : {2, 3}) {
    const auto r = run_flexgen(run + " --num-gpus " + std::to_string(g));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, one.out) << g << " stages";
    EXPECT_THAT(r.err, HasSubstr("pipeline of " + std::to_string(g)));
  }
}

// Per-stage reports, by hand for the fixture (hidden 64, float32 on the host backend: 256 bytes a
// position; one prompt "</s>Hello" of 2 tokens, 5 new tokens, greedy): 3 stages hold schedule
// layers {0, 1}, {2}, {3, 4} (the embedding with decoder layer 1, the LM head with layer 3). Each
// hidden-state message: a 32-byte header and 1 x T x 256 bytes (T = 2 at step 0, then 1); each
// token message: 32 + 4 bytes, from the last stage to each of the other two.
TEST(PipelineCli, PerStageReportsByHand) {
  const auto r = run_flexgen("generate --backend host --model " + shell_quote(tiny_opt_dir().string()) +
                             " --prompt Hello --gen-len 5 --stop-token -1 --num-gpus 3 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto& st = j["pipeline"]["stages"];
  ASSERT_EQ(st.size(), 3u);
  EXPECT_EQ(st[0]["layers"], nlohmann::json({0, 1}));
  EXPECT_EQ(st[1]["layers"], nlohmann::json({2, 2}));
  EXPECT_EQ(st[2]["layers"], nlohmann::json({3, 4}));
  const std::int64_t hidden = (32 + 2 * 256) + 4 * (32 + 256);
  const std::int64_t tokens = 5 * (32 + 4);
  EXPECT_EQ(st[0]["bytes_sent"], hidden);
  EXPECT_EQ(st[0]["bytes_received"], tokens);
  EXPECT_EQ(st[1]["bytes_sent"], hidden);
  EXPECT_EQ(st[1]["bytes_received"], hidden + tokens);
  EXPECT_EQ(st[2]["bytes_sent"], 2 * tokens);
  EXPECT_EQ(st[2]["bytes_received"], hidden);
  for (const auto& s : st) EXPECT_GT(s["peak_memory"]["gpu_bytes"].get<std::int64_t>(), 0);
  // Each stage holds a third of the decoder layers: less than the whole model.
  const auto one = run_flexgen("generate --backend host --model " + shell_quote(tiny_opt_dir().string()) +
                               " --prompt Hello --gen-len 5 --stop-token -1 --json");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto whole = nlohmann::json::parse(one.out)["peak_memory"]["gpu_bytes"].get<std::int64_t>();
  for (const auto& s : st) EXPECT_LT(s["peak_memory"]["gpu_bytes"].get<std::int64_t>(), whole);
}

TEST(PipelineCli, MoreStagesThanLayersIsOneClearError) {
  const auto r = run_flexgen("generate --backend host --model " + shell_quote(tiny_opt_dir().string()) +
                             " --prompt Hello --gen-len 2 --num-gpus 4");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("4 stages for a model of 3 decoder layers"));
  const auto bad = run_flexgen("generate --backend host --model " + shell_quote(tiny_opt_dir().string()) +
                               " --prompt Hello --num-gpus 2 --launcher ssh");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("--launcher must be local or mpi"));
}

// Stage 1 kills itself (SIGKILL) at its third compute task, in the middle of an offloaded run.
TEST(PipelineCli, AKilledStageEndsTheRunWithOneErrorAndNoOffloadFiles) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  TempDir offload;
  const std::string run = four_prompts() + " --percent 0 0 0 0 0 0 --offload-dir " +
                          shell_quote(offload.path().string());
  for (int g : {2, 3}) {
    const auto r = run_flexgen_env("FLEXGEN_FAULT_STAGE=1 FLEXGEN_FAULT=stage_compute:fail:2",
                                   run + " --num-gpus " + std::to_string(g), 120);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_THAT(r.err, StartsWith("flexgen generate: error: stage 1 died (killed by signal 9"));
    EXPECT_TRUE(offload.empty()) << g << " stages";
  }
}

// Stage 2's disk writes fail: its own error is the one line (not the lost connections the other
// stages see), and the offload directory is left empty.
TEST(PipelineCli, AFailingStageIsTheOneErrorLine) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  TempDir offload;
  const auto r = run_flexgen_env("FLEXGEN_FAULT_STAGE=2 FLEXGEN_FAULT=disk_write:fail:3:ENOSPC",
                                 four_prompts() + " --percent 0 0 0 0 0 0 --num-gpus 3 --offload-dir " +
                                     shell_quote(offload.path().string()),
                                 120);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_THAT(r.err, StartsWith("flexgen generate: error: stage 2: "));
  EXPECT_THAT(r.err, HasSubstr("No space left on device"));
  EXPECT_TRUE(offload.empty());
}

// `mpirun -n G flexgen generate --num-gpus G --launcher mpi`: the MPI bootstrap, then TCP.
TEST(PipelineCli, MpiLaunchGivesTheTokensOfTheOneProcessRun) {
  if (!mpi_launch_available()) {
    const auto r = run_flexgen(four_prompts() + " --num-gpus 2 --launcher mpi");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.err, HasSubstr("built without MPI"));
    GTEST_SKIP() << "built without MPI";
  }
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0) GTEST_SKIP() << "no mpirun";
  // Root may run mpirun only with --allow-run-as-root; --oversubscribe: more ranks than cores.
  const std::string mpirun = "mpirun --allow-run-as-root --oversubscribe -n ";
  const auto probe = std::system((mpirun + "1 true > /dev/null 2>&1").c_str());
  if (probe != 0) GTEST_SKIP() << "mpirun does not run here";
  const auto expected = tiny_opt_reference()["greedy_new_tokens"].get<std::vector<std::vector<int>>>();
  for (int g : {2, 3}) {
    const std::string cmd = mpirun + std::to_string(g) + " " + shell_quote(FLEXGEN_CLI_PATH) + " " +
                            four_prompts() + " --json --launcher mpi --num-gpus " + std::to_string(g) +
                            " > mpi_out.json 2> mpi_err.txt";
    TempDir dir;
    const std::string in_dir = "cd " + shell_quote(dir.path().string()) + " && timeout 120 " + cmd;
    ASSERT_EQ(std::system(in_dir.c_str()), 0) << g << " ranks";
    std::ifstream f(dir.path() / "mpi_out.json");
    const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_EQ(output_tokens(text), expected) << g << " ranks";
    EXPECT_EQ(nlohmann::json::parse(text)["pipeline"]["launcher"], "mpi");
  }
}

}  // namespace
}  // namespace flexgen

namespace flexgen {
namespace {

// `flexgen simulate --num-gpus G` predicts the engine's pipeline: the same layers on each stage
// (by hand: OPT-1.3B's 24 decoder layers over 3 GPUs, 8 each; the fixture's 3 over 3 as the
// engine's per-stage report above), and each stage holds less than the whole model.
TEST(PipelineCli, SimulatorPredictsTheEnginePartition) {
  const auto r = testing::run_flexgen("simulate --model opt-1.3b --num-gpus 3 --prompt-len 64 --gen-len 4 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["num_gpus"], 3);
  ASSERT_EQ(j["stages"].size(), 3u);
  EXPECT_EQ(j["stages"][0]["layers"], nlohmann::json({0, 8}));
  EXPECT_EQ(j["stages"][1]["layers"], nlohmann::json({9, 16}));
  EXPECT_EQ(j["stages"][2]["layers"], nlohmann::json({17, 25}));
  EXPECT_GT(j["throughput_tok_s"].get<double>(), 0.0);
  const auto one = testing::run_flexgen("simulate --model opt-1.3b --prompt-len 64 --gen-len 4 --json");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto whole = nlohmann::json::parse(one.out)["peak_memory"]["gpu_bytes"].get<std::int64_t>();
  for (const auto& s : j["stages"]) EXPECT_LT(s["memory"]["gpu_bytes"].get<std::int64_t>(), whole);

  const auto tiny = testing::run_flexgen("simulate --model " + testing::shell_quote(testing::tiny_opt_dir().string()) +
                                         " --num-gpus 3 --prompt-len 2 --gen-len 5 --json");
  ASSERT_EQ(tiny.exit_code, 0) << tiny.err;
  const auto t = nlohmann::json::parse(tiny.out);
  EXPECT_EQ(t["stages"][0]["layers"], nlohmann::json({0, 1}));
  EXPECT_EQ(t["stages"][1]["layers"], nlohmann::json({2, 2}));
  EXPECT_EQ(t["stages"][2]["layers"], nlohmann::json({3, 4}));
  const auto bad = testing::run_flexgen("simulate --model opt-1.3b --num-gpus 25");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("25 stages for a model of 24 decoder layers"));
}

}  // namespace
}  // namespace flexgen
