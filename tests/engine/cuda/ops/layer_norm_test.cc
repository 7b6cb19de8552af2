// The CUDA LayerNorm against the host kernel (engine/model/host_ops.h, mean and variance in
// double) on fp16 data. Tolerance: relative L2 error 2e-3 (fp16 output rounding is 2^-11 per
// element; fp32 statistics add far less).
#include <gtest/gtest.h>

#ifdef FLEXGEN_HAVE_CUDA
#include <random>
#include <vector>

#include "engine/cuda/device_info.h"
#include "engine/cuda/ops/host_calls.h"
#include "engine/model/host_ops.h"
#include "tests/engine/cuda/ops/op_test_util.h"

namespace flexgen {
namespace {

using testing::count_nan;
using testing::random_halves;
using testing::relative_error;

TEST(CudaLayerNorm, MatchesHostOnManyShapes) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(11);
  // (rows, cols): 16-byte path (cols % 8 == 0) and 2-byte path, one column, OPT-175B width.
  const std::vector<std::pair<std::int64_t, std::int64_t>> shapes = {
      {1, 8}, {3, 768}, {5, 1000}, {7, 13}, {2, 12288}, {4, 1}, {33, 2048}};
  for (const auto& [rows, cols] : shapes) {
    SCOPED_TRACE(::testing::Message() << rows << " x " << cols);
    const auto n = static_cast<std::size_t>(rows * cols);
    const std::vector<float> x = random_halves(n, rng, 2.0f, 0.5f);
    const std::vector<float> gamma = random_halves(static_cast<std::size_t>(cols), rng, 0.2f, 1.0f);
    const std::vector<float> beta = random_halves(static_cast<std::size_t>(cols), rng, 0.1f);
    std::vector<float> ref(n);
    layer_norm(x, gamma, beta, rows, cols, 1e-5, ref);
    const std::vector<float> out = cuda::on_host::layer_norm(x, gamma, beta, rows, cols, 1e-5f);
    ASSERT_EQ(out.size(), n);
    EXPECT_EQ(count_nan(out), 0);
    EXPECT_LE(relative_error(out, ref), 2e-3);
  }
}

}  // namespace
}  // namespace flexgen

#else
TEST(CudaLayerNorm, SkippedWithoutCudaBackend) { GTEST_SKIP() << "built without the CUDA backend"; }
#endif
