// `flexgen generate` end to end, and its errors: one line on stderr, a non-zero exit, no output.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/cuda/device_info.h"
#include "engine/text/bpe_tokenizer.h"
#include "support/fixture.h"
#include "support/run_command.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::run_flexgen;
using testing::shell_quote;
using testing::TempDir;
using testing::tiny_opt_dir;
using testing::tiny_opt_reference;

std::string tiny() { return "--model " + shell_quote(tiny_opt_dir().string()); }

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// A scratch copy of the tiny model, removed afterwards.
class ModelDir : public TempDir {
 public:
  ModelDir() {
    for (const char* f : {"config.json", "model.safetensors", "vocab.json", "merges.txt"}) {
      std::filesystem::copy_file(tiny_opt_dir() / f, path() / f);
    }
  }
  std::string arg() const { return "--model " + shell_quote(path().string()); }
};

TEST(GenerateCli, HelloContinuationMatchesHfGenerate) {
  const auto& ref = tiny_opt_reference();
  const auto r = run_flexgen("generate " + tiny() + " --prompt Hello --gen-len 16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string expected = "Hello" + ref["hello_new_text"].get<std::string>() + "\n";
  EXPECT_EQ(r.out, expected);
}

TEST(GenerateCli, JsonTokensMatchHfGenerate) {
  const auto& ref = tiny_opt_reference();
  const auto r = run_flexgen("generate " + tiny() + " --prompt Hello --gen-len 16 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["sequences"][0]["output_tokens"].get<std::vector<int>>(),
            ref["hello_new_tokens"].get<std::vector<int>>());
  EXPECT_EQ(j["model"], "tiny-opt");
  EXPECT_GT(j["throughput_tok_s"].get<double>(), 0.0);
}

TEST(GenerateCli, ARealModelWithoutAPromptRunsOnADummyPrompt) {
  const auto r = run_flexgen("generate " + tiny() + " --prompt-len 6 --gen-len 4 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["sequences"][0]["prompt_tokens"].size(), 6u);
  EXPECT_LE(j["sequences"][0]["output_tokens"].size(), 4u);
}

// --op-times on the CUDA backend: per phase the wall, busy and idle seconds and the ops' calls,
// the busy time within the wall time, and the tokens unchanged by the timing events.
TEST(GenerateCli, OpTimesOnTheCudaBackend) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  const auto& ref = tiny_opt_reference();
  const auto r = run_flexgen("generate " + tiny() + " --prompt Hello --gen-len 16 --json --backend cuda --op-times");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["sequences"][0]["output_tokens"].get<std::vector<int>>(),
            ref["hello_new_tokens"].get<std::vector<int>>());
  const auto& ops = j["op_times"];
  for (const char* phase : {"prefill", "decode"}) {
    SCOPED_TRACE(phase);
    const auto& p = ops[phase];
    const double wall = p["wall_s"].get<double>(), busy = p["busy_s"].get<double>();
    EXPECT_GT(busy, 0.0);
    EXPECT_LE(busy, wall * 1.01 + 1e-4);
    EXPECT_NEAR(p["idle_s"].get<double>(), wall - busy, 1e-9 + 1e-6 * wall);
    for (const char* op : {"attn_layer_norm", "qkv_proj", "attention", "out_proj", "mlp_layer_norm", "fc1", "fc2",
                           "final_layer_norm", "lm_head", "sampling", "embedding"}) {
      ASSERT_TRUE(p["ops"].contains(op)) << op;
      EXPECT_GT(p["ops"][op]["calls"].get<std::int64_t>(), 0) << op;
    }
  }
  // One call per decoder layer and step (the fixture's layers x 15 decode steps).
  const std::int64_t layers = ops["prefill"]["ops"]["fc1"]["calls"].get<std::int64_t>();
  EXPECT_EQ(ops["decode"]["ops"]["attention"]["calls"].get<std::int64_t>(), 15 * layers);
  EXPECT_EQ(ops["decode"]["ops"]["lm_head"]["calls"].get<std::int64_t>(), 15);
  // All-GPU fp16 cache: the decode steps' key and value projections write into the cache where the
  // new position's rows start on a 256-byte boundary. The fixture's rows of one position are 4 heads
  // x 16 dims x 2 bytes = 128 bytes, so past length P is in place when P is even; the other steps
  // append (one call per layer).
  const std::int64_t prompt = static_cast<std::int64_t>(j["sequences"][0]["prompt_tokens"].size());
  std::int64_t appended_steps = 0;
  for (std::int64_t i = 1; i <= 15; ++i) appended_steps += ((prompt + i - 1) * 128) % 256 != 0 ? 1 : 0;
  ASSERT_GT(appended_steps, 0);
  ASSERT_LT(appended_steps, 15);
  ASSERT_TRUE(ops["decode"]["ops"].contains("cache_append"));
  EXPECT_EQ(ops["decode"]["ops"]["cache_append"]["calls"].get<std::int64_t>(), appended_steps * layers);
  EXPECT_TRUE(ops["prefill"]["ops"].contains("cache_append"));
}

