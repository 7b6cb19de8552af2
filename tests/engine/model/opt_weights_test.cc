#include "engine/model/opt_weights.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "engine/io/safetensors.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;
using testing::TempDir;
namespace fs = std::filesystem;

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good());
}

// Filled field by field: ModelSpec's non-inline members belong to another part of the code.
ModelSpec tiny_spec(std::int64_t layers = 2) {
  ModelSpec spec;
  spec.name = "tiny";
  spec.num_layers = layers;
  spec.hidden_size = 8;
  spec.num_heads = 2;
  spec.ffn_dim = 32;
  spec.vocab_size = 50;
  spec.max_positions = 16;
  return spec;
}

// The tensors of the tiny model, names and shapes written out by hand, values exact in F16:
// tensor j, element i holds (j - 18) + (i % 32) / 32.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

std::vector<std::pair<std::string, Shape>> tiny_names_and_shapes(std::int64_t layers) {
  std::vector<std::pair<std::string, Shape>> out = {{"embed_tokens.weight", {50, 8}},
                                                    {"embed_positions.weight", {18, 8}},
                                                    {"final_layer_norm.weight", {8}},
                                                    {"final_layer_norm.bias", {8}}};
  for (std::int64_t l = 0; l < layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      out.push_back({p + "self_attn." + proj + ".weight", {8, 8}});
      out.push_back({p + "self_attn." + proj + ".bias", {8}});
    }
    out.push_back({p + "self_attn_layer_norm.weight", {8}});
    out.push_back({p + "self_attn_layer_norm.bias", {8}});
    out.push_back({p + "fc1.weight", {32, 8}});
    out.push_back({p + "fc1.bias", {32}});
    out.push_back({p + "fc2.weight", {8, 32}});
    out.push_back({p + "fc2.bias", {8}});
    out.push_back({p + "final_layer_norm.weight", {8}});
    out.push_back({p + "final_layer_norm.bias", {8}});
  }
  return out;
}

NamedTensors reference_tensors(const std::string& prefix, std::int64_t layers = 2) {
  NamedTensors out;
  const auto names = tiny_names_and_shapes(layers);
  for (std::size_t j = 0; j < names.size(); ++j) {
    Tensor t(names[j].second);
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      t[i] = static_cast<float>(static_cast<double>(j) - 18.0 + static_cast<double>(i % 32) / 32.0);
    }
    out.emplace_back(prefix + names[j].first, std::move(t));
  }
  return out;
}

void write_tensors(const fs::path& path, const NamedTensors& tensors, bool as_f16 = false) {
  std::vector<std::pair<std::string, const Tensor*>> refs;
  for (const auto& [name, t] : tensors) refs.emplace_back(name, &t);
  write_safetensors(path, refs, as_f16);
}

// Checks every tensor of `w` against the reference, looked up by the name without its prefix.
void expect_matches_reference(const ModelSpec& spec, OptWeights& w, const NamedTensors& ref,
                              const std::string& prefix) {
  for (const TensorSlot& slot : opt_tensor_slots(spec, w)) {
    const auto it = std::find_if(ref.begin(), ref.end(), [&](const auto& p) { return p.first == prefix + slot.name; });
    ASSERT_NE(it, ref.end()) << slot.name;
    ASSERT_EQ(slot.target->shape(), it->second.shape()) << slot.name;
    for (std::int64_t i = 0; i < it->second.numel(); ++i) {
      ASSERT_EQ((*slot.target)[i], it->second[i]) << slot.name << " element " << i;
    }
  }
}

// ---- slots -------------------------------------------------------------------------------------

