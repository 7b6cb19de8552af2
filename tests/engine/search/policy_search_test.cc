// The policy search: its answers fit the machine (checked on the real plan's buffers), respect
// the fixed options, move the right way when the hardware changes, and look like the paper's on
// its machine; infeasible inputs get a clear message.
#include "engine/search/policy_search.h"

#include <random>

#include <gmock/gmock.h>
#include <mutex>

#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "engine/costmodel/memory_model.h"
#include "engine/runtime/memory_plan.h"
#include "engine/runtime/plan.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;

const HardwareSpec& t4() {
  static const HardwareSpec hw = HardwareSpec::from_file(std::string(FLEXGEN_SOURCE_DIR) +
                                                         "/experiments/hardware/t4-paper.json");
  return hw;
}

Workload paper_workload() {
  Workload w;
  w.prompt_len = 512;
  w.gen_len = 32;
  return w;
}

// The runtime's own accounting of a policy (the full plan, every buffer) plus the workspace
// estimate, against the capacities.
void expect_fits(const ModelSpec& spec, const Workload& workload, const Policy& policy, const TierValues& caps) {
  Workload w = workload;
  w.num_sequences = policy.block_size();
  const Plan plan = make_plan(spec, w, policy);
  TierBytes need = plan_memory(plan).total;
  need[Tier::kGpu] += static_cast<Bytes>(gpu_workspace(spec, w, policy).peak());
  for (Tier t : kAllTiers) {
    EXPECT_LE(static_cast<double>(need[t]), caps[t]) << spec.name << " " << policy.to_string() << " " << tier_name(t);
  }
}

double search_throughput(const ModelSpec& spec, const Workload& w, const HardwareSpec& hw, const SearchOptions& o) {
  try {
    return search_policy(spec, w, hw, o).candidates.at(0).estimate.throughput_tok_s;
  } catch (const Error&) {
    return 0.0;  // nothing fits
  }
}

TEST(PolicySearch, Opt175bOnT4FitsEveryTierAndLooksLikeThePaper) {
  const ModelSpec spec = ModelSpec::from_name("opt-175b");
  SearchOptions options;
  options.top = 3;
  const SearchResult r = search_policy(spec, paper_workload(), t4(), options);
  ASSERT_FALSE(r.candidates.empty());
  for (const SearchCandidate& c : r.candidates) expect_fits(spec, paper_workload(), c.policy, search_capacities(t4(), options));
  const SearchCandidate& best = r.candidates[0];
  // The paper: weights off the GPU (0% GPU, 50% CPU, 50% disk) and a large block (32 x 8).
  EXPECT_LT(best.shares.weights_of(LayerKind::kDecoder)[Tier::kGpu], 0.1);
  EXPECT_GT(best.shares.weights_of(LayerKind::kDecoder)[Tier::kDisk], 0.3);
  EXPECT_GE(best.policy.block_size(), 32);
  EXPECT_GT(best.estimate.throughput_tok_s, 0);
  // The reported estimate is the per-task model on the real plan.
  Workload w = paper_workload();
  w.num_sequences = best.policy.block_size();
  EXPECT_DOUBLE_EQ(estimate_policy(spec, w, best.policy, t4()).throughput_tok_s, best.estimate.throughput_tok_s);
  // Runners-up are sorted and distinct.
  for (std::size_t i = 1; i < r.candidates.size(); ++i) {
    EXPECT_GE(r.candidates[i - 1].estimate.throughput_tok_s, r.candidates[i].estimate.throughput_tok_s);
    EXPECT_FALSE(r.candidates[i - 1].policy == r.candidates[i].policy);
  }
}

TEST(PolicySearch, Opt30bOnT4LooksLikeThePaper) {
  const ModelSpec spec = ModelSpec::from_name("opt-30b");
  const SearchResult r = search_policy(spec, paper_workload(), t4(), SearchOptions{});
  const SearchCandidate& best = r.candidates.at(0);
  expect_fits(spec, paper_workload(), best.policy, search_capacities(t4(), SearchOptions{}));
  // The paper: 48 x 3, --percent 20 80 0 100 0 100, CPU delegation: weights mostly on the CPU,
  // the cache mostly off the GPU and attended to on the CPU.
  EXPECT_GT(best.shares.weights_of(LayerKind::kDecoder)[Tier::kCpu], 0.5);
  EXPECT_LT(best.shares.cache[Tier::kGpu], 0.5);
  EXPECT_TRUE(best.policy.cpu_cache_compute());
}

