// The offloading runtime on the host backend: every placement gives the tokens of the all-GPU
// run; the all-GPU run gives the tokens of an independent float64 reference; compression,
// sparsity and delegation match references specified independently; bytes and memory match the
// plan; budgets and disk faults fail cleanly.
#include "engine/runtime/host_runtime.h"

#include <cerrno>
#include <filesystem>
#include <map>
#include <tuple>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/compress/quant4.h"
#include "engine/core/error.h"
#include "engine/runtime/disk_store.h"
#include "support/opt_reference.h"
#include "support/faults.h"
#include "support/random_opt.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;
namespace fs = std::filesystem;

constexpr std::int64_t kGenLen = 6;

const ModelSpec& spec() {
  static const ModelSpec s = testing::tiny_opt_spec();
  return s;
}

const OptWeights& weights() {
  static const OptWeights w = testing::random_opt_weights(spec(), 4242, 0.3);
  return w;
}

// Eight prompts of different lengths, each starting with </s> (id 2).
std::vector<std::vector<std::int32_t>> prompts(std::int64_t count) {
  static const std::vector<std::vector<std::int32_t>> all = [] {
    testing::NormalRng rng(99);
    std::vector<std::vector<std::int32_t>> out;
    for (int len : {3, 5, 2, 7, 4, 6, 1, 5}) {
      std::vector<std::int32_t> p = {2};
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

Plan plan_for(const RunSetup& s) {
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
  w.prompt_len = 7;
  w.gen_len = kGenLen;
  w.num_sequences = s.gbs * s.ngb;
  return make_plan(spec(), w, Policy::create(c));
}

RuntimeOptions options_in(const TempDir& dir) {
  RuntimeOptions o;
  o.budgets[Tier::kGpu] = o.budgets[Tier::kCpu] = o.budgets[Tier::kDisk] = Bytes{1} << 40;
  o.offload_dir = dir.path();
  return o;
}

RunReport run(const RunSetup& s, const OptWeights& w = weights()) {
  TempDir dir;
  RuntimeOptions o = options_in(dir);
  o.schedule = s.kind;
  const Plan plan = plan_for(s);
  HostRuntime runtime(plan, w, o);
  RunReport r = runtime.generate(prompts(s.gbs * s.ngb), s.sampling, std::nullopt);
  // What the runtime counted equals what the schedule declared; the allocation is the plan's.
  EXPECT_EQ(r.moved, runtime.schedule().total_bytes());
  for (Tier t : kAllTiers) EXPECT_EQ(r.peak[t], r.planned[t]) << tier_name(t);
  EXPECT_TRUE(dir.empty()) << "the offload file must never appear in the directory";
  return r;
}

// ---- the all-GPU run against the float64 reference --------------------------------------------

TEST(HostRuntime, AllGpuMatchesTheFloat64Reference) {
  for (std::int64_t ngb : {1, 2, 4}) {
    RunSetup s;
    s.ngb = ngb;
    const auto expected = testing::reference_greedy(spec(), weights(), prompts(2 * ngb), kGenLen);
    EXPECT_EQ(run(s).tokens, expected) << "ngb " << ngb;
  }
}

// ---- the offloading matrix -----------------------------------------------------------------

struct NamedPlacement {
  const char* name;
  double gpu, cpu;
};
const NamedPlacement kPlacements[] = {
    {"gpu", 100, 0}, {"cpu", 0, 100}, {"disk", 0, 0}, {"gpu50cpu50", 50, 50}, {"cpu50disk50", 0, 50}};

using MatrixParam = std::tuple<int, int, std::int64_t, bool, bool>;  // weights, cache, ngb, zig-zag, overlap

class OffloadMatrix : public ::testing::TestWithParam<MatrixParam> {};

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

TEST_P(OffloadMatrix, SameTokensAsAllOnGpu) {
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

INSTANTIATE_TEST_SUITE_P(Placements, OffloadMatrix,
                         ::testing::Combine(::testing::Range(0, 5), ::testing::Range(0, 5),
                                            ::testing::Values<std::int64_t>(1, 2, 4), ::testing::Bool(),
                                            ::testing::Bool()),
                         matrix_name);

TEST(HostRuntime, ActivationsOffTheGpuGiveTheSameTokens) {
  for (double act_cpu : {100.0, 0.0}) {
    for (std::int64_t ngb : {1, 3}) {
      for (bool zigzag : {true, false}) {
        for (bool overlap : {true, false}) {
          RunSetup s;
          s.percent = {0, 100, 0, 100, 0, act_cpu};
          s.ngb = ngb;
          s.kind = zigzag ? ScheduleKind::kZigZag : ScheduleKind::kRowByRow;
          s.overlap = overlap;
          const RunReport r = run(s);
          EXPECT_EQ(r.tokens, all_gpu_tokens(ngb)) << "act cpu " << act_cpu << " ngb " << ngb;
          EXPECT_EQ(r.peak[Tier::kDisk] > 0, act_cpu == 0.0);
        }
      }
    }
  }
}

// ---- traffic against the closed form ---------------------------------------------------------

// tiny_opt_spec: h 16, 4 heads, ffn 64, vocab 40, 32 positions, 2 layers, float32. Weight values:
// embedding 40*16 + 34*16 = 1184; each decoder layer 4*(256+16) + 2*16 + (1024+64) + (1024+16)
// + 2*16 = 3280; output 2*16 + 40*16 = 672 (its own copy of the tied embedding).
constexpr Bytes kWeightBytes = (1184 + 2 * 3280 + 672) * 4;

TEST(HostRuntime, WeightTrafficCountedByTheRuntimeMatchesTheClosedForm) {
  for (std::int64_t ngb : {1, 2, 4}) {
    RunSetup s;
    s.percent = {0, 100, 100, 0, 100, 0};
    s.ngb = ngb;
    s.kind = ScheduleKind::kZigZag;
    EXPECT_EQ(run(s).moved.h2d, kGenLen * kWeightBytes) << "zig-zag loads weights once per layer per block";
    s.kind = ScheduleKind::kRowByRow;
    EXPECT_EQ(run(s).moved.h2d, ngb * kGenLen * kWeightBytes) << "row-by-row loads them once per batch";
  }
}

// ---- compression -----------------------------------------------------------------------------

OptWeights fake_quantized_weights() {
  OptWeights w = weights();
  for (const TensorSlot& slot : opt_tensor_slots(spec(), w)) {
    if (slot.shape.size() >= 2) *slot.target = fake_quantize(*slot.target, weight_quant_spec(ScaleType::kFloat32));
  }
  return w;
}

TEST(HostRuntime, CompressedWeightsMatchAReferenceOnQuantizedWeights) {
  const auto expected = testing::reference_greedy(spec(), fake_quantized_weights(), prompts(4), kGenLen);
  for (const auto& p : kPlacements) {
    RunSetup s;
    s.ngb = 2;
    s.percent = {p.gpu, p.cpu, 100, 0, 100, 0};
    s.compress_weight = true;
    EXPECT_EQ(run(s).tokens, expected) << p.name;
  }
  // 4-bit weights move fewer bytes (on this tiny model the groups of 64 along 16 output channels
  // are mostly padding, so far from the quarter a real model gets; the exact sizes are the quant4
  // tests' business, and run() checks the runtime moved what the schedule declared).
  RunSetup s;
  s.percent = {0, 100, 100, 0, 100, 0};
  s.compress_weight = true;
  EXPECT_LT(run(s).moved.h2d, kGenLen * kWeightBytes);
}

TEST(HostRuntime, CompressedCacheMatchesAReferenceThatQuantizesEveryCacheRow) {
  testing::ReferenceOptions ref;
  ref.kv_row_transform = [](std::vector<double>& row) {
    const Tensor t({1, static_cast<std::int64_t>(row.size())}, std::vector<float>(row.begin(), row.end()));
    const Tensor q = fake_quantize(t, cache_quant_spec(ScaleType::kFloat32));
    for (std::size_t i = 0; i < row.size(); ++i) row[i] = q[static_cast<std::int64_t>(i)];
  };
  const auto expected = testing::reference_greedy(spec(), weights(), prompts(4), kGenLen, ref);
  for (const auto& p : kPlacements) {
    RunSetup s;
    s.ngb = 2;
    s.percent = {100, 0, p.gpu, p.cpu, 100, 0};
    s.compress_cache = true;
    EXPECT_EQ(run(s).tokens, expected) << p.name;
  }
}

// ---- sparse attention and CPU delegation -----------------------------------------------------------

TEST(HostRuntime, SparseAttentionMatchesTheFloat64TopKReference) {
  for (double sparsity : {0.5, 0.25}) {
    testing::ReferenceOptions ref;
    ref.attn_sparsity = sparsity;
    const auto expected = testing::reference_greedy(spec(), weights(), prompts(4), kGenLen, ref);
    const auto dense = testing::reference_greedy(spec(), weights(), prompts(4), kGenLen);
    EXPECT_NE(expected, dense) << "the test needs sparsity to change something";
    for (const auto& p : kPlacements) {
      RunSetup s;
      s.ngb = 2;
      s.percent = {100, 0, p.gpu, p.cpu, 100, 0};
      s.sparsity = sparsity;
      EXPECT_EQ(run(s).tokens, expected) << p.name << " sparsity " << sparsity;
    }
  }
}

TEST(HostRuntime, DelegatedAttentionGivesTheTokensOfGpuAttention) {
  for (const auto& p : kPlacements) {
    if (p.cpu == 0) continue;
    RunSetup s;
    s.ngb = 2;
    s.percent = {0, 100, p.gpu, p.cpu, 100, 0};
    s.delegate = true;
    const RunReport r = run(s);
    EXPECT_EQ(r.tokens, all_gpu_tokens(2)) << p.name;
    // The cache of CPU units never crosses the link during decode: far fewer bytes than without.
    s.delegate = false;
    EXPECT_LT(r.moved.h2d, run(s).moved.h2d) << p.name;
  }
  testing::ReferenceOptions ref;
  ref.attn_sparsity = 0.5;
  RunSetup s;
  s.ngb = 2;
  s.percent = {100, 0, 0, 100, 100, 0};
  s.delegate = true;
  s.sparsity = 0.5;
  EXPECT_EQ(run(s).tokens, testing::reference_greedy(spec(), weights(), prompts(4), kGenLen, ref));
}

TEST(HostRuntime, SampledTokensDependOnlyOnSeedAndSequence) {
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

// ---- budgets and faults ------------------------------------------------------------------------

TEST(HostRuntime, PlansOverBudgetAreRefusedBeforeAnyAllocation) {
  RunSetup s;
  s.percent = {50, 50, 0, 0, 100, 0};
  const Plan plan = plan_for(s);
  const MemoryPlan memory = plan_memory(plan);
  for (Tier tier : kAllTiers) {
    TempDir dir;
    RuntimeOptions o = options_in(dir);
    o.budgets[tier] = memory.total[tier] - 1;
    try {
      HostRuntime runtime(plan, weights(), o);
      ADD_FAILURE() << "expected a refusal for the " << tier_name(tier) << " tier";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(std::string("the ") + tier_name(tier) + " tier needs")) << e.what();
      EXPECT_THAT(e.what(), HasSubstr("1 B over"));
    }
    EXPECT_TRUE(dir.empty());
  }
}

TEST(HostRuntime, AFullDiskDuringPlacementFailsCleanly) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  testing::FaultGuard guard;
  TempDir dir;
  RunSetup s;
  s.percent = {0, 0, 100, 0, 100, 0};
  fault::arm(fault::Point::kDiskWrite, fault::Effect::kFail, 1, ENOSPC);
  try {
    HostRuntime runtime(plan_for(s), weights(), options_in(dir));
    ADD_FAILURE() << "expected a disk error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("No space left on device"));
  }
  fault::disarm_all();
  EXPECT_TRUE(dir.empty());
}

TEST(HostRuntime, AFailingDiskDuringTheRunStopsItWithOneError) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  testing::FaultGuard guard;
  for (bool overlap : {true, false}) {
    for (auto point : {fault::Point::kDiskWrite, fault::Point::kDiskRead}) {
      TempDir dir;
      RunSetup s;
      s.percent = {100, 0, 0, 0, 100, 0};  // the cache on disk: reads and writes every step
      s.overlap = overlap;
      s.ngb = 2;
      const Plan plan = plan_for(s);
      HostRuntime runtime(plan, weights(), options_in(dir));
      fault::arm(point, fault::Effect::kFail, 5, EIO);
      try {
        runtime.generate(prompts(4), SamplingConfig{}, std::nullopt);
        ADD_FAILURE() << "expected a disk error";
      } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("Input/output error"));
      }
      fault::disarm_all();
      EXPECT_TRUE(dir.empty());
    }
  }
}

}  // namespace
}  // namespace flexgen
