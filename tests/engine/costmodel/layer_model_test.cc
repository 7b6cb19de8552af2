// The per-layer aggregate (what the LP optimises) is the per-task cost model summed, not a second
// model: at a real plan's shares its per-resource totals equal the sums over the real schedule's
// tasks. And the folded whole-run estimate equals the estimate over the full schedule.
#include "engine/costmodel/layer_model.h"

#include <gtest/gtest.h>

#include "engine/costmodel/estimate.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"
#include "support/random_opt.h"

namespace flexgen {
namespace {

const HardwareSpec& t4() {
  static const HardwareSpec hw = HardwareSpec::from_file(std::string(FLEXGEN_SOURCE_DIR) +
                                                         "/experiments/hardware/t4-paper.json");
  return hw;
}

// The same machine with the two measured refinements (a 4-bit dequantization rate and a fixed time
// per GPU compute task): the aggregates must follow them too.
const HardwareSpec& refined() {
  static const HardwareSpec hw = [] {
    HardwareSpec h = t4();
    h.gpu_dequant_bytes_per_s = 150e9;
    h.gpu_task_overhead_s = 30e-6;
    return h;
  }();
  return hw;
}

// A small fp16 model with 5 layers (hidden 256, 8 heads, ffn 1024, vocab 512).
ModelSpec small_spec() {
  ModelSpec s;
  s.name = "small";
  s.num_layers = 5;
  s.hidden_size = 256;
  s.num_heads = 8;
  s.ffn_dim = 1024;
  s.vocab_size = 512;
  s.max_positions = 256;
  s.dtype = DType::kF16;
  return s;
}

struct Case {
  std::array<double, 6> percent;
  std::int64_t gbs, ngb, gen;
  bool delegate = false, compress_weight = false, compress_cache = false, overlap = true;
  double sparsity = 1.0;
};

const Case kCases[] = {
    {{100, 0, 100, 0, 100, 0}, 4, 2, 7},
    {{0, 100, 0, 100, 0, 100}, 4, 3, 9, true},
    {{0, 0, 0, 0, 0, 0}, 2, 2, 6},
    {{30, 40, 25, 50, 0, 100}, 4, 2, 8, true, true, true},
    {{50, 50, 0, 50, 100, 0}, 4, 2, 3},
    {{20, 30, 50, 25, 0, 100}, 8, 1, 10, false, false, false, false},
    {{0, 100, 0, 100, 100, 0}, 4, 2, 2, true},
    {{100, 0, 0, 100, 100, 0}, 4, 3, 1},
    {{0, 60, 0, 75, 0, 100}, 8, 2, 12, false, false, false, true, 0.5},
};

Workload workload_of(const Case& c, std::int64_t prompt = 40) {
  Workload w;
  w.prompt_len = prompt;
  w.gen_len = c.gen;
  w.num_sequences = c.gbs * c.ngb;
  return w;
}

Policy policy_of(const Case& c) {
  PolicyConfig config;
  config.gpu_batch_size = c.gbs;
  config.num_gpu_batches = c.ngb;
  config.set_percent(c.percent);
  config.cpu_cache_compute = c.delegate;
  config.compress_weight = c.compress_weight;
  config.compress_cache = c.compress_cache;
  config.overlap = c.overlap;
  config.attn_sparsity = c.sparsity;
  return Policy::create(config);
}

std::string name_of(const Case& c) { return policy_of(c).to_string() + " gen " + std::to_string(c.gen); }

TEST(LayerModel, PerResourceTotalsEqualTheSumOverTheRealSchedule) {
  const ModelSpec spec = small_spec();
  for (const HardwareSpec* hw : {&t4(), &refined()})
  for (const Case& c : kCases) {
    const Policy policy = policy_of(c);
    const Plan plan = make_plan(spec, workload_of(c), policy);
    const Estimate real = estimate_schedule(plan, make_schedule(plan, ScheduleKind::kZigZag), *hw);
    const LayerModel model(spec, workload_of(c), *hw, policy.config());
    const LayerTimes times = model.layer_times(PlacementShares::of_plan(plan), c.ngb);
    for (int r = 0; r < kNumResources; ++r) {
      double total = 0;
      for (std::size_t g = 0; g < kStepGroups; ++g) {
        for (LayerKind k : kAllLayerKinds) total += model.step_count(g, k) * times.at(g, k)[r];
      }
      // Sparse attention keeps floor(sparsity * positions): linear only up to that rounding.
      const double tolerance = c.sparsity < 1 ? 2e-2 : 1e-9;
      EXPECT_NEAR(total, real.busy[r], tolerance * std::max(real.busy[r], 1e-12))
          << name_of(c) << " resource " << resource_name(static_cast<Resource>(r));
    }
    // Each group's step count adds up to the run's steps.
    double steps = 0;
    for (std::size_t g = 0; g < kStepGroups; ++g) steps += model.step_count(g, LayerKind::kOutput);
    EXPECT_EQ(steps, static_cast<double>(c.gen)) << name_of(c);
    // With every decode step its own group the aggregate is the run itself.
    if (c.gen <= static_cast<std::int64_t>(kDecodeGroups) + 1) {
      EXPECT_NEAR(model.total_seconds(times), real.total_s, 1e-9 * real.total_s) << name_of(c);
    }
    // Max over averages is a lower bound of the sum of per-step maxima.
    EXPECT_LE(model.total_seconds(times), real.total_s * (1 + 1e-9)) << name_of(c);
    EXPECT_GT(model.total_seconds(times), 0.5 * real.total_s) << name_of(c);
  }
}

TEST(LayerModel, MixOfPurePlacementsIsTheModelAtTheMix) {
  // The mix at uniform shares equals the per-kind mix: each layer kind only sees its own shares.
  const ModelSpec spec = small_spec();
  PolicyConfig config;
  config.gpu_batch_size = 4;
  config.cpu_cache_compute = true;
  Workload w;
  w.prompt_len = 40;
  w.gen_len = 6;
  const LayerModel model(spec, w, t4(), config);
  TierValues wshare, cshare;
  wshare[Tier::kGpu] = 0.25, wshare[Tier::kCpu] = 0.5, wshare[Tier::kDisk] = 0.25;
  cshare[Tier::kGpu] = 0.5, cshare[Tier::kCpu] = 0.5;
  PlacementShares mixed = PlacementShares::uniform(wshare, cshare, Tier::kCpu);
  const LayerTimes t = model.layer_times(mixed, 3);
  PlacementShares only_decoder = mixed;
  only_decoder.weights_of(LayerKind::kEmbedding) = TierValues::all_on(Tier::kGpu);
  const LayerTimes u = model.layer_times(only_decoder, 3);
  for (std::size_t p = 0; p < kStepGroups; ++p) {
    for (int r = 0; r < kNumResources; ++r) {
      EXPECT_EQ(t.at(p, LayerKind::kDecoder)[r], u.at(p, LayerKind::kDecoder)[r]);
      EXPECT_EQ(t.at(p, LayerKind::kOutput)[r], u.at(p, LayerKind::kOutput)[r]);
    }
  }
  const auto h2d = static_cast<std::size_t>(Resource::kH2D);
  EXPECT_GT(t.at(kPrefillGroup, LayerKind::kEmbedding)[h2d], u.at(kPrefillGroup, LayerKind::kEmbedding)[h2d]);
}

TEST(Estimate, FoldedEstimateEqualsTheFullSchedule) {
  for (const HardwareSpec* hw : {&t4(), &refined()})
  for (const ModelSpec& spec : {small_spec(), testing::tiny_opt_spec()}) {
    for (const Case& c : kCases) {
      const std::int64_t prompt = spec.max_positions >= 64 ? 40 : 8;
      if (c.gen + prompt > spec.max_positions) continue;
      for (ScheduleKind kind : {ScheduleKind::kZigZag, ScheduleKind::kRowByRow}) {
        const Policy policy = policy_of(c);
        const Plan plan = make_plan(spec, workload_of(c, prompt), policy);
        const Estimate full = estimate_schedule(plan, make_schedule(plan, kind), *hw);
        const Estimate folded = estimate_policy(spec, workload_of(c, prompt), policy, *hw, kind);
        const std::string what = name_of(c) + " " + schedule_kind_name(kind) + " " + spec.name;
        EXPECT_NEAR(folded.prefill_s, full.prefill_s, 1e-12 * full.prefill_s) << what;
        EXPECT_NEAR(folded.decode_s, full.decode_s, 1e-12 * std::max(full.decode_s, 1e-9)) << what;
        EXPECT_NEAR(folded.throughput_tok_s, full.throughput_tok_s, 1e-12 * full.throughput_tok_s) << what;
        for (int r = 0; r < kNumResources; ++r) {
          EXPECT_NEAR(folded.busy[r], full.busy[r], 1e-12 * std::max(full.busy[r], 1e-9)) << what;
        }
        for (Tier t : kAllTiers) {
          EXPECT_NEAR(folded.memory.peak()[t], full.memory.peak()[t], 1e-9 * full.memory.peak()[t] + 1e-9) << what;
        }
      }
    }
  }
}

}  // namespace
}  // namespace flexgen
