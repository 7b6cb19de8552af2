#include "engine/cuda/ops/decode_attention.cuh"

#include <algorithm>
#include <cassert>

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/device_utils.cuh"
#include "engine/cuda/ops/kv_rows.cuh"
#include "engine/cuda/ops/prefill_attention.cuh"

namespace flexgen::cuda {
namespace {

constexpr int kDecodeThreads = 128;
constexpr int kDecodeWarps = kDecodeThreads / detail::kWarpSize;
constexpr int kMinRowsPerSplit = 256;
constexpr int kMaxSplits = 64;
constexpr int kTargetBlocksPerSm = 6;

struct DecodeParams {
  const __half* q = nullptr;
  KvView view;
  const std::int32_t* pad_len = nullptr;
  int num_heads = 0;
  int head_dim = 0;
  std::int64_t past = 0;
  const std::int32_t* kept = nullptr;  // sparse only: [units / view.group, k] (per key/value unit)
  int k = 0;
  int num_splits = 1;
  __half* out = nullptr;
  float* partial = nullptr;  // num_splits > 1: [units, num_splits, head_dim + 2]
};

// Row i of a unit (i < count) and whether it takes part. Dense: positions lo .. past. Sparse: the
// k kept positions (padding ones skipped), then the own position.
template <bool kSparse>
__device__ __forceinline__ std::int64_t row_position(const DecodeParams& prm, std::int64_t unit,
                                                     std::int64_t lo, std::int64_t pad,
                                                     std::int64_t i, std::int64_t end, bool& ok) {
  ok = i < end;
  if (!ok) return 0;
  if constexpr (kSparse) {
    if (i == prm.k) return prm.past;
    const std::int64_t pos = prm.kept[(unit / prm.view.group) * prm.k + i];  // per key/value unit
    ok = pos >= pad;
    return pos;
  } else {
    return lo + i;
  }
}

// The online-softmax update of one row group's state with one row.
__device__ __forceinline__ void online_update(float score, const float (&v)[8], float& m, float& l,
                                              float (&o)[8]) {
  const float m_new = fmaxf(m, score);
  const float alpha = expf(m - m_new);  // 0 while m = -inf
  const float w = expf(score - m_new);
  l = l * alpha + w;
#pragma unroll
  for (int e = 0; e < 8; ++e) o[e] = fmaf(w, v[e], o[e] * alpha);
  m = m_new;
}

template <int kLanes, bool kVector, bool kSparse>
__global__ void __launch_bounds__(kDecodeThreads) decode_attention_kernel(const DecodeParams prm) {
  constexpr int kRowsPerWarp = detail::kWarpSize / kLanes;
  constexpr int kSlots = kDecodeWarps * kRowsPerWarp;  // row groups per block
  constexpr int kMaxD = 8 * kLanes;
  __shared__ float sm_m[kSlots];
  __shared__ float sm_l[kSlots];
  __shared__ float sm_o[kSlots][kMaxD];

  const std::int64_t unit = blockIdx.x;
  const int split = blockIdx.y;
  const int head_dim = prm.head_dim;
  const detail::UnitRows rows = detail::find_unit_rows(prm.view, unit, head_dim);
  if (!rows.found) return;  // uniform over the block
  const std::int64_t pad = prm.pad_len[unit / prm.num_heads];
  const std::int64_t past = prm.past;
  std::int64_t lo = 0;
  std::int64_t count = 0;
  if constexpr (kSparse) {
    count = prm.k + 1;
  } else {
    lo = past < pad ? past : pad;  // a padding query attends to itself only
    count = past - lo + 1;
  }
  const std::int64_t chunk = (count + prm.num_splits - 1) / prm.num_splits;
  const std::int64_t begin = detail::min64(count, split * chunk);
  const std::int64_t end = detail::min64(count, begin + chunk);

  const int lane = threadIdx.x % detail::kWarpSize;
  const int warp = threadIdx.x / detail::kWarpSize;
  const int group = lane / kLanes;
  const int sub = lane % kLanes;
  const int d0 = sub * 8;
  const int slot = warp * kRowsPerWarp + group;

  float qf[8];
  detail::load_row8<kVector>(prm.q + unit * head_dim, d0, head_dim, true, qf);
  float m = -INFINITY;
  float l = 0.0f;
  float o[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) o[e] = 0.0f;

  // Two rows per group per step: four 16-byte loads in flight per lane before any math.
  for (std::int64_t base = begin + warp * kRowsPerWarp; base < end; base += 2 * kSlots) {
    bool ok0 = false;
    bool ok1 = false;
    const std::int64_t i0 = base + group;
    const std::int64_t i1 = i0 + kSlots;
    const std::int64_t p0 = row_position<kSparse>(prm, unit, lo, pad, i0, end, ok0);
    const std::int64_t p1 = row_position<kSparse>(prm, unit, lo, pad, i1, end, ok1);
    float k0[8], v0[8], k1[8], v1[8];
    detail::load_row8<kVector>(rows.keys + p0 * rows.stride, d0, head_dim, ok0, k0);
    detail::load_row8<kVector>(rows.values + p0 * rows.stride, d0, head_dim, ok0, v0);
    detail::load_row8<kVector>(rows.keys + p1 * rows.stride, d0, head_dim, ok1, k1);
    detail::load_row8<kVector>(rows.values + p1 * rows.stride, d0, head_dim, ok1, v1);
    float s0 = 0.0f;
    float s1 = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      s0 = fmaf(qf[e], k0[e], s0);
      s1 = fmaf(qf[e], k1[e], s1);
    }
#pragma unroll
    for (int offset = kLanes / 2; offset > 0; offset /= 2) {
      s0 += __shfl_xor_sync(detail::kFullMask, s0, offset);
      s1 += __shfl_xor_sync(detail::kFullMask, s1, offset);
    }
    if (ok0) online_update(s0, v0, m, l, o);
    if (ok1) online_update(s1, v1, m, l, o);
  }

