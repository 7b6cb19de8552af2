#pragma once
// Attention for one unit (one sequence and one head) over its cached rows, as the offloading
// runtime computes it on either side of the PCIe link: the GPU side for units whose cache it holds
// or loads, the CPU side for units delegated to it. Keys and values are [positions, head_dim]
// float32 rows; queries are already scaled by head_dim^-0.5.
//
// Masking follows OPT with left padding: positions below `pad` are padding and never attended to;
// a query at position p attends to positions pad .. p. A padding query (p < pad) attends to its own
// key only, so its output is its own value row (never NaN; never used by a real token).
//
// Sparse attention (decode, FlexGen's top-k): the scores of the real cached positions decide which
// k positions are kept; the softmax then runs over the kept positions and the new token's own, so
// the kept weights are renormalised (FlexGen sums the unrenormalised weights instead; see
// docs/runtime.md).
#include <cstdint>
#include <vector>

namespace flexgen {

// q.k over n floats, accumulated in 8 interleaved lanes (the order every attention path here
// uses, so that a score is the same number wherever it is computed).
float attention_dot(const float* a, const float* b, std::int64_t n);

// out = sum_i softmax(scores)_i * values[positions[i] * head_dim ...], the normaliser and the
// sums accumulated in double.
void softmax_combine(const std::vector<float>& scores, const std::vector<std::int64_t>& positions,
                     const float* values, std::int64_t head_dim, float* out);

// Dense causal attention for T queries at positions past .. past + T - 1.
//   q:      T rows of head_dim, row t at q + t * q_stride
//   keys, values: past + T rows of head_dim
//   out:    T rows, row t at out + t * out_stride
void unit_attention(const float* q, std::int64_t q_stride, const float* keys, const float* values,
                    std::int64_t head_dim, std::int64_t T, std::int64_t past, std::int64_t pad,
                    float* out, std::int64_t out_stride);

// The `k` cached positions in [0, past) with the highest scores q.k (padding positions score -inf
// and come last; ties go to the lower position), sorted ascending. k <= past.
std::vector<std::int64_t> select_top_k(const float* q, const float* keys, std::int64_t head_dim,
                                       std::int64_t past, std::int64_t pad, std::int64_t k);

// The same selection over given scores of positions [0, past) (padding ones already -inf).
std::vector<std::int64_t> top_k_of_scores(const std::vector<float>& scores, std::int64_t k);

// Decode attention of the query at position `past` over the kept positions (padding ones are
// skipped) and itself.
void sparse_unit_attention(const float* q, const float* keys, const float* values,
                           std::int64_t head_dim, std::int64_t past, std::int64_t pad,
                           const std::vector<std::int64_t>& kept, float* out);

}  // namespace flexgen
