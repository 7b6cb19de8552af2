// The GPU greedy choice against argmax_token (engine/generate/sampler.h) on fp16 rows, with ties
// (the lowest index wins) and a NaN row.
#include <gtest/gtest.h>

#ifdef FLEXGEN_HAVE_CUDA
#include <cmath>
#include <random>
#include <vector>

#include "engine/cuda/device_info.h"
#include "engine/cuda/ops/host_calls.h"
#include "engine/generate/sampler.h"
#include "tests/engine/cuda/ops/op_test_util.h"

namespace flexgen {
namespace {

TEST(CudaArgmax, MatchesArgmaxTokenWithTies) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(3);
  for (std::int64_t cols : {1, 7, 256, 767, 50272}) {
    const std::int64_t rows = 5;
    std::vector<float> x = testing::random_halves(static_cast<std::size_t>(rows * cols), rng, 2.0f);
    // Row 1: the maximum twice, the later copy first found by a different thread.
    if (cols > 3) {
      x[static_cast<std::size_t>(cols + cols - 1)] = 100.0f;
      x[static_cast<std::size_t>(cols + 2)] = 100.0f;
    }
    // Row 2: all equal.
    for (std::int64_t c = 0; c < cols; ++c) x[static_cast<std::size_t>(2 * cols + c)] = -3.0f;
    const auto got = cuda::on_host::argmax_rows(x, rows, cols);
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::span<const float> row(x.data() + r * cols, static_cast<std::size_t>(cols));
      EXPECT_EQ(got[static_cast<std::size_t>(r)], argmax_token(row)) << "cols " << cols << " row " << r;
    }
  }
}

TEST(CudaArgmax, ARowWithNanGivesMinusOne) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::vector<float> x(2 * 300, 1.0f);
  x[450] = NAN;
  const auto got = cuda::on_host::argmax_rows(x, 2, 300);
  EXPECT_EQ(got[0], 0);
  EXPECT_EQ(got[1], -1);
}

}  // namespace
}  // namespace flexgen
#endif  // FLEXGEN_HAVE_CUDA
