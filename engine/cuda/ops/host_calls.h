#pragma once
// Host-callable wrappers of the CUDA ops for tests: each takes host data, copies it to the GPU,
// runs the op on the default stream, waits and copies the result back. Plain C++ (no CUDA types);
// defined only in builds with the CUDA backend (FLEXGEN_HAVE_CUDA), so callers guard on it.
//
// fp16 data travels as float: inputs are rounded to fp16 (nearest even) on the way in, so tests
// pass values that are already fp16 to compare against a float reference on the same values;
// outputs are the fp16 results widened exactly. Every output buffer is filled with 0xff bytes
// (NaN for fp16 and fp32, -1 for int32) before the op runs, so an element the op did not write
// comes back NaN (or -1).
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/compress/quant4.h"

namespace flexgen::cuda::on_host {

std::vector<float> layer_norm(std::span<const float> x, std::span<const float> gamma,
                              std::span<const float> beta, std::int64_t rows, std::int64_t cols,
                              float eps);

// y = act(x W^T + bias) + residual; bias and residual may be empty (none).
std::vector<float> linear(std::span<const float> x, std::int64_t rows, std::int64_t in_features,
                          std::span<const float> weight, std::span<const float> bias,
                          std::int64_t out_features, bool relu, std::span<const float> residual);

// The linear op through a LinearContext: y = act(alpha x W^T + bias) + residual. `fused` false
// forces the plain path; `misaligned_bias` places the bias 2 bytes past a 16-byte boundary (which
// the fused path refuses). Returns y and whether the fused (cuBLASLt) path took the call.
struct LinearResult {
  std::vector<float> y;
  bool fused = false;
};
LinearResult linear_in_context(std::span<const float> x, std::int64_t rows, std::int64_t in_features,
                               std::span<const float> weight, std::span<const float> bias,
                               std::int64_t out_features, float alpha, bool relu,
                               std::span<const float> residual, bool fused, bool misaligned_bias = false);

// Checks ids and position rows as opt_embed does (flexgen::Error naming the sequence, position
// and id), then runs the kernel. Batch = pad_len.size().
std::vector<float> embedding(std::span<const std::int32_t> ids, std::span<const std::int64_t> pad_len,
                             std::int64_t tokens, std::int64_t past,
                             std::span<const float> token_table, std::int64_t vocab,
                             std::span<const float> position_table, std::int64_t position_rows,
                             std::int64_t hidden);

std::vector<float> softmax_f32(std::span<const float> x, std::int64_t rows, std::int64_t cols);
std::vector<float> softmax_f16(std::span<const float> x, std::int64_t rows, std::int64_t cols);

// One part of a KV view (kv_view.cuh), on the host: whole buffers, and the element offset of
// (position 0, unit_begin) in them.
struct HostKvPart {
  std::span<const float> keys;
  std::span<const float> values;  // may be empty for select_top_k
  std::int64_t offset = 0;
  std::int64_t unit_begin = 0;
  std::int64_t unit_end = 0;
  std::int64_t position_stride = 0;
  int group = 1;  // the view's query heads per key/value unit (kv_view.cuh); the first part's counts
};

// Batch = pad_len.size(); q and the result are [batch, tokens, num_heads * head_dim].
std::vector<float> prefill_attention(std::span<const float> q, const std::vector<HostKvPart>& parts,
                                     std::span<const std::int64_t> pad_len, int num_heads,
                                     int head_dim, std::int64_t tokens, std::int64_t past);

// The tensor-core version (prefill_attention_gemm.cuh); workspace_bytes limits the units per
// chunk (0: all units in one chunk).
std::vector<float> prefill_attention_gemm(std::span<const float> q, const std::vector<HostKvPart>& parts,
                                          std::span<const std::int64_t> pad_len, int num_heads,
                                          int head_dim, std::int64_t tokens, std::int64_t past,
                                          std::size_t workspace_bytes);

// q and the result are [batch * num_heads, head_dim]; num_splits as decode_attention (0: auto,
// with workspace for the most splits).
std::vector<float> decode_attention(std::span<const float> q, const std::vector<HostKvPart>& parts,
                                    std::span<const std::int64_t> pad_len, int num_heads,
                                    int head_dim, std::int64_t past, int num_splits);

// [units, k] kept positions.
std::vector<std::int32_t> select_top_k(std::span<const float> q,
                                       const std::vector<HostKvPart>& parts,
                                       std::span<const std::int64_t> pad_len, int num_heads,
                                       int head_dim, std::int64_t past, int k);

std::vector<float> sparse_decode_attention(std::span<const float> q,
                                           const std::vector<HostKvPart>& parts,
                                           std::span<const std::int64_t> pad_len, int num_heads,
                                           int head_dim, std::int64_t past,
                                           std::span<const std::int32_t> kept, int k,
                                           int num_splits);

// argmax_rows on x [rows, cols] (rounded to fp16).
std::vector<std::int32_t> argmax_rows(std::span<const float> x, std::int64_t rows, std::int64_t cols);

// 4-bit: fp32 results, or the fp16 results' bit patterns.
std::vector<float> dequantize_f32(std::span<const std::byte> in, const Shape& shape,
                                  const QuantSpec& spec);
std::vector<std::uint16_t> dequantize_f16(std::span<const std::byte> in, const Shape& shape,
                                          const QuantSpec& spec);
std::vector<std::uint16_t> dequantize_rows(std::span<const std::byte> in, std::int64_t rows,
                                           std::int64_t head_dim, const QuantSpec& spec);
// x: [rows, head_dim] (rounded to fp16); the row buffers, rows * quantized_bytes({1, head_dim}).
std::vector<std::byte> quantize_rows(std::span<const float> x, std::int64_t rows,
                                     std::int64_t head_dim, const QuantSpec& spec);

}  // namespace flexgen::cuda::on_host
