#include "engine/cuda/ops/embedding.cuh"

#include <algorithm>

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/device_utils.cuh"

namespace flexgen::cuda {
namespace {

template <bool kVector>
__global__ void embedding_kernel(const std::int32_t* __restrict__ ids,
                                 const std::int32_t* __restrict__ pad_len, std::int64_t tokens,
                                 std::int64_t past, const __half* __restrict__ token_table,
                                 std::int64_t vocab, const __half* __restrict__ position_table,
                                 std::int64_t position_rows, std::int64_t hidden,
                                 __half* __restrict__ out) {
  const std::int64_t r = blockIdx.x;
  const std::int64_t b = r / tokens;
  const std::int64_t pos = past + (r - b * tokens);
  const std::int64_t pad = pad_len[b];
  const std::int64_t prow = pos < pad ? 1 : pos - pad + 2;
  const std::int64_t id = ids[r];
  const bool ok = id >= 0 && id < vocab && prow < position_rows;
  __half* o = out + r * hidden;
  if (!ok) {
    for (std::int64_t c = threadIdx.x; c < hidden; c += blockDim.x) o[c] = detail::half_nan();
    return;
  }
  const __half* tok = token_table + id * hidden;
  const __half* pr = position_table + prow * hidden;
  if constexpr (kVector) {
    const uint4* tv = reinterpret_cast<const uint4*>(tok);
    const uint4* pv = reinterpret_cast<const uint4*>(pr);
    uint4* ov = reinterpret_cast<uint4*>(o);
    for (std::int64_t i = threadIdx.x; i < hidden / 8; i += blockDim.x) {
      float a[8], p[8];
      detail::half8_to_float(tv[i], a);
      detail::half8_to_float(pv[i], p);
#pragma unroll
      for (int j = 0; j < 8; ++j) a[j] += p[j];
      ov[i] = detail::float8_to_half(a);
    }
  } else {
    for (std::int64_t c = threadIdx.x; c < hidden; c += blockDim.x)
      o[c] = __float2half_rn(__half2float(tok[c]) + __half2float(pr[c]));
  }
}

}  // namespace

void embedding(const std::int32_t* ids, const std::int32_t* pad_len, std::int64_t batch,
               std::int64_t tokens, std::int64_t past, const __half* token_table,
               std::int64_t vocab, const __half* position_table, std::int64_t position_rows,
               std::int64_t hidden, __half* out, cudaStream_t stream) {
  const std::int64_t rows = batch * tokens;
  if (rows == 0 || hidden == 0) return;
  const bool vector = hidden % 8 == 0 && detail::aligned_to(token_table, 16) &&
                      detail::aligned_to(position_table, 16) && detail::aligned_to(out, 16);
  const std::int64_t items = vector ? hidden / 8 : hidden;
  const int threads = static_cast<int>(std::clamp<std::int64_t>((items + 31) / 32 * 32, 32, 256));
  const dim3 grid(static_cast<unsigned>(rows));
  if (vector) {
    embedding_kernel<true><<<grid, threads, 0, stream>>>(ids, pad_len, tokens, past, token_table,
                                                         vocab, position_table, position_rows,
                                                         hidden, out);
  } else {
    embedding_kernel<false><<<grid, threads, 0, stream>>>(ids, pad_len, tokens, past, token_table,
                                                          vocab, position_table, position_rows,
                                                          hidden, out);
  }
  FLEXGEN_CUDA_CHECK_LAUNCH("embedding_kernel",
                            str_cat("batch=", batch, " tokens=", tokens, " hidden=", hidden,
                                    vector ? " 16-byte" : " 2-byte"));
}

}  // namespace flexgen::cuda
