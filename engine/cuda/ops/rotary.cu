#include "engine/cuda/ops/rotary.cuh"

#include <algorithm>

#include "engine/cuda/cuda_check.cuh"

namespace flexgen::cuda {
namespace {

__global__ void rotary_kernel(__half* x, std::int64_t tokens, int heads, int head_dim, RopeTable table,
                              const std::int32_t* __restrict__ pad_len, std::int64_t past) {
  const std::int64_t row = blockIdx.x;
  const std::int64_t b = row / tokens;
  const std::int64_t pos = past + (row - b * tokens);
  const std::int64_t pad = pad_len[b];
  const double r = pos < pad ? 0.0 : static_cast<double>(pos - pad);
  const int half = head_dim / 2;
  __half* base = x + row * static_cast<std::int64_t>(heads) * head_dim;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    double s, c;
    sincos(r * table.inv_freq[i], &s, &c);
    const float sf = static_cast<float>(s), cf = static_cast<float>(c);
    for (int h = 0; h < heads; ++h) {
      __half* v = base + static_cast<std::int64_t>(h) * head_dim;
      const float a = __half2float(v[i]), b2 = __half2float(v[i + half]);
      v[i] = __float2half_rn(a * cf - b2 * sf);
      v[i + half] = __float2half_rn(b2 * cf + a * sf);
    }
  }
}

}  // namespace

RopeTable make_rope_table(const std::vector<double>& inv_freq) {
  FLEXGEN_REQUIRE(inv_freq.size() <= static_cast<std::size_t>(kMaxRopePairs), "rotary embeddings: ",
                  inv_freq.size(), " frequencies, more than the ", kMaxRopePairs, " the CUDA kernel takes (head_dim ",
                  2 * kMaxRopePairs, ")");
  RopeTable t;
  t.pairs = static_cast<int>(inv_freq.size());
  for (std::size_t i = 0; i < inv_freq.size(); ++i) t.inv_freq[i] = inv_freq[i];
  return t;
}

void apply_rotary(__half* x, std::int64_t batch, std::int64_t tokens, int heads, int head_dim,
                  const RopeTable& table, const std::int32_t* pad_len, std::int64_t past, cudaStream_t stream) {
  const std::int64_t rows = batch * tokens;
  if (rows == 0 || heads == 0) return;
  FLEXGEN_REQUIRE(head_dim == 2 * table.pairs, "rotary embeddings: head_dim ", head_dim, " is not twice the ",
                  table.pairs, " frequencies");
  const int threads = std::max(32, (table.pairs + 31) / 32 * 32);
  rotary_kernel<<<static_cast<unsigned>(rows), threads, 0, stream>>>(x, tokens, heads, head_dim, table, pad_len,
                                                                     past);
  FLEXGEN_CUDA_CHECK_LAUNCH("rotary_kernel", str_cat("rows=", rows, " heads=", heads, " head_dim=", head_dim));
}

}  // namespace flexgen::cuda
