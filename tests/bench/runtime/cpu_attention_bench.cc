// Delegated CPU decode attention (cpu_attention.h) on all hardware threads: units of head_dim 128
// over 540 cached positions; 896 units as one gpu batch of a 16 x 3 OPT-30B block delegates it,
// 558 as the CPU share (10.4%) of a 96-sequence batch.
//   flexgen_bench --benchmark_filter=CpuDecodeAttention
// Arguments: rows (0: fp16, 1: 4-bit), kept positions (0: dense, k > 0: top-k), units. The counter
// `counted_flops` is the rate in FLOPs as the schedule counts them (2 * head_dim * (positions +
// kept) per unit; dense: kept = positions), the unit of the cost model's cpu_attention rates.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstring>
#include <random>
#include <vector>

#include "engine/compress/quant4.h"
#include "engine/runtime/cpu_attention.h"
#include "engine/tensor/tensor.h"

namespace flexgen {
namespace {

constexpr std::int64_t kHeadDim = 128, kPast = 540, kHeads = 8;

void BM_CpuDecodeAttention(benchmark::State& state) {
  const bool compressed = state.range(0) != 0;
  const std::int64_t kept = state.range(1);
  const std::int64_t units = state.range(2);
  const Bytes row = compressed ? quantized_bytes(Shape{1, kHeadDim}, cache_quant_spec(ScaleType::kFloat16)) : kHeadDim * 2;
  // Room for one more position per iteration: each call appends its new rows at `past`.
  std::vector<std::byte> keys(static_cast<std::size_t>((kPast + 1) * units * row)), values(keys.size());
  std::mt19937_64 gen(1);
  std::normal_distribution<float> normal(0, 1);
  std::vector<std::uint16_t> h(static_cast<std::size_t>(kHeadDim));
  auto random_half_row = [&] {
    for (auto& x : h) x = float_to_half(normal(gen));
  };
  for (std::int64_t p = 0; p < kPast; ++p) {
    for (std::int64_t i = 0; i < units; ++i) {
      for (std::byte* base : {keys.data(), values.data()}) {
        random_half_row();
        std::byte* dst = base + (p * units + i) * row;
        if (compressed) {
          quantize_cache_row_f16(h.data(), kHeadDim, dst, row);
        } else {
          std::memcpy(dst, h.data(), static_cast<std::size_t>(row));
        }
      }
    }
  }
  std::vector<std::uint16_t> q(static_cast<std::size_t>(units * kHeadDim)), nk(q.size()), nv(q.size()), out(q.size());
  for (auto* v : {&q, &nk, &nv}) {
    for (auto& x : *v) x = float_to_half(normal(gen) * 0.1f);
  }
  std::vector<std::int64_t> pads(static_cast<std::size_t>((units + kHeads - 1) / kHeads), 0);
  CpuAttentionBatch a;
  a.units = units;
  a.num_heads = kHeads;
  a.head_dim = kHeadDim;
  a.past = kPast;
  a.pad_len = pads;
  a.query = q.data();
  a.new_key = nk.data();
  a.new_value = nv.data();
  a.keys = keys.data();
  a.values = values.data();
  a.row_bytes = row;
  a.compressed = compressed;
  a.kept = kept;
  a.out = out.data();
  for (auto _ : state) {
    cpu_decode_attention_f16(a);
    benchmark::DoNotOptimize(out.data());
  }
  const double flops = static_cast<double>(units) * 2.0 * kHeadDim *
                       static_cast<double>((kPast + 1) + (kept > 0 ? kept + 1 : kPast + 1));
  state.counters["counted_flops"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CpuDecodeAttention)
    ->ArgNames({"q4", "kept", "units"})
    ->Args({0, 0, 1024})
    ->Args({1, 0, 1024})
    ->Args({0, 135, 1024})
    ->Args({1, 135, 1024})
    ->Args({0, 0, 896})
    ->Args({1, 0, 558})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace flexgen
