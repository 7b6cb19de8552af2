// The offloading runtime on the host backend with a LLaMA model (grouped-query attention: 2 query
// heads per key/value head): every placement gives the tokens of the all-GPU run; the all-GPU run
// gives the tokens of the independent float64 reference (tests/support/llama_reference.h); 4-bit
// weights and cache, top-k sparse attention and CPU delegation match references specified
// independently; bytes moved match the schedule and closed forms worked out by hand.
#include <filesystem>
#include <map>
#include <tuple>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/compress/quant4.h"
#include "engine/core/error.h"
#include "engine/runtime/host_runtime.h"
#include "engine/runtime/runtime.h"
#include "support/llama_reference.h"
#include "support/random_llama.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using testing::TempDir;

constexpr std::int64_t kGenLen = 6;
constexpr std::int64_t kPromptLen = 7;

const ModelSpec& spec() {
  static const ModelSpec s = testing::tiny_llama_spec();
  return s;
}

const LlamaWeights& weights() {
  static const LlamaWeights w = testing::random_llama_weights(spec(), 4242, 0.3);
  return w;
}

// Eight prompts of different lengths, each starting with <s> (id 1).
std::vector<std::vector<std::int32_t>> prompts(std::int64_t count) {
  static const std::vector<std::vector<std::int32_t>> all = [] {
    testing::NormalRng rng(99);
    std::vector<std::vector<std::int32_t>> out;
    for (int len : {3, 5, 2, 7, 4, 6, 1, 5}) {
      std::vector<std::int32_t> p = {1};
      for (int i = 1; i < len; ++i) p.push_back(3 + rng.below(37));
      out.push_back(p);
    }
    return out;
  }();
  return {all.begin(), all.begin() + count};
}

struct RunSetup {
  std::array<double, 6> percent = {100, 0, 100, 0, 100, 0};
  std::int64_t gbs = 2, ngb = 1;
  ScheduleKind kind = ScheduleKind::kZigZag;
  bool overlap = true;
  bool compress_weight = false, compress_cache = false, delegate = false;
  double sparsity = 1.0;
  SamplingConfig sampling;
};

Plan plan_for(const RunSetup& s, const ModelSpec& m = spec()) {
  PolicyConfig c;
  c.gpu_batch_size = s.gbs;
  c.num_gpu_batches = s.ngb;
  c.set_percent(s.percent);
  c.overlap = s.overlap;
  c.compress_weight = s.compress_weight;
  c.compress_cache = s.compress_cache;
  c.cpu_cache_compute = s.delegate;
  c.attn_sparsity = s.sparsity;
  Workload w;
  w.prompt_len = kPromptLen;
  w.gen_len = kGenLen;
  w.num_sequences = s.gbs * s.ngb;
  return make_plan(m, w, Policy::create(c));
}

RunReport run(const RunSetup& s, const LlamaWeights& w = weights(), const ModelSpec& m = spec()) {
  TempDir dir;
  RuntimeOptions o;
  o.budgets[Tier::kGpu] = o.budgets[Tier::kCpu] = o.budgets[Tier::kDisk] = Bytes{1} << 40;
  o.offload_dir = dir.path();
  o.schedule = s.kind;
  const Plan plan = plan_for(s, m);
  HostRuntime runtime(plan, w, o);
  RunReport r = runtime.generate(prompts(s.gbs * s.ngb), s.sampling, std::nullopt);
  EXPECT_EQ(r.moved, runtime.schedule().total_bytes());
  for (Tier t : kAllTiers) EXPECT_EQ(r.peak[t], r.planned[t]) << tier_name(t);
  EXPECT_TRUE(dir.empty());
  return r;
}

