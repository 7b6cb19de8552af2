// The CUDA prefill attention against unit_attention (engine/runtime/unit_attention.h: float dots,
// softmax normaliser and weighted sum in double) on fp16 data, with the cache split into a home
// part and a slot part (own stride and offset) as the runtime lays it out. Tolerance: relative L2
// error 2e-3 (fp32 math, fp16 output rounding).
#include <gtest/gtest.h>

#ifdef FLEXGEN_HAVE_CUDA
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>

#include "engine/core/error.h"
#include "engine/cuda/device_info.h"
#include "engine/cuda/ops/host_calls.h"
#include "engine/cuda/ops/prefill_attention_gemm.cuh"
#include "engine/runtime/unit_attention.h"
#include "tests/engine/cuda/ops/op_test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::count_nan;
using testing::random_halves;
using testing::relative_error;
using testing::SplitCache;

struct PrefillCase {
  std::int64_t batch;
  int heads;
  int head_dim;
  std::int64_t tokens;
  std::int64_t past;
  std::vector<std::int64_t> pads;
  std::int64_t gpu_units;
  std::int64_t slot_first;
  std::int64_t slot_spare;
};

struct PrefillRun {
  std::vector<float> q, ref;
  SplitCache cache;
};

PrefillRun make_run(const PrefillCase& c, std::mt19937& rng) {
  const std::int64_t units = c.batch * c.heads;
  const std::int64_t hidden = std::int64_t{c.heads} * c.head_dim;
  // One spare position past the last token: never read.
  SplitCache cache(units, c.head_dim, c.past + c.tokens + 1, c.gpu_units, c.slot_first, c.slot_spare,
                   rng);
  std::vector<float> q = random_halves(static_cast<std::size_t>(c.batch * c.tokens * hidden), rng,
                                       1.0f / std::sqrt(static_cast<float>(c.head_dim)));
  std::vector<float> ref(q.size());
  for (std::int64_t u = 0; u < units; ++u) {
    const std::int64_t b = u / c.heads;
    const std::int64_t h = u % c.heads;
    const std::vector<float> keys = cache.keys(u, c.past + c.tokens);
    const std::vector<float> values = cache.values(u, c.past + c.tokens);
    const std::int64_t offset = (b * c.tokens * c.heads + h) * c.head_dim;
    unit_attention(q.data() + offset, hidden, keys.data(), values.data(), c.head_dim, c.tokens, c.past,
                   c.pads[static_cast<std::size_t>(b)], ref.data() + offset, hidden);
  }
  return {std::move(q), std::move(ref), std::move(cache)};
}

TEST(CudaPrefillAttention, MatchesUnitAttention) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(21);
  const std::vector<PrefillCase> cases = {
      {2, 3, 64, 37, 0, {0, 5}, 2, 1, 2},          // units split 2 | 4, slot offset and spare
      {3, 2, 128, 70, 0, {0, 33, 69}, 3, 0, 1},    // one sequence with a single real token
      {1, 2, 40, 5, 11, {3}, 1, 2, 0},             // past > 0 (a later chunk)
      {2, 1, 20, 33, 0, {1, 0}, 0, 0, 0},          // 2-byte path, slot part only
      {2, 2, 96, 100, 0, {7, 0}, 4, 0, 0},         // home part only, several key tiles
      {1, 1, 6, 3, 0, {0}, 1, 0, 0},               // tiny head
      {1, 3, 128, 1, 50, {4}, 1, 1, 1},            // one query
      {2, 4, 128, 129, 0, {0, 100}, 5, 2, 3}};     // 5 query blocks, the last with one query
  for (const PrefillCase& c : cases) {
    SCOPED_TRACE(::testing::Message() << "batch " << c.batch << " heads " << c.heads << " head_dim "
                                      << c.head_dim << " tokens " << c.tokens << " past " << c.past);
    const PrefillRun run = make_run(c, rng);
    const std::vector<float> out = cuda::on_host::prefill_attention(
        run.q, run.cache.parts(), c.pads, c.heads, c.head_dim, c.tokens, c.past);
    ASSERT_EQ(out.size(), run.ref.size());
    EXPECT_EQ(count_nan(out), 0);
    EXPECT_LE(relative_error(out, run.ref), 2e-3);
  }
}

