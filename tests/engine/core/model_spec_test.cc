#include "engine/core/model_spec.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;
using testing::TempDir;

// Hand-worked parameter counts. Per layer: attention 4*(h*h + h), MLP (h*f + f) + (f*h + h),
// two LayerNorms 2*(2h). Embeddings: 50272*h tokens + 2050*h positions (2048 + 2) + 2h final LN.
//
// opt-125m, h = 768, f = 3072:
//   h*h = 589824, + h = 590592, x4 = 2362368
//   h*f = 2359296, + f = 2362368; f*h + h = 2360064; MLP = 4722432; LN = 4*768 = 3072
//   layer = 2362368 + 4722432 + 3072 = 7087872; x12 layers = 85054464
//   embeddings = 38608896 + 1574400 + 1536 = 40184832
//   total = 85054464 + 40184832 = 125239296
// opt-1.3b, h = 2048, f = 8192:
//   h*h = 4194304, + h = 4196352, x4 = 16785408
//   h*f = 16777216, + f = 16785408; f*h + h = 16779264; MLP = 33564672; LN = 8192
//   layer = 16785408 + 33564672 + 8192 = 50358272; x24 = 1208598528
//   embeddings = 102957056 + 4198400 + 4096 = 107159552
//   total = 1208598528 + 107159552 = 1315758080
// opt-6.7b, h = 4096, f = 16384:
//   h*h = 16777216, + h = 16781312, x4 = 67125248
//   h*f = 67108864, + f = 67125248; f*h + h = 67112960; MLP = 134238208; LN = 16384
//   layer = 67125248 + 134238208 + 16384 = 201379840; x32 = 6444154880
//   embeddings = 205914112 + 8396800 + 8192 = 214319104
//   total = 6444154880 + 214319104 = 6658473984
// opt-30b, h = 7168, f = 28672:
//   h*h = 51380224, + h = 51387392, x4 = 205549568
//   h*f = 205520896, + f = 205549568; f*h + h = 205528064; MLP = 411077632; LN = 28672
//   layer = 205549568 + 411077632 + 28672 = 616655872; x48 = 29599481856
//   embeddings = 360349696 + 14694400 + 14336 = 375058432
//   total = 29599481856 + 375058432 = 29974540288
// opt-175b, h = 12288, f = 49152:
//   h*h = 150994944, + h = 151007232, x4 = 604028928
//   h*f = 603979776, + f = 604028928; f*h + h = 603992064; MLP = 1208020992; LN = 49152
//   layer = 604028928 + 1208020992 + 49152 = 1812099072; x96 = 173961510912
//   embeddings = 617742336 + 25190400 + 24576 = 642957312
//   total = 173961510912 + 642957312 = 174604468224
struct ExpectedCounts {
  const char* name;
  std::int64_t layer;
  std::int64_t embedding;
  std::int64_t total;
};

constexpr ExpectedCounts kExpected[] = {
    {"opt-125m", 7087872, 40184832, 125239296},
    {"opt-1.3b", 50358272, 107159552, 1315758080},
    {"opt-6.7b", 201379840, 214319104, 6658473984},
    {"opt-30b", 616655872, 375058432, 29974540288},
    {"opt-175b", 1812099072, 642957312, 174604468224},
};

TEST(ModelSpec, ExactParameterCounts) {
  for (const ExpectedCounts& expected : kExpected) {
    SCOPED_TRACE(expected.name);
    const ModelSpec spec = ModelSpec::from_name(expected.name);
    EXPECT_EQ(spec.layer_params(), expected.layer);
    EXPECT_EQ(spec.embedding_params(), expected.embedding);
    EXPECT_EQ(spec.total_params(), expected.total);
    EXPECT_EQ(spec.layer_bytes(), 2 * expected.layer);  // fp16
    EXPECT_EQ(spec.total_bytes(), 2 * expected.total);
  }
}

TEST(ModelSpec, NominalSizes) {
  const struct {
    const char* name;
    double low;
    double high;
  } kNominal[] = {
      {"opt-125m", 0.12e9, 0.13e9}, {"opt-1.3b", 1.25e9, 1.35e9}, {"opt-2.7b", 2.6e9, 2.8e9},
      {"opt-6.7b", 6.6e9, 6.7e9},   {"opt-13b", 12.7e9, 13.1e9},  {"opt-30b", 29.5e9, 30.5e9},
      {"opt-66b", 65e9, 67e9},      {"opt-175b", 174e9, 176e9},
  };
  for (const auto& nominal : kNominal) {
    SCOPED_TRACE(nominal.name);
    const auto params = static_cast<double>(ModelSpec::from_name(nominal.name).total_params());
    EXPECT_GE(params, nominal.low);
    EXPECT_LE(params, nominal.high);
  }
}

