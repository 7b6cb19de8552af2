// The memory model against what the runtime allocates: the memory plan's buffer totals and a real
// host runtime's peak, over many policies; and its equations by hand on a small case.
#include "engine/costmodel/memory_model.h"

#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "engine/runtime/host_runtime.h"
#include "engine/runtime/memory_plan.h"
#include "support/random_opt.h"

namespace flexgen {
namespace {

namespace fs = std::filesystem;

struct Case {
  std::array<double, 6> percent;
  std::int64_t gbs, ngb;
  bool delegate = false, compress_weight = false, compress_cache = false;
};

const Case kCases[] = {
    {{100, 0, 100, 0, 100, 0}, 2, 1},
    {{0, 100, 100, 0, 100, 0}, 2, 3},
    {{0, 0, 100, 0, 100, 0}, 1, 2},
    {{30, 30, 40, 30, 0, 100}, 2, 3},
    {{20, 80, 0, 100, 0, 100}, 3, 2, true},
    {{50, 25, 25, 50, 0, 0}, 2, 2, true, true, true},
    {{0, 50, 0, 0, 0, 100}, 4, 2, true},
    {{100, 0, 0, 0, 0, 0}, 2, 4, false, false, true},
    {{10, 10, 10, 10, 100, 0}, 3, 3, false, true, false},
};

Plan plan_of(const ModelSpec& spec, const Case& c, std::int64_t prompt, std::int64_t gen) {
  PolicyConfig config;
  config.gpu_batch_size = c.gbs;
  config.num_gpu_batches = c.ngb;
  config.set_percent(c.percent);
  config.cpu_cache_compute = c.delegate;
  config.compress_weight = c.compress_weight;
  config.compress_cache = c.compress_cache;
  Workload w;
  w.prompt_len = prompt;
  w.gen_len = gen;
  w.num_sequences = c.gbs * c.ngb;
  return make_plan(spec, w, Policy::create(config));
}

void expect_within(const TierValues& predicted, const TierBytes& actual, double tolerance, const std::string& what) {
  for (Tier t : kAllTiers) {
    const double a = static_cast<double>(actual[t]);
    EXPECT_NEAR(predicted[t], a, tolerance * std::max(a, 1.0)) << what << " tier " << tier_name(t);
  }
}

// Larger models: the plan is built (nothing allocated) and its buffers summed by plan_memory.
TEST(MemoryModel, MatchesTheMemoryPlanOverManyPolicies) {
  for (const char* name : {"opt-125m", "opt-1.3b", "opt-30b"}) {
    const ModelSpec spec = ModelSpec::from_name(name);
    for (const Case& c : kCases) {
      const Plan plan = plan_of(spec, c, 512, 32);
      const TierValues predicted =
          predict_memory(MemorySizes::of_plan(plan), PlacementShares::of_plan(plan), c.ngb, c.delegate);
      const std::string what = std::string(name) + " " + plan.policy.to_string();
      // Within 5% (the requirement); in fact equal to rounding of the doubles.
      expect_within(predicted, plan_memory(plan).total, 0.05, what);
      expect_within(predicted, plan_memory(plan).total, 1e-12, what);
    }
  }
}

// The same on a real host runtime: what it allocates, tier by tier.
TEST(MemoryModel, MatchesTheHostRuntimesPeak) {
  const ModelSpec spec = testing::tiny_opt_spec();
  const OptWeights weights = testing::random_opt_weights(spec, 7, 0.3);
  const fs::path dir = fs::temp_directory_path() / ("flexgen-memory-model-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const Case& c : kCases) {
    const Plan plan = plan_of(spec, c, 6, 4);
    RuntimeOptions options;
    options.budgets[Tier::kGpu] = options.budgets[Tier::kCpu] = options.budgets[Tier::kDisk] = Bytes{1} << 40;
    options.offload_dir = dir;
    HostRuntime runtime(plan, weights, options);
    std::vector<std::vector<std::int32_t>> prompts(static_cast<std::size_t>(c.gbs * c.ngb), {2, 5, 9, 11});
    const RunReport report = runtime.generate(prompts, SamplingConfig{}, std::nullopt);
    const TierValues predicted = estimate_memory(plan).buffers;
    expect_within(predicted, report.peak, 0.05, plan.policy.to_string());
  }
  fs::remove_all(dir);
}

// The equations by hand, on the tiny model (f32, hidden 16, 4 heads of 4, ffn 64, vocab 40, 32
// positions, 2 layers), prompt 6, 4 tokens, gpu batch 2 x 3 batches, weights all on the CPU, the
// cache half on the GPU and half on disk (4 of 8 units each), activations on the CPU:
//   layer bytes: embedding (40 + 34) * 16 * 4 = 4736; decoder 3280 * 4 = 13120; output
//   (32 + 640) * 4 = 2688; all weights 4736 + 2 * 13120 + 2688 = 33664.
//   C (one layer-batch, key + value, 8 units, 9 positions, rows of 16 B) = 2 * 8 * 9 * 16 = 2304
//   A (one batch's hidden state over the prompt) = 2 * 6 * 16 * 4 = 768
//   gpu  = 2 slots * 13120 (largest layer, all off the GPU) + 2 * 3 * 0.5 * 2304 + 2 * 0.5 * 2304
//          + 2 activation slots * 768 = 26240 + 6912 + 2304 + 1536 = 36992
//   cpu  = 33664 + 3 * 768 + 2 staging * 0.5 * 2304 = 33664 + 2304 + 2304 = 38272
//   disk = 2 * 3 * 0.5 * 2304 = 6912
TEST(MemoryModel, HandWorkedCase) {
  const Plan plan = plan_of(testing::tiny_opt_spec(), {{0, 100, 50, 0, 0, 100}, 2, 3}, 6, 4);
  const MemorySizes z = MemorySizes::of_plan(plan);
  EXPECT_EQ(z.layer_weight_bytes[0], 4736.0);
  EXPECT_EQ(z.layer_weight_bytes[1], 13120.0);
  EXPECT_EQ(z.layer_weight_bytes[2], 2688.0);
  EXPECT_EQ(z.cache_bytes_per_layer_batch, 2304.0);
  EXPECT_EQ(z.activation_bytes_per_batch, 768.0);
  const TierValues m = predict_memory(z, PlacementShares::of_plan(plan), 3, false);
  EXPECT_EQ(m[Tier::kGpu], 36992.0);
  EXPECT_EQ(m[Tier::kCpu], 38272.0);
  EXPECT_EQ(m[Tier::kDisk], 6912.0);
}

// Affine in uniform shares: the model at a mix equals the mix of the model at pure placements.
TEST(MemoryModel, AffineInUniformShares) {
  const Plan plan = plan_of(ModelSpec::from_name("opt-1.3b"), {{100, 0, 100, 0, 100, 0}, 8, 4, true}, 512, 32);
  const MemorySizes z = MemorySizes::of_plan(plan);
  const auto at = [&](TierValues w, TierValues c) {
    return predict_memory(z, PlacementShares::uniform(w, c, Tier::kCpu), 4, true);
  };
  const TierValues g = TierValues::all_on(Tier::kGpu), cpu = TierValues::all_on(Tier::kCpu),
                   d = TierValues::all_on(Tier::kDisk);
  TierValues w, c;
  w[Tier::kGpu] = 0.2, w[Tier::kCpu] = 0.5, w[Tier::kDisk] = 0.3;
  c[Tier::kGpu] = 0.1, c[Tier::kCpu] = 0.6, c[Tier::kDisk] = 0.3;
  const TierValues mixed = at(w, c);
  const TierValues base = at(g, g), wc = at(cpu, g), wd = at(d, g), cc = at(g, cpu), cd = at(g, d);
  for (Tier t : kAllTiers) {
    const double expected = base[t] + 0.5 * (wc[t] - base[t]) + 0.3 * (wd[t] - base[t]) + 0.6 * (cc[t] - base[t]) +
                            0.3 * (cd[t] - base[t]);
    EXPECT_NEAR(mixed[t], expected, 1e-6 * expected) << tier_name(t);
  }
}

// The workspace the estimate adds: the CUDA backend's sizes (by hand in
// tests/engine/runtime/cuda_workspace_test.cc: 340736000 bytes here) plus the padding allowance,
// for prefill and decode alike.
TEST(MemoryModel, GpuWorkspace) {
  const Plan plan = plan_of(ModelSpec::from_name("opt-1.3b"), {{100, 0, 100, 0, 100, 0}, 8, 1}, 512, 32);
  const GpuWorkspace w = gpu_workspace(plan.spec, plan.workload, plan.policy);
  const double expected = 340736000.0 + 64.0 * 1024 * 1024;
  EXPECT_EQ(w.prefill, expected);
  EXPECT_EQ(w.decode, expected);
  const MemoryEstimate m = estimate_memory(plan);
  EXPECT_EQ(m.peak()[Tier::kGpu], m.buffers[Tier::kGpu] + expected);
}

}  // namespace
}  // namespace flexgen
