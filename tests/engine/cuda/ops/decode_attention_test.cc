// The CUDA decode attention, dense and sparse (over a given top-k selection), against
// unit_attention / sparse_unit_attention (engine/runtime/unit_attention.h) on fp16 data, with the
// cache split into a home part and a slot part, for one and several position splits. Tolerance:
// relative L2 error 2e-3 (fp32 math, fp16 output rounding).
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
using testing::count_nan;
using testing::random_halves;
using testing::relative_error;
using testing::SplitCache;

struct DecodeCase {
  std::int64_t batch;
  int heads;
  int head_dim;
  std::int64_t past;
  std::vector<std::int64_t> pads;
  std::int64_t gpu_units;
  std::int64_t slot_first;
  std::int64_t slot_spare;
};

std::string describe(const DecodeCase& c) {
  return str_cat("batch ", c.batch, " heads ", c.heads, " head_dim ", c.head_dim, " past ", c.past);
}

const std::vector<DecodeCase>& decode_cases() {
  static const std::vector<DecodeCase> cases = {
      {2, 3, 64, 100, {0, 40}, 2, 1, 1},
      {4, 2, 128, 513, {0, 1, 200, 513}, 3, 0, 0},  // last sequence: its own row only
      {3, 1, 20, 7, {0, 3, 8}, 1, 0, 2},            // 2-byte path; a padding query (8 > 7)
      {1, 4, 80, 1030, {10}, 2, 2, 3},              // 10 of 16 lanes active per row
      {1, 2, 1, 1, {0}, 1, 0, 0},                   // head_dim 1
      {2, 2, 128, 0, {0, 0}, 2, 0, 0},              // no cached positions yet
      {8, 8, 128, 2048, {0, 5, 17, 300, 0, 1, 2047, 64}, 20, 3, 5}};
  return cases;
}

// A cache with one spare position past `past` (never read) and queries scaled by head_dim^-0.5.
struct DecodeRun {
  SplitCache cache;
  std::vector<float> q;
};

DecodeRun make_run(const DecodeCase& c, std::mt19937& rng) {
  SplitCache cache(c.batch * c.heads, c.head_dim, c.past + 2, c.gpu_units, c.slot_first, c.slot_spare,
                   rng);
  std::vector<float> q = random_halves(static_cast<std::size_t>(c.batch * c.heads * c.head_dim), rng,
                                       1.0f / std::sqrt(static_cast<float>(c.head_dim)));
  return {std::move(cache), std::move(q)};
}

TEST(CudaDecodeAttention, MatchesUnitAttentionForEverySplitCount) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(31);
  for (const DecodeCase& c : decode_cases()) {
    const DecodeRun run = make_run(c, rng);
    const std::int64_t units = c.batch * c.heads;
    std::vector<float> ref(run.q.size());
    for (std::int64_t u = 0; u < units; ++u) {
      const std::vector<float> keys = run.cache.keys(u, c.past + 1);
      const std::vector<float> values = run.cache.values(u, c.past + 1);
      unit_attention(run.q.data() + u * c.head_dim, c.head_dim, keys.data(), values.data(), c.head_dim,
                     1, c.past, c.pads[static_cast<std::size_t>(u / c.heads)],
                     ref.data() + u * c.head_dim, c.head_dim);
    }
    for (int splits : {0, 1, 3, 7}) {
      SCOPED_TRACE(describe(c) + str_cat(" splits ", splits));
      const std::vector<float> out = cuda::on_host::decode_attention(
          run.q, run.cache.parts(), c.pads, c.heads, c.head_dim, c.past, splits);
      ASSERT_EQ(out.size(), ref.size());
      EXPECT_EQ(count_nan(out), 0);
      EXPECT_LE(relative_error(out, ref), 2e-3);
    }
  }
}

TEST(CudaDecodeAttention, SkipsUnitsOutsideTheView) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(32);
  const DecodeCase c{2, 3, 64, 50, {0, 9}, 2, 0, 0};
  const DecodeRun run = make_run(c, rng);
  for (int splits : {1, 4}) {
    const std::vector<float> out = cuda::on_host::decode_attention(
        run.q, run.cache.parts(true, 4), c.pads, c.heads, c.head_dim, c.past, splits);
    for (std::size_t i = 0; i < out.size(); ++i) {
      const bool covered = static_cast<std::int64_t>(i) / c.head_dim < 4;
      EXPECT_EQ(std::isnan(out[i]), !covered) << "splits " << splits << " element " << i;
    }
  }
}

TEST(CudaDecodeAttention, RejectsHeadDimAbove128) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(33);
  SplitCache cache(1, 200, 2, 1, 0, 0, rng);
  const std::vector<float> q(200, 0.0f);
  const std::vector<std::int64_t> pads = {0};
  try {
    cuda::on_host::decode_attention(q, cache.parts(), pads, 1, 200, 1, 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("decode_attention: head_dim 200 is outside"));
  }
}

TEST(CudaSparseDecodeAttention, MatchesSparseUnitAttention) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(34);
  std::vector<DecodeCase> cases = decode_cases();
  cases.push_back({2, 2, 64, 10, {8, 0}, 1, 1, 1});  // k = 5 > 2 real positions: pads kept, skipped
  for (const DecodeCase& c : cases) {
    if (c.past == 0) continue;  // top-k needs a cached position
    const DecodeRun run = make_run(c, rng);
    const std::int64_t units = c.batch * c.heads;
    const int k = c.past == 10 ? 5 : static_cast<int>(std::max<std::int64_t>(1, c.past * 3 / 10));
    std::vector<std::int32_t> kept(static_cast<std::size_t>(units * k));
    std::vector<float> ref(run.q.size());
    for (std::int64_t u = 0; u < units; ++u) {
      const std::int64_t pad = c.pads[static_cast<std::size_t>(u / c.heads)];
      const std::vector<float> keys = run.cache.keys(u, c.past + 1);
      const std::vector<float> values = run.cache.values(u, c.past + 1);
      const float* q = run.q.data() + u * c.head_dim;
      const std::vector<std::int64_t> sel = select_top_k(q, keys.data(), c.head_dim, c.past, pad, k);
      for (int i = 0; i < k; ++i)
        kept[static_cast<std::size_t>(u * k + i)] = static_cast<std::int32_t>(sel[static_cast<std::size_t>(i)]);
      sparse_unit_attention(q, keys.data(), values.data(), c.head_dim, c.past, pad, sel,
                            ref.data() + u * c.head_dim);
    }
    for (int splits : {0, 1, 3}) {
      SCOPED_TRACE(describe(c) + str_cat(" k ", k, " splits ", splits));
      const std::vector<float> out = cuda::on_host::sparse_decode_attention(
          run.q, run.cache.parts(), c.pads, c.heads, c.head_dim, c.past, kept, k, splits);
      ASSERT_EQ(out.size(), ref.size());
      EXPECT_EQ(count_nan(out), 0);
      EXPECT_LE(relative_error(out, ref), 2e-3);
    }
  }
}

}  // namespace
}  // namespace flexgen

#else
TEST(CudaDecodeAttention, SkippedWithoutCudaBackend) {
  GTEST_SKIP() << "built without the CUDA backend";
}
#endif
