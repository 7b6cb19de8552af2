// The LLaMA CUDA ops (RMSNorm, rotary embeddings, SwiGLU, token embedding, query-group sums) and
// grouped-query attention in the attention kernels (prefill CUDA-core and tensor-core, dense and
// sparse decode) against the host kernels (engine/model/llama_layer.h, unit_attention.h) on fp16
// data. Tolerances as docs/cuda-kernels.md: relative L2 2e-3 without a GEMM; never NaN.
#include <gtest/gtest.h>

#ifdef FLEXGEN_HAVE_CUDA
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/core/error.h"
#include "engine/cuda/device_info.h"
#include "engine/cuda/ops/host_calls.h"
#include "engine/cuda/ops/llama_host_calls.h"
#include "engine/model/llama_layer.h"
#include "engine/runtime/unit_attention.h"
#include "tests/engine/cuda/ops/op_test_util.h"

namespace flexgen {
namespace {

using testing::count_nan;
using testing::random_halves;
using testing::relative_error;
using testing::SplitCache;

TEST(CudaLlamaOps, RmsNormMatchesTheHost) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(1);
  for (const auto& [rows, cols] : std::vector<std::pair<std::int64_t, std::int64_t>>{{3, 64}, {5, 8192}, {2, 37}}) {
    const auto x = random_halves(static_cast<std::size_t>(rows * cols), rng, 2.0f);
    const auto w = random_halves(static_cast<std::size_t>(cols), rng, 0.1f, 1.0f);
    std::vector<float> ref(x.size());
    rms_norm(x, w, rows, cols, 1e-5, ref);
    const auto out = cuda::on_host::rms_norm(x, w, rows, cols, 1e-5f);
    EXPECT_EQ(count_nan(out), 0) << cols;
    EXPECT_LE(relative_error(out, ref), 2e-3) << cols;
  }
}

TEST(CudaLlamaOps, RotaryMatchesTheHost) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(2);
  ModelSpec spec = ModelSpec::from_name("llama-3.1-8b");  // head_dim 128, theta 500000, llama3 scaling
  for (std::int64_t past : {0, 3000}) {
    const std::int64_t batch = 3, tokens = past == 0 ? 17 : 1, heads = 8, hd = 128;
    const std::vector<std::int64_t> pads = {0, 5, 16};
    const auto x = random_halves(static_cast<std::size_t>(batch * tokens * heads * hd), rng, 1.0f);
    BatchState state;
    state.pad_len = pads;
    state.past_len = past;
    std::vector<float> ref = x;
    const std::vector<double> inv = rope_inv_freq(spec);
    apply_rotary(ref, batch, tokens, heads, hd, inv, state);
    const auto out = cuda::on_host::apply_rotary(x, pads, tokens, static_cast<int>(heads), static_cast<int>(hd), inv, past);
    EXPECT_EQ(count_nan(out), 0);
    EXPECT_LE(relative_error(out, ref), 2e-3) << "past " << past;
  }
}

TEST(CudaLlamaOps, SiluMulMatchesTheHost) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(3);
  for (std::size_t n : {std::size_t{8192}, std::size_t{1001}}) {
    const auto gate = random_halves(n, rng, 3.0f);
    const auto up = random_halves(n, rng, 1.0f);
    std::vector<float> ref = gate;
    silu_mul(ref, up);
    const auto out = cuda::on_host::silu_mul(gate, up);
    EXPECT_EQ(count_nan(out), 0);
    EXPECT_LE(relative_error(out, ref), 2e-3) << n;
  }
}

