#include "engine/cuda/ops/host_calls.h"

#include <cassert>
#include <cstring>

#include "engine/core/error.h"
#include "engine/cuda/cublas_handle.cuh"
#include "engine/cuda/ops/argmax.cuh"
#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/device_buffer.cuh"
#include "engine/cuda/ops/decode_attention.cuh"
#include "engine/cuda/ops/embedding.cuh"
#include "engine/cuda/ops/layer_norm.cuh"
#include "engine/cuda/ops/linear.cuh"
#include "engine/cuda/cublas_handle.cuh"
#include "engine/cuda/ops/argmax.cuh"
#include "engine/cuda/ops/prefill_attention.cuh"
#include "engine/cuda/ops/prefill_attention_gemm.cuh"
#include "engine/cuda/ops/quant4.cuh"
#include "engine/cuda/ops/softmax.cuh"
#include "engine/cuda/ops/top_k.cuh"
#include "engine/tensor/tensor.h"

namespace flexgen::cuda::on_host {
namespace {

DeviceBuffer<__half> upload_half(std::span<const float> x) {
  std::vector<std::uint16_t> bits(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) bits[i] = float_to_half(x[i]);
  DeviceBuffer<__half> d(x.size());
  d.upload(bits.data(), bits.size() * sizeof(std::uint16_t));
  return d;
}

template <typename T>
DeviceBuffer<T> upload(std::span<const T> x) {
  DeviceBuffer<T> d(x.size());
  d.upload(x.data(), x.size() * sizeof(T));
  return d;
}

DeviceBuffer<std::int32_t> upload_pads(std::span<const std::int64_t> pad_len) {
  std::vector<std::int32_t> pads(pad_len.begin(), pad_len.end());
  return upload<std::int32_t>(pads);
}

template <typename T>
DeviceBuffer<T> poisoned(std::size_t count) {
  DeviceBuffer<T> d(count);
  d.fill_bytes(0xff);
  return d;
}

std::vector<float> download_half(const DeviceBuffer<__half>& d) {
  std::vector<std::uint16_t> bits(d.size());
  d.download(bits.data(), d.bytes());
  std::vector<float> out(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) out[i] = half_to_float(bits[i]);
  return out;
}

template <typename T>
std::vector<T> download(const DeviceBuffer<T>& d) {
  std::vector<T> out(d.size());
  d.download(out.data(), d.bytes());
  return out;
}

void finish() { FLEXGEN_CUDA_CHECK(cudaDeviceSynchronize()); }

// The parts' buffers on the GPU, kept alive while the view is in use.
struct DeviceKv {
  std::vector<DeviceBuffer<__half>> buffers;
  KvView view;
};

DeviceKv upload_kv(const std::vector<HostKvPart>& parts) {
  assert(parts.size() <= static_cast<std::size_t>(kMaxKvParts));
  DeviceKv kv;
  kv.view.num_parts = static_cast<int>(parts.size());
  kv.view.group = parts.empty() ? 1 : parts[0].group;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const HostKvPart& p = parts[i];
    kv.buffers.push_back(upload_half(p.keys));
    const __half* keys = kv.buffers.back().get() + p.offset;
    const __half* values = nullptr;
    if (!p.values.empty()) {
      kv.buffers.push_back(upload_half(p.values));
      values = kv.buffers.back().get() + p.offset;
    }
    kv.view.parts[i] = KvPart{keys, values, p.unit_begin, p.unit_end, p.position_stride};
  }
  return kv;
}

}  // namespace

std::vector<float> layer_norm(std::span<const float> x, std::span<const float> gamma,
                              std::span<const float> beta, std::int64_t rows, std::int64_t cols,
                              float eps) {
  assert(static_cast<std::int64_t>(x.size()) == rows * cols);
  auto dx = upload_half(x);
  auto dg = upload_half(gamma);
  auto db = upload_half(beta);
  auto dy = poisoned<__half>(x.size());
  cuda::layer_norm(dx.get(), dg.get(), db.get(), rows, cols, eps, dy.get(), nullptr);
  finish();
  return download_half(dy);
}

