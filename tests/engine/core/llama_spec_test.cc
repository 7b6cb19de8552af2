// The LLaMA family of ModelSpec: exact parameter counts worked out by hand, the table, and the
// HF config.json reader (transformers 4 and 5 layouts of the rotary settings, refusals).
#include <cmath>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/model_spec.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;

// Hand-worked parameter counts. Per layer: q, o h*h each; k, v kv*h each (kv = kv_heads * 128);
// gate, up, down h*f each; two RMSNorm weights h each. Outside the layers: vocab*h embedding,
// h final norm, vocab*h lm_head (all of these models are untied).
//
// llama-2-7b, h = 4096, f = 11008, kv = 4096, V = 32000, 32 layers:
//   2*4096^2 = 33554432; 2*4096*4096 = 33554432; 3*4096*11008 = 135266304; norms 8192
//   layer = 202383360; x32 = 6476267520
//   outside = 131072000 + 4096 + 131072000 = 262148096
//   total = 6738415616
// llama-2-13b, h = 5120, f = 13824, kv = 5120, V = 32000, 40 layers:
//   2*5120^2 = 52428800, twice = 104857600; 3*5120*13824 = 212336640; norms 10240
//   layer = 317204480; x40 = 12688179200
//   outside = 163840000 + 5120 + 163840000 = 327685120
//   total = 13015864320
// llama-2-70b, h = 8192, f = 28672, kv = 8 * 128 = 1024, V = 32000, 80 layers:
//   2*8192^2 = 134217728; 2*8192*1024 = 16777216; 3*8192*28672 = 704643072; norms 16384
//   layer = 855654400; x80 = 68452352000
//   outside = 262144000 + 8192 + 262144000 = 524296192
//   total = 68976648192
// llama-3-8b, h = 4096, f = 14336, kv = 1024, V = 128256, 32 layers:
//   33554432 + 2*4096*1024 = 8388608 + 3*4096*14336 = 176160768 + 8192
//   layer = 218112000; x32 = 6979584000
//   outside = 525336576 + 4096 + 525336576 = 1050677248
//   total = 8030261248
// llama-3-70b: the layers of llama-2-70b, V = 128256:
//   outside = 1050673152 + 8192 + 1050673152 = 2101354496
//   total = 68452352000 + 2101354496 = 70553706496
struct Expected {
  const char* name;
  std::int64_t layer, outside, total;
};
constexpr Expected kExpected[] = {
    {"llama-2-7b", 202383360, 262148096, 6738415616},
    {"llama-2-13b", 317204480, 327685120, 13015864320},
    {"llama-2-70b", 855654400, 524296192, 68976648192},
    {"llama-3-8b", 218112000, 1050677248, 8030261248},
    {"llama-3-70b", 855654400, 2101354496, 70553706496},
};

TEST(LlamaSpec, ExactParameterCounts) {
  for (const Expected& e : kExpected) {
    SCOPED_TRACE(e.name);
    const ModelSpec spec = ModelSpec::from_name(e.name);
    EXPECT_EQ(spec.family, ModelFamily::kLlama);
    EXPECT_EQ(spec.layer_params(), e.layer);
    EXPECT_EQ(spec.embedding_params(), e.outside);
    EXPECT_EQ(spec.total_params(), e.total);
    EXPECT_EQ(spec.total_bytes(), 2 * e.total);
  }
}

TEST(LlamaSpec, TiedEmbeddingsCountTheTableOnce) {
  ModelSpec spec = ModelSpec::from_name("llama-2-7b");
  spec.tie_word_embeddings = true;
  EXPECT_EQ(spec.embedding_params(), 131072000 + 4096);
  EXPECT_EQ(spec.total_params(), 6738415616 - 131072000);
}

TEST(LlamaSpec, CacheBytesUseKeyValueHeads) {
  // Grouped-query attention: 8 key/value heads of 128 instead of 64 heads: 1/8 of the cache.
  const ModelSpec l70 = ModelSpec::from_name("llama-2-70b");
  EXPECT_EQ(l70.kv_heads(), 8);
  EXPECT_EQ(l70.kv_dim(), 1024);
  EXPECT_EQ(l70.queries_per_kv_head(), 8);
  EXPECT_EQ(l70.cache_bytes_per_token_per_layer(), 2 * 1024 * 2);
  const ModelSpec l7 = ModelSpec::from_name("llama-2-7b");
  EXPECT_EQ(l7.cache_bytes_per_token_per_layer(), 2 * 4096 * 2);
  EXPECT_EQ(l7.queries_per_kv_head(), 1);
  // OPT specs built by hand leave num_kv_heads at 0: as many as heads.
  ModelSpec opt;
  opt.hidden_size = 64;
  opt.num_heads = 4;
  EXPECT_EQ(opt.kv_heads(), 4);
  EXPECT_EQ(opt.cache_bytes_per_token_per_layer(), 2 * 64 * 2);
}

