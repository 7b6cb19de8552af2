#include "engine/cuda/ops/swiglu.cuh"

#include <algorithm>

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/device_utils.cuh"

namespace flexgen::cuda {
namespace {

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

template <bool kVector>
__global__ void silu_mul_kernel(const __half* gate, const __half* up, std::int64_t n, __half* out) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if constexpr (kVector) {
    const uint4* g = reinterpret_cast<const uint4*>(gate);
    const uint4* u = reinterpret_cast<const uint4*>(up);
    uint4* o = reinterpret_cast<uint4*>(out);
    for (std::int64_t i = first; i < n / 8; i += stride) {
      float a[8], b[8];
      detail::half8_to_float(g[i], a);
      detail::half8_to_float(u[i], b);
#pragma unroll
      for (int j = 0; j < 8; ++j) a[j] = silu(a[j]) * b[j];
      o[i] = detail::float8_to_half(a);
    }
  } else {
    for (std::int64_t i = first; i < n; i += stride) {
      out[i] = __float2half_rn(silu(__half2float(gate[i])) * __half2float(up[i]));
    }
  }
}

}  // namespace

void silu_mul(const __half* gate, const __half* up, std::int64_t n, __half* out, cudaStream_t stream) {
  if (n == 0) return;
  const bool vector = n % 8 == 0 && detail::aligned_to(gate, 16) && detail::aligned_to(up, 16) &&
                      detail::aligned_to(out, 16);
  const std::int64_t items = vector ? n / 8 : n;
  const int threads = 256;
  const auto blocks = static_cast<unsigned>(std::clamp<std::int64_t>((items + threads - 1) / threads, 1, 65535));
  if (vector) {
    silu_mul_kernel<true><<<blocks, threads, 0, stream>>>(gate, up, n, out);
  } else {
    silu_mul_kernel<false><<<blocks, threads, 0, stream>>>(gate, up, n, out);
  }
  FLEXGEN_CUDA_CHECK_LAUNCH("silu_mul_kernel", str_cat("n=", n, vector ? " 16-byte" : " 2-byte"));
}

}  // namespace flexgen::cuda
