#include "engine/search/policy_search.h"

#include "engine/core/parallel.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/costmodel/layer_model.h"
#include "engine/costmodel/memory_model.h"
#include "engine/runtime/disk_store.h"
#include "engine/runtime/plan.h"
#include "engine/search/placement_lp.h"

namespace flexgen {
namespace {

// Margin (in percent) that keeps a chosen percent number away from the edges of the interval that
// yields the intended whole-tensor or whole-unit split.
constexpr double kPercentMargin = 1e-6;
constexpr std::int64_t kMaxGpuBatches = 1024;
// How many of the best LP classes are made real and priced on their plans.
constexpr std::size_t kExtraRealised = 5;
// ... and then every class whose LP (an upper bound of what it can realise) is not below the best
// priced policies, give or take the LP's numerical tolerance.
constexpr double kBoundSlack = 1e-6;
constexpr std::size_t kMaxRealised = 24;
// Whole-tensor splits of a class priced in full (the best ones by their LP).
constexpr std::size_t kCutsPriced = 3;

// The gpu batch sizes the walk visits: FlexGen's 1, 2, 3, 4, 8, 16, ... and the points halfway
// (in ratio) between, 6, 12, 24, 48, ...
std::vector<std::int64_t> batch_size_walk(std::int64_t most) {
  std::vector<std::int64_t> out = {1, 2, 3, 4};
  for (std::int64_t p = 4; p * 2 <= most * 2; p *= 2) {
    out.push_back(p * 3 / 2);
    out.push_back(p * 2);
  }
  out.erase(std::remove_if(out.begin(), out.end(), [most](std::int64_t b) { return b > most; }), out.end());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// Batch counts tried for one class: every count up to 8, then steps of about 25%, and the largest
// feasible count.
std::vector<std::int64_t> batch_count_grid(std::int64_t most) {
  std::vector<std::int64_t> out;
  for (std::int64_t n = 1; n <= std::min<std::int64_t>(most, 8); ++n) out.push_back(n);
  std::int64_t n = 8;
  while (n < most) {
    n = std::max(n + 1, static_cast<std::int64_t>(std::llround(static_cast<double>(n) * 1.25)));
    out.push_back(std::min(n, most));
  }
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

struct ClassKey {
  std::int64_t gpu_batch_size = 1;
  std::int64_t num_gpu_batches = 1;
  Tier activations = Tier::kGpu;
  bool cpu_cache_compute = false;
};

struct LpRecord {
  ClassKey key;
  Seconds seconds = 0;
  double throughput = 0;
  PlacementShares shares;
};

using LpOutcome = PlacementLp;

PolicyConfig switches_for(const SearchOptions& options, std::int64_t gpu_batch_size, bool cpu_cache_compute) {
  PolicyConfig c;
  c.gpu_batch_size = gpu_batch_size;
  c.num_gpu_batches = 1;
  c.overlap = true;
  c.cpu_cache_compute = cpu_cache_compute;
  c.compress_weight = options.compress_weight;
  c.compress_cache = options.compress_cache;
  c.attn_sparsity = options.attn_sparsity;
  return c;
}

class Searcher {
 public:
  Searcher(const ModelSpec& spec, const Workload& workload, const HardwareSpec& hardware, const SearchOptions& options)
      : spec_(spec), workload_(workload), hardware_(hardware), options_(options),
        caps_(search_capacities(hardware, options)) {}

  SearchResult run();

 private:
  // One LP over the shares of the free kinds of data (the rest as in `fixed`), for `batches` gpu
  // batches; `feasibility_only` drops the time rows and the objective.
  LpOutcome solve(const LayerModel& model, const PlacementShares& fixed, bool free_weights, bool free_cache,
                  std::int64_t batches, bool feasibility_only);
  bool fits(const LayerModel& model, const PlacementShares& shares, std::int64_t batches) const;
  // Whether some cache placement fits next to `fixed` (weights and activations): the memory
  // model's rows cut the triangle of cache shares (cpu, disk) down to a polygon; exact, and much
  // cheaper than a feasibility LP.
  bool cache_fits(const LayerModel& model, const PlacementShares& fixed, std::int64_t batches) const;
  // The capacities for `batches` gpu batches: the disk loses what its 4 KiB region alignment may
  // waste (DiskStore rounds every region up; the memory plan counts the bytes).
  TierValues caps_for(const LayerModel& model, std::int64_t batches) const;
  void search_class(const LayerModel& model, Tier activations);
  std::optional<SearchCandidate> realise(const LpRecord& record);
  [[noreturn]] void explain_infeasible();

  const ModelSpec& spec_;
  Workload workload_;
  const HardwareSpec& hardware_;
  const SearchOptions& options_;
  TierValues caps_;
  std::vector<LpRecord> records_;
  std::map<std::pair<std::int64_t, bool>, std::unique_ptr<LayerModel>> models_;
  // Warm-start workspaces, one per kind of LP (model, activation tier, free kinds, feasibility).
  std::map<std::tuple<const LayerModel*, Tier, bool, bool, bool>, LinearProgram> workspaces_;
  std::int64_t lp_solves_ = 0;
  std::int64_t lp_classes_ = 0;
};

TierValues Searcher::caps_for(const LayerModel& model, std::int64_t batches) const {
  TierValues caps = caps_;
  if (caps[Tier::kDisk] > 0) {
    const std::int64_t layers = spec_.num_layers;
    const auto tensors = static_cast<std::int64_t>(model.decoder_tensor_bytes().size()) * layers + 5;
    const std::int64_t regions = tensors + 2 * layers * batches + batches;
    caps[Tier::kDisk] = std::max(0.0, caps[Tier::kDisk] - static_cast<double>(kDiskAlignment * regions));
  }
  return caps;
}

bool Searcher::cache_fits(const LayerModel& model, const PlacementShares& fixed, std::int64_t batches) const {
  const TierValues caps = caps_for(model, batches);
  const MemoryForm form = model.memory_form(fixed.activations, batches);
  PlacementShares base = fixed;
  base.cache = TierValues::all_on(Tier::kGpu);
  const TierValues at_base = form.evaluate(base);
  const auto cpu = static_cast<std::size_t>(Tier::kCpu), disk = static_cast<std::size_t>(Tier::kDisk),
             gpu = static_cast<std::size_t>(Tier::kGpu);
  // Points (share on the CPU, share on disk); the GPU holds the rest.
  std::vector<std::pair<double, double>> polygon = {{0.0, 0.0}, {1.0, 0.0}, {0.0, 1.0}};
  if (caps[Tier::kDisk] <= 0) polygon = {{0.0, 0.0}, {1.0, 0.0}};
  for (Tier t : kAllTiers) {
    // a * cpu + b * disk <= rhs
    const double a = form.cache[cpu][t] - form.cache[gpu][t];
    const double b = form.cache[disk][t] - form.cache[gpu][t];
    double rhs = caps[t] * (1.0 - 1e-6) - at_base[t];
    if (t == Tier::kGpu) rhs -= model.gpu_workspace_bytes();
    const auto slack = [&](const std::pair<double, double>& q) { return rhs - a * q.first - b * q.second; };
    std::vector<std::pair<double, double>> clipped;
    for (std::size_t i = 0; i < polygon.size(); ++i) {
      const auto& p = polygon[i];
      const auto& q = polygon[(i + 1) % polygon.size()];
      const double sp = slack(p), sq = slack(q);
      if (sp >= 0) clipped.push_back(p);
      if ((sp >= 0) != (sq >= 0)) {
        const double f = sp / (sp - sq);
        clipped.emplace_back(p.first + f * (q.first - p.first), p.second + f * (q.second - p.second));
      }
    }
    polygon = std::move(clipped);
    if (polygon.empty()) return false;
  }
  return true;
}

bool Searcher::fits(const LayerModel& model, const PlacementShares& shares, std::int64_t batches) const {
  const TierValues caps = caps_for(model, batches);
  TierValues need = model.memory(shares, batches);
  need[Tier::kGpu] += model.gpu_workspace_bytes();
  for (Tier t : kAllTiers) {
    if (need[t] > caps[t]) return false;
  }
  return true;
}

LpOutcome Searcher::solve(const LayerModel& model, const PlacementShares& fixed, bool free_weights, bool free_cache,
                          std::int64_t batches, bool feasibility_only) {
  ++lp_solves_;
  const auto key = std::tuple(&model, fixed.activations, free_weights, free_cache, feasibility_only);
  return solve_placement_lp(model, fixed, free_weights, free_cache, batches, caps_for(model, batches),
                            feasibility_only, true, &workspaces_[key]);
}

void Searcher::search_class(const LayerModel& model, Tier activations) {
  PlacementShares fixed;
  fixed.activations = activations;
  const auto feasible = [&](std::int64_t batches) {
    return solve(model, fixed, true, true, batches, /*feasibility_only=*/true).feasible;
  };
  std::vector<std::int64_t> grid;
  if (options_.num_gpu_batches) {
    if (!feasible(*options_.num_gpu_batches)) return;
    grid = {*options_.num_gpu_batches};
  } else {
    if (!feasible(1)) return;
    // The largest feasible count: doubling, then bisection (memory grows with the count).
    std::int64_t lo = 1, hi = 2;
    while (hi <= kMaxGpuBatches && feasible(hi)) {
      lo = hi;
      hi *= 2;
    }
    hi = std::min(hi, kMaxGpuBatches + 1);
    while (hi - lo > 1) {
      const std::int64_t mid = lo + (hi - lo) / 2;
      (feasible(mid) ? lo : hi) = mid;
    }
    grid = batch_count_grid(lo);
  }
  const std::int64_t gbs = model.switches().gpu_batch_size;
  const double tokens_per_batch = static_cast<double>(gbs * workload_.gen_len);
  std::map<std::int64_t, double> throughput;  // by batch count
  const auto evaluate = [&](std::int64_t batches) {
    if (const auto it = throughput.find(batches); it != throughput.end()) return it->second;
    const LpOutcome o = solve(model, fixed, true, true, batches, false);
    ++lp_classes_;
    double value = 0;
    if (o.feasible && o.seconds > 0) {
      value = tokens_per_batch * static_cast<double>(batches) / o.seconds;
      records_.push_back({{gbs, batches, activations, model.switches().cpu_cache_compute}, o.seconds, value, o.shares});
    }
    throughput[batches] = value;
    return value;
  };
  std::size_t best = 0;
  for (std::size_t i = 0; i < grid.size(); ++i) {
    if (evaluate(grid[i]) > evaluate(grid[best])) best = i;
  }
  // Refine between the best grid point's neighbours by ternary search on the batch count.
  std::int64_t lo = grid[best > 0 ? best - 1 : 0];
  std::int64_t hi = grid[std::min(best + 1, grid.size() - 1)];
  while (hi - lo > 2) {
    const std::int64_t m1 = lo + (hi - lo) / 3;
    const std::int64_t m2 = hi - (hi - lo) / 3;
    if (evaluate(m1) < evaluate(m2)) {
      lo = m1;
    } else {
      hi = m2;
    }
  }
  for (std::int64_t n = lo; n <= hi; ++n) evaluate(n);
}

// The number in [lo, hi] with the fewest decimals, nearest to `target` among those.
double nice_value(double lo, double hi, double target) {
  target = std::clamp(target, lo, hi);
  for (int digits = 0; digits <= 9; ++digits) {
    const double scale = std::pow(10.0, digits);
    double best = std::nan("");
    for (double v : {std::round(target * scale), std::floor(target * scale), std::ceil(target * scale)}) {
      const double value = v / scale;
      if (value >= lo && value <= hi && (std::isnan(best) || std::abs(value - target) < std::abs(best - target))) {
        best = value;
      }
    }
    if (!std::isnan(best)) return best;
  }
  return target;
}

std::optional<SearchCandidate> Searcher::realise(const LpRecord& rec) {
  const LayerModel& model = *models_.at({rec.key.gpu_batch_size, rec.key.cpu_cache_compute});
  ModelSpec one_layer = spec_;
  one_layer.num_layers = 1;
  Workload w = workload_;
  w.num_sequences = rec.key.gpu_batch_size;
  const bool disk = caps_[Tier::kDisk] > 0;
  const double tokens_per_batch = static_cast<double>(rec.key.gpu_batch_size * workload_.gen_len);

  // 1. Weights. The runtime places whole tensors, the same split in every decoder layer, so the
  //    achievable shares are the cumulative byte shares of a decoder layer's tensors (in HF order).
  //    Try every split, each with the best cache placement (an LP over the cache shares alone) at
  //    the largest batch count up to the LP's that still fits; the best few go on.
  const std::vector<Bytes>& bytes = model.decoder_tensor_bytes();
  const std::size_t n = bytes.size();
  double total = 0;
  for (Bytes b : bytes) total += static_cast<double>(b);
  std::vector<double> mid(n), boundary(n + 1, 0.0);
  double cumulative = 0;
  for (std::size_t i = 0; i < n; ++i) {
    cumulative += static_cast<double>(bytes[i]);
    mid[i] = (cumulative - static_cast<double>(bytes[i]) / 2.0) / total * 100.0;  // as plan.cc
    boundary[i + 1] = cumulative / total;
  }
  const TierValues& lp_w = rec.shares.weights_of(LayerKind::kDecoder);
  const double disk_target = lp_w[Tier::kDisk];
  const double cpu_end_target = lp_w[Tier::kDisk] + lp_w[Tier::kCpu];
  // The percents P such that exactly tensors [0, a) have their midpoint below P: with P = disk %,
  // they go to disk; with P = disk % + cpu %, [0, a) is off the GPU.
  const auto edge_interval = [&](std::size_t a) {
    return std::pair(a == 0 ? 0.0 : mid[a - 1] + kPercentMargin, a == n ? 100.0 : mid[a] - kPercentMargin);
  };
  struct WeightOption {
    double gpu_percent = 0, cpu_percent = 0;  // the --percent numbers (round ones where possible)
    PlacementShares fixed;
    std::int64_t batches = 0;      // the best batch count for this split (by the LP)
    std::int64_t max_batches = 0;  // the largest that fits
    double throughput = 0;
  };
  std::vector<WeightOption> cuts;
  const auto cache_lp = [&](const PlacementShares& fixed, std::int64_t batches, bool feasibility_only) {
    return solve(model, fixed, false, true, batches, feasibility_only);
  };
  const auto throughput_of = [&](const LpOutcome& o, std::int64_t batches) {
    return o.feasible && o.seconds > 0 ? tokens_per_batch * static_cast<double>(batches) / o.seconds : 0.0;
  };
  const auto try_cuts = [&](const std::vector<std::size_t>& as, const std::vector<std::size_t>& bs) {
    std::vector<std::pair<double, double>> seen;
    for (std::size_t a : as) {
      if (!disk && a != 0) continue;
      for (std::size_t b : bs) {
        if (b < a) continue;
        const auto [d_lo, d_hi] = edge_interval(a);
        const auto [e_lo_cut, e_hi] = edge_interval(b);
        const double e_lo = std::max(e_lo_cut, d_lo);
        // Pick the printed numbers themselves (gpu %, then cpu %) so that they are round.
        const double gpu = nice_value(100.0 - e_hi, std::max(100.0 - e_hi, 100.0 - e_lo), 100.0 - 100.0 * cpu_end_target);
        const double e = 100.0 - gpu;
        const double cpu = nice_value(std::max(0.0, e - d_hi), std::max(0.0, e - d_lo), e - 100.0 * disk_target);
        if (std::find(seen.begin(), seen.end(), std::pair(gpu, cpu)) != seen.end()) continue;
        seen.emplace_back(gpu, cpu);
        PolicyConfig config = model.switches();
        config.set_percent({gpu, cpu, 100, 0, 100, 0});
        PlacementShares fixed = PlacementShares::of_plan(make_plan(one_layer, w, Policy::create(config)));
        fixed.activations = rec.key.activations;
        // The largest batch count up to the LP's at which this split fits (memory grows with it).
        std::int64_t lo = rec.key.num_gpu_batches;
        LpOutcome at = cache_lp(fixed, lo, false);
        if (!at.feasible) {
          std::int64_t hi = lo;
          lo = 0;
          while (hi - lo > 1) {
            const std::int64_t m = lo + (hi - lo) / 2;
            (cache_fits(model, fixed, m) ? lo : hi) = m;
          }
          if (lo == 0) continue;
          at = cache_lp(fixed, lo, false);
        }
        const double value = throughput_of(at, lo);
        if (value > 0) cuts.push_back(WeightOption{gpu, cpu, fixed, lo, lo, value});
      }
    }
  };
  // Every split that differs by more than a bias or a LayerNorm from the others (a few dozen).
  std::vector<std::size_t> distinct;
  for (std::size_t i = 0; i <= n; ++i) {
    if (distinct.empty() || boundary[i] - boundary[distinct.back()] >= 1e-3) distinct.push_back(i);
  }
  try_cuts(distinct, distinct);
  if (cuts.empty()) return std::nullopt;
  std::sort(cuts.begin(), cuts.end(), [](const WeightOption& a, const WeightOption& b) { return a.throughput > b.throughput; });
  if (cuts.size() > kCutsPriced) cuts.resize(kCutsPriced);
  // With the split fixed, the best batch count may be below the largest that fits.
  for (WeightOption& cut : cuts) {
    WeightOption* chosen = &cut;
    std::map<std::int64_t, double> seen;
    const auto value_at = [&](std::int64_t batches) {
      if (const auto it = seen.find(batches); it != seen.end()) return it->second;
      return seen[batches] = throughput_of(cache_lp(chosen->fixed, batches, false), batches);
    };
    seen[chosen->batches] = chosen->throughput;
    std::int64_t lo = 1, hi = chosen->batches;
    while (hi - lo > 2) {
      const std::int64_t m1 = lo + (hi - lo) / 3;
      const std::int64_t m2 = hi - (hi - lo) / 3;
      if (value_at(m1) < value_at(m2)) {
        lo = m1;
      } else {
        hi = m2;
      }
    }
    for (std::int64_t b = lo; b <= hi; ++b) {
      if (value_at(b) > chosen->throughput) {
        chosen->throughput = value_at(b);
        chosen->batches = b;
      }
    }
  }

  // 2. Cache: whole units, rounding the LP's unit counts down or up. 3. The real policy, priced
  //    with the per-task cost model on its plan and schedule. Near the best batch count (one fewer
  //    helps at the edge of memory) the best priced policy wins.
  const std::int64_t units = model.sizes().cache_units;
  const double u = static_cast<double>(units);
  const auto finish = [&](const WeightOption* chosen, std::int64_t batches) -> std::optional<SearchCandidate> {
    const LpOutcome o = cache_lp(chosen->fixed, batches, false);
    if (!o.feasible) return std::nullopt;
    const TierValues& c = o.shares.cache;
    const double g_real = c[Tier::kGpu] * u;
    const double e_real = (c[Tier::kGpu] + c[Tier::kCpu]) * u;
    struct CacheOption {
      std::int64_t gpu_units = 0, cpu_end_units = 0;
      Seconds seconds = 0;
    };
    std::optional<CacheOption> best;
    for (double g_try : {std::floor(g_real), std::ceil(g_real)}) {
      for (double e_try : {std::floor(e_real), std::ceil(e_real)}) {
        const auto g = std::clamp(static_cast<std::int64_t>(g_try), std::int64_t{0}, units);
        auto e = std::clamp(static_cast<std::int64_t>(e_try), g, units);
        if (!disk) e = units;
        PlacementShares s = chosen->fixed;
        s.cache[Tier::kGpu] = static_cast<double>(g) / u;
        s.cache[Tier::kCpu] = static_cast<double>(e - g) / u;
        s.cache[Tier::kDisk] = static_cast<double>(units - e) / u;
        if (!fits(model, s, batches)) continue;
        const Seconds seconds = model.total_seconds(model.layer_times(s, batches));
        if (!best || seconds < best->seconds) best = CacheOption{g, e, seconds};
      }
    }
    if (!best) return std::nullopt;
    // llround(units * p / 100) == count for p in [count - 0.5, count + 0.5) * 100 / units.
    const auto unit_interval = [&](std::int64_t count) {
      return std::pair(count == 0 ? 0.0 : (static_cast<double>(count) - 0.5) * 100.0 / u + kPercentMargin,
                       count == units ? 100.0 : (static_cast<double>(count) + 0.5) * 100.0 / u - kPercentMargin);
    };
    const auto [g_lo, g_hi] = unit_interval(best->gpu_units);
    const double cache_gpu = nice_value(g_lo, g_hi, static_cast<double>(best->gpu_units) * 100.0 / u);
    const auto [c_lo, c_hi] = unit_interval(best->cpu_end_units);
    const double cache_cpu = nice_value(std::max(0.0, c_lo - cache_gpu), std::max(0.0, c_hi - cache_gpu),
                                        static_cast<double>(best->cpu_end_units - best->gpu_units) * 100.0 / u);
    PolicyConfig config = model.switches();
    config.num_gpu_batches = batches;
    config.set_percent({chosen->gpu_percent, chosen->cpu_percent, cache_gpu, cache_cpu,
                        rec.key.activations == Tier::kGpu ? 100.0 : 0.0,
                        rec.key.activations == Tier::kCpu ? 100.0 : 0.0});
    // Delegation without CPU-homed units does nothing: dropped unless the user fixed it on.
    config.cpu_cache_compute = rec.key.cpu_cache_compute && (best->cpu_end_units > best->gpu_units ||
                                                             options_.cpu_cache_compute == SearchChoice::kOn);
    const Policy policy = Policy::create(config);
    Workload run = workload_;
    run.num_sequences = policy.block_size();
    SearchCandidate cand{policy, estimate_policy(spec_, run, policy, hardware_), rec.seconds, rec.throughput,
                         rec.shares, PlacementShares::of_plan(make_plan(one_layer, run, policy))};
    // The percents were chosen to give exactly the split and the unit counts priced above.
    assert(cand.shares.weights == chosen->fixed.weights);
    assert(std::llround(cand.shares.cache[Tier::kGpu] * u) == best->gpu_units);
    assert(std::llround((cand.shares.cache[Tier::kGpu] + cand.shares.cache[Tier::kCpu]) * u) == best->cpu_end_units);
    const TierValues peak = cand.estimate.memory.peak();
    const TierValues caps = caps_for(model, batches);
    for (Tier t : kAllTiers) {
      if (peak[t] > caps[t]) return std::nullopt;
    }
    return cand;
  };
  std::optional<SearchCandidate> out;
  for (const WeightOption& cut : cuts) {
    for (std::int64_t delta : {0, -1, 1, -2, -3}) {
      const std::int64_t batches = cut.batches + delta;
      if (batches < 1 || batches > cut.max_batches) continue;
      std::optional<SearchCandidate> c = finish(&cut, batches);
      if (c && (!out || c->estimate.throughput_tok_s > out->estimate.throughput_tok_s)) out = std::move(c);
    }
  }
  return out;
}

void Searcher::explain_infeasible() {
  const std::int64_t gbs = options_.gpu_batch_size.value_or(1);
  const std::int64_t batches = options_.num_gpu_batches.value_or(1);
  const LayerModel model(spec_, workload_, hardware_, switches_for(options_, gbs, false));
  const MemorySizes& z = model.sizes();
  const double weights = z.total_weight_bytes();
  const double per_block = static_cast<double>(z.num_decoder_layers * batches) * z.cache_bytes_per_layer_batch +
                           static_cast<double>(batches) * z.activation_bytes_per_batch;
  const double have = caps_.sum();
  const auto bytes = [](double b) { return format_bytes(static_cast<Bytes>(std::llround(b))); };
  const std::string tiers = caps_[Tier::kDisk] > 0 ? "gpu, cpu and disk" : "gpu and cpu (no disk)";
  if (weights + per_block > have) {
    fail(spec_.name, " does not fit ", hardware_.name, ": its weights (", bytes(weights),
         ") and the KV cache and activations of ", gbs * batches, " sequence(s) of ", workload_.prompt_len, " + ",
         workload_.gen_len, " tokens (", bytes(per_block), ") need ", bytes(weights + per_block), " but the ", tiers,
         " tiers hold ", bytes(have), " together (", bytes(weights + per_block - have), " short)");
  }
  // Everything off the GPU: what remains there are the double buffers and the workspace.
  const Tier off = caps_[Tier::kDisk] > 0 ? Tier::kDisk : Tier::kCpu;
  const PlacementShares away = PlacementShares::uniform(TierValues::all_on(off), TierValues::all_on(off), off);
  const double gpu_min = model.memory(away, batches)[Tier::kGpu] + model.gpu_workspace_bytes();
  if (gpu_min > caps_[Tier::kGpu]) {
    fail("the GPU of ", hardware_.name, " (", bytes(caps_[Tier::kGpu]), ") is too small for ", spec_.name,
         ": with everything off the GPU, a gpu batch of ", gbs,
         " still needs the weight, cache and activation double buffers and the compute workspace there (",
         bytes(gpu_min), ", ", bytes(gpu_min - caps_[Tier::kGpu]), " short)");
  }
  fail("no placement of ", spec_.name, " fits ", hardware_.name, " with gpu batch size ", gbs, " x ", batches,
       " gpu batches under the given constraints (", tiers, " tiers hold ", bytes(have), ")");
}

SearchResult Searcher::run() {
  const auto start = std::chrono::steady_clock::now();
  std::vector<bool> delegation;
  if (options_.cpu_cache_compute != SearchChoice::kOn) delegation.push_back(false);
  if (options_.cpu_cache_compute != SearchChoice::kOff) delegation.push_back(true);
  std::vector<Tier> activation_tiers = {Tier::kGpu, Tier::kCpu};
  if (caps_[Tier::kDisk] > 0) activation_tiers.push_back(Tier::kDisk);
  const std::vector<std::int64_t> sizes = options_.gpu_batch_size
                                               ? std::vector<std::int64_t>{*options_.gpu_batch_size}
                                               : batch_size_walk(options_.max_gpu_batch_size);
  for (std::int64_t gbs : sizes) {
    const std::size_t before = records_.size();
    for (bool delegate : delegation) {
      auto& slot = models_[{gbs, delegate}];
      slot = std::make_unique<LayerModel>(spec_, workload_, hardware_, switches_for(options_, gbs, delegate));
      for (Tier act : activation_tiers) search_class(*slot, act);
    }
    // Memory grows with the gpu batch size: once nothing fits, nothing larger will.
    if (records_.size() == before) break;
  }
  if (records_.empty()) explain_infeasible();

  // The best LP point of each (gpu batch size, activation tier, delegation) class, best first.
  std::sort(records_.begin(), records_.end(),
            [](const LpRecord& a, const LpRecord& b) { return a.throughput > b.throughput; });
  std::vector<LpRecord> classes;
  for (const LpRecord& r : records_) {
    const bool seen = std::any_of(classes.begin(), classes.end(), [&](const LpRecord& c) {
      return c.key.gpu_batch_size == r.key.gpu_batch_size && c.key.activations == r.key.activations &&
             c.key.cpu_cache_compute == r.key.cpu_cache_compute;
    });
    if (!seen) classes.push_back(r);
  }
  const std::size_t top = static_cast<std::size_t>(std::max(options_.top, 1));
  const std::size_t want =
      options_.reprice ? std::max(top, static_cast<std::size_t>(std::max(options_.reprice_candidates, 1))) : top;
  // Realise classes in the order of their LP; stop once the LP of the next class (nearly an upper
  // bound of what rounding can give: it relaxes whole tensors and units) cannot beat the top
  // `want` found so far, or after kMaxRealised classes.
  std::vector<SearchCandidate> found;
  const auto threshold = [&]() {
    if (found.size() < want) return 0.0;
    std::vector<double> values;
    for (const SearchCandidate& f : found) values.push_back(f.estimate.throughput_tok_s);
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(want - 1), values.end(),
                     std::greater<>());
    return values[want - 1];
  };
  for (std::size_t i = 0; i < classes.size() && i < kMaxRealised; ++i) {
    if (i >= want + kExtraRealised && classes[i].throughput * (1.0 + kBoundSlack) < threshold()) break;
    std::optional<SearchCandidate> c = realise(classes[i]);
    if (!c) continue;
    const bool duplicate = std::any_of(found.begin(), found.end(),
                                       [&](const SearchCandidate& f) { return f.policy == c->policy; });
    if (!duplicate) found.push_back(std::move(*c));
  }
  FLEXGEN_REQUIRE(!found.empty(), "no placement of ", spec_.name, " on ", hardware_.name,
                  " survived rounding to whole tensors and cache units; try --gpu-batch-size or --no-disk");
  std::stable_sort(found.begin(), found.end(), [](const SearchCandidate& a, const SearchCandidate& b) {
    return a.estimate.throughput_tok_s > b.estimate.throughput_tok_s;
  });
  if (found.size() > want) found.erase(found.begin() + static_cast<std::ptrdiff_t>(want), found.end());
  for (SearchCandidate& c : found) c.step_estimate_tok_s = c.estimate.throughput_tok_s;
  if (options_.reprice) {
    // Independent replays: in parallel (a large block's replay takes seconds).
    parallel_for(static_cast<std::int64_t>(found.size()), 1, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        SearchCandidate& c = found[static_cast<std::size_t>(i)];
        Estimate priced = options_.reprice(c.policy);
        priced.memory = c.estimate.memory;
        c.estimate = priced;
      }
    });
    std::stable_sort(found.begin(), found.end(), [](const SearchCandidate& a, const SearchCandidate& b) {
      return a.estimate.throughput_tok_s > b.estimate.throughput_tok_s;
    });
    if (found.size() > top) found.erase(found.begin() + static_cast<std::ptrdiff_t>(top), found.end());
  }
  SearchResult result;
  result.candidates = std::move(found);
  result.lp_solves = lp_solves_;
  result.lp_classes = lp_classes_;
  result.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace

TierValues search_capacities(const HardwareSpec& hardware, const SearchOptions& options) {
  TierValues caps;
  caps[Tier::kGpu] = static_cast<double>(hardware.gpu_memory_bytes);
  caps[Tier::kCpu] = static_cast<double>(hardware.cpu_memory_bytes);
  caps[Tier::kDisk] = options.allow_disk ? static_cast<double>(hardware.disk_bytes) : 0.0;
  return caps;
}

SearchResult search_policy(const ModelSpec& spec, const Workload& workload, const HardwareSpec& hardware,
                           const SearchOptions& options) {
  spec.validate();
  hardware.validate();
  FLEXGEN_REQUIRE(workload.prompt_len >= 1, "invalid workload: --prompt-len must be at least 1 (got ",
                  workload.prompt_len, ")");
  FLEXGEN_REQUIRE(workload.gen_len >= 1, "invalid workload: --gen-len must be at least 1 (got ", workload.gen_len, ")");
  FLEXGEN_REQUIRE(workload.prompt_len + workload.gen_len <= spec.max_positions, "invalid workload: prompt ",
                  workload.prompt_len, " + generation ", workload.gen_len, " tokens exceed ", spec.name, "'s ",
                  spec.max_positions, " positions");
  FLEXGEN_REQUIRE(!options.gpu_batch_size || *options.gpu_batch_size >= 1,
                  "invalid search: --gpu-batch-size must be at least 1 (got ", options.gpu_batch_size.value_or(0), ")");
  FLEXGEN_REQUIRE(!options.num_gpu_batches || (*options.num_gpu_batches >= 1 && *options.num_gpu_batches <= kMaxGpuBatches),
                  "invalid search: --num-gpu-batches must be in [1, ", kMaxGpuBatches, "] (got ",
                  options.num_gpu_batches.value_or(0), ")");
  FLEXGEN_REQUIRE(options.top >= 1, "invalid search: --top must be at least 1 (got ", options.top, ")");
  FLEXGEN_REQUIRE(options.attn_sparsity > 0.0 && options.attn_sparsity <= 1.0,
                  "invalid search: --attn-sparsity must be in (0, 1] (got ", options.attn_sparsity, ")");
  FLEXGEN_REQUIRE(options.max_gpu_batch_size >= 1, "invalid search: the largest gpu batch size must be positive");
  return Searcher(spec, workload, hardware, options).run();
}

}  // namespace flexgen