TEST(OptTensorSlots, NamesShapesAndTargets) {
  const ModelSpec spec = tiny_spec();
  OptWeights w;
  const std::vector<TensorSlot> slots = opt_tensor_slots(spec, w);
  const auto expected = tiny_names_and_shapes(2);
  ASSERT_EQ(slots.size(), 36u);
  ASSERT_EQ(w.layers.size(), 2u);
  std::set<std::string> names;
  std::set<const Tensor*> targets;
  for (const TensorSlot& slot : slots) {
    names.insert(slot.name);
    targets.insert(slot.target);
    const auto it = std::find_if(expected.begin(), expected.end(), [&](const auto& p) { return p.first == slot.name; });
    ASSERT_NE(it, expected.end()) << slot.name;
    EXPECT_EQ(slot.shape, it->second) << slot.name;
  }
  EXPECT_EQ(names.size(), 36u);
  EXPECT_EQ(targets.size(), 36u);
  auto target_of = [&](const std::string& name) {
    for (const TensorSlot& s : slots) {
      if (s.name == name) return s.target;
    }
    return static_cast<Tensor*>(nullptr);
  };
  EXPECT_EQ(target_of("embed_tokens.weight"), &w.embed_tokens);
  EXPECT_EQ(target_of("embed_positions.weight"), &w.embed_positions);
  EXPECT_EQ(target_of("final_layer_norm.bias"), &w.final_ln_bias);
  EXPECT_EQ(target_of("layers.1.fc2.weight"), &w.layers[1].fc2_weight);
  EXPECT_EQ(target_of("layers.0.self_attn.k_proj.bias"), &w.layers[0].k_bias);
  EXPECT_EQ(target_of("layers.1.self_attn_layer_norm.weight"), &w.layers[1].attn_ln_weight);
  EXPECT_EQ(target_of("layers.0.final_layer_norm.bias"), &w.layers[0].mlp_ln_bias);
  EXPECT_EQ(target_of("layers.1.self_attn.out_proj.weight"), &w.layers[1].out_weight);
}

// ---- loading -----------------------------------------------------------------------------------

TEST(OptWeightsLoad, SingleFileF32WithCausalLmPrefixAndLmHead) {
  TempDir dir;
  const ModelSpec spec = tiny_spec();
  NamedTensors ref = reference_tensors("model.decoder.");
  ref.emplace_back("lm_head.weight", Tensor({50, 8}, 3.0f));
  write_tensors(dir / "model.safetensors", ref);

  OptWeightsLoadReport report;
  OptWeights w = load_opt_weights(spec, dir.path(), &report);
  expect_matches_reference(spec, w, ref, "model.decoder.");
  EXPECT_EQ(w.embed_tokens[0], -18.0f);  // tensor 0, element 0, by hand
  EXPECT_EQ(w.embed_tokens[33], -18.0f + 1.0f / 32.0f);
  EXPECT_EQ(report.files_opened, std::vector<fs::path>{dir / "model.safetensors"});
  EXPECT_EQ(report.tensors_read, 36);
}

TEST(OptWeightsLoad, SingleFileF16WithModelPrefix) {
  TempDir dir;
  const ModelSpec spec = tiny_spec();
  const NamedTensors ref = reference_tensors("decoder.");
  write_tensors(dir / "model.safetensors", ref, /*as_f16=*/true);
  OptWeights w = load_opt_weights(spec, dir.path());
  expect_matches_reference(spec, w, ref, "decoder.");
}

TEST(OptWeightsLoad, ShardedWithIndexOpensEachShardOnce) {
  TempDir dir;
  const ModelSpec spec = tiny_spec();
  NamedTensors ref = reference_tensors("model.decoder.");
  ref.emplace_back("lm_head.weight", Tensor({50, 8}, 0.0f));
  // Interleave the tensors over two shards so that loading in slot order alternates between them.
  NamedTensors shard1, shard2;
  std::string weight_map;
  for (std::size_t j = 0; j < ref.size(); ++j) {
    const std::string shard = j % 2 == 0 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    (j % 2 == 0 ? shard1 : shard2).push_back(ref[j]);
    weight_map += (weight_map.empty() ? "" : ",") + std::string("\"") + ref[j].first + "\":\"" + shard + "\"";
  }
  write_tensors(dir / "model-00001-of-00002.safetensors", shard1);
  write_tensors(dir / "model-00002-of-00002.safetensors", shard2, /*as_f16=*/true);
  write_text(dir / "model.safetensors.index.json",
             R"({"metadata":{"total_size":1234},"weight_map":{)" + weight_map + "}}");

  OptWeightsLoadReport report;
  OptWeights w = load_opt_weights(spec, dir.path(), &report);
  expect_matches_reference(spec, w, ref, "model.decoder.");
  EXPECT_EQ(report.files_opened, (std::vector<fs::path>{dir / "model-00001-of-00002.safetensors",
                                                        dir / "model-00002-of-00002.safetensors"}));
  EXPECT_EQ(report.tensors_read, 36);
}

