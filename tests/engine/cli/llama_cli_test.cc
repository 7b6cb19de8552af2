// The commands with LLaMA models end to end: a LlamaForCausalLM directory written in the test
// (random weights, config.json, a SentencePiece tokenizer trained here) through `flexgen
// generate` and `flexgen batch` against the float64 reference; `search` and `simulate` on the
// table's llama-2-70b; bad inputs give one line and a non-zero exit.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/io/safetensors.h"
#include "engine/model/llama_weights.h"
#include "engine/text/sentencepiece_tokenizer.h"
#include "engine/text/utf8.h"
#include "support/llama_reference.h"
#include "support/random_llama.h"
#include "support/run_command.h"
#include "support/test_util.h"

#ifdef FLEXGEN_HAVE_SENTENCEPIECE_TRAINER
#include <sentencepiece_trainer.h>
#endif

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::run_flexgen;
using testing::shell_quote;
using testing::TempDir;

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// A tiny LLaMA directory: tiny_llama_spec's shapes with a vocabulary of 320 (the tokenizer's),
// float32, weights exact in fp16 so that the host backend in f32 reads what was written.
class LlamaDir : public TempDir {
 public:
  LlamaDir() {
    spec_ = testing::tiny_llama_spec();
    spec_.vocab_size = 320;
    spec_.max_positions = 128;
    spec_.pad_token_id = 2;  // none in config.json: the end token
    weights_ = testing::random_llama_weights(spec_, 11, 0.3);
    std::vector<std::pair<std::string, const Tensor*>> tensors;
    for (const TensorSlot& s : llama_tensor_slots(spec_, weights_)) {
      for (float& v : s.target->span()) v = half_to_float(float_to_half(v));
      tensors.emplace_back(s.name == "lm_head.weight" ? s.name : "model." + s.name, s.target);
    }
    write_safetensors(path() / "model.safetensors", tensors, /*as_f16=*/true);
    const nlohmann::json config = {
        {"model_type", "llama"}, {"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 32},
        {"intermediate_size", 48}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
        {"num_key_value_heads", 2}, {"vocab_size", 320}, {"max_position_embeddings", 128},
        {"rms_norm_eps", 1e-5}, {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 10000.0}}},
        {"tie_word_embeddings", false}, {"bos_token_id", 1}, {"eos_token_id", 2}, {"pad_token_id", nullptr},
        {"dtype", "float32"}, {"hidden_act", "silu"}};
    write("config.json", config.dump(1));
  }
  std::string arg() const { return "--model " + shell_quote(path().string()); }
  const ModelSpec& spec() const { return spec_; }
  const LlamaWeights& weights() const { return weights_; }

 private:
  ModelSpec spec_;
  LlamaWeights weights_;
};

TEST(LlamaCli, ConfigAndWeightsLoad) {
  LlamaDir dir;
  const ModelSpec s = ModelSpec::from_config_json(dir.path());
  EXPECT_EQ(s.family, ModelFamily::kLlama);
  EXPECT_EQ(s.num_kv_heads, 2);
  EXPECT_EQ(s.vocab_size, 320);
  EXPECT_EQ(s.dtype, DType::kF32);
  EXPECT_EQ(s.pad_token_id, 2);
}