TEST(LlamaRuntime, PlanUnitsAreSequencesTimesKeyValueHeads) {
  RunSetup s;
  s.gbs = 3;
  s.ngb = 1;
  s.percent = {100, 0, 50, 50, 100, 0};
  const Plan plan = plan_for(s);
  EXPECT_EQ(plan.cache.units, 3 * 2);
  EXPECT_EQ(plan.cache.queries_per_unit, 2);
  EXPECT_EQ(plan.cache.units_on_tier(Tier::kGpu), 3);
  EXPECT_EQ(plan.cache.row_bytes, 8 * 4);  // head_dim 8, float32
  // Layers: the embedding, 2 decoder layers of 9 tensors, the norm and the untied LM head.
  ASSERT_EQ(plan.layers.size(), 4u);
  EXPECT_EQ(plan.layers[0].tensors.size(), 1u);
  EXPECT_EQ(plan.layers[1].tensors.size(), 9u);
  ASSERT_EQ(plan.layers[3].tensors.size(), 2u);
  EXPECT_EQ(plan.layers[3].tensors[0].name, "norm.weight");
  EXPECT_EQ(plan.layers[3].tensors[1].name, "lm_head.weight");
  ModelSpec tied = spec();
  tied.tie_word_embeddings = true;
  const Plan tied_plan = plan_for(s, tied);
  EXPECT_EQ(tied_plan.layers[3].tensors[1].name, "embed_tokens.weight");  // the output layer's own copy
}

// FlexGen's midpoint rule on a LLaMA layer, worked out by hand. Attention part (values):
// q 1024, k 512, v 512, o 1024, input_layernorm 32 (total 3104); MLP part: gate 1536, up 1536,
// down 1536, post_attention_layernorm 32 (total 4640). --percent 0 50 (half CPU, half disk):
// attention midpoints 16.5%, 41.2%, 57.7%, 82.5%, 99.5% -> disk, disk, cpu, cpu, cpu;
// MLP midpoints 16.6%, 49.7%, 82.8%, 99.7% -> disk, disk, cpu, cpu.
TEST(LlamaRuntime, MidpointRuleOnALlamaLayer) {
  RunSetup s;
  s.percent = {0, 50, 100, 0, 100, 0};
  const Plan plan = plan_for(s);
  const auto& t = plan.layers[1].tensors;
  const std::vector<std::pair<std::string, Tier>> expected = {
      {"layers.0.self_attn.q_proj.weight", Tier::kDisk}, {"layers.0.self_attn.k_proj.weight", Tier::kDisk},
      {"layers.0.self_attn.v_proj.weight", Tier::kCpu},  {"layers.0.self_attn.o_proj.weight", Tier::kCpu},
      {"layers.0.input_layernorm.weight", Tier::kCpu},   {"layers.0.mlp.gate_proj.weight", Tier::kDisk},
      {"layers.0.mlp.up_proj.weight", Tier::kDisk},      {"layers.0.mlp.down_proj.weight", Tier::kCpu},
      {"layers.0.post_attention_layernorm.weight", Tier::kCpu}};
  ASSERT_EQ(t.size(), expected.size());
  for (std::size_t i = 0; i < t.size(); ++i) {
    EXPECT_EQ(t[i].name, expected[i].first);
    EXPECT_EQ(t[i].home, expected[i].second) << t[i].name;
  }
  EXPECT_EQ(plan.layers[1].home_bytes[Tier::kDisk], (1024 + 512 + 1536 + 1536) * 4);
  EXPECT_EQ(plan.layers[1].home_bytes[Tier::kCpu], (512 + 1024 + 32 + 1536 + 32) * 4);
}

TEST(LlamaRuntime, AllGpuMatchesTheFloat64Reference) {
  for (std::int64_t ngb : {1, 2, 4}) {
    RunSetup s;
    s.ngb = ngb;
    const auto expected = testing::reference_llama_greedy(spec(), weights(), prompts(2 * ngb), kGenLen);
    EXPECT_EQ(run(s).tokens, expected) << "ngb " << ngb;
  }
}

TEST(LlamaRuntime, TiedAndMultiQueryModelsMatchTheReference) {
  ModelSpec m = spec();
  m.tie_word_embeddings = true;
  m.num_kv_heads = 1;
  const LlamaWeights w = testing::random_llama_weights(m, 77, 0.3);
  RunSetup s;
  s.ngb = 2;
  s.percent = {0, 50, 50, 50, 100, 0};
  const auto expected = testing::reference_llama_greedy(m, w, prompts(4), kGenLen);
  EXPECT_EQ(run(s, w, m).tokens, expected);
  s.delegate = true;
  s.percent = {50, 50, 0, 100, 0, 100};
  EXPECT_EQ(run(s, w, m).tokens, expected);
}

