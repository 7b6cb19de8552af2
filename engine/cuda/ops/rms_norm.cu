#include "engine/cuda/ops/rms_norm.cuh"

#include <algorithm>

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/device_utils.cuh"

namespace flexgen::cuda {
namespace {

// One block per row; each thread touches the same elements in both passes, so x may alias y.
template <bool kVector>
__global__ void rms_norm_kernel(const __half* x, const __half* __restrict__ weight, std::int64_t cols, float eps,
                                __half* y) {
  __shared__ float scratch[32];
  const std::int64_t row = blockIdx.x;
  const __half* xr = x + row * cols;
  __half* yr = y + row * cols;
  float sq = 0.0f;
  if constexpr (kVector) {
    const uint4* xv = reinterpret_cast<const uint4*>(xr);
    for (std::int64_t i = threadIdx.x; i < cols / 8; i += blockDim.x) {
      float f[8];
      detail::half8_to_float(xv[i], f);
#pragma unroll
      for (int j = 0; j < 8; ++j) sq = fmaf(f[j], f[j], sq);
    }
  } else {
    for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float v = __half2float(xr[c]);
      sq = fmaf(v, v, sq);
    }
  }
  const float inv_rms = rsqrtf(detail::block_sum(sq, scratch) / static_cast<float>(cols) + eps);
  if constexpr (kVector) {
    const uint4* xv = reinterpret_cast<const uint4*>(xr);
    const uint4* wv = reinterpret_cast<const uint4*>(weight);
    uint4* yv = reinterpret_cast<uint4*>(yr);
    for (std::int64_t i = threadIdx.x; i < cols / 8; i += blockDim.x) {
      float f[8], w[8], out[8];
      detail::half8_to_float(xv[i], f);
      detail::half8_to_float(wv[i], w);
#pragma unroll
      for (int j = 0; j < 8; ++j) out[j] = f[j] * inv_rms * w[j];
      yv[i] = detail::float8_to_half(out);
    }
  } else {
    for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      yr[c] = __float2half_rn(__half2float(xr[c]) * inv_rms * __half2float(weight[c]));
    }
  }
}

}  // namespace

void rms_norm(const __half* x, const __half* weight, std::int64_t rows, std::int64_t cols, float eps, __half* y,
              cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const bool vector = cols % 8 == 0 && detail::aligned_to(x, 16) && detail::aligned_to(y, 16) &&
                      detail::aligned_to(weight, 16);
  const std::int64_t items = vector ? cols / 8 : cols;
  const int threads = static_cast<int>(std::clamp<std::int64_t>((items + 31) / 32 * 32, 32, 256));
  const dim3 grid(static_cast<unsigned>(rows));
  if (vector) {
    rms_norm_kernel<true><<<grid, threads, 0, stream>>>(x, weight, cols, eps, y);
  } else {
    rms_norm_kernel<false><<<grid, threads, 0, stream>>>(x, weight, cols, eps, y);
  }
  FLEXGEN_CUDA_CHECK_LAUNCH("rms_norm_kernel", str_cat("rows=", rows, " cols=", cols, " threads=", threads,
                                                       vector ? " 16-byte" : " 2-byte"));
}

}  // namespace flexgen::cuda
