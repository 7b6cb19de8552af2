// `flexgen generate --backend cuda --num-gpus G` on a machine with several GPUs: each stage process
// on device rank % devices, hidden states over NCCL (when built with it) or through pinned host
// memory (FLEXGEN_PIPELINE_LINK=host), exactly the tokens of the one-GPU run, which the CUDA tests
// check against HF transformers' greedy tokens. Skipped with fewer than two GPUs.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/cuda/device_info.h"
#include "support/fixture.h"
#include "support/run_command.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using testing::run_flexgen_env;
using testing::shell_quote;
using testing::TempDir;
using testing::tiny_opt_dir;
using testing::tiny_opt_reference;

std::vector<std::vector<int>> output_tokens(const std::string& json_text) {
  std::vector<std::vector<int>> out;
  for (const auto& s : nlohmann::json::parse(json_text)["sequences"]) out.push_back(s["output_tokens"].get<std::vector<int>>());
  return out;
}

TEST(CudaPipelineCli, SeveralGpusGiveTheTokensOfOneGpu) {
  const auto gpus = list_gpus();
  if (gpus.size() < 2) GTEST_SKIP() << "needs at least two GPUs (" << gpus.size() << " visible)";
  TempDir offload;
  std::string run = "generate --backend cuda --model " + shell_quote(tiny_opt_dir().string()) +
                    " --gen-len 20 --stop-token -1 --gpu-batch-size 2 --num-gpu-batches 2 --json --offload-dir " +
                    shell_quote(offload.path().string());
  for (const auto& p : tiny_opt_reference()["prompts"]) run += " --prompt " + shell_quote(p.get<std::string>());
  for (const std::string placement : {"", " --percent 0 50 0 100 0 0", " --compress-weight --percent 0 100 100 0 100 0"}) {
    for (const char* schedule : {"zig-zag", "row-by-row"}) {
      const std::string r1 = run + placement + " --schedule " + schedule;
      const auto one = run_flexgen_env("", r1, 300);
      ASSERT_EQ(one.exit_code, 0) << one.err;
      const auto tokens = output_tokens(one.out);
      if (placement.empty()) {
        EXPECT_EQ(tokens, tiny_opt_reference()["greedy_new_tokens"].get<std::vector<std::vector<int>>>());
      }
      for (int g : {2, 3}) {
        for (const char* link : {"nccl", "host"}) {
          const auto r = run_flexgen_env(std::string("FLEXGEN_PIPELINE_LINK=") + link,
                                         r1 + " --num-gpus " + std::to_string(g), 300);
          ASSERT_EQ(r.exit_code, 0) << g << " GPUs, " << link << ": " << r.err;
          EXPECT_EQ(output_tokens(r.out), tokens) << placement << " " << schedule << ", " << g << " GPUs, " << link;
          const auto j = nlohmann::json::parse(r.out);
          EXPECT_EQ(j["pipeline"]["stages"].size(), static_cast<std::size_t>(g));
        }
      }
      EXPECT_TRUE(offload.empty());
    }
  }
}

}  // namespace
}  // namespace flexgen
