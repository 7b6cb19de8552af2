#include "engine/search/placement_lp.h"

#include <algorithm>
#include <vector>

#include "engine/search/linear_program.h"

namespace flexgen {
namespace {

// The LP leaves this fraction of every tier free, so that its floating-point optimum never sits
// above a capacity by rounding noise.
constexpr double kCapacitySlack = 1e-6;

// One variable: the share of one kind of data (the weights of one layer kind, or the cache) on
// one off-GPU tier; the GPU keeps the rest.
constexpr int kCacheVariable = -1;
constexpr int kAllKinds = 3;  // one weight share for every layer kind

struct Variable {
  int kind;  // LayerKind index for weights, kAllKinds for all of them, kCacheVariable for the cache
  Tier tier;
  PlacementShares unit;  // the base placement with this kind of data all on `tier`
};

}  // namespace

PlacementLp solve_placement_lp(const LayerModel& model, const PlacementShares& fixed, bool free_weights,
                               bool free_cache, std::int64_t batches, const TierValues& capacities,
                               bool feasibility_only, bool per_kind_weights, LinearProgram* workspace) {
  const bool disk = capacities[Tier::kDisk] > 0;
  const TierValues gpu = TierValues::all_on(Tier::kGpu);
  PlacementShares base = fixed;
  if (free_weights) base.weights = {gpu, gpu, gpu};
  if (free_cache) base.cache = gpu;

  std::vector<Variable> vars;
  for (Tier t : {Tier::kCpu, Tier::kDisk}) {
    if (t == Tier::kDisk && !disk) continue;
    if (free_weights && per_kind_weights) {
      for (std::size_t k = 0; k < 3; ++k) {
        PlacementShares s = base;
        s.weights[k] = TierValues::all_on(t);
        vars.push_back({static_cast<int>(k), t, s});
      }
    } else if (free_weights) {
      PlacementShares s = base;
      s.weights = {TierValues::all_on(t), TierValues::all_on(t), TierValues::all_on(t)};
      vars.push_back({kAllKinds, t, s});
    }
    if (free_cache) {
      PlacementShares s = base;
      s.cache = TierValues::all_on(t);
      vars.push_back({kCacheVariable, t, s});
    }
  }
  // Built the same way every time (no row left out for being zero), so that a reused workspace
  // keeps its structure and warm-starts.
  LinearProgram local;
  LinearProgram& lp = workspace ? *workspace : local;
  lp.clear();
  for (std::size_t v = 0; v < vars.size(); ++v) lp.add_column(0.0, 1.0, 0.0);
  // Shares of one kind of data on CPU and disk sum to at most 1.
  for (int kind = kCacheVariable; kind <= kAllKinds; ++kind) {
    std::vector<std::pair<int, double>> terms;
    for (std::size_t v = 0; v < vars.size(); ++v) {
      if (vars[v].kind == kind) terms.emplace_back(static_cast<int>(v), 1.0);
    }
    if (terms.size() > 1) lp.add_row(terms, -LinearProgram::kInfinity, 1.0);
  }

  // Memory: the memory model's rows. The weight slots (2 max_k of a layer's off-GPU bytes) and
  // staging buffers (2 max_k of its disk bytes) are one variable each, bounded below by every
  // kind's term: exact at the optimum whenever the tier is binding, a relaxation otherwise.
  const MemoryForm form = model.memory_form(base.activations, batches);
  const TierValues at_base = form.evaluate(base);
  // The slot and staging variables count bytes in units of the largest layer (well scaled).
  double unit_bytes = 1.0;
  for (std::size_t k = 0; k < 3; ++k) unit_bytes = std::max({unit_bytes, form.slot_bytes[k], form.staging_bytes[k]});
  int slot = -1, staging = -1;
  if (free_weights) {
    slot = lp.add_column(0.0, LinearProgram::kInfinity, 0.0);
    staging = lp.add_column(0.0, LinearProgram::kInfinity, 0.0);
    for (std::size_t k = 0; k < 3; ++k) {
      std::vector<std::pair<int, double>> off_gpu = {{slot, 1.0}}, on_disk = {{staging, 1.0}};
      for (std::size_t v = 0; v < vars.size(); ++v) {
        if (vars[v].kind != static_cast<int>(k) && vars[v].kind != kAllKinds) continue;
        off_gpu.emplace_back(static_cast<int>(v), -form.slot_bytes[k] / unit_bytes);
        if (vars[v].tier == Tier::kDisk) on_disk.emplace_back(static_cast<int>(v), -form.staging_bytes[k] / unit_bytes);
      }
      lp.add_row(off_gpu, 0.0, LinearProgram::kInfinity);
      if (on_disk.size() > 1) lp.add_row(on_disk, 0.0, LinearProgram::kInfinity);
    }
  }
  for (Tier t : kAllTiers) {
    const double scale = 1.0 / std::max(capacities[t], 1.0);
    double rhs = capacities[t] * (1.0 - kCapacitySlack) - at_base[t];
    if (t == Tier::kGpu) rhs -= model.gpu_workspace_bytes();
    std::vector<std::pair<int, double>> terms;
    for (std::size_t v = 0; v < vars.size(); ++v) {
      const auto share = static_cast<std::size_t>(vars[v].tier);
      const auto on_gpu = static_cast<std::size_t>(Tier::kGpu);
      double delta = 0;
      if (vars[v].kind == kCacheVariable) {
        delta = form.cache[share][t] - form.cache[on_gpu][t];
      } else {
        for (std::size_t k = 0; k < 3; ++k) {
          if (vars[v].kind == kAllKinds || vars[v].kind == static_cast<int>(k)) {
            delta += form.weights[k][share][t] - form.weights[k][on_gpu][t];
          }
        }
      }
      terms.emplace_back(static_cast<int>(v), delta * scale);
    }
    if (t == Tier::kGpu && slot >= 0) terms.emplace_back(slot, 2.0 * unit_bytes * scale);
    if (t == Tier::kCpu && staging >= 0) terms.emplace_back(staging, 2.0 * unit_bytes * scale);
    lp.add_row(terms, -LinearProgram::kInfinity, rhs * scale);
  }

  if (!feasibility_only) {
    // Time: per (step group, layer kind) a step variable T >= every resource's busy time (overlap) or
    // >= their sum; the objective counts each step as often as the run has it. The coefficients
    // are the layer model at each unit placement minus the model at the base.
    const LayerTimes t0 = model.layer_times(base, batches);
    std::vector<LayerTimes> tv;
    for (const Variable& v : vars) tv.push_back(model.layer_times(v.unit, batches));
    for (std::size_t p = 0; p < kStepGroups; ++p) {
      for (LayerKind k : kAllLayerKinds) {
        const double count = model.step_count(p, k);
        if (count <= 0) continue;
        const int step = lp.add_column(0.0, LinearProgram::kInfinity, count);
        const auto add_busy_row = [&](const std::vector<std::size_t>& resources) {
          double constant = 0;
          std::vector<std::pair<int, double>> terms = {{step, 1.0}};
          std::vector<double> coefficient(vars.size(), 0.0);
          for (std::size_t r : resources) {
            constant += t0.at(p, k)[r];
            for (std::size_t v = 0; v < vars.size(); ++v) coefficient[v] += tv[v].at(p, k)[r] - t0.at(p, k)[r];
          }
          for (std::size_t v = 0; v < vars.size(); ++v) terms.emplace_back(static_cast<int>(v), -coefficient[v]);
          lp.add_row(terms, constant, LinearProgram::kInfinity);
        };
        if (model.overlap()) {
          for (std::size_t r = 0; r < static_cast<std::size_t>(kNumResources); ++r) add_busy_row({r});
        } else {
          add_busy_row({0, 1, 2, 3, 4, 5});
        }
      }
    }
  }
  const LinearProgram::Solution sol = lp.solve();
  PlacementLp out;
  if (!sol.feasible) return out;
  out.feasible = true;
  out.shares = base;
  for (std::size_t v = 0; v < vars.size(); ++v) {
    const double x = std::clamp(sol.x[v], 0.0, 1.0);
    if (vars[v].kind == kCacheVariable) {
      out.shares.cache[vars[v].tier] = x;
    } else if (vars[v].kind == kAllKinds) {
      for (TierValues& w : out.shares.weights) w[vars[v].tier] = x;
    } else {
      out.shares.weights[static_cast<std::size_t>(vars[v].kind)][vars[v].tier] = x;
    }
  }
  const auto settle = [](TierValues& s) { s[Tier::kGpu] = std::max(0.0, 1.0 - s[Tier::kCpu] - s[Tier::kDisk]); };
  if (free_weights) {
    for (TierValues& w : out.shares.weights) settle(w);
  }
  if (free_cache) settle(out.shares.cache);
  if (!feasibility_only) out.seconds = model.total_seconds(model.layer_times(out.shares, batches));
  return out;
}

}  // namespace flexgen