std::vector<float> linear(std::span<const float> x, std::int64_t rows, std::int64_t in_features,
                          std::span<const float> weight, std::span<const float> bias,
                          std::int64_t out_features, bool relu, std::span<const float> residual) {
  assert(static_cast<std::int64_t>(x.size()) == rows * in_features);
  assert(static_cast<std::int64_t>(weight.size()) == out_features * in_features);
  CublasHandle handle;
  auto dx = upload_half(x);
  auto dw = upload_half(weight);
  auto db = upload_half(bias);
  auto dr = upload_half(residual);
  auto dy = poisoned<__half>(static_cast<std::size_t>(rows * out_features));
  LinearEpilogue epilogue;
  epilogue.relu = relu;
  epilogue.residual = residual.empty() ? nullptr : dr.get();
  cuda::linear(handle.get(), dx.get(), rows, in_features, dw.get(), bias.empty() ? nullptr : db.get(),
               out_features, dy.get(), epilogue, nullptr);
  finish();
  return download_half(dy);
}

LinearResult linear_in_context(std::span<const float> x, std::int64_t rows, std::int64_t in_features,
                               std::span<const float> weight, std::span<const float> bias,
                               std::int64_t out_features, float alpha, bool relu,
                               std::span<const float> residual, bool fused, bool misaligned_bias) {
  assert(static_cast<std::int64_t>(x.size()) == rows * in_features);
  assert(static_cast<std::int64_t>(weight.size()) == out_features * in_features);
  CublasHandle handle;
  constexpr std::size_t kWorkspace = std::size_t{32} << 20;
  DeviceBuffer<std::byte> workspace(kWorkspace);
  LinearContext ctx(handle.get(), workspace.get(), kWorkspace);
  ctx.set_fused(fused);
  auto dx = upload_half(x);
  auto dw = upload_half(weight);
  // The bias at element 1 of its buffer when misaligned (cudaMalloc's base is 256-byte aligned).
  std::vector<float> padded_bias;
  if (!bias.empty()) {
    padded_bias.assign(misaligned_bias ? 1 : 0, 0.0f);
    padded_bias.insert(padded_bias.end(), bias.begin(), bias.end());
  }
  auto db = upload_half(padded_bias);
  auto dr = upload_half(residual);
  auto dy = poisoned<__half>(static_cast<std::size_t>(rows * out_features));
  LinearEpilogue epilogue;
  epilogue.alpha = alpha;
  epilogue.relu = relu;
  epilogue.residual = residual.empty() ? nullptr : dr.get();
  const __half* b = bias.empty() ? nullptr : db.get() + (misaligned_bias ? 1 : 0);
  cuda::linear(ctx, dx.get(), rows, in_features, dw.get(), b, out_features, dy.get(), epilogue, nullptr);
  finish();
  LinearResult r;
  r.y = download_half(dy);
  r.fused = ctx.fused_calls() == 1;
  assert(ctx.fused_calls() + ctx.plain_calls() == 1);
  return r;
}

std::vector<float> embedding(std::span<const std::int32_t> ids, std::span<const std::int64_t> pad_len,
                             std::int64_t tokens, std::int64_t past,
                             std::span<const float> token_table, std::int64_t vocab,
                             std::span<const float> position_table, std::int64_t position_rows,
                             std::int64_t hidden) {
  const auto batch = static_cast<std::int64_t>(pad_len.size());
  assert(static_cast<std::int64_t>(ids.size()) == batch * tokens);
  for (std::int64_t i = 0; i < batch * tokens; ++i) {
    const std::int64_t b = i / tokens;
    const std::int64_t pos = past + i % tokens;
    const std::int32_t id = ids[static_cast<std::size_t>(i)];
    FLEXGEN_REQUIRE(id >= 0 && id < vocab, "embedding: token id ", id, " of sequence ", b,
                    " at step position ", pos, " is outside the vocabulary [0, ", vocab, ")");
    const std::int64_t pad = pad_len[static_cast<std::size_t>(b)];
    const std::int64_t row = pos < pad ? 1 : pos - pad + 2;
    FLEXGEN_REQUIRE(row < position_rows, "embedding: sequence ", b, " reaches position ", row - 2,
                    ", beyond the position table's ", position_rows, " rows");
  }
  auto dids = upload<std::int32_t>(ids);
  auto dpads = upload_pads(pad_len);
  auto dtok = upload_half(token_table);
  auto dpos = upload_half(position_table);
  auto dout = poisoned<__half>(static_cast<std::size_t>(batch * tokens * hidden));
  cuda::embedding(dids.get(), dpads.get(), batch, tokens, past, dtok.get(), vocab, dpos.get(),
                  position_rows, hidden, dout.get(), nullptr);
  finish();
  return download_half(dout);
}