TEST(CudaLlamaOps, TokenEmbeddingCopiesRows) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(4);
  const std::int64_t vocab = 50, hidden = 40;
  const auto table = random_halves(static_cast<std::size_t>(vocab * hidden), rng, 1.0f);
  const std::vector<std::int32_t> ids = {3, 49, 0, 3, 60};
  const auto out = cuda::on_host::token_embedding(ids, table, vocab, hidden);
  for (std::size_t r = 0; r < ids.size(); ++r) {
    for (std::int64_t c = 0; c < hidden; ++c) {
      const float got = out[r * static_cast<std::size_t>(hidden) + static_cast<std::size_t>(c)];
      if (ids[r] >= vocab) {
        EXPECT_TRUE(std::isnan(got));  // out of range: NaN, never a read outside the table
      } else {
        EXPECT_EQ(got, table[static_cast<std::size_t>(ids[r] * hidden + c)]);
      }
    }
  }
}

TEST(CudaLlamaOps, QueryGroupSums) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(5);
  const std::int64_t units = 6, group = 4, hd = 64;
  const auto q = random_halves(static_cast<std::size_t>(units * group * hd), rng, 1.0f);
  const auto out = cuda::on_host::sum_query_groups(q, units, group, hd);
  for (std::int64_t u = 0; u < units; ++u) {
    for (std::int64_t d = 0; d < hd; ++d) {
      float s = 0;
      for (std::int64_t g = 0; g < group; ++g) s += q[static_cast<std::size_t>((u * group + g) * hd + d)];
      EXPECT_EQ(out[static_cast<std::size_t>(u * hd + d)], testing::to_half_value(s));
    }
  }
}

// Grouped-query attention: 4 query heads per key/value head; the cache holds batch * kv_heads
// units split into a home and a slot part (the view's group tells the kernels).
struct GqaCase {
  std::int64_t batch;
  int kv_heads, group, head_dim;
  std::int64_t tokens, past;
  std::vector<std::int64_t> pads;
  std::int64_t gpu_units;
};

std::vector<cuda::on_host::HostKvPart> grouped(std::vector<cuda::on_host::HostKvPart> parts, int group) {
  for (auto& p : parts) p.group = group;
  return parts;
}

TEST(CudaLlamaOps, GroupedPrefillAttentionMatchesUnitAttention) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(6);
  for (const GqaCase& c : std::vector<GqaCase>{{2, 2, 4, 64, 40, 0, {0, 13}, 1}, {3, 1, 8, 128, 33, 0, {2, 0, 30}, 2}}) {
    const std::int64_t kv_units = c.batch * c.kv_heads, heads = c.kv_heads * c.group;
    SplitCache cache(kv_units, c.head_dim, c.past + c.tokens, c.gpu_units, 1, 1, rng);
    const auto q = random_halves(static_cast<std::size_t>(c.batch * c.tokens * heads * c.head_dim), rng,
                                 1.0f / std::sqrt(static_cast<float>(c.head_dim)));
    std::vector<float> ref(q.size());
    const std::int64_t row = heads * c.head_dim;
    for (std::int64_t b = 0; b < c.batch; ++b) {
      for (std::int64_t h = 0; h < heads; ++h) {
        const std::int64_t kv_unit = b * c.kv_heads + h / c.group;
        const auto keys = cache.keys(kv_unit, c.past + c.tokens);
        const auto values = cache.values(kv_unit, c.past + c.tokens);
        unit_attention(q.data() + b * c.tokens * row + h * c.head_dim, row, keys.data(), values.data(), c.head_dim,
                       c.tokens, c.past, c.pads[static_cast<std::size_t>(b)],
                       ref.data() + b * c.tokens * row + h * c.head_dim, row);
      }
    }
    const auto parts = grouped(cache.parts(), c.group);
    const auto core = cuda::on_host::prefill_attention(q, parts, c.pads, static_cast<int>(heads), c.head_dim, c.tokens,
                                                       c.past);
    EXPECT_EQ(count_nan(core), 0);
    EXPECT_LE(relative_error(core, ref), 2e-3);
    for (std::size_t ws : {std::size_t{0}, std::size_t{10000}}) {  // all units in one chunk; chunks of 2 or 3
      const auto gemm = cuda::on_host::prefill_attention_gemm(q, parts, c.pads, static_cast<int>(heads), c.head_dim,
                                                              c.tokens, c.past, ws);
      EXPECT_EQ(count_nan(gemm), 0);
      EXPECT_LE(relative_error(gemm, ref), 5e-3) << "workspace " << ws;
    }
  }
}