struct NamedPlacement {
  const char* name;
  double gpu, cpu;
};
const NamedPlacement kPlacements[] = {
    {"gpu", 100, 0}, {"cpu", 0, 100}, {"disk", 0, 0}, {"gpu50cpu50", 50, 50}, {"cpu50disk50", 0, 50}};

const std::vector<std::vector<std::int32_t>>& all_gpu_tokens(std::int64_t ngb) {
  static std::map<std::int64_t, std::vector<std::vector<std::int32_t>>> cache;
  auto it = cache.find(ngb);
  if (it == cache.end()) {
    RunSetup s;
    s.ngb = ngb;
    it = cache.emplace(ngb, run(s).tokens).first;
  }
  return it->second;
}

using MatrixParam = std::tuple<int, int, std::int64_t, bool, bool>;  // weights, cache, ngb, zig-zag, overlap

class LlamaOffloadMatrix : public ::testing::TestWithParam<MatrixParam> {};

TEST_P(LlamaOffloadMatrix, SameTokensAsAllOnGpu) {
  const auto [wi, ci, ngb, zigzag, overlap] = GetParam();
  RunSetup s;
  s.percent = {kPlacements[wi].gpu, kPlacements[wi].cpu, kPlacements[ci].gpu, kPlacements[ci].cpu, 100, 0};
  s.ngb = ngb;
  s.kind = zigzag ? ScheduleKind::kZigZag : ScheduleKind::kRowByRow;
  s.overlap = overlap;
  const RunReport r = run(s);
  EXPECT_EQ(r.tokens, all_gpu_tokens(ngb));
  if (kPlacements[wi].gpu < 100 || kPlacements[ci].gpu < 100) {
    EXPECT_GT(r.moved.h2d, 0);
  }
  if (kPlacements[wi].gpu + kPlacements[wi].cpu < 100) {
    EXPECT_GT(r.moved.disk_read, 0);
  }
  if (kPlacements[ci].gpu + kPlacements[ci].cpu < 100) {
    EXPECT_GT(r.moved.disk_write, 0);
  }
}

std::string matrix_name(const ::testing::TestParamInfo<MatrixParam>& param) {
  const int wi = std::get<0>(param.param), ci = std::get<1>(param.param);
  return std::string("w_") + kPlacements[wi].name + "_c_" + kPlacements[ci].name + "_ngb" +
         std::to_string(std::get<2>(param.param)) + (std::get<3>(param.param) ? "_zigzag" : "_rowbyrow") +
         (std::get<4>(param.param) ? "_overlap" : "_serial");
}

INSTANTIATE_TEST_SUITE_P(Placements, LlamaOffloadMatrix,
                         ::testing::Combine(::testing::Range(0, 5), ::testing::Range(0, 5),
                                            ::testing::Values<std::int64_t>(1, 3), ::testing::Bool(),
                                            ::testing::Bool()),
                         matrix_name);

TEST(LlamaRuntime, ActivationsOffTheGpuGiveTheSameTokens) {
  for (double act_cpu : {100.0, 0.0}) {
    for (bool zigzag : {true, false}) {
      RunSetup s;
      s.percent = {0, 100, 0, 100, 0, act_cpu};
      s.ngb = 3;
      s.kind = zigzag ? ScheduleKind::kZigZag : ScheduleKind::kRowByRow;
      EXPECT_EQ(run(s).tokens, all_gpu_tokens(3)) << "act cpu " << act_cpu;
    }
  }
}

// tiny_llama_spec: h 32, kv_dim 16, ffn 48, vocab 40, 2 layers, float32. Weight values: embedding
// 40*32 = 1280; each decoder layer q 1024 + k 512 + v 512 + o 1024 + 32 + gate, up, down 3*1536
// + 32 = 7744; output: norm 32 + lm_head 1280 = 1312.
constexpr Bytes kWeightBytes = (1280 + 2 * 7744 + 1312) * 4;