TEST(OptWeightsLoad, MissingTensor) {
  TempDir dir;
  NamedTensors ref = reference_tensors("model.decoder.");
  std::erase_if(ref, [](const auto& p) { return p.first == "model.decoder.layers.1.fc2.bias"; });
  write_tensors(dir / "model.safetensors", ref);
  const std::string msg = error_of([&] { load_opt_weights(tiny_spec(), dir.path()); });
  EXPECT_THAT(msg, HasSubstr("model.safetensors: missing tensor model.decoder.layers.1.fc2.bias"));
}

TEST(OptWeightsLoad, WrongShape) {
  TempDir dir;
  NamedTensors ref = reference_tensors("model.decoder.");
  for (auto& [name, t] : ref) {
    if (name == "model.decoder.layers.0.self_attn.q_proj.weight") t = Tensor({8, 4}, 0.5f);
  }
  write_tensors(dir / "model.safetensors", ref);
  const std::string msg = error_of([&] { load_opt_weights(tiny_spec(), dir.path()); });
  EXPECT_THAT(msg, HasSubstr("model.safetensors: tensor model.decoder.layers.0.self_attn.q_proj.weight: "
                             "expected [8, 8], got [8, 4]"));
}

TEST(OptWeightsLoad, WrongDtype) {
  TempDir dir;
  // By hand: the embedding stored as I64 (50 * 8 * 8 = 3200 bytes of zeros).
  const std::string header =
      R"({"model.decoder.embed_tokens.weight":{"dtype":"I64","shape":[50,8],"data_offsets":[0,3200]}})";
  std::string file;
  for (int i = 0; i < 8; ++i) file.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xff));
  file += header + std::string(3200, '\0');
  write_text(dir / "model.safetensors", file);
  const std::string msg = error_of([&] { load_opt_weights(tiny_spec(), dir.path()); });
  EXPECT_THAT(msg, HasSubstr("model.safetensors: tensor model.decoder.embed_tokens.weight has dtype I64, "
                             "expected F32, F16 or BF16"));
}

TEST(OptWeightsLoad, LmHeadOfWrongShape) {
  TempDir dir;
  NamedTensors ref = reference_tensors("model.decoder.");
  ref.emplace_back("lm_head.weight", Tensor({50, 4}, 0.0f));
  write_tensors(dir / "model.safetensors", ref);
  EXPECT_THAT(error_of([&] { load_opt_weights(tiny_spec(), dir.path()); }),
              HasSubstr("model.safetensors: tensor lm_head.weight: expected [50, 8] (the tied embedding), got [50, 4]"));
}

TEST(OptWeightsLoad, MoreLayersThanTheSpec) {
  TempDir dir;
  write_tensors(dir / "model.safetensors", reference_tensors("model.decoder.", 3));
  EXPECT_THAT(error_of([&] { load_opt_weights(tiny_spec(2), dir.path()); }),
              HasSubstr("model.safetensors: unexpected tensor model.decoder.layers.2."));
}

TEST(OptWeightsLoad, BothPrefixesIsAmbiguous) {
  TempDir dir;
  NamedTensors ref = reference_tensors("model.decoder.");
  ref.emplace_back("decoder.embed_tokens.weight", Tensor({50, 8}, 0.0f));
  write_tensors(dir / "model.safetensors", ref);
  EXPECT_THAT(error_of([&] { load_opt_weights(tiny_spec(), dir.path()); }),
              HasSubstr("both model.decoder.embed_tokens.weight and decoder.embed_tokens.weight"));
}

TEST(OptWeightsLoad, NoWeightsFile) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { load_opt_weights(tiny_spec(), dir.path()); }),
              HasSubstr(": no model.safetensors or model.safetensors.index.json"));
  EXPECT_THAT(error_of([&] { load_opt_weights(tiny_spec(), dir / "absent"); }),
              HasSubstr("absent: not a model directory"));
}

