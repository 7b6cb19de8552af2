#include "engine/cuda/ops/linear.cuh"

#include <algorithm>
#include <cassert>
#include <limits>

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/device_utils.cuh"

namespace flexgen::cuda {
namespace {

// Grid-stride over elements (kVector: over 8-element chunks; out % 8 == 0 so a chunk never
// crosses a row).
template <bool kVector>
__global__ void bias_act_residual_kernel(__half* __restrict__ y, std::int64_t total,
                                         std::int64_t out_features, const __half* __restrict__ bias,
                                         float scale, bool relu,
                                         const __half* __restrict__ residual) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if constexpr (kVector) {
    uint4* yv = reinterpret_cast<uint4*>(y);
    for (; i < total / 8; i += step) {
      float v[8];
      detail::half8_to_float(yv[i], v);
      if (bias != nullptr) {
        float b[8];
        detail::half8_to_float(reinterpret_cast<const uint4*>(bias)[(i * 8) % out_features / 8], b);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] += b[j];
      }
      if (scale != 1.0f) {
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] *= scale;
      }
      if (relu) {
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = fmaxf(v[j], 0.0f);
      }
      if (residual != nullptr) {
        float r[8];
        detail::half8_to_float(reinterpret_cast<const uint4*>(residual)[i], r);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] += r[j];
      }
      yv[i] = detail::float8_to_half(v);
    }
  } else {
    for (; i < total; i += step) {
      float v = __half2float(y[i]);
      if (bias != nullptr) v += __half2float(bias[i % out_features]);
      if (scale != 1.0f) v *= scale;
      if (relu) v = fmaxf(v, 0.0f);
      if (residual != nullptr) v += __half2float(residual[i]);
      y[i] = __float2half_rn(v);
    }
  }
}

}  // namespace

void bias_act_residual(__half* y, std::int64_t rows, std::int64_t out_features,
                       const __half* bias, const LinearEpilogue& epilogue, cudaStream_t stream) {
  const std::int64_t total = rows * out_features;
  if (total == 0 || (bias == nullptr && epilogue.scale == 1.0f && !epilogue.relu &&
                         epilogue.residual == nullptr)) return;
  const bool vector = out_features % 8 == 0 && detail::aligned_to(y, 16) &&
                      (bias == nullptr || detail::aligned_to(bias, 16)) &&
                      (epilogue.residual == nullptr || detail::aligned_to(epilogue.residual, 16));
  const std::int64_t items = vector ? total / 8 : total;
  constexpr int kThreads = 256;
  const auto blocks = static_cast<unsigned>(
      std::min<std::int64_t>((items + kThreads - 1) / kThreads, std::int64_t{1} << 20));
  if (vector) {
    bias_act_residual_kernel<true><<<blocks, kThreads, 0, stream>>>(
        y, total, out_features, bias, epilogue.scale, epilogue.relu, epilogue.residual);
  } else {
    bias_act_residual_kernel<false><<<blocks, kThreads, 0, stream>>>(
        y, total, out_features, bias, epilogue.scale, epilogue.relu, epilogue.residual);
  }
  FLEXGEN_CUDA_CHECK_LAUNCH("bias_act_residual_kernel",
                            str_cat("rows=", rows, " out=", out_features,
                                    bias != nullptr ? " bias" : "",
                                    epilogue.scale != 1.0f ? " scale" : "", epilogue.relu ? " relu" : "",
                                    epilogue.residual != nullptr ? " residual" : "",
                                    vector ? " 16-byte" : " 2-byte"));
}

void linear(cublasHandle_t handle, const __half* x, std::int64_t rows, std::int64_t in_features,
            const __half* weight, const __half* bias, std::int64_t out_features, __half* y,
            const LinearEpilogue& epilogue, cudaStream_t stream) {
  [[maybe_unused]] constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
  assert(rows >= 0 && in_features >= 1 && out_features >= 0);
  assert(rows <= kIntMax && in_features <= kIntMax && out_features <= kIntMax);
  if (rows == 0 || out_features == 0) return;
  const float alpha = 1.0f;
  const float beta = 0.0f;
  const int m = static_cast<int>(out_features);
  const int n = static_cast<int>(rows);
  const int k = static_cast<int>(in_features);
  FLEXGEN_CUBLAS_CHECK(cublasSetStream(handle, stream));
  FLEXGEN_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, weight,
                                    CUDA_R_16F, k, x, CUDA_R_16F, k, &beta, y, CUDA_R_16F, m,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  bias_act_residual(y, rows, out_features, bias, epilogue, stream);
}

}  // namespace flexgen::cuda
