#pragma once
// Timing CUDA work in Google Benchmark: each iteration is timed with CUDA events on the default
// stream (manual time), after a few warm-up runs; counters report the floors' inputs (bytes moved,
// FLOPs) per iteration and their achieved rates. Without a GPU a benchmark skips with an error.
#ifdef FLEXGEN_HAVE_CUDA
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/device_info.h"

namespace flexgen::bench {

inline bool skip_without_gpu(benchmark::State& state) {
  if (list_gpus().empty()) {
    state.SkipWithError("no GPU");
    return true;
  }
  return false;
}

// Runs op() three times untimed, then once per benchmark iteration between two events.
template <typename Op>
void time_on_gpu(benchmark::State& state, Op&& op) {
  for (int i = 0; i < 3; ++i) op();
  FLEXGEN_CUDA_CHECK(cudaDeviceSynchronize());
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  FLEXGEN_CUDA_CHECK(cudaEventCreate(&start));
  FLEXGEN_CUDA_CHECK(cudaEventCreate(&stop));
  for (auto _ : state) {
    FLEXGEN_CUDA_CHECK(cudaEventRecord(start, nullptr));
    op();
    FLEXGEN_CUDA_CHECK(cudaEventRecord(stop, nullptr));
    FLEXGEN_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    FLEXGEN_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

// bytes and FLOPs of one iteration, and their rates over the measured (manual) time.
inline void report(benchmark::State& state, double bytes, double flops) {
  state.counters["bytes"] = benchmark::Counter(bytes);
  state.counters["flops"] = benchmark::Counter(flops);
  state.counters["bytes_per_s"] =
      benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["flops_per_s"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

}  // namespace flexgen::bench
#endif
