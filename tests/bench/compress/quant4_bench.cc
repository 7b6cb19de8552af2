// Host 4-bit quantization throughput on a 4096 x 4096 float32 matrix, single-threaded:
//   flexgen_bench --benchmark_filter=Quant4
// Arguments: axis (0: weight output channels, 1: last axis as for the KV cache), scale type
// (0: f32, 1: f16).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <random>
#include <vector>

#include "engine/compress/quant4.h"

namespace flexgen {
namespace {

constexpr std::int64_t kN = 4096;

struct Fixture {
  Shape shape{kN, kN};
  QuantSpec spec;
  std::vector<float> x;
  std::vector<std::byte> buffer;
  std::vector<float> y;

  explicit Fixture(const benchmark::State& state)
      : spec{64, static_cast<int>(state.range(0)),
             state.range(1) == 0 ? ScaleType::kFloat32 : ScaleType::kFloat16},
        x(static_cast<std::size_t>(kN * kN)),
        buffer(static_cast<std::size_t>(quantized_bytes(shape, spec))),
        y(x.size()) {
    std::mt19937_64 gen(1);
    std::normal_distribution<float> normal(0, 0.02f);
    for (float& v : x) v = normal(gen);
    quantize(x, shape, spec, buffer);
  }
};

void BM_Quant4Quantize(benchmark::State& state) {
  Fixture f(state);
  for (auto _ : state) {
    quantize(f.x, f.shape, f.spec, f.buffer);
    benchmark::DoNotOptimize(f.buffer.data());
  }
  state.SetItemsProcessed(state.iterations() * kN * kN);
}

void BM_Quant4Dequantize(benchmark::State& state) {
  Fixture f(state);
  for (auto _ : state) {
    dequantize(f.buffer, f.shape, f.spec, f.y);
    benchmark::DoNotOptimize(f.y.data());
  }
  state.SetItemsProcessed(state.iterations() * kN * kN);
}

BENCHMARK(BM_Quant4Quantize)->ArgsProduct({{0, 1}, {0, 1}})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Quant4Dequantize)->ArgsProduct({{0, 1}, {0, 1}})->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace flexgen
