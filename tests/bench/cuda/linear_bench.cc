// cuBLAS fp16 GEMM (fp32 accumulation) of the linear op at OPT-30B's MLP size, W [28672, 7168]
// (fc1: in 7168, out 28672), for M = rows of x:
//   flexgen_bench --benchmark_filter=CudaLinear
// FLOPs = 2 M 7168 28672; bytes = 2 (M 7168 + 7168 28672 + M 28672). M = 64 is a decode step
// (memory-bound: the weight read dominates), M = 2048 and 16384 prefill (compute-bound).
// BM_CudaLinearEpilogue adds bias and ReLU (the extra pass over y). See docs/cuda-kernels.md.
#include <benchmark/benchmark.h>

#ifdef FLEXGEN_HAVE_CUDA
#include <cstddef>
#include <cstdint>

#include "engine/cuda/cublas_handle.cuh"
#include "engine/cuda/device_buffer.cuh"
#include "engine/cuda/ops/linear.cuh"
#include "tests/bench/cuda/cuda_bench_util.h"

namespace flexgen {
namespace {

constexpr std::int64_t kIn = 7168;
constexpr std::int64_t kOut = 28672;

void run_linear(benchmark::State& state, bool epilogue) {
  if (bench::skip_without_gpu(state)) return;
  const std::int64_t rows = state.range(0);
  cuda::CublasHandle handle;
  cuda::DeviceBuffer<__half> x(static_cast<std::size_t>(rows * kIn));
  cuda::DeviceBuffer<__half> w(static_cast<std::size_t>(kOut * kIn));
  cuda::DeviceBuffer<__half> bias(static_cast<std::size_t>(kOut));
  cuda::DeviceBuffer<__half> y(static_cast<std::size_t>(rows * kOut));
  x.fill_bytes(0x1c);  // fp16 0x1c1c ~ 0.0041: sums stay finite
  w.fill_bytes(0x1c);
  bias.fill_bytes(0x1c);
  cuda::LinearEpilogue ep;
  ep.relu = epilogue;
  bench::time_on_gpu(state, [&] {
    cuda::linear(handle.get(), x.get(), rows, kIn, w.get(), epilogue ? bias.get() : nullptr, kOut,
                 y.get(), ep, nullptr);
  });
  const double m = static_cast<double>(rows);
  const double bytes = 2.0 * (m * kIn + static_cast<double>(kIn) * kOut + m * kOut) +
                       (epilogue ? 2.0 * 2.0 * m * kOut : 0.0);
  bench::report(state, bytes, 2.0 * m * kIn * kOut);
}

void BM_CudaLinear(benchmark::State& state) { run_linear(state, false); }
void BM_CudaLinearEpilogue(benchmark::State& state) { run_linear(state, true); }

// OPT-6.7B's projections in P1 (hidden 4096, ffn 16384) through the runtime's LinearContext with
// each layer's epilogue, fused (cuBLASLt, arg 1 = 1) or plain (GEMM then the epilogue kernel, 0):
// case 0 q/k/v (bias), 1 out_proj (bias + residual), 2 fc1 (bias + ReLU), 3 fc2 (bias + residual);
// arg 2 the rows: 32 (a decode step) or 16384 (prefill, 32 x 512). bytes = 2 (M in + in out +
// M out) (+ 2 M out for a residual), FLOPs = 2 M in out.
void BM_CudaLinearP1(benchmark::State& state) {
  if (bench::skip_without_gpu(state)) return;
  constexpr std::int64_t kH = 4096, kF = 16384;
  const int which = static_cast<int>(state.range(0));
  const bool fused = state.range(1) != 0;
  const std::int64_t rows = state.range(2);
  const std::int64_t in = which == 3 ? kF : kH;
  const std::int64_t out = which == 2 ? kF : kH;
  const bool residual = which == 1 || which == 3;
  cuda::CublasHandle handle;
  constexpr std::size_t kWorkspace = std::size_t{32} << 20;
  cuda::DeviceBuffer<std::byte> workspace(kWorkspace);
  cuda::LinearContext ctx(handle.get(), workspace.get(), kWorkspace);
  ctx.set_fused(fused);
  cuda::DeviceBuffer<__half> x(static_cast<std::size_t>(rows * in));
  cuda::DeviceBuffer<__half> w(static_cast<std::size_t>(out * in));
  cuda::DeviceBuffer<__half> bias(static_cast<std::size_t>(out));
  cuda::DeviceBuffer<__half> res(residual ? static_cast<std::size_t>(rows * out) : 0);
  cuda::DeviceBuffer<__half> y(static_cast<std::size_t>(rows * out));
  x.fill_bytes(0x1c);
  w.fill_bytes(0x1c);
  bias.fill_bytes(0x1c);
  res.fill_bytes(0x1c);
  cuda::LinearEpilogue ep;
  ep.relu = which == 2;
  ep.residual = residual ? res.get() : nullptr;
  bench::time_on_gpu(state, [&] {
    cuda::linear(ctx, x.get(), rows, in, w.get(), bias.get(), out, y.get(), ep, nullptr);
  });
  const double m = static_cast<double>(rows);
  const double bytes = 2.0 * (m * static_cast<double>(in) + static_cast<double>(in * out) + m * static_cast<double>(out)) +
                       (residual ? 2.0 * m * static_cast<double>(out) : 0.0);
  bench::report(state, bytes, 2.0 * m * static_cast<double>(in) * static_cast<double>(out));
  state.counters["fused_path"] = ctx.fused_calls() > 0 ? 1 : 0;
}

BENCHMARK(BM_CudaLinearP1)
    ->ArgsProduct({{0, 1, 2, 3}, {1, 0}, {32, 16384}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaLinear)->Arg(64)->Arg(2048)->Arg(16384)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaLinearEpilogue)->Arg(64)->Arg(16384)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace flexgen

#else
static void BM_CudaLinearUnavailable(benchmark::State& state) {
  state.SkipWithError("built without the CUDA backend");
}
BENCHMARK(BM_CudaLinearUnavailable);
#endif
