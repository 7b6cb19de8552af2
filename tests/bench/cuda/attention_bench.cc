// CUDA attention kernels at OPT-30B decode/prefill sizes (56 heads of 128):
//   flexgen_bench --benchmark_filter=Cuda.*Attention
// Decode: 32 sequences x 56 heads, one position-major cache part [P + 1, 1792, 128] fp16; bytes =
// the K and V rows read (2 * units * (P + 1) * 128 * 2) plus q and out; FLOPs = 4 * units * (P + 1)
// * 128. Top-k selection reads keys only. Prefill: 8 sequences x 56 heads, T new tokens, causal:
// FLOPs = 4 * units * T (T + 1) / 2 * 128. The data are constant fp16 bytes (0x3c3c = 1.06):
// timing does not depend on the values. See docs/cuda-kernels.md for the floors.
#include <benchmark/benchmark.h>

#ifdef FLEXGEN_HAVE_CUDA
#include <cstdint>

#include "engine/cuda/device_buffer.cuh"
#include "engine/cuda/ops/decode_attention.cuh"
#include "engine/cuda/ops/prefill_attention.cuh"
#include "engine/cuda/ops/top_k.cuh"
#include "tests/bench/cuda/cuda_bench_util.h"

namespace flexgen {
namespace {

constexpr int kHeads = 56;
constexpr int kHeadDim = 128;

struct Batch {
  std::int64_t batch, units, positions;
  cuda::DeviceBuffer<__half> keys, values, q, out;
  cuda::DeviceBuffer<std::int32_t> pads;
  cuda::KvView view;

  Batch(std::int64_t batch_, std::int64_t positions_, std::int64_t query_rows)
      : batch(batch_), units(batch_ * kHeads), positions(positions_),
        keys(static_cast<std::size_t>(positions_ * units * kHeadDim)),
        values(keys.size()),
        q(static_cast<std::size_t>(query_rows * kHeadDim)),
        out(q.size()),
        pads(static_cast<std::size_t>(batch_)) {
    keys.fill_bytes(0x3c);
    values.fill_bytes(0x3c);
    q.fill_bytes(0x3c);
    pads.fill_bytes(0);
    view.num_parts = 1;
    view.parts[0] = cuda::KvPart{keys.get(), values.get(), 0, units, units * kHeadDim};
  }
};

void BM_CudaDecodeAttention(benchmark::State& state) {
  if (bench::skip_without_gpu(state)) return;
  const std::int64_t past = state.range(0);
  Batch b(32, past + 1, 32 * kHeads);
  const std::size_t ws_bytes = cuda::decode_attention_workspace_bytes(b.units, kHeadDim, 64);
  cuda::DeviceBuffer<float> workspace(ws_bytes / sizeof(float));
  bench::time_on_gpu(state, [&] {
    cuda::decode_attention(b.q.get(), b.view, b.pads.get(), b.batch, kHeads, kHeadDim, past,
                           b.out.get(), workspace.get(), ws_bytes, 0, nullptr);
  });
  const double rows = static_cast<double>(b.units) * static_cast<double>(past + 1);
  const double bytes = 2.0 * rows * kHeadDim * 2.0 + 2.0 * static_cast<double>(b.units) * kHeadDim * 2.0;
  bench::report(state, bytes, 4.0 * rows * kHeadDim);
  state.counters["splits"] = cuda::decode_attention_splits(b.units, kHeadDim, past + 1, ws_bytes);
}

void BM_CudaSelectTopK(benchmark::State& state) {
  if (bench::skip_without_gpu(state)) return;
  const std::int64_t past = state.range(0);
  Batch b(32, past, 32 * kHeads);
  const int k = static_cast<int>(past / 10);
  cuda::DeviceBuffer<std::int32_t> kept(static_cast<std::size_t>(b.units * k));
  bench::time_on_gpu(state, [&] {
    cuda::select_top_k(b.q.get(), b.view, b.pads.get(), b.batch, kHeads, kHeadDim, past, k,
                       kept.get(), nullptr);
  });
  const double rows = static_cast<double>(b.units) * static_cast<double>(past);
  bench::report(state, rows * kHeadDim * 2.0 + static_cast<double>(b.units) * k * 4.0,
                2.0 * rows * kHeadDim);
}

void BM_CudaPrefillAttention(benchmark::State& state) {
  if (bench::skip_without_gpu(state)) return;
  const std::int64_t tokens = state.range(0);
  Batch b(8, tokens, 8 * tokens * kHeads);
  bench::time_on_gpu(state, [&] {
    cuda::prefill_attention(b.q.get(), b.view, b.pads.get(), b.batch, kHeads, kHeadDim, tokens, 0,
                            b.out.get(), nullptr);
  });
  const double units = static_cast<double>(b.units);
  const double t = static_cast<double>(tokens);
  const double bytes = 4.0 * units * t * kHeadDim * 2.0;  // K, V once; q, out
  bench::report(state, bytes, 4.0 * units * t * (t + 1.0) / 2.0 * kHeadDim);
}

BENCHMARK(BM_CudaDecodeAttention)->Arg(512)->Arg(1024)->Arg(2048)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaSelectTopK)->Arg(512)->Arg(2048)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaPrefillAttention)->Arg(512)->Arg(2048)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace flexgen

#else
static void BM_CudaAttentionUnavailable(benchmark::State& state) {
  state.SkipWithError("built without the CUDA backend");
}
BENCHMARK(BM_CudaAttentionUnavailable);
#endif
