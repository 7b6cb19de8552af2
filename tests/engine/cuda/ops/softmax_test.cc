// The CUDA softmax against the host one (exp in float, sum in double). Tolerances: fp32 rows
// 1e-5 relative L2 (expf vs std::exp and the order of the sum), fp16 rows 2e-3 (output rounding).
// -inf entries must come out exactly 0.
#include <gtest/gtest.h>

#ifdef FLEXGEN_HAVE_CUDA
#include <cmath>
#include <limits>
#include <random>
#include <span>
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

TEST(CudaSoftmax, MatchesHostWithMaskedEntries) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(5);
  const float ninf = -std::numeric_limits<float>::infinity();
  const std::vector<std::pair<std::int64_t, std::int64_t>> shapes = {{1, 1}, {3, 7}, {4, 300}, {2, 5000}};
  for (const auto& [rows, cols] : shapes) {
    SCOPED_TRACE(::testing::Message() << rows << " x " << cols);
    std::vector<float> x = random_halves(static_cast<std::size_t>(rows * cols), rng, 3.0f);
    // Mask every third entry of each row except its first.
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 1; c < cols; c += 3) x[static_cast<std::size_t>(r * cols + c)] = ninf;
    std::vector<float> ref = x;
    for (std::int64_t r = 0; r < rows; ++r)
      softmax(std::span<float>(ref).subspan(static_cast<std::size_t>(r * cols), static_cast<std::size_t>(cols)));
    const std::vector<float> out32 = cuda::on_host::softmax_f32(x, rows, cols);
    const std::vector<float> out16 = cuda::on_host::softmax_f16(x, rows, cols);
    EXPECT_EQ(count_nan(out32), 0);
    EXPECT_EQ(count_nan(out16), 0);
    EXPECT_LE(relative_error(out32, ref), 1e-5);
    EXPECT_LE(relative_error(out16, ref), 2e-3);
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (x[i] == ninf) {
        EXPECT_EQ(out32[i], 0.0f) << i;
        EXPECT_EQ(out16[i], 0.0f) << i;
      }
    }
  }
}

}  // namespace
}  // namespace flexgen

#else
TEST(CudaSoftmax, SkippedWithoutCudaBackend) { GTEST_SKIP() << "built without the CUDA backend"; }
#endif
