// list_gpus() for builds without the CUDA backend (device_info.cu replaces this file there).
#ifndef FLEXGEN_HAVE_CUDA
#include "engine/cuda/device_info.h"

namespace flexgen {

bool cuda_backend_built() { return false; }
std::vector<GpuInfo> list_gpus() { return {}; }

}  // namespace flexgen
#endif
