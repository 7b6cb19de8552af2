#include "engine/cuda/ops/prefill_attention.cuh"

#include <algorithm>
#include <cassert>

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/device_utils.cuh"
#include "engine/cuda/ops/kv_rows.cuh"

namespace flexgen::cuda {
namespace {

constexpr int kQueriesPerBlock = 32;
constexpr int kThreadsPerQuery = 4;
constexpr int kPrefillThreads = kQueriesPerBlock * kThreadsPerQuery;  // 128
constexpr int kKeyTile = 32;
constexpr int kKeyChunk = 16;

// Rows first .. first + rows - 1 of one unit into a [kKeyTile][kMaxD] fp32 tile; rows past `rows`
// and dimensions past head_dim are zero.
template <int kMaxD>
__device__ __forceinline__ void load_tile(float4 (*tile)[kMaxD / 4], const __half* base,
                                          std::int64_t stride, std::int64_t first, int rows,
                                          int head_dim, bool vector) {
  constexpr int kChunksPerRow = kMaxD / 8;
  for (int idx = threadIdx.x; idx < kKeyTile * kChunksPerRow; idx += blockDim.x) {
    const int r = idx / kChunksPerRow;
    const int ch = idx % kChunksPerRow;
    const int d0 = ch * 8;
    float f[8];
    const __half* row = base + (first + r) * stride;
    if (vector) {
      detail::load_row8<true>(row, d0, head_dim, r < rows, f);
    } else {
      detail::load_row8<false>(row, d0, head_dim, r < rows, f);
    }
    tile[r][2 * ch] = make_float4(f[0], f[1], f[2], f[3]);
    tile[r][2 * ch + 1] = make_float4(f[4], f[5], f[6], f[7]);
  }
}

__device__ __forceinline__ float dot4(const float4& a, const float4& b, float acc) {
  acc = fmaf(a.x, b.x, acc);
  acc = fmaf(a.y, b.y, acc);
  acc = fmaf(a.z, b.z, acc);
  return fmaf(a.w, b.w, acc);
}

__device__ __forceinline__ float component(const float4& v, int e) {
  return e == 0 ? v.x : e == 1 ? v.y : e == 2 ? v.z : v.w;
}

// Thread c of a query owns the float4 columns c, c + 4, c + 8, ... of a row (dimensions
// 4 * (c + 4 j) .. + 3), so the four threads of a query read 64 consecutive bytes of a tile row
// per step and the eight queries of a warp read the same ones (broadcast, no bank conflicts).
template <int kMaxD>
__global__ void __launch_bounds__(kPrefillThreads)
    prefill_attention_kernel(const __half* __restrict__ q, const KvView view,
                             const std::int32_t* __restrict__ pad_len, int num_heads, int head_dim,
                             std::int64_t tokens, std::int64_t past, bool vector,
                             __half* __restrict__ out) {
  constexpr int kVecs = kMaxD / 4;
  constexpr int kOwn = kVecs / kThreadsPerQuery;
  __shared__ float4 k_tile[kKeyTile][kVecs];
  __shared__ float4 v_tile[kKeyTile][kVecs];

  const std::int64_t unit = blockIdx.x;
  const detail::UnitRows rows = detail::find_unit_rows(view, unit, head_dim);
  if (!rows.found) return;  // uniform over the block
  const std::int64_t seq = unit / num_heads;
  const std::int64_t head = unit - seq * num_heads;
  const std::int64_t pad = pad_len[seq];
  const int qi = threadIdx.x / kThreadsPerQuery;
  const int c = threadIdx.x % kThreadsPerQuery;
  const std::int64_t t0 = static_cast<std::int64_t>(blockIdx.y) * kQueriesPerBlock;
  const std::int64_t t = t0 + qi;
  const bool valid = t < tokens;
  const std::int64_t p = past + t;
  const bool real = valid && p >= pad;
  const std::int64_t row_offset = ((seq * tokens + t) * num_heads + head) * head_dim;

  float4 qv[kOwn];
  float4 acc[kOwn];
#pragma unroll
  for (int j = 0; j < kOwn; ++j) {
    const int d = 4 * (c + kThreadsPerQuery * j);
    float f[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) f[e] = real && d + e < head_dim ? __half2float(q[row_offset + d + e]) : 0.0f;
    qv[j] = make_float4(f[0], f[1], f[2], f[3]);
    acc[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
  float m = -INFINITY;
  float l = 0.0f;

  const std::int64_t last_t = detail::min64(t0 + kQueriesPerBlock, tokens) - 1;
  const std::int64_t key_end = past + last_t;  // inclusive: the block's last query position
  for (std::int64_t first = pad; first <= key_end; first += kKeyTile) {
    const int n = static_cast<int>(detail::min64(kKeyTile, key_end - first + 1));
    __syncthreads();  // the previous tiles are consumed
    load_tile<kMaxD>(k_tile, rows.keys, rows.stride, first, n, head_dim, vector);
    load_tile<kMaxD>(v_tile, rows.values, rows.stride, first, n, head_dim, vector);
    __syncthreads();
    for (int j0 = 0; j0 < n; j0 += kKeyChunk) {
      float s[kKeyChunk];
#pragma unroll
      for (int jj = 0; jj < kKeyChunk; ++jj) {
        float dot = 0.0f;
#pragma unroll
        for (int j = 0; j < kOwn; ++j) dot = dot4(qv[j], k_tile[j0 + jj][c + kThreadsPerQuery * j], dot);
        dot += __shfl_xor_sync(detail::kFullMask, dot, 1);
        dot += __shfl_xor_sync(detail::kFullMask, dot, 2);
        const std::int64_t key = first + j0 + jj;
        s[jj] = real && key <= p ? dot : -INFINITY;
      }
      float chunk_max = s[0];
#pragma unroll
      for (int jj = 1; jj < kKeyChunk; ++jj) chunk_max = fmaxf(chunk_max, s[jj]);
      if (chunk_max != -INFINITY) {  // per thread; no shuffles below
        const float m_new = fmaxf(m, chunk_max);
        const float alpha = expf(m - m_new);  // 0 on the first chunk (m = -inf)
        l *= alpha;
#pragma unroll
        for (int j = 0; j < kOwn; ++j) {
          acc[j].x *= alpha;
          acc[j].y *= alpha;
          acc[j].z *= alpha;
          acc[j].w *= alpha;
        }
#pragma unroll
        for (int jj = 0; jj < kKeyChunk; ++jj) {
          const float w = expf(s[jj] - m_new);  // 0 for masked keys
          l += w;
#pragma unroll
          for (int j = 0; j < kOwn; ++j) {
            const float4 v = v_tile[j0 + jj][c + kThreadsPerQuery * j];
            acc[j].x = fmaf(w, v.x, acc[j].x);
            acc[j].y = fmaf(w, v.y, acc[j].y);
            acc[j].z = fmaf(w, v.z, acc[j].z);
            acc[j].w = fmaf(w, v.w, acc[j].w);
          }
        }
        m = m_new;
      }
    }
  }

  if (!valid) return;
  __half* o = out + row_offset;
  if (real) {
    const float inv = 1.0f / l;
#pragma unroll
    for (int j = 0; j < kOwn; ++j) {
      const int d = 4 * (c + kThreadsPerQuery * j);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (d + e < head_dim) o[d + e] = __float2half_rn(component(acc[j], e) * inv);
      }
    }
  } else {  // a padding query: its own value row
    const __half* v = rows.values + p * rows.stride;
#pragma unroll
    for (int j = 0; j < kOwn; ++j) {
      const int d = 4 * (c + kThreadsPerQuery * j);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (d + e < head_dim) o[d + e] = v[d + e];
      }
    }
  }
}

}  // namespace

void prefill_attention(const __half* q, const KvView& kv, const std::int32_t* pad_len,
                       std::int64_t batch, int num_heads, int head_dim, std::int64_t tokens,
                       std::int64_t past, __half* out, cudaStream_t stream) {
  FLEXGEN_REQUIRE(head_dim >= 1 && head_dim <= kMaxAttentionHeadDim, "prefill_attention: head_dim ",
                  head_dim, " is outside the CUDA kernels' range 1..", kMaxAttentionHeadDim);
  const std::int64_t units = batch * num_heads;
  detail::assert_kv_view(kv, units, head_dim, /*need_values=*/true);
  if (units == 0 || tokens == 0 || kv.num_parts == 0) return;
  const std::int64_t query_blocks = (tokens + kQueriesPerBlock - 1) / kQueriesPerBlock;
  assert(query_blocks <= 65535);
  const bool vector = detail::kv_view_vectorizable(kv, head_dim);
  const dim3 grid(static_cast<unsigned>(units), static_cast<unsigned>(query_blocks));
  if (head_dim <= 64) {
    prefill_attention_kernel<64><<<grid, kPrefillThreads, 0, stream>>>(
        q, kv, pad_len, num_heads, head_dim, tokens, past, vector, out);
  } else {
    prefill_attention_kernel<128><<<grid, kPrefillThreads, 0, stream>>>(
        q, kv, pad_len, num_heads, head_dim, tokens, past, vector, out);
  }
  FLEXGEN_CUDA_CHECK_LAUNCH("prefill_attention_kernel",
                            str_cat("units=", units, " tokens=", tokens, " past=", past,
                                    " head_dim=", head_dim, vector ? " 16-byte" : " 2-byte"));
}

}  // namespace flexgen::cuda