TEST(ModelSpec, TableArchitectures) {
  const ModelSpec spec = ModelSpec::from_name("opt-66b");
  EXPECT_EQ(spec.name, "opt-66b");
  EXPECT_EQ(spec.family, ModelFamily::kOpt);
  EXPECT_EQ(spec.num_layers, 64);
  EXPECT_EQ(spec.hidden_size, 9216);
  EXPECT_EQ(spec.num_heads, 72);
  EXPECT_EQ(spec.head_dim(), 128);
  EXPECT_EQ(spec.ffn_dim, 36864);
  EXPECT_EQ(spec.vocab_size, 50272);
  EXPECT_EQ(spec.max_positions, 2048);
  EXPECT_EQ(spec.position_rows(), 2050);
  EXPECT_EQ(spec.pad_token_id, 1);
  EXPECT_EQ(spec.bos_token_id, 2);
  EXPECT_EQ(spec.eos_token_id, 2);
  EXPECT_EQ(spec.dtype, DType::kF16);
  EXPECT_EQ(spec.cache_bytes_per_token_per_layer(), 2 * 9216 * 2);
  const ModelSpec small = ModelSpec::from_name("opt-2.7b");
  EXPECT_EQ(small.num_layers, 32);
  EXPECT_EQ(small.hidden_size, 2560);
  EXPECT_EQ(small.num_heads, 32);
  EXPECT_EQ(small.ffn_dim, 10240);
  const ModelSpec thirteen = ModelSpec::from_name("opt-13b");
  EXPECT_EQ(thirteen.num_layers, 40);
  EXPECT_EQ(thirteen.hidden_size, 5120);
  EXPECT_EQ(thirteen.num_heads, 40);
  EXPECT_EQ(thirteen.ffn_dim, 20480);
  for (const std::string& name : ModelSpec::known_names()) {
    EXPECT_NO_THROW(ModelSpec::from_name(name).validate()) << name;
  }
  // The 8 OPT sizes, then the LLaMA table (tests/engine/core/llama_spec_test.cc).
  ASSERT_EQ(ModelSpec::known_names().size(), 14u);
  EXPECT_EQ(ModelSpec::known_names()[7], "opt-175b");
  EXPECT_EQ(ModelSpec::known_names()[8], "llama-2-7b");
}

TEST(ModelSpec, NameForms) {
  EXPECT_EQ(ModelSpec::from_name("facebook/opt-6.7b").name, "opt-6.7b");
  EXPECT_EQ(ModelSpec::from_name("OPT-6.7B").hidden_size, 4096);
  EXPECT_EQ(ModelSpec::from_name("Facebook/OPT-30b").num_heads, 56);
}

TEST(ModelSpec, UnknownNameListsKnownNames) {
  const std::string message = error_of([] { ModelSpec::from_name("opt-7b"); });
  EXPECT_THAT(message, HasSubstr("unknown model 'opt-7b'"));
  EXPECT_THAT(message, HasSubstr("opt-125m, opt-1.3b, opt-2.7b, opt-6.7b, opt-13b, opt-30b"));
  const std::string opt350 = error_of([] { ModelSpec::from_name("facebook/opt-350m"); });
  EXPECT_THAT(opt350, HasSubstr("'opt-350m' is not supported"));
}

TEST(ModelSpec, ValidateRejectsInconsistentSpecs) {
  ModelSpec spec = ModelSpec::from_name("opt-125m");
  spec.num_heads = 7;
  EXPECT_THAT(error_of([&] { spec.validate(); }),
              HasSubstr("hidden_size 768 is not divisible by the number of heads 7"));
  spec = ModelSpec::from_name("opt-125m");
  spec.num_layers = 0;
  EXPECT_THAT(error_of([&] { spec.validate(); }), HasSubstr("num_layers must be positive (got 0)"));
  spec = ModelSpec::from_name("opt-125m");
  spec.ffn_dim = -4;
  EXPECT_THAT(error_of([&] { spec.validate(); }), HasSubstr("ffn_dim must be positive (got -4)"));
  spec = ModelSpec::from_name("opt-125m");
  spec.eos_token_id = 50272;
  EXPECT_THAT(error_of([&] { spec.validate(); }),
              HasSubstr("eos_token_id 50272 is outside the vocabulary [0, 50272)"));
  spec = ModelSpec::from_name("opt-125m");
  spec.hidden_size = std::int64_t{1} << 40;
  EXPECT_THAT(error_of([&] { spec.validate(); }),
              HasSubstr("hidden_size 1099511627776 is too large"));
  spec = ModelSpec::from_name("opt-125m");
  spec.layer_norm_eps = 0.0;
  EXPECT_THAT(error_of([&] { spec.validate(); }), HasSubstr("layer_norm_eps"));
}

