#include "engine/cuda/ops/prefill_attention_gemm.cuh"

#include <algorithm>
#include <limits>

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/device_utils.cuh"

namespace flexgen::cuda {
namespace {


// One warp per score row (unit, query): an online max and sum over the kept keys in one pass,
// then the probabilities written over the whole row (0 where masked). Pairs of fp16 values per lane
// when the row length is even.
constexpr int kSoftmaxWarps = 8;

__device__ __forceinline__ void online_add(float v, float& m, float& s) {
  if (v > m) {
    s = s * __expf(m - v) + 1.0f;
    m = v;
  } else {
    s += __expf(v - m);
  }
}

template <bool kPairs>
__global__ void masked_causal_softmax_kernel(__half* scores, std::int64_t rows, std::int64_t unit_begin, int num_heads,
                                             const std::int32_t* __restrict__ pad_len, std::int64_t tokens,
                                             std::int64_t past) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kSoftmaxWarps + threadIdx.x / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (row >= rows) return;
  const std::int64_t u = row / tokens;
  const std::int64_t t = row % tokens;
  const std::int64_t cols = past + tokens;
  const std::int64_t pos = past + t;
  const std::int64_t pad = pad_len[(unit_begin + u) / num_heads];
  const std::int64_t lo = pos < pad ? pos : pad;  // kept keys: [lo, pos] (only pos for a padding query)
  __half* r = scores + row * cols;
  float m = -INFINITY, s = 0.0f;
  if constexpr (kPairs) {
    const __half2* r2 = reinterpret_cast<const __half2*>(r);
    for (std::int64_t c2 = lo / 2 + lane; 2 * c2 <= pos; c2 += 32) {
      const float2 v = __half22float2(r2[c2]);
      if (2 * c2 >= lo) online_add(v.x, m, s);
      if (2 * c2 + 1 <= pos && 2 * c2 + 1 >= lo) online_add(v.y, m, s);
    }
  } else {
    for (std::int64_t c = lo + lane; c <= pos; c += 32) online_add(__half2float(r[c]), m, s);
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    const float om = __shfl_xor_sync(detail::kFullMask, m, offset);
    const float os = __shfl_xor_sync(detail::kFullMask, s, offset);
    const float nm = fmaxf(m, om);
    s = (m == -INFINITY ? 0.0f : s * __expf(m - nm)) + (om == -INFINITY ? 0.0f : os * __expf(om - nm));
    m = nm;
  }
  const float inv = 1.0f / s;
  auto prob = [&](std::int64_t c, float v) {
    const bool keep = c == pos || (pos >= pad && c >= pad && c <= pos);
    return keep ? __expf(v - m) * inv : 0.0f;
  };
  if constexpr (kPairs) {
    __half2* r2 = reinterpret_cast<__half2*>(r);
    for (std::int64_t c2 = lane; 2 * c2 < cols; c2 += 32) {
      const float2 v = __half22float2(r2[c2]);
      r2[c2] = __floats2half2_rn(prob(2 * c2, v.x), prob(2 * c2 + 1, v.y));
    }
  } else {
    for (std::int64_t c = lane; c < cols; c += 32) r[c] = __float2half_rn(prob(c, __half2float(r[c])));
  }
}

// Pointers of the two GEMMs for (query) units [begin, begin + n) of one part and the query block of
// `block_tokens` queries from query q0 (scores [n, block_tokens, cols]); query unit u reads the rows
// of key/value unit u / group (grouped-query attention; group 1 otherwise).
__global__ void gemm_pointers_kernel(KvPart part, std::int64_t begin, std::int64_t n, const __half* q,
                                     __half* out, __half* scores, int num_heads, int head_dim,
                                     std::int64_t tokens, std::int64_t q0, std::int64_t block_tokens,
                                     std::int64_t cols, int group, const void** ptrs) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const std::int64_t u = begin + i;
  const std::int64_t s = u / num_heads;
  const std::int64_t head = u % num_heads;
  const std::int64_t hidden = static_cast<std::int64_t>(num_heads) * head_dim;
  const std::int64_t q_off = (s * tokens + q0) * hidden + head * head_dim;
  const std::int64_t kv_off = (u / group - part.unit_begin) * head_dim;
  __half* score = scores + i * block_tokens * cols;
  ptrs[0 * n + i] = part.keys + kv_off;    // GEMM 1: A = K
  ptrs[1 * n + i] = q + q_off;             //         B = Q
  ptrs[2 * n + i] = score;                 //         C = S
  ptrs[3 * n + i] = part.values + kv_off;  // GEMM 2: A = V
  ptrs[4 * n + i] = score;                 //         B = P
  ptrs[5 * n + i] = out + q_off;           //         C = O
}

}  // namespace

