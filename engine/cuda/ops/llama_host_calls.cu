#include "engine/cuda/ops/llama_host_calls.h"

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/device_buffer.cuh"
#include "engine/cuda/ops/query_groups.cuh"
#include "engine/cuda/ops/rms_norm.cuh"
#include "engine/cuda/ops/rotary.cuh"
#include "engine/cuda/ops/swiglu.cuh"
#include "engine/cuda/ops/token_embedding.cuh"
#include "engine/tensor/tensor.h"

namespace flexgen::cuda::on_host {
namespace {

DeviceBuffer<__half> to_device(std::span<const float> x) {
  std::vector<std::uint16_t> bits(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) bits[i] = float_to_half(x[i]);
  DeviceBuffer<__half> d(x.size());
  d.upload(bits.data(), bits.size() * sizeof(std::uint16_t));
  return d;
}

DeviceBuffer<__half> poisoned_half(std::size_t count) {
  DeviceBuffer<__half> d(count);
  d.fill_bytes(0xff);
  return d;
}

std::vector<float> from_device(const DeviceBuffer<__half>& d) {
  FLEXGEN_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<std::uint16_t> bits(d.size());
  d.download(bits.data(), d.bytes());
  std::vector<float> out(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) out[i] = half_to_float(bits[i]);
  return out;
}

}  // namespace

std::vector<float> rms_norm(std::span<const float> x, std::span<const float> weight, std::int64_t rows,
                            std::int64_t cols, float eps) {
  auto dx = to_device(x);
  auto dw = to_device(weight);
  auto dy = poisoned_half(x.size());
  cuda::rms_norm(dx.get(), dw.get(), rows, cols, eps, dy.get(), nullptr);
  return from_device(dy);
}

std::vector<float> apply_rotary(std::span<const float> x, std::span<const std::int64_t> pad_len, std::int64_t tokens,
                                int heads, int head_dim, const std::vector<double>& inv_freq, std::int64_t past) {
  auto dx = to_device(x);
  std::vector<std::int32_t> pads(pad_len.begin(), pad_len.end());
  DeviceBuffer<std::int32_t> dpads(pads.size());
  dpads.upload(pads.data(), pads.size() * sizeof(std::int32_t));
  cuda::apply_rotary(dx.get(), static_cast<std::int64_t>(pad_len.size()), tokens, heads, head_dim,
                     make_rope_table(inv_freq), dpads.get(), past, nullptr);
  return from_device(dx);
}

std::vector<float> silu_mul(std::span<const float> gate, std::span<const float> up) {
  auto dg = to_device(gate);
  auto du = to_device(up);
  auto dout = poisoned_half(gate.size());
  cuda::silu_mul(dg.get(), du.get(), static_cast<std::int64_t>(gate.size()), dout.get(), nullptr);
  return from_device(dout);
}

std::vector<float> token_embedding(std::span<const std::int32_t> ids, std::span<const float> table,
                                   std::int64_t vocab, std::int64_t hidden) {
  DeviceBuffer<std::int32_t> dids(ids.size());
  dids.upload(ids.data(), ids.size() * sizeof(std::int32_t));
  auto dt = to_device(table);
  auto dout = poisoned_half(ids.size() * static_cast<std::size_t>(hidden));
  cuda::token_embedding(dids.get(), static_cast<std::int64_t>(ids.size()), dt.get(), vocab, hidden, dout.get(),
                        nullptr);
  return from_device(dout);
}

std::vector<float> sum_query_groups(std::span<const float> q, std::int64_t units, int group, int head_dim) {
  auto dq = to_device(q);
  auto dout = poisoned_half(static_cast<std::size_t>(units * head_dim));
  cuda::sum_query_groups(dq.get(), units, group, head_dim, dout.get(), nullptr);
  return from_device(dout);
}

}  // namespace flexgen::cuda::on_host