TEST(LlamaSpec, Table) {
  const ModelSpec s = ModelSpec::from_name("llama-3-8b");
  EXPECT_EQ(s.name, "llama-3-8b");
  EXPECT_EQ(s.num_layers, 32);
  EXPECT_EQ(s.hidden_size, 4096);
  EXPECT_EQ(s.num_heads, 32);
  EXPECT_EQ(s.num_kv_heads, 8);
  EXPECT_EQ(s.head_dim(), 128);
  EXPECT_EQ(s.ffn_dim, 14336);
  EXPECT_EQ(s.vocab_size, 128256);
  EXPECT_EQ(s.max_positions, 8192);
  EXPECT_EQ(s.rope_theta, 500000.0);
  EXPECT_EQ(s.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_EQ(s.bos_token_id, 128000);
  EXPECT_EQ(s.eos_token_id, 128001);
  EXPECT_FALSE(s.tie_word_embeddings);
  EXPECT_EQ(s.layer_norm_eps, 1e-5);
  const ModelSpec l31 = ModelSpec::from_name("llama-3.1-8b");
  EXPECT_EQ(l31.rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_EQ(l31.rope_scaling.factor, 8.0);
  EXPECT_EQ(l31.rope_scaling.original_max_positions, 8192);
  EXPECT_EQ(l31.max_positions, 131072);
  // HF repository names.
  EXPECT_EQ(ModelSpec::from_name("meta-llama/Llama-2-70b-hf").name, "llama-2-70b");
  EXPECT_EQ(ModelSpec::from_name("meta-llama/Meta-Llama-3-8B").name, "llama-3-8b");
  EXPECT_NO_THROW(s.validate());
}

TEST(LlamaSpec, KnownNamesListBothFamilies) {
  const auto names = ModelSpec::known_names();
  EXPECT_THAT(names, ::testing::Contains("opt-175b"));
  EXPECT_THAT(names, ::testing::Contains("llama-2-70b"));
  EXPECT_THAT(names, ::testing::Contains("llama-3-8b"));
  EXPECT_THAT(error_of([] { ModelSpec::from_name("llama-9-1b"); }), HasSubstr("llama-2-7b"));
  for (const std::string& name : names) EXPECT_NO_THROW(ModelSpec::from_name(name).validate()) << name;
}

// A Llama-2-style config.json (transformers 4.3x).
nlohmann::json llama2_config() {
  return nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
    "intermediate_size": 176, "num_hidden_layers": 3, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 256,
    "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "rope_scaling": null, "hidden_act": "silu",
    "attention_bias": false, "mlp_bias": false, "tie_word_embeddings": false, "bos_token_id": 1,
    "eos_token_id": 2, "pad_token_id": null, "torch_dtype": "float32", "pretraining_tp": 1})");
}

