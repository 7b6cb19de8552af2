#pragma once
// The GPU half of `flexgen profile`: PCIe transfers (pinned and pageable, one and both directions),
// GPU memory bandwidth, cuBLAS GEMMs at prefill and decode shapes, and batched attention. Callable
// from any build: without the CUDA backend gpu_profiling_available() is false and the measuring
// functions throw flexgen::Error (engine/profile/gpu_profile_host.cc). See docs/profiling.md.
//
// Every measurement runs on random data (never zeros), warms up first, times with CUDA events
// (pageable copies: the host clock) and keeps every sample; the reductions to one figure are in
// engine/profile/spec_from_measurements.h.
#include "engine/core/units.h"
#include "engine/profile/measurements.h"

namespace flexgen {

struct GpuProfileOptions {
  int device = 0;
  Bytes transfer_bytes = 256 * kMiB;  // per copy
  int transfer_repeats = 10;          // timed copies per transfer figure
  int plain_loop_iterations = 10;     // copies of the reference loop
  Bytes memory_buffer_bytes = 1 * kGiB;  // device copy source and destination, each
  int repeats = 7;                    // timed repeats of the memory, GEMM and attention figures
  ProfileProgress progress;

  static GpuProfileOptions full();
  static GpuProfileOptions quick();
};

// True when the CUDA backend is built and at least one GPU is visible.
bool gpu_profiling_available();

// All GPU measurements on options.device. Throws flexgen::Error when no GPU is available, or for
// any CUDA or cuBLAS failure (naming the call).
GpuMeasurements profile_gpu(const GpuProfileOptions& options);

// The transfer figures alone (`repeats` timed copies of `bytes` per figure, after warm-up).
TransferMeasurement measure_gpu_transfers(int device, Bytes bytes, int repeats);

// The reference for the h2d figure: `iterations` pinned cudaMemcpyAsync copies of `bytes` on one
// stream in a plain loop (after two warm-up copies), host-timed from the first call to the end.
PlainCopyLoopMeasurement measure_plain_h2d_loop(int device, Bytes bytes, int iterations);

}  // namespace flexgen