void masked_causal_softmax(__half* scores, std::int64_t units, std::int64_t unit_begin, int num_heads,
                           const std::int32_t* pad_len, std::int64_t tokens, std::int64_t past,
                           cudaStream_t stream) {
  const std::int64_t rows = units * tokens;
  if (rows == 0) return;
  const auto blocks = static_cast<unsigned>((rows + kSoftmaxWarps - 1) / kSoftmaxWarps);
  const bool pairs = (past + tokens) % 2 == 0 && detail::aligned_to(scores, 4);
  if (pairs) {
    masked_causal_softmax_kernel<true><<<blocks, kSoftmaxWarps * 32, 0, stream>>>(scores, rows, unit_begin, num_heads,
                                                                                 pad_len, tokens, past);
  } else {
    masked_causal_softmax_kernel<false><<<blocks, kSoftmaxWarps * 32, 0, stream>>>(scores, rows, unit_begin, num_heads,
                                                                                  pad_len, tokens, past);
  }
  FLEXGEN_CUDA_CHECK_LAUNCH("masked_causal_softmax_kernel",
                            str_cat("units=", units, " tokens=", tokens, " past=", past, pairs ? " pairs" : ""));
}

void prefill_attention_gemm(cublasHandle_t handle, const __half* q, const KvView& kv,
                            const std::int32_t* pad_len, std::int64_t batch, int num_heads,
                            int head_dim, std::int64_t tokens, std::int64_t past, __half* out,
                            void* workspace, std::size_t workspace_bytes, cudaStream_t stream) {
  if (batch == 0 || tokens == 0) return;
  const std::int64_t cols = past + tokens;
  const std::size_t per_unit = prefill_attention_gemm_workspace_bytes(1, tokens, past);
  std::int64_t chunk = static_cast<std::int64_t>(workspace_bytes / per_unit);
  FLEXGEN_REQUIRE(chunk >= 1, "prefill attention: a workspace of ", workspace_bytes,
                  " bytes does not hold one unit's scores (", per_unit, " bytes)");
  FLEXGEN_REQUIRE(cols <= std::numeric_limits<int>::max() / std::max<std::int64_t>(tokens, 1),
                  "prefill attention: ", tokens, " x ", cols, " scores overflow cuBLAS's int sizes");
  // Keep the chunk modest so the score buffer stays in L2-friendly sizes and the pointer arrays small.
  chunk = std::min<std::int64_t>(chunk, batch * num_heads);
  FLEXGEN_CUBLAS_CHECK(cublasSetStream(handle, stream));
  const float one = 1.0f, zero = 0.0f;
  auto* bytes = static_cast<unsigned char*>(workspace);
  for (int pi = 0; pi < kv.num_parts; ++pi) {
    const KvPart& part = kv.parts[pi];
    // The part's query units: group per key/value unit.
    const std::int64_t group = kv.group, first = part.unit_begin * group, last = part.unit_end * group;
    for (std::int64_t begin = first; begin < last; begin += chunk) {
      const std::int64_t n = std::min(chunk, last - begin);
      auto* scores = reinterpret_cast<__half*>(bytes);
      const std::size_t score_bytes = (static_cast<std::size_t>(n * tokens * cols) * sizeof(__half) + 255) / 256 * 256;
      auto* ptrs = reinterpret_cast<const void**>(bytes + score_bytes);
      const int ld_kv = static_cast<int>(part.position_stride);
      const int ld_q = num_heads * head_dim;
      // Causal: the queries of block [q0, q0 + bt) see keys [0, past + q0 + bt) only, so each
      // block's scores are [bt, past + q0 + bt]; the blocks' scores fit the buffer of the whole.
      for (std::int64_t q0 = 0; q0 < tokens; q0 += kPrefillQueryBlock) {
        const std::int64_t bt = std::min<std::int64_t>(kPrefillQueryBlock, tokens - q0);
        const std::int64_t bcols = past + q0 + bt;
        gemm_pointers_kernel<<<static_cast<unsigned>((n + 127) / 128), 128, 0, stream>>>(
            part, begin, n, q, out, scores, num_heads, head_dim, tokens, q0, bt, bcols, kv.group, ptrs);
        FLEXGEN_CUDA_CHECK_LAUNCH("gemm_pointers_kernel", str_cat("units=", n, " q0=", q0));
        // S^T (bcols x bt, column-major) = K^T-op(K) * Q: scores row-major [bt, bcols].
        FLEXGEN_CUBLAS_CHECK(cublasGemmBatchedEx(
            handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(bcols), static_cast<int>(bt), head_dim, &one,
            ptrs + 0 * n, CUDA_R_16F, ld_kv, ptrs + 1 * n, CUDA_R_16F, ld_q, &zero, const_cast<void**>(ptrs + 2 * n),
            CUDA_R_16F, static_cast<int>(bcols), static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        masked_causal_softmax(scores, n, begin, num_heads, pad_len, bt, past + q0, stream);
        // O^T (head_dim x bt) = V^T-layout * P^T: out row-major [bt, head_dim] with ld hidden.
        FLEXGEN_CUBLAS_CHECK(cublasGemmBatchedEx(
            handle, CUBLAS_OP_N, CUBLAS_OP_N, head_dim, static_cast<int>(bt), static_cast<int>(bcols), &one,
            ptrs + 3 * n, CUDA_R_16F, ld_kv, ptrs + 4 * n, CUDA_R_16F, static_cast<int>(bcols), &zero,
            const_cast<void**>(ptrs + 5 * n), CUDA_R_16F, ld_q, static_cast<int>(n), CUBLAS_COMPUTE_32F,
            CUBLAS_GEMM_DEFAULT));
      }
    }
  }
}

}  // namespace flexgen::cuda
