#pragma once
// Device-side access to the rows of one attention unit through a KvView (kv_view.cuh), and the
// host-side checks that choose the 16-byte path. Included by .cu files only.
#include <cassert>
#include <cstdint>

#include <cuda_fp16.h>

#include "engine/cuda/ops/device_utils.cuh"
#include "engine/cuda/ops/kv_view.cuh"

namespace flexgen::cuda::detail {

struct UnitRows {
  const __half* keys = nullptr;    // row of position 0 of this unit
  const __half* values = nullptr;  // null when the part has none
  std::int64_t stride = 0;         // elements between positions
  bool found = false;
};

// The unit's rows, or found == false when no part holds the unit. The loop is unrolled so the
// view stays in the kernel's parameter space. With view.group > 1, `query_unit` is a query unit
// and the rows are those of its key/value unit query_unit / group.
__device__ __forceinline__ UnitRows find_unit_rows(const KvView& view, std::int64_t query_unit,
                                                   int head_dim) {
  const std::int64_t unit = view.group > 1 ? query_unit / view.group : query_unit;
  UnitRows r;
#pragma unroll
  for (int i = 0; i < kMaxKvParts; ++i) {
    if (i < view.num_parts && unit >= view.parts[i].unit_begin && unit < view.parts[i].unit_end) {
      const std::int64_t offset = (unit - view.parts[i].unit_begin) * head_dim;
      r.keys = view.parts[i].keys + offset;
      r.values = view.parts[i].values != nullptr ? view.parts[i].values + offset : nullptr;
      r.stride = view.parts[i].position_stride;
      r.found = true;
    }
  }
  return r;
}

// Eight values of a row starting at dimension d0 (zeros past head_dim, or all zeros when !ok).
// kVector: one 16-byte load (head_dim % 8 == 0, the row 16-byte aligned).
template <bool kVector>
__device__ __forceinline__ void load_row8(const __half* row, int d0, int head_dim, bool ok,
                                          float (&f)[8]) {
  if constexpr (kVector) {
    if (ok && d0 < head_dim) {
      half8_to_float(*reinterpret_cast<const uint4*>(row + d0), f);
      return;
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) f[e] = 0.0f;
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) f[e] = ok && d0 + e < head_dim ? __half2float(row[d0 + e]) : 0.0f;
  }
}

// Host side: whether every row of the view (and a [units, head_dim] query / output) can be read
// with 16-byte loads.
inline bool kv_view_vectorizable(const KvView& view, int head_dim) {
  if (head_dim % 8 != 0) return false;
  for (int i = 0; i < view.num_parts; ++i) {
    const KvPart& p = view.parts[i];
    if (!aligned_to(p.keys, 16) || (p.values != nullptr && !aligned_to(p.values, 16)) ||
        p.position_stride % 8 != 0)
      return false;
  }
  return true;
}

// Host side: the contract on a view (programming errors, asserted).
inline void assert_kv_view([[maybe_unused]] const KvView& view,
                           [[maybe_unused]] std::int64_t units,
                           [[maybe_unused]] int head_dim, [[maybe_unused]] bool need_values) {
#ifndef NDEBUG
  assert(view.num_parts >= 0 && view.num_parts <= kMaxKvParts);
  for (int i = 0; i < view.num_parts; ++i) {
    const KvPart& p = view.parts[i];
    assert(p.unit_begin >= 0 && p.unit_begin <= p.unit_end && p.unit_end <= units);
    assert(p.keys != nullptr && (!need_values || p.values != nullptr));
    assert(p.position_stride >= (p.unit_end - p.unit_begin) * head_dim);
    for (int j = 0; j < i; ++j) {
      const KvPart& o = view.parts[j];
      assert(p.unit_end <= o.unit_begin || o.unit_end <= p.unit_begin || p.unit_begin == p.unit_end);
    }
  }
#endif
}

}  // namespace flexgen::cuda::detail