// ---- config.json ------------------------------------------------------------------------------

// facebook/opt-6.7b's config.json as published on the hub.
const char* const kOpt67Config = R"({
  "_name_or_path": "facebook/opt-6.7b",
  "_remove_final_layer_norm": false,
  "activation_dropout": 0.0,
  "activation_function": "relu",
  "architectures": ["OPTForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 2,
  "do_layer_norm_before": true,
  "dropout": 0.1,
  "eos_token_id": 2,
  "ffn_dim": 16384,
  "hidden_size": 4096,
  "init_std": 0.02,
  "layerdrop": 0.0,
  "max_position_embeddings": 2048,
  "model_type": "opt",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "pad_token_id": 1,
  "prefix": "</s>",
  "torch_dtype": "float16",
  "transformers_version": "4.21.0.dev0",
  "use_cache": true,
  "vocab_size": 50272,
  "word_embed_proj_dim": 4096
})";

// Writes `text` to <fresh dir>/<dir_name>/config.json and returns that path.
std::filesystem::path write_text(const std::string& text,
                                 const std::string& dir_name = "opt-6.7b") {
  static const TempDir root;  // removed when the tests end
  static std::atomic<int> counter{0};
  const std::filesystem::path dir = root / std::to_string(counter++) / dir_name;
  std::filesystem::create_directories(dir);
  const std::filesystem::path path = dir / "config.json";
  std::ofstream(path) << text;
  return path;
}

std::filesystem::path write_config(const nlohmann::json& config) {
  return write_text(config.dump(2));
}

nlohmann::json opt67_config() { return nlohmann::json::parse(kOpt67Config); }

TEST(ModelSpecConfig, ReadsPublishedOpt67Config) {
  const std::filesystem::path path = write_text(kOpt67Config);
  const ModelSpec spec = ModelSpec::from_config_json(path);
  EXPECT_EQ(spec.name, "opt-6.7b");  // the directory's name
  EXPECT_EQ(spec.num_layers, 32);
  EXPECT_EQ(spec.hidden_size, 4096);
  EXPECT_EQ(spec.num_heads, 32);
  EXPECT_EQ(spec.ffn_dim, 16384);
  EXPECT_EQ(spec.vocab_size, 50272);
  EXPECT_EQ(spec.max_positions, 2048);
  EXPECT_EQ(spec.pad_token_id, 1);
  EXPECT_EQ(spec.bos_token_id, 2);
  EXPECT_EQ(spec.eos_token_id, 2);
  EXPECT_EQ(spec.dtype, DType::kF16);
  EXPECT_EQ(spec.total_params(), 6658473984);
  // The directory works as well as the file.
  EXPECT_EQ(ModelSpec::from_config_json(path.parent_path()).hidden_size, 4096);
}

TEST(ModelSpecConfig, OptionalFieldsAndDtype) {
  nlohmann::json config = opt67_config();
  for (const char* key : {"word_embed_proj_dim", "do_layer_norm_before", "activation_function",
                          "torch_dtype", "_remove_final_layer_norm"}) {
    config.erase(key);
  }
  config["hidden_size"] = 768;
  config["num_attention_heads"] = 12;
  config["ffn_dim"] = 3072;
  config["num_hidden_layers"] = 12;
  config["enable_bias"] = true;
  config["layer_norm_elementwise_affine"] = true;
  const ModelSpec spec = ModelSpec::from_config(config, "tiny", "cfg");
  EXPECT_EQ(spec.name, "tiny");
  EXPECT_EQ(spec.total_params(), 125239296);  // opt-125m's count, worked out above
  EXPECT_EQ(spec.dtype, DType::kF16);
  config["torch_dtype"] = "float32";
  EXPECT_EQ(ModelSpec::from_config(config, "tiny", "cfg").dtype, DType::kF32);
  EXPECT_EQ(ModelSpec::from_config(config, "tiny", "cfg").total_bytes(), 4 * 125239296);
  config["dtype"] = "bfloat16";  // newer transformers
  EXPECT_EQ(ModelSpec::from_config(config, "tiny", "cfg").dtype, DType::kBF16);
}

