// The sizes of the default and --quick GPU profiles (shared by the CUDA and host builds).
#include "engine/cuda/profile_gpu.h"

namespace flexgen {

GpuProfileOptions GpuProfileOptions::full() { return GpuProfileOptions{}; }

GpuProfileOptions GpuProfileOptions::quick() {
  GpuProfileOptions o;
  o.transfer_repeats = 5;
  o.memory_buffer_bytes = 512 * kMiB;
  o.repeats = 3;
  return o;
}

}  // namespace flexgen
