// The CUDA embedding: token row plus OPT position row (pad-aware), summed in fp32 and rounded to
// fp16 once, so it must equal the reference worked out here element for element.
#include <gtest/gtest.h>

#ifdef FLEXGEN_HAVE_CUDA
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>

#include "engine/core/error.h"
#include "engine/cuda/device_info.h"
#include "engine/cuda/ops/host_calls.h"
#include "tests/engine/cuda/ops/op_test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::random_halves;
using testing::to_half_value;

// Independent reference: HF OPT positions (cumsum of the mask - 1, at row + 2; padding at row 1).
std::vector<float> reference(const std::vector<std::int32_t>& ids, const std::vector<std::int64_t>& pads,
                             std::int64_t tokens, std::int64_t past, const std::vector<float>& tok,
                             const std::vector<float>& pos, std::int64_t hidden) {
  std::vector<float> out(ids.size() * static_cast<std::size_t>(hidden));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int64_t b = static_cast<std::int64_t>(i) / tokens;
    const std::int64_t p = past + static_cast<std::int64_t>(i) % tokens;
    const std::int64_t pad = pads[static_cast<std::size_t>(b)];
    std::int64_t real_before = 0;  // real tokens before position p
    for (std::int64_t s = 0; s < p; ++s) real_before += s >= pad ? 1 : 0;
    const std::int64_t row = p < pad ? 1 : real_before + 2;
    for (std::int64_t c = 0; c < hidden; ++c) {
      out[i * static_cast<std::size_t>(hidden) + static_cast<std::size_t>(c)] =
          to_half_value(tok[static_cast<std::size_t>(ids[i] * hidden + c)] +
                        pos[static_cast<std::size_t>(row * hidden + c)]);
    }
  }
  return out;
}

TEST(CudaEmbedding, TokenPlusPositionRowsExactly) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(9);
  const std::int64_t vocab = 50;
  const std::int64_t position_rows = 40;
  for (std::int64_t hidden : {64, 20, 8, 3}) {
    const std::vector<float> tok = random_halves(static_cast<std::size_t>(vocab * hidden), rng, 1.0f);
    const std::vector<float> pos =
        random_halves(static_cast<std::size_t>(position_rows * hidden), rng, 1.0f);
    // Prefill (past 0) of 3 left-padded sequences, then a decode step.
    struct Step {
      std::int64_t tokens, past;
    };
    for (const Step step : {Step{6, 0}, Step{1, 9}, Step{3, 4}}) {
      SCOPED_TRACE(::testing::Message() << "hidden " << hidden << " tokens " << step.tokens << " past "
                                      << step.past);
      const std::vector<std::int64_t> pads = {0, 2, 5};
      std::vector<std::int32_t> ids(static_cast<std::size_t>(3 * step.tokens));
      std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(vocab - 1));
      for (auto& id : ids) id = pick(rng);
      const std::vector<float> out = cuda::on_host::embedding(ids, pads, step.tokens, step.past, tok,
                                                              vocab, pos, position_rows, hidden);
      const std::vector<float> ref = reference(ids, pads, step.tokens, step.past, tok, pos, hidden);
      ASSERT_EQ(out.size(), ref.size());
      for (std::size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(out[i], ref[i]) << "element " << i;
    }
  }
}

TEST(CudaEmbedding, RejectsBadIdsAndPositions) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  const std::vector<float> tok(10 * 8, 0.5f);
  const std::vector<float> pos(6 * 8, 0.25f);
  const std::vector<std::int64_t> pads = {0, 1};
  auto message = [&](std::vector<std::int32_t> ids, std::int64_t past) {
    try {
      cuda::on_host::embedding(ids, pads, 2, past, tok, 10, pos, 6, 8);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message({1, 2, 10, 3}, 0), HasSubstr("token id 10 of sequence 1"));
  EXPECT_THAT(message({-1, 2, 1, 3}, 0), HasSubstr("token id -1 of sequence 0"));
  // Sequence 0 at past 3, token 1: position 4, row 6 of a 6-row table.
  EXPECT_THAT(message({1, 2, 1, 3}, 3), HasSubstr("sequence 0 reaches position 4"));
}

}  // namespace
}  // namespace flexgen

#else
TEST(CudaEmbedding, SkippedWithoutCudaBackend) { GTEST_SKIP() << "built without the CUDA backend"; }
#endif