TEST(CudaLlamaOps, GroupedDecodeAttentionMatchesUnitAttention) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(7);
  for (const GqaCase& c : std::vector<GqaCase>{{2, 2, 4, 64, 1, 300, {0, 100}, 3}, {4, 8, 8, 128, 1, 1000, {0, 1, 999, 5}, 20}}) {
    const std::int64_t kv_units = c.batch * c.kv_heads, heads = c.kv_heads * c.group;
    SplitCache cache(kv_units, c.head_dim, c.past + 2, c.gpu_units, 2, 0, rng);
    const auto q = random_halves(static_cast<std::size_t>(c.batch * heads * c.head_dim), rng,
                                 1.0f / std::sqrt(static_cast<float>(c.head_dim)));
    std::vector<float> ref(q.size()), sparse_ref(q.size());
    const int k = static_cast<int>(c.past / 4);
    std::vector<std::int32_t> kept(static_cast<std::size_t>(kv_units * k));
    std::vector<float> summed;
    for (std::int64_t u = 0; u < kv_units; ++u) {
      const std::int64_t pad = c.pads[static_cast<std::size_t>(u / c.kv_heads)];
      const auto keys = cache.keys(u, c.past + 1);
      const auto values = cache.values(u, c.past + 1);
      // One selection per key/value unit by its group's summed query (fp16-rounded, as the GPU's).
      std::vector<float> sum(static_cast<std::size_t>(c.head_dim), 0.0f);
      for (int g = 0; g < c.group; ++g) {
        for (int d = 0; d < c.head_dim; ++d) sum[static_cast<std::size_t>(d)] += q[static_cast<std::size_t>((u * c.group + g) * c.head_dim + d)];
      }
      for (float& v : sum) v = testing::to_half_value(v);
      const auto sel = select_top_k(sum.data(), keys.data(), c.head_dim, c.past, pad, k);
      for (int i = 0; i < k; ++i) kept[static_cast<std::size_t>(u * k + i)] = static_cast<std::int32_t>(sel[static_cast<std::size_t>(i)]);
      for (int g = 0; g < c.group; ++g) {
        const std::int64_t qu = u * c.group + g;
        unit_attention(q.data() + qu * c.head_dim, c.head_dim, keys.data(), values.data(), c.head_dim, 1, c.past, pad,
                       ref.data() + qu * c.head_dim, c.head_dim);
        sparse_unit_attention(q.data() + qu * c.head_dim, keys.data(), values.data(), c.head_dim, c.past, pad, sel,
                              sparse_ref.data() + qu * c.head_dim);
      }
    }
    const auto parts = grouped(cache.parts(), c.group);
    for (int splits : {0, 1, 3}) {
      const auto out = cuda::on_host::decode_attention(q, parts, c.pads, static_cast<int>(heads), c.head_dim, c.past,
                                                       splits);
      EXPECT_EQ(count_nan(out), 0);
      EXPECT_LE(relative_error(out, ref), 2e-3) << "splits " << splits;
      const auto sparse = cuda::on_host::sparse_decode_attention(q, parts, c.pads, static_cast<int>(heads), c.head_dim,
                                                                 c.past, kept, k, splits);
      EXPECT_EQ(count_nan(sparse), 0);
      EXPECT_LE(relative_error(sparse, sparse_ref), 2e-3) << "sparse, splits " << splits;
    }
  }
}

}  // namespace
}  // namespace flexgen

#else
TEST(CudaLlamaOps, NeedsTheCudaBackend) { GTEST_SKIP() << "built without the CUDA backend"; }
#endif
