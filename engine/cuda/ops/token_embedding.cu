#include "engine/cuda/ops/token_embedding.cuh"

#include <algorithm>

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/device_utils.cuh"

namespace flexgen::cuda {
namespace {

template <bool kVector>
__global__ void token_embedding_kernel(const std::int32_t* __restrict__ ids, const __half* __restrict__ table,
                                       std::int64_t vocab, std::int64_t hidden, __half* __restrict__ out) {
  const std::int64_t r = blockIdx.x;
  const std::int64_t id = ids[r];
  __half* o = out + r * hidden;
  if (id < 0 || id >= vocab) {
    for (std::int64_t c = threadIdx.x; c < hidden; c += blockDim.x) o[c] = detail::half_nan();
    return;
  }
  const __half* t = table + id * hidden;
  if constexpr (kVector) {
    const uint4* tv = reinterpret_cast<const uint4*>(t);
    uint4* ov = reinterpret_cast<uint4*>(o);
    for (std::int64_t i = threadIdx.x; i < hidden / 8; i += blockDim.x) ov[i] = tv[i];
  } else {
    for (std::int64_t c = threadIdx.x; c < hidden; c += blockDim.x) o[c] = t[c];
  }
}

}  // namespace

void token_embedding(const std::int32_t* ids, std::int64_t rows, const __half* table, std::int64_t vocab,
                     std::int64_t hidden, __half* out, cudaStream_t stream) {
  if (rows == 0 || hidden == 0) return;
  const bool vector = hidden % 8 == 0 && detail::aligned_to(table, 16) && detail::aligned_to(out, 16);
  const std::int64_t items = vector ? hidden / 8 : hidden;
  const int threads = static_cast<int>(std::clamp<std::int64_t>((items + 31) / 32 * 32, 32, 256));
  if (vector) {
    token_embedding_kernel<true><<<static_cast<unsigned>(rows), threads, 0, stream>>>(ids, table, vocab, hidden, out);
  } else {
    token_embedding_kernel<false><<<static_cast<unsigned>(rows), threads, 0, stream>>>(ids, table, vocab, hidden, out);
  }
  FLEXGEN_CUDA_CHECK_LAUNCH("token_embedding_kernel",
                            str_cat("rows=", rows, " hidden=", hidden, vector ? " 16-byte" : " 2-byte"));
}

}  // namespace flexgen::cuda