TEST(OptWeightsLoad, IndexNamingMissingShard) {
  TempDir dir;
  const NamedTensors ref = reference_tensors("model.decoder.");
  write_tensors(dir / "model-00001-of-00002.safetensors", ref);
  std::string weight_map;
  for (const auto& [name, t] : ref) {
    const std::string shard = name == "model.decoder.layers.1.fc1.weight" ? "model-00002-of-00002.safetensors"
                                                                          : "model-00001-of-00002.safetensors";
    weight_map += (weight_map.empty() ? "" : ",") + std::string("\"") + name + "\":\"" + shard + "\"";
  }
  write_text(dir / "model.safetensors.index.json", R"({"weight_map":{)" + weight_map + "}}");
  const std::string msg = error_of([&] { load_opt_weights(tiny_spec(), dir.path()); });
  EXPECT_THAT(msg, HasSubstr("model.safetensors.index.json: tensor model.decoder.layers.1.fc1.weight is in shard "
                             "model-00002-of-00002.safetensors, but "));
  EXPECT_THAT(msg, HasSubstr("does not exist"));
}

TEST(OptWeightsLoad, IndexPlacingTensorInTheWrongShard) {
  TempDir dir;
  NamedTensors ref = reference_tensors("model.decoder.");
  NamedTensors a(ref.begin(), ref.begin() + 10), b(ref.begin() + 10, ref.end());
  write_tensors(dir / "a.safetensors", a);
  write_tensors(dir / "b.safetensors", b);
  std::string weight_map;
  for (std::size_t j = 0; j < ref.size(); ++j) {
    // Tensor 10 really is in b, but the index says a.
    const std::string shard = j <= 10 ? "a.safetensors" : "b.safetensors";
    weight_map += (weight_map.empty() ? "" : ",") + std::string("\"") + ref[j].first + "\":\"" + shard + "\"";
  }
  write_text(dir / "model.safetensors.index.json", R"({"weight_map":{)" + weight_map + "}}");
  EXPECT_THAT(error_of([&] { load_opt_weights(tiny_spec(), dir.path()); }),
              HasSubstr("a.safetensors: missing tensor " + ref[10].first));
}

TEST(OptWeightsLoad, MalformedIndex) {
  TempDir dir;
  const fs::path index = dir / "model.safetensors.index.json";
  auto load = [&] { load_opt_weights(tiny_spec(), dir.path()); };
  write_text(index, R"({"weight_map": {"a": )");
  EXPECT_THAT(error_of(load), HasSubstr("model.safetensors.index.json: malformed JSON"));
  write_text(index, R"([])");
  EXPECT_THAT(error_of(load), HasSubstr("model.safetensors.index.json: must be a JSON object"));
  write_text(index, R"({"metadata": {}})");
  EXPECT_THAT(error_of(load), HasSubstr("model.safetensors.index.json: missing \"weight_map\""));
  write_text(index, R"({"weight_map": []})");
  EXPECT_THAT(error_of(load), HasSubstr("\"weight_map\" must be an object"));
  write_text(index, R"({"weight_map": {"model.decoder.embed_tokens.weight": 3}})");
  EXPECT_THAT(error_of(load), HasSubstr("weight_map entry for tensor model.decoder.embed_tokens.weight must be a string"));
  write_text(index, R"({"weight_map": {"model.decoder.embed_tokens.weight": "../x.safetensors"}})");
  EXPECT_THAT(error_of(load), HasSubstr("not a file inside the model directory"));
  write_text(index, R"({"weight_map": {"model.decoder.embed_tokens.weight": "/etc/x.safetensors"}})");
  EXPECT_THAT(error_of(load), HasSubstr("not a file inside the model directory"));
  write_text(index, R"({"weight_map": {}})");
  EXPECT_THAT(error_of(load), HasSubstr("model.safetensors.index.json: missing tensor model.decoder.embed_tokens.weight"));
}

