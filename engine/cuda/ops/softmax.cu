#include "engine/cuda/ops/softmax.cuh"

#include <algorithm>

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/device_utils.cuh"

namespace flexgen::cuda {
namespace {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }

template <typename T>
__global__ void softmax_kernel(T* x, std::int64_t cols) {
  __shared__ float scratch[32];
  T* row = x + static_cast<std::int64_t>(blockIdx.x) * cols;
  float mx = -INFINITY;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) mx = fmaxf(mx, to_float(row[c]));
  mx = detail::block_max(mx, scratch);
  float sum = 0.0f;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += expf(to_float(row[c]) - mx);
  sum = detail::block_sum(sum, scratch);
  const float inv = 1.0f / sum;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    store(row + c, expf(to_float(row[c]) - mx) * inv);
}

template <typename T>
void launch_softmax(T* x, std::int64_t rows, std::int64_t cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const int threads = static_cast<int>(std::clamp<std::int64_t>((cols + 31) / 32 * 32, 32, 256));
  softmax_kernel<T><<<static_cast<unsigned>(rows), threads, 0, stream>>>(x, cols);
  FLEXGEN_CUDA_CHECK_LAUNCH("softmax_kernel",
                            str_cat("rows=", rows, " cols=", cols, " threads=", threads,
                                    sizeof(T) == 4 ? " f32" : " f16"));
}

}  // namespace

void softmax(float* x, std::int64_t rows, std::int64_t cols, cudaStream_t stream) {
  launch_softmax(x, rows, cols, stream);
}

void softmax(__half* x, std::int64_t rows, std::int64_t cols, cudaStream_t stream) {
  launch_softmax(x, rows, cols, stream);
}

}  // namespace flexgen::cuda
