#pragma once
// What GPUs this process sees. Callable from any build: without the CUDA backend the list is empty
// and cuda_backend_built() is false.
#include <string>
#include <vector>

#include "engine/core/units.h"

namespace flexgen {

struct GpuInfo {
  int index = 0;
  std::string name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  int multiprocessors = 0;
  Bytes total_memory_bytes = 0;
  Bytes free_memory_bytes = 0;
  Bytes l2_cache_bytes = 0;
};

bool cuda_backend_built();
// The visible GPUs; empty when none is present or the driver is missing (never throws for that).
std::vector<GpuInfo> list_gpus();

}  // namespace flexgen
