// LLaMA weights: HF names and shapes written out by hand, files built in the test (single and
// sharded), refusals, the dummy weights' distribution.
#include "engine/model/llama_weights.h"

#include <cmath>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "engine/io/safetensors.h"
#include "support/test_util.h"
#include "tests/support/random_llama.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;
using testing::TempDir;

// tiny_llama_spec: h 32, kv_dim 16, f 48, vocab 40, 2 layers.
std::vector<std::pair<std::string, Shape>> expected_names(bool tied) {
  std::vector<std::pair<std::string, Shape>> out = {{"embed_tokens.weight", {40, 32}}, {"norm.weight", {32}}};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    out.push_back({p + "self_attn.q_proj.weight", {32, 32}});
    out.push_back({p + "self_attn.k_proj.weight", {16, 32}});
    out.push_back({p + "self_attn.v_proj.weight", {16, 32}});
    out.push_back({p + "self_attn.o_proj.weight", {32, 32}});
    out.push_back({p + "input_layernorm.weight", {32}});
    out.push_back({p + "mlp.gate_proj.weight", {48, 32}});
    out.push_back({p + "mlp.up_proj.weight", {48, 32}});
    out.push_back({p + "mlp.down_proj.weight", {32, 48}});
    out.push_back({p + "post_attention_layernorm.weight", {32}});
  }
  if (!tied) out.push_back({"lm_head.weight", {40, 32}});
  return out;
}

TEST(LlamaWeights, SlotNamesAndShapes) {
  ModelSpec spec = testing::tiny_llama_spec();
  LlamaWeights w;
  std::vector<std::pair<std::string, Shape>> got;
  for (const TensorSlot& s : llama_tensor_slots(spec, w)) got.emplace_back(s.name, s.shape);
  EXPECT_EQ(got, expected_names(false));
  spec.tie_word_embeddings = true;
  got.clear();
  for (const TensorSlot& s : llama_tensor_slots(spec, w)) got.emplace_back(s.name, s.shape);
  EXPECT_EQ(got, expected_names(true));
}

// Writes the weights under their HF names (F16, values exact in F16) into dir.
void write_model(const std::filesystem::path& file, const LlamaWeights& w, const ModelSpec& spec,
                 std::vector<std::pair<std::string, Tensor>> extra = {}) {
  std::vector<std::pair<std::string, const Tensor*>> tensors;
  LlamaWeights& mutable_w = const_cast<LlamaWeights&>(w);
  for (const TensorSlot& s : llama_tensor_slots(spec, mutable_w)) {
    const std::string name = s.name == "lm_head.weight" ? s.name : "model." + s.name;
    extra.emplace_back(name, *s.target);
  }
  for (const auto& [name, t] : extra) tensors.emplace_back(name, &t);
  write_safetensors(file, tensors, /*as_f16=*/true);
}

LlamaWeights exact_f16_weights(const ModelSpec& spec) {
  LlamaWeights w = testing::random_llama_weights(spec, 3, 0.25);
  for (const TensorSlot& s : llama_tensor_slots(spec, w)) {
    for (float& v : s.target->span()) v = half_to_float(float_to_half(v));
  }
  return w;
}

void expect_equal(const ModelSpec& spec, LlamaWeights& a, LlamaWeights& b) {
  const auto sa = llama_tensor_slots(spec, a);
  const auto sb = llama_tensor_slots(spec, b);
  ASSERT_EQ(sa.size(), sb.size());
  for (std::size_t i = 0; i < sa.size(); ++i) {
    ASSERT_EQ(sa[i].target->shape(), sb[i].target->shape()) << sa[i].name;
    for (std::int64_t j = 0; j < sa[i].target->numel(); ++j) ASSERT_EQ((*sa[i].target)[j], (*sb[i].target)[j]) << sa[i].name;
  }
}

TEST(LlamaWeights, LoadsASingleFile) {
  const ModelSpec spec = testing::tiny_llama_spec();
  LlamaWeights w = exact_f16_weights(spec);
  TempDir dir;
  // An old conversion's rotary buffer is ignored.
  write_model(dir / "model.safetensors", w, spec, {{"model.layers.0.self_attn.rotary_emb.inv_freq", Tensor({4})}});
  OptWeightsLoadReport report;
  LlamaWeights loaded = load_llama_weights(spec, dir.path(), &report);
  EXPECT_EQ(report.tensors_read, 21);
  EXPECT_EQ(report.files_opened.size(), 1u);
  expect_equal(spec, w, loaded);
}

