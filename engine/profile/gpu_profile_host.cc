// The GPU profile for builds without the CUDA backend (engine/cuda/profile_gpu.cu replaces this
// file there): nothing is available and every measurement says so.
#ifndef FLEXGEN_HAVE_CUDA
#include "engine/core/error.h"
#include "engine/cuda/profile_gpu.h"

namespace flexgen {
namespace {

[[noreturn]] void no_gpu() {
  fail("no GPU: the GPU parts of the profile need the CUDA backend and a device (this build has no "
       "CUDA backend)");
}

}  // namespace

bool gpu_profiling_available() { return false; }
GpuMeasurements profile_gpu(const GpuProfileOptions&) { no_gpu(); }
TransferMeasurement measure_gpu_transfers(int, Bytes, int) { no_gpu(); }
PlainCopyLoopMeasurement measure_plain_h2d_loop(int, Bytes, int) { no_gpu(); }

}  // namespace flexgen
#endif
