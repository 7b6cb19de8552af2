// The cuBLAS linear layer and its epilogue (bias, ReLU, residual) against the host linear on fp16
// data. Tolerance: relative L2 error 5e-3 (fp32 accumulation in another order, the GEMM result
// rounded to fp16, then the epilogue's rounding).
#include <gtest/gtest.h>

#ifdef FLEXGEN_HAVE_CUDA
#include <algorithm>
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

// The reference in float64 on the same fp16 inputs: y = act(alpha x W^T + bias) + residual.
std::vector<float> reference_linear(const std::vector<float>& x, std::int64_t rows, std::int64_t in,
                                    const std::vector<float>& w, const std::vector<float>& b, std::int64_t out,
                                    double alpha, bool relu, const std::vector<float>& res) {
  std::vector<float> y(static_cast<std::size_t>(rows * out));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t o = 0; o < out; ++o) {
      double acc = 0.0;
      for (std::int64_t i = 0; i < in; ++i) {
        acc += static_cast<double>(x[static_cast<std::size_t>(r * in + i)]) *
               static_cast<double>(w[static_cast<std::size_t>(o * in + i)]);
      }
      double v = alpha * acc + (b.empty() ? 0.0 : static_cast<double>(b[static_cast<std::size_t>(o)]));
      if (relu) v = std::max(v, 0.0);
      if (!res.empty()) v += static_cast<double>(res[static_cast<std::size_t>(r * out + o)]);
      y[static_cast<std::size_t>(r * out + o)] = static_cast<float>(v);
    }
  }
  return y;
}

struct FusedCase {
  std::int64_t rows, in, out;
  bool bias, relu, residual;
  float alpha;
  bool expect_fused;  // the fused path must take it (aligned shapes, an epilogue it has)
};

// The runtime's epilogues (q: alpha and a bias; k, v: bias; out, fc2: bias and residual; fc1: bias
// and ReLU; LM head: none) at decode-like and prefill-like row counts, plus shapes and epilogues
// the fused path may refuse. Both paths against the float64 reference; the fused path rounds y
// once, so its bound is tighter.
TEST(CudaLinear, FusedAndPlainPathsMatchAFloat64Reference) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(11);
  const std::vector<FusedCase> cases = {
      {32, 256, 256, true, false, false, 0.125f, true},  // q (head_dim 64: scale 1/8)
      {32, 256, 256, true, false, false, 0.0883883f, true},
      {32, 256, 256, true, false, false, 1.0f, true},     // k, v
      {32, 256, 256, true, false, true, 1.0f, true},      // out_proj, fc2
      {32, 256, 1024, true, true, false, 1.0f, true},     // fc1
      {32, 1024, 256, true, false, true, 1.0f, true},     // fc2
      {32, 256, 4000, false, false, false, 1.0f, true},   // LM head
      {1, 512, 512, true, true, false, 1.0f, true},
      {8, 256, 256, false, true, false, 1.0f, true},      // ReLU without a bias
      {8, 256, 256, false, false, true, 1.0f, true},      // residual without a bias
      {520, 512, 768, true, false, true, 1.0f, true},     // prefill-like
      {520, 512, 768, true, true, false, 1.0f, true},
      {24, 128, 64, true, true, true, 1.0f, false},       // ReLU and a residual: plain path
      {7, 100, 33, true, false, false, 1.0f, false},      // odd sizes: either path
      {3, 17, 9, true, true, false, 0.5f, false}};
  for (const FusedCase& c : cases) {
    SCOPED_TRACE(::testing::Message() << "rows " << c.rows << " in " << c.in << " out " << c.out << " bias "
                                      << c.bias << " relu " << c.relu << " residual " << c.residual << " alpha "
                                      << c.alpha);
    const auto ny = static_cast<std::size_t>(c.rows * c.out);
    const std::vector<float> x = random_halves(static_cast<std::size_t>(c.rows * c.in), rng, 1.0f);
    const std::vector<float> w = random_halves(static_cast<std::size_t>(c.out * c.in), rng,
                                               1.0f / std::sqrt(static_cast<float>(c.in)));
    const std::vector<float> b = c.bias ? random_halves(static_cast<std::size_t>(c.out), rng, 0.5f)
                                        : std::vector<float>();
    const std::vector<float> res = c.residual ? random_halves(ny, rng, 1.0f) : std::vector<float>();
    const std::vector<float> ref = reference_linear(x, c.rows, c.in, w, b, c.out, c.alpha, c.relu, res);
    for (const bool fused : {true, false}) {
      SCOPED_TRACE(fused ? "fused path allowed" : "plain path forced");
      const cuda::on_host::LinearResult r =
          cuda::on_host::linear_in_context(x, c.rows, c.in, w, b, c.out, c.alpha, c.relu, res, fused);
      ASSERT_EQ(r.y.size(), ny);
      EXPECT_EQ(count_nan(r.y), 0);
      if (!fused) {
        EXPECT_FALSE(r.fused);
      }
      if (fused && c.expect_fused) {
        EXPECT_TRUE(r.fused) << "cuBLASLt refused an epilogue the runtime relies on";
      }
      if (c.relu && c.residual) {
        EXPECT_FALSE(r.fused) << "the fused path would apply ReLU after the residual";
      }
      EXPECT_LE(relative_error(r.y, ref), r.fused ? 1.5e-3 : 5e-3);
      if (c.relu && !c.residual) {
        for (float v : r.y) EXPECT_GE(v, 0.0f);
      }
    }
  }
}

// A bias off a 16-byte boundary (possible in a weight slot of an odd-sized model) is refused by
// the fused path and served by the plain one.
TEST(CudaLinear, MisalignedBiasTakesThePlainPath) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(12);
  const std::int64_t rows = 16, in = 256, out = 512;
  const std::vector<float> x = random_halves(static_cast<std::size_t>(rows * in), rng, 1.0f);
  const std::vector<float> w = random_halves(static_cast<std::size_t>(out * in), rng, 1.0f / 16.0f);
  const std::vector<float> b = random_halves(static_cast<std::size_t>(out), rng, 0.5f);
  const std::vector<float> ref = reference_linear(x, rows, in, w, b, out, 1.0, true, {});
  const cuda::on_host::LinearResult r =
      cuda::on_host::linear_in_context(x, rows, in, w, b, out, 1.0f, true, {}, true, /*misaligned_bias=*/true);
  EXPECT_FALSE(r.fused);
  EXPECT_EQ(count_nan(r.y), 0);
  EXPECT_LE(relative_error(r.y, ref), 5e-3);
}

}  // namespace
}  // namespace flexgen

#else
TEST(CudaLinear, SkippedWithoutCudaBackend) { GTEST_SKIP() << "built without the CUDA backend"; }
#endif