std::vector<float> softmax_f32(std::span<const float> x, std::int64_t rows, std::int64_t cols) {
  auto dx = upload<float>(x);
  cuda::softmax(dx.get(), rows, cols, nullptr);
  finish();
  return download(dx);
}

std::vector<float> softmax_f16(std::span<const float> x, std::int64_t rows, std::int64_t cols) {
  auto dx = upload_half(x);
  cuda::softmax(dx.get(), rows, cols, nullptr);
  finish();
  return download_half(dx);
}

std::vector<float> prefill_attention(std::span<const float> q, const std::vector<HostKvPart>& parts,
                                     std::span<const std::int64_t> pad_len, int num_heads,
                                     int head_dim, std::int64_t tokens, std::int64_t past) {
  const auto batch = static_cast<std::int64_t>(pad_len.size());
  DeviceKv kv = upload_kv(parts);
  auto dq = upload_half(q);
  auto dpads = upload_pads(pad_len);
  auto dout = poisoned<__half>(q.size());
  cuda::prefill_attention(dq.get(), kv.view, dpads.get(), batch, num_heads, head_dim, tokens, past,
                          dout.get(), nullptr);
  finish();
  return download_half(dout);
}

std::vector<float> prefill_attention_gemm(std::span<const float> q, const std::vector<HostKvPart>& parts,
                                          std::span<const std::int64_t> pad_len, int num_heads,
                                          int head_dim, std::int64_t tokens, std::int64_t past,
                                          std::size_t workspace_bytes) {
  const auto batch = static_cast<std::int64_t>(pad_len.size());
  DeviceKv kv = upload_kv(parts);
  auto dq = upload_half(q);
  auto dpads = upload_pads(pad_len);
  auto dout = poisoned<__half>(q.size());
  if (workspace_bytes == 0) {
    workspace_bytes = prefill_attention_gemm_workspace_bytes(batch * num_heads, tokens, past);
  }
  DeviceBuffer<unsigned char> workspace(workspace_bytes);
  CublasHandle handle;
  cuda::prefill_attention_gemm(handle.get(), dq.get(), kv.view, dpads.get(), batch, num_heads, head_dim, tokens,
                               past, dout.get(), workspace.get(), workspace_bytes, nullptr);
  finish();
  return download_half(dout);
}

std::vector<std::int32_t> argmax_rows(std::span<const float> x, std::int64_t rows, std::int64_t cols) {
  auto dx = upload_half(x);
  auto dout = poisoned<std::int32_t>(static_cast<std::size_t>(rows));
  cuda::argmax_rows(dx.get(), rows, cols, dout.get(), nullptr);
  finish();
  return download(dout);
}

std::vector<float> decode_attention(std::span<const float> q, const std::vector<HostKvPart>& parts,
                                    std::span<const std::int64_t> pad_len, int num_heads,
                                    int head_dim, std::int64_t past, int num_splits) {
  const auto batch = static_cast<std::int64_t>(pad_len.size());
  const std::int64_t units = batch * num_heads;
  DeviceKv kv = upload_kv(parts);
  auto dq = upload_half(q);
  auto dpads = upload_pads(pad_len);
  auto dout = poisoned<__half>(q.size());
  const std::size_t bytes =
      decode_attention_workspace_bytes(units, head_dim, num_splits > 0 ? num_splits : 64);
  auto workspace = poisoned<float>(bytes / sizeof(float));
  cuda::decode_attention(dq.get(), kv.view, dpads.get(), batch, num_heads, head_dim, past,
                         dout.get(), workspace.get(), bytes, num_splits, nullptr);
  finish();
  return download_half(dout);
}

