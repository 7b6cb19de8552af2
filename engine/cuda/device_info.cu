#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/device_info.h"

namespace flexgen {

bool cuda_backend_built() { return true; }

std::vector<GpuInfo> list_gpus() {
  std::vector<GpuInfo> gpus;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the sticky error, report none
    return gpus;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    FLEXGEN_CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    GpuInfo info;
    info.index = i;
    info.name = prop.name;
    info.compute_capability_major = prop.major;
    info.compute_capability_minor = prop.minor;
    info.multiprocessors = prop.multiProcessorCount;
    info.total_memory_bytes = static_cast<Bytes>(prop.totalGlobalMem);
    info.l2_cache_bytes = prop.l2CacheSize;
    int previous = 0;
    FLEXGEN_CUDA_CHECK(cudaGetDevice(&previous));
    FLEXGEN_CUDA_CHECK(cudaSetDevice(i));
    size_t free_bytes = 0, total_bytes = 0;
    FLEXGEN_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    FLEXGEN_CUDA_CHECK(cudaSetDevice(previous));
    info.free_memory_bytes = static_cast<Bytes>(free_bytes);
    gpus.push_back(info);
  }
  return gpus;
}

}  // namespace flexgen