TEST(LlamaRuntime, WeightTrafficMatchesTheClosedForm) {
  for (std::int64_t ngb : {1, 2}) {
    RunSetup s;
    s.percent = {0, 100, 100, 0, 100, 0};
    s.ngb = ngb;
    EXPECT_EQ(run(s).moved.h2d, kGenLen * kWeightBytes);
    s.kind = ScheduleKind::kRowByRow;
    EXPECT_EQ(run(s).moved.h2d, ngb * kGenLen * kWeightBytes);
  }
}

// The cache on the CPU, weights on the GPU, 1 batch of 2: units = 2 sequences x 2 key/value
// heads = 4, rows of 8 floats = 32 bytes, key and value. Per decoder layer: decode step i
// (1..5) loads the 7 + i - 1 cached positions: 2 * 4 * (7 + 8 + 9 + 10 + 11) * 32 = 11520 bytes;
// the prefill stores 7 positions, decode steps 1..4 one each (the last never): 2 * 4 * 11 * 32
// = 2816 bytes. Multi-head attention (4 key/value heads) moves twice as much.
TEST(LlamaRuntime, CacheTrafficUsesKeyValueHeads) {
  RunSetup s;
  s.percent = {100, 0, 0, 100, 100, 0};
  const RunReport r = run(s);
  EXPECT_EQ(r.moved.h2d, 2 * 11520);
  EXPECT_EQ(r.moved.d2h, 2 * 2816);
  ModelSpec mha = spec();
  mha.num_kv_heads = 4;
  const RunReport m = run(s, testing::random_llama_weights(mha, 1, 0.3), mha);
  EXPECT_EQ(m.moved.h2d, 2 * r.moved.h2d);
  EXPECT_EQ(m.moved.d2h, 2 * r.moved.d2h);
}

// Delegation, 1 batch of 2, cache all on the CPU: per decode step and layer the GPU sends the two
// query heads, new key and new value of 4 units (4 * (2 + 2) * 8 floats = 512 bytes) and gets the
// two heads' outputs back (4 * 2 * 8 floats = 256 bytes); prefill stores its 7 positions as
// before (2 * 4 * 7 * 32 = 1792 bytes).
TEST(LlamaRuntime, DelegationTrafficCarriesTheQueryGroup) {
  RunSetup s;
  s.percent = {100, 0, 0, 100, 100, 0};
  s.delegate = true;
  const RunReport r = run(s);
  const std::int64_t decode_steps = kGenLen - 1, layers = 2;
  EXPECT_EQ(r.moved.d2h, layers * (1792 + decode_steps * 512));
  EXPECT_EQ(r.moved.h2d, layers * decode_steps * 256);
  EXPECT_EQ(r.tokens, all_gpu_tokens(1));
}

LlamaWeights fake_quantized_weights() {
  LlamaWeights w = weights();
  for (const TensorSlot& slot : llama_tensor_slots(spec(), w)) {
    if (slot.shape.size() >= 2) *slot.target = fake_quantize(*slot.target, weight_quant_spec(ScaleType::kFloat32));
  }
  return w;
}

TEST(LlamaRuntime, CompressedWeightsMatchAReferenceOnQuantizedWeights) {
  const auto expected = testing::reference_llama_greedy(spec(), fake_quantized_weights(), prompts(4), kGenLen);
  EXPECT_NE(expected, testing::reference_llama_greedy(spec(), weights(), prompts(4), kGenLen))
      << "the test needs quantization to change something";
  for (const auto& p : kPlacements) {
    RunSetup s;
    s.ngb = 2;
    s.percent = {p.gpu, p.cpu, 100, 0, 100, 0};
    s.compress_weight = true;
    EXPECT_EQ(run(s).tokens, expected) << p.name;
  }
}

