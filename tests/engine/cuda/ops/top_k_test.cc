// The CUDA top-k selection against select_top_k (engine/runtime/unit_attention.h). Queries and
// keys are small multiples of 1/4, so every score is exact in fp32 whatever the summation order:
// the GPU's selection must then equal the host's exactly, ties (which these values make frequent)
// included.
#include <gtest/gtest.h>

#ifdef FLEXGEN_HAVE_CUDA
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>

#include "engine/core/error.h"
#include "engine/cuda/device_info.h"
#include "engine/cuda/ops/host_calls.h"
#include "engine/runtime/unit_attention.h"
#include "tests/engine/cuda/ops/op_test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::SplitCache;

// x -> one of -3/4 .. 3/4 in steps of 1/4.
void to_quarters(std::vector<float>& v) {
  for (float& x : v) x = std::clamp(std::round(x * 2.0f), -3.0f, 3.0f) / 4.0f;
}

struct TopKCase {
  std::int64_t batch;
  int heads;
  int head_dim;
  std::int64_t past;
  std::vector<std::int64_t> pads;
  int k;
  bool zero_query;  // every score 0: all real positions tie
};

TEST(CudaTopK, SelectsExactlyTheHostPositions) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(41);
  const std::vector<TopKCase> cases = {
      {2, 2, 64, 64, {0, 10}, 16, false},
      {1, 3, 128, 257, {0}, 1, false},
      {2, 1, 20, 1000, {0, 999}, 333, false},  // sequence 1: one real position, pads fill k
      {1, 2, 128, 8192, {100}, 2457, false},
      {1, 1, 8, 5, {0}, 5, false},             // k = past
      {1, 1, 8, 7, {7}, 3, false},             // all padding
      {2, 2, 64, 300, {0, 4}, 100, true},      // all ties
      {3, 2, 96, 513, {0, 1, 2}, 153, false}};
  for (const TopKCase& c : cases) {
    SCOPED_TRACE(::testing::Message() << "batch " << c.batch << " heads " << c.heads << " head_dim "
                                      << c.head_dim << " past " << c.past << " k " << c.k);
    const std::int64_t units = c.batch * c.heads;
    SplitCache cache(units, c.head_dim, c.past + 1, units / 2, 1, 1, rng);
    to_quarters(cache.home_k);
    to_quarters(cache.slot_k);
    std::vector<float> q = testing::random_halves(static_cast<std::size_t>(units * c.head_dim), rng, 1.0f);
    if (c.zero_query) std::fill(q.begin(), q.end(), 0.0f);
    to_quarters(q);
    const std::vector<std::int32_t> kept = cuda::on_host::select_top_k(
        q, cache.parts(/*with_values=*/false), c.pads, c.heads, c.head_dim, c.past, c.k);
    ASSERT_EQ(kept.size(), static_cast<std::size_t>(units * c.k));
    for (std::int64_t u = 0; u < units; ++u) {
      const std::vector<float> keys = cache.keys(u, c.past);
      const std::vector<std::int64_t> ref = select_top_k(
          q.data() + u * c.head_dim, keys.data(), c.head_dim, c.past,
          c.pads[static_cast<std::size_t>(u / c.heads)], c.k);
      for (int i = 0; i < c.k; ++i) {
        ASSERT_EQ(kept[static_cast<std::size_t>(u * c.k + i)], ref[static_cast<std::size_t>(i)])
            << "unit " << u << " rank " << i;
      }
    }
  }
}

TEST(CudaTopK, RejectsBadArguments) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(42);
  auto message = [&](int head_dim, std::int64_t past, int k) {
    SplitCache cache(1, head_dim, past + 1, 1, 0, 0, rng);
    const std::vector<float> q(static_cast<std::size_t>(head_dim), 0.25f);
    const std::vector<std::int64_t> pads = {0};
    try {
      cuda::on_host::select_top_k(q, cache.parts(false), pads, 1, head_dim, past, k);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message(8, 5, 0), HasSubstr("k = 0 is outside 1..5"));
  EXPECT_THAT(message(8, 5, 6), HasSubstr("k = 6 is outside 1..5"));
  EXPECT_THAT(message(8, 8193, 10), HasSubstr("8193 cached positions exceed"));
  EXPECT_THAT(message(129, 5, 1), HasSubstr("select_top_k: head_dim 129"));
}

}  // namespace
}  // namespace flexgen

#else
TEST(CudaTopK, SkippedWithoutCudaBackend) { GTEST_SKIP() << "built without the CUDA backend"; }
#endif
