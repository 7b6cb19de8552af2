#include "engine/cuda/ops/cache_rows.cuh"

#include <algorithm>

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/device_utils.cuh"

namespace flexgen::cuda {
namespace {

template <typename Word>
__global__ void gather_kept_rows_kernel(const Word* __restrict__ src, std::int64_t src_units,
                                        std::int64_t src_unit0, Word* __restrict__ dst,
                                        std::int64_t dst_units, std::int64_t dst_unit0, std::int64_t units,
                                        const std::int32_t* __restrict__ kept, std::int64_t kept_unit0, int k,
                                        std::int64_t row_words) {
  const std::int64_t warp = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (warp >= units * k) return;
  const std::int64_t i = warp / k;
  const std::int64_t p = kept[(kept_unit0 + i) * k + warp % k];
  const Word* s = src + (p * src_units + src_unit0 + i) * row_words;
  Word* d = dst + (p * dst_units + dst_unit0 + i) * row_words;
  for (std::int64_t w = lane; w < row_words; w += 32) d[w] = s[w];
}

template <typename Word>
__global__ void sm_copy_kernel(Word* __restrict__ dst, const Word* __restrict__ src, std::size_t words) {
  const std::size_t step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < words; i += step) dst[i] = src[i];
}

}  // namespace

void sm_copy(void* dst, const void* src, std::size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  constexpr int kThreads = 256;
  const bool wide = bytes % 16 == 0 && detail::aligned_to(dst, 16) && detail::aligned_to(src, 16);
  const std::size_t words = wide ? bytes / 16 : bytes;
  const auto blocks = static_cast<unsigned>(std::min<std::size_t>((words + kThreads - 1) / kThreads, 1024));
  if (wide) {
    sm_copy_kernel<uint4><<<blocks, kThreads, 0, stream>>>(static_cast<uint4*>(dst), static_cast<const uint4*>(src), words);
  } else {
    sm_copy_kernel<unsigned char><<<blocks, kThreads, 0, stream>>>(static_cast<unsigned char*>(dst),
                                                                   static_cast<const unsigned char*>(src), words);
  }
  FLEXGEN_CUDA_CHECK_LAUNCH("sm_copy_kernel", str_cat("bytes=", bytes, wide ? " 16-byte" : " 1-byte"));
}

void append_cache_rows(const std::byte* src, std::int64_t tokens, int num_heads, std::int64_t row_bytes,
                       std::byte* part, std::int64_t part_units, std::int64_t unit_begin,
                       std::int64_t unit_end, std::int64_t past, cudaStream_t stream) {
  if (unit_end <= unit_begin || tokens == 0) return;
  const auto R = static_cast<std::size_t>(row_bytes);
  std::byte* dst0 = part + static_cast<std::size_t>(past * part_units) * R;
  if (tokens == 1) {  // src is [units, row]: the part's units are one contiguous run
    FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(dst0, src + static_cast<std::size_t>(unit_begin) * R,
                                       static_cast<std::size_t>(unit_end - unit_begin) * R,
                                       cudaMemcpyDeviceToDevice, stream));
    return;
  }
  for (std::int64_t s = unit_begin / num_heads; s * num_heads < unit_end; ++s) {
    const std::int64_t u0 = std::max(unit_begin, s * num_heads);
    const std::int64_t u1 = std::min(unit_end, (s + 1) * num_heads);
    const std::byte* from = src + static_cast<std::size_t>(s * tokens * num_heads + (u0 - s * num_heads)) * R;
    FLEXGEN_CUDA_CHECK(cudaMemcpy2DAsync(dst0 + static_cast<std::size_t>(u0 - unit_begin) * R,
                                         static_cast<std::size_t>(part_units) * R, from,
                                         static_cast<std::size_t>(num_heads) * R,
                                         static_cast<std::size_t>(u1 - u0) * R, static_cast<std::size_t>(tokens),
                                         cudaMemcpyDeviceToDevice, stream));
  }
}

void gather_kept_rows(const std::byte* src, std::int64_t src_units, std::int64_t src_unit0, std::byte* dst,
                      std::int64_t dst_units, std::int64_t dst_unit0, std::int64_t units,
                      const std::int32_t* kept, std::int64_t kept_unit0, int k, std::int64_t row_bytes,
                      cudaStream_t stream) {
  if (units == 0 || k == 0) return;
  const std::int64_t warps = units * k;
  constexpr int kThreads = 256;
  const auto blocks = static_cast<unsigned>((warps * 32 + kThreads - 1) / kThreads);
  const bool words = row_bytes % 4 == 0 && detail::aligned_to(src, 4) && detail::aligned_to(dst, 4);
  if (words) {
    gather_kept_rows_kernel<std::uint32_t><<<blocks, kThreads, 0, stream>>>(
        reinterpret_cast<const std::uint32_t*>(src), src_units, src_unit0, reinterpret_cast<std::uint32_t*>(dst),
        dst_units, dst_unit0, units, kept, kept_unit0, k, row_bytes / 4);
  } else {
    gather_kept_rows_kernel<unsigned char><<<blocks, kThreads, 0, stream>>>(
        reinterpret_cast<const unsigned char*>(src), src_units, src_unit0, reinterpret_cast<unsigned char*>(dst),
        dst_units, dst_unit0, units, kept, kept_unit0, k, row_bytes);
  }
  FLEXGEN_CUDA_CHECK_LAUNCH("gather_kept_rows_kernel",
                            str_cat("units=", units, " k=", k, " row_bytes=", row_bytes, words ? " words" : " bytes"));
}

}  // namespace flexgen::cuda