// With a reprice the best candidates by the estimate are priced again and ranked by that: here a
// pricing that prefers the smallest block, independent of the cost model, must decide the order.
TEST(PolicySearch, RepricedCandidatesAreRankedByTheReprice) {
  const ModelSpec spec = ModelSpec::from_name("opt-30b");
  SearchOptions plain;
  plain.top = 4;
  const SearchResult by_estimate = search_policy(spec, paper_workload(), t4(), plain);
  SearchOptions options = plain;
  options.reprice_candidates = 6;
  int calls = 0;
  std::mutex m;
  options.reprice = [&](const Policy& policy) {
    std::lock_guard<std::mutex> lock(m);
    ++calls;
    Estimate e;
    e.total_s = static_cast<double>(policy.block_size());
    e.throughput_tok_s = 1000.0 / static_cast<double>(policy.block_size());
    return e;
  };
  const SearchResult r = search_policy(spec, paper_workload(), t4(), options);
  EXPECT_EQ(calls, 6);  // the six best by the estimate, no more
  ASSERT_EQ(r.candidates.size(), 4u);
  for (std::size_t i = 0; i + 1 < r.candidates.size(); ++i) {
    EXPECT_LE(r.candidates[i].policy.block_size(), r.candidates[i + 1].policy.block_size());
    EXPECT_EQ(r.candidates[i].estimate.throughput_tok_s, 1000.0 / static_cast<double>(r.candidates[i].policy.block_size()));
    EXPECT_GT(r.candidates[i].step_estimate_tok_s, 0);
    EXPECT_GT(r.candidates[i].estimate.memory.peak()[Tier::kGpu], 0);  // the cost model's memory kept
  }
  // Without a reprice the figures are the estimate's, and the step estimate is the same figure.
  EXPECT_EQ(by_estimate.candidates[0].step_estimate_tok_s, by_estimate.candidates[0].estimate.throughput_tok_s);
}

TEST(PolicySearch, RespectsFixedOptions) {
  const ModelSpec spec = ModelSpec::from_name("opt-6.7b");
  const TierValues caps = search_capacities(t4(), SearchOptions{});
  {
    SearchOptions o;
    o.gpu_batch_size = 24;
    o.num_gpu_batches = 5;
    const SearchCandidate c = search_policy(spec, paper_workload(), t4(), o).candidates.at(0);
    EXPECT_EQ(c.policy.gpu_batch_size(), 24);
    EXPECT_LE(c.policy.num_gpu_batches(), 5);  // at most: rounding may need one batch fewer
    expect_fits(spec, paper_workload(), c.policy, caps);
  }
  {
    SearchOptions o;
    o.compress_weight = o.compress_cache = true;
    o.cpu_cache_compute = SearchChoice::kOn;
    o.top = 2;
    for (const SearchCandidate& c : search_policy(spec, paper_workload(), t4(), o).candidates) {
      EXPECT_TRUE(c.policy.compress_weight());
      EXPECT_TRUE(c.policy.compress_cache());
      EXPECT_TRUE(c.policy.cpu_cache_compute());
      expect_fits(spec, paper_workload(), c.policy, caps);
    }
  }
  {
    const ModelSpec big = ModelSpec::from_name("opt-66b");
    SearchOptions o;
    o.allow_disk = false;
    o.cpu_cache_compute = SearchChoice::kOff;
    o.top = 3;
    for (const SearchCandidate& c : search_policy(big, paper_workload(), t4(), o).candidates) {
      EXPECT_FALSE(c.policy.cpu_cache_compute());
      EXPECT_EQ(c.estimate.memory.peak()[Tier::kDisk], 0.0);
      EXPECT_EQ(c.shares.activations == Tier::kDisk, false);
      EXPECT_NEAR(c.policy.weights().disk_percent(), 0.0, 1e-9);
      EXPECT_NEAR(c.policy.cache().disk_percent(), 0.0, 1e-9);
      expect_fits(big, paper_workload(), c.policy, search_capacities(t4(), o));
    }
  }
  {
    SearchOptions o;
    o.attn_sparsity = 0.25;
    EXPECT_EQ(search_policy(spec, paper_workload(), t4(), o).candidates.at(0).policy.attn_sparsity(), 0.25);
  }
}