TEST(LlamaRuntime, CompressedCacheMatchesAReferenceThatQuantizesEveryCacheRow) {
  testing::ReferenceOptions ref;
  ref.kv_row_transform = [](std::vector<double>& row) {
    const Tensor t({1, static_cast<std::int64_t>(row.size())}, std::vector<float>(row.begin(), row.end()));
    const Tensor q = fake_quantize(t, cache_quant_spec(ScaleType::kFloat32));
    for (std::size_t i = 0; i < row.size(); ++i) row[i] = q[static_cast<std::int64_t>(i)];
  };
  const auto expected = testing::reference_llama_greedy(spec(), weights(), prompts(4), kGenLen, ref);
  for (const auto& p : kPlacements) {
    RunSetup s;
    s.ngb = 2;
    s.percent = {100, 0, p.gpu, p.cpu, 100, 0};
    s.compress_cache = true;
    EXPECT_EQ(run(s).tokens, expected) << p.name;
    s.delegate = p.cpu > 0;
    EXPECT_EQ(run(s).tokens, expected) << p.name << " delegated";
  }
}

TEST(LlamaRuntime, SparseAttentionMatchesTheGroupTopKReference) {
  for (double sparsity : {0.5, 0.25}) {
    testing::ReferenceOptions ref;
    ref.attn_sparsity = sparsity;
    const auto expected = testing::reference_llama_greedy(spec(), weights(), prompts(4), kGenLen, ref);
    EXPECT_NE(expected, testing::reference_llama_greedy(spec(), weights(), prompts(4), kGenLen))
        << "the test needs sparsity to change something";
    for (const auto& p : kPlacements) {
      RunSetup s;
      s.ngb = 2;
      s.percent = {100, 0, p.gpu, p.cpu, 100, 0};
      s.sparsity = sparsity;
      EXPECT_EQ(run(s).tokens, expected) << p.name << " sparsity " << sparsity;
      if (p.cpu > 0) {
        s.delegate = true;
        EXPECT_EQ(run(s).tokens, expected) << p.name << " sparsity " << sparsity << " delegated";
      }
    }
  }
}

TEST(LlamaRuntime, DelegatedAttentionGivesTheTokensOfGpuAttention) {
  for (const auto& p : kPlacements) {
    if (p.cpu == 0) continue;
    RunSetup s;
    s.ngb = 2;
    s.percent = {0, 100, p.gpu, p.cpu, 100, 0};
    s.delegate = true;
    const RunReport r = run(s);
    EXPECT_EQ(r.tokens, all_gpu_tokens(2)) << p.name;
    s.delegate = false;
    EXPECT_LT(r.moved.h2d, run(s).moved.h2d) << p.name;
  }
}

TEST(LlamaRuntime, SampledTokensDependOnlyOnSeedAndSequence) {
  RunSetup s;
  s.ngb = 2;
  s.sampling.do_sample = true;
  s.sampling.temperature = 0.9f;
  s.sampling.top_p = 0.9f;
  s.sampling.seed = 7;
  const auto a = run(s).tokens;
  s.percent = {0, 50, 0, 50, 0, 100};
  s.kind = ScheduleKind::kRowByRow;
  EXPECT_EQ(run(s).tokens, a);
  s.sampling.seed = 8;
  EXPECT_NE(run(s).tokens, a);
}

// make_runtime with dummy weights: the host backend makes the LLaMA dummy weights itself.
TEST(LlamaRuntime, DummyWeightsThroughMakeRuntime) {
  RunSetup s;
  s.ngb = 2;
  s.percent = {50, 50, 50, 50, 100, 0};
  const Plan plan = plan_for(s);
  TempDir dir;
  RuntimeOptions o;
  o.budgets[Tier::kGpu] = o.budgets[Tier::kCpu] = o.budgets[Tier::kDisk] = Bytes{1} << 40;
  o.offload_dir = dir.path();
  const auto runtime = make_runtime(Backend::kHost, plan, WeightsSource{nullptr, 5, nullptr}, o);
  const RunReport r = runtime->generate(prompts(4), SamplingConfig{}, std::nullopt);
  const LlamaWeights dummy = make_dummy_llama_weights(spec(), 5);
  EXPECT_EQ(r.tokens, testing::reference_llama_greedy(spec(), dummy, prompts(4), kGenLen));
}

}  // namespace
}  // namespace flexgen