// The tensor-core path (batched GEMMs + masked softmax per causal block of kPrefillQueryBlock
// queries), in one chunk and in chunks of 1 and 3 units. Tolerance 4e-3: scores and probabilities
// are rounded to fp16 between the steps.
TEST(CudaPrefillAttentionGemm, MatchesUnitAttention) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(31);
  const std::vector<PrefillCase> cases = {
      {2, 3, 64, 37, 0, {0, 5}, 2, 1, 2},
      {3, 2, 128, 70, 0, {0, 33, 69}, 3, 0, 1},
      {1, 2, 40, 5, 11, {3}, 1, 2, 0},
      {2, 1, 16, 33, 0, {1, 0}, 0, 0, 0},
      {2, 4, 128, 129, 0, {0, 100}, 5, 2, 3},     // 2 causal query blocks, the last of one query
      {2, 2, 64, 300, 0, {0, 257}, 3, 1, 0},      // 3 blocks; padding past the first two
      {1, 3, 64, 150, 20, {6}, 2, 0, 2},          // past > 0 with 2 blocks
      {1, 1, 128, 256, 0, {130}, 1, 0, 0}};       // 2 full blocks, padding into the second
  for (const PrefillCase& c : cases) {
    const PrefillRun run = make_run(c, rng);
    for (std::int64_t chunk : {0, 1, 3}) {
      SCOPED_TRACE(::testing::Message() << "batch " << c.batch << " heads " << c.heads << " head_dim "
                                        << c.head_dim << " tokens " << c.tokens << " past " << c.past
                                        << " chunk " << chunk);
      const std::size_t ws =
          chunk == 0 ? 0 : cuda::prefill_attention_gemm_workspace_bytes(chunk, c.tokens, c.past);
      const std::vector<float> out = cuda::on_host::prefill_attention_gemm(
          run.q, run.cache.parts(), c.pads, c.heads, c.head_dim, c.tokens, c.past, ws);
      ASSERT_EQ(out.size(), run.ref.size());
      EXPECT_EQ(count_nan(out), 0);
      EXPECT_LE(relative_error(out, run.ref), 4e-3);
    }
  }
}

// A padding query's output is its own value row, exactly.
TEST(CudaPrefillAttention, PaddingQueriesCopyTheirValueRow) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(22);
  const PrefillCase c{2, 2, 64, 12, 0, {4, 0}, 1, 0, 0};
  const PrefillRun run = make_run(c, rng);
  const std::vector<float> out = cuda::on_host::prefill_attention(
      run.q, run.cache.parts(), c.pads, c.heads, c.head_dim, c.tokens, c.past);
  for (int h = 0; h < c.heads; ++h) {
    for (std::int64_t t = 0; t < 4; ++t) {  // sequence 0, positions 0..3 are padding
      const float* v = run.cache.value(h, t);
      for (int d = 0; d < c.head_dim; ++d)
        ASSERT_EQ(out[static_cast<std::size_t>((t * c.heads + h) * c.head_dim + d)], v[d]);
    }
  }
}

// Units in no part (e.g. delegated to the CPU) keep their output untouched (NaN-poisoned here).
TEST(CudaPrefillAttention, SkipsUnitsOutsideTheView) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(23);
  const PrefillCase c{2, 3, 64, 20, 0, {0, 3}, 2, 0, 0};
  const PrefillRun run = make_run(c, rng);
  const std::int64_t covered_end = 5;  // unit 5 (sequence 1, head 2) is uncovered
  const std::vector<float> out = cuda::on_host::prefill_attention(
      run.q, run.cache.parts(true, covered_end), c.pads, c.heads, c.head_dim, c.tokens, c.past);
  std::vector<float> covered_out, covered_ref;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto column = static_cast<std::int64_t>(i) % (std::int64_t{c.heads} * c.head_dim);
    const std::int64_t row = static_cast<std::int64_t>(i) / (std::int64_t{c.heads} * c.head_dim);
    const std::int64_t unit = (row / c.tokens) * c.heads + column / c.head_dim;
    if (unit >= covered_end) {
      EXPECT_TRUE(std::isnan(out[i])) << i;
    } else {
      covered_out.push_back(out[i]);
      covered_ref.push_back(run.ref[i]);
    }
  }
  EXPECT_EQ(count_nan(covered_out), 0);
  EXPECT_LE(relative_error(covered_out, covered_ref), 2e-3);
}

TEST(CudaPrefillAttention, RejectsHeadDimAbove128) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(24);
  SplitCache cache(1, 136, 2, 1, 0, 0, rng);
  const std::vector<float> q(136, 0.0f);
  const std::vector<std::int64_t> pads = {0};
  try {
    cuda::on_host::prefill_attention(q, cache.parts(), pads, 1, 136, 1, 0);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("head_dim 136 is outside"));
  }
}

}  // namespace
}  // namespace flexgen

#else
TEST(CudaPrefillAttention, SkippedWithoutCudaBackend) {
  GTEST_SKIP() << "built without the CUDA backend";
}
#endif