TEST(GenerateCli, OpTimesNeedTheCudaBackend) {
  const auto r = run_flexgen("generate " + tiny() + " --prompt Hello --gen-len 2 --backend host --op-times");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("--op-times"));
}

TEST(GenerateCli, HelpListsFlexGenFlags) {
  const auto r = run_flexgen("generate --help");
  ASSERT_EQ(r.exit_code, 0);
  for (const char* flag : {"--model", "--prompt-len", "--gen-len", "--gpu-batch-size", "--num-gpu-batches",
                           "--percent", "--compress-weight", "--compress-cache", "--attn-sparsity",
                           "--cpu-cache-compute", "--overlap", "--json"}) {
    EXPECT_THAT(r.out, HasSubstr(flag));
  }
}

// Each bad input: exit code non-zero, exactly one line on stderr naming the problem, nothing on
// stdout.
void expect_clean_failure(const std::string& args, const std::string& needle) {
  const auto r = run_flexgen(args);
  EXPECT_NE(r.exit_code, 0) << args;
  EXPECT_LT(r.exit_code, 128) << "crashed: " << args;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr(needle)) << args;
  EXPECT_EQ(r.out, "") << args;
}

TEST(GenerateCli, UnknownModelName) { expect_clean_failure("generate --model opt-7b", "opt-6.7b"); }

TEST(GenerateCli, InvalidPolicies) {
  expect_clean_failure("generate " + tiny() + " --prompt Hi --percent 80 30 100 0 100 0", "exceeds 100");
  expect_clean_failure("generate " + tiny() + " --prompt Hi --gpu-batch-size 0", "gpu-batch-size");
  expect_clean_failure("generate " + tiny() + " --prompt Hi --percent 100 0", "six numbers");
  expect_clean_failure("generate " + tiny() + " --prompt Hi --attn-sparsity 0", "sparsity");
}

TEST(GenerateCli, TruncatedSafetensors) {
  ModelDir dir;
  const auto size = std::filesystem::file_size(dir.path() / "model.safetensors");
  std::filesystem::resize_file(dir.path() / "model.safetensors", size / 2);
  expect_clean_failure("generate " + dir.arg() + " --prompt Hi", "model.safetensors");
}

TEST(GenerateCli, LyingSafetensorsHeader) {
  ModelDir dir;
  std::string header = R"({"model.decoder.embed_tokens.weight":{"dtype":"F32","shape":[767,64],"data_offsets":[0,999999999]}})";
  std::string bytes(8, '\0');
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  dir.write("model.safetensors", bytes + header + std::string(64, '\0'));
  expect_clean_failure("generate " + dir.arg() + " --prompt Hi", "model.safetensors");
}

TEST(GenerateCli, BadConfigJson) {
  ModelDir dir;
  dir.write("config.json", "{\"model_type\": \"opt\", \"hidden_size\": ");
  expect_clean_failure("generate " + dir.arg() + " --prompt Hi", "config.json");
}

TEST(GenerateCli, WrongShapeInConfig) {
  ModelDir dir;
  std::ifstream in(tiny_opt_dir() / "config.json");
  auto config = nlohmann::json::parse(in);
  config["ffn_dim"] = 128;
  dir.write("config.json", config.dump());
  expect_clean_failure("generate " + dir.arg() + " --prompt Hi", "fc1");
}

TEST(GenerateCli, MissingTokenizerForTextPrompt) {
  ModelDir dir;
  std::filesystem::remove(dir.path() / "merges.txt");
  expect_clean_failure("generate " + dir.arg() + " --prompt Hi", "merges.txt");
}

TEST(GenerateCli, UnknownCommandAndFlag) {
  expect_clean_failure("frobnicate", "unknown command");
  expect_clean_failure("generate " + tiny() + " --no-such-flag", "no-such-flag");
}

}  // namespace
}  // namespace flexgen
