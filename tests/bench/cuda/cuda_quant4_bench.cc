// CUDA 4-bit dequantization of an OPT-30B MLP weight [7168, 28672] (G = 64 along axis 0, fp16
// group parameters), to fp16 and to fp32, and quantization of fp16 cache rows:
//   flexgen_bench --benchmark_filter=CudaQuant4
// Dequant bytes = the quantized buffer (codes 7168 * 28672 / 2 + 2 * 112 * 28672 * 2 parameters)
// read + the output written (2 or 4 bytes per value). Quantize rows: 1792 rows of 128 (a decode
// step's new keys) read as fp16, written as 72-byte rows. See docs/cuda-kernels.md.
#include <benchmark/benchmark.h>

#ifdef FLEXGEN_HAVE_CUDA
#include <cstddef>
#include <cstdint>

#include "engine/compress/quant4.h"
#include "engine/cuda/device_buffer.cuh"
#include "engine/cuda/ops/quant4.cuh"
#include "tests/bench/cuda/cuda_bench_util.h"

namespace flexgen {
namespace {

template <typename Out>
void run_dequant(benchmark::State& state) {
  if (bench::skip_without_gpu(state)) return;
  const Shape shape{7168, 28672};
  const QuantSpec spec = weight_quant_spec(ScaleType::kFloat16);
  const QuantLayout layout = quant_layout(shape, spec);
  cuda::DeviceBuffer<std::byte> in(static_cast<std::size_t>(layout.total_bytes));
  cuda::DeviceBuffer<Out> out(static_cast<std::size_t>(shape_numel(shape)));
  in.fill_bytes(0x3c);  // codes 12 and 3; parameters fp16 0x3c3c = 1.06
  bench::time_on_gpu(state, [&] { cuda::dequantize(in.get(), shape, spec, out.get(), nullptr); });
  const double bytes = static_cast<double>(layout.total_bytes) + static_cast<double>(out.bytes());
  bench::report(state, bytes, 2.0 * static_cast<double>(shape_numel(shape)));
}

void BM_CudaQuant4DequantizeF16(benchmark::State& state) { run_dequant<__half>(state); }
void BM_CudaQuant4DequantizeF32(benchmark::State& state) { run_dequant<float>(state); }

void BM_CudaQuant4QuantizeRows(benchmark::State& state) {
  if (bench::skip_without_gpu(state)) return;
  const std::int64_t rows = state.range(0);
  const std::int64_t head_dim = 128;
  const QuantSpec spec = cache_quant_spec(ScaleType::kFloat16);
  const Bytes row_bytes = quantized_bytes(Shape{1, head_dim}, spec);
  cuda::DeviceBuffer<__half> x(static_cast<std::size_t>(rows * head_dim));
  cuda::DeviceBuffer<std::byte> out(static_cast<std::size_t>(rows * row_bytes));
  x.fill_bytes(0x3c);
  bench::time_on_gpu(state, [&] { cuda::quantize_rows(x.get(), rows, head_dim, spec, out.get(), nullptr); });
  bench::report(state, static_cast<double>(x.bytes() + out.bytes()), 0.0);
}

BENCHMARK(BM_CudaQuant4DequantizeF16)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaQuant4DequantizeF32)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaQuant4QuantizeRows)->Arg(1792)->Arg(1792 * 512)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace flexgen

#else
static void BM_CudaQuant4Unavailable(benchmark::State& state) {
  state.SkipWithError("built without the CUDA backend");
}
BENCHMARK(BM_CudaQuant4Unavailable);
#endif