TEST(OptWeightsLoad, BadSpecIsAnError) {
  TempDir dir;
  ModelSpec spec = tiny_spec();
  spec.hidden_size = 0;
  EXPECT_THAT(error_of([&] { load_opt_weights(spec, dir.path()); }), HasSubstr("must all be positive"));
  EXPECT_THAT(error_of([&] { make_dummy_opt_weights(spec, 1); }), HasSubstr("must all be positive"));
}

// ---- dummy weights -----------------------------------------------------------------------------

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) return false;
  }
  return true;
}

TEST(OptDummyWeights, ShapesFollowTheSlots) {
  const ModelSpec spec = tiny_spec();
  OptWeights w = make_dummy_opt_weights(spec, 7);
  for (const auto& [name, shape] : tiny_names_and_shapes(2)) {
    bool found = false;
    for (const TensorSlot& slot : opt_tensor_slots(spec, w)) {
      if (slot.name != name) continue;
      found = true;
      EXPECT_EQ(slot.target->shape(), shape) << name;
    }
    EXPECT_TRUE(found) << name;
  }
}

TEST(OptDummyWeights, DeterministicPerSeedAndDifferentAcrossSeeds) {
  const ModelSpec spec = tiny_spec();
  OptWeights a = make_dummy_opt_weights(spec, 42);
  OptWeights b = make_dummy_opt_weights(spec, 42);
  OptWeights c = make_dummy_opt_weights(spec, 43);
  const auto sa = opt_tensor_slots(spec, a);
  const auto sb = opt_tensor_slots(spec, b);
  const auto sc = opt_tensor_slots(spec, c);
  for (std::size_t i = 0; i < sa.size(); ++i) {
    EXPECT_TRUE(same_bits(*sa[i].target, *sb[i].target)) << sa[i].name;
    EXPECT_FALSE(same_bits(*sa[i].target, *sc[i].target)) << sa[i].name;
  }
  // Tensors differ from each other too (q and k of one layer, layer 0 and layer 1).
  EXPECT_FALSE(same_bits(a.layers[0].q_weight, a.layers[0].k_weight));
  EXPECT_FALSE(same_bits(a.layers[0].fc1_weight, a.layers[1].fc1_weight));
  // A tensor's values do not depend on the number of layers.
  OptWeights deeper = make_dummy_opt_weights(tiny_spec(3), 42);
  EXPECT_TRUE(same_bits(a.layers[1].fc2_weight, deeper.layers[1].fc2_weight));
  EXPECT_TRUE(same_bits(a.embed_tokens, deeper.embed_tokens));
}

struct Moments {
  double mean = 0, std = 0, max_abs_dev = 0;
};

Moments moments(const Tensor& t, double centre) {
  double sum = 0;
  for (std::int64_t i = 0; i < t.numel(); ++i) sum += t[i];
  Moments m;
  m.mean = sum / static_cast<double>(t.numel());
  double sq = 0;
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    sq += (t[i] - m.mean) * (t[i] - m.mean);
    m.max_abs_dev = std::max(m.max_abs_dev, std::abs(t[i] - centre));
  }
  m.std = std::sqrt(sq / static_cast<double>(t.numel() - 1));
  return m;
}

