#include "engine/cuda/device_info.h"

#include <cstdlib>

#include <gtest/gtest.h>

namespace flexgen {
namespace {

// On the GPU machine: the device the driver reports must look like a real GPU. Skips elsewhere.
TEST(DeviceInfoGpu, ReportsAPlausibleDevice) {
  if (!cuda_backend_built()) GTEST_SKIP() << "built without the CUDA backend";
  const auto gpus = list_gpus();
  if (gpus.empty()) GTEST_SKIP() << "no GPU visible";
  for (const GpuInfo& g : gpus) {
    EXPECT_FALSE(g.name.empty());
    EXPECT_GE(g.compute_capability_major, 7);
    EXPECT_GT(g.multiprocessors, 0);
    EXPECT_GT(g.total_memory_bytes, Bytes{1} << 30);
    EXPECT_LE(g.free_memory_bytes, g.total_memory_bytes);
    EXPECT_GT(g.free_memory_bytes, 0);
  }
}

TEST(DeviceInfo, NoDeviceMeansEmptyListNotAnError) {
  if (cuda_backend_built()) GTEST_SKIP() << "covered by the GPU test";
  EXPECT_TRUE(list_gpus().empty());
}

}  // namespace
}  // namespace flexgen