std::vector<std::int32_t> select_top_k(std::span<const float> q,
                                       const std::vector<HostKvPart>& parts,
                                       std::span<const std::int64_t> pad_len, int num_heads,
                                       int head_dim, std::int64_t past, int k) {
  const auto batch = static_cast<std::int64_t>(pad_len.size());
  const std::int64_t units = batch * num_heads;
  DeviceKv kv = upload_kv(parts);
  auto dq = upload_half(q);
  auto dpads = upload_pads(pad_len);
  auto dkept = poisoned<std::int32_t>(static_cast<std::size_t>(units * (k > 0 ? k : 0)));
  cuda::select_top_k(dq.get(), kv.view, dpads.get(), batch, num_heads, head_dim, past, k,
                     dkept.get(), nullptr);
  finish();
  return download(dkept);
}

std::vector<float> sparse_decode_attention(std::span<const float> q,
                                           const std::vector<HostKvPart>& parts,
                                           std::span<const std::int64_t> pad_len, int num_heads,
                                           int head_dim, std::int64_t past,
                                           std::span<const std::int32_t> kept, int k,
                                           int num_splits) {
  const auto batch = static_cast<std::int64_t>(pad_len.size());
  const std::int64_t units = batch * num_heads;
  DeviceKv kv = upload_kv(parts);
  auto dq = upload_half(q);
  auto dpads = upload_pads(pad_len);
  auto dkept = upload<std::int32_t>(kept);
  auto dout = poisoned<__half>(q.size());
  const std::size_t bytes =
      decode_attention_workspace_bytes(units, head_dim, num_splits > 0 ? num_splits : 64);
  auto workspace = poisoned<float>(bytes / sizeof(float));
  cuda::sparse_decode_attention(dq.get(), kv.view, dpads.get(), batch, num_heads, head_dim, past,
                                dkept.get(), k, dout.get(), workspace.get(), bytes, num_splits,
                                nullptr);
  finish();
  return download_half(dout);
}

std::vector<float> dequantize_f32(std::span<const std::byte> in, const Shape& shape,
                                  const QuantSpec& spec) {
  auto din = upload<std::byte>(in);
  auto dout = poisoned<float>(static_cast<std::size_t>(shape_numel(shape)));
  cuda::dequantize(din.get(), shape, spec, dout.get(), nullptr);
  finish();
  return download(dout);
}

std::vector<std::uint16_t> dequantize_f16(std::span<const std::byte> in, const Shape& shape,
                                          const QuantSpec& spec) {
  auto din = upload<std::byte>(in);
  auto dout = poisoned<__half>(static_cast<std::size_t>(shape_numel(shape)));
  cuda::dequantize(din.get(), shape, spec, dout.get(), nullptr);
  finish();
  std::vector<std::uint16_t> bits(dout.size());
  dout.download(bits.data(), dout.bytes());
  return bits;
}

std::vector<std::uint16_t> dequantize_rows(std::span<const std::byte> in, std::int64_t rows,
                                           std::int64_t head_dim, const QuantSpec& spec) {
  auto din = upload<std::byte>(in);
  auto dout = poisoned<__half>(static_cast<std::size_t>(rows * head_dim));
  cuda::dequantize_rows(din.get(), rows, head_dim, spec, dout.get(), nullptr);
  finish();
  std::vector<std::uint16_t> bits(dout.size());
  dout.download(bits.data(), dout.bytes());
  return bits;
}

std::vector<std::byte> quantize_rows(std::span<const float> x, std::int64_t rows,
                                     std::int64_t head_dim, const QuantSpec& spec) {
  const Bytes row_bytes = quantized_bytes(Shape{1, head_dim}, spec);
  auto dx = upload_half(x);
  auto dout = poisoned<std::byte>(static_cast<std::size_t>(rows * row_bytes));
  cuda::quantize_rows(dx.get(), rows, head_dim, spec, dout.get(), nullptr);
  finish();
  return download(dout);
}

}  // namespace flexgen::cuda::on_host
