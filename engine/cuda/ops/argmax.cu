#include "engine/cuda/ops/argmax.cuh"

#include "engine/cuda/cuda_check.cuh"

namespace flexgen::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ bool better(float v, std::int64_t i, float bv, std::int64_t bi) {
  return v > bv || (v == bv && i < bi);
}

__global__ void argmax_rows_kernel(const __half* __restrict__ x, std::int64_t cols, std::int32_t* out) {
  __shared__ float vals[kThreads];
  __shared__ std::int64_t idxs[kThreads];
  __shared__ int nan_seen;
  if (threadIdx.x == 0) nan_seen = 0;
  __syncthreads();
  const __half* row = x + static_cast<std::int64_t>(blockIdx.x) * cols;
  float best = -INFINITY;
  std::int64_t best_i = cols;
  for (std::int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float v = __half2float(row[c]);
    if (isnan(v)) nan_seen = 1;
    if (better(v, c, best, best_i)) {
      best = v;
      best_i = c;
    }
  }
  vals[threadIdx.x] = best;
  idxs[threadIdx.x] = best_i;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s && better(vals[threadIdx.x + s], idxs[threadIdx.x + s], vals[threadIdx.x], idxs[threadIdx.x])) {
      vals[threadIdx.x] = vals[threadIdx.x + s];
      idxs[threadIdx.x] = idxs[threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = nan_seen ? -1 : static_cast<std::int32_t>(idxs[0]);
}

}  // namespace

void argmax_rows(const __half* x, std::int64_t rows, std::int64_t cols, std::int32_t* out, cudaStream_t stream) {
  if (rows == 0) return;
  argmax_rows_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, cols, out);
  FLEXGEN_CUDA_CHECK_LAUNCH("argmax_rows_kernel", str_cat("rows=", rows, " cols=", cols));
}

}  // namespace flexgen::cuda