  if (sub == 0) {
    sm_m[slot] = m;
    sm_l[slot] = l;
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) sm_o[slot][d0 + e] = o[e];
  __syncthreads();

  for (int dim = threadIdx.x; dim < head_dim; dim += blockDim.x) {
    float mx = -INFINITY;
#pragma unroll
    for (int s = 0; s < kSlots; ++s) mx = fmaxf(mx, sm_m[s]);
    float total_l = 0.0f;
    float total_o = 0.0f;
    if (mx != -INFINITY) {
#pragma unroll
      for (int s = 0; s < kSlots; ++s) {
        if (sm_m[s] == -INFINITY) continue;
        const float w = expf(sm_m[s] - mx);
        total_l = fmaf(sm_l[s], w, total_l);
        total_o = fmaf(sm_o[s][dim], w, total_o);
      }
    }
    if (prm.num_splits == 1) {
      prm.out[unit * head_dim + dim] = __float2half_rn(total_o / total_l);
    } else {
      float* part = prm.partial + (unit * prm.num_splits + split) * (head_dim + 2);
      part[2 + dim] = total_o;
      if (dim == 0) {
        part[0] = mx;
        part[1] = total_l;
      }
    }
  }
}

// Combines the splits of each unit: out = sum_s o_s e^(m_s - M) / sum_s l_s e^(m_s - M).
__global__ void decode_combine_kernel(const KvView view, const float* __restrict__ partial,
                                      int num_splits, int head_dim, __half* __restrict__ out) {
  const std::int64_t unit = blockIdx.x;
  if (!detail::find_unit_rows(view, unit, head_dim).found) return;
  const float* base = partial + unit * num_splits * (head_dim + 2);
  float mx = -INFINITY;
  for (int s = 0; s < num_splits; ++s) mx = fmaxf(mx, base[s * (head_dim + 2)]);
  for (int dim = threadIdx.x; dim < head_dim; dim += blockDim.x) {
    float total_l = 0.0f;
    float total_o = 0.0f;
    for (int s = 0; s < num_splits; ++s) {
      const float* part = base + s * (head_dim + 2);
      if (part[0] == -INFINITY) continue;  // an empty split
      const float w = expf(part[0] - mx);
      total_l = fmaf(part[1], w, total_l);
      total_o = fmaf(part[2 + dim], w, total_o);
    }
    out[unit * head_dim + dim] = __float2half_rn(total_o / total_l);
  }
}

int multiprocessor_count() {
  int device = 0;
  FLEXGEN_CUDA_CHECK(cudaGetDevice(&device));
  int count = 0;
  FLEXGEN_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

int splits_that_fit(std::int64_t units, int head_dim, std::size_t workspace_bytes) {
  if (units == 0) return kMaxSplits;
  const std::size_t per_split = decode_attention_workspace_bytes(units, head_dim, 1);
  return static_cast<int>(std::min<std::size_t>(kMaxSplits, workspace_bytes / per_split));
}

template <int kLanes, bool kVector>
void launch_kernel(bool sparse, const dim3& grid, const DecodeParams& prm, cudaStream_t stream) {
  if (sparse) {
    decode_attention_kernel<kLanes, kVector, true><<<grid, kDecodeThreads, 0, stream>>>(prm);
  } else {
    decode_attention_kernel<kLanes, kVector, false><<<grid, kDecodeThreads, 0, stream>>>(prm);
  }
}

void launch_decode(DecodeParams prm, std::int64_t batch, std::int64_t rows_per_unit,
                   std::size_t workspace_bytes, int num_splits, cudaStream_t stream,
                   const char* op) {
  FLEXGEN_REQUIRE(prm.head_dim >= 1 && prm.head_dim <= kMaxAttentionHeadDim, op, ": head_dim ",
                  prm.head_dim, " is outside the CUDA kernels' range 1..", kMaxAttentionHeadDim);
  const std::int64_t units = batch * prm.num_heads;
  detail::assert_kv_view(prm.view, units, prm.head_dim, /*need_values=*/true);
  if (units == 0 || prm.view.num_parts == 0) return;
  int splits = num_splits > 0 ? num_splits
                              : decode_attention_splits(units, prm.head_dim, rows_per_unit,
                                                        workspace_bytes);
  if (splits > 1) {
    splits = std::min(splits, splits_that_fit(units, prm.head_dim,
                                              prm.partial == nullptr ? 0 : workspace_bytes));
  }
  splits = std::max(splits, 1);
  prm.num_splits = splits;
  const bool vector = detail::kv_view_vectorizable(prm.view, prm.head_dim) &&
                      detail::aligned_to(prm.q, 16);
  const bool sparse = prm.kept != nullptr;
  const dim3 grid(static_cast<unsigned>(units), static_cast<unsigned>(splits));
  if (prm.head_dim <= 64) {
    if (vector) {
      launch_kernel<8, true>(sparse, grid, prm, stream);
    } else {
      launch_kernel<8, false>(sparse, grid, prm, stream);
    }
  } else {
    if (vector) {
      launch_kernel<16, true>(sparse, grid, prm, stream);
    } else {
      launch_kernel<16, false>(sparse, grid, prm, stream);
    }
  }
  FLEXGEN_CUDA_CHECK_LAUNCH(sparse ? "decode_attention_kernel (sparse)" : "decode_attention_kernel",
                            str_cat("units=", units, " past=", prm.past, " rows=", rows_per_unit,
                                    " head_dim=", prm.head_dim, " splits=", splits,
                                    vector ? " 16-byte" : " 2-byte"));
  if (splits > 1) {
    decode_combine_kernel<<<static_cast<unsigned>(units), kDecodeThreads, 0, stream>>>(
        prm.view, prm.partial, splits, prm.head_dim, prm.out);
    FLEXGEN_CUDA_CHECK_LAUNCH("decode_combine_kernel",
                              str_cat("units=", units, " splits=", splits, " head_dim=",
                                      prm.head_dim));
  }
}

}  // namespace

int decode_attention_splits(std::int64_t units, int head_dim, std::int64_t rows,
                            std::size_t workspace_bytes) {
  if (units <= 0) return 1;
  // Enough blocks that every SM keeps about 24 warps' loads in flight (each lane has four 16-byte
  // loads outstanding: ~48 KiB per SM, above the ~30 KiB HBM3e needs per SM at ~800 ns latency);
  // more splits only add the partials' traffic and the combine kernel's launch.
  const std::int64_t target_blocks = std::int64_t{kTargetBlocksPerSm} * multiprocessor_count();
  std::int64_t splits = (target_blocks + units - 1) / units;
  splits = std::min(splits, (rows + kMinRowsPerSplit - 1) / kMinRowsPerSplit);
  splits = std::min<std::int64_t>(splits, splits_that_fit(units, head_dim, workspace_bytes));
  return static_cast<int>(std::max<std::int64_t>(splits, 1));
}

void decode_attention(const __half* q, const KvView& kv, const std::int32_t* pad_len,
                      std::int64_t batch, int num_heads, int head_dim, std::int64_t past,
                      __half* out, float* workspace, std::size_t workspace_bytes, int num_splits,
                      cudaStream_t stream) {
  DecodeParams prm;
  prm.q = q;
  prm.view = kv;
  prm.pad_len = pad_len;
  prm.num_heads = num_heads;
  prm.head_dim = head_dim;
  prm.past = past;
  prm.out = out;
  prm.partial = workspace;
  launch_decode(prm, batch, past + 1, workspace_bytes, num_splits, stream, "decode_attention");
}

void sparse_decode_attention(const __half* q, const KvView& kv, const std::int32_t* pad_len,
                             std::int64_t batch, int num_heads, int head_dim, std::int64_t past,
                             const std::int32_t* kept, int k, __half* out, float* workspace,
                             std::size_t workspace_bytes, int num_splits, cudaStream_t stream) {
  assert(kept != nullptr && k >= 0 && k <= past);
  DecodeParams prm;
  prm.q = q;
  prm.view = kv;
  prm.pad_len = pad_len;
  prm.num_heads = num_heads;
  prm.head_dim = head_dim;
  prm.past = past;
  prm.kept = kept;
  prm.k = k;
  prm.out = out;
  prm.partial = workspace;
  launch_decode(prm, batch, std::int64_t{k} + 1, workspace_bytes, num_splits, stream,
                "sparse_decode_attention");
}

}  // namespace flexgen::cuda
