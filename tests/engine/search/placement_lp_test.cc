// The LP against a brute-force search over the placement shares on small cases: the LP is never
// worse than the best grid point and the grid gets within 1% of it.
#include "engine/search/placement_lp.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

namespace flexgen {
namespace {

const HardwareSpec& t4() {
  static const HardwareSpec hw = HardwareSpec::from_file(std::string(FLEXGEN_SOURCE_DIR) +
                                                         "/experiments/hardware/t4-paper.json");
  return hw;
}

// fp16, 5 layers, hidden 256, 8 heads, ffn 1024, vocab 512: about 8.6 MB of weights; the KV cache
// of one sequence of 64 + 16 tokens is 5 * 2 * 256 * 79 * 2 B = 0.4 MB.
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

struct GridCase {
  std::int64_t gbs, ngb;
  Tier activations;
  bool delegate;
  double gpu_mb, cpu_mb, disk_mb;  // capacities; disk 0: none
};

struct Point {
  double seconds = std::numeric_limits<double>::infinity();
  std::array<double, 4> x{};  // weights cpu, weights disk, cache cpu, cache disk
};

// Brute force: a 17^d grid over the unit box, then boxes half as wide around the best point so far.
Point brute_force(const LayerModel& model, const GridCase& c, const TierValues& caps) {
  const int dims = caps[Tier::kDisk] > 0 ? 4 : 2;
  const auto shares_at = [&](const std::array<double, 4>& x) {
    TierValues w, ch;
    w[Tier::kCpu] = x[0], w[Tier::kDisk] = x[1], w[Tier::kGpu] = 1 - x[0] - x[1];
    ch[Tier::kCpu] = x[2], ch[Tier::kDisk] = x[3], ch[Tier::kGpu] = 1 - x[2] - x[3];
    return PlacementShares::uniform(w, ch, c.activations);
  };
  const auto evaluate = [&](const std::array<double, 4>& x) {
    if (x[0] + x[1] > 1 + 1e-12 || x[2] + x[3] > 1 + 1e-12) return std::numeric_limits<double>::infinity();
    for (double v : x) {
      if (v < 0 || v > 1) return std::numeric_limits<double>::infinity();
    }
    const PlacementShares s = shares_at(x);
    TierValues need = model.memory(s, c.ngb);
    need[Tier::kGpu] += model.gpu_workspace_bytes();
    for (Tier t : kAllTiers) {
      if (need[t] > caps[t]) return std::numeric_limits<double>::infinity();
    }
    return model.total_seconds(model.layer_times(s, c.ngb));
  };
  Point best;
  std::array<double, 4> centre = {0.5, 0.5, 0.5, 0.5};
  double half = 0.5;
  constexpr int kSteps = 16;
  for (int level = 0; level < 12; ++level) {
    std::array<int, 4> i{};
    const int n = kSteps + 1;
    const int total = dims == 4 ? n * n * n * n : n * n;
    for (int k = 0; k < total; ++k) {
      int rest = k;
      for (int d = 0; d < dims; ++d) {
        i[d] = rest % n;
        rest /= n;
      }
      std::array<double, 4> x{};
      if (dims == 4) {
        for (int d = 0; d < 4; ++d) x[d] = centre[d] - half + 2 * half * i[d] / kSteps;
      } else {
        x = {centre[0] - half + 2 * half * i[0] / kSteps, 0, centre[2] - half + 2 * half * i[1] / kSteps, 0};
      }
      const double t = evaluate(x);
      if (t < best.seconds) best = {t, x};
    }
    centre = best.x;
    half /= 2;
  }
  return best;
}

TEST(PlacementLp, NeverWorseThanABruteForceGridAndWithinOnePercent) {
  const GridCase cases[] = {
      {8, 4, Tier::kGpu, false, 12, 16, 1000},
      {8, 4, Tier::kCpu, true, 12, 16, 1000},
      {4, 6, Tier::kCpu, false, 6, 30, 0},
      {16, 2, Tier::kGpu, true, 14, 10, 1000},
      {8, 8, Tier::kDisk, true, 10, 8, 1000},
  };
  Workload w;
  w.prompt_len = 64;
  w.gen_len = 16;
  for (const GridCase& c : cases) {
    PolicyConfig config;
    config.gpu_batch_size = c.gbs;
    config.cpu_cache_compute = c.delegate;
    const LayerModel model(small_spec(), w, t4(), config);
    TierValues caps;
    // The GPU's capacity on top of the compute workspace (the CUDA backend's: about 96 MiB with
    // cuBLAS's workspace and the padding allowance), which the LP subtracts first.
    caps[Tier::kGpu] = c.gpu_mb * 1e6 + model.gpu_workspace_bytes();
    caps[Tier::kCpu] = c.cpu_mb * 1e6;
    caps[Tier::kDisk] = c.disk_mb * 1e6;
    PlacementShares fixed;
    fixed.activations = c.activations;
    const PlacementLp lp = solve_placement_lp(model, fixed, true, true, c.ngb, caps, false, /*per_kind_weights=*/false);
    const Point grid = brute_force(model, c, caps);
    ASSERT_TRUE(lp.feasible) << c.gbs << "x" << c.ngb;
    ASSERT_TRUE(std::isfinite(grid.seconds));
    // (1e-4: the GPU row's right-hand side carries the ~1e8-byte workspace, and GLPK's simplex
    // stops within its tolerances relative to that.)
    EXPECT_LE(lp.seconds, grid.seconds * (1 + 1e-4)) << c.gbs << "x" << c.ngb;
    EXPECT_LE(grid.seconds, lp.seconds * 1.01) << c.gbs << "x" << c.ngb;
    // The LP's point fits, and its time is the model's at that point.
    TierValues need = model.memory(lp.shares, c.ngb);
    need[Tier::kGpu] += model.gpu_workspace_bytes();
    for (Tier t : kAllTiers) EXPECT_LE(need[t], caps[t]) << tier_name(t);
    EXPECT_DOUBLE_EQ(lp.seconds, model.total_seconds(model.layer_times(lp.shares, c.ngb)));
    // With a share per layer kind the LP can only do better (it relaxes more).
    const PlacementLp per_kind = solve_placement_lp(model, fixed, true, true, c.ngb, caps);
    ASSERT_TRUE(per_kind.feasible);
    EXPECT_LE(per_kind.seconds, lp.seconds * (1 + 1e-9));
    // The memory constraints bind: all on the GPU does not fit.
    const TierValues all_gpu = model.memory(PlacementShares{}, c.ngb);
    EXPECT_GT(all_gpu[Tier::kGpu] + model.gpu_workspace_bytes(), caps[Tier::kGpu]);
  }
}

// The LP optimum itself is exactly monotone: a faster link can only shorten every term, and less
// GPU memory only removes placements.
TEST(PlacementLp, OptimumMovesTheRightWay) {
  Workload w;
  w.prompt_len = 64;
  w.gen_len = 16;
  for (bool delegate : {false, true}) {
    for (Tier act : {Tier::kGpu, Tier::kCpu, Tier::kDisk}) {
      PolicyConfig config;
      config.gpu_batch_size = 8;
      config.cpu_cache_compute = delegate;
      HardwareSpec fast = t4();
      fast.h2d_bytes_per_s *= 2;
      const LayerModel model(small_spec(), w, t4(), config);
      const LayerModel faster(small_spec(), w, fast, config);
      TierValues caps;
      caps[Tier::kGpu] = 12e6 + model.gpu_workspace_bytes();  // on top of the compute workspace
      caps[Tier::kCpu] = 16e6;
      caps[Tier::kDisk] = 1e9;
      TierValues smaller = caps;
      smaller[Tier::kGpu] = 9e6 + model.gpu_workspace_bytes();
      PlacementShares fixed;
      fixed.activations = act;
      for (std::int64_t ngb : {1, 3, 6}) {
        const PlacementLp base = solve_placement_lp(model, fixed, true, true, ngb, caps);
        ASSERT_TRUE(base.feasible);
        const PlacementLp f = solve_placement_lp(faster, fixed, true, true, ngb, caps);
        EXPECT_LE(f.seconds, base.seconds * (1 + 1e-9));
        const PlacementLp s = solve_placement_lp(model, fixed, true, true, ngb, smaller);
        if (s.feasible) {
          EXPECT_GE(s.seconds, base.seconds * (1 - 1e-9));
        }
      }
    }
  }
}

TEST(PlacementLp, InfeasibleWhenNothingFits) {
  Workload w;
  w.prompt_len = 64;
  w.gen_len = 16;
  PolicyConfig config;
  config.gpu_batch_size = 8;
  const LayerModel model(small_spec(), w, t4(), config);
  TierValues caps;
  caps[Tier::kGpu] = 1e5;  // less than two decoder-layer weight slots
  caps[Tier::kCpu] = caps[Tier::kDisk] = 1e9;
  EXPECT_FALSE(solve_placement_lp(model, PlacementShares{}, true, true, 1, caps).feasible);
}

}  // namespace
}  // namespace flexgen
