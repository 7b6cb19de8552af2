#pragma once
// The host backend's kernels: free functions on contiguous row-major float32 spans.
//
// Every kernel is deterministic: each output element is computed by one thread with a fixed
// order of operations, so results do not depend on parallel_threads(). Sizes are the caller's
// contract (asserted); only data-dependent errors (a token id out of range) throw flexgen::Error.
#include <cstdint>
#include <span>

namespace flexgen {

// y[r, :] = (x[r, :] - mean) / sqrt(var + eps) * gamma + beta for each of `rows` rows of `cols`
// values (biased variance, as torch.nn.LayerNorm). Mean and variance are accumulated in double.
// x and y may be the same span.
void layer_norm(std::span<const float> x, std::span<const float> gamma, std::span<const float> beta,
                std::int64_t rows, std::int64_t cols, double eps, std::span<float> y);

// y = x W^T + b: x is [rows, in_features], weight [out_features, in_features] (torch's Linear
// layout), bias [out_features] or empty for none, y [rows, out_features]. Each output is a dot
// product of two contiguous rows, accumulated in float in eight interleaved partial sums that are
// combined in a fixed order. Parallel over blocks of output features. y must not alias x.
void linear(std::span<const float> x, std::int64_t rows, std::int64_t in_features,
            std::span<const float> weight, std::span<const float> bias, std::int64_t out_features,
            std::span<float> y);

// x = max(x, 0) elementwise.
void relu(std::span<float> x);

// x += y elementwise (residual connections).
void add_inplace(std::span<float> x, std::span<const float> y);

// x *= factor elementwise.
void scale_inplace(std::span<float> x, float factor);

// In-place softmax of one row: exp(x - max) / sum, the sum accumulated in double. -inf entries
// get probability 0; the row must hold at least one finite value.
void softmax(std::span<float> row);

// out[i, :] = table[ids[i], :] for a table of [table_rows, cols]. Throws flexgen::Error naming the
// index and the id when an id is outside [0, table_rows).
void embedding(std::span<const float> table, std::int64_t table_rows, std::int64_t cols,
               std::span<const std::int32_t> ids, std::span<float> out);

// Sizes of one attention call over a left-padded batch with a KV cache.
struct AttentionShape {
  std::int64_t batch = 0;       // B sequences
  std::int64_t new_tokens = 0;  // T queries per sequence (prompt length in prefill, 1 in decode)
  std::int64_t num_heads = 0;   // H
  std::int64_t head_dim = 0;    // d; the hidden size is H * d
  std::int64_t capacity = 0;    // positions the cache tensors hold per sequence
  std::int64_t past_len = 0;    // positions in the cache before this call's tokens
  // Key/value heads (grouped-query attention, LLaMA): query head i reads key/value head
  // i / (H / num_kv_heads); 0 means H (OPT).
  std::int64_t num_kv_heads = 0;
};

// Multi-head causal attention with a left-padding mask.
//   q:           [B, T, H*d], already scaled by d^-0.5
//   key, value:  the cache, [B, capacity, K*d] (K = num_kv_heads, or H); positions past_len ..
//                past_len+T-1 must already hold this call's keys and values (head i at columns
//                i*d .. i*d+d-1)
//   pad_len:     [B], pad tokens at the start of each sequence
//   out:         [B, T, H*d]
// Query t of sequence b sits at position p = past_len + t. A real query (p >= pad_len[b])
// attends to the keys at positions pad_len[b] .. p with softmax weights. A padding query
// (p < pad_len[b]) attends to its own key only, so its output is its own value row: finite,
// never NaN, and never read for a real token (HF OPT instead spreads a fully masked row uniformly
// over all masked keys; the two differ only on padding rows).
void attention(std::span<const float> q, std::span<const float> key, std::span<const float> value,
               std::span<const std::int64_t> pad_len, const AttentionShape& shape,
               std::span<float> out);

}  // namespace flexgen