TEST(LlamaSpec, ReadsAConfig) {
  const ModelSpec s = ModelSpec::from_config(llama2_config(), "tiny", "config.json");
  EXPECT_EQ(s.family, ModelFamily::kLlama);
  EXPECT_EQ(s.name, "tiny");
  EXPECT_EQ(s.num_layers, 3);
  EXPECT_EQ(s.hidden_size, 64);
  EXPECT_EQ(s.ffn_dim, 176);
  EXPECT_EQ(s.num_heads, 4);
  EXPECT_EQ(s.num_kv_heads, 2);
  EXPECT_EQ(s.vocab_size, 300);
  EXPECT_EQ(s.max_positions, 256);
  EXPECT_EQ(s.layer_norm_eps, 1e-6);
  EXPECT_EQ(s.rope_theta, 10000.0);
  EXPECT_EQ(s.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_FALSE(s.tie_word_embeddings);
  EXPECT_EQ(s.bos_token_id, 1);
  EXPECT_EQ(s.eos_token_id, 2);
  EXPECT_EQ(s.pad_token_id, 2);  // none given: the end token
  EXPECT_EQ(s.dtype, DType::kF32);
  // Counts: layer 2*64*64 + 2*64*32 + 3*64*176 + 2*64 = 8192 + 4096 + 33792 + 128 = 46208.
  EXPECT_EQ(s.layer_params(), 46208);
  EXPECT_EQ(s.total_params(), 3 * 46208 + 300 * 64 * 2 + 64);
}

TEST(LlamaSpec, ReadsTransformers5RopeParameters) {
  nlohmann::json c = llama2_config();
  c.erase("rope_theta");
  c.erase("rope_scaling");
  c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
  c["dtype"] = "bfloat16";
  c.erase("torch_dtype");
  c["tie_word_embeddings"] = true;
  c["eos_token_id"] = {7, 8};
  const ModelSpec s = ModelSpec::from_config(c, "m", "c.json");
  EXPECT_EQ(s.rope_theta, 500000.0);
  EXPECT_EQ(s.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_EQ(s.dtype, DType::kBF16);
  EXPECT_TRUE(s.tie_word_embeddings);
  EXPECT_EQ(s.eos_token_id, 7);  // the first of a list
}

TEST(LlamaSpec, ReadsRopeScaling) {
  nlohmann::json c = llama2_config();
  c["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  ModelSpec s = ModelSpec::from_config(c, "m", "c.json");
  EXPECT_EQ(s.rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_EQ(s.rope_scaling.factor, 4.0);
  c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  s = ModelSpec::from_config(c, "m", "c.json");
  EXPECT_EQ(s.rope_scaling, (RopeScaling{RopeScalingType::kLlama3, 8.0, 1.0, 4.0, 8192}));
  c.erase("rope_scaling");
  c["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 32.0},
                          {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 8192}};
  s = ModelSpec::from_config(c, "m", "c.json");
  EXPECT_EQ(s.rope_scaling.factor, 32.0);
  EXPECT_EQ(s.rope_theta, 500000.0);
}

TEST(LlamaSpec, RefusesWhatItCannotRun) {
  const auto message = [](const std::function<void(nlohmann::json&)>& change) {
    nlohmann::json c = llama2_config();
    change(c);
    return error_of([&] { ModelSpec::from_config(c, "m", "dir/config.json"); });
  };
  EXPECT_THAT(message([](auto& c) { c["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}}; }),
              HasSubstr("dir/config.json: field 'rope_scaling.rope_type': rope type \"yarn\" is not supported"));
  EXPECT_THAT(message([](auto& c) { c["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}}; }),
              HasSubstr("\"dynamic\" is not supported (supported: default, linear, llama3)"));
  EXPECT_THAT(message([](auto& c) { c["rope_scaling"] = {{"type", "linear"}}; }),
              HasSubstr("missing key 'factor'"));
  EXPECT_THAT(message([](auto& c) { c["rope_scaling"] = {{"type", "linear"}, {"factor", -1.0}}; }),
              HasSubstr("factor -1 must be positive"));
  EXPECT_THAT(message([](auto& c) { c["num_key_value_heads"] = 3; }), HasSubstr("num_kv_heads 3 must divide"));
  EXPECT_THAT(message([](auto& c) { c["attention_bias"] = true; }),
              HasSubstr("field 'attention_bias': biases in LLaMA layers are not supported"));
  EXPECT_THAT(message([](auto& c) { c["hidden_act"] = "gelu"; }), HasSubstr("only \"silu\""));
  EXPECT_THAT(message([](auto& c) { c["head_dim"] = 32; }), HasSubstr("field 'head_dim': 32 differs"));
  EXPECT_THAT(message([](auto& c) { c.erase("intermediate_size"); }), HasSubstr("missing key 'intermediate_size'"));
  EXPECT_THAT(message([](auto& c) { c["rope_theta"] = "big"; }), HasSubstr("field 'rope_theta': expected a number"));
  EXPECT_THAT(message([](auto& c) { c["num_attention_heads"] = 64; c["num_key_value_heads"] = 64; }),
              HasSubstr("head_dim 1 is odd"));
  EXPECT_THAT(message([](auto& c) { c["model_type"] = "mistral"; }), HasSubstr("only \"opt\" and \"llama\""));
  // Every message is one line.
  EXPECT_THAT(message([](auto& c) { c["rope_scaling"] = {{"type", "yarn"}}; }), ::testing::Not(HasSubstr("\n")));
}

}  // namespace
}  // namespace flexgen