// Without tokenizer files --prompt is refused in one line; dummy prompts run, and give the float64
// reference's tokens (the prompt: BOS, then seeded ids).
TEST(LlamaCli, DummyPromptsMatchTheReferenceAndTextNeedsATokenizer) {
  LlamaDir dir;
  const auto r = run_flexgen("generate --backend host " + dir.arg() + " --prompt-len 5 --gen-len 4 --stop-token -1 "
                             "--percent 0 100 0 100 100 0 --cpu-cache-compute --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto prompt = j["sequences"][0]["prompt_tokens"].get<std::vector<std::int32_t>>();
  ASSERT_EQ(prompt.size(), 5u);
  EXPECT_EQ(prompt[0], 1);
  EXPECT_EQ(j["sequences"][0]["output_tokens"].get<std::vector<std::int32_t>>(),
            testing::reference_llama_greedy(dir.spec(), dir.weights(), {prompt}, 4)[0]);
  const auto t = run_flexgen("generate --backend host " + dir.arg() + " --prompt Hello");
  EXPECT_NE(t.exit_code, 0);
  EXPECT_EQ(lines(t.err), 1) << t.err;
  EXPECT_THAT(t.err, HasSubstr("--prompt needs the model's tokenizer"));
  EXPECT_THAT(t.err, HasSubstr("no tokenizer files"));
  dir.write("tokenizer.json", "{}");  // Llama 3 style
  const auto u = run_flexgen("generate --backend host " + dir.arg() + " --prompt Hello");
  EXPECT_NE(u.exit_code, 0);
  EXPECT_EQ(lines(u.err), 1) << u.err;
  EXPECT_THAT(u.err, HasSubstr("only tokenizer.json (Llama 3 style) is present"));
}

TEST(LlamaCli, BadConfigsAreOneLine) {
  LlamaDir dir;
  auto config = nlohmann::json::parse(std::ifstream(dir.path() / "config.json"));
  config["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  dir.write("config.json", config.dump());
  const auto r = run_flexgen("generate --backend host " + dir.arg() + " --prompt-len 4 --gen-len 2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("rope type \"yarn\" is not supported"));
  config["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 10000.0}};
  config["num_key_value_heads"] = 4;  // the file's k_proj has 2 heads
  dir.write("config.json", config.dump());
  const auto s = run_flexgen("generate --backend host " + dir.arg() + " --prompt-len 4 --gen-len 2");
  EXPECT_NE(s.exit_code, 0);
  EXPECT_EQ(lines(s.err), 1) << s.err;
  EXPECT_THAT(s.err, HasSubstr("model.layers.0.self_attn.k_proj.weight: expected [32, 32], got [16, 32]"));
}

#ifdef FLEXGEN_HAVE_SENTENCEPIECE_TRAINER
void train_tokenizer(const TempDir& dir) {
  std::string corpus;
  for (int r = 0; r < 30; ++r) {
    corpus += "Hello world, hello there. The quick brown fox jumps over the lazy dog.\n";
    corpus += "Grouped-query attention shares keys and values between query heads.\n";
  }
  const auto input = dir.write("corpus.txt", corpus);
  const std::string args = "--input=" + input.string() + " --model_prefix=" + (dir / "tokenizer").string() +
                           " --vocab_size=320 --model_type=bpe --byte_fallback=true --character_coverage=1.0"
                           " --normalization_rule_name=identity --remove_extra_whitespaces=false"
                           " --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --hard_vocab_limit=false --minloglevel=2";
  ASSERT_TRUE(sentencepiece::SentencePieceTrainer::Train(args).ok());
  std::filesystem::remove(dir / "corpus.txt");
  std::filesystem::remove(dir / "tokenizer.vocab");
}

TEST(LlamaCli, TextPromptsThroughTheSentencePieceTokenizer) {
  LlamaDir dir;
  train_tokenizer(dir);
  const SentencePieceTokenizer tok = SentencePieceTokenizer::from_file(dir / "tokenizer.model");
  ASSERT_LE(tok.vocab_size(), 320);
  std::vector<std::int32_t> ids = {1};
  for (std::int32_t id : tok.encode("Hello world")) ids.push_back(id);
  const auto expected = testing::reference_llama_greedy(dir.spec(), dir.weights(), {ids}, 5)[0];
  const auto r = run_flexgen("generate --backend host " + dir.arg() +
                             " --prompt 'Hello world' --gen-len 5 --stop-token -1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["sequences"][0]["prompt_tokens"].get<std::vector<std::int32_t>>(), ids);
  EXPECT_EQ(j["sequences"][0]["output_tokens"].get<std::vector<std::int32_t>>(), expected);
  // Text: the prompt, then the continuation's pieces with their leading spaces.
  const auto t = run_flexgen("generate --backend host " + dir.arg() + " --prompt 'Hello world' --gen-len 5 "
                             "--stop-token -1");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  std::string continuation;
  for (std::int32_t id : expected) continuation += tok.decode({id});
  EXPECT_EQ(t.out, "Hello world" + continuation + "\n");
  // add_bos_token false: no BOS before the text.
  dir.write("tokenizer_config.json", R"({"add_bos_token": false})");
  const auto n = run_flexgen("generate --backend host " + dir.arg() + " --prompt 'Hello world' --gen-len 2 --json");
  ASSERT_EQ(n.exit_code, 0) << n.err;
  EXPECT_EQ(nlohmann::json::parse(n.out)["sequences"][0]["prompt_tokens"].get<std::vector<std::int32_t>>(),
            std::vector<std::int32_t>(ids.begin() + 1, ids.end()));
}

TEST(LlamaCli, BatchOfTextPrompts) {
  LlamaDir dir;
  train_tokenizer(dir);
  const SentencePieceTokenizer tok = SentencePieceTokenizer::from_file(dir / "tokenizer.model");
  const auto input = dir.write("prompts.jsonl", "{\"id\": 1, \"prompt\": \"Hello world\"}\n"
                                                "{\"id\": 2, \"prompt\": \"The quick brown fox\", \"max_new_tokens\": 3}\n");
  const auto r = run_flexgen("batch --backend host " + dir.arg() + " --input " + shell_quote(input.string()) +
                             " --output " + shell_quote((dir / "out.jsonl").string()) + " --gen-len 4 --stop-token -1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream in(dir / "out.jsonl");
  std::string line;
  int rows = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    const std::string text = j["id"] == 1 ? "Hello world" : "The quick brown fox";
    std::vector<std::int32_t> ids = {1};
    for (std::int32_t id : tok.encode(text)) ids.push_back(id);
    const auto tokens = j["tokens"].get<std::vector<std::int32_t>>();
    const auto expected = testing::reference_llama_greedy(dir.spec(), dir.weights(), {ids}, 4)[0];
    EXPECT_EQ(tokens, std::vector<std::int32_t>(expected.begin(), expected.begin() + static_cast<std::ptrdiff_t>(tokens.size())));
    const std::string decoded = tok.decode(tokens);
    if (find_invalid_utf8(decoded) == decoded.size()) {  // else the output replaced the invalid bytes
      EXPECT_EQ(j["text"], decoded);
    }
    ++rows;
  }
  EXPECT_EQ(rows, 2);
}
#endif

// search and simulate take the table's LLaMA names; the searched policy fits every tier.
TEST(LlamaCli, SearchAndSimulateLlama70b) {
  const auto r = run_flexgen("search --model llama-2-70b --hardware h200 --prompt-len 128 --gen-len 8 "
                             "--gpu-mem 70GiB --cpu-mem 96GiB --disk-mem 40GiB --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto& best = j["best"];
  for (const char* tier : {"gpu", "cpu", "disk"}) {
    EXPECT_LE(best["peak_bytes"][tier].get<double>(), j["capacities"][tier].get<double>()) << tier;
  }
  EXPECT_LT(best["shares"]["weights"][0].get<double>(), 1.0);  // not all on the GPU
  // Simulate the printed command on the same machine.
  std::string command = best["command"].get<std::string>();
  ASSERT_EQ(command.rfind("flexgen generate ", 0), 0u);
  command = "simulate " + command.substr(std::string("flexgen generate ").size()) + " --hardware h200 --json";
  const auto s = run_flexgen(command);
  ASSERT_EQ(s.exit_code, 0) << s.err;
  const auto sim = nlohmann::json::parse(s.out);
  EXPECT_EQ(sim["model"], "llama-2-70b");
  EXPECT_GT(sim["throughput_tok_s"].get<double>(), 0.0);
  // The simulator allocates the plan's buffers: the search's buffer bytes, tier by tier.
  for (const char* tier : {"gpu", "cpu", "disk"}) {
    const double planned = best["buffer_bytes"][tier].get<double>();
    EXPECT_NEAR(sim["peak_memory"][std::string(tier) + "_bytes"].get<double>(), planned, 1e-9 * planned + 1) << tier;
  }
}

}  // namespace
}  // namespace flexgen
