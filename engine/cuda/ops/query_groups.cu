#include "engine/cuda/ops/query_groups.cuh"

#include "engine/cuda/cuda_check.cuh"

namespace flexgen::cuda {
namespace {

__global__ void sum_query_groups_kernel(const __half* __restrict__ q, std::int64_t n, int group, int head_dim,
                                        __half* __restrict__ out) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const std::int64_t u = i / head_dim, d = i - u * head_dim;
  float s = 0.0f;
  for (int g = 0; g < group; ++g) s += __half2float(q[(u * group + g) * head_dim + d]);
  out[i] = __float2half_rn(s);
}

}  // namespace

void sum_query_groups(const __half* q, std::int64_t units, int group, int head_dim, __half* out,
                      cudaStream_t stream) {
  const std::int64_t n = units * head_dim;
  if (n == 0) return;
  sum_query_groups_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(q, n, group, head_dim, out);
  FLEXGEN_CUDA_CHECK_LAUNCH("sum_query_groups_kernel", str_cat("units=", units, " group=", group));
}

}  // namespace flexgen::cuda
