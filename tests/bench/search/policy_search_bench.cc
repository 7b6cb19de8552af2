// The full policy search (LPs over every class, rounding, re-pricing on the real plan) for the
// paper's models on its machine. The requirement: OPT-175B, prompt 512, 32 tokens, t4-paper.json,
// under one second.
#include <string>

#include <benchmark/benchmark.h>

#include "engine/core/hardware_spec.h"
#include "engine/core/model_spec.h"
#include "engine/costmodel/estimate.h"
#include "engine/search/policy_search.h"

namespace flexgen {
namespace {

const HardwareSpec& t4() {
  static const HardwareSpec hw = HardwareSpec::from_file(std::string(FLEXGEN_SOURCE_DIR) +
                                                         "/experiments/hardware/t4-paper.json");
  return hw;
}

void BM_SearchOnT4(benchmark::State& state, const char* model) {
  const ModelSpec spec = ModelSpec::from_name(model);
  Workload w;
  w.prompt_len = 512;
  w.gen_len = 32;
  SearchResult r;
  for (auto _ : state) {
    r = search_policy(spec, w, t4(), SearchOptions{});
    benchmark::DoNotOptimize(r);
  }
  state.counters["lp_solves"] = static_cast<double>(r.lp_solves);
  state.counters["tok_per_s"] = r.candidates.at(0).estimate.throughput_tok_s;
  state.counters["gpu_batch"] = static_cast<double>(r.candidates.at(0).policy.gpu_batch_size());
  state.counters["gpu_batches"] = static_cast<double>(r.candidates.at(0).policy.num_gpu_batches());
}
BENCHMARK_CAPTURE(BM_SearchOnT4, opt_175b, "opt-175b")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_SearchOnT4, opt_30b, "opt-30b")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_SearchOnT4, opt_6_7b, "opt-6.7b")->Unit(benchmark::kMillisecond);

// Pricing one policy on its real plan (what the search does for each finalist).
void BM_EstimatePolicy175b(benchmark::State& state) {
  const ModelSpec spec = ModelSpec::from_name("opt-175b");
  PolicyConfig c;
  c.gpu_batch_size = 32;
  c.num_gpu_batches = 8;
  c.set_percent({0, 50, 0, 0, 0, 100});
  c.cpu_cache_compute = true;
  const Policy policy = Policy::create(c);
  Workload w;
  w.prompt_len = 512;
  w.gen_len = 32;
  w.num_sequences = policy.block_size();
  for (auto _ : state) benchmark::DoNotOptimize(estimate_policy(spec, w, policy, t4()));
}
BENCHMARK(BM_EstimatePolicy175b)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace flexgen
