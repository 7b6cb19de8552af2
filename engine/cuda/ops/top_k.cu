#include "engine/cuda/ops/top_k.cuh"

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/device_utils.cuh"
#include "engine/cuda/ops/kv_rows.cuh"
#include "engine/cuda/ops/prefill_attention.cuh"

namespace flexgen::cuda {
namespace {

constexpr int kTopKThreads = 256;
constexpr int kTopKWarps = kTopKThreads / detail::kWarpSize;
constexpr int kBins = 256;

// The float's order as an unsigned integer: a < b (floats, no NaN) iff key(a) < key(b). Zeros are
// made +0 first, so -0 and +0 tie as they do for the host's float comparisons.
__device__ __forceinline__ unsigned order_key(float f) {
  const unsigned bits = __float_as_uint(f == 0.0f ? 0.0f : f);
  return (bits & 0x80000000u) != 0 ? ~bits : (bits | 0x80000000u);
}

// How many threads before this one (in thread order) have `flag` set, and the block's total.
// Called by every thread; `counts` is __shared__ unsigned[kTopKWarps].
__device__ __forceinline__ unsigned block_count_before(bool flag, unsigned* counts,
                                                       unsigned& total) {
  const int lane = threadIdx.x % detail::kWarpSize;
  const int warp = threadIdx.x / detail::kWarpSize;
  const unsigned ballot = __ballot_sync(detail::kFullMask, flag);
  unsigned before = __popc(ballot & ((1u << lane) - 1u));
  if (lane == 0) counts[warp] = __popc(ballot);
  __syncthreads();
  total = 0;
  for (int w = 0; w < kTopKWarps; ++w) {
    if (w < warp) before += counts[w];
    total += counts[w];
  }
  __syncthreads();
  return before;
}

template <int kLanes, bool kVector>
__global__ void __launch_bounds__(kTopKThreads)
    top_k_kernel(const __half* __restrict__ q, const KvView view,
                 const std::int32_t* __restrict__ pad_len, int num_heads, int head_dim,
                 std::int64_t past, int k, std::int32_t* __restrict__ kept) {
  constexpr int kRowsPerWarp = detail::kWarpSize / kLanes;
  constexpr int kSlots = kTopKWarps * kRowsPerWarp;
  extern __shared__ float scores[];  // [past]
  __shared__ unsigned hist[kBins];
  __shared__ unsigned counts[kTopKWarps];
  __shared__ unsigned chosen_digit;
  __shared__ unsigned chosen_rank;

  const std::int64_t unit = blockIdx.x;
  const detail::UnitRows rows = detail::find_unit_rows(view, unit, head_dim);
  if (!rows.found) return;  // uniform over the block
  const std::int64_t pad = pad_len[unit / num_heads];
  const int lane = threadIdx.x % detail::kWarpSize;
  const int warp = threadIdx.x / detail::kWarpSize;
  const int group = lane / kLanes;
  const int sub = lane % kLanes;
  const int d0 = sub * 8;

  // 1. Scores of positions 0 .. past - 1 (padding: -inf, its key never read).
  float qf[8];
  detail::load_row8<kVector>(q + unit * head_dim, d0, head_dim, true, qf);
  for (std::int64_t base = warp * kRowsPerWarp; base < past; base += kSlots) {
    const std::int64_t s = base + group;
    const bool ok = s < past && s >= pad;
    float kf[8];
    detail::load_row8<kVector>(rows.keys + (ok ? s : 0) * rows.stride, d0, head_dim, ok, kf);
    float dot = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) dot = fmaf(qf[e], kf[e], dot);
#pragma unroll
    for (int offset = kLanes / 2; offset > 0; offset /= 2)
      dot += __shfl_xor_sync(detail::kFullMask, dot, offset);
    if (sub == 0 && s < past) scores[s] = ok ? dot : -INFINITY;
  }
  __syncthreads();