TEST(ModelSpecConfig, MalformedJson) {
  const std::filesystem::path path = write_text("{\n  \"hidden_size\": 4096,\n  oops\n}");
  const std::string message = error_of([&] { ModelSpec::from_config_json(path); });
  EXPECT_THAT(message, HasSubstr(path.string() + ": malformed JSON"));
  EXPECT_THAT(message, HasSubstr("line 3"));
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

TEST(ModelSpecConfig, MissingFile) {
  const std::string message =
      error_of([] { ModelSpec::from_config_json("/nonexistent/opt-1.3b/config.json"); });
  EXPECT_THAT(message, HasSubstr("/nonexistent/opt-1.3b/config.json: no such file"));
}

TEST(ModelSpecConfig, BadCasesNameTheProblem) {
  struct Case {
    const char* what;
    std::function<void(nlohmann::json&)> edit;
    const char* expected;
  };
  const Case cases[] = {
      {"missing field", [](nlohmann::json& c) { c.erase("hidden_size"); },
       ": missing key 'hidden_size'"},
      {"wrong type", [](nlohmann::json& c) { c["hidden_size"] = "4096"; },
       ": field 'hidden_size': expected a positive integer (got \"4096\")"},
      {"float", [](nlohmann::json& c) { c["num_hidden_layers"] = 32.0; },
       ": field 'num_hidden_layers': expected a positive integer (got 32.0)"},
      {"zero", [](nlohmann::json& c) { c["ffn_dim"] = 0; },
       ": field 'ffn_dim': expected a positive integer (got 0)"},
      {"negative token", [](nlohmann::json& c) { c["pad_token_id"] = -1; },
       ": field 'pad_token_id': expected a non-negative integer (got -1)"},
      {"gpt2", [](nlohmann::json& c) { c["model_type"] = "gpt2"; },
       ": model_type \"gpt2\" is not supported (only \"opt\" and \"llama\")"},
      {"opt-350m projection",
       [](nlohmann::json& c) {
         c["hidden_size"] = 1024;
         c["num_attention_heads"] = 16;
         c["word_embed_proj_dim"] = 512;
       },
       ": word_embed_proj_dim 512 differs from hidden_size 1024; projected embeddings (as in "
       "opt-350m) are not supported"},
      {"post-LN", [](nlohmann::json& c) { c["do_layer_norm_before"] = false; },
       ": do_layer_norm_before false (post-LayerNorm, as in opt-350m) is not supported"},
      {"heads", [](nlohmann::json& c) { c["num_attention_heads"] = 30; },
       ": hidden_size 4096 is not divisible by the number of heads 30"},
      {"activation", [](nlohmann::json& c) { c["activation_function"] = "gelu"; },
       ": field 'activation_function': only \"relu\" is supported (got \"gelu\")"},
      {"no bias", [](nlohmann::json& c) { c["enable_bias"] = false; },
       ": enable_bias false (linear layers without biases) is not supported"},
      {"no affine", [](nlohmann::json& c) { c["layer_norm_elementwise_affine"] = false; },
       ": layer_norm_elementwise_affine false"},
      {"bool type", [](nlohmann::json& c) { c["do_layer_norm_before"] = "yes"; },
       ": field 'do_layer_norm_before': expected true or false (got \"yes\")"},
      {"dtype", [](nlohmann::json& c) { c["torch_dtype"] = "int8"; },
       ": field 'torch_dtype': unsupported dtype \"int8\""},
      {"token outside vocabulary", [](nlohmann::json& c) { c["eos_token_id"] = 60000; },
       ": eos_token_id 60000 is outside the vocabulary [0, 50272)"},
      {"huge", [](nlohmann::json& c) { c["vocab_size"] = 99999999999999; },
       ": vocab_size 99999999999999 is too large"},
      {"no final LN", [](nlohmann::json& c) { c["_remove_final_layer_norm"] = true; },
       ": _remove_final_layer_norm true"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    nlohmann::json config = opt67_config();
    c.edit(config);
    const std::filesystem::path path = write_config(config);
    const std::string message = error_of([&] { ModelSpec::from_config_json(path); });
    EXPECT_THAT(message, HasSubstr(path.string() + c.expected));
    EXPECT_EQ(message.find('\n'), std::string::npos);
  }
  EXPECT_THAT(error_of([] { ModelSpec::from_config(nlohmann::json::array(), "x", "cfg"); }),
              HasSubstr("cfg: expected a JSON object"));
}

}  // namespace
}  // namespace flexgen