TEST(LlamaWeights, LoadsShardsAndTiedEmbeddings) {
  ModelSpec spec = testing::tiny_llama_spec();
  spec.tie_word_embeddings = true;
  LlamaWeights w = exact_f16_weights(spec);
  TempDir dir;
  // Layer 1 in a second shard; an lm_head.weight of the right shape is ignored when tied.
  std::vector<std::pair<std::string, const Tensor*>> first, second;
  std::string index = "{\"metadata\": {}, \"weight_map\": {";
  bool comma = false;
  for (const TensorSlot& s : llama_tensor_slots(spec, w)) {
    const std::string name = "model." + s.name;
    const bool in_second = s.name.rfind("layers.1.", 0) == 0;
    (in_second ? second : first).emplace_back(name, s.target);
    index += std::string(comma ? ", " : "") + "\"" + name + "\": \"" + (in_second ? "b.safetensors" : "a.safetensors") + "\"";
    comma = true;
  }
  const Tensor head({40, 32}, 7.0f);
  first.emplace_back("lm_head.weight", &head);
  index += ", \"lm_head.weight\": \"a.safetensors\"}}";
  write_safetensors(dir / "a.safetensors", first, true);
  write_safetensors(dir / "b.safetensors", second, true);
  dir.write("model.safetensors.index.json", index);
  OptWeightsLoadReport report;
  LlamaWeights loaded = load_llama_weights(spec, dir.path(), &report);
  EXPECT_EQ(report.files_opened.size(), 2u);
  EXPECT_TRUE(loaded.lm_head.empty());
  EXPECT_EQ(&loaded.head(), &loaded.embed_tokens);
  expect_equal(spec, w, loaded);
}

TEST(LlamaWeights, RefusesMismatches) {
  const ModelSpec spec = testing::tiny_llama_spec();
  const LlamaWeights w = exact_f16_weights(spec);
  {
    TempDir dir;
    ModelSpec tied = spec;
    tied.tie_word_embeddings = true;
    write_model(dir / "model.safetensors", w, tied);  // no lm_head in the file
    EXPECT_THAT(error_of([&] { load_llama_weights(spec, dir.path()); }),
                HasSubstr("missing tensor lm_head.weight (config.json says tie_word_embeddings is false)"));
  }
  {
    TempDir dir;
    write_model(dir / "model.safetensors", w, spec, {{"model.layers.0.self_attn.q_proj.bias", Tensor({32})}});
    EXPECT_THAT(error_of([&] { load_llama_weights(spec, dir.path()); }),
                HasSubstr("unexpected tensor model.layers.0.self_attn.q_proj.bias"));
  }
  {
    TempDir dir;
    ModelSpec more_kv = spec;
    more_kv.num_kv_heads = 4;  // the file has 2 key/value heads
    write_model(dir / "model.safetensors", w, spec);
    EXPECT_THAT(error_of([&] { load_llama_weights(more_kv, dir.path()); }),
                HasSubstr("tensor model.layers.0.self_attn.k_proj.weight: expected [32, 32], got [16, 32]"));
  }
  {
    TempDir dir;
    EXPECT_THAT(error_of([&] { load_llama_weights(spec, dir.path()); }), HasSubstr("no model.safetensors"));
  }
}

TEST(LlamaWeights, DummyWeightsAreSeededAndScaled) {
  const ModelSpec spec = testing::tiny_llama_spec();
  const LlamaWeights a = make_dummy_llama_weights(spec, 1);
  const LlamaWeights b = make_dummy_llama_weights(spec, 1);
  const LlamaWeights c = make_dummy_llama_weights(spec, 2);
  EXPECT_EQ(a.layers[1].up_weight.span()[5], b.layers[1].up_weight.span()[5]);
  EXPECT_NE(a.layers[1].up_weight.span()[5], c.layers[1].up_weight.span()[5]);
  // Linear weights: mean 0, standard deviation 0.02; norms: 1 + the same noise.
  double sum = 0, sq = 0;
  const auto& g = a.layers[0].gate_weight;
  for (float v : g.span()) {
    sum += v;
    sq += static_cast<double>(v) * v;
  }
  const double n = static_cast<double>(g.numel());
  EXPECT_NEAR(sum / n, 0.0, 0.003);
  EXPECT_NEAR(std::sqrt(sq / n), 0.02, 0.002);
  for (float v : a.layers[0].input_norm.span()) EXPECT_NEAR(v, 1.0, 0.1);
  EXPECT_EQ(a.lm_head.shape(), (Shape{40, 32}));
  // A tensor's values depend on its name and seed, not on the number of layers.
  ModelSpec one = spec;
  one.num_layers = 1;
  const LlamaWeights d = make_dummy_llama_weights(one, 1);
  EXPECT_EQ(d.layers[0].down_weight.span()[17], a.layers[0].down_weight.span()[17]);
}

}  // namespace
}  // namespace flexgen
