// CUDA attention kernels at OPT-30B decode/prefill sizes (56 heads of 128):
//   flexgen_bench --benchmark_filter=Cuda.*Attention
// Decode: 32 sequences x 56 heads, one position-major cache part [P + 1, 1792, 128] fp16; bytes =
// the K and V rows read (2 * units * (P + 1) * 128 * 2) plus q and out; FLOPs = 4 * units * (P + 1)
// * 128. Top-k selection reads keys only. Prefill: 8 sequences x 56 heads, T new tokens, causal:
// FLOPs = 4 * units * T (T + 1) / 2 * 128. The data are constant fp16 bytes (0x3c3c = 1.06):
// timing does not depend on the values. See docs/cuda-kernels.md for the floors.
// The *P1 benchmarks take OPT-6.7B's shapes in benchmark P1 (32 sequences x 32 heads of 128,
// prompt 512, 32 new tokens): decode at the average step's P = 527 with 0 (the default choice),
// 1, 2 or 3 position splits; the tensor-core prefill attention of one layer at T = 512 (causal
// query blocks: 4 of 128 queries).
#include <benchmark/benchmark.h>

#ifdef FLEXGEN_HAVE_CUDA
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "engine/cuda/device_buffer.cuh"
#include "engine/cuda/ops/decode_attention.cuh"
#include "engine/cuda/cublas_handle.cuh"
#include "engine/cuda/ops/prefill_attention.cuh"
#include "engine/cuda/ops/prefill_attention_gemm.cuh"
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

// OPT-6.7B in P1: 1024 units of head_dim 128, one cache part of capacity 543.
constexpr int kP1Heads = 32;
constexpr std::int64_t kP1Batch = 32;

struct P1Cache {
  std::int64_t units = kP1Batch * kP1Heads;
  cuda::DeviceBuffer<__half> keys, values, q, out;
  cuda::DeviceBuffer<std::int32_t> pads;
  cuda::KvView view;
  P1Cache(std::int64_t capacity, std::int64_t query_rows)
      : keys(static_cast<std::size_t>(capacity * units * kHeadDim)), values(keys.size()),
        q(static_cast<std::size_t>(query_rows * kHeadDim)), out(q.size()), pads(static_cast<std::size_t>(kP1Batch)) {
    keys.fill_bytes(0x3c);
    values.fill_bytes(0x3c);
    q.fill_bytes(0x3c);
    pads.fill_bytes(0);
    view.num_parts = 1;
    view.parts[0] = cuda::KvPart{keys.get(), values.get(), 0, units, units * kHeadDim};
  }
};

void BM_CudaDecodeAttentionP1(benchmark::State& state) {
  if (bench::skip_without_gpu(state)) return;
  const std::int64_t past = 527;
  const int splits = static_cast<int>(state.range(0));
  P1Cache c(543, kP1Batch * kP1Heads);
  const std::size_t ws_bytes = cuda::decode_attention_workspace_bytes(c.units, kHeadDim, 64);
  cuda::DeviceBuffer<float> workspace(ws_bytes / sizeof(float));
  bench::time_on_gpu(state, [&] {
    cuda::decode_attention(c.q.get(), c.view, c.pads.get(), kP1Batch, kP1Heads, kHeadDim, past, c.out.get(),
                           workspace.get(), ws_bytes, splits, nullptr);
  });
  const double rows = static_cast<double>(c.units) * static_cast<double>(past + 1);
  const double bytes = 2.0 * rows * kHeadDim * 2.0 + 2.0 * static_cast<double>(c.units) * kHeadDim * 2.0;
  bench::report(state, bytes, 4.0 * rows * kHeadDim);
  state.counters["splits"] =
      splits > 0 ? splits : cuda::decode_attention_splits(c.units, kHeadDim, past + 1, ws_bytes);
}

void BM_CudaPrefillAttentionGemmP1(benchmark::State& state) {
  if (bench::skip_without_gpu(state)) return;
  const std::int64_t tokens = 512;
  P1Cache c(tokens, kP1Batch * tokens * kP1Heads);
  cuda::CublasHandle handle;
  const std::size_t per_unit = cuda::prefill_attention_gemm_workspace_bytes(1, tokens, 0);
  const std::int64_t chunk = std::min<std::int64_t>(c.units, (std::int64_t{256} << 20) / static_cast<std::int64_t>(per_unit));
  const std::size_t ws_bytes = cuda::prefill_attention_gemm_workspace_bytes(chunk, tokens, 0);
  cuda::DeviceBuffer<std::byte> workspace(ws_bytes);
  bench::time_on_gpu(state, [&] {
    cuda::prefill_attention_gemm(handle.get(), c.q.get(), c.view, c.pads.get(), kP1Batch, kP1Heads, kHeadDim, tokens,
                                 0, c.out.get(), workspace.get(), ws_bytes, nullptr);
  });
  const double units = static_cast<double>(c.units), t = static_cast<double>(tokens);
  // Scores computed: per causal query block of kPrefillQueryBlock, its queries x the keys up to its
  // last query. FLOPs of the two batched GEMMs over them; bytes: q, K, V, out once plus the fp16
  // scores written, read and written by the softmax, read again.
  double scores = 0.0;
  for (std::int64_t q0 = 0; q0 < tokens; q0 += cuda::kPrefillQueryBlock) {
    const std::int64_t bt = std::min<std::int64_t>(cuda::kPrefillQueryBlock, tokens - q0);
    scores += static_cast<double>(bt) * static_cast<double>(q0 + bt);
  }
  bench::report(state, 4.0 * units * t * kHeadDim * 2.0 + 4.0 * units * scores * 2.0, 4.0 * units * scores * kHeadDim);
}

BENCHMARK(BM_CudaDecodeAttentionP1)->Arg(0)->Arg(1)->Arg(2)->Arg(3)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaPrefillAttentionGemmP1)->UseManualTime()->Unit(benchmark::kMicrosecond);
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