TEST(PolicySearch, InfeasibleInputsSayByHowMuch) {
  const ModelSpec spec = ModelSpec::from_name("opt-175b");
  SearchOptions no_disk;
  no_disk.allow_disk = false;
  try {
    search_policy(spec, paper_workload(), t4(), no_disk);
    FAIL() << "expected flexgen::Error";
  } catch (const Error& e) {
    // 326.4 GiB of weights + 2.4 GiB of cache and activations against 16 + 208 GiB.
    EXPECT_THAT(e.what(), HasSubstr("opt-175b does not fit t4-paper"));
    EXPECT_THAT(e.what(), HasSubstr("hold 224.0 GiB together (104.8 GiB short)"));
  }
  HardwareSpec tiny_gpu = t4();
  tiny_gpu.gpu_memory_bytes = 64 * kMiB;
  try {
    search_policy(ModelSpec::from_name("opt-30b"), paper_workload(), tiny_gpu, SearchOptions{});
    FAIL() << "expected flexgen::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("the GPU of t4-paper (64.0 MiB) is too small for opt-30b"));
    EXPECT_THAT(e.what(), HasSubstr("short"));
  }
  Workload too_long = paper_workload();
  too_long.prompt_len = 2040;
  EXPECT_THROW(search_policy(spec, too_long, t4(), SearchOptions{}), Error);
  SearchOptions bad;
  bad.top = 0;
  try {
    search_policy(spec, paper_workload(), t4(), bad);
    FAIL() << "expected flexgen::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("--top"));
  }
  bad = SearchOptions{};
  bad.gpu_batch_size = 0;
  EXPECT_THROW(search_policy(spec, paper_workload(), t4(), bad), Error);
  bad = SearchOptions{};
  bad.attn_sparsity = 0;
  EXPECT_THROW(search_policy(spec, paper_workload(), t4(), bad), Error);
}

// Sensitivity, over random models, workloads and machines: a faster host-to-device link never
// lowers the predicted throughput; less GPU memory never raises it. Up to 5e-4 relative: the LPs
// are solved to GLPK's tolerances, and among near-ties (flat optima, common when everything fits
// on the GPU) the search may settle on a different point a hair apart. (The LP optimum itself is
// exactly monotone: PlacementLp.OptimumMovesTheRightWay.)
TEST(PolicySearch, SensitivityToBandwidthAndGpuMemory) {
  std::mt19937_64 rng(20240611);
  const auto pick = [&](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
  };
  const std::int64_t hiddens[] = {512, 768, 1024, 2048, 2560, 4096, 5120, 7168};
  for (int trial = 0; trial < 20; ++trial) {
    ModelSpec spec;
    spec.name = "random-" + std::to_string(trial);
    spec.hidden_size = hiddens[pick(0, 7)];
    spec.num_heads = spec.hidden_size / (spec.hidden_size >= 5120 ? 128 : 64);
    spec.ffn_dim = 4 * spec.hidden_size;
    spec.num_layers = pick(2, 64);
    spec.vocab_size = 50272;
    spec.max_positions = 2048;
    Workload w;
    w.prompt_len = pick(16, 1024);
    w.gen_len = pick(1, 64);
    HardwareSpec hw = t4();
    hw.gpu_memory_bytes = pick(2, 24) * kGiB;
    hw.cpu_memory_bytes = pick(8, 256) * kGiB;
    hw.disk_bytes = pick(50, 2000) * 1000000000;
    SearchOptions o;
    if (trial % 3 == 1) o.compress_weight = true;
    if (trial % 4 == 2) o.allow_disk = false;
    const std::string what = spec.name + " h " + std::to_string(spec.hidden_size) + " L " +
                             std::to_string(spec.num_layers) + " prompt " + std::to_string(w.prompt_len) + " gen " +
                             std::to_string(w.gen_len);
    const double base = search_throughput(spec, w, hw, o);
    HardwareSpec fast = hw;
    fast.h2d_bytes_per_s *= 2;
    EXPECT_GE(search_throughput(spec, w, fast, o), base * (1 - 5e-4)) << what;
    HardwareSpec small = hw;
    small.gpu_memory_bytes = hw.gpu_memory_bytes * 3 / 4;
    EXPECT_LE(search_throughput(spec, w, small, o), base * (1 + 5e-4)) << what;
  }
}

}  // namespace
}  // namespace flexgen