TEST(OptDummyWeights, Statistics) {
  ModelSpec spec = tiny_spec();
  spec.vocab_size = 4096;
  spec.hidden_size = 64;
  spec.ffn_dim = 256;
  OptWeights w = make_dummy_opt_weights(spec, 2024);

  // 262144 values: the mean's standard error is 0.02 / 512 = 3.9e-5, the std's about 0.14%.
  const Moments embed = moments(w.embed_tokens, 0.0);
  EXPECT_LT(std::abs(embed.mean), 2e-4);
  EXPECT_NEAR(embed.std, 0.02, 0.02 * 0.01);
  EXPECT_LE(embed.max_abs_dev, 0.02 * std::sqrt(2.0) * 3.0 + 1e-6);  // six uniforms: 4.24 sigma
  EXPECT_GT(embed.max_abs_dev, 0.02 * 3.0);                          // but real tails

  const Moments fc1 = moments(w.layers[1].fc1_weight, 0.0);  // 16384 values
  EXPECT_LT(std::abs(fc1.mean), 0.02 * 5 / 128.0);
  EXPECT_NEAR(fc1.std, 0.02, 0.02 * 0.05);

  // Biases and LayerNorm: pool the 64-element vectors of all layers.
  std::vector<float> ln_w, ln_b, bias;
  auto add = [](std::vector<float>& to, const Tensor& t) { to.insert(to.end(), t.span().begin(), t.span().end()); };
  add(ln_w, w.final_ln_weight);
  add(ln_b, w.final_ln_bias);
  for (const OptLayerWeights& l : w.layers) {
    add(ln_w, l.attn_ln_weight);
    add(ln_w, l.mlp_ln_weight);
    add(ln_b, l.attn_ln_bias);
    add(ln_b, l.mlp_ln_bias);
    for (const Tensor* b : {&l.q_bias, &l.k_bias, &l.v_bias, &l.out_bias, &l.fc1_bias, &l.fc2_bias}) add(bias, *b);
  }
  const Moments lnw = moments(Tensor({static_cast<std::int64_t>(ln_w.size())}, ln_w), 1.0);
  EXPECT_NEAR(lnw.mean, 1.0, 0.02 * 5 / std::sqrt(static_cast<double>(ln_w.size())));
  EXPECT_NEAR(lnw.std, 0.02, 0.02 * 0.25);
  EXPECT_LE(lnw.max_abs_dev, 0.0849);
  const Moments lnb = moments(Tensor({static_cast<std::int64_t>(ln_b.size())}, ln_b), 0.0);
  EXPECT_NEAR(lnb.mean, 0.0, 0.02 * 5 / std::sqrt(static_cast<double>(ln_b.size())));
  EXPECT_NEAR(lnb.std, 0.02, 0.02 * 0.25);
  const Moments bs = moments(Tensor({static_cast<std::int64_t>(bias.size())}, bias), 0.0);
  EXPECT_NEAR(bs.std, 0.02, 0.02 * 0.1);

  // Never constant: every tensor has many distinct values.
  for (const TensorSlot& slot : opt_tensor_slots(spec, w)) {
    std::set<float> distinct(slot.target->span().begin(), slot.target->span().end());
    EXPECT_GT(distinct.size(), static_cast<std::size_t>(slot.target->numel() / 2)) << slot.name;
  }
}

// The algorithm as the header documents it, written out again here: FNV-1a, splitmix64, the
// standard-defined mt19937_64 and a sum of six 21-bit fields from two draws.
TEST(OptDummyWeights, FollowsTheDocumentedAlgorithm) {
  auto fnv = [](const std::string& s) {
    std::uint64_t h = 14695981039346656037ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
  };
  auto mix = [](std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  // Published test vectors of the two hashes and of mt19937_64.
  ASSERT_EQ(fnv("a"), 0xaf63dc4c8601ec8cull);
  ASSERT_EQ(mix(0), 0xe220a8397b1dcdafull);
  std::mt19937_64 standard;
  standard.discard(9999);
  ASSERT_EQ(standard(), 9981545732273789042ull);

  const ModelSpec spec = tiny_spec();
  OptWeights w = make_dummy_opt_weights(spec, 42);
  for (const auto& [name, tensor, offset] :
       {std::tuple{std::string("layers.1.fc2.weight"), &w.layers[1].fc2_weight, 0.0},
        std::tuple{std::string("layers.0.self_attn_layer_norm.weight"), &w.layers[0].attn_ln_weight, 1.0}}) {
    std::mt19937_64 engine(mix(42ull ^ fnv(name)));
    for (std::int64_t i = 0; i < 8; ++i) {
      long long s = 0;
      for (int draw = 0; draw < 2; ++draw) {
        const std::uint64_t r = engine();
        for (int k = 0; k < 3; ++k) s += 2 * static_cast<long long>((r >> (21 * k)) % 2097152) + 1;
      }
      const double z = static_cast<double>(s - 12582912) / 4194304.0 * std::sqrt(2.0);  // ~N(0, 1)
      EXPECT_NEAR((*tensor)[i], offset + 0.02 * z, 2e-7) << name << " element " << i;
    }
  }
}

}  // namespace
}  // namespace flexgen
