// The cuBLAS linear layer and its epilogue (bias, ReLU, residual) against the host linear on fp16
// data. Tolerance: relative L2 error 5e-3 (fp32 accumulation in another order, the GEMM result
// rounded to fp16, then the epilogue's rounding).
#include <gtest/gtest.h>

#ifdef FLEXGEN_HAVE_CUDA
#include <cmath>
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

struct LinearCase {
  std::int64_t rows, in, out;
  bool bias, relu, residual;
};

TEST(CudaLinear, MatchesHostWithEveryEpilogue) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(3);
  const std::vector<LinearCase> cases = {
      {1, 64, 32, false, false, false},  {7, 100, 33, true, false, false},
      {64, 512, 256, true, true, false}, {130, 768, 3072, true, false, true},
      {5, 72, 24, false, true, true},    {3, 17, 9, true, true, true},
      {64, 1024, 4096, true, true, false}};
  for (const LinearCase& c : cases) {
    SCOPED_TRACE(::testing::Message() << "rows " << c.rows << " in " << c.in << " out " << c.out
                                    << " bias " << c.bias << " relu " << c.relu << " residual "
                                    << c.residual);
    const auto nx = static_cast<std::size_t>(c.rows * c.in);
    const auto ny = static_cast<std::size_t>(c.rows * c.out);
    const std::vector<float> x = random_halves(nx, rng, 1.0f);
    const std::vector<float> w = random_halves(static_cast<std::size_t>(c.out * c.in), rng,
                                               1.0f / std::sqrt(static_cast<float>(c.in)));
    const std::vector<float> b = c.bias ? random_halves(static_cast<std::size_t>(c.out), rng, 0.5f)
                                        : std::vector<float>();
    const std::vector<float> res = c.residual ? random_halves(ny, rng, 1.0f) : std::vector<float>();
    std::vector<float> ref(ny);
    linear(x, c.rows, c.in, w, b, c.out, ref);
    if (c.relu) relu(ref);
    if (c.residual) add_inplace(ref, res);
    const std::vector<float> out = cuda::on_host::linear(x, c.rows, c.in, w, b, c.out, c.relu, res);
    ASSERT_EQ(out.size(), ny);
    EXPECT_EQ(count_nan(out), 0);
    EXPECT_LE(relative_error(out, ref), 5e-3);
    if (c.relu && !c.residual) {
      for (float v : out) EXPECT_GE(v, 0.0f);
    }
  }
}

}  // namespace
}  // namespace flexgen

#else
TEST(CudaLinear, SkippedWithoutCudaBackend) { GTEST_SKIP() << "built without the CUDA backend"; }
#endif