  // 2. Radix select: the key of the k-th largest score (`prefix` once all 32 bits are fixed), and
  // `rank`, how many of the positions with exactly that key are kept (the lowest ones).
  unsigned prefix = 0;
  unsigned mask = 0;
  unsigned rank = static_cast<unsigned>(k);
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < kBins; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    for (std::int64_t base = 0; base < past; base += blockDim.x) {
      const std::int64_t s = base + threadIdx.x;
      bool in = false;
      unsigned bin = kBins;  // a sentinel that matches only other non-members
      if (s < past) {
        const unsigned key = order_key(scores[s]);
        in = (key & mask) == prefix;
        if (in) bin = (key >> shift) & (kBins - 1);
      }
      const unsigned peers = __match_any_sync(detail::kFullMask, bin);
      if (in && __ffs(peers) - 1 == lane) atomicAdd(&hist[bin], static_cast<unsigned>(__popc(peers)));
    }
    __syncthreads();
    if (warp == 0) {
      // Lane j holds bins 255 - 8j .. 248 - 8j (from the top); a scan over lanes finds the bin in
      // which the rank-th largest member falls.
      unsigned local[8];
      unsigned sum = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        local[i] = hist[kBins - 1 - (lane * 8 + i)];
        sum += local[i];
      }
      unsigned inclusive = sum;
#pragma unroll
      for (int offset = 1; offset < detail::kWarpSize; offset *= 2) {
        const unsigned n = __shfl_up_sync(detail::kFullMask, inclusive, offset);
        if (lane >= offset) inclusive += n;
      }
      const unsigned exclusive = inclusive - sum;
      if (exclusive < rank && rank <= inclusive) {
        unsigned above = exclusive;
        for (int i = 0; i < 8; ++i) {
          if (above + local[i] >= rank) {
            chosen_digit = static_cast<unsigned>(kBins - 1 - (lane * 8 + i));
            chosen_rank = rank - above;
            break;
          }
          above += local[i];
        }
      }
    }
    __syncthreads();
    prefix |= chosen_digit << shift;
    mask |= static_cast<unsigned>(kBins - 1) << shift;
    rank = chosen_rank;
    __syncthreads();  // chosen_* are rewritten by the next pass
  }

  // 3. Kept positions in ascending order: keys above the threshold, and the first `rank` equal
  // to it.
  std::int32_t* out = kept + unit * k;
  unsigned equal_seen = 0;
  unsigned written = 0;
  for (std::int64_t base = 0; base < past; base += blockDim.x) {
    const std::int64_t s = base + threadIdx.x;
    const unsigned key = s < past ? order_key(scores[s]) : 0u;
    const bool above = s < past && key > prefix;
    const bool equal = s < past && key == prefix;
    unsigned equal_total = 0;
    const unsigned equal_before = block_count_before(equal, counts, equal_total);
    const bool keep = above || (equal && equal_seen + equal_before < rank);
    unsigned keep_total = 0;
    const unsigned keep_before = block_count_before(keep, counts, keep_total);
    if (keep) out[written + keep_before] = static_cast<std::int32_t>(s);
    equal_seen += equal_total;
    written += keep_total;
  }
}

}  // namespace

void select_top_k(const __half* q, const KvView& kv, const std::int32_t* pad_len,
                  std::int64_t batch, int num_heads, int head_dim, std::int64_t past, int k,
                  std::int32_t* kept, cudaStream_t stream) {
  FLEXGEN_REQUIRE(head_dim >= 1 && head_dim <= kMaxAttentionHeadDim, "select_top_k: head_dim ",
                  head_dim, " is outside the CUDA kernels' range 1..", kMaxAttentionHeadDim);
  FLEXGEN_REQUIRE(past <= kMaxTopKPositions, "select_top_k: ", past,
                  " cached positions exceed the CUDA kernel's limit of ", kMaxTopKPositions);
  FLEXGEN_REQUIRE(k >= 1 && k <= past, "select_top_k: k = ", k, " is outside 1..", past,
                  " (the cached positions)");
  const std::int64_t units = batch * num_heads;
  detail::assert_kv_view(kv, units, head_dim, /*need_values=*/false);
  if (units == 0 || kv.num_parts == 0) return;
  KvView keys_only = kv;
  for (int i = 0; i < keys_only.num_parts; ++i) keys_only.parts[i].values = nullptr;
  const bool vector = detail::kv_view_vectorizable(keys_only, head_dim) && detail::aligned_to(q, 16);
  const std::size_t shared = static_cast<std::size_t>(past) * sizeof(float);
  const dim3 grid(static_cast<unsigned>(units));
  if (head_dim <= 64) {
    if (vector) {
      top_k_kernel<8, true><<<grid, kTopKThreads, shared, stream>>>(q, keys_only, pad_len, num_heads,
                                                                     head_dim, past, k, kept);
    } else {
      top_k_kernel<8, false><<<grid, kTopKThreads, shared, stream>>>(q, keys_only, pad_len, num_heads,
                                                                      head_dim, past, k, kept);
    }
  } else {
    if (vector) {
      top_k_kernel<16, true><<<grid, kTopKThreads, shared, stream>>>(q, keys_only, pad_len, num_heads,
                                                                      head_dim, past, k, kept);
    } else {
      top_k_kernel<16, false><<<grid, kTopKThreads, shared, stream>>>(q, keys_only, pad_len,
                                                                       num_heads, head_dim, past, k,
                                                                       kept);
    }
  }
  FLEXGEN_CUDA_CHECK_LAUNCH("top_k_kernel",
                            str_cat("units=", units, " past=", past, " k=", k, " head_dim=", head_dim,
                                    vector ? " 16-byte" : " 2-byte"));
}

}  // namespace flexgen::cuda
