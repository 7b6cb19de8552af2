#pragma once
// Host-callable wrappers of the LLaMA CUDA ops for tests (as host_calls.h: host data in, rounded
// to fp16, outputs poisoned with 0xff bytes before the op, default stream, results widened).
// Defined only in builds with the CUDA backend (FLEXGEN_HAVE_CUDA).
#include <cstdint>
#include <span>
#include <vector>

namespace flexgen::cuda::on_host {

std::vector<float> rms_norm(std::span<const float> x, std::span<const float> weight, std::int64_t rows,
                            std::int64_t cols, float eps);

// x: [batch, tokens, heads * head_dim]; batch = pad_len.size().
std::vector<float> apply_rotary(std::span<const float> x, std::span<const std::int64_t> pad_len, std::int64_t tokens,
                                int heads, int head_dim, const std::vector<double>& inv_freq, std::int64_t past);

std::vector<float> silu_mul(std::span<const float> gate, std::span<const float> up);

std::vector<float> token_embedding(std::span<const std::int32_t> ids, std::span<const float> table,
                                   std::int64_t vocab, std::int64_t hidden);

std::vector<float> sum_query_groups(std::span<const float> q, std::int64_t units, int group, int head_dim);

}  // namespace flexgen::cuda::on_host
