#include "engine/cuda/ops/layer_norm.cuh"

#include <algorithm>

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/device_utils.cuh"

namespace flexgen::cuda {
namespace {

using detail::block_sum;

// One block per row; three passes over the row (sum, squared deviations, output), the second and
// third served from L1/L2. Each thread touches the same elements in every pass, so x may alias y.
template <bool kVector>
__global__ void layer_norm_kernel(const __half* x, const __half* __restrict__ gamma,
                                  const __half* __restrict__ beta, std::int64_t cols, float eps,
                                  __half* y) {
  __shared__ float scratch[32];
  const std::int64_t row = blockIdx.x;
  const __half* xr = x + row * cols;
  __half* yr = y + row * cols;
  const float inv_cols = 1.0f / static_cast<float>(cols);

  float sum = 0.0f;
  if constexpr (kVector) {
    const std::int64_t chunks = cols / 8;
    const uint4* xv = reinterpret_cast<const uint4*>(xr);
    for (std::int64_t i = threadIdx.x; i < chunks; i += blockDim.x) {
      float f[8];
      detail::half8_to_float(xv[i], f);
#pragma unroll
      for (int j = 0; j < 8; ++j) sum += f[j];
    }
  } else {
    for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += __half2float(xr[c]);
  }
  const float mean = block_sum(sum, scratch) * inv_cols;

  float sq = 0.0f;
  if constexpr (kVector) {
    const std::int64_t chunks = cols / 8;
    const uint4* xv = reinterpret_cast<const uint4*>(xr);
    for (std::int64_t i = threadIdx.x; i < chunks; i += blockDim.x) {
      float f[8];
      detail::half8_to_float(xv[i], f);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float d = f[j] - mean;
        sq += d * d;
      }
    }
  } else {
    for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float d = __half2float(xr[c]) - mean;
      sq += d * d;
    }
  }
  const float var = block_sum(sq, scratch) * inv_cols;
  const float inv_std = 1.0f / sqrtf(var + eps);

  if constexpr (kVector) {
    const std::int64_t chunks = cols / 8;
    const uint4* xv = reinterpret_cast<const uint4*>(xr);
    const uint4* gv = reinterpret_cast<const uint4*>(gamma);
    const uint4* bv = reinterpret_cast<const uint4*>(beta);
    uint4* yv = reinterpret_cast<uint4*>(yr);
    for (std::int64_t i = threadIdx.x; i < chunks; i += blockDim.x) {
      float f[8], g[8], b[8], out[8];
      detail::half8_to_float(xv[i], f);
      detail::half8_to_float(gv[i], g);
      detail::half8_to_float(bv[i], b);
#pragma unroll
      for (int j = 0; j < 8; ++j) out[j] = (f[j] - mean) * inv_std * g[j] + b[j];
      yv[i] = detail::float8_to_half(out);
    }
  } else {
    for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float v = (__half2float(xr[c]) - mean) * inv_std * __half2float(gamma[c]) +
                      __half2float(beta[c]);
      yr[c] = __float2half_rn(v);
    }
  }
}

}  // namespace

void layer_norm(const __half* x, const __half* gamma, const __half* beta, std::int64_t rows,
                std::int64_t cols, float eps, __half* y, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const bool vector = cols % 8 == 0 && detail::aligned_to(x, 16) && detail::aligned_to(y, 16) &&
                      detail::aligned_to(gamma, 16) && detail::aligned_to(beta, 16);
  const std::int64_t items = vector ? cols / 8 : cols;
  const int threads = static_cast<int>(std::clamp<std::int64_t>((items + 31) / 32 * 32, 32, 256));
  const dim3 grid(static_cast<unsigned>(rows));
  if (vector) {
    layer_norm_kernel<true><<<grid, threads, 0, stream>>>(x, gamma, beta, cols, eps, y);
  } else {
    layer_norm_kernel<false><<<grid, threads, 0, stream>>>(x, gamma, beta, cols, eps, y);
  }
  FLEXGEN_CUDA_CHECK_LAUNCH("layer_norm_kernel",
                            str_cat("rows=", rows, " cols=", cols, " threads=", threads,
                                    vector ? " 16-byte" : " 2-byte"));
}

}  // namespace flexgen::cuda
